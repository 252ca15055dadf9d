"""``/api/oauth1/consumers`` (list, create, read, revoke) and ``/api/oauth1/tokens`` (the token
credentials users granted to them: list, read, revoke), over ``restguard.manage.oauth1``."""

from __future__ import annotations

import hashlib
from typing import Any

from restguard.admin.call import Answer, Call, Endpoint, created_at, etag_header, paging
from restguard.admin.call import whole_number as number
from restguard.admin.schema import (
    AFTER,
    GUARDED,
    IF_MATCH,
    LIMIT,
    SCOPES,
    TIME,
    WITH_BODY,
    errors,
    json_answer,
    json_body,
    page_of,
    ref,
)
from restguard.credentials.apps import MAX_PEM_BYTES
from restguard.credentials.oauth1_consumers import SIGNATURE_METHODS
from restguard.manage import oauth1
from restguard.manage.errors import Invalid, NotFound

#: The ids in these paths: ``ck_...`` consumer keys and ``rg_ot_...`` tokens hold '_' (outside
#: ``call.ID``); anything else matches no record (404).
KEY = "[A-Za-z0-9_-]{1,64}"

# --- consumers ----------------------------------------------------------------------------------


async def list_consumers(call: Call) -> Answer:
    q = paging(call, "state", "name")
    s = call.services
    data = await oauth1.consumer_listing(
        s.store,
        s.clock.now(),
        state_is=q.get("state"),
        name=q.get("name"),
        limit=number(q.get("limit"), "limit"),
        after=q.get("after"),
    )
    return 200, data, []


async def create_consumer(call: Call) -> Answer:
    call.take(())
    body = call.fields(
        ("name", "scopes", "callback", "rsa_public_key", "signature_methods"),
        required=("name", "scopes"),
    )
    s = call.services
    data = await oauth1.create_consumer(
        s.store,
        s.clock.now(),
        s.sealer,
        body["name"],
        body["scopes"],
        body.get("callback"),
        body.get("rsa_public_key"),
        body.get("signature_methods", []),
    )
    call.changed("oauth1-consumer.create", data["consumer_key"])
    return 201, data, created_at(f"/api/oauth1/consumers/{data['consumer_key']}", data)


async def get_consumer(call: Call) -> Answer:
    call.take(())
    s = call.services
    rec = await oauth1.read_consumer(s.store, call.path_args[0])
    data = oauth1.public_consumer(rec, s.clock.now())
    return 200, data, etag_header(data)


async def revoke_consumer(call: Call) -> Answer:
    call.take(())
    call.fields(())
    s = call.services
    data = await oauth1.revoke_consumer(s.store, s.clock.now(), call.path_args[0], call.if_match)
    call.changed("oauth1-consumer.revoke", data["consumer_key"])
    return 200, data, etag_header(data)


# --- token credentials --------------------------------------------------------------------------


def token_reference(data: dict[str, Any]) -> str:
    """How the audit log names token credentials: their consumer and the SHA-256 of the token
    (the audit log redacts every ``rg_xx_`` value, the token's ``rg_ot_`` included)."""
    digest = hashlib.sha256(data["token"].encode()).hexdigest()[:16]
    return f"{data['consumer_key']} token sha256:{digest}"


async def list_tokens(call: Call) -> Answer:
    q = paging(call, "user", "consumer", "state")
    s = call.services
    try:
        data = await oauth1.token_listing(
            s.store,
            s.clock.now(),
            user=q.get("user"),
            consumer=q.get("consumer"),
            state_is=q.get("state"),
            limit=number(q.get("limit"), "limit"),
            after=q.get("after"),
        )
    except NotFound as exc:  # a filter naming no user: the query is at fault, not the path
        raise Invalid(exc.message, field=exc.field) from None
    return 200, data, []


async def get_token(call: Call) -> Answer:
    call.take(())
    s = call.services
    data = oauth1.public_token(await oauth1.read_token(s.store, call.path_args[0]), s.clock.now())
    return 200, data, etag_header(data)


