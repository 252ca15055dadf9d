"""The Redis adapters when Redis goes silent or away: every call fails closed with
``BackendUnavailable`` within its timeout (never an allowed hit, never a fresh nonce), the same
backend works again once Redis is back, and the revocation subscriber resubscribes by itself
(with a forget-all) and then delivers again."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from restguard.errors import BackendUnavailable
from restguard.store.redis import RedisBackend, open_redis
from tests.attacks.fake_redis import FakeRedis
from tests.faults import FreezableProxy
from tests.integration.redis_support import REDIS_URL, delete_prefix, eventually, unique_prefix

TIMEOUT = 0.5
REDIS = ("127.0.0.1", 6379)
_NONCES = itertools.count()  # a fresh nonce for every call


class _ProxyOn(FreezableProxy):
    """A ``FreezableProxy`` on a given port: a proxy that was stopped comes back where the
    backend connects to."""

    def __init__(self, target: tuple[str, int], port: int) -> None:
        self._fixed_port = port
        super().__init__(target)

    @property  # type: ignore[override]
    def port(self) -> int:
        return self._fixed_port

    @port.setter
    def port(self, value: int) -> None:
        pass


@pytest.fixture
def prefix() -> Iterator[str]:
    value = unique_prefix()
    yield value
    delete_prefix(value)


@pytest.fixture
def proxy() -> Iterator[list[FreezableProxy]]:
    """The proxy in front of Redis, in a list so that a test can replace it."""
    proxies: list[FreezableProxy] = [FreezableProxy(REDIS)]
    yield proxies
    for p in proxies:
        p.stop()


@pytest.fixture
async def backend(proxy: list[FreezableProxy], prefix: str) -> AsyncIterator[RedisBackend]:
    b = open_redis(f"redis://127.0.0.1:{proxy[0].port}/0", timeout=TIMEOUT, prefix=prefix)
    yield b
    await b.aclose()


@pytest.fixture
async def direct(prefix: str) -> AsyncIterator[RedisBackend]:
    """Another instance, straight on Redis."""
    b = open_redis(REDIS_URL, timeout=2.0, prefix=prefix)
    yield b
    await b.aclose()


def _operations(b: RedisBackend) -> dict[str, Callable[[], Awaitable[Any]]]:
    now = datetime.now(UTC)
    later = now + timedelta(minutes=5)
    return {
        "hit": lambda: b.limiter.hit("k", 1000, 3600),
        "blocked": lambda: b.limiter.blocked("k", 1000, 3600),
        "nonce": lambda: b.signature_nonces.use("app", f"n{next(_NONCES)}", later, now),
        "oauth1 nonce": lambda: b.oauth1_nonces.use("ck", "t", 1, f"n{next(_NONCES)}", later, now),
        "publish": lambda: b.revocations.publish("token", "t"),
        "ping": lambda: b.ping(),
    }


async def _all_fail(b: RedisBackend, within: float) -> None:
    for name, op in _operations(b).items():
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as caught:
            await op()
        took = time.monotonic() - started
        assert took < within, f"{name} took {took:.2f} s"
        assert caught.value.debug.startswith("redis "), caught.value.debug


async def _all_work(b: RedisBackend) -> None:
    ops = _operations(b)
    assert (await ops["hit"]()).allowed
    assert await ops["blocked"]() is None
    assert await ops["nonce"]() is True
    assert await ops["oauth1 nonce"]() is True
    await ops["publish"]()
    await ops["ping"]()


async def test_a_frozen_redis_fails_every_call_within_the_timeout(
    backend: RedisBackend, proxy: list[FreezableProxy]
) -> None:
    await _all_work(backend)  # (pooled connections exist: they go silent too)
    proxy[0].freeze()
    try:
        await _all_fail(backend, TIMEOUT + 1)
        # Calls at once (each on its own connection, new ones included) fail as one.
        started = time.monotonic()
        results = await asyncio.gather(
            *(op() for op in _operations(backend).values()), return_exceptions=True
        )
        assert all(isinstance(r, BackendUnavailable) for r in results), results
        assert time.monotonic() - started < TIMEOUT + 1
    finally:
        proxy[0].thaw()
    await _all_work(backend)


async def test_a_nonce_is_never_fresh_when_redis_is_silent(
    backend: RedisBackend, proxy: list[FreezableProxy]
) -> None:
    now = datetime.now(UTC)
    later = now + timedelta(minutes=5)
    proxy[0].freeze()
    try:
        for _ in range(3):
            with pytest.raises(BackendUnavailable):
                await backend.signature_nonces.use("app", "same", later, now)
    finally:
        proxy[0].thaw()
    # The frozen writes may land after all: then the nonce counts as seen (fail closed).
    assert await backend.signature_nonces.use("app", "fresh", later, now) is True


async def test_a_cut_connection_fails_fast_and_the_same_backend_recovers(
    backend: RedisBackend, proxy: list[FreezableProxy]
) -> None:
    await _all_work(backend)
    port = proxy[0].port
    proxy[0].stop()
    await _all_fail(backend, 0.4)  # refused or reset: no waiting for the timeout
    proxy.append(_ProxyOn(REDIS, port))
    await _all_work(backend)


async def test_the_subscriber_resubscribes_after_a_freeze(
    backend: RedisBackend,
    direct: RedisBackend,
    proxy: list[FreezableProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "restguard.redis")
    seen: list[tuple[str, str]] = []
    backend.revocations.start(lambda kind, key: seen.append((kind, key)))
    await eventually(lambda: seen == [("*", "")], 2, "the first forget-all")
    proxy[0].freeze()
    try:
        # Found silent by an unanswered PING (every second), then reconnection attempts fail.
        await eventually(lambda: "subscription lost" in caplog.text, 5, "the loss noticed")
        await asyncio.sleep(1.0)
    finally:
        proxy[0].thaw()
    took = await eventually(lambda: ("*", "") in seen[1:], 8, "the second forget-all")
    print(f"\nresubscribed {took:.2f} s after the thaw")
    assert backend.revocations.subscriptions >= 2
    assert "127.0.0.1" not in caplog.text and "redis://" not in caplog.text
    count = len(seen)
    await direct.revocations.publish("token", "after-freeze")
    await eventually(lambda: len(seen) > count, 1, "a revocation after the thaw")
    assert seen[-1] == ("token", "after-freeze")


async def test_the_subscriber_resubscribes_after_redis_comes_back(
    backend: RedisBackend, direct: RedisBackend, proxy: list[FreezableProxy]
) -> None:
    seen: list[tuple[str, str]] = []
    backend.revocations.start(lambda kind, key: seen.append((kind, key)))
    await eventually(lambda: seen == [("*", "")], 2, "the first forget-all")
    port = proxy[0].port
    proxy[0].stop()
    await asyncio.sleep(1.0)  # several refused attempts (back-off 0.1, 0.2, 0.4 ...)
    await direct.revocations.publish("token", "missed")  # nobody hears this one: hence "*"
    proxy.append(_ProxyOn(REDIS, port))
    took = await eventually(lambda: len(seen) >= 2, 6, "the second forget-all")
    print(f"\nresubscribed {took:.2f} s after Redis came back")
    assert seen == [("*", ""), ("*", "")]
    await direct.revocations.publish("token", "after")
    await eventually(lambda: len(seen) == 3, 1, "a revocation after the return")
    assert seen[-1] == ("token", "after")


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


async def test_a_redis_that_forgot_the_scripts_is_sent_them_again_and_answers() -> None:
    """After a Redis restart (or SCRIPT FLUSH) EVALSHA answers NOSCRIPT: the batch is sent again
    with EVAL (which loads the script), on the same connection, and decides as usual."""
    fake = FakeRedis()
    backend = open_redis(fake.url, timeout=2.0, prefix="t:")
    try:
        fake.mode = "noscript"
        verdict = await backend.limiter.hit("k", 5, 60)
        assert verdict.allowed
        assert await backend.signature_nonces.use("app", "n1", LATER, NOW) is True
        sent = [c for c in fake.commands if c in (b"EVALSHA", b"EVAL")]
        assert sent == [b"EVALSHA", b"EVAL", b"EVALSHA", b"EVAL"]
        connections = fake.connections
        fake.mode = "drop"  # half a reply, then the connection is closed
        with pytest.raises(BackendUnavailable):
            await backend.limiter.hit("k", 5, 60)
        fake.mode = "ok"  # the next call connects again
        assert (await backend.limiter.hit("k", 5, 60)).allowed
        assert fake.connections > connections
    finally:
        await backend.aclose()
        fake.stop()
