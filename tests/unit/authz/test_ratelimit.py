"""authz/ratelimit.py: GCRA in memory."""

from __future__ import annotations

from restguard.authz.ratelimit import MemoryRateLimiter

T = 1000.0


async def test_allows_limit_at_once_then_refuses_with_retry_after() -> None:
    limiter = MemoryRateLimiter()
    for _ in range(3):
        assert await limiter.hit("k", 3, 60.0, T) is None
    retry = await limiter.hit("k", 3, 60.0, T)
    assert retry == 20  # window / limit: the next cell is free in 20 s
    # A refused hit is not counted: the retry time does not grow.
    assert await limiter.hit("k", 3, 60.0, T) == 20
    assert await limiter.hit("k", 3, 60.0, T + 5) == 15


async def test_recovers_one_request_per_interval() -> None:
    limiter = MemoryRateLimiter()
    for _ in range(3):
        assert await limiter.hit("k", 3, 60.0, T) is None
    assert await limiter.hit("k", 3, 60.0, T + 19.9) == 1
    assert await limiter.hit("k", 3, 60.0, T + 20.0) is None
    assert await limiter.hit("k", 3, 60.0, T + 20.0) is not None
    # After a whole window of silence the full burst is available again.
    later = T + 20.0 + 60.0
    for _ in range(3):
        assert await limiter.hit("k", 3, 60.0, later) is None
    assert await limiter.hit("k", 3, 60.0, later) is not None


async def test_retry_after_is_at_least_one_second() -> None:
    limiter = MemoryRateLimiter()
    assert await limiter.hit("k", 10, 1.0, T) is None
    for _ in range(9):
        await limiter.hit("k", 10, 1.0, T)
    assert await limiter.hit("k", 10, 1.0, T) == 1


async def test_keys_are_independent() -> None:
    limiter = MemoryRateLimiter()
    assert await limiter.hit("a", 1, 60.0, T) is None
    assert await limiter.hit("a", 1, 60.0, T) == 60
    assert await limiter.hit("b", 1, 60.0, T) is None


async def test_blocked_counts_nothing() -> None:
    limiter = MemoryRateLimiter()
    for _ in range(50):
        assert await limiter.blocked("k", 3, 60.0, T) is None
    for _ in range(3):
        assert await limiter.hit("k", 3, 60.0, T) is None
    assert await limiter.blocked("k", 3, 60.0, T) == 20
    assert await limiter.blocked("k", 3, 60.0, T + 20) is None
    assert await limiter.hit("k", 3, 60.0, T + 20) is None
    assert await limiter.blocked("k", 3, 60.0, T + 20) == 20


async def test_eviction_keeps_working_when_the_table_is_full() -> None:
    limiter = MemoryRateLimiter(max_keys=10)
    for i in range(100):
        assert await limiter.hit(f"k{i}", 1, 60.0, T) is None
    assert len(limiter._tat) <= 10
    # The newest key is still limited.
    assert await limiter.hit("k99", 1, 60.0, T) == 60
