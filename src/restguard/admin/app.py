"""The admin listener: ``/healthz`` and ``/metrics`` (the admin API and console come later)."""

from __future__ import annotations

from restguard.asgi import Receive, Scope, Send
from restguard.edge.asgi_send import acknowledge_lifespan, send_json
from restguard.errors import BackendUnavailable
from restguard.observe import Metrics
from restguard.store.ports import Store

_PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"


class AdminApp:
    """The admin listener's ASGI application."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store, self.metrics = store, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        head = method == "HEAD"
        if method not in ("GET", "HEAD") or path not in ("/healthz", "/metrics"):
            await send_json(
                send, 404, {"error": "not_found", "error_description": "No such admin endpoint."}
            )
        elif path == "/metrics":
            await send_json(send, 200, self.metrics.render(), content_type=_PROMETHEUS, head=head)
        else:
            try:
                await self.store.ping()
            except BackendUnavailable:
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
