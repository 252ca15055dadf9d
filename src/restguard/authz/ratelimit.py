"""Rate limiting with GCRA (the generic cell rate algorithm): O(1) state per key, no timers.

``limit`` requests per ``window`` seconds, all of which may arrive at once. A key's whole state
is one number, its theoretical arrival time (TAT): the moment its bucket is empty again. An
event at ``now`` is allowed when ``TAT - (window - interval) <= now`` and then moves the TAT
``interval = window / limit`` past ``max(TAT, now)``.

The limiter is a port with three adapters, chosen at start-up (``wiring``): this in-memory one
for a single process, ``store.sql.rate_limits`` (the database) when several worker processes
or instances share the work without Redis, and ``store.redis`` with Redis. All three compute
the same ``Verdict`` from the same arithmetic (``gcra``), so N racing events against a limit of
L admit exactly L wherever the counter lives.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

_EPSILON = 1e-6  # seconds


@functools.lru_cache(maxsize=4096)
def address_bucket(client: str) -> str:
    """The counter a client address is counted under: an IPv4 address itself (an IPv4-mapped
    IPv6 one too), an IPv6 address's /64 (one subscriber's usual allocation: counting per /128
    would give anyone with a /64 2^64 counters), anything else (a Unix socket's "") as given."""
    if ":" not in client:
        return client
    try:
        address = ipaddress.IPv6Address(client.partition("%")[0])
    except ValueError:
        return client
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class Verdict(NamedTuple):
    """One event's outcome. ``remaining``: events still allowed right now; ``reset``: seconds
    until the whole limit is available again (the ``RateLimit-*`` headers' values);
    ``retry_after``: None when allowed, else seconds until the next event would be."""

    allowed: bool
    remaining: int
    reset: int
    retry_after: int | None


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        """Count one event for ``key`` if it is allowed (a refused one counts nothing).
        ``BackendUnavailable`` when the shared counter cannot be reached: fail closed."""
        ...

    async def blocked(self, key: str, limit: int, window: float) -> int | None:
        """Like ``hit`` but counts nothing: seconds until ``key`` may act again, or None."""
        ...

    async def refund(self, key: str, limit: int, window: float) -> None:
        """Give back one counted event (it turned out not to count: a sign-in that succeeded):
        the TAT moves back one interval, never before now. Counting first and refunding after
        is how a check that must count only failures stays exact under racing attempts."""
        ...

    def close(self) -> None: ...


def gcra(tat: float | None, now: float, limit: int, window: float) -> tuple[float, Verdict]:
    """The new TAT and the verdict for one event at ``now`` on a key whose TAT is ``tat``
    (None: never seen). A refused event leaves the TAT as it was."""
    interval = window / limit
    base = now if tat is None or tat < now else tat
    allow_at = base - (window - interval)
    if allow_at - now > _EPSILON:  # (float noise must not refuse the limit's last event)
        retry = max(1, math.ceil(allow_at - now))
        return base, Verdict(False, 0, max(1, math.ceil(base - now)), retry)
    new = base + interval
    remaining = int((now + window - new + _EPSILON) / interval)
    return new, Verdict(True, max(0, remaining), max(0, math.ceil(new - now)), None)


class MemoryRateLimiter:
    """GCRA in one process. ``clock``: monotonic seconds (tests pass their own)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._max_keys = max_keys

    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        now = self._clock()
        new_tat, verdict = gcra(self._tat.get(key), now, limit, window)
        if verdict.allowed:
            if len(self._tat) >= self._max_keys and key not in self._tat:
                self._evict(now)
            self._tat[key] = new_tat
        return verdict

    async def blocked(self, key: str, limit: int, window: float) -> int | None:
        return gcra(self._tat.get(key), self._clock(), limit, window)[1].retry_after

    async def refund(self, key: str, limit: int, window: float) -> None:
        tat = self._tat.get(key)
        if tat is not None:
            self._tat[key] = max(tat - window / limit, self._clock())

    def close(self) -> None:
        self._tat.clear()

    def _evict(self, now: float) -> None:
        for k in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[k]
        if len(self._tat) >= self._max_keys:  # still full: forget the oldest half
            for k in sorted(self._tat, key=self._tat.__getitem__)[: self._max_keys // 2]:
                del self._tat[k]


class RefusalCache:
    """A shared limiter behind a memory of its refusals: while a key is known to be refused
    (until the ``retry_after`` the shared limiter gave), it is refused here without a round
    trip. Exact, not an estimate: a refused event counts nothing, and no event anywhere can
    move a key's next allowed moment earlier, so the shared limiter would refuse it too. A
    flood of failures from one address costs the database or Redis about one call per allowed
    event instead of one per request."""

    def __init__(
        self,
        shared: RateLimiter,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.shared, self._clock, self._max_keys = shared, clock, max_keys
        # key -> (refused until, as the shared limiter said: retry at, full again at)
        self._until: dict[str, tuple[float, float, float]] = {}

    def _known(self, key: str) -> Verdict | None:
        known = self._until.get(key)
        if known is None:
            return None
        now = self._clock()
        until, retry_at, full_at = known
        if now >= until:
            del self._until[key]
            return None
        retry = max(1, math.ceil(retry_at - now))
        return Verdict(False, 0, max(retry, math.ceil(full_at - now)), retry)

    def _remember(self, key: str, verdict: Verdict) -> Verdict:
        if verdict.retry_after is not None:
            if len(self._until) >= self._max_keys:
                self._until.clear()  # (forgetting only costs round trips)
            now = self._clock()
            # The shared limiter rounds up to whole seconds: the key is surely refused for
            # one second less than it said (never longer here than there).
            retry_at = now + verdict.retry_after
            self._until[key] = (retry_at - 1, retry_at, now + verdict.reset)
        return verdict

    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        known = self._known(key)
        if known is not None:
            return known
        return self._remember(key, await self.shared.hit(key, limit, window))

    async def blocked(self, key: str, limit: int, window: float) -> int | None:
        known = self._known(key)
        if known is not None:
            return known.retry_after
        retry = await self.shared.blocked(key, limit, window)
        if retry is not None:
            self._remember(key, Verdict(False, 0, retry, retry))
        return retry

    async def refund(self, key: str, limit: int, window: float) -> None:
        self._until.pop(key, None)  # (what it refused may be allowed now)
        await self.shared.refund(key, limit, window)

    def close(self) -> None:
        self._until.clear()
        self.shared.close()
