"""store.sql.nonce_batches: the nonces of concurrent requests recorded in one transaction decide
exactly as the same calls one at a time (SQLite and PostgreSQL), a failed batch records nothing
and fails every caller closed, and nonces racing over separate engines still win once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, MetaData, Table, event
from sqlalchemy.dialects import postgresql, sqlite

from restguard.errors import BackendUnavailable
from restguard.store.sql import SqlStore, migrate, open_store
from restguard.store.sql.nonce_batches import CLOCK_SKEW_MARGIN
from tests.fixtures_db import module_backend

T0 = datetime(2030, 1, 1, tzinfo=UTC)
KEYS = [("app_a", "n1"), ("app_a", "n2"), ("app_b", "n1"), ("app_b", "n3")]

# A run: batches in time order, each (seconds after T0, [(key index, lifetime in s), ...]):
# every use of a batch is submitted together, so they travel as one transaction.
BATCH = st.tuples(
    st.integers(min_value=0, max_value=200),
    st.lists(st.tuples(st.integers(0, len(KEYS) - 1), st.integers(1, 90)), min_size=1, max_size=12),
)


def one_at_a_time(batches: list[tuple[int, list[tuple[int, int]]]]) -> list[bool]:
    """What the calls decide one at a time, in order (the replay cache's specification)."""
    expires: dict[tuple[str, str], datetime] = {}
    out = []
    for at_s, uses in batches:
        now = T0 + timedelta(seconds=at_s)
        for index, ttl in uses:
            key = KEYS[index]
            if key in expires and expires[key] + CLOCK_SKEW_MARGIN > now:
                out.append(False)
            else:
                expires[key] = now + timedelta(seconds=ttl)
                out.append(True)
    return out


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return module_backend(request, tmp_path_factory, "rg_nonce_batches")


@pytest.fixture(scope="module")
def shared(backend: str) -> Iterator[SqlStore]:
    migrate(backend)
    store = open_store(backend)
    try:
        yield store
    finally:
        store.close()


def _empty(store: SqlStore) -> None:
    from restguard.store.sql.tables import signature_nonces

    with store.engine.begin() as conn:
        conn.execute(signature_nonces.delete())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(BATCH, min_size=1, max_size=6).map(lambda b: sorted(b, key=lambda x: x[0])))
def test_batches_decide_as_the_calls_one_at_a_time(
    shared: SqlStore, batches: list[tuple[int, list[tuple[int, int]]]]
) -> None:
    _empty(shared)
    nonces = shared.signature_nonces

    async def run() -> list[bool]:
        out: list[bool] = []
        for at_s, uses in batches:
            now = T0 + timedelta(seconds=at_s)
            out += await asyncio.gather(
                *(nonces.use(*KEYS[i], now + timedelta(seconds=ttl), now) for i, ttl in uses)
            )
        return out

    assert asyncio.run(run()) == one_at_a_time(batches)


async def test_concurrent_uses_travel_together_and_one_of_each_nonce_wins(store: SqlStore) -> None:
    nonces = store.signature_nonces
    until = T0 + timedelta(minutes=5)
    calls = [nonces.use("app_a", f"n{i % 40}", until, T0) for i in range(200)]
    results = await asyncio.gather(*calls)
    assert sum(results) == 40
    for i in range(40):  # the first of each nonce, in submission order
        assert results[i] is True and not any(results[i + 40 :: 40])


