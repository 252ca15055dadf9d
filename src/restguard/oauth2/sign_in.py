"""The resource owner's sign-in page, ``GET|POST /login``: a base of ``ResourceOwnerPages``
(``resource_owner.py``, which says where a sign-in continues: ``_continuation``).

Sign-in is throttled per client address and per account and address (``browser.Attempts``, on
the gateway's rate limiter: every attempt counted before its password is checked), and capped
per account (``users.LoginChecker``, in the store: every worker and instance). Every failure is
told to the gateway's failed-attempt count. The form's CSRF token is bound to a pre-session
cookie and to the sealed continuation it was shown for.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from restguard.authz.ratelimit import address_bucket
from restguard.clock import Clock
from restguard.errors import AuthError, BackendUnavailable
from restguard.oauth2 import pages
from restguard.oauth2.authorization_request import PageError
from restguard.oauth2.browser import (
    LOGIN_TTL,
    AddressThrottle,
    Attempts,
    Failures,
    FormError,
    Sessions,
    account_key,
    cookie,
    query_value,
    read_form,
    redirect,
)
from restguard.oauth2.http import EndpointRequest, EndpointResponse
from restguard.oauth2.users import LoginBusy, LoginChecker, LoginFailed, LoginLocked


@dataclass(frozen=True, slots=True)
class Continuation:
    """Where a sign-in goes next: the consent of a pending authorization request, or the
    device flow's user-code page. ``field`` is the form field that carries ``sealed``."""

    field: str
    sealed: str
    target: str
    client_name: str | None  # None: no client yet (the device flow)
    form_sources: tuple[str, ...]


class SignInPages:
    """``/login``. The state it reads is set by ``ResourceOwnerPages.__init__``."""

    clock: Clock
    sessions: Sessions
    checker: LoginChecker
    throttle: AddressThrottle
    account_throttle: AddressThrottle
    failures: Failures | None

    if TYPE_CHECKING:  # ``ResourceOwnerPages``' own (declared here for the type checker)

        async def _continuation(
            self,
            request_value: str | None,
            device_value: str | None,
            next_value: str | None,
            now: datetime,
        ) -> Continuation: ...

    async def login(self, request: EndpointRequest) -> EndpointResponse:
        now = self.clock.now()
        try:
            if request.method == "POST":
                return await self._sign_in(request, now)
            going = await self._continuation(
                query_value(request, "request"),
                query_value(request, "device"),
                query_value(request, "next"),
                now,
            )
            if await self.sessions.user(request, now) is not None:
                return redirect(going.target)
            return self._login_form(going, now)
        except PageError as err:
            return pages.error_page(status=err.status, title=err.title, message=err.message)

    def _login_form(
        self,
        going: Continuation,
        now: datetime,
        *,
        username: str = "",
        error: str | None = None,
        status: int = 200,
        retry_after: int | None = None,
    ) -> EndpointResponse:
        nonce = secrets.token_urlsafe(16)
        page = pages.login_page(
            client_name=going.client_name or "",
            heading=None
            if going.client_name
            else ("Sign in to connect a device" if going.field == "device" else "Sign in"),
            hidden={
                going.field: going.sealed,
                "csrf": self.sessions.csrf("login", nonce, going.sealed, now),
            },
            form_sources=going.form_sources,
            username=username,
            error=error,
            status=status,
        )
        login_cookie = self.sessions.set_cookie(self.sessions.login_cookie, nonce, LOGIN_TTL)
        headers = [*page.headers, login_cookie]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        return EndpointResponse(page.status, headers, page.body)

    async def _sign_in(self, request: EndpointRequest, now: datetime) -> EndpointResponse:
        try:
            form, _ = read_form(request)
        except FormError:
            raise PageError(400, "Invalid request", "The form could not be read.") from None
        going = await self._continuation(
            form.get("request"), form.get("device"), form.get("next"), now
        )
        username = form.get("username", "")[:256]

        def again(error: str, status: int, retry: int | None = None) -> EndpointResponse:
            return self._login_form(
                going, now, username=username, error=error, status=status, retry_after=retry
            )

        binding = cookie(request, self.sessions.login_cookie) or ""
        if not self.sessions.csrf_ok("login", form.get("csrf"), binding, going.sealed, now):
            return again("The sign-in form expired. Please sign in again.", 400)
        busy = "Sign-in is busy right now. Please try again in a moment."
        password = form.get("password", "")
        if not username or not password:
            return again("Enter your username and password.", 400)
        address = address_bucket(request.client)
        # Counted first (racing attempts cannot all pass), per address and per account and
        # address; the counters may live in the database or Redis (shared by every instance).
        attempts = Attempts(
            (
                (self.throttle, address),
                (self.account_throttle, f"{account_key(username)}:{address}"),
            )
        )
        try:
            retry = await attempts.count()
        except BackendUnavailable:
            return again(busy, 503, 5)
        if retry is not None:
            return again(_too_many(retry), 429, retry)
        try:
            user = await self.checker.check(username, password, now)
        except LoginLocked as locked:
            return again(_too_many(locked.retry_after), 429, locked.retry_after)
        except LoginBusy:  # nothing was checked: the attempts are given back
            await attempts.give_back()
            return again(busy, 503, 5)
        except LoginFailed:
            try:
                await self.count_failure(request.client)
            except BackendUnavailable:
                return again(busy, 503, 5)
            return again("The username or password is not right.", 200)
        await attempts.give_back()  # signed in: what stays counted is the failures
        return redirect(going.target, self.sessions.start(user, now))

    async def count_failure(self, address: str) -> None:
        """Tell the gateway's failed-attempt count (its 429 is already our answer)."""
        if self.failures is not None:
            try:
                await self.failures(address)
            except AuthError as err:
                if err.status != 429:
                    raise


def _too_many(retry_after: int) -> str:
    minutes = (retry_after + 59) // 60
    return f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
