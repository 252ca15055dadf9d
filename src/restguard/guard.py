"""The decision engine: policy match -> the route's authenticators -> scope check -> Principal.

Every adapter (gateway, ASGI middleware, FastAPI dependency) calls ``Guard.decide`` and nothing
else, so they cannot disagree. The guard never reads the clock or the network itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from restguard.audit import DecisionEvent, EventSink
from restguard.authz.policy import Policy, Route
from restguard.authz.ratelimit import RateLimiter
from restguard.clock import Clock
from restguard.credentials.base import AuthContext, Authenticator, Credential
from restguard.errors import (
    AuthError,
    InsufficientScope,
    InvalidCredential,
    InvalidRequest,
    MissingCredential,
    RateLimited,
)
from restguard.types import ANONYMOUS, Principal, RequestView

# Headers that ask a server to act on another method than the one on the request line.
METHOD_OVERRIDE_HEADERS = frozenset(
    {b"x-http-method-override", b"x-http-method", b"x-method-override"}
)
# Headers that ask a server to route another path than the one on the request line (IIS URL
# Rewrite; honoured by older Symfony and Zend, CVE-2018-14773): the upstream would act on a path
# the policy never judged.
PATH_OVERRIDE_HEADERS = frozenset({b"x-original-url", b"x-rewrite-url"})
# Headers a client must not be able to drop through ``Connection`` (RFC 9110 §7.6.1).
PROTECTED_HEADERS = frozenset(
    {
        b"authorization",
        b"x-api-key",
        b"signature",
        b"signature-input",
        b"content-digest",
        b"host",
        b"content-length",
        b"content-type",
        b"cookie",
    }
)
IDENTITY_PREFIX = b"x-restguard-"


@dataclass(frozen=True, slots=True)
class Decision:
    """An allowed request: the route, who, and which headers carried the credential."""

    route: Route
    principal: Principal
    credential_headers: tuple[bytes, ...] = ()


def check_headers(view: RequestView) -> None:
    """Refuse headers that would make the upstream see something other than what was judged."""
    for name, value in view.headers:
        if name.startswith(IDENTITY_PREFIX):
            raise InvalidRequest(
                "X-Restguard-* headers are set by restguard only.", debug=f"client sent {name!r}"
            )
        if name in METHOD_OVERRIDE_HEADERS:
            raise InvalidRequest(
                "Method-override headers are not accepted; use the real HTTP method.",
                debug=f"client sent {name!r}",
            )
        if name in PATH_OVERRIDE_HEADERS:
            raise InvalidRequest(
                "Path-override headers are not accepted; put the path in the request line.",
                debug=f"client sent {name!r}",
            )
        if name == b"connection":
            for token in value.lower().split(b","):
                token = token.strip(b" \t")
                if token.startswith(IDENTITY_PREFIX) or token in PROTECTED_HEADERS:
                    raise InvalidRequest(
                        "The Connection header names a header restguard relies on.",
                        debug=f"Connection: {token!r}",
                    )


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
        self.clock = clock
        self.limiter = limiter
        self.sinks = list(sinks)
        self.failed_attempts = failed_attempts

    async def authenticate(self, view: RequestView) -> Principal:
        """The Principal for ``view`` or an AuthError (public routes give an anonymous one)."""
        return (await self.decide(view)).principal

    async def decide(self, view: RequestView) -> Decision:
        """Decide ``view``; emit one decision event either way."""
        started = self.clock.monotonic()
        route: Route | None = None
        credential: Credential | None = None
        try:
            route = self.policy.match(view.method, view.path)
            check_headers(view)
            if route.public:
                await self._rate_limit(route, "addr:" + view.client)
                decision = Decision(route, ANONYMOUS)
            else:
                credential = self._extract(view, route)
                decision = await self._authorize(view, route, credential)
        except AuthError as err:
            self._emit(view, route, credential, started, None, err)
            raise
        self._emit(view, route, credential, started, decision.principal, None)
        return decision

    def _challenges(
        self, route: Route, failed: Authenticator | None = None, err: AuthError | None = None
    ) -> tuple[str, ...]:
        """One ``WWW-Authenticate`` challenge per method the route accepts."""
        return tuple(
            a.challenge(err if a is failed else None)
            for m in route.auth
            if (a := self.authenticators.get(m)) is not None
        )

    def _extract(self, view: RequestView, route: Route) -> Credential:
        """The one credential the request presents for this route (syntax only)."""
        found = [
            c
            for m in route.auth
            if (a := self.authenticators.get(m)) is not None and (c := a.extract(view)) is not None
        ]
        if len(found) > 1:
            raise InvalidRequest("Send one credential per request.", debug="several credentials")
        if not found:
            raise MissingCredential(debug="no credential").with_challenges(self._challenges(route))
        return found[0]

    async def _authorize(self, view: RequestView, route: Route, credential: Credential) -> Decision:
        fail_key = "fail:" + view.client
        limit, window = self.failed_attempts
        now = self.clock.monotonic()
        retry = await self.limiter.blocked(fail_key, limit, window, now)
        if retry is not None:
            raise RateLimited(retry, debug="too many failed attempts from this client")
        ctx = AuthContext(self.clock.now(), view.client)
        authenticator = self.authenticators[credential.method]
        try:
            principal = await authenticator.authenticate(credential, ctx)
        except InvalidCredential as err:
            await self.limiter.hit(fail_key, limit, window, now)
            raise err.with_challenges(self._challenges(route, authenticator, err)) from None
        require_scopes(principal, route.scopes)
        await self._rate_limit(route, f"{principal.auth_method}:{principal.client_id}")
        return Decision(route, principal, credential.headers)

    async def _rate_limit(self, route: Route, who: str) -> None:
        """The route's limit, per credential (per client address on public routes)."""
        if route.rate_limit is None:
            return
        limit, window = route.rate_limit
        now = self.clock.monotonic()
        retry = await self.limiter.hit(f"route:{route.index}:{who}", limit, window, now)
        if retry is not None:
            raise RateLimited(retry, debug="route rate limit")

    def refused(self, method: str, target: bytes, client: str, err: AuthError) -> None:
        """Record a request refused before it could be viewed (ambiguous path, header caps).
        Only the path is kept: a query string may carry a secret (an API key sent in a URL)."""
        shown = target.partition(b"?")[0][:256].decode("ascii", "backslashreplace")
        self._emit(
            RequestView(method, shown, client=client), None, None, self.clock.monotonic(), None, err
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
        event = DecisionEvent(
            time=self.clock.now().isoformat(timespec="milliseconds"),
            method=view.method,
            path=view.path,
            route=route.name if route else None,
            outcome="deny" if err else "allow",
            status=err.status if err else 200,
            error=err.error if err else None,
            auth_method=(principal.auth_method if principal else None)
            or (credential.method if credential else None),
            credential_id=credential.credential_id if credential else None,
            client=view.client,
            detail=err.debug if err else None,
            duration_ms=round((self.clock.monotonic() - started) * 1000, 3),
        )
        for sink in self.sinks:
            sink(event)
