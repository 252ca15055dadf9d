"""The admin listener: the admin REST API under ``/api/`` (``admin/api.py``), ``/healthz``,
``/readyz`` and ``/metrics``, and the admin console on every other path (``admin/console/``).

``/healthz`` is liveness: 200 while the store answers. ``/readyz`` is readiness for load
balancers: 200 only when every check passes (the store, the upstream, the audit log, and Redis
once it is configured), else 503 with the failed parts named in ``failed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from restguard.admin.api import admin_guard, mount
from restguard.admin.console.app import Console
from restguard.admin.console.timeline import Timeline
from restguard.asgi import ASGIApp, Receive, Scope, Send
from restguard.edge.asgi_send import acknowledge_lifespan, send_json
from restguard.errors import BackendUnavailable
from restguard.keys.sealing import Sealer, open_sealer
from restguard.observe import Metrics
from restguard.store.ports import Store
from restguard.wiring import Runtime

_PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
READY_CHECK_TIMEOUT = 2.0
Check = Callable[[], Awaitable[bool]]


class AdminApp:
    """The admin listener's ASGI application. ``checks`` are readiness checks by part name
    (``/readyz``); the store's is always one of them. ``api`` answers ``/api/`` (the admin
    API behind its guard: ``admin.api.mount``)."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        checks: Mapping[str, Check] | None = None,
        api: ASGIApp | None = None,
        console: ASGIApp | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        self.store, self.metrics, self.api, self.console = store, metrics, api, console
        self.timeline = timeline
        self.checks: dict[str, Check] = {"store": self._store_up, **(checks or {})}

    async def _store_up(self) -> bool:
        try:
            await self.store.ping()
        except BackendUnavailable:
            return False
        return True

    async def _failed(self) -> list[str]:
        """The parts whose check fails (or does not answer in time), all checked at once."""

        async def run(check: Check) -> bool:
            try:
                async with asyncio.timeout(READY_CHECK_TIMEOUT):  # (not wait_for)
                    return await check()
            except (TimeoutError, OSError):
                return False

        names = list(self.checks)
        results = await asyncio.gather(*(run(self.checks[n]) for n in names))
        return [name for name, ok in zip(names, results, strict=True) if not ok]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            sampler = None
            if self.timeline is not None:  # the dashboard's samples, while the listener runs
                sampler = asyncio.get_running_loop().create_task(self.timeline.run())
            try:
                await acknowledge_lifespan(receive, send)
            finally:
                if sampler is not None:
                    sampler.cancel()
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if self.api is not None and (path == "/api" or path.startswith("/api/")):
            await self.api(scope, receive, send)
            return
        head = method == "HEAD"
        if self.console is not None and path not in ("/healthz", "/readyz", "/metrics"):
            await self.console(scope, receive, send)
            return
        if method not in ("GET", "HEAD") or path not in ("/healthz", "/readyz", "/metrics"):
            await send_json(
                send, 404, {"error": "not_found", "error_description": "No such admin endpoint."}
            )
        elif path == "/metrics":
            await send_json(send, 200, self.metrics.render(), content_type=_PROMETHEUS, head=head)
        elif path == "/readyz":
            failed = await self._failed()
            if failed:
                body = {
                    "status": "unavailable",
                    "failed": failed,
                    "error": "temporarily_unavailable",
                    "error_description": "Not ready: " + ", ".join(failed) + ".",
                }
                await send_json(send, 503, body, head=head)
            else:
                await send_json(send, 200, {"status": "ok"}, head=head)
        else:
            if not await self._store_up():
                await send_json(
                    send,
                    503,
                    {
                        "status": "unavailable",
                        "error": "temporarily_unavailable",
                        "error_description": "The store is not reachable.",
                    },
                    head=head,
                )
                return
            await send_json(send, 200, {"status": "ok"}, head=head)


def admin_app(runtime: Runtime, metrics: Metrics, checks: Mapping[str, Check]) -> AdminApp:
    """The admin listener of a running restguard: the API and the console behind the admin
    guard, the dashboard's timeline read off ``metrics``."""
    guard = admin_guard(runtime.guard)
    settings = runtime.settings

    def sealer() -> Sealer:  # opened per use, as the CLI does: the key file may change
        return open_sealer(settings.master_key_path)

    timeline = Timeline(metrics.decision_totals)
    console = Console(
        runtime.store,
        runtime.clock,
        guard,
        sealer,
        timeline,
        metrics.decision_totals,
        public_url=settings.server.public_url,
        audit_path=settings.audit_path,
        trusted_proxies=settings.server.trusted_proxies,
    )
    api = mount(runtime, guard, sealer)
    return AdminApp(runtime.store, metrics, checks, api=api, console=console, timeline=timeline)
