"""The admin console's ASGI application (every admin-listener path that is not ``/api/``,
``/healthz``, ``/readyz`` or ``/metrics``).

Signing in: an admin key (scope ``restguard:admin``) typed into the login form is decided by
the admin guard, exactly as an ``/api/`` call carrying it would be (the API-key method, the
failed-attempt lockout per client address, the audit log). The session is a cookie holding
the key's id and a nonce, sealed with the master key (``oauth2/web_tokens.py``): ``HttpOnly``,
``SameSite=Strict``, ``Secure`` (and ``__Host-``) over TLS, 8 hours. Every page reads the key
again, so revoking the key (or its expiry) ends its sessions at once.

Every form carries a CSRF token sealed for its purpose and bound to the session's nonce (the
login form's to a pre-session cookie); a POST whose ``Origin`` or ``Sec-Fetch-Site`` names
another site is refused too. Changes go through the service layer (``restguard.manage``), as
the CLI's and the API's do, and each writes an audit line.

The records' pages and their forms are listed in ``PAGES`` and ``ACTIONS`` (``kinds``: one
CSRF purpose per form; ``credentials``, ``accounts`` and ``auditlog`` hold them, and the
``pages_*`` modules their HTML). This module signs in, checks each form and routes it.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from restguard.admin.changes import record_change
from restguard.admin.console import accounts, auditlog, credentials, pages
from restguard.admin.console.kinds import Action, Ctx, Notice, Page, Services, problem
from restguard.admin.console.timeline import Timeline, Totals
from restguard.admin.console.web import Answer, Refused, Request, read_form, redirect, same_origin
from restguard.asgi import Receive, Scope, Send
from restguard.clock import Clock
from restguard.edge.view import Network
from restguard.errors import AuthError, BackendUnavailable, RateLimited
from restguard.guard import Guard
from restguard.keys.sealing import Sealer
from restguard.manage.apikeys import ADMIN_SCOPE
from restguard.manage.errors import ManageError
from restguard.oauth2.web_tokens import WebTokenInvalid, WebTokens
from restguard.store.ports import ApiKeyRecord, Store
from restguard.types import RequestView

_log = logging.getLogger("restguard.admin")
SESSION_TTL: Final = 8 * 3600
FORM_TTL: Final = 3600
#: Every records' page by its path, and every change's form (``kinds``).
PAGES: Final[dict[str, Page]] = {
    p.path: p for p in (*credentials.PAGES, *accounts.PAGES, *auditlog.PAGES)
}
ACTIONS: Final[tuple[Action, ...]] = (*credentials.ACTIONS, *accounts.ACTIONS)
_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{22}")
_EXPIRED: Final = "The form expired or came from elsewhere; reload it."


class Console:
    """The console's pages; ``guard`` is the admin API's (``admin.api.admin_guard``)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        guard: Guard,
        sealer: Callable[[], Sealer],
        timeline: Timeline,
        totals: Callable[[], Totals],
        *,
        public_url: str | None = None,
        audit_path: Path | None = None,
        trusted_proxies: Sequence[Network] = (),
    ) -> None:
        self.trusted_proxies = tuple(trusted_proxies)
        self._signed_out: dict[str, float] = {}  # session nonce -> when it would have expired
        self.store, self.clock, self.guard = store, clock, guard
        self.sealer, self.timeline, self.totals = sealer, timeline, totals
        self.services = Services(store, clock, sealer, public_url, audit_path)

    # --- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, self.trusted_proxies)
        try:
            status, body, headers = await self._answer(request, receive)
        except Refused as exc:
            status, body, headers = exc.status, pages.problem(exc.title, exc.text), []
        except BackendUnavailable:
            status, body, headers = (
                503,
                pages.problem("Unavailable", "The store is unavailable; try again shortly."),
                [],
            )
        except Exception:  # a bug: the console's own 500 page, with its headers; never a trace
            _log.exception("admin console %s %s failed", request.method, request.path)
            text = "The console could not do this; the server's log says why."
            status, body, headers = 500, pages.problem("Server error", text), []
        all_headers = [*pages.HEADERS, (b"content-length", str(len(body)).encode()), *headers]
        await send({"type": "http.response.start", "status": status, "headers": all_headers})
        await send({"type": "http.response.body", "body": b"" if request.head else body})

    async def _answer(self, request: Request, receive: Receive) -> Answer:
        method, path = request.method, request.path
        if method in ("GET", "HEAD"):
            if path == "/login":
                return self._login_page(request)
            if (
                path != "/" and path not in PAGES
            ):  # (a browser's /favicon.ico is not sent to sign in)
                raise Refused(404, "Not found", "There is no such page.")
            session = await self._session(request)
            if session is None:
                return redirect("/login", [self._cookie(request, "", 0)])
            key, nonce = session
            if path == "/":
                minutes = self.timeline.minutes()
                return (
                    200,
                    pages.dashboard(minutes, self.totals(), self._token("logout", nonce)),
                    [],
                )
            return await PAGES[path].render(self._ctx(request, key, nonce), Notice())
        if method != "POST":
            raise Refused(405, "Not allowed", "This page does not take that method.")
        found = _action(path)
        if found is None and path not in ("/login", "/logout"):
            raise Refused(404, "Not found", "There is no such page.")
        same_origin(request)
        form = await read_form(request, receive)
        if path == "/login":
            return await self._login(request, form)
        session = await self._session(request)
        if session is None:
            return redirect("/login", [self._cookie(request, "", 0)])
        key, nonce = session
        if found is None:  # "/logout"
            self._check(form, "logout", nonce)
            self._ended(nonce)
            return redirect("/login", [self._cookie(request, "", 0)])
        act, ids = found
        self._check(form, act.purpose, nonce)
        ctx = self._ctx(request, key, nonce, form)
        try:
            notice = await act.run(ctx, ids)
        except ManageError as exc:  # refused: nothing changed; the page says why
            notice = Notice(exc.status, error=problem(exc))
        return await PAGES[act.page].render(ctx, notice)

    def _ctx(
        self, request: Request, admin: ApiKeyRecord, nonce: str, form: dict[str, str] | None = None
    ) -> Ctx:
        return Ctx(
            self.services,
            request,
            lambda purpose: self._token(purpose, nonce),
            lambda action, target: self._changed(request, admin, action, target),
            form or {},
        )

    # --- signing in and out -----------------------------------------------------------------

    def _cookie_names(self, request: Request) -> tuple[str, str]:
        if request.secure:
            return "__Host-restguard_admin", "__Host-restguard_admin_login"
        return "restguard_admin", "restguard_admin_login"

    def _cookie(
        self, request: Request, value: str, max_age: int, *, login: bool = False
    ) -> tuple[bytes, bytes]:
        name = self._cookie_names(request)[1 if login else 0]
        text = f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
        if request.secure:
            text += "; Secure"
        return b"set-cookie", text.encode("ascii")

    def _web(self) -> WebTokens:
        return WebTokens(self.sealer())

    def _token(self, form: str, nonce: str) -> str:
        return self._web().make("admin csrf " + form, {"n": nonce}, self.clock.now(), FORM_TTL)

    def _check(self, form: dict[str, str], purpose: str, nonce: str) -> None:
        """The form's CSRF token must be this purpose's, bound to this session (or login)."""
        try:
            data = self._web().open("admin csrf " + purpose, form.get("csrf", ""), self.clock.now())
        except WebTokenInvalid:
            data = {}
        bound = data.get("n")
        if not isinstance(bound, str) or not hmac.compare_digest(bound, nonce):
            raise Refused(403, "Form expired", _EXPIRED)

    def _login_page(self, request: Request, error: str | None = None, status: int = 200) -> Answer:
        # One pre-session nonce per browser, kept while it lasts: a second tab's login page
        # (or any other GET of it) must not void the first one's form.
        nonce = request.cookies.get(self._cookie_names(request)[1], "")
        if not _NONCE.fullmatch(nonce):
            nonce = secrets.token_urlsafe(16)
        cookie = self._cookie(request, nonce, FORM_TTL, login=True)
        return status, pages.login(self._token("login", nonce), error), [cookie]

    async def _login(self, request: Request, form: dict[str, str]) -> Answer:
        nonce = request.cookies.get(self._cookie_names(request)[1], "")
        if not nonce:
            raise Refused(403, "Form expired", _EXPIRED)
        self._check(form, "login", nonce)
        key = form.get("key", "").strip()
        view = RequestView(
            "POST",
            "/api/console/login",
            headers=((b"x-api-key", key.encode("utf-8", "replace")),) if key else (),
            client=request.client,
            scheme="https" if request.secure else "http",
        )
        try:
            decision = await self.guard.decide(view)
        except BackendUnavailable:
            raise
        except RateLimited as exc:
            status, text = 429, f"Too many failed attempts; try again in {exc.retry_after} s."
            return self._login_page(request, text, status)
        except AuthError as exc:
            text = (
                "That key does not hold restguard:admin."
                if exc.status == 403
                else "That is not a valid admin key."
            )
            return self._login_page(request, text, exc.status)
        session = self._web().make(
            "admin session",
            {"k": decision.principal.client_id, "n": secrets.token_urlsafe(16)},
            self.clock.now(),
            SESSION_TTL,
        )
        return redirect(
            "/",
            [self._cookie(request, session, SESSION_TTL), self._cookie(request, "", 0, login=True)],
        )

    def _ended(self, nonce: str) -> None:
        """Sign a session out: its cookie is refused from now on, by this process, even where
        a copy of it survives the browser's (the sealed cookie itself stays valid until it
        expires; revoking the admin key ends every session of it on every instance)."""
        now = time.monotonic()
        self._signed_out = {
            n: t for n, t in self._signed_out.items() if t > now
        }  # (expired sessions forgotten)
        self._signed_out[nonce] = now + SESSION_TTL

    async def _session(self, request: Request) -> tuple[ApiKeyRecord, str] | None:
        """The signed-in admin key and the session's nonce, or None: no or a broken cookie,
        or a key that was revoked, expired or lost its admin scope since."""
        raw = request.cookies.get(self._cookie_names(request)[0])
        if not raw:
            return None
        now = self.clock.now()
        try:
            data = self._web().open("admin session", raw, now)
        except WebTokenInvalid:
            return None
        key_id, nonce = data.get("k"), data.get("n")
        if not isinstance(key_id, str) or not isinstance(nonce, str) or nonce in self._signed_out:
            return None
        record = await self.store.api_keys.get(key_id)
        if record is None or not _admin(record, now):
            return None
        return record, nonce

    # --- audit -------------------------------------------------------------------------

    def _changed(self, request: Request, admin: ApiKeyRecord, action: str, target: str) -> None:
        """An audit line per change, as the API writes (who, what, which record)."""
        view = RequestView(request.method, request.path, client=request.client)
        record_change(self.guard, view, admin.id, action, f"{target} (console)", 200)


def _admin(record: ApiKeyRecord, now: datetime) -> bool:
    return (
        ADMIN_SCOPE in record.scopes
        and not (record.revoked_at and record.revoked_at <= now)
        and not (record.expires_at and record.expires_at <= now)
    )


def _action(path: str) -> tuple[Action, tuple[str, ...]] | None:
    """The change a POST to ``path`` makes, and the record's id in the path."""
    for act in ACTIONS:
        m = act.pattern.fullmatch(path)
        if m is not None:
            return act, m.groups()
    return None
