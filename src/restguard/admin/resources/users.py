"""``/api/users``: resource owners of restguard's authorization server, listed, created, read
and removed, and their consents listed and revoked (``restguard.manage.users``).

The password comes in the create body's ``password`` field (never in the URL), is checked as
the CLI checks it, and is never echoed, logged or returned: only its Argon2id hash is stored.
"""

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
from restguard.manage import users
from restguard.oauth2.users import MAX_PASSWORD_CHARS, MAX_USERNAME_CHARS, MIN_PASSWORD_CHARS

#: A user in a path: its ``user_id`` (``rg_us_...``) or its username (any case).
USER = "[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}"


async def list_users(call: Call) -> Answer:
    q = paging(call, "state", "username", "scope")
    s = call.services
    data = await users.listing(
        s.store,
        s.clock.now(),
        state_is=q.get("state"),
        username=q.get("username"),
        scope=q.get("scope"),
        limit=number(q.get("limit"), "limit"),
        after=q.get("after"),
    )
    return 200, data, []


async def create_user(call: Call) -> Answer:
    call.take(())
    body = call.fields(("username", "password", "scopes"), required=("username", "password"))
    s = call.services
    data = await users.create(
        s.store, s.clock.now(), body["username"], body["password"], body.get("scopes", [])
    )
    call.changed("user.create", data["user_id"])
    return 201, data, created_at(f"/api/users/{data['user_id']}", data)


async def get_user(call: Call) -> Answer:
    call.take(())
    s = call.services
    data = users.public(await users.find(s.store, call.path_args[0]), s.clock.now())
    return 200, data, etag_header(data)


async def remove_user(call: Call) -> Answer:
    call.take(())
    call.fields(())
    s = call.services
    data = await users.remove(s.store, s.clock.now(), call.path_args[0], call.if_match)
    call.changed("user.remove", data["user_id"])
    return 200, data, etag_header(data)


async def list_consents(call: Call) -> Answer:
    q = paging(call)
    data = await users.consent_page(
        call.services.store,
        call.path_args[0],
        limit=number(q.get("limit"), "limit"),
        after=q.get("after"),
    )
    return 200, data, []


async def revoke_consent(call: Call) -> Answer:
    call.take(())
    body = call.fields(("client_id",))
    s = call.services
    data = await users.revoke_consent(
        s.store, s.clock.now(), call.path_args[0], body.get("client_id")
    )
    target = data["user_id"] + (f" {data['client_id']}" if data["client_id"] else "")
    call.changed("user.revoke-consent", target)
    return 200, data, []


ENDPOINTS: list[Endpoint] = [
    ("/api/users", {"GET": list_users, "POST": create_user}),
    (f"/api/users/({USER})", {"GET": get_user, "DELETE": remove_user}),
    (f"/api/users/({USER})/consents", {"GET": list_consents}),
    (f"/api/users/({USER})/revoke-consent", {"POST": revoke_consent}),
]

#: RFC 6749 §3.3 scope-token, without ',' (``wire/scope.py``).
_SCOPE_TOKEN = {"type": "string", "pattern": "^[\\x21\\x23-\\x2b\\x2d-\\x5b\\x5d-\\x7e]+$"}
_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": f"^{USER}$"},
    "description": "The user's `user_id`, as `create` printed it, or their username (any case).",
}
_SCOPES = {"type": "array", "items": {"type": "string"}}

