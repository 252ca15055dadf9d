"""One client connection of the gateway listener: HTTP/1.1 on asyncio (uvloop) + httptools
(llhttp), strict. (What all connections share, and the listener itself: ``gateway/server.py``.)

Chosen by measurement (bench/README.md): uvicorn's ASGI cycle plus aiohttp's client cost
~140 us of CPU per proxied request against nginx's ~13; a protocol that feeds llhttp's events
straight into the exchange removes most of that. A connection is three parts, one module each:

* this module: the connection's life (accepted, half-closed, lost, shut down), the exchanges it
  runs, what it writes, and how it ends: every parse error is answered with JSON and the
  connection is closed. Concurrent connections are capped at ``max_connections`` (503 beyond);
* ``gateway/client_parsing.py``: its bytes through llhttp into exchanges, under the caps
  (request target, header block, HTTP versions), ``Upgrade`` ignored and CONNECT refused;
* ``gateway/client_timers.py``: its slow-client clocks (nginx's anchors), and the pauses in its
  reading they leave out.

Requests on one connection are answered in order (pipelining): the next one waits, with reading
paused, until the current answer is complete.
"""

from __future__ import annotations

import asyncio
import collections
import math
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import httptools

from restguard.edge.problem import problem
from restguard.errors import AuthError, Overloaded
from restguard.gateway.client_parsing import ClientParsing
from restguard.gateway.exchange import Exchange

if TYPE_CHECKING:
    from restguard.gateway.server import Gateway


def _error_response(err: AuthError) -> bytes:
    """A complete answer that closes the connection, through the one error translator."""
    status, headers, body = problem(err)
    head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
    head += [b"%s: %s\r\n" % (k, v) for k, v in headers if k != b"connection"]
    return b"".join(head) + b"connection: close\r\n\r\n" + body


class _Nobody:
    """The protocol of ``_LOST_PARSER``: fed nothing, ever."""


_LOST_PARSER = httptools.HttpRequestParser(_Nobody())


class ClientConnection(ClientParsing, asyncio.Protocol):
    """One client connection: parses requests (``ClientParsing``), runs one exchange at a time,
    in order, and times its client (``ClientTimers``)."""

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
        # Slow-client clocks (``gateway/client_timers.py``). "Reading time" stops while paused.
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

    # --- endings -----------------------------------------------------------------------------
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
