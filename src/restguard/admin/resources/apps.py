"""``/api/apps``: signing apps (RFC 9421) listed, created, read, revoked and rotated
(``restguard.manage.apps``)."""

from __future__ import annotations

from typing import Any

from restguard.admin.call import Answer, Call, Endpoint, created_at, etag_header, paging
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
    json_answer,
    json_body,
    page_of,
    ref,
)
from restguard.credentials.apps import ALGORITHMS, HMAC_SHA256, MAX_PEM_BYTES
from restguard.manage import apps
from restguard.manage.values import duration

#: The ids in these paths: key_ids are ``app_`` and 16 characters (their '_' is outside
#: ``call.ID``); anything else matches no record (404).
KEY_ID = "[A-Za-z0-9_-]{1,64}"


async def list_apps(call: Call) -> Answer:
    q = paging(call, "state", "name", "alg")
    s = call.services
    data = await apps.listing(
        s.store,
        s.clock.now(),
        state_is=q.get("state"),
        name=q.get("name"),
        alg=q.get("alg"),
        limit=number(q.get("limit"), "limit"),
        after=q.get("after"),
    )
    return 200, data, []


async def create_app(call: Call) -> Answer:
    call.take(())
    body = call.fields(("name", "scopes", "alg", "public_key"), required=("name", "scopes"))
    s = call.services
    data = await apps.create(
        s.store,
        s.clock.now(),
        s.sealer,
        body["name"],
        body["scopes"],
        body.get("alg", HMAC_SHA256),
        body.get("public_key"),
    )
    call.changed("app.create", data["key_id"])
    return 201, data, created_at(f"/api/apps/{data['key_id']}", data)


async def get_app(call: Call) -> Answer:
    call.take(())
    s = call.services
    data = apps.public(await apps.read(s.store, call.path_args[0]), s.clock.now())
    return 200, data, etag_header(data)


async def revoke_app(call: Call) -> Answer:
    call.take(())
    call.fields(())
    s = call.services
    data = await apps.revoke(s.store, s.clock.now(), call.path_args[0], call.if_match)
    call.changed("app.revoke", data["key_id"])
    return 200, data, etag_header(data)


async def rotate_app(call: Call) -> Answer:
    call.take(())
    body = call.fields(("grace", "public_key"))
    grace = duration(body.get("grace"), "grace")
    s = call.services
    data = await apps.rotate(
        s.store,
        s.clock.now(),
        s.sealer,
        call.path_args[0],
        body.get("public_key"),
        grace,
        if_match=call.if_match,
    )
    call.changed("app.rotate", f"{data['old_id']} -> {data['key_id']}")
    return 201, data, created_at(f"/api/apps/{data['key_id']}", data)


ENDPOINTS: list[Endpoint] = [
    ("/api/apps", {"GET": list_apps, "POST": create_app}),
    (f"/api/apps/({KEY_ID})", {"GET": get_app}),
    (f"/api/apps/({KEY_ID})/revoke", {"POST": revoke_app}),
    (f"/api/apps/({KEY_ID})/rotate", {"POST": rotate_app}),
]

_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    "description": "The app's `key_id`, as `create` printed it.",
}
_PEM = {
    "type": ["string", "null"],
    "description": "The PEM text of the app's public key (`-----BEGIN PUBLIC KEY-----`), "
    "for ed25519 and ecdsa-p256-sha256 (null: none). Never a private key: one is refused, "
    f"not stored. At most {MAX_PEM_BYTES} bytes (400 past it; not a `maxLength`, which a body "
    "past the 64 KiB limit would meet only with 413).",
}
_ALG = {"type": "string", "enum": list(ALGORITHMS)}
_NULLABLE = {"type": ["string", "null"]}

