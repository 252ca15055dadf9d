"""``Coalescer``: concurrent calls travel as one batch, each caller gets its own answer, and no
caller waits past its deadline or forever, whatever the batch in flight does."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard.errors import BackendUnavailable
from restguard.store.batch import Coalescer
from restguard.store.redis._link import Link


def link(timeout: float = 1.0) -> Link:
    return Link("redis://127.0.0.1:1/0", timeout=timeout, prefix="t:", max_connections=1)


class Recorder:
    """A ``send`` that answers each item with its double, recording the batches it got; it
    waits on ``gate`` (when set) before answering."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set()

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [item * 2 for item in items]


async def one_in_flight() -> tuple[Recorder, Coalescer[int, int], asyncio.Future[int]]:
    """A coalescer whose first batch (the call ``1``) is out and held until ``send.gate``."""
    send = Recorder()
    send.gate = asyncio.Event()
    batches: Coalescer[int, int] = Coalescer(link(), "t", send)
    first = asyncio.ensure_future(batches.submit(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return send, batches, first


async def test_calls_made_together_travel_as_one_batch_and_get_their_own_answers() -> None:
    send = Recorder()
    batches: Coalescer[int, int] = Coalescer(link(), "t", send)
    assert await asyncio.gather(*(batches.submit(i) for i in range(50))) == [
        i * 2 for i in range(50)
    ]
    assert send.batches == [list(range(50))]


async def test_calls_made_while_a_batch_is_out_form_the_next_one() -> None:
    send, batches, first = await one_in_flight()
    later = [asyncio.ensure_future(batches.submit(i)) for i in range(2, 6)]
    await asyncio.sleep(0)
    assert send.batches == [[1]]  # one batch in flight; the others wait for it
    send.release()
    assert await asyncio.gather(first, *later) == [2, 4, 6, 8, 10]
    assert send.batches == [[1], [2, 3, 4, 5]]


@settings(max_examples=30, deadline=None)
@given(count=st.integers(1, 600), size=st.integers(1, 64))
def test_batches_never_exceed_their_size_and_keep_the_order(count: int, size: int) -> None:
    async def run() -> None:
        send = Recorder()
        batches: Coalescer[int, int] = Coalescer(link(), "t", send, max_batch=size)
        assert await asyncio.gather(*(batches.submit(i) for i in range(count))) == [
            i * 2 for i in range(count)
        ]
        assert all(len(batch) <= size for batch in send.batches)
        assert [item for batch in send.batches for item in batch] == list(range(count))

    asyncio.run(run())


async def test_a_failed_batch_fails_each_of_its_callers_with_its_own_error() -> None:
    send = Recorder()
    send.fail = ConnectionError("reset")
    batches: Coalescer[int, int] = Coalescer(link(), "t", send)
    results = await asyncio.gather(*(batches.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, BackendUnavailable) for r in results)
    assert len({id(r) for r in results}) == 3
    send.fail = None
    assert await batches.submit(7) == 14  # and the next call goes out again


async def test_a_cancelled_caller_is_left_out_of_the_next_batch() -> None:
    send, batches, first = await one_in_flight()
    gone = asyncio.ensure_future(batches.submit(2))
    kept = asyncio.ensure_future(batches.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    send.release()
    assert await first == 2
    assert await kept == 6
    assert send.batches == [[1], [3]]  # 2 was never sent: nothing counted for it


async def test_no_caller_waits_past_its_deadline_behind_a_hung_batch() -> None:
    send = Recorder()
    send.gate = asyncio.Event()  # never set: Redis never answers
    batches: Coalescer[int, int] = Coalescer(link(timeout=0.5), "t", send)
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = asyncio.ensure_future(batches.submit(1))
    await asyncio.sleep(0.25)
    queued = asyncio.ensure_future(batches.submit(2))
    with pytest.raises(BackendUnavailable):
        await first
    assert loop.time() - started < 0.65
    with pytest.raises(BackendUnavailable):
        await queued  # by its own deadline (0.25 + 0.5), not a full timeout after the first's
    assert loop.time() - started < 0.9


async def test_a_sender_cancelled_at_shutdown_fails_every_waiting_caller() -> None:
    send, batches, first = await one_in_flight()
    queued = asyncio.ensure_future(batches.submit(2))
    await asyncio.sleep(0)
    sender = batches._sender
    assert sender is not None
    sender.cancel()
    for waiter in (first, queued):
        with pytest.raises(BackendUnavailable):
            await waiter
    send.release()
    assert await batches.submit(3) == 6  # a new sender starts for the next call


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(st.characters(blacklist_categories=["Cs"])), st.integers()),
        min_size=1,
        max_size=40,
    )
)
def test_the_lane_packs_a_command_exactly_as_redis_py_does(parts: list[str | int]) -> None:
    """The lane packs its script calls with hiredis (C); the bytes must be redis-py's own
    (any text, keys and numbers as the rate limiter and the nonce cache send them)."""
    import hiredis
    from redis.asyncio.connection import Connection

    command = ("EVALSHA", "0" * 40, *parts)
    assert hiredis.pack_command(command) == b"".join(Connection().pack_command(*command))


def test_the_replay_key_digest_is_length_prefixed_and_stable() -> None:
    """Instances of two versions share one Redis during a rolling upgrade: a nonce's key must
    be the same bytes in both, and parts may not slide into each other."""
    import hashlib

    from restguard.store.redis._link import digest

    assert digest("app", "nonce") == hashlib.sha256(b"3:app5:nonce").hexdigest()
    assert digest("ab", "c") != digest("a", "bc")
    assert digest("k\ud800", "é") == hashlib.sha256(b"4:k\xed\xa0\x802:\xc3\xa9").hexdigest()
