"""The pool of keep-alive connections to the one upstream (``UpstreamConnection`` is one of
them): connections are reused, bounded in number, and queued for within a deadline; streaming
uploads may hold at most half of them at once."""

from __future__ import annotations

import asyncio
import collections
import ssl

from restguard.gateway.upstream import UpstreamConnection


class PoolTimeout(Exception):
    """No pooled connection became free within the queue timeout."""


_Waiters = collections.deque[asyncio.Future[None]]


def _wake_one(waiters: _Waiters) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


class UpstreamPool:
    """Up to ``size`` keep-alive connections to ``host:port``; waiters queue when all are busy.

    A request whose body is still arriving when it is forwarded (a streaming upload) holds its
    connection for as long as the client takes, which the slow-body floor only bounds at
    ``client_body_min_rate``: uploads trickled at that rate could hold every connection (the
    R-U-Dead-Yet slow POST). So streaming uploads may hold at most ``stream_slots`` (half the
    pool) at once; one beyond waits for a slot like any request waits for a connection.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        connect_timeout: float,
        size: int,
        queue_timeout: float = 5.0,
        timeout: float = 30.0,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.connect_timeout = connect_timeout
        self.queue_timeout = queue_timeout
        self.timeout = timeout
        self.size = size
        self.loop = asyncio.get_running_loop()
        self._idle: list[UpstreamConnection] = []
        self._busy: set[UpstreamConnection] = set()
        self._waiters: _Waiters = collections.deque()
        self.stream_slots = max(1, size // 2)
        self._streaming = 0
        self._stream_waiters: _Waiters = collections.deque()
        self._closed = False

    async def acquire(
        self, *, fresh: bool = False, max_idle: float | None = None, streaming: bool = False
    ) -> UpstreamConnection:
        """An idle connection, a new one, or the next one released. Raises OSError or
        TimeoutError when the upstream cannot be reached in ``connect_timeout``, PoolTimeout
        when none is free within ``queue_timeout``. ``fresh`` skips (and closes) idle
        connections: after one went stale, its siblings likely are too. ``max_idle`` closes
        idle connections older than that instead of using them (for requests that must not be
        retried, so must not risk a connection the upstream is about to close). ``streaming``
        takes an upload slot first (given back by ``stream_ended``)."""
        deadline = self.loop.time() + self.queue_timeout
        if not streaming:
            return await self._acquire(fresh, max_idle, deadline)
        while self._streaming >= self.stream_slots:
            await self._wait(self._stream_waiters, deadline)
        self._streaming += 1
        try:
            conn = await self._acquire(fresh, max_idle, deadline)
        except BaseException:
            self._streaming -= 1
            _wake_one(self._stream_waiters)
            raise
        conn.streaming = True
        return conn

    def stream_ended(self, conn: UpstreamConnection) -> None:
        """The upload on ``conn`` is written whole, or ended otherwise: its slot is free."""
        if conn.streaming:
            conn.streaming = False
            self._streaming -= 1
            _wake_one(self._stream_waiters)

    async def _wait(self, waiters: _Waiters, deadline: float) -> None:
        waiter = self.loop.create_future()
        waiters.append(waiter)
        try:
            async with asyncio.timeout(max(0.0, deadline - self.loop.time())):
                await waiter  # (not wait_for, which may drop a cancel: clock.wait_for_event)
        except TimeoutError:
            raise PoolTimeout from None
        finally:
            if waiter in waiters:
                waiters.remove(waiter)

    async def _acquire(
        self, fresh: bool, max_idle: float | None, deadline: float
    ) -> UpstreamConnection:
        if fresh:
            for conn in self._idle:
                conn.close()
            self._idle.clear()
        while True:
            while self._idle:
                conn = self._idle.pop()
                if conn.transport is None or conn.transport.is_closing():
                    continue
                if max_idle is not None and self.loop.time() - conn.idle_since > max_idle:
                    conn.close()
                    continue
                conn.reused = True
                conn.received_any = False
                self._busy.add(conn)
                return conn
            if len(self._busy) < self.size:
                return await self._connect()
            await self._wait(self._waiters, deadline)

    async def _connect(self) -> UpstreamConnection:
        conn = UpstreamConnection(self)
        self._busy.add(conn)
        try:
            # (asyncio.timeout, not wait_for: 3.11's wait_for may drop a cancel that comes as
            # the connection opens. A cancel or timeout reaching create_connection closes the
            # transport it made, so the connection is never left open.)
            async with asyncio.timeout(self.connect_timeout):
                await self.loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                )
        except BaseException:
            self._busy.discard(conn)
            self._wake()
            raise
        return conn

    async def probe(self) -> bool:
        """Whether a new connection to the upstream opens within ``connect_timeout`` (for
        ``/readyz``); the connection is closed at once."""
        try:
            async with asyncio.timeout(self.connect_timeout):  # (as in ``_connect``)
                transport, _ = await self.loop.create_connection(
                    asyncio.Protocol,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                )
        except (OSError, TimeoutError, ssl.SSLError):
            return False
        transport.close()
        return True

    def release(self, conn: UpstreamConnection) -> None:
        """Give a connection back: kept if it may carry another request, closed otherwise."""
        self.stream_ended(conn)
        self._busy.discard(conn)
        conn.sink = None
        conn.head_only = False
        if conn.reusable and not self._closed:
            conn.idle_since = self.loop.time()
            self._idle.append(conn)
        else:
            conn.close()
        self._wake()

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: it no longer counts against the pool."""
        self.stream_ended(conn)
        self._busy.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._wake()

    def _wake(self) -> None:
        _wake_one(self._waiters)

    def close(self) -> None:
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
