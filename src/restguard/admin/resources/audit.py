"""``/api/audit``: the decision log, newest first, filtered (``restguard.manage.audit``)."""

from __future__ import annotations

from typing import Any

from restguard.admin.call import Answer, Call, Endpoint, paging
from restguard.admin.call import whole_number as number
from restguard.admin.schema import GUARDED, LIMIT, errors, json_answer, ref
from restguard.manage import audit

_FILTERS = (
    "outcome",
    "status",
    "method",
    "auth_method",
    "credential_id",
    "route",
    "path_prefix",
    "since",
    "until",
    "admin",
)


async def list_decisions(call: Call) -> Answer:
    q = paging(call, *_FILTERS)
    filters = audit.check_filters(
        outcome=q.get("outcome"),
        status=number(q.get("status"), "status"),
        method=q.get("method"),
        auth_method=q.get("auth_method"),
        credential_id=q.get("credential_id"),
        route=q.get("route"),
        path_prefix=q.get("path_prefix"),
        since=q.get("since"),
        until=q.get("until"),
        admin=q.get("admin"),
    )
    data = await audit.listing(
        call.services.audit_path,
        filters,
        limit=number(q.get("limit"), "limit"),
        after=q.get("after"),
    )
    return 200, data, []


ENDPOINTS: list[Endpoint] = [("/api/audit", {"GET": list_decisions})]


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


_TIME = {"type": "string", "format": "date-time"}

PATHS: dict[str, Any] = {
    "/api/audit": {
        "get": {
            "operationId": "listDecisions",
            "summary": "The decision log (one line per request decided, never a secret), "
            "newest first",
            "description": "Reads the JSON-lines file `[audit] path` names; broken lines are "
            "skipped, and an absent file is an empty page. With the log off "
            '(`[audit] path = ""`) the answer is 409; a file that cannot be read, 503. '
            "Lines reach the file within a quarter of a second of their decision.\n\n"
            "One page reads at most "
            f"{audit.MAX_SCAN_BYTES // (1024 * 1024)} MiB of the file, backwards from the "
            "cursor: it ends as soon as `limit` lines match, or at that cap. So a page may "
            "hold fewer than `limit` items (even none) while `next` is not null; follow "
            "`next` until it is null. Pages cover every line exactly once, newest first, "
            "however many lines are written meanwhile.",
            "parameters": [
                _query("outcome", {"type": "string", "enum": list(audit.OUTCOMES)}, "Exactly."),
                _query(
                    "status",
                    {"type": "integer", "minimum": 100, "maximum": 599},
                    "The status the client received.",
                ),
                _query("method", {"type": "string"}, "The HTTP method (any case)."),
                _query(
                    "auth_method",
                    {"type": "string"},
                    "The method that authenticated: api_key, signature, jwt, oauth2, oauth1.",
                ),
                _query("credential_id", {"type": "string"}, "Exactly."),
                _query("route", {"type": "string"}, "The matched route's path pattern."),
                _query("path_prefix", {"type": "string"}, "The request path starts with it."),
                _query("since", _TIME, "RFC 3339, with its offset: lines at or after it."),
                _query("until", _TIME, "RFC 3339, with its offset: lines before it."),
                _query(
                    "admin",
                    {"type": "string", "enum": ["true", "false"]},
                    "true: only the admin API's changes (`detail` starts with `admin `); "
                    "false: every other line.",
                ),
                LIMIT,
                {
                    "name": "after",
                    "in": "query",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    "description": "The `next` cursor of the previous page (opaque).",
                },
            ],
            "responses": {
                "200": json_answer(ref("DecisionPage"), "One page of decisions."),
                **errors(*GUARDED, 409),
            },
        }
    },
}

_NULLABLE = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Decision": {
        "type": "object",
        "required": list(audit.FIELDS),
        "additionalProperties": False,
        "properties": {
            "time": {"type": "string", "description": "When it was decided (ISO 8601)."},
            "method": {"type": "string"},
            "path": {"type": "string", "description": "Credentials in it redacted."},
            "route": _NULLABLE,
            "outcome": {"type": "string", "enum": list(audit.OUTCOMES)},
            "status": {"type": "integer", "description": "The status the client received."},
            "error": _NULLABLE,
            "auth_method": _NULLABLE,
            "credential_id": _NULLABLE,
            "client": {"type": "string"},
            "detail": {
                **_NULLABLE,
                "description": "For the admin API's changes: `admin <action> <record id>`.",
            },
            "duration_ms": {"type": "number"},
            "upstream": {
                **_NULLABLE,
                "description": "What became of an allowed request at the gateway.",
            },
            "request_id": {
                **_NULLABLE,
                "description": "The request's `X-Request-Id` (a trusted proxy's, else "
                "restguard's own), as the upstream received it.",
            },
        },
    },
    "DecisionPage": {
        "type": "object",
        "required": ["items", "next"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "items": ref("Decision")},
            "next": {
                "type": ["string", "null"],
                "description": "Pass as `after` for the next (older) page; null at the start "
                "of the log.",
            },
        },
    },
}
