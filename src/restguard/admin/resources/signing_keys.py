"""``/api/signing-keys``: restguard's own JWT signing keys, listed and rotated
(``restguard.manage.signing_keys``)."""

from __future__ import annotations

from typing import Any

from restguard.admin.call import Answer, Call, Endpoint, paging
from restguard.admin.call import whole_number as number
from restguard.admin.schema import (
    AFTER,
    GUARDED,
    LIMIT,
    TIME,
    WITH_BODY,
    errors,
    json_answer,
    json_body,
    page_of,
    ref,
)
from restguard.manage import signing_keys


async def list_signing_keys(call: Call) -> Answer:
    q = paging(call)
    s = call.services
    data = await signing_keys.listing(
        s.store, s.clock.now(), limit=number(q.get("limit"), "limit"), after=q.get("after")
    )
    return 200, data, []


async def rotate_signing_key(call: Call) -> Answer:
    call.take(())
    alg = signing_keys.check_alg(call.fields(("alg",)).get("alg"))
    s = call.services
    data = await signing_keys.rotate(s.store, s.sealer(), s.clock.now(), alg)
    call.changed("signing-key.rotate", data["kid"])
    return 201, data, []


ENDPOINTS: list[Endpoint] = [
    ("/api/signing-keys", {"GET": list_signing_keys}),
    ("/api/signing-keys/rotate", {"POST": rotate_signing_key}),
]

PATHS: dict[str, Any] = {
    "/api/signing-keys": {
        "get": {
            "operationId": "listSigningKeys",
            "summary": "restguard's own JWT signing keys, newest first (public parts only)",
            "parameters": [LIMIT, AFTER],
            "responses": {
                "200": json_answer(ref("SigningKeyPage"), "One page of signing keys."),
                **errors(*GUARDED),
            },
        }
    },
    "/api/signing-keys/rotate": {
        "post": {
            "operationId": "rotateSigningKey",
            "summary": "A new signing key signs from now on (every instance within 5 s)",
            "description": "The other keys stay in the JWKS for up to an hour more, so that "
            "every token they signed still verifies until it expires.",
            "requestBody": json_body("RotateSigningKey", required=False),
            "responses": {
                "201": json_answer(ref("RotatedSigningKey"), "The new key."),
                **errors(*WITH_BODY, 500),
            },
        }
    },
}

SCHEMAS: dict[str, Any] = {
    "SigningKey": {
        "type": "object",
        "required": ["kid", "alg", "status", "created_at", "retired_at"],
        "additionalProperties": False,
        "properties": {
            "kid": {"type": "string"},
            "alg": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["signing", "published", "retired"],
                "description": "`signing` signs new tokens; `published` is in the JWKS until "
                "`retired_at`; `retired` is gone from it.",
            },
            "created_at": {"type": "string", "format": "date-time"},
            "retired_at": TIME,
        },
    },
    "SigningKeyPage": page_of("SigningKey"),
    "RotateSigningKey": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "alg": {
                "type": "string",
                "description": "EdDSA (the default), ES256 or RS256; also ed25519, es256, "
                "rs256, in any case.",
            }
        },
    },
    "RotatedSigningKey": {
        "type": "object",
        "required": ["kid", "alg", "created_at", "previous"],
        "additionalProperties": False,
        "properties": {
            "kid": {"type": "string"},
            "alg": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "previous": {
                "type": "array",
                "description": "The keys it replaces, and when each leaves the JWKS.",
                "items": {
                    "type": "object",
                    "required": ["kid", "retired_at"],
                    "properties": {"kid": {"type": "string"}, "retired_at": TIME},
                },
            },
        },
    },
}
