"""Attacker's review of batched Redis checks (``store/redis/_batch.py``, ``rate_limit.py``,
``nonces.py``): exactness across instances, fail closed, cancellation, reply parsing, odd keys.

Store-level tests on the machine's Redis (a prefix of their own) or the fake Redis. A passing
test documents a line that held; an ``xfail(strict=True)`` is a finding."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from restguard.authz.ratelimit import Verdict
from restguard.errors import BackendUnavailable
from restguard.store.redis._link import Link
from restguard.store.redis.nonces import NonceBatches, fresh
from restguard.store.redis.rate_limit import RedisRateLimiter, verdicts
from tests.attacks.fake_redis import FakeRedis
from tests.integration.redis_support import REDIS_URL, delete_prefix, unique_prefix

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def link(url: str = REDIS_URL, prefix: str = "x:", timeout: float = 2.0) -> Link:
    return Link(url, timeout=timeout, prefix=prefix, max_connections=4)


@pytest.fixture
def prefix():
    p = unique_prefix()
    yield p
    delete_prefix(p)


@pytest.fixture
def fake():
    f = FakeRedis()
    yield f
    f.stop()


# --- (1) exactness ------------------------------------------------------------------------------


async def test_racing_batches_on_two_links_admit_exactly_the_limit(prefix: str) -> None:
    a, b = link(prefix=prefix), link(prefix=prefix)
    la, lb = RedisRateLimiter(a), RedisRateLimiter(b)
    try:
        calls = [(la if i % 2 else lb).hit("k", 37, 3600.0) for i in range(300)]
        results = await asyncio.gather(*calls)
        assert sum(v.allowed for v in results) == 37
        # a batch mixing blocked (counts nothing) and hits, same key
        calls2 = [la.blocked("k2", 5, 3600.0) for _ in range(20)] + [
            lb.hit("k2", 5, 3600.0) for _ in range(20)
        ]
        out = await asyncio.gather(*calls2)
        assert sum(v.allowed for v in out[20:]) == 5
    finally:
        await a.aclose()
        await b.aclose()


async def test_nonce_twice_in_one_batch_and_across_links_is_fresh_once(prefix: str) -> None:
    a, b = link(prefix=prefix), link(prefix=prefix)
    na, nb = NonceBatches(a), NonceBatches(b)
    try:
        exp = NOW + timedelta(minutes=5)
        calls = [(na if i % 2 else nb).use("sig-nonce", f"n{i % 7}", exp, NOW) for i in range(140)]
        results = await asyncio.gather(*calls)
        for k in range(7):
            assert sum(r for i, r in enumerate(results) if i % 7 == k) == 1
    finally:
        await a.aclose()
        await b.aclose()


# --- (2) fail closed ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["err", "oom", "string4", "short", "ok_text", "drop", "silent"])
async def test_bad_redis_fails_closed_within_timeout_and_does_not_stick(
    fake: FakeRedis, mode: str
) -> None:
    ln = link(fake.url, timeout=0.5)
    rl, nb = RedisRateLimiter(ln), NonceBatches(ln)
    try:
        fake.mode = mode
        started = time.monotonic()
        calls = [rl.hit(f"k{i}", 5, 60.0) for i in range(30)] + [
            nb.use("sig-nonce", f"n{i}", NOW + timedelta(minutes=1), NOW) for i in range(30)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, BackendUnavailable) for r in results), results
        assert time.monotonic() - started < 5.0  # generous: 0.5 s timeout per call
        fake.mode = "ok"
        ok = await asyncio.wait_for(rl.hit("after", 5, 60.0), 5)
        assert ok.allowed
        assert (await asyncio.wait_for(nb.use("sig-nonce", "z", NOW, NOW), 5)) in (True,)
    finally:
        await ln.aclose()


async def test_calls_queued_behind_a_frozen_batch_fail_by_their_own_deadline(
    fake: FakeRedis,
) -> None:
    fake.mode = "silent"
    ln = link(fake.url, timeout=0.6)
    rl = RedisRateLimiter(ln)
    try:
        first = asyncio.create_task(rl.hit("a", 5, 60.0))
        await asyncio.sleep(0.3)  # in flight; the next ones queue behind it
        started = time.monotonic()
        later = [asyncio.create_task(rl.hit(f"b{i}", 5, 60.0)) for i in range(600)]  # > MAX_BATCH
        res = await asyncio.gather(first, *later, return_exceptions=True)
        assert all(isinstance(r, BackendUnavailable) for r in res)
        assert time.monotonic() - started < 4.0
        assert rl._batches._sender is None and not rl._batches._queue
    finally:
        await ln.aclose()


# --- (3) cancellation ---------------------------------------------------------------------------


async def test_callers_cancelled_before_send_are_not_counted(prefix: str) -> None:
    ln = link(prefix=prefix)
    rl = RedisRateLimiter(ln)
    try:
        tasks = [asyncio.create_task(rl.hit("c", 1000, 3600.0)) for _ in range(40)]
        await asyncio.sleep(0)  # all queued; the sender has not run yet
        for t in tasks[::2]:
            t.cancel()
        res = await asyncio.gather(*tasks, return_exceptions=True)
        done = [r for r in res if not isinstance(r, BaseException)]
        assert len(done) == 20
        probe = await rl.blocked("c", 1000, 3600.0)
        assert probe is None
        v = await rl.hit("c", 1000, 3600.0)
        assert v.remaining == 1000 - 21  # exactly the 20 that were not cancelled, plus this one
    finally:
        await ln.aclose()


async def test_cancel_in_flight_then_frozen_queue_drains(fake: FakeRedis) -> None:
    fake.mode = "silent"
    ln = link(fake.url, timeout=0.5)
    rl = RedisRateLimiter(ln)
    try:
        tasks = [asyncio.create_task(rl.hit(f"k{i}", 5, 60.0)) for i in range(2000)]
        await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # the sender must end by the batch's deadline and leave nothing queued
        deadline = time.monotonic() + 5
        while rl._batches._sender is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert rl._batches._sender is None and not rl._batches._queue
        fake.mode = "ok"
        assert (await asyncio.wait_for(rl.hit("z", 5, 60.0), 5)).allowed
    finally:
        await ln.aclose()


# --- (4) reply parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        b"1 0 0 -1\n",
        b" 1 0 0 -1",
        b"1  0 0 -1",
        b"1 0 0 -1 ",
        b"+1 0 0 -1",
        b"1 0 0 - 1",
        b"1\t0 0 -1",
        "1 0 0 -1",
        b"1 0 0 -1 1 0 0 -1",
        b"1 0 0",
        b"2 0 0 -1",
        b"1 -1 0 -1",
        b"1 0 -1 -1",
        b"1 0 0 0",
        b"0 0 0 -1",
        b"0 0 0 0",
        b"1 0 0 1",
        b"1 0 0 -2",
        b"1 0 0 0x1",
        b"1 0 0 1_0",
        b"1 0 0 1e3",
        "1 0 0 \u0661".encode(),
        b"",
        None,
        [1, 0, 0, -1],
        b"1 9999999999999999999 0 -1",
        bytearray(b"1 0 0 -1"),
    ],
)
def test_verdicts_rejects_every_other_shape(reply: object) -> None:
    with pytest.raises(BackendUnavailable):
        verdicts(reply, 1)


@pytest.mark.parametrize(
    "reply,count",
    [
        (b"1\n", 1),
        (b" 1", 1),
        (b"2", 1),
        (b"", 1),
        (b"11", 1),
        (b"1", 2),
        ("1", 1),
        (b"\x01", 1),
        (b"1\x00", 2),
        (1, 1),
        (b"1 1", 3),
        (bytearray(b"1"), 1),
        (b"", 0),
    ],
)
def test_fresh_rejects_every_other_shape(reply: object, count: int) -> None:
    if reply == b"" and count == 0:
        assert fresh(reply, count) == []  # (an empty batch is never sent)
        return
    with pytest.raises(BackendUnavailable):
        fresh(reply, count)


# --- (5) odd keys and limits --------------------------------------------------------------------


async def test_odd_keys_and_limits_give_verdicts_not_lua_errors(prefix: str) -> None:
    ln = link(prefix=prefix)
    rl = RedisRateLimiter(ln)
    try:
        keys = ["ü\u202e\U0001f600", "a" * 5000, "\x00\r\n*1\r\n$4\r\nPING", "", " "]
        for key in keys:
            assert (await rl.hit(key, 1, 3600.0)).allowed
            assert not (await rl.hit(key, 1, 3600.0)).allowed
        assert (await rl.hit("huge", 10**12, 1.0)).allowed
        assert (await rl.hit("tiny", 3, 0.001)).allowed
        assert (await rl.hit("long", 1, 10.0**9)).allowed
        assert not (await rl.hit("long", 1, 10.0**9)).allowed
    finally:
        await ln.aclose()


async def test_one_unencodable_key_does_not_fail_the_other_calls_of_its_batch(
    prefix: str,
) -> None:
    ln = link(prefix=prefix)
    rl = RedisRateLimiter(ln)
    try:
        results = await asyncio.gather(
            rl.hit("route:r:jwt\x1fiss\x1fcli\x1f\ud800", 5, 3600.0),
            *[rl.hit(f"innocent{i}", 5, 3600.0) for i in range(10)],
            return_exceptions=True,
        )
        # (was a FINDING: the key went to Redis as is and UnicodeEncodeError failed the
        # whole batch; now a key UTF-8 cannot write is stored under its SHA-256)
        assert all(isinstance(r, Verdict) and r.allowed for r in results), results
        again = await rl.hit("route:r:jwt\x1fiss\x1fcli\x1f\ud800", 5, 3600.0)
        assert again.remaining == results[0].remaining - 1  # its own count, kept
    finally:
        await ln.aclose()


async def test_nonce_with_unencodable_parts_does_not_poison_its_batch(prefix: str) -> None:
    ln = link(prefix=prefix)
    nb = NonceBatches(ln)
    from restguard.store.redis.nonces import RedisNonceStore

    store = RedisNonceStore(nb)
    try:
        exp = NOW + timedelta(minutes=5)
        results = await asyncio.gather(
            store.use("\ud800", "\udfff", exp, NOW),
            *[store.use("app", f"n{i}", exp, NOW) for i in range(10)],
            return_exceptions=True,
        )
        assert all(r is True for r in results), results  # keys are digests: always encodable
    finally:
        await ln.aclose()


async def test_shutdown_with_a_batch_in_flight_fails_the_callers_promptly(
    fake: FakeRedis,
) -> None:
    fake.mode = "silent"
    ln = link(fake.url, timeout=5.0)
    rl = RedisRateLimiter(ln)
    tasks = [asyncio.create_task(rl.hit(f"k{i}", 5, 60.0)) for i in range(10)]
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await ln.aclose()
    res = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, BackendUnavailable) for r in res), res
    assert time.monotonic() - started < 3.0  # not the 5 s timeout: the connection was closed
