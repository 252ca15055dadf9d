"""What every records' page of the console is made of: a ``Page`` (its GET, rendered with the
outcome of the last change, a ``Notice``) and its ``Action``s (one POST form each, with its own
CSRF purpose). The application (``app.py``) signs in, checks the form's token for the action's
purpose and calls ``run``; a ``ManageError`` from the service layer re-renders the page with
the error (its field named) and the error's status, nothing changed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from restguard.admin.console.web import Answer, Request
from restguard.clock import Clock
from restguard.keys.sealing import Sealer
from restguard.manage.errors import ManageError
from restguard.store.ports import Store


@dataclass(frozen=True)
class Services:
    """What the pages use: the same as the admin API's (``admin.call.Services``)."""

    store: Store
    clock: Clock
    sealer: Callable[[], Sealer]
    public_url: str | None = None
    audit_path: Path | None = None


@dataclass(frozen=True)
class Notice:
    """The outcome of the last change, shown at the top of the page."""

    status: int = 200
    message: str | None = None
    error: str | None = None
    secret: str = ""  # the one-time secret's panel (``pages.new_secret``)


@dataclass
class Ctx:
    """One signed-in request: ``token(purpose)`` makes a form's CSRF token for this session;
    ``changed(action, target)`` writes the change's audit line."""

    services: Services
    request: Request
    token: Callable[[str], str]
    changed: Callable[[str, str], None]
    form: dict[str, str] = field(default_factory=dict)

    def tokens(self, *purposes: str) -> dict[str, str]:
        return {p: self.token(p) for p in purposes}

    @property
    def logout(self) -> str:
        return self.token("logout")

    def query(self, name: str, choices: Sequence[str] | None = None) -> str | None:
        """A query parameter (None when empty, or not one of ``choices``)."""
        value = self.request.query.get(name) or None
        if choices is not None and value not in choices:
            return None
        return value

    def field(self, name: str) -> str:
        return self.form.get(name, "")

    def optional(self, name: str) -> str | None:
        return self.form.get(name, "").strip() or None

    def etag(self) -> str | None:
        """The record's version the form was rendered with (its ``If-Match``)."""
        return self.form.get("etag") or None

    def lines(self, name: str) -> list[str]:
        """A textarea's non-empty lines."""
        return [line.strip() for line in self.field(name).splitlines() if line.strip()]

    def checked(self, name: str) -> bool:
        return self.form.get(name) == "on"

    def pem(self, name: str) -> str | None:
        """A pasted PEM (None when empty), with the browser's CRLF line ends."""
        text = self.field(name).replace("\r\n", "\n").strip()
        return text + "\n" if text else None


Render = Callable[[Ctx, Notice], Awaitable[Answer]]
Run = Callable[[Ctx, Sequence[str]], Awaitable[Notice]]


@dataclass(frozen=True)
class Page:
    path: str
    render: Render


@dataclass(frozen=True)
class Action:
    """A POST to a path matching ``pattern`` (its groups: the record's id), checked for the
    ``purpose``'s CSRF token; the page at ``page`` shows the outcome."""

    pattern: re.Pattern[str]
    purpose: str
    page: str
    run: Run


#: The ids in the console's paths (every kind's ids fit; anything else is 404).
ID = r"([A-Za-z0-9_-]{1,64})"


def action(path: str, purpose: str, page: str, run: Run) -> Action:
    """``path`` with ``{id}`` where the record's id goes."""
    return Action(re.compile(re.escape(path).replace(r"\{id\}", ID)), purpose, page, run)


def problem(exc: ManageError) -> str:
    """A refusal as the page shows it, naming the field."""
    return f"{exc.field}: {exc.message}" if exc.field else exc.message


def scopes_of(text: str) -> list[str]:
    return text.split()
