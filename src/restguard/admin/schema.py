"""Pieces of the OpenAPI 3.1 document (``admin/openapi.py``) that every resource module
uses to describe its paths next to its handlers."""

from __future__ import annotations

from typing import Any

from restguard.manage.apikeys import ADMIN_SCOPE
from restguard.manage.pages import MAX_LIMIT

MAX_BODY_BYTES = 64 * 1024

TIME = {"type": ["string", "null"], "format": "date-time"}
SCOPES = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "pattern": "^[\\x21\\x23-\\x5b\\x5d-\\x7e]+$"},
    "maxItems": 100,
    "description": "Scopes (RFC 6749 §3.3 scope-tokens), each as its own item.",
}
DURATION = {
    "type": ["string", "null"],
    "pattern": "^[1-9][0-9]*(ms|s|m|h|d)$",
    "examples": ["30d", "12h", "90s"],
    "description": "A duration: a whole number with ms, s, m, h or d, at most 36500d (null: none).",
}
LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
}
AFTER = {
    "name": "after",
    "in": "query",
    "schema": {"type": "string"},
    "description": "The `next` cursor of the previous page.",
}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The `etag` read before: the change is made only if the record still "
    "has it (412 otherwise). `*` matches any version.",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def id_param(what: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"},
        "description": what,
    }


def json_answer(
    schema: dict[str, Any], description: str, headers: tuple[str, ...] = ()
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        answer["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return answer


def json_body(schema: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": ref(schema)}}}


_ERRORS = {
    400: "Malformed input; `field` names it.",
    401: "No API key, or an invalid one.",
    403: f"The API key does not hold `{ADMIN_SCOPE}`.",
    404: "No record has that id.",
    405: "The endpoint does not answer this method.",
    409: "The record exists already, or its state forbids this.",
    412: "`If-Match` names a version the record no longer has.",
    413: f"The body is larger than {MAX_BODY_BYTES} bytes.",
    415: "The body is not `application/json`.",
    429: "Too many failed attempts from this address; see `Retry-After`.",
    500: "The server could not do it (its master key does not open the store); its log says why.",
    503: "The store is unavailable (fail closed).",
}
#: What every guarded call may answer.
GUARDED = (400, 401, 403, 429, 503)
#: ... and every call with a body.
WITH_BODY = (*GUARDED, 413, 415)


def errors(*statuses: int) -> dict[str, Any]:
    return {str(s): json_answer(ref("Error"), _ERRORS[s]) for s in statuses}


def page_of(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "items": ref(item)},
            "next": {
                "type": ["string", "null"],
                "description": "Pass as `after` for the next page; null at the end.",
            },
        },
    }
