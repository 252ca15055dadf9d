"""The audit log's page: decisions newest first (``restguard.manage.audit``, as ``restguard
audit`` and ``GET /api/audit`` read them), a GET filter form, and a link to the next page
following the service's cursor. A log that is off (``[audit] path = ""``) says so (409)."""

from __future__ import annotations

from urllib.parse import urlencode

from restguard.admin.console import pages_audit
from restguard.admin.console.kinds import Ctx, Notice, Page, problem
from restguard.admin.console.web import Answer
from restguard.manage import audit
from restguard.manage.errors import Conflict, Invalid, ManageError

PAGE_SIZE = 50
#: The filter form's fields (the admin-changes box sends ``admin=true``).
FILTERS = ("outcome", "status", "method", "auth_method", "credential_id", "path_prefix", "admin")
AUTH_METHODS = ("", "api_key", "signature", "jwt", "oauth2", "oauth1")


def _status(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 3:
        raise Invalid("must be an HTTP status code (100 to 599)", field="status")
    return int(value)


async def audit_page(ctx: Ctx, notice: Notice) -> Answer:
    given = {name: v.strip() for name in FILTERS if (v := ctx.query(name) or "").strip()}
    if given.get("admin") not in (None, "true"):
        given.pop("admin")
    after = ctx.query("after")
    status, items, next_link, error, off = notice.status, [], None, notice.error, None
    try:
        filters = audit.check_filters(
            outcome=given.get("outcome"),
            status=_status(given.get("status")),
            method=given.get("method"),
            auth_method=given.get("auth_method"),
            credential_id=given.get("credential_id"),
            path_prefix=given.get("path_prefix"),
            admin=given.get("admin"),
        )
        data = await audit.listing(ctx.services.audit_path, filters, limit=PAGE_SIZE, after=after)
    except Conflict as exc:
        status, off = exc.status, f"No audit log is kept: {exc.message}."
    except ManageError as exc:
        status, error = exc.status, problem(exc)
    else:
        items = data["items"]
        if data["next"] is not None:
            next_link = "/audit?" + urlencode({**given, "after": data["next"]})
    body = pages_audit.audit(
        items,
        given,
        ctx.logout,
        outcomes=("", *audit.OUTCOMES),
        auth_methods=AUTH_METHODS,
        next_link=next_link,
        first=after is not None,
        error=error,
        off=off,
    )
    return status, body, []


PAGES: tuple[Page, ...] = (Page("/audit", audit_page),)
