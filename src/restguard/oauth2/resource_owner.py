"""The front channel: ``GET /oauth2/authorize`` (RFC 6749 §4.1.1) and the resource owner's
``/login`` and ``/consent`` pages (CONTRACT "Authorization server endpoints").

The flow. ``/oauth2/authorize`` checks the request (``authorization_request.py``) and seals it
(``web_tokens.py``: the browser carries it, nothing is stored until a code is issued). Without a
session the browser goes to ``/login?request=...``; with one, or after signing in, to
``/consent?request=...``, which issues the code at once when the user's remembered consent to
this client covers the scopes, and shows the consent form otherwise. The code goes to the
registered redirect URI with ``state`` untouched and ``iss`` (RFC 9207 §2).

What the user can grant is what the client asked for and the user may grant (``user create
--scope``); the consent form starts with all of it ticked and grants the ticked subset; a
posted scope outside it is refused (no escalation through the form).

Security (RFC 6749 §10.12, RFC 9700 §4.7): every POST carries a CSRF token sealed for its form
and bound to the browser -- the login form's to a pre-session cookie, the consent form's to the
session -- and to the sealed request the form was shown for (a consent form's token cannot
approve another pending request of the same session); pages are never framed (``pages.py``:
``frame-ancestors 'none'``). The session cookie is ``HttpOnly``, ``SameSite=Lax`` (the
authorization request arrives by a cross-site navigation), ``Secure`` with a ``__Host-`` name
when ``public_url`` is https. No secret is put in a URL: the sealed request holds only what the
authorization request's URL held.
Sign-in is throttled per account (``users.LoginChecker``, in the store: every worker and
instance) and per client address (``AddressThrottle``, per process).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final
from urllib.parse import parse_qsl, quote

from restguard.clock import Clock
from restguard.errors import AuthError
from restguard.keys.hashing import token_digest
from restguard.oauth2 import pages
from restguard.oauth2.authorization_request import (
    AuthorizationRequest,
    PageError,
    RedirectError,
    form_source,
    parse,
    redirect_to,
)
from restguard.oauth2.client_auth import ClientLookup
from restguard.oauth2.clients import is_active
from restguard.oauth2.grants.authorization_code import LIFETIME as CODE_LIFETIME
from restguard.oauth2.grants.authorization_code import new_code
from restguard.oauth2.http import EndpointRequest, EndpointResponse, Headers
from restguard.oauth2.users import LoginChecker, LoginFailed, LoginLocked
from restguard.oauth2.web_tokens import WebTokenInvalid, WebTokens, WebTokenTooLarge
from restguard.store.ports import (
    AuthorizationCodeRecord,
    AuthorizationCodeStore,
    ConsentStore,
    OAuthClientRecord,
    UserRecord,
    UserStore,
)

REQUEST_TTL: Final = 15 * 60  # seconds to sign in and consent
SESSION_TTL: Final = 8 * 3600
LOGIN_TTL: Final = 15 * 60
MAX_FORM_BYTES: Final = 16 * 1024
_FORM_TYPE: Final = b"application/x-www-form-urlencoded"

_EXPIRED = "This sign-in link is no longer valid. Go back to the application and start again."

Failures = Callable[[str], Awaitable[None]]


class _FormError(Exception):
    pass


def _form(request: EndpointRequest) -> tuple[dict[str, str], list[str]]:
    """A page's form: single parameters, and the repeated ``scope`` checkboxes."""
    types = request.header(b"content-type")
    if len(types) != 1 or types[0].partition(b";")[0].strip().lower() != _FORM_TYPE:
        raise _FormError("not a form")
    try:
        pairs = parse_qsl(
            request.body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=bool(request.body),
            errors="strict",
            max_num_fields=64,
        )
    except (UnicodeDecodeError, ValueError):
        raise _FormError("the form does not parse") from None
    single: dict[str, str] = {}
    scopes: list[str] = []
    for name, value in pairs:
        if name == "scope":
            scopes.append(value)
        elif name in single:
            raise _FormError(f"{name} repeated")
        else:
            single[name] = value
    return single, scopes


