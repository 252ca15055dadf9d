"""The JWKS cache policy (sans-IO, a fake clock) and its asyncio adapter with a fake fetcher."""

from __future__ import annotations

import asyncio

import pytest

from restguard.clock import FixedClock
from restguard.errors import BackendUnavailable
from restguard.keys.jwks import (
    JWKSCache,
    JWKSPolicy,
    JWKSSettings,
    Outcome,
    ttl_from_cache_control,
)
from restguard.keys.jwks_fetch import FetchedJWKS, JWKSFetchError
from restguard.keys.jwt_verify import KeySet
from tests.unit.keys.jwt_helpers import EC, ED

S = JWKSSettings()
OLD = KeySet([ED.verification_key()])
BOTH = KeySet([ED.verification_key(), EC.verification_key()])


def fetched_policy(keys: KeySet = OLD, cache_control: str | None = "max-age=600") -> JWKSPolicy:
    p = JWKSPolicy()
    assert p.lookup("ed-1", 0.0).outcome is Outcome.FETCH
    assert p.begin_fetch(0.0)
    p.fetch_succeeded(keys, cache_control, 0.0)
    return p


@pytest.mark.parametrize(
    ("header", "ttl"),
    [
        (None, 300),
        ("max-age=600", 600),
        ("public, max-age=3600", 3600),
        ('max-age="120"', 120),
        ("max-age=5", 60),
        ("max-age=0", 60),
        ("max-age=999999999", 86400),
        ("no-store", 60),
        ("max-age=600, no-cache", 60),
        ("max-age=-1", 300),
        ("max-age=abc", 300),
        ("private", 300),
    ],
)
def test_max_age_is_clamped(header: str | None, ttl: float) -> None:
    assert ttl_from_cache_control(header, S) == ttl


def test_cold_cache_fetches_then_uses() -> None:
    p = JWKSPolicy()
    assert p.lookup("ed-1", 0.0).outcome is Outcome.FETCH
    assert p.begin_fetch(0.0)
    assert p.fetch_succeeded(OLD, None, 0.5) == 300
    got = p.after_fetch("ed-1", 0.5)
    assert got.outcome is Outcome.USE and got.key is not None and got.key.kid == "ed-1"


def test_fresh_keys_need_no_fetch_and_refresh_is_due_before_expiry() -> None:
    p = fetched_policy()  # 600 s, refresh 30 s ahead
    assert p.lookup("ed-1", 100).outcome is Outcome.USE
    assert not p.lookup("ed-1", 569).refresh
    assert p.next_refresh_at() == 570
    hit = p.lookup("ed-1", 570)
    assert hit.outcome is Outcome.USE and hit.refresh
    assert p.begin_fetch(570)
    assert not p.lookup("ed-1", 571).refresh  # one in flight


def test_short_ttl_refreshes_a_quarter_ahead() -> None:
    p = fetched_policy(cache_control="max-age=60")
    assert p.next_refresh_at() == 45


def test_cache_expiry_keeps_stale_keys_then_fails_closed() -> None:
    p = fetched_policy()
    assert p.begin_fetch(570)
    p.fetch_failed("status 500", 571)
    # expired but within max-stale: still used, a refresh is asked for after the retry interval
    late = p.lookup("ed-1", 600 + 3600)
    assert late.outcome is Outcome.USE and late.refresh
    assert p.lookup("ed-1", 600 + 86399).outcome is Outcome.USE
    # past max-stale: a lookup may try one fetch, then fails closed
    dead = 600 + 86400
    assert p.lookup("ed-1", dead).outcome is Outcome.FETCH
    assert p.begin_fetch(dead)
    p.fetch_failed("connection refused", dead + 1)
    out = p.after_fetch("ed-1", dead + 1)
    assert out.outcome is Outcome.UNAVAILABLE and "connection refused" in out.reason
    # within the cooldown no new fetch: 503 at once, no waiting
    assert p.lookup("ed-1", dead + 1.5).outcome is Outcome.UNAVAILABLE
    assert p.lookup("ed-1", dead + 2).outcome is Outcome.FETCH


def test_failed_background_refresh_retries_after_the_retry_interval() -> None:
    p = fetched_policy()
    p.begin_fetch(570)
    p.fetch_failed("timeout", 572)
    assert not p.lookup("ed-1", 579).refresh
    assert p.lookup("ed-1", 580).refresh


