"""Send an AuthError as an ASGI response (through edge.problem, the one translator)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from restguard.edge.problem import problem
from restguard.errors import AuthError

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def send_problem(send: Send, err: AuthError, *, head: bool = False) -> None:
    status, headers, body = problem(err)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
