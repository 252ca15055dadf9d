"""``/api/oauth2/clients``: clients of restguard's OAuth 2.0 authorization server, listed,
created, read and revoked (``restguard.manage.oauth2_clients``)."""

from __future__ import annotations

from typing import Any

from restguard.admin.call import Answer, Call, Endpoint, created_at, etag_header, paging
from restguard.admin.call import whole_number as number
from restguard.admin.schema import (
    AFTER,
    GUARDED,
    IF_MATCH,
    LIMIT,
    TIME,
    WITH_BODY,
    errors,
    json_answer,
    json_body,
    page_of,
    ref,
)
from restguard.manage import oauth2_clients
from restguard.oauth2.clients import DEVICE_CODE_URN, GRANTS, TOKEN_FORMATS

#: Client ids in paths (``rg_ci_`` and 16 of ``[0-9a-z]``; anything else of this form is 404).
CLIENT_ID = "[A-Za-z0-9_-]{1,64}"


async def list_clients(call: Call) -> Answer:
    q = paging(call, "state", "name", "scope", "grant")
    s = call.services
    data = await oauth2_clients.listing(
        s.store,
        s.clock.now(),
        state_is=q.get("state"),
        name=q.get("name"),
        scope=q.get("scope"),
        grant=q.get("grant"),
        limit=number(q.get("limit"), "limit"),
        after=q.get("after"),
    )
    return 200, data, []


async def create_client(call: Call) -> Answer:
    call.take(())
    body = call.fields(
        ("name", "scopes", "grants", "redirect_uris", "public", "token_format"),
        required=("name", "scopes", "grants"),
    )
    s = call.services
    data = await oauth2_clients.create(
        s.store,
        s.clock.now(),
        body["name"],
        body["scopes"],
        body["grants"],
        body.get("redirect_uris", []),
        body.get("public", False),
        body.get("token_format", "jwt"),
    )
    call.changed("oauth2-client.create", data["client_id"])
    return 201, data, created_at(f"/api/oauth2/clients/{data['client_id']}", data)


async def get_client(call: Call) -> Answer:
    call.take(())
    s = call.services
    rec = await oauth2_clients.read(s.store, call.path_args[0])
    data = oauth2_clients.public(rec, s.clock.now())
    return 200, data, etag_header(data)


async def revoke_client(call: Call) -> Answer:
    call.take(())
    call.fields(())
    s = call.services
    data = await oauth2_clients.revoke(s.store, s.clock.now(), call.path_args[0], call.if_match)
    call.changed("oauth2-client.revoke", data["client_id"])
    return 200, data, etag_header(data)


ENDPOINTS: list[Endpoint] = [
    ("/api/oauth2/clients", {"GET": list_clients, "POST": create_client}),
    (f"/api/oauth2/clients/({CLIENT_ID})", {"GET": get_client}),
    (f"/api/oauth2/clients/({CLIENT_ID})/revoke", {"POST": revoke_client}),
]

#: RFC 6749 §3.3 scope-token, without ',' (``wire/scope.py``).
_SCOPE_TOKEN = {"type": "string", "pattern": "^[\\x21\\x23-\\x2b\\x2d-\\x5b\\x5d-\\x7e]+$"}
_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    "description": "The client's `client_id`, as `create` printed it.",
}
_STRINGS = {"type": "array", "items": {"type": "string"}}

