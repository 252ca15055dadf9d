"""What the resource owner's pages share (``resource_owner.py``, ``device_pages.py``): reading
their forms and query, cookies, redirects, the sign-in session, CSRF tokens and a per-address
throttle.

The session cookie is ``HttpOnly``, ``SameSite=Lax`` (an authorization request arrives by a
cross-site navigation), ``Secure`` with a ``__Host-`` name when ``public_url`` is https. It holds
a sealed ``{"u": user id, "s": nonce}`` (``web_tokens.py``); CSRF tokens are sealed for their
purpose and bound to the browser -- the login form's to a pre-session cookie, every later
form's to the session's nonce (RFC 6749 §10.12, RFC 9700 §4.7).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Final
from urllib.parse import parse_qsl

from restguard.authz.ratelimit import RateLimiter
from restguard.errors import BackendUnavailable
from restguard.oauth2.http import EndpointRequest, EndpointResponse, Headers
from restguard.oauth2.users import login_username
from restguard.oauth2.web_tokens import WebTokenInvalid, WebTokens
from restguard.store.ports import UserRecord, UserStore

REQUEST_TTL: Final = 15 * 60  # seconds to sign in and decide
SESSION_TTL: Final = 8 * 3600
LOGIN_TTL: Final = 15 * 60
_FORM_TYPE: Final = b"application/x-www-form-urlencoded"
#: A consent form carries one field per scope (the body is capped at 16 KiB anyway).
MAX_FORM_FIELDS: Final = 1024

Failures = Callable[[str], Awaitable[None]]


class FormError(Exception):
    pass


def read_form(request: EndpointRequest) -> tuple[dict[str, str], list[str]]:
    """A page's form: single parameters, and the repeated ``scope`` checkboxes."""
    types = request.header(b"content-type")
    if len(types) != 1 or types[0].partition(b";")[0].strip().lower() != _FORM_TYPE:
        raise FormError("not a form")
    try:
        pairs = parse_qsl(
            request.body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=bool(request.body),
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise FormError("the form does not parse") from None
    single: dict[str, str] = {}
    scopes: list[str] = []
    for name, value in pairs:
        if name == "scope":
            scopes.append(value)
        elif name in single:
            raise FormError(f"{name} repeated")
        else:
            single[name] = value
    return single, scopes


def query_value(request: EndpointRequest, name: str) -> str | None:
    """The query parameter ``name``; None when absent, repeated or unreadable."""
    try:
        pairs = parse_qsl(request.query.decode("ascii"), errors="strict", max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return None
    values = [v for k, v in pairs if k == name]
    return values[0] if len(values) == 1 else None


def cookie(request: EndpointRequest, name: str) -> str | None:
    """The value of cookie ``name``; None when absent or sent more than once (ambiguous)."""
    found = []
    for header in request.header(b"cookie"):
        for part in header.decode("latin-1").split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                found.append(value)
    return found[0] if len(found) == 1 else None


def redirect(location: str, cookies: Headers | None = None) -> EndpointResponse:
    headers: Headers = [
        (b"location", location.encode("ascii")),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        *(cookies or []),
    ]
    return EndpointResponse(303, headers, b"")


class AddressThrottle:
    """Failed attempts per key (a client address, a user) on a ``RateLimiter``: ``limit`` within
    ``window`` seconds, then one more per ``window / limit``. An attempt is counted before it is
    checked (so racing attempts cannot all pass a check that counts later) and given back when
    it succeeds (``give_back``): what stays counted is the failures. Shared by every
    worker and instance when the limiter is (the database's or Redis's);
    ``BackendUnavailable`` when it cannot be reached (fail closed)."""

    def __init__(
        self, limiter: RateLimiter, name: str, limit: int = 20, window: float = 300.0
    ) -> None:
        self.limiter, self.name, self.limit, self.window = limiter, name, limit, window

    async def attempt(self, key: str) -> int | None:
        """Count one attempt for ``key``: None if it may go ahead, else the seconds to wait."""
        verdict = await self.limiter.hit(f"{self.name}:{key}", self.limit, self.window)
        return verdict.retry_after

    async def give_back(self, key: str) -> None:
        """The attempt counted for ``key`` does not count (it succeeded, or was never checked)."""
        await self.limiter.refund(f"{self.name}:{key}", self.limit, self.window)


class Attempts:
    """One attempt counted toward several throttles at once (each a throttle and its key):
    counted toward all before it is checked, given back to all when it succeeds or was never
    checked."""

    def __init__(self, counters: Sequence[tuple[AddressThrottle, str]]) -> None:
        self._counters = tuple(counters)
        self._counted: list[tuple[AddressThrottle, str]] = []

    async def count(self) -> int | None:
        """None if the attempt may go ahead, else the longest wait (seconds). When a counter
        cannot be reached, what was counted is given back and ``BackendUnavailable`` raised."""
        waits = []
        for throttle, key in self._counters:
            try:
                wait = await throttle.attempt(key)
            except BackendUnavailable:
                await self.give_back()
                raise
            self._counted.append((throttle, key))
            if wait is not None:
                waits.append(wait)
        return max(waits, default=None)

    async def give_back(self) -> None:
        """Best effort: a refund lost costs the client one try, never more."""
        counted, self._counted = self._counted, []
        for throttle, key in counted:
            with contextlib.suppress(BackendUnavailable):
                await throttle.give_back(key)


#: Sign-in attempts per account and client address: 5 in 5 minutes, then one a minute.
ACCOUNT_ATTEMPTS, ACCOUNT_WINDOW = 5, 300.0


def account_address_throttle(limiter: RateLimiter) -> AddressThrottle:
    """The sign-in throttle per account and client address on ``limiter`` (a stranger's
    guesses hold back the stranger's address, never the account's owner elsewhere)."""
    return AddressThrottle(limiter, "login-account", ACCOUNT_ATTEMPTS, ACCOUNT_WINDOW)


def account_key(username: str) -> str:
    """The throttle's name for the account a typed username signs in to: a digest of its
    stored form (or of the text, when no user can have it), so that unknown and known
    usernames cost and count alike and a long one makes no long key."""
    name = login_username(username)
    return hashlib.sha256((name if name is not None else "\0" + username).encode()).hexdigest()[:32]


class Sessions:
    """The sign-in session and the CSRF tokens of the pages of issuer ``issuer``."""

    def __init__(self, issuer: str, users: UserStore, web: WebTokens) -> None:
        self.users, self.web = users, web
        self.secure = issuer.startswith("https://")
        self.session_cookie = "__Host-rg_session" if self.secure else "rg_session"
        self.login_cookie = "__Host-rg_login" if self.secure else "rg_login"

    def set_cookie(self, name: str, value: str, max_age: int) -> tuple[bytes, bytes]:
        attributes = f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
        if self.secure:
            attributes += "; Secure"
        return b"set-cookie", attributes.encode("ascii")

    def _data(self, request: EndpointRequest, now: datetime) -> dict[str, object]:
        raw = cookie(request, self.session_cookie)
        if raw is None:
            return {}
        try:
            return self.web.open("session", raw, now)
        except WebTokenInvalid:
            return {}

    async def user(self, request: EndpointRequest, now: datetime) -> UserRecord | None:
        """The signed-in user, or None (no session, or the user was removed since)."""
        data = self._data(request, now)
        user_id, nonce = data.get("u"), data.get("s")
        if not isinstance(user_id, str) or not isinstance(nonce, str):
            return None
        return await self.users.get(user_id)

    def nonce(self, request: EndpointRequest, now: datetime) -> str:
        """The session's nonce: what its forms' CSRF tokens are bound to ("" without one)."""
        nonce = self._data(request, now).get("s")
        return nonce if isinstance(nonce, str) else ""

    def start(self, user: UserRecord, now: datetime) -> Headers:
        """The cookies that sign ``user`` in (and end the pre-session login cookie)."""
        session = self.web.make(
            "session", {"u": user.user_id, "s": secrets.token_urlsafe(16)}, now, SESSION_TTL
        )
        return [
            self.set_cookie(self.session_cookie, session, SESSION_TTL),
            self.set_cookie(self.login_cookie, "", 0),
        ]

    def csrf(self, form: str, browser: str, context: str, now: datetime) -> str:
        """The CSRF token of ``form`` shown for ``context`` (the sealed request or device
        decision the form carries) to the browser holding the secret ``browser``."""
        return self.web.make("csrf " + form, {"b": _binding(browser, context)}, now, REQUEST_TTL)

    def csrf_ok(
        self, form: str, token: str | None, browser: str, context: str, now: datetime
    ) -> bool:
        """Whether ``token`` is the CSRF token of ``form`` shown for ``context`` to this browser
        (RFC 6749 §10.12: the value binds the request to the user-agent's authenticated state;
        bound to the form's request too, so one form's token never approves another)."""
        if not token or not browser or not context:
            return False
        try:
            bound = self.web.open("csrf " + form, token, now).get("b")
        except WebTokenInvalid:
            return False
        return isinstance(bound, str) and hmac.compare_digest(bound, _binding(browser, context))


def _binding(browser: str, context: str) -> str:
    """What a CSRF token is bound to: the browser's secret and the request of the form."""
    return browser + "." + hashlib.sha256(context.encode("ascii", "replace")).hexdigest()
