"""The Redis adapters on the real Redis: exact shared rate limits (GCRA in one Lua script, the
same verdicts as ``authz.ratelimit.gcra``), atomic replay caches, revocation fan-out."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard.authz.ratelimit import Verdict, gcra
from restguard.errors import BackendUnavailable
from restguard.store.redis import RedisBackend, open_redis
from restguard.store.redis.nonces import fresh as fresh_nonces
from restguard.store.redis.rate_limit import EACH_LUA, GCRA_LUA, verdict, verdicts
from tests.harness import free_port
from tests.integration.redis_support import REDIS_URL, delete_prefix, eventually, unique_prefix


@pytest.fixture
def prefix() -> Iterator[str]:
    value = unique_prefix()
    yield value
    delete_prefix(value)


@pytest.fixture
async def pair(prefix: str) -> AsyncIterator[tuple[RedisBackend, RedisBackend]]:
    """Two backends (two clients, as two instances have) on the same Redis and prefix."""
    a = open_redis(REDIS_URL, timeout=2.0, prefix=prefix)
    b = open_redis(REDIS_URL, timeout=2.0, prefix=prefix)
    yield a, b
    await a.aclose()
    await b.aclose()


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


# -- rate limits ------------------------------------------------------------------------------


async def test_racing_hits_on_two_instances_admit_exactly_the_limit(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    a, b = pair
    verdicts = await asyncio.gather(
        *((a if i % 2 else b).limiter.hit("client:1", 7, 3600) for i in range(60))
    )
    allowed = [v for v in verdicts if v.allowed]
    assert len(allowed) == 7
    assert sorted(v.remaining for v in allowed) == list(range(7))
    refused = [v for v in verdicts if not v.allowed]
    assert all(v.retry_after is not None and v.retry_after >= 1 for v in refused)
    assert all(v.remaining == 0 and v.reset >= 1 for v in refused)


async def test_without_hiredis_the_lane_packs_with_redis_py_and_counts_the_same(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """restguard[redis] installs hiredis to pack the lane's commands; redis-py installed alone
    has only its own packer, and a batch must count exactly the same with it."""
    from restguard.store.redis import _link

    monkeypatch.setattr(_link, "hiredis", None)
    backend = open_redis(REDIS_URL, timeout=2.0, prefix=prefix)
    try:
        verdicts = await asyncio.gather(*(backend.limiter.hit("k", 3, 3600) for _ in range(10)))
        assert [v.allowed for v in verdicts].count(True) == 3
        nonces = backend.signature_nonces
        used = [await nonces.use("app", f"n{i % 2}", LATER, NOW) for i in range(4)]
        assert used == [True, True, False, False]
    finally:
        await backend.aclose()


async def test_blocked_counts_nothing(pair: tuple[RedisBackend, RedisBackend]) -> None:
    a, b = pair
    for _ in range(10):
        assert await b.limiter.blocked("k", 3, 3600) is None
    assert [(await a.limiter.hit("k", 3, 3600)).allowed for _ in range(4)] == [1, 1, 1, 0]
    retry = await b.limiter.blocked("k", 3, 3600)
    assert retry is not None and retry >= 1


async def test_keys_are_independent(pair: tuple[RedisBackend, RedisBackend]) -> None:
    a, _ = pair
    assert (await a.limiter.hit("one", 1, 3600)).allowed
    assert not (await a.limiter.hit("one", 1, 3600)).allowed
    assert (await a.limiter.hit("two", 1, 3600)).allowed
    assert (await a.limiter.hit("one:x", 1, 3600)).allowed


async def test_retry_after_is_at_least_one_second(pair: tuple[RedisBackend, RedisBackend]) -> None:
    a, _ = pair  # 100 per s: the next event is due within 10 ms, Retry-After still says 1
    verdicts = await asyncio.gather(*(a.limiter.hit("fast", 100, 1.0) for _ in range(150)))
    refused = [v for v in verdicts if not v.allowed]
    assert refused and all(v.retry_after == 1 and v.reset >= 1 for v in refused)


async def test_state_expires_with_the_tat(
    pair: tuple[RedisBackend, RedisBackend], prefix: str, raw: redis.Redis
) -> None:
    a, _ = pair
    await a.limiter.hit("ttl", 10, 100)  # TAT = now + 10 s
    ttl = raw.pttl(prefix + "rl:ttl")
    assert 9_000 < ttl <= 10_001
    await a.limiter.hit("short", 1, 0.05)
    await asyncio.sleep(0.15)
    assert raw.exists(prefix + "rl:short") == 0
    assert (await a.limiter.hit("short", 1, 0.05)).allowed


async def test_long_keys_are_hashed(
    pair: tuple[RedisBackend, RedisBackend], prefix: str, raw: redis.Redis
) -> None:
    a, b = pair
    key = "ip:" + "x" * 500
    assert (await a.limiter.hit(key, 1, 3600)).allowed
    assert not (await b.limiter.hit(key, 1, 3600)).allowed
    assert raw.exists(prefix + "rl#" + hashlib.sha256(key.encode()).hexdigest()) == 1
    assert raw.exists(prefix + "rl:" + key) == 0


@pytest.mark.parametrize(
    ("limit", "window"), [(1, 3600.0), (7, 700.0), (10, 86400.0), (60, 3600.0), (3, 30.0)]
)
async def test_same_verdicts_as_gcra_on_redis_time(
    pair: tuple[RedisBackend, RedisBackend], limit: int, window: float
) -> None:
    """On Redis's own clock: with intervals of whole seconds, the milliseconds that pass between
    calls change no rounded value, so every verdict equals gcra()'s with time standing still."""
    a, b = pair
    tat: float | None = None
    for i in range(limit + 3):
        backend = a if i % 2 else b
        if i % 3 == 2:
            expected_retry = gcra(tat, 0.0, limit, window)[1].retry_after
            assert await backend.limiter.blocked("d", limit, window) == expected_retry
        new_tat, expected = gcra(tat, 0.0, limit, window)
        assert await backend.limiter.hit("d", limit, window) == expected, i
        if expected.allowed:
            tat = new_tat