PATHS: dict[str, Any] = {
    "/api/users": {
        "get": {
            "operationId": "listUsers",
            "summary": "List users (never their passwords or hashes), oldest first",
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(users.STATES)},
                },
                {
                    "name": "username",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "Only the user with this username (any case).",
                },
                {
                    "name": "scope",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "Only users who may grant this scope.",
                },
                LIMIT,
                AFTER,
            ],
            "responses": {
                "200": json_answer(ref("UserPage"), "One page of users."),
                **errors(*GUARDED),
            },
        },
        "post": {
            "operationId": "createUser",
            "summary": "Create a user who can log in and consent (only a hash of the password "
            "is stored; it is never shown)",
            "requestBody": json_body("CreateUser"),
            "responses": {
                "201": json_answer(ref("NewUser"), "The new user.", ("ETag", "Location")),
                **errors(*WITH_BODY, 409),
            },
        },
    },
    "/api/users/{id}": {
        "get": {
            "operationId": "getUser",
            "summary": "One user (never the password hash)",
            "parameters": [_ID_PARAM],
            "responses": {
                "200": json_answer(ref("User"), "The user.", ("ETag",)),
                **errors(*GUARDED, 404),
            },
        },
        "delete": {
            "operationId": "removeUser",
            "summary": "Remove a user: they can no longer log in, their consents are "
            "forgotten, and every token they granted is revoked (on every instance within a "
            "second)",
            "parameters": [_ID_PARAM, IF_MATCH],
            "responses": {
                "200": json_answer(ref("User"), "The removed user.", ("ETag",)),
                **errors(*WITH_BODY, 404, 412),
            },
        },
    },
    "/api/users/{id}/consents": {
        "get": {
            "operationId": "listUserConsents",
            "summary": "The applications a user has allowed, and the scopes each was granted",
            "parameters": [_ID_PARAM, LIMIT, AFTER],
            "responses": {
                "200": json_answer(ref("ConsentPage"), "One page of consents."),
                **errors(*GUARDED, 404),
            },
        }
    },
    "/api/users/{id}/revoke-consent": {
        "post": {
            "operationId": "revokeUserConsent",
            "summary": "Take back what a user allowed one application (or every one)",
            "description": "The consent is forgotten (the consent page is shown again next "
            "time) and the refresh tokens issued under it are revoked with their access "
            "tokens, on every instance within a second.",
            "parameters": [_ID_PARAM],
            "requestBody": json_body("RevokeConsent", required=False),
            "responses": {
                "200": json_answer(ref("RevokedConsent"), "What was revoked."),
                **errors(*WITH_BODY, 404),
            },
        }
    },
}

_USER_FIELDS: dict[str, Any] = {
    "user_id": {"type": "string"},
    "username": {"type": "string", "description": "Stored lower-cased."},
    "scopes": {
        **_SCOPES,
        "description": "The scopes the user may grant to clients (none: they can sign in but "
        "grant nothing).",
    },
    "created_at": {"type": "string", "format": "date-time"},
    "etag": {"type": "string"},
}

SCHEMAS: dict[str, Any] = {
    "User": {
        "type": "object",
        "required": [*_USER_FIELDS, "state", "failed_logins", "locked_until"],
        "additionalProperties": False,
        "properties": {
            **_USER_FIELDS,
            "state": {"type": "string", "enum": list(users.STATES)},
            "failed_logins": {
                "type": "integer",
                "minimum": 0,
                "description": "Failed logins since the last success.",
            },
            "locked_until": {
                **TIME,
                "description": "While locked: when logins are accepted again.",
            },
        },
    },
    "NewUser": {
        "type": "object",
        "required": list(_USER_FIELDS),
        "additionalProperties": False,
        "properties": _USER_FIELDS,
    },
    "UserPage": page_of("User"),
    "CreateUser": {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {
            "username": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_USERNAME_CHARS,
                "pattern": "^[A-Za-z0-9][A-Za-z0-9._@+-]*$",
                "description": "The login name: ASCII letters, digits and . _ @ + -, starting "
                "with a letter or digit, not with 'rg_' (stored lower-cased: Alice and alice "
                "are one user).",
            },
            "password": {
                "type": "string",
                "minLength": MIN_PASSWORD_CHARS,
                "maxLength": MAX_PASSWORD_CHARS,
                "writeOnly": True,
                "description": f"{MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters (after "
                "Unicode NFC normalisation), not only white space, without control characters. "
                "Only its Argon2id hash is stored; it is never shown.",
            },
            "scopes": {
                "type": "array",
                "items": _SCOPE_TOKEN,
                "description": "The scopes the user may grant to clients; repeats count once.",
            },
        },
    },
    "Consent": {
        "type": "object",
        "required": ["client_id", "scopes", "granted_at"],
        "additionalProperties": False,
        "properties": {
            "client_id": {"type": "string"},
            "scopes": _SCOPES,
            "granted_at": {"type": "string", "format": "date-time"},
        },
    },
    "ConsentPage": page_of("Consent"),
    "RevokeConsent": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "client_id": {
                "type": "string",
                "description": "Only this application's consent (default: every application's).",
            }
        },
    },
    "RevokedConsent": {
        "type": "object",
        "required": [
            "user_id",
            "username",
            "client_id",
            "consents_revoked",
            "token_families_revoked",
        ],
        "additionalProperties": False,
        "properties": {
            "user_id": {"type": "string"},
            "username": {"type": "string"},
            "client_id": {"type": ["string", "null"]},
            "consents_revoked": {"type": "integer", "minimum": 0},
            "token_families_revoked": {"type": "integer", "minimum": 0},
        },
    },
}
