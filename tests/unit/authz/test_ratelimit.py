"""authz/ratelimit.py: the GCRA arithmetic every limiter shares, and the in-memory limiter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard.authz.ratelimit import (
    MemoryRateLimiter,
    RefusalCache,
    Verdict,
    address_bucket,
    gcra,
)

T = 1000.0


class FakeClock:
    def __init__(self, now: float = T) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter() -> tuple[MemoryRateLimiter, FakeClock]:
    clock = FakeClock()
    return MemoryRateLimiter(clock), clock


async def test_allows_limit_at_once_counting_down_then_refuses_with_retry_after() -> None:
    lim, _ = limiter()
    seen = [await lim.hit("k", 3, 60.0) for _ in range(3)]
    assert seen == [
        Verdict(True, 2, 20, None),
        Verdict(True, 1, 40, None),
        Verdict(True, 0, 60, None),
    ]
    refused = await lim.hit("k", 3, 60.0)
    assert refused == Verdict(False, 0, 60, 20)  # window / limit: the next cell is free in 20 s
    # A refused hit is not counted: the retry time does not grow.
    assert (await lim.hit("k", 3, 60.0)).retry_after == 20


async def test_recovers_one_request_per_interval() -> None:
    lim, clock = limiter()
    for _ in range(3):
        assert (await lim.hit("k", 3, 60.0)).allowed
    clock.now = T + 19.9
    assert (await lim.hit("k", 3, 60.0)).retry_after == 1
    clock.now = T + 20.0
    assert await lim.hit("k", 3, 60.0) == Verdict(True, 0, 60, None)
    assert not (await lim.hit("k", 3, 60.0)).allowed
    # After a whole window of silence the full burst is available again.
    clock.now = T + 20.0 + 60.0
    assert [(await lim.hit("k", 3, 60.0)).allowed for _ in range(4)] == [True, True, True, False]


async def test_retry_after_is_at_least_one_second() -> None:
    lim, _ = limiter()
    for _ in range(10):
        assert (await lim.hit("k", 10, 1.0)).allowed
    assert (await lim.hit("k", 10, 1.0)).retry_after == 1


async def test_keys_are_independent() -> None:
    lim, _ = limiter()
    assert (await lim.hit("a", 1, 60.0)).allowed
    assert (await lim.hit("a", 1, 60.0)).retry_after == 60
    assert (await lim.hit("b", 1, 60.0)).allowed


async def test_blocked_counts_nothing() -> None:
    lim, clock = limiter()
    for _ in range(50):
        assert await lim.blocked("k", 3, 60.0) is None
    for _ in range(3):
        assert (await lim.hit("k", 3, 60.0)).allowed
    assert await lim.blocked("k", 3, 60.0) == 20
    clock.now = T + 20
    assert await lim.blocked("k", 3, 60.0) is None
    assert (await lim.hit("k", 3, 60.0)).allowed
    assert await lim.blocked("k", 3, 60.0) == 20


async def test_eviction_keeps_working_when_the_table_is_full() -> None:
    lim = MemoryRateLimiter(FakeClock(), max_keys=10)
    for i in range(100):
        assert (await lim.hit(f"k{i}", 1, 60.0)).allowed
    assert len(lim._tat) <= 10
    # The newest key is still limited.
    assert (await lim.hit("k99", 1, 60.0)).retry_after == 60


@settings(deadline=None)
@given(
    limit=st.integers(1, 20),
    window=st.sampled_from([1.0, 60.0, 3600.0, 86400.0]),
    gaps=st.lists(st.floats(0, 5000, allow_nan=False), max_size=20),
)
def test_gcra_never_admits_more_than_limit_per_window_and_counts_down(
    limit: int, window: float, gaps: list[float]
) -> None:
    """Over any event sequence: a fresh key admits exactly ``limit`` at one instant; no span
    admits more than ``limit`` plus one per interval elapsed; refusals change nothing."""
    tat, now, admitted = None, T, []
    for gap in [0.0, *gaps]:
        now += gap
        burst = 0
        while True:
            new, verdict = gcra(tat, now, limit, window)
            if not verdict.allowed:
                assert new == (tat if tat is not None and tat > now else now)
                assert verdict.retry_after is not None and verdict.retry_after >= 1
                break
            assert verdict.remaining >= 0 and verdict.retry_after is None
            tat = new
            burst += 1
            admitted.append(now)
            assert burst <= limit
        if gap == 0.0 and len(admitted) == burst:
            assert burst == limit  # a fresh key: the whole limit at once
    interval = window / limit
    for i, t in enumerate(admitted):  # a token bucket: limit at once, then one per interval
        for j in range(i, len(admitted)):
            assert j - i + 1 <= limit + (admitted[j] - t) / interval + 1e-6


class CountingLimiter:
    """A shared limiter (GCRA in memory) that counts its round trips."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner = MemoryRateLimiter(clock)
        self.calls = 0

    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        self.calls += 1
        return await self.inner.hit(key, limit, window)

    async def blocked(self, key: str, limit: int, window: float) -> int | None:
        self.calls += 1
        return await self.inner.blocked(key, limit, window)

    async def refund(self, key: str, limit: int, window: float) -> None:
        self.calls += 1
        await self.inner.refund(key, limit, window)

    def close(self) -> None:
        pass


