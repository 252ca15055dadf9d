"""The device authorization grant's store on SQLite and the real PostgreSQL: approve, deny and
consume happen once under races between separate connections (as between the workers of
`serve --workers N` and between instances); a poll that comes too soon slows the code down."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from restguard.store.errors import DuplicateRecord
from restguard.store.ports import DeviceCodeRecord, UserRecord
from restguard.store.sql import SqlStore, migrate, open_store

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
RACERS = 8


@pytest.fixture
def stores(database_url: str) -> Iterator[list[SqlStore]]:
    """Separate stores (engines, pools, connections) on one database: separate processes."""
    migrate(database_url)
    opened = [open_store(database_url) for _ in range(RACERS)]
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


def device(name: str, user_code: str = "BCDFGHJK", **fields: object) -> DeviceCodeRecord:
    base = DeviceCodeRecord(
        device_code_hash=hashlib.sha256(name.encode()).digest(),
        user_code=user_code,
        client_id="rg_ci_tv",
        scopes=("notes:read", "notes:write"),
        created_at=T0,
        expires_at=T0 + timedelta(seconds=600),
        interval=5,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


async def test_round_trip_and_lookup_by_user_code(stores: list[SqlStore]) -> None:
    codes = stores[0].device_codes
    record = device("a")
    await codes.insert(record)
    assert await stores[1].device_codes.get(record.device_code_hash) == record
    assert await codes.by_user_code("BCDFGHJK", T0) == record
    assert await codes.by_user_code("BCDFGHJK", T0 + timedelta(seconds=600)) is None  # expired
    assert await codes.by_user_code("BCDFGHJL", T0) is None
    assert await codes.get(b"\x00" * 32) is None


async def test_a_user_code_is_unique_among_pending_codes_only(stores: list[SqlStore]) -> None:
    codes = stores[0].device_codes
    await codes.insert(device("a"))
    with pytest.raises(DuplicateRecord):
        await codes.insert(device("b"))
    # once decided, or expired, the user code may be drawn again
    assert await codes.deny("BCDFGHJK", T0)
    await codes.insert(device("b"))
    later = T0 + timedelta(seconds=601)
    await codes.insert(device("c", created_at=later, expires_at=later + timedelta(seconds=600)))
    found = await codes.by_user_code("BCDFGHJK", later)
    assert found is not None and found.device_code_hash == device("c").device_code_hash
    expired = await codes.get(device("b").device_code_hash)
    assert expired is not None and expired.status == "expired"  # kept: its poll hears so


async def test_exactly_one_approval_and_none_after_a_denial(stores: list[SqlStore]) -> None:
    await stores[0].device_codes.insert(device("a"))
    results = await asyncio.gather(
        *(
            s.device_codes.approve(
                "BCDFGHJK", user_id=f"u{i}", subject=f"user{i}", scopes=("notes:read",), at=T0
            )
            for i, s in enumerate(stores)
        ),
        *(s.device_codes.deny("BCDFGHJK", T0) for s in stores),
    )
    assert results.count(True) == 1
    record = await stores[0].device_codes.get(device("a").device_code_hash)
    assert record is not None and record.status in ("approved", "denied")
    if record.status == "approved":
        assert (
            record.granted_scopes == ("notes:read",)
            and record.subject == f"user{record.user_id[1:]}"
        )
    assert not await stores[0].device_codes.approve(
        "BCDFGHJK", user_id="u", subject="s", scopes=("notes:read",), at=T0
    )


async def test_no_decision_on_an_expired_code(stores: list[SqlStore]) -> None:
    codes = stores[0].device_codes
    await codes.insert(device("a"))
    end = T0 + timedelta(seconds=600)
    assert not await codes.approve("BCDFGHJK", user_id="u", subject="s", scopes=("a",), at=end)
    assert not await codes.deny("BCDFGHJK", end)


async def test_exactly_one_consumer(stores: list[SqlStore]) -> None:
    codes = stores[0].device_codes
    record = device("a")
    await codes.insert(record)
    await stores[0].users.insert(UserRecord("u", "alice", "x", ("notes:read",), T0))
    assert not await codes.consume(record.device_code_hash, T0)  # pending: nothing to consume
    await codes.approve("BCDFGHJK", user_id="u", subject="alice", scopes=("notes:read",), at=T0)
    won = await asyncio.gather(
        *(s.device_codes.consume(record.device_code_hash, T0) for s in stores)
    )
    assert won.count(True) == 1
    used = await codes.get(record.device_code_hash)
    assert used is not None and used.status == "used" and used.used_at == T0
    assert not await codes.consume(record.device_code_hash, T0)


async def test_no_consumer_once_the_approving_user_is_removed(stores: list[SqlStore]) -> None:
    codes, users = stores[0].device_codes, stores[0].users
    record = device("b")
    await codes.insert(record)
    await users.insert(UserRecord("u", "alice", "x", ("notes:read",), T0))
    await codes.approve("BCDFGHJK", user_id="u", subject="alice", scopes=("notes:read",), at=T0)
    await users.remove("u")
    assert not await codes.consume(record.device_code_hash, T0)
    kept = await codes.get(record.device_code_hash)
    assert kept is not None and kept.status == "approved"  # nothing written


async def test_a_poll_too_soon_is_slow_down_and_the_interval_grows(stores: list[SqlStore]) -> None:
    codes = stores[0].device_codes
    record = device("a")
    h = record.device_code_hash
    await codes.insert(record)
    assert not await codes.poll(h, T0, step=5)  # the first poll
    assert await codes.poll(h, T0 + timedelta(seconds=4), step=5)  # too soon
    after = await codes.get(h)
    assert after is not None and after.interval == 10
    assert after.last_polled_at == T0 + timedelta(seconds=4)
    assert await codes.poll(h, T0 + timedelta(seconds=13), step=5)  # 9 s < 10 s
    assert not await codes.poll(h, T0 + timedelta(seconds=28), step=5)  # 15 s later: fine
    final = await codes.get(h)
    assert final is not None and final.interval == 15
    assert not await codes.poll(b"\x00" * 32, T0, step=5)  # unknown: nothing to slow


async def test_of_racing_polls_at_most_one_is_in_time(stores: list[SqlStore]) -> None:
    record = device("a")
    await stores[0].device_codes.insert(record)
    fast = await asyncio.gather(
        *(s.device_codes.poll(record.device_code_hash, T0, step=5) for s in stores)
    )
    assert fast.count(False) == 1
    after = await stores[0].device_codes.get(record.device_code_hash)
    assert after is not None and after.interval == 5 + 5 * (RACERS - 1)