def test_unknown_kid_refetches_at_most_once_per_cooldown() -> None:
    p = fetched_policy()
    t = 100.0
    assert p.lookup("new", t).outcome is Outcome.FETCH
    assert p.begin_fetch(t)
    # while in flight, other unknown kids join the same fetch
    assert p.lookup("random-1", t + 0.1).outcome is Outcome.FETCH
    assert not p.begin_fetch(t + 0.1)
    p.fetch_succeeded(OLD, "max-age=600", t + 0.2)
    assert p.after_fetch("new", t + 0.2).outcome is Outcome.UNKNOWN
    # cooldown: unknown kids answered at once, no fetch
    for dt in (0.3, 1.0, 1.99):
        assert p.lookup(f"random-{dt}", t + dt).outcome is Outcome.UNKNOWN
    assert p.lookup("ed-1", t + 1).outcome is Outcome.USE
    # after the cooldown, one more fetch picks up the rotated key
    assert p.lookup("new", t + 2).outcome is Outcome.FETCH
    p.begin_fetch(t + 2)
    p.fetch_succeeded(BOTH, "max-age=600", t + 2.1)
    got = p.after_fetch("ec-1", t + 2.1)
    assert got.outcome is Outcome.USE and got.key is not None and got.key.kid == "ec-1"


def test_a_flood_of_unknown_kids_costs_one_fetch_per_cooldown() -> None:
    p = fetched_policy()
    fetches = 0
    for i in range(1000):  # 1,000 random kids over 10 s
        now = 100 + i * 0.01
        if p.lookup(f"kid-{i}", now).outcome is Outcome.FETCH and p.begin_fetch(now):
            fetches += 1
            p.fetch_succeeded(OLD, "max-age=600", now)
    assert fetches == 5


def test_settings_are_bounded() -> None:
    with pytest.raises(ValueError):
        JWKSSettings(refetch_cooldown=10)
    with pytest.raises(ValueError):
        JWKSSettings(min_ttl=600, default_ttl=300)


# -- the adapter, with a fake fetcher


class FakeFetcher:
    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.calls = 0
        self.keys = OLD
        self.error: str | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> FetchedJWKS:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error:
            raise JWKSFetchError(self.error)
        return FetchedJWKS(self.keys, "max-age=600")


def cache(clock: FixedClock, fetcher: FakeFetcher) -> JWKSCache:
    return JWKSCache("https://issuer.example/jwks", clock=clock, fetcher=fetcher)


async def test_single_flight_concurrent_cold_lookups_share_one_fetch() -> None:
    clock = FixedClock()
    f = FakeFetcher(clock)
    f.gate = asyncio.Event()
    c = cache(clock, f)
    lookups = [asyncio.create_task(c.key("ed-1")) for _ in range(50)]
    await asyncio.sleep(0.01)
    assert f.calls == 1
    f.gate.set()
    keys = await asyncio.gather(*lookups)
    assert f.calls == 1 and all(k is not None and k.kid == "ed-1" for k in keys)


async def test_cancelled_request_does_not_cancel_the_shared_fetch() -> None:
    clock = FixedClock()
    f = FakeFetcher(clock)
    f.gate = asyncio.Event()
    c = cache(clock, f)
    first = asyncio.create_task(c.key("ed-1"))
    second = asyncio.create_task(c.key("ed-1"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    f.gate.set()
    assert (await second) is not None and f.calls == 1


async def test_unknown_kid_during_cooldown_does_not_wait() -> None:
    clock = FixedClock()
    f = FakeFetcher(clock)
    c = cache(clock, f)
    assert await c.key("ed-1") is not None
    clock.advance(1)
    f.gate = asyncio.Event()  # a fetch now would hang: the lookup must not start one
    assert await asyncio.wait_for(c.key("nope"), 0.5) is None
    assert f.calls == 1


async def test_background_refresh_is_not_waited_on() -> None:
    clock = FixedClock()
    f = FakeFetcher(clock)
    c = cache(clock, f)
    await c.key("ed-1")
    clock.advance(575)
    f.gate = asyncio.Event()
    assert await asyncio.wait_for(c.key("ed-1"), 0.5) is not None  # served from cache
    await asyncio.sleep(0)
    assert f.calls == 2  # the refresh runs in the background
    f.keys = BOTH
    f.gate.set()
    await asyncio.sleep(0.01)
    assert c.keyset() is BOTH
    await c.aclose()


async def test_endpoint_down_past_max_stale_raises_backend_unavailable() -> None:
    clock = FixedClock()
    f = FakeFetcher(clock)
    c = cache(clock, f)
    await c.key("ed-1")
    f.error = "status 500"
    clock.advance(600 + 3600)
    assert await c.key("ed-1") is not None  # stale, refresh fails in the background
    await asyncio.sleep(0.01)
    clock.advance(86400)
    with pytest.raises(BackendUnavailable) as err:
        await c.key("ed-1")
    assert err.value.status == 503 and "status 500" in err.value.debug


async def test_refresher_task_refreshes_without_traffic() -> None:
    clock = FixedClock()
    f = FakeFetcher(clock)
    c = cache(clock, f)
    c.start()
    await asyncio.sleep(0.01)
    assert f.calls == 1 and c.keyset() is OLD
    await c.aclose()
    assert not c.policy.fetching


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ValueError, match="https"):
        JWKSCache("http://issuer.example/jwks", clock=FixedClock())
