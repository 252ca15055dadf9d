"""The admin listener: ``/healthz`` and ``/metrics`` (the admin API and console come later)."""

from __future__ import annotations

import json

from restguard.asgi import Receive, Scope, Send
from restguard.errors import BackendUnavailable
from restguard.observe import Metrics
from restguard.store.ports import Store


class AdminApp:
    """The admin listener's ASGI application."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store, self.metrics = store, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/healthz" and method in ("GET", "HEAD"):
            try:
                await self.store.ping()
                await self._send(send, 200, b"application/json", json.dumps({"status": "ok"}))
            except BackendUnavailable:
                await self._send(
                    send,
                    503,
                    b"application/json",
                    json.dumps(
                        {
                            "status": "unavailable",
                            "error": "temporarily_unavailable",
                            "error_description": "The store is not reachable.",
                        }
                    ),
                )
        elif path == "/metrics" and method in ("GET", "HEAD"):
            await self._send(
                send, 200, b"text/plain; version=0.0.4; charset=utf-8", self.metrics.render()
            )
        else:
            await self._send(
                send,
                404,
                b"application/json",
                json.dumps({"error": "not_found", "error_description": "No such admin endpoint."}),
            )

    @staticmethod
    async def _send(send: Send, status: int, ctype: bytes, body: str | bytes) -> None:
        data = body.encode() if isinstance(body, str) else body
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", ctype),
                    (b"content-length", str(len(data)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})