_script_events = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=50, allow_nan=False),  # seconds since the last event
        st.booleans(),  # hit (True) or blocked
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(
    offset=st.floats(min_value=0, max_value=1e8, allow_nan=False),
    limit=st.integers(min_value=1, max_value=50),
    window=st.one_of(
        st.floats(min_value=0.001, max_value=1e5, allow_nan=False),
        st.sampled_from([1.0, 3.0, 60.0, 3600.0, 0.1, 7.0]),
    ),
    events=_script_events,
)
def test_the_script_computes_exactly_what_gcra_computes(
    offset: float, limit: int, window: float, events: list[tuple[float, bool]]
) -> None:
    """The script's arithmetic on a pinned clock (``now`` passed in instead of ``TIME``), bit for
    bit against gcra(): same epsilon, same rounding, same doubles. (The pinned times lie ahead
    of Redis's: no TAT expires during the example.)"""
    start = time.time() + 1e5 + offset
    client = redis.Redis.from_url(REDIS_URL)
    key = unique_prefix() + "rl:diff"
    script = client.register_script(
        GCRA_LUA + "return gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1', "
        "tonumber(ARGV[4]))"
    )
    try:
        tat: float | None = None
        now = start
        for step, count in events:
            now += step
            args = [limit, repr(float(window)), "1" if count else "0", repr(now)]
            got = verdict(script(keys=[key], args=args))
            new_tat, expected = gcra(tat, now, limit, window)
            assert got == expected, (now, tat)
            if count and expected.allowed:
                tat = new_tat
                stored = client.get(key)
                assert stored is not None and float(stored) == new_tat
    finally:
        client.delete(key)
        client.close()


