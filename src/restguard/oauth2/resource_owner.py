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
Sign-in is throttled per client address and per account and address (``browser.Attempts``, on
the gateway's rate limiter: every attempt counted before its password is checked), and capped
per account (``users.LoginChecker``, in the store: every worker and instance).

A sign-in continues to the consent of a pending authorization request (``?request=``, sealed),
to the device flow's user-code page (``?device=``, a sealed continuation that
``device_pages.py`` makes), or to an OAuth 1.0a page (``?next=``, sealed by ``login_redirect``):
the login page serves these, and nothing else (no open redirect).
Cookies, sessions and CSRF tokens are ``browser.py``'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from urllib.parse import quote

from restguard.authz.ratelimit import MemoryRateLimiter
from restguard.clock import Clock
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
from restguard.oauth2.browser import (
    REQUEST_TTL,
    AddressThrottle,
    Failures,
    FormError,
    Sessions,
    account_address_throttle,
    query_value,
    read_form,
    redirect,
)
from restguard.oauth2.client_auth import ClientLookup
from restguard.oauth2.clients import is_active
from restguard.oauth2.grants.authorization_code import LIFETIME as CODE_LIFETIME
from restguard.oauth2.grants.authorization_code import new_code
from restguard.oauth2.http import EndpointRequest, EndpointResponse
from restguard.oauth2.sign_in import Continuation, SignInPages
from restguard.oauth2.users import (
    LoginChecker,
)
from restguard.oauth2.web_tokens import WebTokenInvalid, WebTokens, WebTokenTooLarge
from restguard.store.ports import (
    AuthorizationCodeRecord,
    AuthorizationCodeStore,
    ConsentStore,
    OAuthClientRecord,
    UserRecord,
    UserStore,
)

MAX_FORM_BYTES: Final = 16 * 1024

_EXPIRED = "This sign-in link is no longer valid. Go back to the application and start again."
#: The sealed purpose of a sign-in that continues to the device flow (``device_pages.py``).
DEVICE_CONTINUATION: Final = "device"
#: ... and of one that continues to another of restguard's pages (``login_redirect``).
NEXT_CONTINUATION: Final = "next"
_NEXT_TARGETS: Final = ("/oauth1/authorize?", "/oauth1/tokens")


