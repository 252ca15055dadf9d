"""The admin API's OpenAPI 3.1 document (``GET /api/openapi.json``).

Written by hand beside ``admin/api.py`` and held to it by the test suite: schemathesis sends
requests generated from this document and checks every answer against it
(``tests/integration/test_admin_api_schema.py``), and a test compares its paths and methods
with the API's routes.
"""

from __future__ import annotations

from typing import Any

from restguard import __version__
from restguard.admin.api import MAX_BODY_BYTES
from restguard.manage.apikeys import ADMIN_SCOPE, STATES
from restguard.manage.pages import MAX_LIMIT

_TIME = {"type": ["string", "null"], "format": "date-time"}
_SCOPES = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "pattern": "^[\\x21\\x23-\\x5b\\x5d-\\x7e]+$"},
    "maxItems": 100,
    "description": "Scopes (RFC 6749 §3.3 scope-tokens), each as its own item.",
}
_DURATION = {
    "type": "string",
    "pattern": "^[0-9]+(ms|s|m|h|d)$",
    "examples": ["30d", "12h", "90s"],
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(
    schema: dict[str, Any], description: str, headers: tuple[str, ...] = ()
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        answer["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return answer


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "Malformed input; `field` names it.",
        401: "No API key, or an invalid one.",
        403: f"The API key does not hold `{ADMIN_SCOPE}`.",
        404: "No record has that id.",
        405: "The endpoint does not answer this method.",
        409: "The record's state forbids this (a revoked key cannot be rotated).",
        412: "`If-Match` names a version the record no longer has.",
        413: f"The body is larger than {MAX_BODY_BYTES} bytes.",
        415: "The body is not `application/json`.",
        429: "Too many failed attempts from this address; see `Retry-After`.",
        500: "The server could not do it (its master key does not open the store); its log "
        "says why.",
        503: "The store is unavailable (fail closed).",
    }
    return {str(s): _json(_ref("Error"), texts[s]) for s in statuses}


_GUARDED = (400, 401, 403, 429, 503)
_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"},
    "description": "The key's `id`, as `create` printed it.",
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
}
_AFTER = {
    "name": "after",
    "in": "query",
    "schema": {"type": "string"},
    "description": "The `next` cursor of the previous page.",
}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The `etag` read before: the change is made only if the record still "
    "has it (412 otherwise). `*` matches any version.",
}


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "restguard admin API",
            "version": __version__,
            "description": "Manage restguard's credentials. Every call but this document needs "
            f"an API key holding `{ADMIN_SCOPE}`, sent as for any API key (`X-API-Key`, "
            "`Authorization: ApiKey` or `Authorization: Bearer`). Errors are "
            '`{"error": ..., "error_description": ...}`.',
        },
        "security": [{"apiKeyHeader": []}, {"apiKeyBearer": []}],
        "paths": {
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
                }
            },
            "/api/apikeys": {
                "get": {
                    "operationId": "listApiKeys",
                    "summary": "List API keys (never their secrets), oldest first",
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(STATES)},
                        },
                        {"name": "name", "in": "query", "schema": {"type": "string"}},
                        {"name": "scope", "in": "query", "schema": {"type": "string"}},
                        _LIMIT,
                        _AFTER,
                    ],
                    "responses": {
                        "200": _json(_ref("ApiKeyPage"), "One page of keys."),
                        **_errors(*_GUARDED),
                    },
                },
                "post": {
                    "operationId": "createApiKey",
                    "summary": "Create a key; the key is in the answer, once",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("CreateApiKey")}},
                    },
                    "responses": {
                        "201": _json(_ref("NewApiKey"), "The new key.", ("ETag", "Location")),
                        **_errors(*_GUARDED, 413, 415),
                    },
                },
            },
            "/api/apikeys/{id}": {
                "get": {
                    "operationId": "getApiKey",
                    "summary": "One key (never its secret)",
                    "parameters": [_ID_PARAM],
                    "responses": {
                        "200": _json(_ref("ApiKey"), "The key.", ("ETag",)),
                        **_errors(*_GUARDED, 404),
                    },
                }
            },
            "/api/apikeys/{id}/revoke": {
                "post": {
                    "operationId": "revokeApiKey",
                    "summary": "Revoke a key at once (on every instance within one second)",
                    "parameters": [_ID_PARAM, _IF_MATCH],
                    "responses": {
                        "200": _json(_ref("ApiKey"), "The revoked key.", ("ETag",)),
                        **_errors(*_GUARDED, 404, 412, 413, 415),
                    },
                }
            },
            "/api/apikeys/{id}/rotate": {
                "post": {
                    "operationId": "rotateApiKey",
                    "summary": "Replace a key with a new one (same name, scopes and expiry)",
                    "parameters": [_ID_PARAM, _IF_MATCH],
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("RotateApiKey")}},
                    },
                    "responses": {
                        "201": _json(
                            _ref("NewApiKey"),
                            "The new key; the old one's end.",
                            ("ETag", "Location"),
                        ),
                        **_errors(*_GUARDED, 404, 409, 412, 413, 415),
                    },
                }
            },
            "/api/signing-keys": {
                "get": {
                    "operationId": "listSigningKeys",
                    "summary": "restguard's own JWT signing keys, newest first (public parts only)",
                    "parameters": [_LIMIT, _AFTER],
                    "responses": {
                        "200": _json(_ref("SigningKeyPage"), "One page of signing keys."),
                        **_errors(*_GUARDED),
                    },
                }
            },
            "/api/signing-keys/rotate": {
                "post": {
                    "operationId": "rotateSigningKey",
                    "summary": "A new signing key signs from now on (every instance within 5 s)",
                    "description": "The other keys stay in the JWKS for up to an hour more, so "
                    "that every token they signed still verifies until it expires.",
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("RotateSigningKey")}},
                    },
                    "responses": {
                        "201": _json(_ref("RotatedSigningKey"), "The new key."),
                        **_errors(*_GUARDED, 413, 415, 500),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "apiKeyBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "rg_ak_..."},
            },
            "headers": {
                "ETag": {
                    "description": "The record's version, for `If-Match`.",
                    "schema": {"type": "string"},
                },
                "Location": {"description": "The new record.", "schema": {"type": "string"}},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "error_description"],
                    "properties": {
                        "error": {"type": "string"},
                        "error_description": {"type": "string"},
                        "field": {"type": "string", "description": "The input at fault."},
                    },
                },
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
                        "state": {"type": "string", "enum": list(STATES)},
                        "created_at": {"type": "string", "format": "date-time"},
                        "expires_at": _TIME,
                        "revoked_at": {
                            **_TIME,
                            "description": "When it stops (stopped) working; later than now "
                            "during a rotation's grace period.",
                        },
                        "last_used_at": _TIME,
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
                            "description": "The key itself: shown this once, only its hash "
                            "is kept.",
                        },
                        "scopes": {"type": "array", "items": {"type": "string"}},
                        "expires_at": _TIME,
                        "etag": {"type": "string"},
                        "old_id": {"type": "string", "description": "(rotate) the old key."},
                        "grace_ends_at": {
                            **_TIME,
                            "description": "(rotate) when the old key stops working.",
                        },
                    },
                },
                "ApiKeyPage": {
                    "type": "object",
                    "required": ["items", "next"],
                    "additionalProperties": False,
                    "properties": {
                        "items": {"type": "array", "items": _ref("ApiKey")},
                        "next": {
                            "type": ["string", "null"],
                            "description": "Pass as `after` for the next page; null at the end.",
                        },
                    },
                },
                "CreateApiKey": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 200,
                            "description": "Who or what the key is for (forwarded as subject).",
                        },
                        "scopes": _SCOPES,
                        "expires_in": {
                            **_DURATION,
                            "description": "Lifetime (default: no expiry).",
                        },
                    },
                },
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
                            "description": "`signing` signs new tokens; `published` is in the "
                            "JWKS until `retired_at`; `retired` is gone from it.",
                        },
                        "created_at": {"type": "string", "format": "date-time"},
                        "retired_at": _TIME,
                    },
                },
                "SigningKeyPage": {
                    "type": "object",
                    "required": ["items", "next"],
                    "additionalProperties": False,
                    "properties": {
                        "items": {"type": "array", "items": _ref("SigningKey")},
                        "next": {"type": ["string", "null"]},
                    },
                },
                "RotateSigningKey": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "alg": {
                            "type": "string",
                            "description": "EdDSA (the default), ES256 or RS256; also "
                            "ed25519, es256, rs256, in any case.",
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
                                "properties": {"kid": {"type": "string"}, "retired_at": _TIME},
                            },
                        },
                    },
                },
                "RotateApiKey": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "grace": {
                            **_DURATION,
                            "description": "Keep the old key working this long (default: it "
                            "stops at once).",
                        }
                    },
                },
            },
        },
    }
