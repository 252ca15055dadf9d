"""credentials.read_through: one read per key at a time (no stampede when an entry expires),
shared fairly: errors reach every waiter, a waiter that leaves takes nobody's read with it,
and a revocation announced during a read is never served to a request made after it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard.clock import FixedClock
from restguard.credentials.apikey import ApiKeyAuthenticator
from restguard.credentials.base import AuthContext
from restguard.credentials.read_through import ReadThrough
from restguard.errors import BackendUnavailable
from restguard.types import RequestView
from tests.unit.fakes import FakeApiKeyStore


class SlowStore:
    """A store whose reads wait until the test lets them answer (``release``)."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def load(self, key: str) -> int | None:
        self.reads += 1
        value = self.value  # what the store holds when the read runs
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return value

    def release(self) -> None:
        self.gate.set()
        self.gate = asyncio.Event()

    async def reading(self, count: int = 1) -> None:
        """Until ``count`` reads are waiting at the gate (a read runs in a task of its own)."""
        for _ in range(100):
            if self.reads >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"{self.reads} reads started, {count} expected")


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def test_concurrent_misses_of_one_key_cost_one_read() -> None:
    async def main() -> None:
        store = SlowStore()
        cache: ReadThrough[str, int, str] = ReadThrough(store.load, str)
        waiters = [asyncio.ensure_future(cache.get("k")) for _ in range(50)]
        await store.reading()
        store.release()
        assert await asyncio.gather(*waiters) == [(0, "0")] * 50
        assert store.reads == 1
        assert await cache.get("k") == (0, "0") and store.reads == 1  # and it is cached

    run(main)


def test_different_keys_are_read_side_by_side() -> None:
    async def main() -> None:
        store = SlowStore()
        cache: ReadThrough[str, int, str] = ReadThrough(store.load, str)
        waiters = [asyncio.ensure_future(cache.get(k)) for k in "abc"]
        await store.reading(3)  # none waits for another key's read
        store.release()
        await asyncio.gather(*waiters)

    run(main)


def test_a_failed_read_fails_every_waiter_and_nothing_is_cached() -> None:
    async def main() -> None:
        store = SlowStore()
        store.fail = BackendUnavailable("store down")
        cache: ReadThrough[str, int, str] = ReadThrough(store.load, str)
        waiters = [asyncio.ensure_future(cache.get("k")) for _ in range(5)]
        await store.reading()
        store.release()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, BackendUnavailable) for r in results)
        store.fail = None
        nxt = asyncio.ensure_future(cache.get("k"))
        await store.reading(2)
        store.release()
        assert await nxt == (0, "0") and store.reads == 2  # read again

    run(main)


def test_a_waiter_that_leaves_does_not_cancel_the_read_of_the_others() -> None:
    async def main() -> None:
        store = SlowStore()
        cache: ReadThrough[str, int, str] = ReadThrough(store.load, str)
        first = asyncio.ensure_future(cache.get("k"))  # this one started the read
        await store.reading()
        second = asyncio.ensure_future(cache.get("k"))
        await asyncio.sleep(0)
        first.cancel()  # its client went away
        await asyncio.sleep(0)
        store.release()
        assert await second == (0, "0")
        assert first.cancelled() and store.reads == 1

    run(main)


def test_a_read_all_waiters_left_still_completes_quietly() -> None:
    async def main() -> None:
        store = SlowStore()
        store.fail = BackendUnavailable("store down")
        cache: ReadThrough[str, int, str] = ReadThrough(store.load, str)
        waiter = asyncio.ensure_future(cache.get("k"))
        await store.reading()
        waiter.cancel()
        store.release()
        await asyncio.sleep(0.01)
        assert cache._reading == {}  # (finished and let go; its error was retrieved)

    run(main)


def test_the_oldest_entry_goes_when_the_cache_is_full() -> None:
    async def main() -> None:
        reads: list[str] = []

        async def load(key: str) -> str:
            reads.append(key)
            return key

        cache: ReadThrough[str, str, str] = ReadThrough(load, str, size=2)
        for key in "abca":
            await cache.get(key)
        assert reads == ["a", "b", "c", "a"]  # a was the oldest when c came
        await cache.get("c")
        assert reads == ["a", "b", "c", "a"]

    run(main)


# Each step: start a request (a get), change the record and announce it (drop_cached), let the
# reads in flight answer, or let the entry expire.
STEP = st.sampled_from(["get", "get", "get", "revoke", "answer", "expire"])


@settings(max_examples=200, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=40))
def test_no_request_made_after_an_announcement_sees_the_record_before_it(
    steps: list[str],
) -> None:
    """Whatever the interleaving: a get started after a change was announced returns that
    change or a later one; gets that overlap one read (no announcement between) share it."""

    async def main() -> None:
        store = SlowStore()
        now = [0.0]
        cache: ReadThrough[str, int, str] = ReadThrough(store.load, str, clock=lambda: now[0])
        started: list[tuple[asyncio.Future[tuple[int, str] | None], int]] = []
        for step in steps:
            if step == "get":
                started.append((asyncio.ensure_future(cache.get("k")), store.value))
            elif step == "revoke":
                store.value += 1
                cache.drop_cached()
            elif step == "answer":
                store.release()
            else:
                now[0] += 1.0
            await asyncio.sleep(0)
        while not all(f.done() for f, _ in started):
            store.release()
            await asyncio.sleep(0)
        gets = sum(1 for s in steps if s == "get")
        assert store.reads <= gets
        for future, floor in started:
            got = future.result()
            assert got is not None and got[0] >= floor

    run(main)


def test_api_keys_read_once_for_many_requests_in_flight() -> None:
    """The API-key method reads through the same cache: 40 requests that miss together cost
    the store one read (they cost 40 before)."""

    class Slow(FakeApiKeyStore):
        gate: asyncio.Event

        async def get(self, key_id: str) -> Any:
            await self.gate.wait()
            return await super().get(key_id)

    async def main() -> None:
        keys = Slow()
        keys.gate = asyncio.Event()
        clock = FixedClock()
        auth = ApiKeyAuthenticator(keys, clock)
        record, key = keys.add("a")
        view = RequestView("GET", "/x", headers=((b"x-api-key", key.encode()),))
        credential = auth.extract(view)
        assert credential is not None
        context = AuthContext(clock.now(), "127.0.0.1", view)
        waiters = [asyncio.ensure_future(auth.authenticate(credential, context)) for _ in range(40)]
        await asyncio.sleep(0)
        keys.gate.set()
        principals = await asyncio.gather(*waiters)
        assert {p.client_id for p in principals} == {record.id}
        assert keys.gets == 1

    run(main)


@pytest.mark.parametrize("ttl", [1.5, -0.1])
def test_a_ttl_past_a_second_is_refused(ttl: float) -> None:
    async def load(key: str) -> None:
        return None

    with pytest.raises(ValueError, match="1 s"):
        ReadThrough(load, str, ttl=ttl)
