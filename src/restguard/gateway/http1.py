"""One client connection of the gateway listener: HTTP/1.1 on asyncio (uvloop) + httptools
(llhttp), strict. (What all connections share, and the listener itself: ``gateway/server.py``.)

Chosen by measurement (bench/README.md): uvicorn's ASGI cycle plus aiohttp's client cost
~140 us of CPU per proxied request against nginx's ~13; a protocol that feeds llhttp's events
straight into the exchange removes most of that. llhttp refuses malformed framing (CL+TE,
bad chunking, bare LF, obs-fold ...); this module adds the caps and the contract's JSON errors:

* the request target is capped at ``MAX_TARGET_BYTES`` (414, RFC 9112 §3) and kept raw, so
  absolute-form targets are refused by the path normaliser rather than reduced to a path;
* the header block is capped while it is parsed (431); HTTP/1.0 and 1.1 only (505);
* every parse error is answered with JSON and the connection is closed;
* ``Upgrade`` is ignored (RFC 9110 §7.8: a server MAY ignore it; restguard tunnels nothing):
  llhttp stops at an upgrade request's head, so its body is read on by a fresh parser and the
  request is forwarded as an ordinary one, framed like any other (never a Content-Length
  without its bytes); CONNECT is refused and ends the connection;
* slow clients are timed (nginx's anchors): the head must arrive within
  ``client_header_timeout``, a keep-alive connection idles at most ``keepalive_timeout``, a body
  pauses at most ``client_body_timeout`` and averages ``client_body_min_rate`` (Apache
  mod_reqtimeout); time the gateway itself stopped reading does not count. A client that stops
  reading its answer for ``client_send_timeout`` is cut off (nginx's ``send_timeout``).
  Concurrent connections are capped at ``max_connections`` (503 beyond).

Requests on one connection are answered in order (pipelining): the next one waits, with reading
paused, until the current answer is complete.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import httptools

from restguard.authz.paths import MAX_TARGET_BYTES, TargetTooLong
from restguard.edge.problem import problem
from restguard.errors import (
    AuthError,
    HeadersTooLarge,
    InvalidRequest,
    Overloaded,
    RequestTimeout,
    VersionNotSupported,
)
from restguard.gateway.exchange import Exchange

if TYPE_CHECKING:
    from restguard.gateway.server import Gateway

_VERSIONS = frozenset({"1.0", "1.1"})
# A client's bytes are parsed this many at a time, and for about this long per loop turn.
SLICE_BYTES = 16 * 1024
TURN_SECONDS = 0.002


def _error_response(err: AuthError) -> bytes:
    """A complete answer that closes the connection, through the one error translator."""
    status, headers, body = problem(err)
    head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
    head += [b"%s: %s\r\n" % (k, v) for k, v in headers if k != b"connection"]
    return b"".join(head) + b"connection: close\r\n\r\n" + body


class _Refused(Exception):
    """Raised in a parser callback; httptools turns it into a parse error."""


class _Nobody:
    """The protocol of ``_LOST_PARSER``: fed nothing, ever."""


_LOST_PARSER = httptools.HttpRequestParser(_Nobody())


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, runs one exchange at a time, in order."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.loop = gw.loop
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.scheme = "http"  # "https" once a TLS handshake made the connection
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._in_head = False
        self._skip_head = False  # the parser is reading the stand-in head of an ignored Upgrade
        self._refusal: AuthError | None = None
        self._parsing: Exchange | None = None
        self._upgrading: Exchange | None = None
        self._active: Exchange | None = None
        self._queue: collections.deque[Exchange] = collections.deque()
        self._paused: set[str] = set()
        self._closing = False
        self._last_words = b""  # an error answer owed once the requests before it are answered
        self._task: asyncio.Task[None] | None = None
        self._out: list[bytes] = []
        # Slow-client clocks (see the module docstring). "Reading time" stops while paused.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._idle_since = self.loop.time()
        self._head_started = 0.0
        self._served = 0
        self._paused_since = 0.0
        self._paused_total = 0.0
        self._write_stalled = math.inf  # since when the client has not read what we sent
        self._backlog = b""  # bytes received, left for the loop's next turn
        self._progress = False  # a parser event happened during the current feed
        self._quiet = 0  # bytes fed since the last parser event

    # --- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""
        if transport.get_extra_info("ssl_object") is not None:
            self.scheme = "https"
        if len(self.gw.connections) >= self.gw.limits.max_connections:
            self._closing = True
            self.transport.write(_error_response(Overloaded(debug="max_connections reached")))
            self.transport.close()
            return
        self.gw.connections.add(self)
        # Hold this much of an answer for a client that reads slowly before the upstream is
        # paused: most answers then leave the upstream (and its pooled connection) at once.
        self.transport.set_write_buffer_limits(high=self.gw.limits.send_buffer_bytes)
        self._schedule()

    def data_received(self, data: bytes) -> None:
        if self._backlog:  # (reading is paused meanwhile; kept in order all the same)
            self._backlog += data
        elif len(data) <= SLICE_BYTES:
            self._feed(data)
        else:
            self._take(data)

    def _take(self, data: bytes) -> None:
        """Parse ``data`` a slice at a time. Once this turn has cost ``TURN_SECONDS`` (a body
        that a parameter gate reads byte by byte can cost microseconds per byte), the rest
        waits for the loop's next turn with reading paused: one client's bytes never hold the
        event loop, and every other client, for more than about one turn."""
        if len(data) <= SLICE_BYTES:
            self._feed(data)
            return
        deadline = time.perf_counter() + TURN_SECONDS
        for start in range(0, len(data), SLICE_BYTES):
            if self._closing:
                return
            if start and time.perf_counter() > deadline:
                self._backlog = data[start:]
                self.pause("turn")
                self.loop.call_soon(self._next_turn)
                return
            self._feed(data[start : start + SLICE_BYTES])

    def _next_turn(self) -> None:
        data, self._backlog = self._backlog, b""
        if self._closing:
            return
        self._take(data)
        if not self._backlog:
            self.resume("turn")

    def _feed(self, data: bytes) -> None:
        while data and not self._closing:
            self._progress = False
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                data = self._ignore_upgrade(data[exc.args[0] :])
                continue
            except httptools.HttpParserError as exc:
                err = self._refusal or (
                    VersionNotSupported(debug="unparseable HTTP version")
                    if "Invalid HTTP version" in str(exc)  # llhttp's words for HTTP/1.2, 3.0
                    else InvalidRequest(
                        "The request is not valid HTTP/1.1.", debug="HTTP/1.1 parse error"
                    )
                )
                self._fatal(err)
                self._audit_parse_error(err)
                return
            self._no_progress(len(data))
            return

    def _no_progress(self, size: int) -> None:
        """Bytes fed without a single parser event (an unfinished header or trailer field, or
        chunk extension) grow inside httptools, which calls back only at a field's end: cap
        them like a header block (431), so that no field grows without bound."""
        if self._progress:
            self._quiet = 0
            return
        self._quiet += size
        if self._quiet > self.gw.max_header_bytes + MAX_TARGET_BYTES:
            err: AuthError = (
                HeadersTooLarge(debug="header field over the limit")
                if self._in_head
                else InvalidRequest(
                    "A trailer field or chunk extension is too large.",
                    debug="trailer or chunk extension over the limit",
                )
            )
            self._fatal(err)
            self._audit_parse_error(err)

    def _ignore_upgrade(self, rest: bytes) -> bytes:
        """llhttp completed an upgrade request at its head, skipping any body. restguard does
        not switch protocols: a fresh parser reads the body (behind a stand-in head that
        declares the same framing) and then the next requests, as for any request. Returns
        what the fresh parser is to read."""
        ex, self._upgrading = self._upgrading, None
        self._parser = httptools.HttpRequestParser(self)
        if ex is None or ex.method == "CONNECT":  # what follows would be a tunnel
            self._closing = True
            if ex is not None:
                ex.keep_alive = False
            return b""
        if ex.content_length or ex.chunked:
            framing = (
                b"transfer-encoding: chunked"
                if ex.chunked
                else b"content-length: %d" % (ex.content_length or 0)
            )
            self._skip_head = True
            self._parsing = ex
            rest = b"POST / HTTP/1.1\r\nhost: body\r\n" + framing + b"\r\n\r\n" + rest
        return rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.gw.connections.discard(self)
        self._closing = True
        self._cancel_timer()
        for ex in (self._active, *self._queue):
            if ex is not None:
                ex.client_lost()
        self._queue.clear()
        # Break the reference cycles through this object (the transport holds it, the parser
        # holds its bound methods), so a closed connection is freed at once, not by the next
        # full collection: the collector runs rarely here (``settle_garbage_collector``).
        self.transport = None
        self._parser = _LOST_PARSER

    def eof_received(self) -> bool:
        """The client shut its sending side (``shutdown(SHUT_WR)``, ``nc -N``): the requests it
        sent whole are still answered, in order, then the connection closes. One cut short (in
        its head or body) can never be complete: the connection closes now (asyncio closes the
        transport when this returns False).

        Over TLS this is the client's ``close_notify``: asyncio's TLS has no half-close (the
        transport shuts down whatever this returns), so the client is gone and so are the
        answers it has not received."""
        if self.scheme == "https":
            self._closing = True
            return False
        if self._in_head or self._parsing is not None or self._active is None:
            return False
        self._closing = True
        return True

    def pause_writing(self) -> None:
        """The client does not read what it is sent: read no more requests from it either
        (answers restguard writes itself would pile up unread), and stop the upstream."""
        self._write_stalled = self.loop.time()
        self._arm(self._write_stalled + self.gw.limits.client_send_timeout)
        self.pause("send")
        if self._active is not None:
            self._active.client_writable(False)

    def resume_writing(self) -> None:
        self._write_stalled = math.inf
        self.resume("send")
        if self._active is not None:
            self._active.client_writable(True)

    @property
    def active(self) -> Exchange | None:
        """The exchange whose answer is being written (the only one that may write)."""
        return self._active

    # --- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._progress = True
        if self._skip_head:
            return
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._in_head = True
        self._head_started = now = self.loop.time()
        if self._active is None:  # (else the head waits its turn; its time starts then)
            self._arm(now + self.gw.limits.client_header_timeout)

    def on_url(self, url: bytes) -> None:
        self._progress = True
        if self._skip_head:
            return
        self._url += url
        if len(self._url) > MAX_TARGET_BYTES:
            # RFC 9112 §3: a request-target longer than any URI the server wishes to parse
            # MUST get 414 (URI Too Long).
            self._refusal = TargetTooLong(
                "The request target is too long.", debug="request target too long"
            )
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._progress = True
        if not self._in_head:  # chunked trailer fields (or a stand-in head): never forwarded
            return
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.gw.max_header_bytes:
            self._refusal = HeadersTooLarge(debug="header block over the limit")
            raise _Refused
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self._skip_head:
            self._skip_head = False
            return
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version()
        if version not in _VERSIONS:
            self._refusal = VersionNotSupported(debug=f"HTTP/{version}")
            raise _Refused
        length: int | None = None
        chunked = False
        for name, value in self._headers:
            if name == b"content-length":
                length = int(value)  # llhttp refused malformed and conflicting values
            elif name == b"transfer-encoding":
                chunked = True
        ex = Exchange(
            self,
            parser.get_method().decode("ascii"),
            self._url,
            self._headers,
            version,
            parser.should_keep_alive(),
            content_length=length,
            chunked=chunked,
        )
        self._parsing = ex
        if parser.should_upgrade():
            self._upgrading = ex
        if self._active is None:
            self._start(ex)
        else:
            self._queue.append(ex)
            self.pause("pipeline")
        if not ex.body_complete:
            self._schedule()

    def on_body(self, body: bytes) -> None:
        self._progress = True
        if self._parsing is not None:
            self._parsing.feed_body(body)

    def on_chunk_header(self) -> None:
        self._progress = True

    def on_chunk_complete(self) -> None:
        self._progress = True

    def on_message_complete(self) -> None:
        self._progress = True
        ex = self._parsing
        if ex is None:
            return
        if ex is self._upgrading and (ex.content_length or ex.chunked):
            return  # llhttp skipped the body: the parser after the upgrade reads it
        ex.body_done()
        self._parsing = None

    # --- exchanges ---------------------------------------------------------------------------
    def _start(self, ex: Exchange) -> None:
        self._active = ex
        self._task = self.loop.create_task(ex.run())

    def exchange_finished(self, ex: Exchange, keep_alive: bool) -> None:
        if ex is not self._active:
            return
        self._active = None
        self._served += 1
        if not keep_alive:
            self._last_words = b""  # the answer just sent ended the connection
            self._close()
            return
        if self._closing and not self._queue:
            self._close()
            return
        now = self.loop.time()
        self._idle_since = now
        if self._in_head:  # a pipelined head's time starts now that it is read on
            self._head_started = max(self._head_started, now)
        if self._queue:
            self._start(self._queue.popleft())
            if not self._queue:
                self.resume("pipeline")
            self._schedule()  # (its body, or the next head, may be waited for now)
        elif self._in_head:
            self._arm(self._head_started + self.gw.limits.client_header_timeout)
        else:
            self._arm(now + self.gw.limits.keepalive_timeout)

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the client; ``flush`` sends what is queued in one write."""
        self._out.append(data)

    def flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def pause(self, reason: str) -> None:
        if not self._paused:
            self._paused_since = self.loop.time()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()
        self._paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if not self._paused:
            self._paused_total += self.loop.time() - self._paused_since
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def reading_time(self) -> float:
        """A clock that stands still while the gateway is not reading from this client."""
        now = self._paused_since if self._paused else self.loop.time()
        return now - self._paused_total

    # --- slow clients ------------------------------------------------------------------------
    def _deadline(self) -> tuple[float, str]:
        """When this connection's current wait runs out (loop time), and what it waits for."""
        at, waiting = self._wait()
        send = self._write_stalled + self.gw.limits.client_send_timeout
        return (send, "send") if send < at else (at, waiting)

    def _wait(self) -> tuple[float, str]:
        limits = self.gw.limits
        if self._active is not None and self._active.finished:  # (never a parked connection)
            return self.loop.time() + limits.keepalive_timeout, "stuck"
        parsing = self._parsing
        if parsing is not None and not parsing.body_complete and not parsing.finished:
            if self._paused:
                return self.loop.time() + limits.client_body_timeout, "paused"
            left = parsing.body.time_left(
                self.reading_time(), limits.client_body_timeout, limits.client_body_min_rate
            )
            return self.loop.time() + left, "body"
        if self._active is not None or self._queue:
            return math.inf, "busy"  # the upstream's timers apply
        if self._in_head:
            return self._head_started + limits.client_header_timeout, "head"
        wait = limits.keepalive_timeout if self._served else limits.client_header_timeout
        return self._idle_since + wait, "idle"

    def _schedule(self) -> None:
        """Make sure the timer fires no later than the current deadline (it re-arms lazily)."""
        self._arm(self._deadline()[0])

    def _arm(self, at: float) -> None:
        if at < self._timer_at:
            self._cancel_timer()
            self._timer_at = at
            self._timer = self.loop.call_at(at, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        if self._closing or self.transport is None:
            return
        at, waiting = self._deadline()
        if at > self.loop.time():
            if at != math.inf:
                self._timer_at = at
                self._timer = self.loop.call_at(at, self._on_timer)
            return
        if waiting in ("send", "stuck"):  # the client stopped reading (nginx's send_timeout)
            self.abort()
        elif waiting == "idle":
            self._close()
        elif waiting == "head":
            err = RequestTimeout(debug="request head not received in time")
            self._fatal(err)
            self._audit_parse_error(err)
        elif waiting == "body" and self._parsing is not None:
            self._parsing.body_failed(RequestTimeout(debug="request body too slow"))

    # --- endings -----------------------------------------------------------------------------
    def _audit_parse_error(self, err: AuthError) -> None:
        """Parse errors are decisions too: they go to the audit log and the metrics."""
        try:
            method = self._parser.get_method().decode("ascii", "replace")
        except httptools.HttpParserError:
            method = "?"
        self.gw.guard.refused(method, self._url, self.peer, err)

    def _fatal(self, err: AuthError) -> None:
        """A framing error: nothing after it can be trusted. The request it broke is answered
        with the error (or, if its answer already started, cut off); complete requests before
        it are still answered; then the connection closes."""
        self._closing = True
        self._cancel_timer()
        broken, self._parsing = self._parsing, None
        if broken is not None and broken is self._active:
            broken.body_failed(err)
            return
        if broken is not None and broken in self._queue:
            self._queue.remove(broken)
        self._last_words = _error_response(err)
        if self._active is None and not self._queue:
            self._close()

    def _close(self) -> None:
        self._closing = True
        self._cancel_timer()
        if self._last_words:
            self.write(self._last_words)
            self._last_words = b""
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def only_goodbye_left(self) -> bool:
        """Closed over TLS with everything handed to the transport: what is left is the TLS
        goodbye, the client's ``close_notify``, which nothing needs to wait for (RFC 8446 §6.1:
        the initiator of the close need not wait for the responding ``close_notify``)."""
        transport = self.transport
        return (
            self.scheme == "https"
            and self._closing
            and self._active is None
            and not self._queue
            and (transport is None or transport.get_write_buffer_size() == 0)
        )

    def close_when_idle(self) -> None:
        if self._active is None:
            self._close()
        else:
            self._active.keep_alive = False

    def shut_down(self) -> None:
        """The server stops now: the request being handled gets 503 if its answer has not
        started (else it is cut), and the connection closes."""
        self._queue.clear()
        self._last_words = b""
        if self._active is not None:
            self._active.shut_down()
        self._close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
