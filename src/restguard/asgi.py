"""``GuardMiddleware``: protect any ASGI app with restguard's policy (pure ASGI, no framework).

The wrapped app receives only allowed requests; the decision is in ``scope["restguard.decision"]``
(``restguard.guard.Decision``, with ``.principal``) and the judged request in
``scope["restguard.view"]``. Refused requests get the contract's JSON error
and never reach the app. WebSocket connections are refused: the policy covers HTTP only (a
FastAPI endpoint's ``require_scopes`` decides its WebSocket handshakes, see ``restguard.fastapi``).

The app sees what was judged: the path as sent (dot segments are refused, not resolved), the
headers less invalid names and client-sent ``X-Restguard-*``, and the body: one that upstreams
read as parameters (forms, JSON, none declared; see ``wire.forms``) is read whole once the
request is allowed (up to ``max_body_bytes``), judged for a ``_method`` parameter, then replayed
to the app. A body the request's credential covers (``Guard.body_wanted``: RFC 9421 with
``Content-Digest``) is read whole before the decision instead (capped by the authenticator),
decided with, and replayed the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from restguard.authz.policy import Route
from restguard.edge.asgi_send import send_problem
from restguard.edge.view import RAW_TARGET_KEY, Network, view_from_scope
from restguard.errors import AuthError, PayloadTooLarge
from restguard.guard import Decision, Guard
from restguard.types import RequestView
from restguard.wire.forms import check_body, gate_for
from restguard.wiring import Runtime

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
DECISION_KEY = "restguard.decision"
VIEW_KEY = "restguard.view"


class GuardMiddleware:
    """Wraps ``app``; every HTTP request goes through ``guard.decide`` first.

    ``guard`` is a ``Runtime`` (``wiring.open_runtime``: ``trusted_proxies`` and the header and
    body limits then default to its settings') or a bare ``Guard``. A request an outer
    restguard layer decided already (``scope["restguard.decision"]``) passes straight on."""

    def __init__(
        self,
        app: ASGIApp,
        guard: Guard | Runtime,
        *,
        trusted_proxies: Sequence[Network] | None = None,
        max_header_bytes: int | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.guard, limits = guard_and_limits(guard)
        self.trusted_proxies = tuple(
            limits.trusted_proxies if trusted_proxies is None else trusted_proxies
        )
        self.max_header_bytes = max_header_bytes or limits.max_header_bytes
        self.max_body_bytes = max_body_bytes or limits.max_body_bytes

    def fallback(self, scope: Scope) -> Route | None:
        """The route that decides a request no policy route matches: here none (default
        deny); ``restguard.fastapi`` asks the app's endpoint."""
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or DECISION_KEY in scope:
            await self.app(scope, receive, send)
            return
        fallback = self.fallback(scope)
        if kind == "websocket":
            await self._websocket(scope, receive, send, fallback)
            return
        try:
            view = scope_view(
                self.guard,
                scope,
                trusted_proxies=self.trusted_proxies,
                max_header_bytes=self.max_header_bytes,
            )
            body: bytes | None = None
            wanted = self.guard.body_wanted(view, fallback=fallback)
            if wanted:  # a credential covers the body: read it whole before the decision
                body = await self._read(view, receive, min(wanted, self.max_body_bytes))
                if body is None:  # the client went away
                    return
                view = view._replace(body=body)
            decision = await self.guard.decide(view, fallback=fallback)
            # Read whatever the headers announce or not: an HTTP/2 body needs no content-length
            # (RFC 9113 §8.1.1), and an absent body reads as b"" at once.
            if body is None and gate_for(view.headers) is not None:
                body = await self._read(view, receive)
                if body is None:  # the client went away
                    return
            if body is not None:
                if gate_for(view.headers) is not None:
                    await judge_body(self.guard, view, body)
                receive = replay(body, receive)
        except AuthError as err:
            await send_problem(send, err, head=scope["method"] == "HEAD")
            return
        judged = {**scope, "headers": list(view.headers), DECISION_KEY: decision, VIEW_KEY: view}
        if decision.rate_headers:
            send = with_rate_headers(send, decision.rate_headers)
        await self.app(judged, receive, send)

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, fallback: Route | None
    ) -> None:
        """The policy covers HTTP: a WebSocket handshake is refused (1008) unless the endpoint
        says how to decide it (public on purpose, or its ``require_scopes``): then it is judged
        as the GET it is, a policy route for the path first."""
        if fallback is None:
            await send({"type": "websocket.close", "code": 1008})
            return
        try:
            view, decision = await self._decide(scope, fallback)
        except AuthError:
            await send({"type": "websocket.close", "code": 1008})
            return
        judged = {**scope, "headers": list(view.headers), DECISION_KEY: decision, VIEW_KEY: view}
        await self.app(judged, receive, send)

    async def _decide(self, scope: Scope, fallback: Route | None) -> tuple[RequestView, Decision]:
        return await decide_scope(
            self.guard,
            scope,
            trusted_proxies=self.trusted_proxies,
            max_header_bytes=self.max_header_bytes,
            fallback=fallback,
        )

    async def _read(
        self, view: RequestView, receive: Receive, limit: int | None = None
    ) -> bytes | None:
        try:
            return await read_body(receive, self.max_body_bytes if limit is None else limit)
        except AuthError as err:
            self.guard.refused(view.method, view.path.encode(), view.client, err)
            raise


