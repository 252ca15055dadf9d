"""One request's way through the gateway: view -> guard -> upstream -> answer, streamed.

The client connection (``gateway/http1.py``) feeds the request head and body in; the upstream
connection (``gateway/upstream.py``) feeds the answer back. Header hygiene (CONTRACT "What the
upstream receives") is ``gateway/headers.py``; the decision itself is ``Guard.decide``, the
same call the ASGI middleware makes.

The request body's side of the exchange is ``gateway/exchange_body.py`` (what is read when, and
how much is held); the answer's, and the framing invariant that decides whether an upstream
connection is reused, ``gateway/exchange_answer.py``.

restguard's own endpoints (``gateway/own.py``) are answered here, after ``Guard.screen``: one
with a ``body_limit`` has its body read whole first (Content-Length or chunked, under the same
slow-body clock and caps; a declared length over the limit is refused with 413 before a byte is
read, a sent one at the first byte over it), ``100 Continue`` sent when the client waits for it;
any other endpoint's body is read and discarded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from restguard.authz.endpoints import OwnEndpoint, served_endpoint
from restguard.edge.problem import problem
from restguard.edge.view import build_view
from restguard.errors import (
    AuthError,
    Overloaded,
    PayloadTooLarge,
    ServerError,
    UpstreamError,
)
from restguard.gateway.exchange_answer import FRESH_ENOUGH, RETRYABLE, ExchangeAnswer
from restguard.gateway.exchange_body import _CONTINUE, ExchangeBody
from restguard.gateway.headers import upstream_head
from restguard.gateway.own import answer_own, check_own
from restguard.gateway.request_body import NO_BODY, RequestBody
from restguard.gateway.upstream_pool import PoolTimeout
from restguard.guard import Decision
from restguard.oauth2.http import EndpointRequest
from restguard.types import RequestView

if TYPE_CHECKING:
    from restguard.gateway.http1 import ClientConnection
    from restguard.gateway.upstream import UpstreamConnection

_log = logging.getLogger("restguard.gateway")


class Exchange(ExchangeBody, ExchangeAnswer):
    """One request and its answer (its body: ``ExchangeBody``; its answer: ``ExchangeAnswer``)."""

    def __init__(
        self,
        client: ClientConnection,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        http_version: str,
        keep_alive: bool,
        *,
        content_length: int | None,
        chunked: bool,
    ) -> None:
        self.client = client
        self.gw = client.gw
        self.method, self.target, self.headers = method, target, headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        # RFC 9110 §10.1.1: a server MUST ignore a 100-continue expectation in an HTTP/1.0
        # request (and §15.2: MUST NOT send a 1xx answer to an HTTP/1.0 client).
        self.expect_continue = False
        if http_version == "1.1":
            for k, v in headers:  # (a loop: ``any`` over a generator cost ~0.3 us more)
                if k == b"expect" and v.lower() == b"100-continue":
                    self.expect_continue = True
        self.body_complete = content_length in (None, 0) and not chunked
        self.body = (
            NO_BODY
            if self.body_complete
            else RequestBody(
                headers,
                content_length=content_length,
                chunked=chunked,
                max_bytes=self.gw.max_body_bytes,
                started=client.reading_time(),
            )
        )
        self._body: list[bytes] = []  # what arrived before forwarding
        self._discard = self.body.error is not None
        # (the other fields start at their class-level values below: one exchange per
        # request, and each assignment here cost ~30 ns)

    _buffered = 0
    _body_wait: asyncio.Future[None] | None = None
    _upstream: UpstreamConnection | None = None
    _forwarding = False
    _head_sent = False
    _chunked_out = False
    _close_after = False
    _head = b""
    _retried = False
    _retry: asyncio.Task[None] | None = None
    _forwarded_at = 0.0
    _collecting = False  # an own endpoint's body is being read whole (no buffer cap)
    finished = False

    # --- the exchange ------------------------------------------------------------------------
    _deferred: AuthError | None = None  # refused while queued: answered in its turn
    request_id = b""  # the view's X-Request-Id, for the client's answer (none before a view)

    async def run(self) -> None:
        """Decide and forward. Every way out answers the client exactly once; the answer itself
        arrives through the upstream connection's callbacks (``response_*``), not in this task."""
        if self._deferred is not None:
            self._respond_error(self._deferred)
            return
        await self._guarded(self._decide_and_forward())

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except AuthError as err:
            self._respond_error(err)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # this exchange is being cancelled (its client left, shutdown)
            # Something it awaited was cancelled under it: a bug, as below, not a hang.
            self._fail("a cancellation from below")
        except Exception:  # a bug: fail closed with a 500, never a hung connection
            self._fail("an unexpected error")

    def _fail(self, what: str) -> None:
        _log.exception("%s while handling %s", what, self.method)
        self._close_after = True
        self._abort_upstream()
        self._respond_error(ServerError(debug=f"{what}; see the server log"))

    async def _decide_and_forward(self) -> None:
        gw = self.gw
        if self.finished:  # refused while its head was being read on (a body refusal)
            return
        try:
            if self.body.error is not None:
                raise self.body.error
            view = build_view(
                self.method,
                self.target,
                self.headers,
                http_version=self.http_version,
                peer=self.client.peer,
                trusted_proxies=gw.trusted_proxies,
                max_header_bytes=None,  # capped while parsing (client_parsing.on_header)
                scheme=self.client.scheme,
                # No Content-Length (or 0) and no Transfer-Encoding: the body is empty (RFC
                # 9112 §6.3), known now, so ``body_wanted`` asks nothing to be read.
                body=b"" if self.body is NO_BODY else None,
            )
            self.request_id = view.request_id.encode("ascii")
            if gw.tracing is not None:
                self._span = gw.tracing.start(view)
            endpoint = served_endpoint(view.path)
        except AuthError as err:
            gw.guard.refused(self.method, self.target, self.client.peer, err)
            raise
        if endpoint is not None:  # restguard's own endpoints come before the policy
            gw.guard.screen(view)  # (no credential in the URL, no override: as everywhere)
            await self._answer_own(endpoint, view)
            return
        wanted = gw.guard.body_wanted(view)
        if wanted:  # a credential covers the body: read it whole before the decision
            try:
                body = await self._collect_body(min(wanted, gw.max_body_bytes))
            except AuthError as err:
                gw.guard.refused(self.method, self.target, self.client.peer, err)
                raise
            if body is None:  # refused or cut meanwhile: answered already
                return
            if body:  # forwarded after an allow, exactly these bytes
                self._body.append(body)
                self._buffered = len(body)
            if self.body_complete and self.chunked:
                # The whole body is here: it goes on with a Content-Length, which every
                # upstream reads (wsgiref and other HTTP/1.0-style servers do not decode a
                # chunked request body: the app would get b"" instead of the signed bytes).
                self.chunked = self.body.chunked = False
                self.content_length = self.body.content_length = len(body)
            view = view._replace(body=body)
        decision = await gw.guard.decide(view, deferred=True)
        self._decision = decision  # (recorded when the exchange ends: the status sent)
        if self.finished or self._discard:
            return
        if self.content_length is not None and self.content_length > gw.max_body_bytes:
            raise PayloadTooLarge(debug=f"content-length {self.content_length}")
        self._head = upstream_head(
            view,
            decision,
            upstream_host=gw.upstream_host,
            identity=gw.identity(decision),
            content_length=self.content_length,
            chunked=self.chunked,
            trace=b"" if self._span is None else gw.tracing.headers(self._span),  # type: ignore[union-attr]
        )
        if not (self.body_complete or self.expect_continue):
            # (a client that waits for 100 Continue sends nothing before it)
            limit = gw.limits.body_buffer_bytes
            await self._wait_body(lambda: self.body.seen >= limit)
            if self.finished or self._discard:
                return
        await self._forward(fresh=False)

    async def _answer_own(self, endpoint: OwnEndpoint, view: RequestView) -> None:
        """Answer one of restguard's own endpoints: refusals that need no body first (405,
        503), then the body if the endpoint reads one, then its handler's answer."""
        check_own(self.gw, endpoint, self.method)
        body = b""
        if endpoint.body_limit:
            collected = await self._collect_body(endpoint.body_limit)
            if collected is None:  # refused or cut meanwhile: answered already
                return
            body = collected
        request = EndpointRequest(
            method=self.method,
            path=view.path,
            headers=view.headers,
            body=body,
            query=view.query,
            client=view.client,
            scheme=view.scheme,
            raw_path=view.raw_path,
            via_trusted_proxy=view.via_trusted_proxy,
        )
        status, headers, answer = await answer_own(self.gw, endpoint, request)
        if self.finished:  # the client went away meanwhile
            return
        if not self.body_complete:  # the rest of a body is read and discarded
            self._discard = True
            if self.expect_continue:
                self._close_after = True
        self._respond(status, headers, answer)

    async def _forward(self, *, fresh: bool) -> None:
        """Send the head (and what arrived of the body) on a pooled connection."""
        try:
            upstream = await self.gw.pool.acquire(
                fresh=fresh,
                max_idle=None if self.method in RETRYABLE else FRESH_ENOUGH,
                streaming=not self.body_complete,
            )
        except PoolTimeout:
            self._outcome = "error"
            raise Overloaded(debug="no upstream connection free in time") from None
        except (OSError, TimeoutError) as exc:
            self._outcome = "error"
            raise UpstreamError(debug=f"connect: {exc!r}") from None
        if self.finished or self._discard:  # the client went away or the body failed meanwhile
            self.gw.pool.release(upstream)
            return
        self._upstream = upstream
        self._forwarded_at = self.gw.loop.time()
        upstream.sink = self
        upstream.head_only = self.method == "HEAD"
        upstream.write(self._head)
        if self.expect_continue and not self.body_complete:
            self.client.write(_CONTINUE)
            self.client.flush()
        self._forwarding = True
        for chunk in self._body:
            self._send_body(chunk)
        self._body.clear()
        if self._buffered:
            self._buffered = 0
            self.client.resume("buffer")
        upstream.watch()
        if self.body_complete:
            if self.chunked:
                upstream.write(self.body.last_chunk())
            upstream.request_sent()

    # --- endings -----------------------------------------------------------------------------

    def shut_down(self) -> None:
        """The server is stopping and this exchange ran out of grace."""
        self._outcome = "aborted"
        self._close_after = True
        self._abort_upstream()
        self._respond_error(
            Overloaded("The server is shutting down; retry.", debug="shutdown grace over")
        )

    def client_lost(self) -> None:
        """The client went away: abandon the upstream exchange."""
        self._abort_upstream()
        if not self.finished:
            self._outcome = "client_gone"
            self._record(499 if not self._head_sent else self._status)
        self.finished = True
        self._wake_body_wait()

    def _abort_upstream(self) -> None:
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            upstream.close()
            self.gw.pool.forget(upstream)

    def _respond_error(self, err: AuthError) -> None:
        if self.finished:
            return
        if self.client.active is not self:  # a queued request: its answer waits its turn
            self._deferred = self._deferred or err
            self._discard = True
            return
        if self._head_sent:  # an answer is already under way: cut it off, never splice a second
            self._close_after = True
            self._abort_upstream()
            self._finish()
            return
        status, headers, body = problem(err)
        if not self.body_complete:
            self._discard = True
            if self.expect_continue:
                self._close_after = True  # the client may never send the announced body
        if (b"connection", b"close") in headers:
            self._close_after = True
        framing = (b"content-length", b"connection")
        kept = [h for h in headers if h[0] not in framing]
        if self.request_id:
            kept.append((b"x-request-id", self.request_id))
        self._respond(status, kept, body)

    def _respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        reason = HTTPStatus(status).phrase.encode()
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        lines += [b"%s: %s\r\n" % (k, v) for k, v in headers]
        lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(self._connection_header())
        lines.append(b"\r\n")
        self.client.write(b"".join(lines) + (b"" if self.method == "HEAD" else body))
        self.client.flush()
        self._head_sent = True
        self._status = status
        self._finish()

    def _connection_header(self) -> bytes:
        """``connection: close`` when this answer ends the connection; HTTP/1.0 clients are told
        ``keep-alive`` when it stays open (RFC 9112 §9.3, persistence in 1.0 is opt-in)."""
        if not self.keep_alive or self._close_after:
            return b"connection: close\r\n"
        return b"connection: keep-alive\r\n" if self.http_version == "1.0" else b""

    _decision: Decision | None = None
    _status = 0  # the status the client was sent
    _outcome = "not_forwarded"  # what became of the upstream exchange (audit's "upstream")

    _span: Any = None  # the request's trace span ([tracing] on)

    def _record(self, status: int) -> None:
        """Record an allowed request's outcome (once): the guard deferred its event; end the
        request's span."""
        decision, self._decision = self._decision, None
        if decision is not None:
            self.gw.guard.completed(decision, status, self._outcome)
        span, self._span = self._span, None
        if span is not None and self.gw.tracing is not None:
            route = decision.route.name if decision is not None else None
            method = decision.principal.auth_method if decision is not None else None
            outcome = "allow" if decision is not None else "deny"
            self.gw.tracing.end(span, status, route, method or None, outcome)

    def _finish(self) -> None:
        if self.finished:
            return
        self._record(self._status)
        self.finished = True
        self.client.flush()
        # Whatever this exchange paused the client's reading for no longer applies.
        self._body.clear()
        self._buffered = 0
        self.client.resume("buffer")
        self.client.resume("upstream")
        self.client.exchange_finished(self, self.keep_alive and not self._close_after)