async def test_a_failed_batch_records_nothing_and_fails_every_caller(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    nonces = store.signature_nonces
    batches: Any = nonces._batches  # type: ignore[attr-defined]
    real = batches._record_rows
    # The batch's statement goes to a table that is not there: the database refuses it.
    table = batches._table
    missing = Table("no_such_nonces", MetaData(), *(Column(c.name, c.type) for c in table.c))
    insert = sqlite.insert if batches._engine.dialect.name == "sqlite" else postgresql.insert
    broken = insert(missing).on_conflict_do_nothing().returning(*missing.c)
    monkeypatch.setattr(batches, "_record_rows", broken)
    until = T0 + timedelta(minutes=5)
    results = await asyncio.gather(
        *(nonces.use("app_a", f"f{i}", until, T0) for i in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, BackendUnavailable) for r in results), results
    monkeypatch.setattr(batches, "_record_rows", real)
    # nothing was recorded: each nonce is fresh now, once
    assert (
        await asyncio.gather(*(nonces.use("app_a", f"f{i}", until, T0) for i in range(10)))
        == [True] * 10
    )
    assert not await nonces.use("app_a", "f0", until, T0)


def test_an_expired_nonce_raced_over_two_engines_is_reused_once(shared: SqlStore) -> None:
    """A record expired (by ``CLOCK_SKEW_MARGIN``) is overwritten by the first batch that
    uses its nonce again: copies raced from two engines (two instances) win exactly once, and
    the overwritten record stands against every later copy."""
    _empty(shared)
    other = open_store(str(shared.engine.url.render_as_string(hide_password=False)))
    until = T0 + timedelta(seconds=30)
    later = until + CLOCK_SKEW_MARGIN + timedelta(seconds=1)

    async def race() -> list[bool]:
        assert await shared.signature_nonces.use("app_a", "again", until, T0)
        copies = [
            store.signature_nonces.use("app_a", "again", later + timedelta(minutes=5), later)
            for _ in range(8)
            for store in (shared, other)
        ]
        return list(await asyncio.gather(*copies))

    try:
        assert sum(asyncio.run(race())) == 1
        assert not asyncio.run(
            other.signature_nonces.use("app_a", "again", later + timedelta(minutes=5), later)
        )
    finally:
        other.close()


async def test_oauth1_nonces_batch_too(store: SqlStore) -> None:
    nonces = store.oauth1_nonces
    until = T0 + timedelta(minutes=5)
    results = await asyncio.gather(
        *(nonces.use("ck", "tok", 1_900_000_000, f"n{i % 5}", until, T0) for i in range(25))
    )
    assert results == [True] * 5 + [False] * 20
    assert await nonces.use("ck", "tok", 1_900_000_001, "n0", until, T0)  # another timestamp
    assert await nonces.use("ck", "", 1_900_000_000, "n0", until, T0)  # two-legged, no token


async def test_a_locked_database_stalls_no_caller_past_its_deadline(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock: the batch in flight and the calls queued
    behind it each fail with 503 by their own deadline, nothing is recorded, and once the lock
    is gone the same nonces are fresh."""
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    migrate(url)
    store = open_store(url, timeout=0.5)
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held
        nonces = store.signature_nonces
        until = T0 + timedelta(minutes=5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = [asyncio.ensure_future(nonces.use("app_a", f"l{i}", until, T0)) for i in range(5)]
        await asyncio.sleep(0.1)  # (a batch is out; these queue behind it)
        queued = [nonces.use("app_a", f"q{i}", until, T0) for i in range(5)]
        results = await asyncio.gather(*first, *queued, return_exceptions=True)
        assert all(isinstance(r, BackendUnavailable) for r in results), results
        assert loop.time() - started < 5.0  # (each within its 0.5 s deadline, plus slack)
        holder.execute("ROLLBACK")
        names = [f"l{i}" for i in range(5)] + [f"q{i}" for i in range(5)]
        # A timed-out batch may still finish in its thread once the lock is gone (documented:
        # fail closed at an availability cost); once the store settled, the store answers
        # again and each nonce is recorded: used once more, every one is a replay.
        await asyncio.sleep(1.0)
        await asyncio.gather(*(nonces.use("app_a", n, until, T0) for n in names))
        replay = await asyncio.gather(*(nonces.use("app_a", n, until, T0) for n in names))
        assert replay == [False] * 10
    finally:
        holder.close()
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("outcome", ["ROLLBACK", "COMMIT"])
async def test_a_nonce_row_held_by_another_transaction_stalls_no_batch_past_its_deadline(
    postgres_url: str, outcome: str
) -> None:
    """On PostgreSQL a batch's insert waits for a conflicting row another transaction holds
    (an instance that recorded the same nonce and has not committed): the batch fails with
    503 by its deadline. Once the row is free the timed-out statement may still finish (as
    after SQLite's lock, above): what it recorded is then a replay though its caller got 503
    (fail closed, at an availability cost). Either way no nonce is ever fresh twice, and one
    the other transaction committed is never fresh again."""
    migrate(postgres_url)
    store = open_store(postgres_url, timeout=0.5)
    holder = psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True)
    try:
        until = T0 + timedelta(minutes=5)
        holder.execute("BEGIN")
        holder.execute(
            "INSERT INTO signature_nonces (key_id, nonce, expires_at) VALUES (%s, %s, %s)",
            ("app_a", "held", until),
        )
        nonces = store.signature_nonces
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            nonces.use("app_a", "held", until, T0),
            nonces.use("app_a", "other", until, T0),
            return_exceptions=True,
        )
        assert all(isinstance(r, BackendUnavailable) for r in results), results
        assert loop.time() - started < 5.0  # (its 0.5 s deadline, plus slack)
        holder.execute(outcome)
        await asyncio.sleep(1.0)  # (the store settles: the timed-out statement ends)
        for nonce in ("held", "other"):
            again = [await nonces.use("app_a", nonce, until, T0) for _ in range(3)]
            assert again[1:] == [False, False] and sum(again) <= 1, (nonce, again)
            if nonce == "held" and outcome == "COMMIT":
                assert again == [False] * 3  # the other instance's record stands
    finally:
        holder.close()
        store.close()


async def test_a_batch_reads_no_whole_table_on_sqlite(tmp_path: Path) -> None:
    """A batch is one INSERT (its conflicts found by the primary key), and the sweep's delete
    finds its rows through an index: a nonce table grows with traffic, and a full scan per
    batch made each nonce cost ~3x as much once it held some 50,000 rows (a subquery form
    written for PostgreSQL's row locks did that)."""
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    migrate(url)
    store = open_store(url)
    deletes: list[tuple[str, Any]] = []
    inserts: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append((statement, parameters))
        elif statement.lstrip().upper().startswith("INSERT"):
            inserts.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        until = T0 + timedelta(minutes=5)
        sig, oauth1 = store.signature_nonces, store.oauth1_nonces  # (each batch sweeps first)
        await asyncio.gather(*(sig.use("app", f"p{i}", until, T0) for i in range(8)))
        await asyncio.gather(
            *(oauth1.use("ck", "tok", 1_900_000_000, f"p{i}", until, T0) for i in range(8))
        )
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    try:
        assert len(deletes) == 2  # per table: the sweep (the batch overwrites an expired row)
        assert len(inserts) == 2 and all("ON CONFLICT" in i for i in inserts), inserts
        with store.engine.connect() as conn:
            for statement, parameters in deletes:
                plan = [
                    row[-1]
                    for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                ]
                assert not [
                    step for step in plan if step.startswith("SCAN") and "nonces" in step
                ], (
                    statement,
                    plan,
                )
    finally:
        store.close()