def _query_value(request: EndpointRequest, name: str) -> str | None:
    try:
        pairs = parse_qsl(request.query.decode("ascii"), errors="strict", max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return None
    values = [v for k, v in pairs if k == name]
    return values[0] if len(values) == 1 else None


def _cookie(request: EndpointRequest, name: str) -> str | None:
    """The value of cookie ``name``; None when absent or sent more than once (ambiguous)."""
    found = []
    for header in request.header(b"cookie"):
        for part in header.decode("latin-1").split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                found.append(value)
    return found[0] if len(found) == 1 else None


def _redirect(location: str, cookies: Headers | None = None) -> EndpointResponse:
    headers: Headers = [
        (b"location", location.encode("ascii")),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        *(cookies or []),
    ]
    return EndpointResponse(303, headers, b"")


class AddressThrottle:
    """Failed sign-ins per client address: past ``limit`` within ``window`` seconds the address
    is refused before any password is checked, until the window ends. Per process."""

    def __init__(self, clock: Clock, limit: int = 20, window: float = 300.0) -> None:
        self.clock, self.limit, self.window = clock, limit, window
        self._failures: dict[str, tuple[int, float]] = {}

    def retry_after(self, address: str) -> int | None:
        count, since = self._failures.get(address, (0, 0.0))
        left = since + self.window - self.clock.monotonic()
        if count >= self.limit and left > 0:
            return max(1, int(left + 0.999))
        return None

    def failed(self, address: str) -> None:
        now = self.clock.monotonic()
        count, since = self._failures.get(address, (0, now))
        if now - since >= self.window:
            count, since = 0, now
        if len(self._failures) >= 100_000:
            self._failures.clear()
        self._failures[address] = (count + 1, since)


class ResourceOwnerPages:
    def __init__(
        self,
        *,
        issuer: str,
        clients: ClientLookup,
        users: UserStore,
        checker: LoginChecker,
        consents: ConsentStore,
        codes: AuthorizationCodeStore,
        web: WebTokens,
        clock: Clock,
        throttle: AddressThrottle | None = None,
        failures: Failures | None = None,
    ) -> None:
        """``failures``: told the client address of every failed sign-in (the gateway's
        failed-attempt count; it may raise the 429 ``AuthError``)."""
        self.issuer, self.clients, self.users, self.checker = issuer, clients, users, checker
        self.consents, self.codes, self.web, self.clock = consents, codes, web, clock
        self.throttle = throttle or AddressThrottle(clock)
        self.failures = failures
        secure = issuer.startswith("https://")
        self._secure = secure
        self._session_cookie = "__Host-rg_session" if secure else "rg_session"
        self._login_cookie = "__Host-rg_login" if secure else "rg_login"

    # --- cookies ---------------------------------------------------------------------------
    def _set_cookie(self, name: str, value: str, max_age: int) -> tuple[bytes, bytes]:
        attributes = f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
        if self._secure:
            attributes += "; Secure"
        return b"set-cookie", attributes.encode("ascii")

    async def _session(self, request: EndpointRequest, now: datetime) -> UserRecord | None:
        raw = _cookie(request, self._session_cookie)
        if raw is None:
            return None
        try:
            data = self.web.open("session", raw, now)
        except WebTokenInvalid:
            return None
        user_id, nonce = data.get("u"), data.get("s")
        if not isinstance(user_id, str) or not isinstance(nonce, str):
            return None
        user = await self.users.get(user_id)
        if user is None:  # removed since: the session ends
            return None
        return user

    def _session_nonce(self, request: EndpointRequest, now: datetime) -> str:
        raw = _cookie(request, self._session_cookie) or ""
        try:
            nonce = self.web.open("session", raw, now).get("s")
        except WebTokenInvalid:
            return ""
        return nonce if isinstance(nonce, str) else ""

    def _csrf(self, form: str, browser: str, sealed: str, now: datetime) -> str:
        """The CSRF token of ``form`` (``login`` or ``consent``) shown for request ``sealed``
        to the browser holding the secret ``browser``."""
        return self.web.make("csrf " + form, {"b": _binding(browser, sealed)}, now, REQUEST_TTL)

    def _csrf_ok(
        self, form: str, token: str | None, browser: str, sealed: str, now: datetime
    ) -> bool:
        """Whether ``token`` is the CSRF token of ``form`` shown for ``sealed`` to this browser
        (RFC 6749 §10.12: the value binds the request to the user-agent's authenticated state;
        bound to the request too, so one form's token never approves another request)."""
        if not token or not browser or not sealed:
            return False
        try:
            bound = self.web.open("csrf " + form, token, now).get("b")
        except WebTokenInvalid:
            return False
        return isinstance(bound, str) and hmac.compare_digest(bound, _binding(browser, sealed))

    # --- the pending request ---------------------------------------------------------------
    def _pending(self, sealed: str | None, now: datetime) -> AuthorizationRequest:
        try:
            if sealed is None:
                raise WebTokenInvalid("missing")
            return AuthorizationRequest.from_data(self.web.open("request", sealed, now))
        except (WebTokenInvalid, ValueError):
            raise PageError(400, "Link expired", _EXPIRED) from None

    async def _client(self, pending: AuthorizationRequest, now: datetime) -> OAuthClientRecord:
        client = await self.clients.get(pending.client_id)
        if client is None or not is_active(client, now):
            raise PageError(400, "Unknown application", "The application is no longer known.")
        return client

    def _back(self, pending: AuthorizationRequest, params: dict[str, str | None]) -> str:
        return redirect_to(
            pending.redirect_uri, {**params, "state": pending.state, "iss": self.issuer}
        )

    def _refuse(self, pending: AuthorizationRequest, error: str, text: str) -> EndpointResponse:
        return _redirect(self._back(pending, {"error": error, "error_description": text}))

    async def _issue_code(
        self,
        pending: AuthorizationRequest,
        user: UserRecord,
        scopes: tuple[str, ...],
        now: datetime,
    ) -> EndpointResponse:
        code = new_code()
        await self.codes.insert(
            AuthorizationCodeRecord(
                code_hash=token_digest(code),
                client_id=pending.client_id,
                user_id=user.user_id,
                subject=user.username,
                redirect_uri=pending.redirect_uri,
                redirect_uri_given=pending.redirect_uri_given,
                scopes=scopes,
                code_challenge=pending.code_challenge,
                created_at=now,
                expires_at=now + CODE_LIFETIME,
            )
        )
        return _redirect(self._back(pending, {"code": code}))

    @staticmethod
    def _offered(pending: AuthorizationRequest, user: UserRecord) -> tuple[str, ...]:
        return tuple(s for s in pending.scopes if s in user.scopes)

    # --- GET /oauth2/authorize -------------------------------------------------------------
    async def authorize(self, request: EndpointRequest) -> EndpointResponse:
        now = self.clock.now()
        try:
            pending = await parse(request.query, self.clients, now)
        except PageError as err:
            return pages.error_page(status=err.status, title=err.title, message=err.message)
        except RedirectError as err:
            params = {"error": err.error, "error_description": err.description}
            back = {**params, "state": err.state, "iss": self.issuer}
            return _redirect(redirect_to(err.redirect_uri, back))
        try:
            sealed = self.web.make("request", pending.to_data(), now, REQUEST_TTL)
        except WebTokenTooLarge:  # the client is known and its redirect URI checked
            back = {
                "error": "invalid_request",
                "error_description": "The request is too large (state, scope).",
                "iss": self.issuer,
            }
            return _redirect(redirect_to(pending.redirect_uri, back))
        user = await self._session(request, now)
        target = "/consent" if user is not None else "/login"
        return _redirect(f"{target}?request={quote(sealed)}")

    # --- /login ----------------------------------------------------------------------------
    async def login(self, request: EndpointRequest) -> EndpointResponse:
        now = self.clock.now()
        try:
            if request.method == "POST":
                return await self._sign_in(request, now)
            sealed = _query_value(request, "request")
            pending = self._pending(sealed, now)
            client = await self._client(pending, now)
            if await self._session(request, now) is not None:
                return _redirect(f"/consent?request={quote(sealed or '')}")
            return self._login_form(pending, client, sealed or "", now)
        except PageError as err:
            return pages.error_page(status=err.status, title=err.title, message=err.message)

    def _login_form(
        self,
        pending: AuthorizationRequest,
        client: OAuthClientRecord,
        sealed: str,
        now: datetime,
        *,
        username: str = "",
        error: str | None = None,
        status: int = 200,
        retry_after: int | None = None,
    ) -> EndpointResponse:
        nonce = secrets.token_urlsafe(16)
        page = pages.login_page(
            client_name=client.name,
            hidden={"request": sealed, "csrf": self._csrf("login", nonce, sealed, now)},
            form_sources=[form_source(pending.redirect_uri)],
            username=username,
            error=error,
            status=status,
        )
        headers = [*page.headers, self._set_cookie(self._login_cookie, nonce, LOGIN_TTL)]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        return EndpointResponse(page.status, headers, page.body)

    async def _sign_in(self, request: EndpointRequest, now: datetime) -> EndpointResponse:
        try:
            form, _ = _form(request)
        except _FormError:
            raise PageError(400, "Invalid request", "The form could not be read.") from None
        sealed = form.get("request", "")
        pending = self._pending(sealed, now)
        client = await self._client(pending, now)
        username = form.get("username", "")[:256]

        def again(error: str, status: int, retry: int | None = None) -> EndpointResponse:
            return self._login_form(
                pending,
                client,
                sealed,
                now,
                username=username,
                error=error,
                status=status,
                retry_after=retry,
            )

        binding = _cookie(request, self._login_cookie) or ""
        if not self._csrf_ok("login", form.get("csrf"), binding, sealed, now):
            return again("The sign-in form expired. Please sign in again.", 400)
        retry = self.throttle.retry_after(request.client)
        if retry is not None:
            return again(_too_many(retry), 429, retry)
        password = form.get("password", "")
        if not username or not password:
            return again("Enter your username and password.", 400)
        try:
            user = await self.checker.check(username, password, now)
        except LoginLocked as locked:
            return again(_too_many(locked.retry_after), 429, locked.retry_after)
        except LoginFailed:
            self.throttle.failed(request.client)
            if self.failures is not None:
                try:
                    await self.failures(request.client)
                except AuthError as err:
                    if err.status != 429:
                        raise
            return again("The username or password is not right.", 200)
        session = self.web.make(
            "session", {"u": user.user_id, "s": secrets.token_urlsafe(16)}, now, SESSION_TTL
        )
        cookies: Headers = [
            self._set_cookie(self._session_cookie, session, SESSION_TTL),
            self._set_cookie(self._login_cookie, "", 0),
        ]
        return _redirect(f"/consent?request={quote(sealed)}", cookies)

    # --- /consent --------------------------------------------------------------------------
    async def consent(self, request: EndpointRequest) -> EndpointResponse:
        now = self.clock.now()
        try:
            if request.method == "POST":
                return await self._decide(request, now)
            sealed = _query_value(request, "request") or ""
            pending = self._pending(sealed, now)
            client = await self._client(pending, now)
            user = await self._session(request, now)
            if user is None:
                return _redirect(f"/login?request={quote(sealed)}")
            offered = self._offered(pending, user)
            if not offered:
                return self._refuse(
                    pending, "access_denied", "The user cannot grant any of the scopes asked for."
                )
            remembered = await self.consents.granted(user.user_id, client.client_id)
            if set(offered) <= set(remembered):
                return await self._issue_code(pending, user, offered, now)
            return pages.consent_page(
                client_name=client.name,
                username=user.username,
                scopes=offered,
                hidden={
                    "request": sealed,
                    "csrf": self._csrf("consent", self._session_nonce(request, now), sealed, now),
                },
                form_sources=[form_source(pending.redirect_uri)],
            )
        except PageError as err:
            return pages.error_page(status=err.status, title=err.title, message=err.message)

    async def _decide(self, request: EndpointRequest, now: datetime) -> EndpointResponse:
        try:
            form, chosen = _form(request)
        except _FormError:
            raise PageError(400, "Invalid request", "The form could not be read.") from None
        sealed = form.get("request", "")
        pending = self._pending(sealed, now)
        client = await self._client(pending, now)
        user = await self._session(request, now)
        if user is None:
            return _redirect(f"/login?request={quote(sealed)}")
        nonce = self._session_nonce(request, now)
        if not self._csrf_ok("consent", form.get("csrf"), nonce, sealed, now):
            raise PageError(
                403,
                "Form expired",
                "The consent form expired. Go back to the application and start again.",
            )
        decision = form.get("decision")
        if decision == "deny":
            return self._refuse(pending, "access_denied", "The user denied the request.")
        if decision != "allow":
            raise PageError(400, "Invalid request", "Choose Allow or Deny.")
        offered = self._offered(pending, user)
        if any(s not in offered for s in chosen):
            raise PageError(
                400,
                "Invalid request",
                "The form grants a scope that was not asked for.",
                debug="consent form scope outside the offer",
            )
        granted = tuple(s for s in offered if s in chosen)
        if not granted:
            return self._refuse(pending, "access_denied", "The user granted no scope.")
        await self.consents.grant(user.user_id, client.client_id, granted, now)
        return await self._issue_code(pending, user, granted, now)


def _binding(browser: str, sealed: str) -> str:
    """What a CSRF token is bound to: the browser's secret and the request of the form."""
    return browser + "." + hashlib.sha256(sealed.encode("ascii", "replace")).hexdigest()


def _too_many(retry_after: int) -> str:
    minutes = (retry_after + 59) // 60
    return f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
