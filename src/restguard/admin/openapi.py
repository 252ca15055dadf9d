"""The admin API's OpenAPI 3.1 document (``GET /api/openapi.json``), assembled from the parts
each resource module (``admin/resources/``) writes beside its handlers.

Held to the API by the test suite: schemathesis sends requests generated from this document
and checks every answer against it (``tests/integration/test_admin_api_schema.py``), and a test
compares its paths and methods with the API's endpoints.
"""

from __future__ import annotations

from typing import Any

from restguard import __version__
from restguard.admin.resources import ALL
from restguard.admin.schema import json_answer
from restguard.manage.apikeys import ADMIN_SCOPE

OPENAPI_PATH = "/api/openapi.json"


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    paths: dict[str, Any] = {
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {"200": json_answer({"type": "object"}, "The OpenAPI document.")},
            }
        }
    }
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "error_description"],
            "properties": {
                "error": {"type": "string"},
                "error_description": {"type": "string"},
                "field": {"type": "string", "description": "The input at fault."},
            },
        }
    }
    for resource in ALL:
        paths |= resource.PATHS
        schemas |= resource.SCHEMAS
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "restguard admin API",
            "version": __version__,
            "description": "Manage restguard's credentials. Every call but this document needs "
            f"an API key holding `{ADMIN_SCOPE}`, sent as for any API key (`X-API-Key`, "
            "`Authorization: ApiKey` or `Authorization: Bearer`). Errors are "
            '`{"error": ..., "error_description": ...}`; `field` names the input at fault.',
        },
        "security": [{"apiKeyHeader": []}, {"apiKeyBearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "apiKeyBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "rg_ak_..."},
            },
            "headers": {
                "ETag": {
                    "description": "The record's version, for `If-Match`.",
                    "required": True,
                    "schema": {"type": "string"},
                },
                "Location": {
                    "description": "The new record.",
                    "required": True,
                    "schema": {"type": "string"},
                },
            },
            "schemas": schemas,
        },
    }
