"""Rate limiting with GCRA (the generic cell rate algorithm): O(1) state per key, no timers.

``limit`` requests per ``window`` seconds, all of which may arrive at once. The limiter is a
port: this in-memory one serves a single instance; a shared one comes with Redis.
"""

from __future__ import annotations

import math
from typing import Protocol


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window: float, now: float) -> int | None:
        """Count one event; None if allowed, else seconds until the next one would be."""
        ...

    async def blocked(self, key: str, limit: int, window: float, now: float) -> int | None:
        """Like ``hit`` but counts nothing: is ``key`` over its limit right now?"""
        ...


class MemoryRateLimiter:
    """GCRA in one process. ``now`` is a monotonic time in seconds."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tat: dict[str, float] = {}
        self._max_keys = max_keys

    def _check(self, key: str, limit: int, window: float, now: float) -> tuple[float, int | None]:
        interval = window / limit
        tat = max(self._tat.get(key, now), now)
        allow_at = tat - (window - interval)
        if now < allow_at:
            return tat, max(1, math.ceil(allow_at - now))
        return tat + interval, None

    async def hit(self, key: str, limit: int, window: float, now: float) -> int | None:
        new_tat, retry = self._check(key, limit, window, now)
        if retry is None:
            if len(self._tat) >= self._max_keys:
                self._evict(now)
            self._tat[key] = new_tat
        return retry

    async def blocked(self, key: str, limit: int, window: float, now: float) -> int | None:
        return self._check(key, limit, window, now)[1]

    def _evict(self, now: float) -> None:
        for k in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[k]
        if len(self._tat) >= self._max_keys:  # still full: forget the oldest half
            for k in sorted(self._tat, key=self._tat.__getitem__)[: self._max_keys // 2]:
                del self._tat[k]
