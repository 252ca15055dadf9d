"""The admin listener: the admin REST API under ``/api/`` (``admin/api.py``), ``/healthz``,
``/readyz`` and ``/metrics``.

``/healthz`` is liveness: 200 while the store answers. ``/readyz`` is readiness for load
balancers: 200 only when every check passes (the store, the upstream, the audit log, and Redis
once it is configured), else 503 with the failed parts named in ``failed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from restguard.asgi import ASGIApp, Receive, Scope, Send
from restguard.edge.asgi_send import acknowledge_lifespan, send_json
from restguard.errors import BackendUnavailable
from restguard.observe import Metrics
from restguard.store.ports import Store

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
    ) -> None:
        self.store, self.metrics, self.api = store, metrics, api
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
                return await asyncio.wait_for(check(), READY_CHECK_TIMEOUT)
            except (TimeoutError, OSError):
                return False

        names = list(self.checks)
        results = await asyncio.gather(*(run(self.checks[n]) for n in names))
        return [name for name, ok in zip(names, results, strict=True) if not ok]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if self.api is not None and (path == "/api" or path.startswith("/api/")):
            await self.api(scope, receive, send)
            return
        head = method == "HEAD"
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
