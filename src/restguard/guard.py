"""The decision engine: policy match -> the route's authenticators -> scope check -> Principal.

Every adapter (gateway, ASGI middleware, FastAPI dependency) calls ``Guard.decide`` and nothing
else, so they cannot disagree. The guard never reads the clock or the network itself. Which
credentials a request carries (and how much body it needs read first) is ``restguard.carriers``,
the guard's base class.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from restguard.audit import DecisionEvent, EventSink, decision_event, send
from restguard.authz.policy import Policy, Route
from restguard.authz.ratelimit import RateLimiter, Verdict, address_bucket
from restguard.authz.request_checks import (
    METHOD_OVERRIDE_HEADERS,
    PATH_OVERRIDE_HEADERS,
    check_headers,
    check_query,
)
from restguard.carriers import CredentialCarriers
from restguard.clock import Clock
from restguard.credentials.base import AuthContext, Authenticator, Credential
from restguard.credentials.challenges import challenges
from restguard.errors import (
    AuthError,
    InsufficientScope,
    InvalidCredential,
    MissingCredential,
    NotFound,
    RateLimited,
)
from restguard.tokens import redact
from restguard.types import ANONYMOUS, Principal, RequestView
from restguard.wire.forms import check_body, check_encoding, content_type

# The header names ``check_headers``, ``content_type`` and ``check_encoding`` judge: a request
# with none of them passes all three (most do; the three scans cost ~0.5 us per request).
_SCREENED = METHOD_OVERRIDE_HEADERS | PATH_OVERRIDE_HEADERS | {b"content-type", b"content-encoding"}


class Decision(NamedTuple):
    """An allowed request: the route, who, and which headers carried restguard credentials
    (removed before forwarding unless the route forwards credentials)."""

    route: Route
    principal: Principal
    credential_headers: tuple[bytes, ...] = ()
    # (deferred decisions) the allow event, recorded by ``Guard.completed`` once the client
    # has its answer
    event: DecisionEvent | None = None
    # ``RateLimit-*`` for the client's answer when the route has a rate limit (they replace
    # any the upstream sent)
    rate_headers: tuple[tuple[str, str], ...] = ()


def rate_limit_headers(limit: int, verdict: Verdict) -> tuple[tuple[str, str], ...]:
    """``RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (draft-ietf-httpapi-ratelimit-headers,
    the names its drafts 00 to 06 use and most clients read)."""
    return (
        ("ratelimit-limit", str(limit)),
        ("ratelimit-remaining", str(verdict.remaining)),
        ("ratelimit-reset", str(verdict.reset)),
    )


def _bucket(p: Principal) -> str:
    """A credential's rate-limit bucket: who vouched, for which client and subject. Two
    callers share one only when they are the same credential (an API key's id; a JWT's
    issuer, client and subject), never because one claim of theirs matches."""
    return "\x1f".join((p.auth_method, p.issuer, p.client_id, p.subject))


def require_scopes(principal: Principal, scopes: Sequence[str]) -> None:
    """Raise InsufficientScope unless ``principal`` holds every scope in ``scopes``."""
    if principal.scopes.issuperset(scopes):  # (the common answer: one C-level check)
        return
    missing = [s for s in scopes if s not in principal.scopes]
    if missing:
        raise InsufficientScope(tuple(scopes), debug="missing " + " ".join(missing))


class Guard(CredentialCarriers):
    """Decides requests against one policy with one set of authenticators."""

    def __init__(
        self,
        policy: Policy,
        authenticators: Mapping[str, Authenticator],
        clock: Clock,
        limiter: RateLimiter,
        *,
        sinks: Sequence[EventSink] = (),
        failed_attempts: tuple[int, float] = (30, 60.0),
    ) -> None:
        super().__init__(policy, authenticators)
        self.clock = clock
        self.limiter = limiter
        self.sinks = list(sinks)
        self._required = [s for s in self.sinks if getattr(s, "required", False)]
        self._optional = [s for s in self.sinks if not getattr(s, "required", False)]
        self.failed_attempts = failed_attempts

    async def authenticate(self, view: RequestView) -> Principal:
        """The Principal for ``view`` or an AuthError (public routes give an anonymous one)."""
        return (await self.decide(view)).principal

    async def decide(
        self, view: RequestView, *, fallback: Route | None = None, deferred: bool = False
    ) -> Decision:
        """Decide ``view``; emit one decision event either way. ``fallback`` decides a request
        that no policy route matches (an embedding app's endpoint that carries its own scopes,
        or is public): without one, default deny. ``deferred``: an allowed request's event is
        recorded by ``completed``, with the status the client got (the gateway's 502/504); a
        required sink (``required = True``, the audit log with ``[audit] required``) still gets
        it now, before the request takes effect, marked ``upstream="pending"``."""
        started = self.clock.monotonic()
        route: Route | None = None
        credential: Credential | None = None
        try:
            if view.query:
                check_query(view.query)
            try:
                route = self.policy.match(view.method, view.path)
            except NotFound:
                if fallback is None:
                    raise
                route = fallback
            names = {name for name, _ in view.headers}
            if not names.isdisjoint(_SCREENED):  # (each check below looks only at these)
                check_headers(view)
                content_type(view.headers)  # strict, on every request (wire/forms.py: why)
                check_encoding(view.headers)
            strip = self._carriers(view, names)
            if route.public:
                limited = (
                    await self._rate_limit(route, "addr:" + address_bucket(view.client))
                    if route.rate_limit is not None
                    else ()
                )
                decision = Decision(route, ANONYMOUS, strip, rate_headers=limited)
            else:
                try:
                    credential = self._extract(view, route, names)
                    ctx = AuthContext(
                        self.clock.now(),
                        view.client,
                        view,
                        route.signature_components,
                        route.signature_label,
                        route.oauth1_two_legged,
                    )
                    authenticator = self.authenticators[credential.method]
                    try:
                        principal = await authenticator.authenticate(credential, ctx)
                    except InvalidCredential as err:
                        raise err.with_challenges(
                            challenges(self.authenticators, route.auth, credential.method, err)
                        ) from None
                    if credential.method in self._attributes:
                        credential = self._attributes[credential.method](credential, principal)
                except (MissingCredential, InvalidCredential):
                    await self.failed_attempt(view.client)
                    raise
                require_scopes(principal, route.scopes)
                limited = (
                    await self._rate_limit(route, _bucket(principal))
                    if route.rate_limit is not None
                    else ()
                )
                decision = Decision(route, principal, strip, rate_headers=limited)
        except AuthError as err:
            self._emit(view, route, credential, started, None, err)
            raise
        if not deferred:
            self._emit(view, route, credential, started, decision.principal, None)
            return decision
        event = self._event(view, route, credential, started, decision.principal, None)
        if self._required:
            try:
                send(event.finished(event.status, "pending"), self._required)
            except AuthError as err:  # not recorded: not allowed (fail closed)
                refused = event._replace(outcome="deny", status=err.status, error=err.error)
                send(refused, self._optional)
                raise
        # (a plain constructor call: ``dataclasses.replace`` cost ~3 us per request)
        return Decision(
            decision.route,
            decision.principal,
            decision.credential_headers,
            event,
            decision.rate_headers,
        )

    def completed(self, decision: Decision, status: int, upstream: str) -> None:
        """Record a deferred decision's outcome: the status the client got and what became of
        the upstream exchange. A required sink that has the decision's line already gets this
        one only when it tells something new (a status other than the upstream's own answer).
        Never raises: the request has happened."""
        event = decision.event
        if event is None or not self.sinks:
            return
        final = event.finished(status, upstream)
        try:
            send(final, self._optional)
            if upstream != "ok":
                send(final, self._required)
        except AuthError:  # (a failing required log counts its own loss)
            pass

    async def failed_attempt(self, client: str) -> None:
        """Every 401 counts toward the client address's failed-attempt limit; past it, the
        failure is answered 429 instead. Only failing credentials are refused so: a valid one
        always passes, so nothing a stranger does (not even from the same address, behind a
        proxy or NAT, or over a Unix socket where no address is known) can lock a credential's
        owner out. (Also counted: failed client authentications at the token endpoint.)"""
        limit, window = self.failed_attempts
        verdict = await self.limiter.hit("fail:" + address_bucket(client), limit, window)
        if verdict.retry_after is not None:
            raise RateLimited(
                verdict.retry_after, debug="too many failed attempts from this client"
            )

    async def _rate_limit(self, route: Route, who: str) -> tuple[tuple[str, str], ...]:
        """The route's limit, per credential (per client address on public routes): the
        ``RateLimit-*`` headers for the answer, or ``RateLimited`` (429) carrying them."""
        if route.rate_limit is None:
            return ()
        limit, window = route.rate_limit
        verdict = await self.limiter.hit(f"route:{route.rate_key}:{who}", limit, window)
        headers = rate_limit_headers(limit, verdict)
        if verdict.retry_after is not None:
            raise RateLimited(verdict.retry_after, debug="route rate limit", more=headers)
        return headers

    def screen(self, view: RequestView) -> None:
        """The checks every request passes, whatever answers it (restguard's own endpoints
        too): no credential or method override in the query, no method- or path-override
        header, an unambiguous Content-Type. A refusal is recorded as a decision."""
        started = self.clock.monotonic()
        try:
            if view.query:
                check_query(view.query)
            check_headers(view)
            content_type(view.headers)
            check_encoding(view.headers)
        except AuthError as err:
            self._emit(view, None, None, started, None, err)
            raise

    def check_body(self, view: RequestView, body: bytes) -> None:
        """After an allowing decision: refuse a body carrying a ``_method`` parameter (read only
        now, so that no unauthenticated client can make restguard buffer a body). The refusal
        is recorded as a decision of its own."""
        try:
            check_body(view.headers, body)
        except AuthError as err:
            self.body_refused(view, err)
            raise

    def body_refused(self, view: RequestView, err: AuthError) -> None:
        """Record a body refusal found by ``wire.forms.check_body`` run elsewhere (a thread)."""
        self._emit(view, None, None, self.clock.monotonic(), None, err)

    def record(
        self,
        view: RequestView,
        *,
        status: int,
        started: float,
        error: str | None = None,
        auth_method: str | None = None,
        credential_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Record a decision made outside the policy: restguard's own endpoints (a token
        granted or refused). A required audit log that cannot take it raises (503): what it
        allowed must then not take effect."""
        if not self.sinks:
            return
        event = decision_event(
            self.clock,
            view,
            started,
            route=None,
            status=status,
            error=error,
            auth_method=auth_method,
            credential_id=credential_id,
            detail=redact(detail) if detail else None,
        )
        send(event, self.sinks)

    def refused(self, method: str, target: bytes, client: str, err: AuthError) -> None:
        """Record a request refused before it could be viewed (ambiguous path, header caps).
        Only the path is kept: a query string may carry a secret (an API key sent in a URL)."""
        shown = target.partition(b"?")[0][:256].decode("ascii", "backslashreplace")
        with contextlib.suppress(AuthError):  # refused anyway; a failing audit counts its loss
            self._emit(
                RequestView(method, shown, client=client),
                None,
                None,
                self.clock.monotonic(),
                None,
                err,
            )

    def _emit(
        self,
        view: RequestView,
        route: Route | None,
        credential: Credential | None,
        started: float,
        principal: Principal | None,
        err: AuthError | None,
    ) -> None:
        if not self.sinks:
            return
        send(self._event(view, route, credential, started, principal, err), self.sinks)

    def _event(
        self,
        view: RequestView,
        route: Route | None,
        credential: Credential | None,
        started: float,
        principal: Principal | None,
        err: AuthError | None,
    ) -> DecisionEvent:
        return decision_event(
            self.clock,
            view,
            started,
            route=route.name if route else None,
            status=err.status if err else 200,
            error=err.error if err else None,
            auth_method=(principal.auth_method if principal else None)
            or (credential.method if credential else None),
            credential_id=credential.credential_id if credential else None,
            detail=redact(err.debug) if err else None,
        )