async def revoke_token(call: Call) -> Answer:
    call.take(())
    call.fields(())
    s = call.services
    data = await oauth1.revoke_token(s.store, s.clock.now(), call.path_args[0], call.if_match)
    call.changed("oauth1-token.revoke", token_reference(data))
    return 200, data, etag_header(data)


ENDPOINTS: list[Endpoint] = [
    ("/api/oauth1/consumers", {"GET": list_consumers, "POST": create_consumer}),
    (f"/api/oauth1/consumers/({KEY})", {"GET": get_consumer}),
    (f"/api/oauth1/consumers/({KEY})/revoke", {"POST": revoke_consumer}),
    ("/api/oauth1/tokens", {"GET": list_tokens}),
    (f"/api/oauth1/tokens/({KEY})", {"GET": get_token}),
    (f"/api/oauth1/tokens/({KEY})/revoke", {"POST": revoke_token}),
]


def _id_param(what: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "description": what,
    }


_CONSUMER_ID = _id_param("The consumer's `consumer_key`, as `create` printed it.")
_TOKEN_ID = _id_param("The token (`oauth_token`), as the listing shows it.")
_NULLABLE = {"type": ["string", "null"]}
_STRINGS = {"type": "array", "items": {"type": "string"}}

PATHS: dict[str, Any] = {
    "/api/oauth1/consumers": {
        "get": {
            "operationId": "listOAuth1Consumers",
            "summary": "List OAuth 1.0a consumers (never their secrets), oldest first",
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(oauth1.CONSUMER_STATES)},
                },
                {"name": "name", "in": "query", "schema": {"type": "string"}},
                LIMIT,
                AFTER,
            ],
            "responses": {
                "200": json_answer(ref("OAuth1ConsumerPage"), "One page of consumers."),
                **errors(*GUARDED),
            },
        },
        "post": {
            "operationId": "createOAuth1Consumer",
            "summary": "Register a consumer; its consumer_secret is in the answer, once",
            "requestBody": json_body("CreateOAuth1Consumer"),
            "responses": {
                "201": json_answer(
                    ref("NewOAuth1Consumer"), "The new consumer.", ("ETag", "Location")
                ),
                **errors(*WITH_BODY, 409, 500),
            },
        },
    },
    "/api/oauth1/consumers/{id}": {
        "get": {
            "operationId": "getOAuth1Consumer",
            "summary": "One consumer (never its secret)",
            "parameters": [_CONSUMER_ID],
            "responses": {
                "200": json_answer(ref("OAuth1Consumer"), "The consumer.", ("ETag",)),
                **errors(*GUARDED, 404),
            },
        }
    },
    "/api/oauth1/consumers/{id}/revoke": {
        "post": {
            "operationId": "revokeOAuth1Consumer",
            "summary": "Revoke a consumer and every token issued to it, at once",
            "parameters": [_CONSUMER_ID, IF_MATCH],
            "responses": {
                "200": json_answer(ref("OAuth1Consumer"), "The revoked consumer.", ("ETag",)),
                **errors(*WITH_BODY, 404, 412),
            },
        }
    },
    "/api/oauth1/tokens": {
        "get": {
            "operationId": "listOAuth1Tokens",
            "summary": "List token credentials users granted to consumers (never a secret), "
            "oldest first",
            "parameters": [
                {
                    "name": "user",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "Only this user's (user_id or username; 400 if no user).",
                },
                {
                    "name": "consumer",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "Only this consumer's (its consumer_key).",
                },
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(oauth1.TOKEN_STATES)},
                },
                LIMIT,
                AFTER,
            ],
            "responses": {
                "200": json_answer(ref("OAuth1TokenPage"), "One page of token credentials."),
                **errors(*GUARDED),
            },
        }
    },
    "/api/oauth1/tokens/{id}": {
        "get": {
            "operationId": "getOAuth1Token",
            "summary": "One token (never its secret)",
            "parameters": [_TOKEN_ID],
            "responses": {
                "200": json_answer(ref("OAuth1Token"), "The token.", ("ETag",)),
                **errors(*GUARDED, 404),
            },
        }
    },
    "/api/oauth1/tokens/{id}/revoke": {
        "post": {
            "operationId": "revokeOAuth1Token",
            "summary": "Revoke a token at once",
            "parameters": [_TOKEN_ID, IF_MATCH],
            "responses": {
                "200": json_answer(ref("OAuth1Token"), "The revoked token.", ("ETag",)),
                **errors(*WITH_BODY, 404, 412),
            },
        }
    },
}

