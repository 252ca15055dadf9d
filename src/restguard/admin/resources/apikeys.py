"""``/api/apikeys``: list, create, read, revoke, rotate (``restguard.manage.apikeys``)."""

from __future__ import annotations

from typing import Any

from restguard.admin.call import ID, Answer, Call, Endpoint, created_at, etag_header, paging
from restguard.admin.call import whole_number as number
from restguard.admin.schema import (
    AFTER,
    DURATION,
    GUARDED,
    IF_MATCH,
    LIMIT,
    SCOPES,
    TIME,
    WITH_BODY,
    errors,
    id_param,
    json_answer,
    json_body,
    page_of,
    ref,
)
from restguard.manage import apikeys
from restguard.manage.values import duration


async def list_keys(call: Call) -> Answer:
    q = paging(call, "state", "name", "scope")
    s = call.services
    data = await apikeys.listing(
        s.store,
        s.clock.now(),
        state_is=q.get("state"),
        name=q.get("name"),
        scope=q.get("scope"),
        limit=number(q.get("limit"), "limit"),
        after=q.get("after"),
    )
    return 200, data, []


async def create_key(call: Call) -> Answer:
    call.take(())
    body = call.fields(("name", "scopes", "expires_in"), required=("name",))
    s = call.services
    data = await apikeys.create(
        s.store,
        s.clock.now(),
        body["name"],
        body.get("scopes", []),
        duration(body.get("expires_in"), "expires_in"),
    )
    call.changed("apikey.create", data["id"])
    return 201, data, created_at(f"/api/apikeys/{data['id']}", data)


async def get_key(call: Call) -> Answer:
    call.take(())
    s = call.services
    data = apikeys.public(await apikeys.read(s.store, call.path_args[0]), s.clock.now())
    return 200, data, etag_header(data)


async def revoke_key(call: Call) -> Answer:
    call.take(())
    call.fields(())
    s = call.services
    data = await apikeys.revoke(s.store, s.clock.now(), call.path_args[0], call.if_match)
    call.changed("apikey.revoke", data["id"])
    return 200, data, etag_header(data)


async def rotate_key(call: Call) -> Answer:
    call.take(())
    body = call.fields(("grace",))
    s = call.services
    data = await apikeys.rotate(
        s.store,
        s.clock.now(),
        call.path_args[0],
        duration(body.get("grace"), "grace"),
        if_match=call.if_match,
    )
    call.changed("apikey.rotate", f"{data['old_id']} -> {data['id']}")
    return 201, data, created_at(f"/api/apikeys/{data['id']}", data)


ENDPOINTS: list[Endpoint] = [
    ("/api/apikeys", {"GET": list_keys, "POST": create_key}),
    (f"/api/apikeys/({ID})", {"GET": get_key}),
    (f"/api/apikeys/({ID})/revoke", {"POST": revoke_key}),
    (f"/api/apikeys/({ID})/rotate", {"POST": rotate_key}),
]

_ID_PARAM = id_param("The key's `id`, as `create` printed it.")

PATHS: dict[str, Any] = {
    "/api/apikeys": {
        "get": {
            "operationId": "listApiKeys",
            "summary": "List API keys (never their secrets), oldest first",
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(apikeys.STATES)},
                },
                {"name": "name", "in": "query", "schema": {"type": "string"}},
                {"name": "scope", "in": "query", "schema": {"type": "string"}},
                LIMIT,
                AFTER,
            ],
            "responses": {
                "200": json_answer(ref("ApiKeyPage"), "One page of keys."),
                **errors(*GUARDED),
            },
        },
        "post": {
            "operationId": "createApiKey",
            "summary": "Create a key; the key is in the answer, once",
            "requestBody": json_body("CreateApiKey"),
            "responses": {
                "201": json_answer(ref("NewApiKey"), "The new key.", ("ETag", "Location")),
                **errors(*WITH_BODY),
            },
        },
    },
    "/api/apikeys/{id}": {
        "get": {
            "operationId": "getApiKey",
            "summary": "One key (never its secret)",
            "parameters": [_ID_PARAM],
            "responses": {
                "200": json_answer(ref("ApiKey"), "The key.", ("ETag",)),
                **errors(*GUARDED, 404),
            },
        }
    },
    "/api/apikeys/{id}/revoke": {
        "post": {
            "operationId": "revokeApiKey",
            "summary": "Revoke a key at once (on every instance within one second)",
            "parameters": [_ID_PARAM, IF_MATCH],
            "responses": {
                "200": json_answer(ref("ApiKey"), "The revoked key.", ("ETag",)),
                **errors(*WITH_BODY, 404, 412),
            },
        }
    },
    "/api/apikeys/{id}/rotate": {
        "post": {
            "operationId": "rotateApiKey",
            "summary": "Replace a key with a new one (same name, scopes and expiry)",
            "parameters": [_ID_PARAM, IF_MATCH],
            "requestBody": json_body("RotateApiKey", required=False),
            "responses": {
                "201": json_answer(
                    ref("NewApiKey"), "The new key; the old one's end.", ("ETag", "Location")
                ),
                **errors(*WITH_BODY, 404, 409, 412),
            },
        }
    },
}

SCHEMAS: dict[str, Any] = {
    "ApiKey": {
        "type": "object",
        "required": [
            "id",
            "name",
            "scopes",
            "state",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "etag",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "state": {"type": "string", "enum": list(apikeys.STATES)},
            "created_at": {"type": "string", "format": "date-time"},
            "expires_at": TIME,
            "revoked_at": {
                **TIME,
                "description": "When it stops (stopped) working; later than now during a "
                "rotation's grace period.",
            },
            "last_used_at": TIME,
            "etag": {"type": "string"},
        },
    },
    "NewApiKey": {
        "type": "object",
        "required": ["id", "name", "key", "scopes", "expires_at", "etag"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "key": {
                "type": "string",
                "description": "The key itself: shown this once, only its hash is kept.",
            },
            "scopes": {"type": "array", "items": {"type": "string"}},
            "expires_at": TIME,
            "etag": {"type": "string"},
            "old_id": {"type": "string", "description": "(rotate) the old key."},
            "grace_ends_at": {**TIME, "description": "(rotate) when the old key stops working."},
        },
    },
    "ApiKeyPage": page_of("ApiKey"),
    "CreateApiKey": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "Who or what the key is for (forwarded as subject): printable "
                "characters (no control characters or non-space separators), not only spaces.",
            },
            "scopes": SCOPES,
            "expires_in": {**DURATION, "description": "Lifetime (default, or null: no expiry)."},
        },
    },
    "RotateApiKey": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "grace": {
                **DURATION,
                "description": "Keep the old key working this long (default: it stops at once).",
            }
        },
    },
}