def with_rate_headers(send: Send, rate: tuple[tuple[str, str], ...]) -> Send:
    """``send`` with the route's ``RateLimit-*`` headers in the answer's head, replacing any
    ``ratelimit-*`` the app set."""
    extra = [(n.encode("ascii"), v.encode("ascii")) for n, v in rate]

    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", ())
            kept = [(n, v) for n, v in headers if not n.lower().startswith(b"ratelimit")]
            message = {**message, "headers": kept + extra}
        await send(message)

    return sending


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


THREAD_BODY_BYTES = 64 * 1024


async def judge_body(guard: Guard, view: RequestView, body: bytes) -> None:
    """``guard.check_body``, in a worker thread for a large body: reading one adversarial body
    as parameters costs the gates a Python step per line, name or string (seconds for 10 MiB),
    and the app's event loop must keep serving everyone else meanwhile."""
    if len(body) <= THREAD_BODY_BYTES:
        guard.check_body(view, body)
        return
    try:
        await asyncio.to_thread(check_body, view.headers, body)
    except AuthError as err:
        guard.body_refused(view, err)
        raise


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


@dataclass(frozen=True, slots=True)
class Limits:
    """What an embedded guard takes from the settings (the gateway's defaults without them)."""

    trusted_proxies: tuple[Network, ...] = ()
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 10 * 1024 * 1024


def guard_and_limits(guard: Guard | Runtime) -> tuple[Guard, Limits]:
    """The guard, and the limits of the runtime's settings (defaults for a bare Guard)."""
    if isinstance(guard, Guard):
        return guard, Limits()
    server = guard.settings.server
    return guard.guard, Limits(
        tuple(server.trusted_proxies), server.max_header_bytes, server.max_body_bytes
    )


async def decide_scope(
    guard: Guard,
    scope: Mapping[str, Any],
    *,
    trusted_proxies: Sequence[Network] = (),
    max_header_bytes: int = 16 * 1024,
    fallback: Route | None = None,
) -> tuple[RequestView, Decision]:
    """The guard's decision for an ASGI request (a WebSocket handshake is the GET it is, RFC
    6455 §4.1), or AuthError. Requests refused before a view could be built (ambiguous path,
    oversized headers) are recorded as decisions too."""
    if scope["type"] == "websocket":
        scope = {**scope, "method": "GET"}
    view = scope_view(
        guard, scope, trusted_proxies=trusted_proxies, max_header_bytes=max_header_bytes
    )
    return view, await guard.decide(view, fallback=fallback)


def scope_view(
    guard: Guard,
    scope: Mapping[str, Any],
    *,
    trusted_proxies: Sequence[Network] = (),
    max_header_bytes: int = 16 * 1024,
) -> RequestView:
    """The core's view of an ASGI request, or AuthError (recorded as a refused request). Its
    ``raw_path`` is the server's ``raw_path`` when it gives one (what the client sent)."""
    try:
        view = view_from_scope(
            scope, trusted_proxies=trusted_proxies, max_header_bytes=max_header_bytes
        )
    except AuthError as err:
        client = scope.get("client")
        target = scope.get(RAW_TARGET_KEY) or scope.get("raw_path") or b""
        guard.refused(scope["method"], target, client[0] if client else "", err)
        raise
    raw_path = scope.get("raw_path")
    if RAW_TARGET_KEY not in scope and isinstance(raw_path, bytes) and raw_path:
        view = view._replace(raw_path=raw_path)
    return view
