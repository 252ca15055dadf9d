"""``GuardMiddleware``: protect any ASGI app with restguard's policy (pure ASGI, no framework).

The wrapped app receives only allowed requests; the decision is in ``scope["restguard.decision"]``
(``restguard.guard.Decision``, with ``.principal``) and the judged request in
``scope["restguard.view"]``. Refused requests get the contract's JSON error
and never reach the app. WebSocket connections are refused: the policy covers HTTP only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from restguard.edge.asgi_send import send_problem
from restguard.edge.view import RAW_TARGET_KEY, Network, view_from_scope
from restguard.errors import AuthError
from restguard.guard import Decision, Guard
from restguard.types import RequestView

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
DECISION_KEY = "restguard.decision"
VIEW_KEY = "restguard.view"


class GuardMiddleware:
    """Wraps ``app``; every HTTP request goes through ``guard.decide`` first."""

    def __init__(
        self,
        app: ASGIApp,
        guard: Guard,
        *,
        trusted_proxies: Sequence[Network] = (),
        max_header_bytes: int = 16 * 1024,
    ) -> None:
        self.app, self.guard = app, guard
        self.trusted_proxies = tuple(trusted_proxies)
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        try:
            view, decision = await decide_scope(
                self.guard,
                scope,
                trusted_proxies=self.trusted_proxies,
                max_header_bytes=self.max_header_bytes,
            )
        except AuthError as err:
            await send_problem(send, err, head=scope["method"] == "HEAD")
            return
        await self.app({**scope, DECISION_KEY: decision, VIEW_KEY: view}, receive, send)


async def decide_scope(
    guard: Guard,
    scope: Mapping[str, Any],
    *,
    trusted_proxies: Sequence[Network] = (),
    max_header_bytes: int = 16 * 1024,
) -> tuple[RequestView, Decision]:
    """The guard's decision for an ASGI request, or AuthError. Requests refused before a view
    could be built (ambiguous path, oversized headers) are recorded as decisions too."""
    try:
        view = view_from_scope(
            scope, trusted_proxies=trusted_proxies, max_header_bytes=max_header_bytes
        )
    except AuthError as err:
        client = scope.get("client")
        target = scope.get(RAW_TARGET_KEY) or scope.get("raw_path") or b""
        guard.refused(scope["method"], target, client[0] if client else "", err)
        raise
    return view, await guard.decide(view)
