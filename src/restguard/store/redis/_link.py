"""One Redis connection pool and the one way to call it: once, bounded, fail closed; and
``Lane``, a connection of its own for a caller that never overlaps itself."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from restguard.store.batch import within

try:  # redis-py's own C helper (restguard[redis] installs it): packs a command ~7x faster
    import hiredis
except ImportError:  # pragma: no cover (redis-py installed alone: its Python packer)
    hiredis = None  # type: ignore[assignment]

T = TypeVar("T")

#: Keys longer than this (UTF-8 bytes) are stored under their SHA-256 instead.
MAX_KEY_BYTES = 200


def script_sha(text: str) -> str:
    """The name Redis knows a script by (``EVALSHA``): the SHA-1 of its text."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def digest(*parts: str) -> str:
    """An unambiguous SHA-256 of attacker-chosen parts (each one length-prefixed)."""
    encoded = [part.encode("utf-8", "surrogatepass") for part in parts]
    return hashlib.sha256(b"".join([b"%d:%s" % (len(data), data) for data in encoded])).hexdigest()


class Link:
    """A ``redis.asyncio`` client, created on first use (inside the running loop), that tries
    each command once: no retries, socket timeouts and an ``asyncio.timeout`` of ``timeout``.
    At most ``max_connections`` connections; a call waits (within its timeout) for a free one."""

    def __init__(self, url: str, *, timeout: float, prefix: str, max_connections: int) -> None:
        if timeout <= 0 or max_connections < 1:
            raise ValueError("the Redis timeout and max_connections must be positive")
        try:
            parse_url(url)
        except ValueError:
            raise ValueError("not a usable Redis URL") from None  # (never echo it: a password)
        self._url = url
        self._max_connections = max_connections
        self.timeout = timeout
        self.prefix = prefix
        self._client: Redis | None = None
        self._lanes: list[Lane] = []

    def client(self) -> Redis:
        if self._client is None:
            pool = BlockingConnectionPool.from_url(
                self._url,
                max_connections=self._max_connections,
                timeout=self.timeout,  # waiting for a free connection, within the call's
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_error=[],
                health_check_interval=0,
            )
            self._client = Redis.from_pool(pool)
        return self._client

    async def call(self, operation: str, call: Callable[[Redis], Awaitable[T]]) -> T:
        """``call(client)`` within ``timeout``; ``BackendUnavailable`` on any failure."""
        return await self.run(operation, lambda: call(self.client()))

    async def run(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
    ) -> T:
        """``call()`` within ``timeout`` (or by ``deadline``, a loop time, when given);
        ``BackendUnavailable`` on any failure (RedisError, OSError, TimeoutError, a reply
        parsed wrong...)."""
        return await within("redis", operation, call, deadline, self.timeout)

    def connection(self) -> AbstractConnection:
        """A new connection (not yet connected) with the pool's settings: the URL's host,
        TLS, credentials and database, the same connect timeout. It has no socket timeout of
        its own: its caller bounds each whole call (``run``'s deadline), and with one redis-py
        runs every write in a task of its own (``wait_for``: CPU per batch, and 3.11's
        ``wait_for`` may drop a cancellation)."""
        pool = self.client().connection_pool
        return pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})

    async def aclose(self) -> None:
        for lane in list(self._lanes):
            await lane.close()
        client, self._client = self._client, None
        if client is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    await client.aclose()
            except (RedisError, OSError, TimeoutError):
                pass  # closing: nothing left to protect


class Lane:
    """One connection of its own, for a caller with at most one command out at a time (a
    ``Coalescer``): no pool to take it from, no retry, no per-command wrapping, so a script
    call costs ~40 % less CPU than through the client. Any failure, timeout or cancellation
    drops the connection (its state is unknown then); the next call connects again."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._connection: AbstractConnection | None = None
        link._lanes.append(self)

    async def script(self, sha: str, text: str, keys: list[str], args: list[str | int]) -> object:
        """``EVALSHA sha`` on ``keys`` and ``args``; ``EVAL text`` once if Redis does not know
        the script (NOSCRIPT: after a restart or ``SCRIPT FLUSH``), which also loads it."""
        connection = self._connection
        if connection is None:
            connection = self._connection = self._link.connection()
        try:
            await connection.connect()  # type: ignore[no-untyped-call]  # (no-op when connected)
            try:
                return await self._call(connection, "EVALSHA", sha, len(keys), *keys, *args)
            except NoScriptError:
                return await self._call(connection, "EVAL", text, len(keys), *keys, *args)
        except BaseException:
            self._connection = None
            await connection.disconnect(nowait=True)
            raise

    @staticmethod
    async def _call(connection: AbstractConnection, *parts: str | int) -> object:
        # A batch of n calls is a command of up to 4n + 3 parts: redis-py's packer (Python)
        # cost ~10 us per rate-limited request of a batch of 25 here, hiredis's ~1.3 us.
        packed = (
            connection.pack_command(*parts) if hiredis is None else hiredis.pack_command(parts)  # type: ignore[arg-type]  # (its stub: 1-tuple)
        )
        await connection.send_packed_command(packed, check_health=False)
        return await connection.read_response()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect(nowait=True)
