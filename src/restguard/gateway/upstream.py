"""A pooled keep-alive HTTP/1.1 client for the one upstream, on asyncio + httptools (llhttp).

Chosen by measurement (bench/README.md): aiohttp's client cost ~75 us of CPU per proxied
request here and httpx's ~1,000; a connection that hands parser events straight to the
exchange that owns it costs a few. One exchange uses a connection at a time (no pipelining to
the upstream); a connection goes back to the pool only after a complete, keep-alive answer to a
completely sent request.

The upstream's answer is bounded in size and time (``[upstream] timeout``):

* its head (interim 1xx answers included) may take ``MAX_HEAD_BYTES`` and ``MAX_HEADERS`` fields
  at most (502 beyond: nginx's "upstream sent too big header");
* its head must be complete within ``timeout`` of the request being completely sent (504),
  however it trickles in;
* after that, it may go quiet for ``timeout`` at most (504, or a cut answer) — but time it sits
  unread because the client is slow to read is not its fault and does not count (the client's
  own send timeout covers that).

Each connection has one timer for this, re-armed lazily: nothing is scheduled per request.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Protocol, cast

import httptools

if TYPE_CHECKING:
    from restguard.gateway.upstream_pool import UpstreamPool

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 256


class _HeadTooLarge(Exception):
    """Raised in a parser callback: the upstream's head is over the caps."""


class ResponseSink(Protocol):
    """What an upstream connection reports to the exchange using it."""

    def response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_done(self) -> None: ...

    def upstream_failed(self, reason: str) -> None: ...

    def upstream_writable(self, writable: bool) -> None: ...

    def flush_output(self) -> None: ...

    def upstream_timed_out(self, reason: str) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One connection to the upstream; events go to the current ``sink``."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.sink: ResponseSink | None = None
        self.head_only = False  # the current request is HEAD: the answer has no body
        self.reused = False
        self.received_any = False
        self.last_read = 0.0
        self.idle_since = 0.0
        self.head_by = math.inf  # the answer's head is due by then (once the request is sent)
        self.streaming = False  # it holds one of the pool's upload slots (see UpstreamPool)
        self.paused = False  # reading paused: the client is slow to read what came
        self._in_head = False  # an answer's head (1xx ones included) is being read
        self._head_bytes = 0  # bytes read while in a head, without the head completing
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._skip_rest = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        self.last_read = self.pool.loop.time()
        sink = self.sink
        if sink is None:  # nothing asked for: the upstream is talking out of turn
            self.close()
            return
        try:
            self._parser.feed_data(data)
            if self._in_head:  # the head goes on: it may take MAX_HEAD_BYTES (plus one read)
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._fail("the upstream's answer head is too large")
                    return
        except httptools.HttpParserUpgrade:
            self._fail("the upstream switched protocols (not supported)")
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._fail("the upstream's answer head is too large")
            else:
                self._fail(f"malformed upstream response: {exc}")
        except httptools.HttpParserError as exc:
            self._fail(f"malformed upstream response: {exc}")
        if self._skip_rest:
            # The answer to a HEAD request ended with its head; llhttp cannot be told so
            # (RFC 9110 §9.3.2), so the next answer gets a fresh parser.
            self._skip_rest = False
            self._parser = httptools.HttpResponseParser(self)
            self._message_done()
        sink.flush_output()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        if self.sink is None:
            return
        if self._close_delimited and exc is None:
            # RFC 9112 §6.3 (7): without Content-Length or chunked coding the body ends when
            # the server closes the connection; llhttp has no end-of-input call to say so.
            self._keep_alive = False
            sink = self.sink
            self._message_done()
            sink.flush_output()
        else:
            self._fail("upstream closed the connection")

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_writable(False)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_writable(True)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._close_delimited = False
        self._headers = []
        self._reason = b""

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        headers.append((name.lower(), value))
        if len(headers) > MAX_HEADERS:
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 1xx interim answers are not forwarded (Expect is not sent on)
            return
        self.head_by = math.inf
        self._in_head = False
        assert self.sink is not None
        keep_alive = self._parser.should_keep_alive()
        delimited = not self.head_only and status not in (204, 304)
        if delimited:
            for k, _ in self._headers:
                if k == b"content-length" or k == b"transfer-encoding":
                    delimited = False
                    break
        self._close_delimited = delimited
        self.sink.response_head(status, self._reason, self._headers, keep_alive)
        if self.head_only:
            self._skip_rest = True
            self._keep_alive = keep_alive

    def on_body(self, body: bytes) -> None:
        if self.sink is not None and not self._skip_rest:
            self.sink.response_body(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200 or self._skip_rest:
            return
        self._keep_alive = self._parser.should_keep_alive()
        self._message_done()

    # internals
    _keep_alive = False
    _close_delimited = False

    def _message_done(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.response_done()

    def _fail(self, reason: str) -> None:
        sink, self.sink = self.sink, None
        self.close()
        if sink is not None:
            sink.upstream_failed(reason)

    @property
    def reusable(self) -> bool:
        return self._keep_alive and self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def pause_reading(self) -> None:
        """The client is slow to read: stop reading, and stop the upstream's quiet clock."""
        self.paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.paused = False
        self.last_read = self.pool.loop.time()  # the pause was the client's, not the upstream's
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # timing (see the module docstring)
    def watch(self) -> None:
        """A request starts on this connection: the quiet clock runs from now."""
        now = self.pool.loop.time()
        self.last_read, self.head_by = now, math.inf
        self._in_head, self._head_bytes = True, 0
        self._arm(now + self.pool.timeout)

    def request_sent(self) -> None:
        """The whole request is written: the answer's head is due within ``timeout``."""
        self.pool.stream_ended(self)
        if self.sink is not None and self.head_by == math.inf:
            self.head_by = self.pool.loop.time() + self.pool.timeout
            self._arm(self.head_by)

    def _arm(self, at: float) -> None:
        if at < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = self.pool.loop.call_at(at, self._check)

    def _check(self) -> None:
        self._timer, self._timer_at = None, math.inf
        sink = self.sink
        if sink is None:  # idle in the pool: nothing to time
            return
        now = self.pool.loop.time()
        if self.paused:
            self._arm(now + self.pool.timeout)
            return
        if now >= self.head_by:
            sink.upstream_timed_out(f"no complete answer head in {self.pool.timeout:g}s")
        elif now - self.last_read >= self.pool.timeout:
            sink.upstream_timed_out(f"the upstream was quiet for {self.pool.timeout:g}s")
        else:
            self._arm(min(self.head_by, self.last_read + self.pool.timeout))

    def close(self) -> None:
        self.sink = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        if self.transport is not None:
            self.transport.close()