class ResourceOwnerPages(SignInPages):
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
        account_throttle: AddressThrottle | None = None,
        failures: Failures | None = None,
    ) -> None:
        """``throttle``: sign-in attempts per client address (any account); ``account_throttle``:
        per account and client address, so that a stranger's guesses hold back the stranger's
        address, never the account's owner elsewhere. ``failures``: told the client address of
        every failed sign-in (the gateway's failed-attempt count; it may raise the 429
        ``AuthError``)."""
        self.issuer, self.clients, self.users, self.checker = issuer, clients, users, checker
        self.consents, self.codes, self.web, self.clock = consents, codes, web, clock
        limiter = MemoryRateLimiter(clock.monotonic)
        self.throttle = throttle or AddressThrottle(limiter, "login")
        self.account_throttle = account_throttle or account_address_throttle(limiter)
        self.failures = failures
        self.sessions = Sessions(issuer, users, web)

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

    async def _continuation(
        self,
        request_value: str | None,
        device_value: str | None,
        next_value: str | None,
        now: datetime,
    ) -> Continuation:
        """Where the sign-in continues: a sealed authorization request (``request``), a sealed
        device-flow continuation (``device``: ``{"c": user code to prefill}``), or another of
        restguard's pages (``next``: ``{"to": path and query, "n": the application's name}``,
        made by ``login_redirect``; the OAuth 1.0a pages)."""
        given = [v for v in (request_value, device_value, next_value) if v is not None]
        if len(given) != 1:
            raise PageError(400, "Link expired", _EXPIRED)
        if request_value is not None:
            pending = self._pending(request_value, now)
            client = await self._client(pending, now)
            return Continuation(
                "request",
                request_value,
                f"/consent?request={quote(request_value)}",
                client.name,
                (form_source(pending.redirect_uri),),
            )
        purpose = DEVICE_CONTINUATION if device_value is not None else NEXT_CONTINUATION
        sealed = device_value if device_value is not None else next_value
        assert sealed is not None
        try:
            data = self.web.open(purpose, sealed, now)
        except WebTokenInvalid:
            raise PageError(400, "Link expired", _EXPIRED) from None
        if purpose == NEXT_CONTINUATION:
            target, name = data.get("to"), data.get("n")
            if not isinstance(target, str) or not target.startswith(_NEXT_TARGETS):
                raise PageError(400, "Link expired", _EXPIRED)
            return Continuation("next", sealed, target, str(name) if name else None, ())
        code = data.get("c")
        target = "/device" + (f"?user_code={quote(code)}" if isinstance(code, str) else "")
        return Continuation("device", sealed, target, None, ())

    def login_redirect(self, target: str, client_name: str, now: datetime) -> EndpointResponse:
        """The redirect to the sign-in page, which continues to ``target`` (one of restguard's
        OAuth 1.0a pages) once the user is signed in."""
        if not target.startswith(_NEXT_TARGETS):
            raise ValueError(f"a sign-in continues to one of restguard's pages, not {target!r}")
        sealed = self.web.make(
            NEXT_CONTINUATION, {"to": target, "n": client_name}, now, REQUEST_TTL
        )
        return redirect(f"/login?next={quote(sealed)}")

    def device_login(self, user_code: str | None, now: datetime) -> EndpointResponse:
        """The redirect to the sign-in page of the device flow (``device_pages.py``)."""
        data = {} if user_code is None else {"c": user_code}
        sealed = self.web.make(DEVICE_CONTINUATION, data, now, REQUEST_TTL)
        return redirect(f"/login?device={quote(sealed)}")

    def _back(self, pending: AuthorizationRequest, params: dict[str, str | None]) -> str:
        return redirect_to(
            pending.redirect_uri, {**params, "state": pending.state, "iss": self.issuer}
        )

    def _refuse(self, pending: AuthorizationRequest, error: str, text: str) -> EndpointResponse:
        return redirect(self._back(pending, {"error": error, "error_description": text}))

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
        return redirect(self._back(pending, {"code": code}))

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
            return redirect(redirect_to(err.redirect_uri, back))
        try:
            sealed = self.web.make("request", pending.to_data(), now, REQUEST_TTL)
        except WebTokenTooLarge:  # the client is known and its redirect URI checked
            back = {
                "error": "invalid_request",
                "error_description": "The request is too large (state, scope).",
                "iss": self.issuer,
            }
            return redirect(redirect_to(pending.redirect_uri, back))
        user = await self.sessions.user(request, now)
        target = "/consent" if user is not None else "/login"
        return redirect(f"{target}?request={quote(sealed)}")

    # --- /consent --------------------------------------------------------------------------
    async def consent(self, request: EndpointRequest) -> EndpointResponse:
        now = self.clock.now()
        try:
            if request.method == "POST":
                return await self._decide(request, now)
            sealed = query_value(request, "request") or ""
            pending = self._pending(sealed, now)
            client = await self._client(pending, now)
            user = await self.sessions.user(request, now)
            if user is None:
                return redirect(f"/login?request={quote(sealed)}")
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
                    "csrf": self.sessions.csrf(
                        "consent", self.sessions.nonce(request, now), sealed, now
                    ),
                },
                form_sources=[form_source(pending.redirect_uri)],
            )
        except PageError as err:
            return pages.error_page(status=err.status, title=err.title, message=err.message)

    async def _decide(self, request: EndpointRequest, now: datetime) -> EndpointResponse:
        try:
            form, chosen = read_form(request)
        except FormError:
            raise PageError(400, "Invalid request", "The form could not be read.") from None
        sealed = form.get("request", "")
        pending = self._pending(sealed, now)
        client = await self._client(pending, now)
        user = await self.sessions.user(request, now)
        if user is None:
            return redirect(f"/login?request={quote(sealed)}")
        nonce = self.sessions.nonce(request, now)
        if not self.sessions.csrf_ok("consent", form.get("csrf"), nonce, sealed, now):
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
