"""``GuardMiddleware``: protect any ASGI app with restguard's policy (pure ASGI, no framework).

The wrapped app receives only allowed requests; the decision is in ``scope["restguard.decision"]``
(``restguard.guard.Decision``, with ``.principal``) and the judged request in
``scope["restguard.view"]``. Refused requests get the contract's JSON error
and never reach the app. WebSocket connections are refused: the policy covers HTTP only.

The app sees what was judged: the path as sent (dot segments are refused, not resolved), the
headers less invalid names and client-sent ``X-Restguard-*``, and the body: one that upstreams
read as parameters (forms, JSON, none declared; see ``wire.forms``) is read whole once the
request is allowed (up to ``max_body_bytes``), judged for a ``_method`` parameter, then replayed
to the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from restguard.edge.asgi_send import send_problem
from restguard.edge.view import RAW_TARGET_KEY, Network, view_from_scope
from restguard.errors import AuthError, PayloadTooLarge
from restguard.guard import Decision, Guard
from restguard.types import RequestView
from restguard.wire.forms import gate_for

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
        max_body_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.app, self.guard = app, guard
        self.trusted_proxies = tuple(trusted_proxies)
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes

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
            # Read whatever the headers announce or not: an HTTP/2 body needs no content-length
            # (RFC 9113 §8.1.1), and an absent body reads as b"" at once.
            if gate_for(view.headers) is not None:
                body = await self._read(view, receive)
                if body is None:  # the client went away
                    return
                self.guard.check_body(view, body)
                receive = replay(body, receive)
        except AuthError as err:
            await send_problem(send, err, head=scope["method"] == "HEAD")
            return
        judged = {**scope, "headers": list(view.headers), DECISION_KEY: decision, VIEW_KEY: view}
        await self.app(judged, receive, send)

    async def _read(self, view: RequestView, receive: Receive) -> bytes | None:
        try:
            return await read_body(receive, self.max_body_bytes)
        except AuthError as err:
            self.guard.refused(view.method, view.path.encode(), view.client, err)
            raise


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body (PayloadTooLarge over ``limit``), or None if the client left."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(debug="form body over the limit")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app ``body`` (already read), then the real events."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


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
