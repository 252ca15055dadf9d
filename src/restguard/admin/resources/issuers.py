"""``/api/issuers``: trusted external JWT issuers, added, listed, read and removed
(``restguard.manage.issuers``)."""

from __future__ import annotations

from typing import Any

from restguard.admin.call import ID, Answer, Call, Endpoint, created_at, etag_header, paging
from restguard.admin.call import whole_number as number
from restguard.admin.schema import (
    AFTER,
    GUARDED,
    IF_MATCH,
    LIMIT,
    WITH_BODY,
    errors,
    id_param,
    json_answer,
    json_body,
    page_of,
    ref,
)
from restguard.credentials.jwt_issuers import ALG_NAMES
from restguard.keys.jwt_verify import MAX_LEEWAY
from restguard.manage import issuers
from restguard.manage.values import duration

_FIELDS = ("issuer", "jwks_uri", "audience", "algorithms", "scope_claim", "typ", "leeway")


async def list_issuers(call: Call) -> Answer:
    q = paging(call, "issuer", "audience")
    data = await issuers.listing(
        call.services.store,
        issuer=q.get("issuer"),
        audience=q.get("audience"),
        limit=number(q.get("limit"), "limit"),
        after=q.get("after"),
    )
    return 200, data, []


async def add_issuer(call: Call) -> Answer:
    call.take(())
    body = call.fields(_FIELDS, required=("issuer", "jwks_uri", "audience"))
    s = call.services
    record = issuers.check(
        s.clock.now(),
        body["issuer"],
        body["jwks_uri"],
        body["audience"],
        body.get("algorithms", []),
        body.get("scope_claim", "scope"),
        body.get("typ"),
        duration(body.get("leeway"), "leeway"),
        own_issuer=s.public_url,
    )
    data = await issuers.add(s.store, record)
    call.changed("issuer.add", data["id"])
    return 201, data, created_at(f"/api/issuers/{data['id']}", data)


async def get_issuer(call: Call) -> Answer:
    call.take(())
    data = issuers.public(await issuers.read(call.services.store, call.path_args[0]))
    return 200, data, etag_header(data)


async def remove_issuer(call: Call) -> Answer:
    call.take(())
    call.fields(())
    data = await issuers.remove(call.services.store, call.path_args[0], call.if_match)
    call.changed("issuer.remove", data["id"])
    return 200, data, []


ENDPOINTS: list[Endpoint] = [
    ("/api/issuers", {"GET": list_issuers, "POST": add_issuer}),
    (f"/api/issuers/({ID})", {"GET": get_issuer, "DELETE": remove_issuer}),
]

_ID_PARAM = id_param("The issuer's `id`, as `add` answered it.")

PATHS: dict[str, Any] = {
    "/api/issuers": {
        "get": {
            "operationId": "listIssuers",
            "summary": "List the trusted external JWT issuers, oldest first",
            "parameters": [
                {
                    "name": "issuer",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "Only the issuer with exactly this URL.",
                },
                {
                    "name": "audience",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "Only issuers with exactly this audience.",
                },
                LIMIT,
                AFTER,
            ],
            "responses": {
                "200": json_answer(ref("IssuerPage"), "One page of issuers."),
                **errors(*GUARDED),
            },
        },
        "post": {
            "operationId": "addIssuer",
            "summary": "Trust an issuer's JWTs (every running instance within a second)",
            "description": "The JWKS URI is fetched once to check it (`jwks_keys`, "
            "`jwks_problem`); a failure does not stop the issuer from being added: restguard "
            "keeps trying, and until it has keys, requests with this issuer's tokens get 503.",
            "requestBody": json_body("AddIssuer"),
            "responses": {
                "201": json_answer(ref("NewIssuer"), "The new issuer.", ("ETag", "Location")),
                **errors(*WITH_BODY, 409),
            },
        },
    },
    "/api/issuers/{id}": {
        "get": {
            "operationId": "getIssuer",
            "summary": "One trusted issuer",
            "parameters": [_ID_PARAM],
            "responses": {
                "200": json_answer(ref("Issuer"), "The issuer.", ("ETag",)),
                **errors(*GUARDED, 404),
            },
        },
        "delete": {
            "operationId": "removeIssuer",
            "summary": "Stop trusting an issuer (its tokens are refused on every running "
            "instance within a second)",
            "parameters": [_ID_PARAM, IF_MATCH],
            "responses": {
                "200": json_answer(ref("Issuer"), "The removed issuer."),
                **errors(*WITH_BODY, 404, 412),
            },
        },
    },
}

_ISSUER_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"},
    "issuer": {"type": "string", "description": "The tokens' exact `iss`."},
    "jwks_uri": {"type": "string"},
    "audience": {"type": "string"},
    "algorithms": {
        "type": "array",
        "items": {"type": "string", "enum": sorted(set(ALG_NAMES.values()))},
    },
    "scope_claim": {"type": "string", "enum": list(issuers.SCOPE_CLAIMS)},
    "typ": {"type": ["string", "null"]},
    "leeway_seconds": {"type": "number", "minimum": 0, "maximum": MAX_LEEWAY},
    "created_at": {"type": "string", "format": "date-time"},
    "etag": {"type": "string"},
}
_ISSUER_REQUIRED = list(_ISSUER_PROPERTIES)

SCHEMAS: dict[str, Any] = {
    "Issuer": {
        "type": "object",
        "required": _ISSUER_REQUIRED,
        "additionalProperties": False,
        "properties": _ISSUER_PROPERTIES,
    },
    "NewIssuer": {
        "type": "object",
        "required": [*_ISSUER_REQUIRED, "jwks_keys", "jwks_problem"],
        "additionalProperties": False,
        "properties": {
            **_ISSUER_PROPERTIES,
            "jwks_keys": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "How many usable keys the JWKS URI served when it was added; "
                "null when it could not be read.",
            },
            "jwks_problem": {
                "type": ["string", "null"],
                "description": "Why the JWKS URI could not be read (restguard keeps trying).",
            },
        },
    },
    "IssuerPage": page_of("Issuer"),
    "AddIssuer": {
        "type": "object",
        "required": ["issuer", "jwks_uri", "audience"],
        "additionalProperties": False,
        "properties": {
            "issuer": {
                "type": "string",
                "description": "The tokens' exact `iss`: an https:// URL (http:// only on "
                "loopback), no query or fragment, not restguard's own public_url.",
            },
            "jwks_uri": {
                "type": "string",
                "description": "Where the issuer publishes its keys (https://; http:// only on "
                "loopback).",
            },
            "audience": {
                "type": "string",
                "minLength": 1,
                "maxLength": 500,
                "description": "The `aud` value your API's tokens carry.",
            },
            "algorithms": {
                "type": "array",
                "items": {"type": "string"},
                "maxItems": issuers.MAX_ALGORITHMS,
                "description": "Allowed algorithms: EdDSA (or ed25519), ES256, RS256, in any "
                "case (default: all three).",
            },
            "scope_claim": {
                "type": "string",
                "enum": list(issuers.SCOPE_CLAIMS),
                "description": "The claim holding the scopes: `scope` (a space-separated "
                "string), `scp` or `permissions` (arrays). Default `scope`.",
            },
            "typ": {
                "type": ["string", "null"],
                "description": "Require this `typ` header, e.g. at+jwt (RFC 9068).",
            },
            "leeway": {
                "type": "string",
                "pattern": "^[0-9]+(ms|s|m|h|d)$",
                "examples": ["30s"],
                "description": f"Clock skew allowed on exp, nbf and iat (default 0s, at most "
                f"{MAX_LEEWAY:g}s).",
            },
        },
    },
}
