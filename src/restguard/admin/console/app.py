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
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Final
from urllib.parse import parse_qsl

from restguard.admin.console import pages
from restguard.admin.console.timeline import Timeline, Totals
from restguard.asgi import Receive, Scope, Send
from restguard.clock import Clock
from restguard.errors import AuthError, BackendUnavailable, RateLimited
from restguard.guard import Guard
from restguard.keys.sealing import Sealer
from restguard.manage import apikeys
from restguard.manage.apikeys import ADMIN_SCOPE
from restguard.manage.errors import ManageError
from restguard.manage.values import duration
from restguard.oauth2.web_tokens import WebTokenInvalid, WebTokens
from restguard.store.ports import ApiKeyRecord, Store
from restguard.types import RequestView

SESSION_TTL: Final = 8 * 3600
FORM_TTL: Final = 3600
MAX_FORM_BYTES: Final = 16 * 1024
_FORMS: Final = ("create", "revoke", "rotate", "logout")
_PAGES: Final = ("/", "/apikeys")
_POSTS: Final = re.compile(r"/login|/logout|/apikeys(?:/[A-Za-z0-9-]{1,64}/(?:revoke|rotate))?")
_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{22}")
_EXPIRED: Final = "The form expired or came from elsewhere; reload it."


class _Refused(Exception):
    """A request the console answers with an error page."""

    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(text)
        self.status, self.title, self.text = status, title, text


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
    ) -> None:
        self.store, self.clock, self.guard = store, clock, guard
        self.sealer, self.timeline, self.totals = sealer, timeline, totals

    # --- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = _Request(scope)
        try:
            status, body, headers = await self._answer(request, receive)
        except _Refused as exc:
            status, body, headers = exc.status, pages.problem(exc.title, exc.text), []
        except BackendUnavailable:
            status, body, headers = (
                503,
                pages.problem("Unavailable", "The store is unavailable; try again shortly."),
                [],
            )
        all_headers = [*pages.HEADERS, (b"content-length", str(len(body)).encode()), *headers]
        await send({"type": "http.response.start", "status": status, "headers": all_headers})
        await send({"type": "http.response.body", "body": b"" if request.head else body})

    async def _answer(
        self, request: _Request, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        method, path = request.method, request.path
        if method in ("GET", "HEAD"):
            if path == "/login":
                return self._login_page(request)
            if path not in _PAGES:  # (a browser's /favicon.ico is not sent to sign in)
                raise _Refused(404, "Not found", "There is no such page.")
            session = await self._session(request)
            if session is None:
                return _redirect("/login", [self._cookie(request, "", 0)])
            key, nonce = session
            if path == "/":
                minutes = self.timeline.minutes()
                return (
                    200,
                    pages.dashboard(minutes, self.totals(), self._token("logout", nonce)),
                    [],
                )
            return await self._apikeys_page(request, nonce)  # "/apikeys"
        if method != "POST":
            raise _Refused(405, "Not allowed", "This page does not take that method.")
        if not _POSTS.fullmatch(path):
            raise _Refused(404, "Not found", "There is no such page.")
        _same_origin(request)
        form = await _form(request, receive)
        if path == "/login":
            return await self._login(request, form)
        session = await self._session(request)
        if session is None:
            return _redirect("/login", [self._cookie(request, "", 0)])
        key, nonce = session
        if path == "/logout":
            self._check(form, "logout", nonce)
            return _redirect("/login", [self._cookie(request, "", 0)])
        if path == "/apikeys":
            self._check(form, "create", nonce)
            return await self._create_key(request, form, key, nonce)
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "apikeys" and parts[3] in ("revoke", "rotate"):
            self._check(form, parts[3], nonce)
            return await self._change_key(request, form, key, nonce, parts[2], parts[3])
        raise _Refused(404, "Not found", "There is no such page.")

    # --- signing in and out -----------------------------------------------------------------

    def _cookie_names(self, request: _Request) -> tuple[str, str]:
        if request.secure:
            return "__Host-restguard_admin", "__Host-restguard_admin_login"
        return "restguard_admin", "restguard_admin_login"

    def _cookie(
        self, request: _Request, value: str, max_age: int, *, login: bool = False
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
            raise _Refused(
                403, "Form expired", "The form expired or came from elsewhere; reload it."
            )

    def _login_page(
        self, request: _Request, error: str | None = None, status: int = 200
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        # One pre-session nonce per browser, kept while it lasts: a second tab's login page
        # (or any other GET of it) must not void the first one's form.
        nonce = request.cookies.get(self._cookie_names(request)[1], "")
        if not _NONCE.fullmatch(nonce):
            nonce = secrets.token_urlsafe(16)
        cookie = self._cookie(request, nonce, FORM_TTL, login=True)
        return status, pages.login(self._token("login", nonce), error), [cookie]

    async def _login(
        self, request: _Request, form: dict[str, str]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        nonce = request.cookies.get(self._cookie_names(request)[1], "")
        if not nonce:
            raise _Refused(
                403, "Form expired", "The form expired or came from elsewhere; reload it."
            )
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
        return _redirect(
            "/",
            [self._cookie(request, session, SESSION_TTL), self._cookie(request, "", 0, login=True)],
        )

    async def _session(self, request: _Request) -> tuple[ApiKeyRecord, str] | None:
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
        if not isinstance(key_id, str) or not isinstance(nonce, str):
            return None
        record = await self.store.api_keys.get(key_id)
        if record is None or not _admin(record, now):
            return None
        return record, nonce

    # --- API keys ---------------------------------------------------------------------------

    async def _apikeys_page(
        self,
        request: _Request,
        nonce: str,
        *,
        status: int = 200,
        message: str | None = None,
        error: str | None = None,
        secret: str = "",
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        state = request.query.get("state") or None
        if state not in (None, *apikeys.STATES):
            state = None
        listing = await apikeys.listing(self.store, self.clock.now(), state_is=state, limit=1000)
        forms = {f: self._token(f, nonce) for f in _FORMS}
        body = pages.apikeys(
            listing["items"],
            forms,
            forms["logout"],
            state=state,
            message=message,
            error=error,
            secret=secret,
        )
        return status, body, []

    async def _create_key(
        self, request: _Request, form: dict[str, str], admin: ApiKeyRecord, nonce: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            data = await apikeys.create(
                self.store,
                self.clock.now(),
                form.get("name", ""),
                form.get("scopes", "").split(),
                duration(form.get("expires_in") or None, "expires_in"),
            )
        except ManageError as exc:
            text = f"{exc.field}: {exc.message}" if exc.field else exc.message
            return await self._apikeys_page(request, nonce, status=400, error=text)
        self._changed(request, admin, "apikey.create", data["id"])
        secret = pages.new_secret(f"New key {data['id']} ({data['name']})", data, "key")
        return await self._apikeys_page(request, nonce, secret=secret)

    async def _change_key(
        self,
        request: _Request,
        form: dict[str, str],
        admin: ApiKeyRecord,
        nonce: str,
        key_id: str,
        verb: str,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        now = self.clock.now()
        etag = form.get("etag") or None
        try:
            if verb == "revoke":
                data = await apikeys.revoke(self.store, now, key_id, etag)
                self._changed(request, admin, "apikey.revoke", key_id)
                return await self._apikeys_page(request, nonce, message=f"Key {key_id} revoked.")
            data = await apikeys.rotate(self.store, now, key_id, None, etag)
        except ManageError as exc:
            return await self._apikeys_page(request, nonce, status=exc.status, error=exc.message)
        self._changed(request, admin, "apikey.rotate", f"{key_id} -> {data['id']}")
        secret = pages.new_secret(f"Key {key_id} rotated: the new key {data['id']}", data, "key")
        return await self._apikeys_page(request, nonce, secret=secret)

    def _changed(self, request: _Request, admin: ApiKeyRecord, action: str, target: str) -> None:
        """An audit line per change, as the API writes (who, what, which record)."""
        self.guard.record(
            RequestView(request.method, request.path, client=request.client),
            status=200,
            started=self.clock.monotonic(),
            auth_method="api_key",
            credential_id=admin.id,
            detail=f"admin {action} {target} (console)",
        )


def _admin(record: ApiKeyRecord, now: datetime) -> bool:
    return (
        ADMIN_SCOPE in record.scopes
        and not (record.revoked_at and record.revoked_at <= now)
        and not (record.expires_at and record.expires_at <= now)
    )


class _Request:
    """What the console reads of an ASGI request."""

    def __init__(self, scope: Scope) -> None:
        self.method: str = scope["method"]
        self.head = self.method == "HEAD"
        self.path: str = scope["path"]
        self.secure = scope.get("scheme") == "https"
        client = scope.get("client")
        self.client: str = client[0] if client else ""
        self.headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        self.cookies: dict[str, str] = {}
        for name, value in self.headers:
            if name == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    key, sep, val = part.strip().partition("=")
                    if sep and key not in self.cookies:
                        self.cookies[key] = val
        try:
            raw = scope.get("query_string", b"").decode("ascii")
            self.query = dict(parse_qsl(raw, keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            self.query = {}

    def header(self, name: bytes) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return values[0].decode("latin-1") if len(values) == 1 else None


def _same_origin(request: _Request) -> None:
    """A POST from another site is refused whatever it carries (with SameSite=Strict cookies
    and CSRF tokens, a second line of defence): ``Sec-Fetch-Site`` must be same-origin (or
    none: typed by the user), ``Origin`` must be this origin."""
    site = request.header(b"sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise _Refused(403, "Refused", "This form may only be sent from this console.")
    origin = request.header(b"origin")
    host = request.header(b"host")
    if origin is not None:
        expected = f"{'https' if request.secure else 'http'}://{host}"
        if host is None or origin != expected:
            raise _Refused(403, "Refused", "This form may only be sent from this console.")


async def _form(request: _Request, receive: Receive) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most ``MAX_FORM_BYTES``, each field
    once (400 otherwise)."""
    content_type = (request.header(b"content-type") or "").split(";")[0].strip().lower()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise _Refused(413, "Too large", "The form is too large.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = b"".join(chunks)
    if raw and content_type != "application/x-www-form-urlencoded":
        raise _Refused(415, "Not a form", "Send the page's own form.")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise _Refused(400, "Bad form", "The form does not parse.") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise _Refused(400, "Bad form", f"The field {key!r} is given twice.")
        form[key] = value
    return form


def _redirect(
    location: str, cookies: list[tuple[bytes, bytes]]
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """303 See Other (RFC 9110 §15.4.4: the browser follows it with a GET)."""
    return 303, b"", [(b"location", location.encode("ascii")), *cookies]
