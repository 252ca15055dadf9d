"""The request body side of an exchange (``gateway/exchange.py``): fed by the client
connection, held, collected whole, or forwarded as it arrives.

Bodies (accounting in ``gateway/request_body.py``): a body the request's credential covers
(``Guard.body_wanted``: RFC 9421 with ``Content-Digest``) is read whole before the decision,
capped by the authenticator (413 above), and exactly those bytes are forwarded after an allow;
an ``application/x-www-form-urlencoded`` body is read whole before the decision, which checks
it; a multipart body streams through
``wire.forms``'s gate, which releases no byte of a part header it has not checked. Any other
body is read up to ``[server] body_buffer_bytes`` before an upstream connection is taken, so slow
senders of small bodies hold no pooled connection, and streams from there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from restguard.errors import AuthError, PayloadTooLarge

if TYPE_CHECKING:
    from restguard.gateway.http1 import ClientConnection
    from restguard.gateway.request_body import RequestBody
    from restguard.gateway.server import Gateway
    from restguard.gateway.upstream import UpstreamConnection

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ExchangeBody:
    """One request's body, from the client connection on. A base of ``Exchange``."""

    # The body's own state (set in ``Exchange.__init__``).
    body: RequestBody  # its accounting and framing (``gateway/request_body.py``)
    body_complete: bool
    _body: list[bytes]  # what arrived before forwarding
    _buffered: int
    _discard: bool  # the rest of the body is read and dropped
    _body_wait: asyncio.Future[None] | None  # the exchange waiting for more of the body
    _collecting: bool  # an own endpoint's body is being read whole (no buffer cap)

    # What it reads of the rest of the exchange (``gateway/exchange.py``,
    # ``gateway/exchange_answer.py``).
    client: ClientConnection
    gw: Gateway
    method: str
    target: bytes
    keep_alive: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool
    finished: bool
    _upstream: UpstreamConnection | None
    _forwarding: bool  # the request head went upstream: body bytes follow it at once
    _head_sent: bool  # the client's answer has started
    _close_after: bool
    _outcome: str

    if TYPE_CHECKING:  # the exchange's own (declared here for the type checker)

        def _abort_upstream(self) -> None: ...

        def _respond_error(self, err: AuthError) -> None: ...

        def _finish(self) -> None: ...

    # --- request body, fed by the client connection -----------------------------------------
    def feed_body(self, data: bytes) -> None:
        if self._discard or self.finished:
            return
        try:
            data = self.body.take(data)
        except AuthError as err:
            self._refuse_body(err)
            return
        self._pass_on(data)

    def _pass_on(self, data: bytes) -> None:
        if self._forwarding:
            self._send_body(data)
            if self._upstream is not None:  # an upload in progress is not an idle upstream
                self._upstream.last_read = self.gw.loop.time()
            return
        self._body.append(data)
        self._buffered += len(data)
        # (what a gate holds back counts too: body.seen is everything received)
        if not self._collecting and self.body.seen >= self.gw.limits.body_buffer_bytes:
            self.client.pause("buffer")
            self._wake_body_wait()

    def body_done(self) -> None:
        if self.body_complete or self.finished or self._discard:
            self.body_complete = True
            return
        try:
            self._pass_on(self.body.finish())
        except AuthError as err:
            self._refuse_body(err)
            return
        self.body_complete = True
        if self._forwarding and self._upstream is not None:
            if self.chunked:
                self._upstream.write(self.body.last_chunk())
            self._upstream.request_sent()
        self._wake_body_wait()

    def _send_body(self, data: bytes) -> None:
        assert self._upstream is not None
        if data:
            self._upstream.write(self.body.encode(data))

    def _wake_body_wait(self) -> None:
        waiter, self._body_wait = self._body_wait, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _refuse_body(self, err: AuthError) -> None:
        """The body cannot go on (too large, a refused form field). The client connection
        stays: llhttp still knows the body's framing, so the rest of it is read and discarded,
        never taken for a next request."""
        self._discard = True
        if self._forwarding:  # the upstream holds an incomplete request: that one is dropped
            self._outcome = "aborted"
            self._abort_upstream()
        self._wake_body_wait()
        if not self._head_sent:
            self.gw.guard.refused(self.method, self.target, self.client.peer, err)
        self._respond_error(err)

    def body_failed(self, err: AuthError) -> None:
        """The request body broke its framing or came too slowly: nothing more of it can be
        trusted or waited for."""
        self._discard = True
        self._close_after = True
        self.keep_alive = False
        self._wake_body_wait()
        if self._forwarding:
            self._outcome = "aborted"
            self._abort_upstream()
        if self._head_sent:
            self._finish()
        else:
            self._respond_error(err)

    # --- waiting for the body ----------------------------------------------------------------
    async def _wait_body(self, enough: Callable[[], bool]) -> None:
        """Wait (with reading on) until ``enough()`` or the body ended one way or another."""
        while not (enough() or self.body_complete or self._discard or self.finished):
            self._body_wait = self.gw.loop.create_future()
            await self._body_wait

    async def _collect_body(self, limit: int) -> bytes | None:
        """The whole request body, at most ``limit`` bytes (413 beyond: before reading when
        the declared length is over it, else at the first byte over it). None when the body
        was refused, too slow or broken, or the client left: that was answered already."""
        if self.content_length is not None and self.content_length > limit:
            raise PayloadTooLarge(debug=f"content-length {self.content_length} over {limit}")
        if self.body.seen > limit:  # (arrived, maybe whole, while the request was screened)
            raise PayloadTooLarge(debug=f"body over {limit}")
        if not self.body_complete:
            self.body.limit(limit)
            self._collecting = True
            self.client.resume("buffer")  # (held at body_buffer_bytes before: read on)
            if self.expect_continue:
                self.client.write(_CONTINUE)
                self.client.flush()
            await self._wait_body(lambda: False)
        if self.finished or self._discard:
            return None
        body = b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        return body