async def test_refusal_cache_spares_round_trips_while_a_key_is_refused() -> None:
    clock = FakeClock()
    shared = CountingLimiter(clock)
    lim = RefusalCache(shared, clock)
    for _ in range(3):
        assert (await lim.hit("k", 3, 60.0)).allowed
    first = await lim.hit("k", 3, 60.0)
    assert first == Verdict(False, 0, 60, 20)
    calls = shared.calls
    for _ in range(1000):  # a flood: answered here
        assert not (await lim.hit("k", 3, 60.0)).allowed
    assert await lim.blocked("k", 3, 60.0) == 20
    assert shared.calls == calls
    assert (await lim.hit("other", 3, 60.0)).allowed  # other keys go through
    clock.now = T + 19.5  # within the last second it asks again
    assert (await lim.hit("k", 3, 60.0)).retry_after == 1
    clock.now = T + 20.0
    assert (await lim.hit("k", 3, 60.0)).allowed


@settings(deadline=None)
@given(
    limit=st.integers(1, 10),
    window=st.sampled_from([1.0, 10.0, 60.0]),
    gaps=st.lists(st.floats(0, 30, allow_nan=False), max_size=60),
)
async def test_refusal_cache_decides_exactly_as_the_shared_limiter(
    limit: int, window: float, gaps: list[float]
) -> None:
    """Whatever the timing, every event gets the same allowed/refused answer with or without
    the cache in front (the shared limiter's Retry-After is whole seconds, rounded up)."""
    plain_clock, cached_clock = FakeClock(), FakeClock()
    plain = MemoryRateLimiter(plain_clock)
    cached = RefusalCache(MemoryRateLimiter(cached_clock), cached_clock)
    for gap in gaps:
        plain_clock.now += gap
        cached_clock.now += gap
        a, b = await plain.hit("k", limit, window), await cached.hit("k", limit, window)
        assert a.allowed == b.allowed


async def test_a_refund_gives_one_event_back_never_before_now() -> None:
    lim, _ = limiter()
    assert [(await lim.hit("k", 3, 60.0)).allowed for _ in range(4)] == [True] * 3 + [False]
    await lim.refund("k", 3, 60.0)
    assert (await lim.hit("k", 3, 60.0)).allowed
    for _ in range(10):
        await lim.refund("k", 3, 60.0)
    assert [(await lim.hit("k", 3, 60.0)).allowed for _ in range(4)] == [True] * 3 + [False]
    # through the refusal cache: the refused key is asked again after a refund
    clock2 = FakeClock()
    cached = RefusalCache(MemoryRateLimiter(clock2), clock2)
    assert [(await cached.hit("k", 1, 60.0)).allowed for _ in range(2)] == [True, False]
    await cached.refund("k", 1, 60.0)
    assert (await cached.hit("k", 1, 60.0)).allowed


@pytest.mark.parametrize(
    ("client", "bucket"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("", ""),  # a Unix socket: no address
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("::1", "::/64"),
        ("not:an:address", "not:an:address"),
    ],
)
def test_address_bucket(client: str, bucket: str) -> None:
    assert address_bucket(client) == bucket
