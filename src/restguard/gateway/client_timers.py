"""The slow-client clocks of a client connection (``gateway/http1.py``), and the pauses in its
reading that they leave out.

Slow clients are timed (nginx's anchors): the head must arrive within
``client_header_timeout``, a keep-alive connection idles at most ``keepalive_timeout``, a body
pauses at most ``client_body_timeout`` and averages ``client_body_min_rate`` (Apache
mod_reqtimeout); time the gateway itself stopped reading does not count. A client that stops
reading its answer for ``client_send_timeout`` is cut off (nginx's ``send_timeout``).

A connection has one timer for this, re-armed lazily (``_schedule``): when it fires, the
connection works out what it is waiting for and whether that wait ran out.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from restguard.errors import AuthError, RequestTimeout

if TYPE_CHECKING:
    import collections

    from restguard.gateway.exchange import Exchange
    from restguard.gateway.server import Gateway


class ClientTimers:
    """A client connection's clocks: when its reading is paused (and for how long), and the one
    timer that ends a wait the client took too long over. A base of ``ClientConnection``."""

    # The clocks' own state (set in ``ClientConnection.__init__``). "Reading time" stops while
    # reading is paused.
    _paused: set[str]  # why reading is paused; it resumes when no reason is left
    _timer: asyncio.TimerHandle | None  # the one timer, re-armed lazily
    _timer_at: float  # when it fires (inf: not armed)
    _idle_since: float  # when the connection last became idle
    _head_started: float  # when the request head being read began (or got its turn)
    _served: int  # requests answered on this connection
    _paused_since: float  # when reading was last paused
    _paused_total: float  # how long reading was paused in all, before that
    _write_stalled: float  # since when the client has not read what we sent

    # What the clocks read of the rest of the connection (``gateway/http1.py``,
    # ``gateway/client_parsing.py``).
    gw: Gateway
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport | None
    _active: Exchange | None  # the exchange whose answer is being written
    _queue: collections.deque[Exchange]  # pipelined exchanges waiting their turn
    _parsing: Exchange | None  # the exchange whose request is being read
    _in_head: bool  # a request head is being read
    _closing: bool

    if TYPE_CHECKING:  # the connection's own (declared here for the type checker)

        def abort(self) -> None: ...

        def _close(self) -> None: ...

        def _fatal(self, err: AuthError) -> None: ...

        def _audit_parse_error(self, err: AuthError) -> None: ...

    # --- reading pauses ----------------------------------------------------------------------
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
