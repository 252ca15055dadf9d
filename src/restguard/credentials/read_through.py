"""A read-through cache of store records for the hot path, at most a second old.

Every credential record a verifier reads on each request (API keys, OAuth 1.0a consumers and
token credentials, RFC 9421 apps, OAuth 2.0 clients) is read through one of these, so a
revocation on any instance applies everywhere within ``MAX_TTL`` (CONTRACT: "Revocation takes
effect on every instance within one second"). What is derived from a record (an opened secret,
a parsed public key, a Principal) is kept while the record read again is equal, so a secret is
unsealed once, not per request. A record that does not exist is remembered too (a flood of
unknown ids costs one read per id per TTL); when the cache is full, its oldest entry goes.

One read per key at a time: requests that miss while a read of their key is out wait for that
read instead of starting their own, so the many requests in flight when an entry expires cost
the store one read, not one each (a stampede every TTL, per key and instance, before). The read
runs in a task of its own, so a waiter that goes away (its client left) takes nobody's read
with it; its errors (``BackendUnavailable``) reach every waiter, and nothing is cached then. A
read that began a TTL ago or more is not joined (a slow store could otherwise serve a record
older than the revocation guarantee allows).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

MAX_TTL: Final = 1.0
_SIZE: Final = 10_000

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")
D = TypeVar("D")


@dataclass(slots=True)
class _Entry(Generic[R, D]):
    record: R | None
    derived: D | None
    read_at: float


class ReadThrough(Generic[K, R, D]):
    """``get(key)`` -> ``(record, derive(record))`` or None, the record read by ``load``
    (its errors, such as ``BackendUnavailable``, pass through: nothing is cached then).
    ``clock``: seconds on a monotonic clock (tests pass their own)."""

    def __init__(
        self,
        load: Callable[[K], Awaitable[R | None]],
        derive: Callable[[R], D],
        ttl: float = MAX_TTL,
        size: int = _SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= ttl <= MAX_TTL:
            raise ValueError("ttl must be within [0, 1] s: revocation must apply in 1 s")
        self._load, self._derive, self._ttl, self._size = load, derive, ttl, size
        self._clock = clock
        self._cache: dict[K, _Entry[R, D]] = {}
        # the read in flight per key, and when it began (a later one replaces it)
        self._reading: dict[K, tuple[asyncio.Future[_Entry[R, D]], float]] = {}

    async def get(self, key: K) -> tuple[R, D] | None:
        hit = self._cache.get(key)
        now = self._clock()
        if hit is None or now - hit.read_at >= self._ttl:
            reading = self._reading.get(key)
            # A read that began a TTL ago or more is not joined: its record may be older than
            # a revocation this request must see (a slow store answers up to its deadline).
            if reading is None or now - reading[1] >= self._ttl:
                task = asyncio.ensure_future(self._read(key, hit, now))
                reading = self._reading[key] = (task, now)
                task.add_done_callback(lambda done: self._read_done(key, done))
            # (shielded: a waiter cancelled does not cancel the read the others wait for)
            hit = await asyncio.shield(reading[0])
        if hit.record is None:
            return None
        return hit.record, hit.derived  # type: ignore[return-value]

    async def _read(self, key: K, old: _Entry[R, D] | None, began: float) -> _Entry[R, D]:
        record = await self._load(key)
        derived: D | None = None
        if record is not None:
            same = old is not None and old.record == record
            derived = old.derived if same and old is not None else self._derive(record)
        entry = _Entry(record, derived, began)  # (its age counts from before the read)
        current = self._reading.get(key)
        # Kept only while it is still the key's read: not after drop_cached or forget, nor
        # once a newer read replaced it.
        if current is not None and current[0] is asyncio.current_task():
            self._cache.pop(key, None)  # (re-entered last: the oldest entry goes first)
            if self._cache and len(self._cache) >= self._size:
                del self._cache[next(iter(self._cache))]
            self._cache[key] = entry
        return entry

    def _read_done(self, key: K, done: asyncio.Future[_Entry[R, D]]) -> None:
        current = self._reading.get(key)
        if current is not None and current[0] is done:
            del self._reading[key]
        if not done.cancelled():
            done.exception()  # (seen: every waiter may have gone, the error is not lost)

    def drop_cached(self) -> None:
        """Forget every record (one changed somewhere: read them again), and any read in
        flight now is neither kept nor joined (it may hold what was just revoked)."""
        self._cache.clear()
        self._reading.clear()

    def forget(self, key: K) -> None:
        """Drop ``key`` (this process changed the record: read it again next time; a read of
        it in flight is neither kept nor joined)."""
        self._cache.pop(key, None)
        self._reading.pop(key, None)
