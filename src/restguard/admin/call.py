"""What the admin API's resource modules (``admin/resources/``) see of a request (``Call``),
what they answer (``Answer``), and what they act on (``Services``).

A handler takes a parsed ``Call`` and returns ``(status, data, headers)``; it validates through
the service layer (``restguard.manage``), whose ``ManageError`` the API turns into the
contract's error shape. Each change is recorded with ``call.changed``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restguard.clock import Clock
from restguard.guard import Decision
from restguard.keys.sealing import Sealer
from restguard.manage.errors import Invalid
from restguard.store.ports import Store
from restguard.types import RequestView

#: API key ids in paths: letters, digits, '-' (anything else is 404). Kinds whose ids hold
#: other characters (``rg_ci_...``, usernames) give their own patterns.
ID = "[A-Za-z0-9-]{1,64}"
_DIGITS = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class Services:
    """What handlers act on. ``sealer`` opens the master key per use (as the CLI does: the key
    file may change); ``audit`` writes a change's line (who, what, on which record);
    ``public_url`` is restguard's own issuer (never trusted as an external one);
    ``audit_path`` the audit log's file (None: no log is kept)."""

    store: Store
    clock: Clock
    sealer: Callable[[], Sealer]
    audit: Callable[[Call, str, str], None]
    public_url: str | None = None
    audit_path: Path | None = None


@dataclass
class Call:
    """One admin API request, parsed: query parameters (each once), the JSON body's object
    (``{}`` without a body), ``If-Match``, the path's captured ids."""

    method: str
    params: dict[str, str]
    body: dict[str, Any]
    if_match: str | None
    view: RequestView
    decision: Decision
    services: Services
    path_args: tuple[str, ...] = ()
    changes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def admin(self) -> str:
        """Who is acting: the admin key's id."""
        return self.decision.principal.client_id

    def take(self, allowed: tuple[str, ...]) -> dict[str, str]:
        """The query parameters, refusing any not in ``allowed``."""
        for key in self.params:
            if key not in allowed:
                raise Invalid(
                    f"unknown query parameter (allowed: {', '.join(allowed) or 'none'})",
                    field=key,
                )
        return self.params

    def fields(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
        """The body's fields, refusing unknown ones and naming a missing required one."""
        for key in self.body:
            if key not in allowed:
                raise Invalid(f"unknown field (allowed: {', '.join(allowed) or 'none'})", field=key)
        for key in required:
            if key not in self.body:
                raise Invalid("is required", field=key)
        return self.body

    def changed(self, action: str, target: str) -> None:
        """Record a change in the audit log (``action`` such as ``apikey.revoke``; ``target``
        the record's id: never a secret)."""
        self.services.audit(self, action, target)


Answer = tuple[int, Any, list[tuple[bytes, bytes]]]
Handler = Callable[[Call], Awaitable[Answer]]
#: A path (a regular expression, matched whole, its groups the ids) and its handlers by method.
Endpoint = tuple[str, dict[str, Handler]]


def whole_number(value: str | None, name: str) -> int | None:
    """A query parameter's non-negative integer, or None when absent."""
    if value is None:
        return None
    if not _DIGITS.fullmatch(value):  # ASCII only: str.isdigit admits "²" and "①"
        raise Invalid("must be a whole number", field=name)
    return int(value)


def paging(call: Call, *more: str) -> dict[str, str]:
    """The query of a listing: ``limit`` and ``after`` and the filters ``more`` names."""
    return call.take(("limit", "after", *more))


def etag_header(data: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return [(b"etag", data["etag"].encode())]


def created_at(location: str, data: dict[str, Any] | None = None) -> list[tuple[bytes, bytes]]:
    """A 201's headers: ``Location``, and ``ETag`` when the record has one."""
    headers = [(b"location", location.encode())]
    if data is not None and "etag" in data:
        headers += etag_header(data)
    return headers
