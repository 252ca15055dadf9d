"""A read-through cache of store records for the hot path, at most a second old.

Every credential record a verifier reads on each request (OAuth 1.0a consumers and token
credentials; RFC 9421 apps and OAuth 2.0 clients keep their own copies of this idea) is read
through one of these, so a revocation on any instance applies everywhere within ``MAX_TTL``
(CONTRACT: "Revocation takes effect on every instance within one second"). What is derived from
a record (an opened secret, a parsed public key) is kept while the record read again is equal,
so a secret is unsealed once, not per request. A record that does not exist is remembered too
(a flood of unknown ids costs one read per id per TTL); the cache is cleared when it is full.
"""

from __future__ import annotations

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
    (its errors, such as ``BackendUnavailable``, pass through: nothing is cached then)."""

    def __init__(
        self,
        load: Callable[[K], Awaitable[R | None]],
        derive: Callable[[R], D],
        ttl: float = MAX_TTL,
        size: int = _SIZE,
    ) -> None:
        if not 0 <= ttl <= MAX_TTL:
            raise ValueError("ttl must be within [0, 1] s: revocation must apply in 1 s")
        self._load, self._derive, self._ttl, self._size = load, derive, ttl, size
        self._cache: dict[K, _Entry[R, D]] = {}
        self._generation = 0  # bumped by drop_cached

    async def get(self, key: K) -> tuple[R, D] | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is None or now - hit.read_at >= self._ttl:
            generation = self._generation
            record = await self._load(key)
            derived: D | None = None
            if record is not None:
                same = hit is not None and hit.record == record
                derived = hit.derived if same and hit is not None else self._derive(record)
            entry = _Entry(record, derived, now)
            if generation != self._generation:  # dropped meanwhile: not kept
                return None if record is None else (record, derived)  # type: ignore[return-value]
            if len(self._cache) >= self._size:
                self._cache.clear()
            hit = self._cache[key] = entry
        if hit.record is None:
            return None
        return hit.record, hit.derived  # type: ignore[return-value]

    def drop_cached(self) -> None:
        """Forget every record (one changed somewhere: read them again), and any read in
        flight now is not kept (it may hold what was just revoked)."""
        self._cache.clear()
        self._generation += 1

    def forget(self, key: K) -> None:
        """Drop ``key`` (this process changed the record: read it again next time)."""
        self._cache.pop(key, None)
