"""The audit log's page: the filter form (GET), the decisions, the next page's link."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from restguard.admin.console.pages import alerts, cells, choice, code, e, layout, table


def _text(ident: str, label: str, value: str) -> str:
    return (
        f'<div><label for="{ident}">{e(label)}</label><input id="{ident}" name="{ident}" '
        f'type="text" maxlength="200" value="{e(value)}"></div>'
    )


def audit(
    items: Sequence[dict[str, Any]],
    given: Mapping[str, str],
    logout: str,
    *,
    outcomes: Sequence[str],
    auth_methods: Sequence[str],
    next_link: str | None,
    first: bool,
    error: str | None = None,
    off: str | None = None,
) -> bytes:
    """Decisions newest first, each as the log holds it (never a secret: the log redacts)."""
    admin = " checked" if given.get("admin") == "true" else ""
    form = (
        '<form class="filters" method="get" action="/audit">'
        f"<div>{choice('outcome', 'Outcome', outcomes, given.get('outcome', ''))}</div>"
        + _text("status", "Status", given.get("status", ""))
        + _text("method", "Method", given.get("method", ""))
        + f"<div>{choice('auth_method', 'Auth method', auth_methods, given.get('auth_method', ''))}"
        "</div>"
        + _text("credential_id", "Credential id", given.get("credential_id", ""))
        + _text("path_prefix", "Path prefix", given.get("path_prefix", ""))
        + '<div><label class="check"><input type="checkbox" id="admin" name="admin" '
        f'value="true"{admin}>Admin changes only</label></div>'
        '<button class="secondary" type="submit">Filter</button></form>'
    )
    rows = [
        "<tr>"
        + cells(
            e(i["time"]),
            e(i["method"]),
            code(i["path"]),
            e(i["outcome"]),
            str(int(i["status"])),
            e(i["auth_method"] or ""),
            code(i["credential_id"] or ""),
            e(i["client"]),
            e(i["detail"] or ""),
        )
        + "</tr>"
        for i in items
    ]
    pager = ""
    if first:
        pager += '<a href="/audit">Newest</a> '
    if next_link is not None:
        pager += f'<a id="next-page" href="{e(next_link)}" rel="next">Next page (older)</a>'
    if off is not None:
        listing = f'<p role="alert" id="audit-off">{e(off)}</p>'
    else:
        listing = table(
            "audit",
            "Decisions, newest first",
            (
                "time",
                "method",
                "path",
                "outcome",
                "status",
                "auth",
                "credential",
                "client",
                "detail",
            ),
            rows,
        ) + (f'<p class="pager">{pager}</p>' if pager else "")
    body = (
        f"<h1>Audit log</h1>{alerts(None, error)}"
        f"<section>{form}</section><section>{listing}</section>"
    )
    return layout("Audit log", body, current="/audit", logout=logout)
