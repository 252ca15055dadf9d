"""Small ASGI senders shared by the listeners: errors (through edge.problem, the one
translator), JSON answers, and a lifespan that only acknowledges."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from restguard.edge.problem import problem
from restguard.errors import AuthError

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def send_problem(send: Send, err: AuthError, *, head: bool = False) -> None:
    status, headers, body = problem(err)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_json(
    send: Send,
    status: int,
    data: Any,
    *,
    content_type: bytes = b"application/json",
    cache: bytes = b"no-store",
    head: bool = False,
) -> None:
    """Answer with ``data`` as JSON (or as-is when it is already bytes)."""
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", cache),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def acknowledge_lifespan(receive: Receive, send: Send) -> None:
    """Run an ASGI lifespan that has nothing to start or stop."""
    while True:
        message = await receive()
        kind = message["type"].removeprefix("lifespan.")
        await send({"type": f"lifespan.{kind}.complete"})
        if kind == "shutdown":
            return