@settings(max_examples=100, deadline=None)
@given(
    limits=st.lists(
        st.tuples(st.integers(1, 6), st.sampled_from([1.0, 60.0, 3600.0])), min_size=3, max_size=3
    ),
    events=st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=40),
)
def test_a_batch_decides_what_its_calls_one_by_one_decide(
    limits: list[tuple[int, float]], events: list[tuple[int, bool]]
) -> None:
    """One batch (the production loop, ``EACH_LUA``, on a pinned clock) of hits and checks on
    three keys, a key repeated any number of times: each answer is gcra()'s for that call after
    the ones before it in the batch, as if each had been sent alone."""
    now = time.time() + 1e5
    client = redis.Redis.from_url(REDIS_URL)
    prefix = unique_prefix()
    script = client.register_script("local now = tonumber(ARGV[#ARGV])\n" + GCRA_LUA + EACH_LUA)
    keys, args, expected = [], [], []
    tats: dict[int, float | None] = {0: None, 1: None, 2: None}
    for which, count in events:
        limit, window = limits[which]
        keys.append(f"{prefix}rl:{which}")
        args += [limit, repr(window), "1" if count else "0"]
        new_tat, verdict_ = gcra(tats[which], now, limit, window)
        expected.append(verdict_)
        if count and verdict_.allowed:
            tats[which] = new_tat
    try:
        assert verdicts(script(keys=keys, args=[*args, repr(now)]), len(events)) == expected
    finally:
        delete_prefix(prefix)
        client.close()


def test_a_batch_reply_of_another_shape_decides_nothing() -> None:
    assert verdicts(b"1 4 10 -1 0 0 3 2", 2) == [
        Verdict(True, 4, 10, None),
        Verdict(False, 0, 3, 2),
    ]
    for reply in (
        b"1 4 10 -1 1",
        b"1 4 10 -1 0",
        b"1 4 10 -1 1 4 10 7",  # allowed with a retry: not the script's
        b"1 4 10 -1 ",
        b" 1 4 10 -1",
        b"1  4 10 -1",
        b"1 4 1_0 -1",
        b"1 4 +10 -1",
        b"1 4 10 -1\n",
        b"1 4 99999999999999999999 -1",
        [1, 4, 10, -1],
        "1 4 10 -1",
        None,
    ):
        with pytest.raises(BackendUnavailable):
            verdicts(reply, 1 if reply != b"1 4 10 -1 1 4 10 7" else 2)


