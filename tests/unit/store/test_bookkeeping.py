"""store/bookkeeping.py: last-used times noted in memory, written later in coalesced batches,
dropped (and counted) when the store cannot take them, never waited for by a decision."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta

import pytest

from restguard.errors import BackendUnavailable
from restguard.store.bookkeeping import UsageBook
from restguard.store.errors import StoreError
from tests.unit.fakes import T0

TICK = 0.02  # the book's batching interval in these tests


class Writer:
    """A store's ``touch``: records every batch; can fail, or hang until released."""

    def __init__(self) -> None:
        self.batches: list[dict[str, datetime]] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.started = 0

    async def __call__(self, uses: Mapping[str, datetime]) -> None:
        self.started += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.batches.append(dict(uses))

    def written(self) -> dict[str, datetime]:
        merged: dict[str, datetime] = {}
        for batch in self.batches:
            merged.update(batch)
        return merged


async def settle(book: UsageBook, rounds: int = 5) -> None:
    """Let the book's background writes run (a few batching intervals)."""
    await asyncio.sleep(book.interval * rounds)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_record_returns_at_once_and_writes_later_in_one_batch() -> None:
    write = Writer()
    book = UsageBook(write, interval=TICK)
    for i in range(50):
        book.record(f"k{i}", at(i))  # a plain call: noted, nothing awaited
    assert write.started == 0 and len(book.pending) == 50
    await settle(book)
    assert len(write.batches) == 1
    assert write.batches[0] == {f"k{i}": at(i) for i in range(50)}
    assert book.written == 50 and book.dropped == 0 and book.pending == {}


async def test_uses_of_one_credential_coalesce_to_the_latest_time() -> None:
    write = Writer()
    book = UsageBook(write, interval=TICK)
    book.record("k", at(5))
    book.record("k", at(9))
    book.record("k", at(7))  # older than what is noted: never moves the time back
    await settle(book)
    assert write.batches == [{"k": at(9)}]
    assert book.written == 1


async def test_a_use_after_a_batch_is_written_in_the_next_batch() -> None:
    write = Writer()
    book = UsageBook(write, interval=TICK)
    book.record("a", at(1))
    await settle(book)
    book.record("b", at(2))
    book.record("a", at(3))
    await settle(book)
    assert write.batches == [{"a": at(1)}, {"b": at(2), "a": at(3)}]


@pytest.mark.parametrize(
    "failure",
    [BackendUnavailable(debug="store api_keys.touch took longer than 2s"), StoreError("no")],
    ids=["backend-unavailable", "store-error"],
)
async def test_a_failed_write_drops_its_batch_counts_it_and_later_writes_resume(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    write = Writer()
    write.fail = failure
    book = UsageBook(write, interval=TICK)
    for i in range(3):
        book.record(f"k{i}", at(i))
    await settle(book)
    assert book.dropped == 3 and book.written == 0
    assert book.pending == {}  # dropped, not kept to grow
    assert any("dropped 3 last-used" in r.getMessage() for r in caplog.records)
    write.fail = None
    book.record("k9", at(9))
    await settle(book)
    assert write.written() == {"k9": at(9)}
    assert book.dropped == 3 and book.written == 1


async def test_uses_noted_while_a_write_is_under_way_are_written_without_another_use() -> None:
    """A slow store write (a locked SQLite waits up to the store's deadline) must not strand
    the uses noted meanwhile: they are written once that write is over, even if no further
    use comes."""
    write = Writer()
    write.gate = asyncio.Event()
    book = UsageBook(write, interval=TICK)
    book.record("a", at(1))
    await settle(book)
    assert write.started == 1  # the first batch is being written (and hangs)
    book.record("b", at(2))  # noted during that write
    write.gate.set()
    await settle(book, rounds=10)
    assert write.written() == {"a": at(1), "b": at(2)}, f"pending: {book.pending}"


async def test_max_pending_caps_memory_new_ids_beyond_it_are_dropped() -> None:
    write = Writer()
    book = UsageBook(write, interval=TICK, max_pending=3)
    for i in range(5):
        book.record(f"k{i}", at(i))
    assert len(book.pending) == 3 and book.dropped == 2
    book.record("k0", at(10))  # a noted id is still updated when the book is full
    await settle(book)
    assert write.written() == {"k0": at(10), "k1": at(1), "k2": at(2)}
    assert book.dropped == 2 and book.written == 3


async def test_flush_writes_at_once_and_close_drops_what_is_left() -> None:
    write = Writer()
    book = UsageBook(write, interval=3600)
    book.record("a", at(1))
    await book.flush()
    assert write.batches == [{"a": at(1)}]
    await book.flush()  # nothing pending: no empty write
    assert write.started == 1
    book.record("b", at(2))
    book.close()
    assert book.dropped == 1 and book.pending == {}
    await asyncio.sleep(0)
    assert write.started == 1  # the scheduled write was cancelled


async def test_close_after_the_loop_is_gone_does_not_raise() -> None:
    write = Writer()
    book = UsageBook(write, interval=3600)

    def note() -> None:
        async def inner() -> None:
            book.record("a", at(1))

        loop = asyncio.new_event_loop()
        loop.run_until_complete(inner())
        loop.close()

    await asyncio.to_thread(note)
    book.close()
    assert book.dropped == 1