SCHEMAS: dict[str, Any] = {
    "OAuth1Consumer": {
        "type": "object",
        "required": [
            "consumer_key",
            "name",
            "scopes",
            "callback",
            "signature_methods",
            "rsa_public_key_sha256",
            "state",
            "created_at",
            "revoked_at",
            "etag",
        ],
        "additionalProperties": False,
        "properties": {
            "consumer_key": {"type": "string"},
            "name": {"type": "string"},
            "scopes": _STRINGS,
            "callback": {**_NULLABLE, "description": "null: only `oob`."},
            "signature_methods": _STRINGS,
            "rsa_public_key_sha256": {
                **_NULLABLE,
                "description": "SHA-256 of the RSA public key's DER SubjectPublicKeyInfo, "
                "base64url; null without one.",
            },
            "state": {"type": "string", "enum": list(oauth1.CONSUMER_STATES)},
            "created_at": {"type": "string", "format": "date-time"},
            "revoked_at": TIME,
            "etag": {"type": "string"},
        },
    },
    "NewOAuth1Consumer": {
        "type": "object",
        "required": [
            "consumer_key",
            "consumer_secret",
            "name",
            "scopes",
            "callback",
            "signature_methods",
            "created_at",
            "rsa_public_key_sha256",
            "etag",
        ],
        "additionalProperties": False,
        "properties": {
            "consumer_key": {"type": "string"},
            "consumer_secret": {
                "type": "string",
                "description": "Shown this once; stored only sealed by the master key.",
            },
            "name": {"type": "string"},
            "scopes": _STRINGS,
            "callback": _NULLABLE,
            "signature_methods": _STRINGS,
            "created_at": {"type": "string", "format": "date-time"},
            "rsa_public_key_sha256": _NULLABLE,
            "etag": {"type": "string"},
        },
    },
    "OAuth1ConsumerPage": page_of("OAuth1Consumer"),
    "CreateOAuth1Consumer": {
        "type": "object",
        "required": ["name", "scopes"],
        "additionalProperties": False,
        "properties": {
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "Who or what the consumer is (shown at consent).",
            },
            "scopes": {**SCOPES, "minItems": 1},
            "callback": {
                **_NULLABLE,
                "description": "The callback URI (a request's oauth_callback must be exactly "
                "it or `oob`); omit it for `oob` only.",
            },
            "rsa_public_key": {
                "type": ["string", "null"],
                "description": "The PEM text of the consumer's RSA public key (2048 bits or "
                "more), for RSA-SHA1 (null: none). Never a private key: one is refused, not "
                f"stored. At most {MAX_PEM_BYTES} bytes (400 past it).",
            },
            "signature_methods": {
                "type": "array",
                "items": {"type": "string"},
                "maxItems": 10,
                "description": f"Allow only these ({', '.join(SIGNATURE_METHODS)}; any case). "
                "Default: HMAC-SHA1, HMAC-SHA256, PLAINTEXT and, with `rsa_public_key`, "
                "RSA-SHA1.",
            },
        },
    },
    "OAuth1Token": {
        "type": "object",
        "required": [
            "token",
            "consumer_key",
            "user_id",
            "subject",
            "scopes",
            "state",
            "created_at",
            "expires_at",
            "revoked_at",
            "etag",
        ],
        "additionalProperties": False,
        "properties": {
            "token": {"type": "string"},
            "consumer_key": {"type": "string"},
            "user_id": _NULLABLE,
            "subject": _NULLABLE,
            "scopes": _STRINGS,
            "state": {
                "type": "string",
                "enum": [*oauth1.TOKEN_STATES, "used"],
                "description": "`used`: temporary credentials already exchanged.",
            },
            "created_at": {"type": "string", "format": "date-time"},
            "expires_at": TIME,
            "revoked_at": TIME,
            "etag": {"type": "string"},
        },
    },
    "OAuth1TokenPage": page_of("OAuth1Token"),
}
