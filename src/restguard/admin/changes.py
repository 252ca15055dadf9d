"""The audit line of an admin change (the REST API's and the console's alike): who (the admin
key's id), what (``admin <action> <target>``), with the status sent; ``time`` says when.

Never a secret: targets are record ids. Public ids such as ``rg_ci_...`` (clients) and
``rg_us_...`` (users) stay readable, so the log tells which record changed; anything shaped like
an issued secret (``tokens.PREFIXES``) is redacted all the same. The change has happened when
its line is written: a log that cannot take it counts the loss itself (``/readyz``, metrics),
the server's log names the change, and the answer stands.
"""

from __future__ import annotations

import logging

from restguard.audit import decision_event, send
from restguard.errors import AuthError
from restguard.guard import Guard
from restguard.tokens import redact_secrets
from restguard.types import RequestView

_log = logging.getLogger("restguard.admin")


def record_change(
    guard: Guard, view: RequestView, admin_id: str, action: str, target: str, status: int
) -> None:
    event = decision_event(
        guard.clock,
        view,
        guard.clock.monotonic(),
        route="admin",
        status=status,
        error=None,
        auth_method="api_key",
        credential_id=admin_id,
        detail=f"admin {action} {redact_secrets(target)}",
    )
    try:
        send(event, guard.sinks)
    except AuthError:
        _log.error("admin: the audit line of %s %s was lost", action, redact_secrets(target))
