"""The decision engine: policy match -> the route's authenticators -> scope check -> Principal.

Every adapter (gateway, ASGI middleware, FastAPI dependency) calls ``Guard.decide`` and nothing
else, so they cannot disagree. The guard never reads the clock or the network itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from restguard.audit import DecisionEvent, EventSink, decision_event, send
from restguard.authz.policy import Policy, Route
from restguard.authz.ratelimit import RateLimiter, Verdict, address_bucket
from restguard.authz.request_checks import check_headers, check_query
from restguard.clock import Clock
from restguard.credentials.base import (
    AuthContext,
    Authenticator,
    CarriedInBody,
    Credential,
    ReadsBody,
    ReadsHeaders,
)
from restguard.credentials.challenges import challenges, why_missing
from restguard.errors import (
    AuthError,
    InsufficientScope,
    InvalidCredential,
    InvalidRequest,
    MissingCredential,
    NotFound,
    RateLimited,
)
from restguard.tokens import (
    carries_credential,
    may_carry,
    redact,
)
from restguard.types import ANONYMOUS, Principal, RequestView
from restguard.wire.forms import check_body, check_encoding, content_type


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
    missing = [s for s in scopes if s not in principal.scopes]
    if missing:
        raise InsufficientScope(tuple(scopes), debug="missing " + " ".join(missing))


class Guard:
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
        self.policy = policy
        self.authenticators = dict(authenticators)
        # The header names each authenticator's credential can be in (None: anywhere): one
        # whose names a request does not carry is not asked (``ReadsHeaders``).
        self._reads: dict[str, frozenset[bytes] | None] = {
            name: a.header_names if isinstance(a, ReadsHeaders) else None
            for name, a in self.authenticators.items()
        }
        self._carrier_reads = tuple(
            (a, self._reads[name]) for name, a in self.authenticators.items()
        )
        self._body_readers = tuple(
            (name, a) for name, a in self.authenticators.items() if isinstance(a, ReadsBody)
        )
        self._body_carriers = tuple(
            (name, a) for name, a in self.authenticators.items() if isinstance(a, CarriedInBody)
        )
        self.clock = clock
        self.limiter = limiter
        self.sinks = list(sinks)
        self._required = [s for s in self.sinks if getattr(s, "required", False)]
        self._optional = [s for s in self.sinks if not getattr(s, "required", False)]
        self.failed_attempts = failed_attempts

    async def authenticate(self, view: RequestView) -> Principal:
        """The Principal for ``view`` or an AuthError (public routes give an anonymous one)."""
        return (await self.decide(view)).principal

    def body_wanted(self, view: RequestView, *, fallback: Route | None = None) -> int:
        """How many bytes of body must be read before ``view`` can be decided: the most any
        authenticator of its route wants (``ReadsBody``); 0 for none, a public route, no route,
        or a request the policy cannot match (``decide`` refuses that one). The route is matched
        only when some authenticator wants the body of this request (its headers say so), so
        every other request costs a few header looks."""
        wants: list[tuple[str, int]] = []
        maybe: list[tuple[str, int]] = []
        for name, reader in self._body_readers:
            if limit := reader.body_limit(view):
                wants.append((name, limit))
        for name, carrier in self._body_carriers:
            if limit := carrier.body_carrier_limit(view):
                maybe.append((name, limit))
        if not wants and not maybe:
            return 0
        try:
            route = self.policy.match(view.method, view.path)
        except NotFound:
            if fallback is None:
                return 0
            route = fallback
        except AuthError:
            return 0
        if route.public:
            return 0
        wanted = max((limit for name, limit in wants if name in route.auth), default=0)
        if wanted or not any(name in route.auth for name, _ in maybe):
            return wanted
        if self._presents_in_head(view, route):
            return 0  # the credential is elsewhere: the body is not read for it
        return max(limit for name, limit in maybe if name in route.auth)

    def _presents_in_head(self, view: RequestView, route: Route) -> bool:
        """Whether an authenticator of ``route`` finds a credential (or a malformed one, or
        several) in the request's head."""
        try:
            self._extract(view, route)
        except MissingCredential:
            return False
        except AuthError:
            return True
        return True

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
            check_headers(view)
            content_type(view.headers)  # strict, on every request (wire/forms.py says why)
            check_encoding(view.headers)
            names = {name for name, _ in view.headers}
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
        with contextlib.suppress(AuthError):  # (a failing required log counts its own loss)
            send(final, self._optional)
            if upstream != "ok":
                send(final, self._required)

    def _carriers(self, view: RequestView, names: set[bytes] | None = None) -> tuple[bytes, ...]:
        """Every header carrying a restguard credential, used or not: where each kind is sent,
        and any other header whose value holds one (``Token <key>``, ``Basic`` credentials,
        ``X-Auth-Token`` ...). None of them reaches the upstream unless the route forwards
        credentials. ``names``: the request's header names, when known."""
        if names is None:
            names = {name for name, _ in view.headers}
        found: tuple[bytes, ...] = ()
        for a, reads in self._carrier_reads:
            if reads is None or not reads.isdisjoint(names):
                found += a.carriers(view)
        for name, value in view.headers:
            if (
                name not in found
                and name != b"host"
                and may_carry(value)
                and carries_credential(value)
            ):
                found += (name,)
        return found

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

    def _extract(
        self, view: RequestView, route: Route, names: set[bytes] | None = None
    ) -> Credential:
        """The one credential the request presents for this route (syntax only). A malformed
        credential is an invalid one (401, RFC 6750 §3.1 "invalid_token"). ``names``: the
        request's header names, when known."""
        if names is None:
            names = {name for name, _ in view.headers}
        found = []
        for method in route.auth:
            authenticator = self.authenticators.get(method)
            if authenticator is None:
                continue
            reads = self._reads[method]
            if reads is not None and reads.isdisjoint(names):
                continue  # (none of the headers its credential can be in)
            try:
                credential = authenticator.extract(view)
            except InvalidCredential as err:
                raise err.with_challenges(
                    challenges(self.authenticators, route.auth, method, err)
                ) from None
            if credential is not None:
                found.append(credential)
        if len(found) > 1:
            raise InvalidRequest("Send one credential per request.", debug="several credentials")
        if not found:
            raise MissingCredential(
                why_missing(self.authenticators, route.auth, view, self._carriers),
                debug="no credential",
            ).with_challenges(challenges(self.authenticators, route.auth))
        return found[0]

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