PATHS: dict[str, Any] = {
    "/api/apps": {
        "get": {
            "operationId": "listApps",
            "summary": "List signing apps (never their secrets), oldest first",
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(apps.STATES)},
                },
                {"name": "name", "in": "query", "schema": {"type": "string"}},
                {"name": "alg", "in": "query", "schema": _ALG},
                LIMIT,
                AFTER,
            ],
            "responses": {
                "200": json_answer(ref("AppPage"), "One page of apps."),
                **errors(*GUARDED),
            },
        },
        "post": {
            "operationId": "createApp",
            "summary": "Register a signing app; an hmac-sha256 secret is in the answer, once",
            "requestBody": json_body("CreateApp"),
            "responses": {
                "201": json_answer(ref("NewApp"), "The new app.", ("ETag", "Location")),
                **errors(*WITH_BODY, 409, 500),
            },
        },
    },
    "/api/apps/{id}": {
        "get": {
            "operationId": "getApp",
            "summary": "One app (never its secret)",
            "parameters": [_ID_PARAM],
            "responses": {
                "200": json_answer(ref("App"), "The app.", ("ETag",)),
                **errors(*GUARDED, 404),
            },
        }
    },
    "/api/apps/{id}/revoke": {
        "post": {
            "operationId": "revokeApp",
            "summary": "Revoke an app at once (on every instance within one second)",
            "parameters": [_ID_PARAM, IF_MATCH],
            "responses": {
                "200": json_answer(ref("App"), "The revoked app.", ("ETag",)),
                **errors(*WITH_BODY, 404, 412),
            },
        }
    },
    "/api/apps/{id}/rotate": {
        "post": {
            "operationId": "rotateApp",
            "summary": "Replace an app's key: a new key_id and secret (or the new public key); "
            "same name, scopes and algorithm",
            "parameters": [_ID_PARAM, IF_MATCH],
            "requestBody": json_body("RotateApp", required=False),
            "responses": {
                "201": json_answer(
                    ref("NewApp"), "The new credential; the old one's end.", ("ETag", "Location")
                ),
                **errors(*WITH_BODY, 404, 409, 412, 500),
            },
        }
    },
}

SCHEMAS: dict[str, Any] = {
    "App": {
        "type": "object",
        "required": [
            "key_id",
            "name",
            "alg",
            "scopes",
            "state",
            "public_key_sha256",
            "created_at",
            "revoked_at",
            "etag",
        ],
        "additionalProperties": False,
        "properties": {
            "key_id": {"type": "string", "description": "The signature's `keyid` parameter."},
            "name": {"type": "string"},
            "alg": _ALG,
            "scopes": {"type": "array", "items": {"type": "string"}},
            "state": {"type": "string", "enum": list(apps.STATES)},
            "public_key_sha256": {
                **_NULLABLE,
                "description": "SHA-256 of the public key's DER SubjectPublicKeyInfo, "
                "base64url; null for hmac-sha256.",
            },
            "created_at": {"type": "string", "format": "date-time"},
            "revoked_at": {
                **TIME,
                "description": "When it stops (stopped) working; later than now during a "
                "rotation's grace period.",
            },
            "etag": {"type": "string"},
        },
    },
    "NewApp": {
        "type": "object",
        "required": [
            "key_id",
            "secret",
            "alg",
            "name",
            "scopes",
            "created_at",
            "public_key_sha256",
            "etag",
        ],
        "additionalProperties": False,
        "properties": {
            "key_id": {"type": "string"},
            "secret": {
                **_NULLABLE,
                "description": "(hmac-sha256) base64url of the 32-byte HMAC key: shown this "
                "once, stored only sealed. Null for a public-key app.",
            },
            "alg": _ALG,
            "name": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "string", "format": "date-time"},
            "public_key_sha256": _NULLABLE,
            "etag": {"type": "string"},
            "old_id": {"type": "string", "description": "(rotate) the old key_id."},
            "grace_ends_at": {**TIME, "description": "(rotate) when the old key_id stops."},
        },
    },
    "AppPage": page_of("App"),
    "CreateApp": {
        "type": "object",
        "required": ["name", "scopes"],
        "additionalProperties": False,
        "properties": {
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "Who or what the app is (forwarded as subject).",
            },
            "scopes": {**SCOPES, "minItems": 1},
            "alg": {**_ALG, "default": HMAC_SHA256},
            "public_key": _PEM,
        },
    },
    "RotateApp": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "grace": {
                **DURATION,
                "description": "Keep the old key_id working this long (default: it stops at once).",
            },
            "public_key": {
                **_PEM,
                "description": "The new public key (required for ed25519 and "
                "ecdsa-p256-sha256 apps; refused for hmac-sha256).",
            },
        },
    },
}