PATHS: dict[str, Any] = {
    "/api/oauth2/clients": {
        "get": {
            "operationId": "listOAuth2Clients",
            "summary": "List OAuth 2.0 clients (never their secrets), oldest first",
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(oauth2_clients.STATES)},
                },
                {"name": "name", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "scope",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "Only clients that may be granted this scope.",
                },
                {
                    "name": "grant",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(GRANTS)},
                    "description": "Only clients that may use this grant.",
                },
                LIMIT,
                AFTER,
            ],
            "responses": {
                "200": json_answer(ref("OAuth2ClientPage"), "One page of clients."),
                **errors(*GUARDED),
            },
        },
        "post": {
            "operationId": "createOAuth2Client",
            "summary": "Register a client; a confidential client's secret is in the answer, once",
            "description": "The checks of RFC 6749 and the Security BCP (RFC 9700): redirect "
            "URIs match exactly and are https, http to a loopback IP literal, or a private-use "
            "scheme; only (and every) authorization_code client has them; client_credentials "
            "is for confidential clients; refresh_token needs authorization_code or "
            "device_code.",
            "requestBody": json_body("CreateOAuth2Client"),
            "responses": {
                "201": json_answer(ref("NewOAuth2Client"), "The new client.", ("ETag", "Location")),
                **errors(*WITH_BODY, 409),
            },
        },
    },
    "/api/oauth2/clients/{id}": {
        "get": {
            "operationId": "getOAuth2Client",
            "summary": "One client (never its secret)",
            "parameters": [_ID_PARAM],
            "responses": {
                "200": json_answer(ref("OAuth2Client"), "The client.", ("ETag",)),
                **errors(*GUARDED, 404),
            },
        }
    },
    "/api/oauth2/clients/{id}/revoke": {
        "post": {
            "operationId": "revokeOAuth2Client",
            "summary": "Revoke a client at once: its secret and tokens are refused on every "
            "instance within one second",
            "parameters": [_ID_PARAM, IF_MATCH],
            "responses": {
                "200": json_answer(ref("OAuth2Client"), "The revoked client.", ("ETag",)),
                **errors(*WITH_BODY, 404, 412),
            },
        }
    },
}

_CLIENT_FIELDS: dict[str, Any] = {
    "client_id": {"type": "string"},
    "name": {"type": "string"},
    "public": {
        "type": "boolean",
        "description": "A public client has no secret (PKCE instead).",
    },
    "grants": {"type": "array", "items": {"type": "string", "enum": list(GRANTS)}},
    "redirect_uris": _STRINGS,
    "scopes": _STRINGS,
    "token_format": {"type": "string", "enum": list(TOKEN_FORMATS)},
    "created_at": {"type": "string", "format": "date-time"},
    "etag": {"type": "string"},
}

SCHEMAS: dict[str, Any] = {
    "OAuth2Client": {
        "type": "object",
        "required": [*_CLIENT_FIELDS, "state", "revoked_at"],
        "additionalProperties": False,
        "properties": {
            **_CLIENT_FIELDS,
            "state": {"type": "string", "enum": list(oauth2_clients.STATES)},
            "revoked_at": TIME,
        },
    },
    "NewOAuth2Client": {
        "type": "object",
        "required": ["client_secret", *_CLIENT_FIELDS],
        "additionalProperties": False,
        "properties": {
            **_CLIENT_FIELDS,
            "client_secret": {
                "type": ["string", "null"],
                "description": "The secret (`rg_cs_...`): shown this once, only its hash is "
                "kept. Null for a public client.",
            },
        },
    },
    "OAuth2ClientPage": page_of("OAuth2Client"),
    "CreateOAuth2Client": {
        "type": "object",
        "required": ["name", "scopes", "grants"],
        "additionalProperties": False,
        "properties": {
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "Who or what the client is (shown at consent).",
            },
            "scopes": {
                "type": "array",
                "minItems": 1,
                "items": _SCOPE_TOKEN,
                "description": "The scopes it may be granted (RFC 6749 §3.3 scope-tokens, "
                "without ','), each as its own item; repeats count once.",
            },
            "grants": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "enum": [*GRANTS, DEVICE_CODE_URN]},
                "description": "The grant types it may use (RFC 8628's URN stands for "
                "device_code); repeats count once.",
            },
            "redirect_uris": {
                **_STRINGS,
                "description": "Where authorization_code redirects (matched exactly); "
                "required with that grant, refused without it.",
            },
            "public": {
                "type": "boolean",
                "description": "A client that cannot keep a secret (browser or native app): "
                "no secret, PKCE instead. Default false.",
            },
            "token_format": {
                "type": "string",
                "enum": list(TOKEN_FORMATS),
                "description": "Access tokens as JWTs (RFC 9068, the default) or opaque "
                "`rg_at_` references.",
            },
        },
    },
}