async def test_racing_nonces_on_two_instances_are_fresh_exactly_once(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    a, b = pair  # 20 nonces, each sent 5 times over both instances (batched together)
    calls = [
        (a if i % 2 else b).signature_nonces.use("app1", f"n{i % 20}", LATER, NOW)
        for i in range(100)
    ]
    fresh = await asyncio.gather(*calls)
    assert sum(fresh) == 20
    assert {f"n{i % 20}" for i, ok in enumerate(fresh) if ok} == {f"n{i}" for i in range(20)}


def test_verdict_from_reply() -> None:
    assert verdict([1, 4, 10, -1]) == Verdict(True, 4, 10, None)
    assert verdict([0, 0, 3, 2]) == Verdict(False, 0, 3, 2)


# -- nonces -----------------------------------------------------------------------------------

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


async def test_signature_nonce_first_use_then_replay(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    a, b = pair
    assert await a.signature_nonces.use("app1", "n1", LATER, NOW) is True
    assert await a.signature_nonces.use("app1", "n1", LATER, NOW) is False
    assert await b.signature_nonces.use("app1", "n1", LATER, NOW) is False
    assert await b.signature_nonces.use("app2", "n1", LATER, NOW) is True


async def test_oauth1_nonce_first_use_then_replay(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    a, b = pair
    use = a.oauth1_nonces.use
    assert await use("ck", "tok", 1700000000, "n", LATER, NOW) is True
    assert await b.oauth1_nonces.use("ck", "tok", 1700000000, "n", LATER, NOW) is False
    assert await use("ck", "tok", 1700000001, "n", LATER, NOW) is True
    assert await use("ck", "", 1700000000, "n", LATER, NOW) is True
    assert await use("ck2", "tok", 1700000000, "n", LATER, NOW) is True


async def test_racing_nonce_uses_on_two_instances_record_once(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    a, b = pair
    sig = await asyncio.gather(
        *((a if i % 2 else b).signature_nonces.use("app", "race", LATER, NOW) for i in range(20))
    )
    assert sig.count(True) == 1
    oauth1 = await asyncio.gather(
        *(
            (a if i % 2 else b).oauth1_nonces.use("ck", "t", 1, "race", LATER, NOW)
            for i in range(20)
        )
    )
    assert oauth1.count(True) == 1


async def test_nonce_parts_never_collide(pair: tuple[RedisBackend, RedisBackend]) -> None:
    a, _ = pair
    assert await a.signature_nonces.use("a:b", "c", LATER, NOW) is True
    assert await a.signature_nonces.use("a", "b:c", LATER, NOW) is True
    assert await a.signature_nonces.use("a:b:c", "", LATER, NOW) is True
    use = a.oauth1_nonces.use
    assert await use("a:b", "c", 1, "n", LATER, NOW) is True
    assert await use("a", "b:c", 1, "n", LATER, NOW) is True
    assert await use("a", "b", 1, "c:n", LATER, NOW) is True
    assert await use("a", "b", 1, "\udcff", LATER, NOW) is True  # (not UTF-8: still a key)


async def test_nonces_expire(pair: tuple[RedisBackend, RedisBackend]) -> None:
    a, _ = pair
    soon = NOW + timedelta(milliseconds=50)
    assert await a.signature_nonces.use("app", "brief", soon, NOW) is True
    assert await a.signature_nonces.use("app", "brief", soon, NOW) is False
    await asyncio.sleep(0.12)
    assert await a.signature_nonces.use("app", "brief", soon, NOW) is True
    # Already expired (as in the SQL store): recorded, and gone at once.
    assert await a.signature_nonces.use("app", "past", NOW - timedelta(seconds=1), NOW) is True
    await asyncio.sleep(0.01)
    assert await a.signature_nonces.use("app", "past", NOW - timedelta(seconds=1), NOW) is True


# -- the revocation bus -----------------------------------------------------------------------


async def test_a_revocation_reaches_another_instance(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    a, b = pair
    seen: list[tuple[str, str, float]] = []
    a.revocations.start(lambda kind, key: seen.append((kind, key, time.monotonic())))
    await eventually(lambda: len(seen) == 1, 2, "the first subscription's forget-all")
    assert seen[0][:2] == ("*", "")
    latencies = []
    for i in range(5):
        sent = time.monotonic()
        await b.revocations.publish("token", f"tok-{i}")
        await eventually(lambda: len(seen) == i + 2, 1, "the revocation")
        assert seen[-1][:2] == ("token", f"tok-{i}")
        latencies.append(seen[-1][2] - sent)
    print(f"\npub/sub latency: max {max(latencies) * 1000:.2f} ms over {len(latencies)}")
    assert max(latencies) < 1.0
    await b.revocations.publish("app", "with\nnewline and ünïcode")
    await eventually(lambda: len(seen) == 7, 1, "the second revocation")
    assert seen[-1][:2] == ("app", "with\nnewline and ünïcode")


async def test_handler_failures_and_malformed_messages_do_not_stop_the_bus(
    pair: tuple[RedisBackend, RedisBackend], prefix: str, raw: redis.Redis
) -> None:
    a, b = pair
    seen: list[tuple[str, str]] = []

    def handler(kind: str, key: str) -> None:
        seen.append((kind, key))
        if kind in ("*", "boom"):
            raise RuntimeError("handler bug")

    a.revocations.start(handler)
    await eventually(lambda: seen == [("*", "")], 2, "the forget-all")
    await b.revocations.publish("boom", "1")
    for bad in (b"no newline", b"\nno kind", b"\xff\xfe\nnot utf-8"):
        raw.publish(prefix + "revoked", bad)
    await b.revocations.publish("token", "2")
    await eventually(lambda: len(seen) == 3, 1, "the message after the failure")
    assert seen == [("*", ""), ("boom", "1"), ("token", "2")]
    assert a.revocations.subscriptions == 1


async def test_publish_refuses_a_kind_that_is_not_one_line(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    a, _ = pair
    for kind in ("", "a\nb"):
        with pytest.raises(ValueError):
            await a.revocations.publish(kind, "k")


async def test_stop_ends_the_subscriber(pair: tuple[RedisBackend, RedisBackend]) -> None:
    a, b = pair
    seen: list[tuple[str, str]] = []
    a.revocations.start(lambda kind, key: seen.append((kind, key)))
    await eventually(lambda: len(seen) == 1, 2, "the forget-all")
    with pytest.raises(RuntimeError):
        a.revocations.start(lambda kind, key: None)
    await a.revocations.stop()
    await b.revocations.publish("token", "after-stop")
    await asyncio.sleep(0.1)
    assert seen == [("*", "")]


# -- errors never echo the URL ----------------------------------------------------------------


async def test_an_unreachable_redis_fails_closed_without_echoing_the_url(prefix: str) -> None:
    backend = open_redis(
        f"redis://user:s3cret-pw@127.0.0.1:{free_port()}/0", timeout=0.5, prefix=prefix
    )
    when = datetime.now(UTC)
    calls = [
        backend.ping(),
        backend.limiter.hit("k", 1, 60),
        backend.limiter.blocked("k", 1, 60),
        backend.signature_nonces.use("a", "n", when + timedelta(seconds=60), when),
        backend.oauth1_nonces.use("c", "t", 1, "n", when + timedelta(seconds=60), when),
        backend.revocations.publish("token", "t"),
    ]
    try:
        for call in calls:
            with pytest.raises(BackendUnavailable) as caught:
                await call
            error = caught.value
            assert error.debug.startswith("redis ") and "ConnectionError" in error.debug
            chain = [error, error.__cause__, error.__context__]
            assert not any("s3cret" in repr(e) or "s3cret" in str(e) for e in chain)
            assert "127.0.0.1" not in error.debug
    finally:
        await backend.aclose()


def test_a_bad_url_is_refused_without_echoing_it() -> None:
    for url in ("http://user:s3cret-pw@127.0.0.1:6379/0", "redis://user:s3cret-pw@h:port/0"):
        with pytest.raises(ValueError) as caught:
            open_redis(url, timeout=1.0)
        assert "s3cret" not in str(caught.value)


async def test_a_refund_gives_one_event_back_never_before_now(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    a, b = pair
    assert [(await a.limiter.hit("k", 3, 3600)).allowed for _ in range(4)] == [1, 1, 1, 0]
    await b.limiter.refund("k", 3, 3600)
    assert (await a.limiter.hit("k", 3, 3600)).allowed
    assert not (await b.limiter.hit("k", 3, 3600)).allowed
    for _ in range(10):  # never below now: refunds do not bank events
        await a.limiter.refund("k", 3, 3600)
    assert [(await b.limiter.hit("k", 3, 3600)).allowed for _ in range(4)] == [1, 1, 1, 0]
    await a.limiter.refund("never-seen", 3, 3600)
    assert await a.limiter.blocked("never-seen", 3, 3600) is None


def test_a_nonce_batch_reply_of_another_shape_decides_nothing() -> None:
    assert fresh_nonces(b"10", 2) == [True, False]
    for reply in (b"1", b"101", b"12", b"1 ", b"OK", [1, 0], "10", None, b""):
        with pytest.raises(BackendUnavailable):
            fresh_nonces(reply, 2)
