"""The gateway listener: restguard's own endpoints, then the guard, then the upstream.

Requests for restguard's own endpoints are answered here; every other request goes through
``GuardMiddleware`` (the same decision path as embedding) and, if allowed, to the upstream.
"""

from __future__ import annotations

from restguard.asgi import DECISION_KEY, VIEW_KEY, GuardMiddleware, Receive, Scope, Send
from restguard.config import Settings
from restguard.edge.asgi_send import send_json
from restguard.gateway.proxy import Upstream
from restguard.guard import Decision
from restguard.keys.signing import IdentityMinter
from restguard.observe import Metrics
from restguard.types import RequestView
from restguard.wiring import Runtime

JWKS_PATH = "/.well-known/jwks.json"
IDENTITY_REUSE_SECONDS = 60.0


class IdentityHeaders:
    """``X-Restguard-*`` identity headers; the signed token is reused for up to a minute per
    principal (its ``exp`` stays within 5 minutes) so signing does not sit on every request."""

    def __init__(self, minter: IdentityMinter) -> None:
        self.minter = minter
        self._cache: dict[tuple[str, str, frozenset[str], str], tuple[float, str]] = {}

    def __call__(self, decision: Decision) -> list[tuple[str, str]]:
        p = decision.principal
        if p.auth_method == "none":
            return []
        key = (p.subject, p.client_id, p.scopes, p.auth_method)
        now = self.minter.clock.monotonic()
        hit = self._cache.get(key)
        if hit is None or now - hit[0] >= IDENTITY_REUSE_SECONDS:
            if len(self._cache) > 10_000:
                self._cache.clear()
            hit = (now, self.minter.mint(p))
            self._cache[key] = hit
        return [
            ("X-Restguard-Subject", p.subject),
            ("X-Restguard-Client-Id", p.client_id),
            ("X-Restguard-Scopes", " ".join(sorted(p.scopes))),
            ("X-Restguard-Auth-Method", p.auth_method),
            ("X-Restguard-Identity", hit[1]),
        ]


class GatewayApp:
    """The gateway's ASGI application."""

    def __init__(self, runtime: Runtime, metrics: Metrics | None = None) -> None:
        settings: Settings = runtime.settings
        self.runtime = runtime
        self.metrics = metrics
        self.server = settings.server
        self.upstream = Upstream(
            settings.upstream.url,
            connect_timeout=settings.upstream.connect_timeout,
            timeout=settings.upstream.timeout,
            pool_size=settings.upstream.pool_size,
            max_body_bytes=settings.server.max_body_bytes,
        )
        self.identity = IdentityHeaders(runtime.minter)
        self.guarded = GuardMiddleware(
            self._forward,
            runtime.guard,
            trusted_proxies=settings.server.trusted_proxies,
            max_header_bytes=settings.server.max_header_bytes,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if (
            scope["type"] == "http"
            and scope.get("raw_path") == JWKS_PATH.encode()
            and scope["method"] in ("GET", "HEAD")
        ):
            await send_json(
                send,
                200,
                self.runtime.keys.jwks(),
                cache=b"public, max-age=300",
                head=scope["method"] == "HEAD",
            )
            return
        await self.guarded(scope, receive, send)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        decision: Decision = scope[DECISION_KEY]
        view: RequestView = scope[VIEW_KEY]
        seconds = await self.upstream.forward(scope, receive, send, view, decision, self.identity)
        if self.metrics is not None:
            self.metrics.observe_upstream(seconds)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.upstream.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
