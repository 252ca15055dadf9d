"""The rate limiter on SQLite and the real PostgreSQL (``store.sql.rate_limit_repository``):
its verdicts are ``gcra``'s to the last field, and a limit is exact however many coroutines,
connections and processes share the counter; expired counters are swept; long keys are
hashed; an unreachable database is ``BackendUnavailable``, never an allowed verdict."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, inspect, select
from sqlalchemy.exc import OperationalError

from restguard.authz.ratelimit import RateLimiter, Verdict, gcra
from restguard.errors import BackendUnavailable
from restguard.store.sql import SqlStore, make_engine, migrate, open_store
from restguard.store.sql import rate_limit_repository as module
from restguard.store.sql.migrate import MIGRATIONS
from restguard.store.sql.rate_limit_repository import SqlRateLimiter, stored_key
from restguard.store.sql.tables import rate_limits
from tests.fixtures_db import nth_statement_fails

T0 = 1_800_000_000.123456  # wall-clock epoch seconds (2027): realistic float magnitudes


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(store: SqlStore, clock: FakeClock) -> SqlRateLimiter:
    return SqlRateLimiter(store.engine, store._run, clock)


def rows(store: SqlStore) -> dict[str, float]:
    with store.engine.connect() as conn:
        return {key: tat for key, tat in conn.execute(select(rate_limits.c.key, rate_limits.c.tat))}


def test_the_store_has_a_rate_limiter(store: SqlStore) -> None:
    assert isinstance(store.rate_limits, SqlRateLimiter)
    limiter: RateLimiter = store.rate_limits  # it satisfies the port
    limiter.close()  # a no-op: the store owns the engine


# --- the arithmetic: gcra's, exactly --------------------------------------------------------------


async def test_counts_down_refuses_then_recovers(store: SqlStore) -> None:
    clock = FakeClock()
    lim = limiter(store, clock)
    got = [await lim.hit("k", 3, 60.0) for _ in range(4)]
    assert got == [
        Verdict(True, 2, 20, None),
        Verdict(True, 1, 40, None),
        Verdict(True, 0, 60, None),
        Verdict(False, 0, 60, 20),
    ]
    assert await lim.blocked("k", 3, 60.0) == 20
    assert await lim.blocked("other", 3, 60.0) is None
    tat = rows(store)["k"]
    assert tat == T0 + 20.0 + 20.0 + 20.0  # the refused event counted nothing
    clock.now += 20.0
    assert await lim.blocked("k", 3, 60.0) is None
    assert await lim.hit("k", 3, 60.0) == Verdict(True, 0, 60, None)


async def test_the_update_reads_the_old_row_in_every_set_expression(store: SqlStore) -> None:
    """``prev`` is the TAT before the event and ``ok`` is judged on it, not on the new TAT."""
    clock = FakeClock()
    lim = limiter(store, clock)
    await lim.hit("k", 2, 10.0)
    await lim.hit("k", 2, 10.0)  # judged on T0 + 5: allowed, TAT T0 + 10
    with store.engine.connect() as conn:
        row = conn.execute(select(rate_limits).where(rate_limits.c.key == "k")).one()
    assert (row.tat, row.seen, row.prev, row.ok) == (T0 + 5.0 + 5.0, T0, T0 + 5.0, True)
    clock.now += 1.0
    assert not (await lim.hit("k", 2, 10.0)).allowed
    with store.engine.connect() as conn:
        row = conn.execute(select(rate_limits).where(rate_limits.c.key == "k")).one()
    assert (row.tat, row.seen, row.prev, row.ok) == (T0 + 10.0, T0 + 1.0, T0 + 10.0, False)


async def test_a_key_is_judged_at_the_latest_time_it_has_seen(store: SqlStore) -> None:
    """Racing events read the clock in one order and reach the row in another: one that read
    it earlier than the event before it is judged at that event's time, so a burst of L still
    admits L (judged at its own time, the last of the burst would be refused)."""
    clock = FakeClock()
    lim = limiter(store, clock)
    late, early = T0 + 0.25, T0
    clock.now = late
    assert await lim.hit("k", 2, 10.0) == gcra(None, late, 2, 10.0)[1]
    clock.now = early  # read before the first event's clock, arriving after it
    assert gcra(late + 5.0, early, 2, 10.0)[1].allowed is False
    assert await lim.hit("k", 2, 10.0) == gcra(late + 5.0, late, 2, 10.0)[1]
    assert (await lim.hit("k", 2, 10.0)).allowed is False
    assert await lim.blocked("k", 2, 10.0) == gcra(late + 10.0, late, 2, 10.0)[1].retry_after


WINDOWS = [1.0, 0.5, 7.3, 60.0, 3600.0]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, float, list[tuple[float, bool]]]:
    limit = draw(st.integers(1, 12))
    window = draw(st.sampled_from(WINDOWS))
    interval = window / limit
    gap = st.one_of(
        st.sampled_from([0.0, 0.0, 0.0, 1e-7, 1e-6, 2e-6]),
        st.integers(0, 3 * limit).map(lambda k: k * interval),  # onto the boundaries
        st.integers(1, 3 * limit).map(lambda k: k * interval - 1e-6),  # (a clock never going back)
        st.floats(0.0, 2 * window, allow_nan=False),
    )
    steps = draw(st.lists(st.tuples(gap, st.booleans()), min_size=1, max_size=30))
    return limit, window, steps


@pytest.fixture
def sweep_every_hit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "SWEEP_INTERVAL", 0.0)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scenario=scenarios(), start=st.floats(0.0, 1.0, allow_nan=False))
def test_verdicts_equal_gcra_over_random_sequences(
    store: SqlStore, sweep_every_hit: None, scenario: Any, start: float
) -> None:
    """Hits and checks at random times (sweeping at every hit): each verdict and each
    ``blocked`` equals what ``gcra`` says on a TAT kept beside it, field by field."""
    limit, window, steps = scenario
    clock = FakeClock(T0 + start)
    lim = limiter(store, clock)
    key = f"k{time.monotonic_ns()}"  # one key per example: examples share the database
    tat: float | None = None

    async def run() -> None:
        nonlocal tat
        for gap, is_hit in steps:
            clock.now += gap
            if is_hit:
                new, expected = gcra(tat, clock.now, limit, window)
                assert await lim.hit(key, limit, window) == expected, (tat, clock.now)
                tat = new
            else:
                expected_retry = gcra(tat, clock.now, limit, window)[1].retry_after
                assert await lim.blocked(key, limit, window) == expected_retry

    asyncio.run(run())


# --- exactness under races ------------------------------------------------------------------------


async def test_racing_hits_admit_exactly_the_limit(database_url: str, store: SqlStore) -> None:
    """40 concurrent hits from asyncio, over two stores (separate engines and pools, as two
    workers) on one database, against a limit of 7: exactly 7 are admitted."""
    other = open_store(database_url)
    try:
        hits = [(store if i % 2 else other).rate_limits.hit("shared", 7, 3600.0) for i in range(40)]
        verdicts = await asyncio.gather(*hits)
    finally:
        other.close()
    assert sum(v.allowed for v in verdicts) == 7
    assert sorted(v.remaining for v in verdicts if v.allowed) == list(range(7))
    assert all(v.retry_after is not None and v.retry_after >= 1 for v in verdicts if not v.allowed)


WORKER = """
import asyncio, json, sys, time
from restguard.store.sql import open_store

async def main() -> None:
    store = open_store(sys.argv[1], timeout=20.0)
    try:
        await store.ping()  # connect before the start line
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
        verdicts = await asyncio.gather(
            *(store.rate_limits.hit("across", 30, 3600.0) for _ in range(25))
        )
    finally:
        store.close()
    print(json.dumps(sum(v.allowed for v in verdicts)))

asyncio.run(main())
"""


@pytest.mark.slow
def test_hits_from_four_processes_admit_exactly_the_limit(database_url: str) -> None:
    """4 processes x 25 racing hits on one key, limit 30 per hour: exactly 30 admitted."""
    migrate(database_url)
    start_at = str(time.time() + 2.0)  # every process imports and connects, then all start
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, database_url, start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    admitted = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        admitted.append(json.loads(out))
    assert sum(admitted) == 30, admitted


# --- batches --------------------------------------------------------------------------------------


class CountingTransactions:
    """Counts the write transactions (``BEGIN``s) an engine starts."""

    def __init__(self, store: SqlStore) -> None:
        self.engine, self.count = store.engine, 0

    def __enter__(self) -> CountingTransactions:
        event.listen(self.engine, "begin", self._begin)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "begin", self._begin)

    def _begin(self, _conn: Any) -> None:
        self.count += 1


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    hits=st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 4), st.sampled_from([1.0, 60.0])),
        min_size=1,
        max_size=40,
    )
)
def test_concurrent_hits_are_judged_as_the_same_hits_one_at_a_time(
    store: SqlStore, hits: list[tuple[int, int, float]]
) -> None:
    """The same hits (keys, limits, windows), at one instant: awaited one by one on one set of
    keys, and all at once (batched) on another, give the same verdicts in the same order.
    (A key's limit may change between hits, as when a route's limit is edited.)"""
    clock = FakeClock()
    lim = limiter(store, clock)
    tag = time.monotonic_ns()

    async def run() -> tuple[list[Verdict], list[Verdict], int]:
        one_by_one = [await lim.hit(f"a{tag}-{k}", n, w) for k, n, w in hits]
        with CountingTransactions(store) as begun:
            together = await asyncio.gather(*(lim.hit(f"b{tag}-{k}", n, w) for k, n, w in hits))
        return one_by_one, together, begun.count

    one_by_one, together, transactions = asyncio.run(run())
    assert together == one_by_one
    assert transactions <= 3  # (the first hit goes alone, the rest as one batch; a sweep)


async def test_a_failed_batch_counts_nothing_and_fails_every_hit(store: SqlStore) -> None:
    """The batch's third upsert fails: every hit of the batch gets 503, and no hit of it was
    counted (the transaction is rolled back): the limit is whole afterwards."""
    lim = limiter(store, FakeClock())
    await lim.hit("warm", 1, 60.0)  # (alone: the batch below is the next one)
    with nth_statement_fails(store.engine, "INSERT", 3):
        verdicts = await asyncio.gather(
            *(lim.hit(f"k{i % 3}", 2, 60.0) for i in range(9)), return_exceptions=True
        )
    assert all(isinstance(v, BackendUnavailable) for v in verdicts), verdicts
    assert set(rows(store)) == {"warm"}
    for key in ("k0", "k1", "k2"):
        assert [(await lim.hit(key, 2, 60.0)).allowed for _ in range(3)] == [True, True, False]


@pytest.mark.postgres
@pytest.mark.parametrize("odd", [False, True], ids=["plain-keys", "unicode-and-hashed-keys"])
async def test_batches_of_two_workers_never_deadlock(postgres_url: str, odd: bool) -> None:
    """Two workers (separate engines) each send one batch over the same 30 keys, in opposite
    orders, at the same time, many times: their transactions would wait for each other's row
    locks in a cycle if each took them in arrival order (PostgreSQL then aborts one: 503 for
    all of its hits). In key order, every hit is answered, and exactly the limits are kept.
    (``odd``: keys in several scripts and cases, and long ones stored as digests.)"""
    migrate(postgres_url)
    a, b = open_store(postgres_url, timeout=10.0), open_store(postgres_url, timeout=10.0)
    tag = time.monotonic_ns()
    keys = [f"dl-{tag}-{i:02d}" for i in range(30)]
    if odd:
        keys = [f"{c}-{tag}-{i}" for i, c in enumerate("aZé\U0001f600ßAz" * 2)]
        keys += ["x" * 250 + f"{tag}-{i}" for i in range(16)]
    try:
        for _ in range(3):  # a first request opens each worker's connection
            await asyncio.gather(
                a.rate_limits.hit("warm", 10**6, 60.0), b.rate_limits.hit("warm", 10**6, 60.0)
            )
        admitted = 0
        for _ in range(5):
            verdicts = await asyncio.gather(
                *(a.rate_limits.hit(k, 8, 3600.0) for k in keys),
                *(b.rate_limits.hit(k, 8, 3600.0) for k in reversed(keys)),
            )
            admitted += sum(v.allowed for v in verdicts)
    finally:
        a.close()
        b.close()
    assert admitted == 8 * len(keys)  # 10 hits per key against a limit of 8


# --- sweeping -------------------------------------------------------------------------------------


async def test_sweep_removes_expired_rows_only(store: SqlStore, sweep_every_hit: None) -> None:
    clock = FakeClock()
    lim = limiter(store, clock)
    await lim.hit("short", 1, 10.0)
    await lim.hit("long", 1, 1000.0)
    await lim.hit("limited", 1, 10.0)
    assert not (await lim.hit("limited", 1, 10.0)).allowed
    clock.now += 10.5
    await lim.hit("new", 1, 10.0)
    assert set(rows(store)) == {"long", "new"}
    assert await lim.hit("short", 1, 10.0) == Verdict(True, 0, 10, None)  # as a fresh key


async def test_sweeps_at_most_once_a_minute(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    mono = FakeClock(100.0)
    monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=mono, time=time.time))
    deletes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    clock = FakeClock()
    lim = limiter(store, clock)
    try:
        for step in range(6):  # 0, 20, .. 100 s: sweeps at 0 and 60 only
            mono.now = 100.0 + 20 * step
            clock.now = T0 + 20 * step
            await lim.hit(f"k{step}", 1, 1.0)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert len(deletes) == 2
    assert set(rows(store)) == {"k3", "k4", "k5"}  # the sweep at 60 s took k0 .. k2


async def test_a_failing_sweep_changes_no_answer(store: SqlStore, sweep_every_hit: None) -> None:
    def fail_deletes(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            raise OperationalError(statement, {}, Exception("the sweep fails"))

    event.listen(store.engine, "before_cursor_execute", fail_deletes)
    clock = FakeClock()
    lim = limiter(store, clock)
    try:
        assert (await lim.hit("k", 1, 60.0)).allowed
        assert not (await lim.hit("k", 1, 60.0)).allowed  # the first hit was committed
    finally:
        event.remove(store.engine, "before_cursor_execute", fail_deletes)


# --- keys -----------------------------------------------------------------------------------------


def digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def test_stored_keys() -> None:
    assert stored_key("a" * 200) == "a" * 200
    assert stored_key("a" * 201) == digest("a" * 201)
    assert stored_key("é" * 200) == "é" * 200  # characters, not bytes
    assert stored_key(digest("x")) == digest(digest("x"))  # a look-alike is hashed in turn
    assert stored_key("a\x00b") == digest("a\x00b")
    assert stored_key("a\ud800b") == digest("a\ud800b")
    assert stored_key("\ud83d\ude00") != stored_key("\U0001f600")


async def test_long_and_unusual_keys_are_hashed_and_never_collide(store: SqlStore) -> None:
    lim = limiter(store, FakeClock())
    long_a, long_b = "a" * 201, "a" * 200 + "b"
    keys = [
        "a" * 200,
        long_a,
        long_b,
        "x" * 10_000,
        digest(long_a),  # spelled as the long key's row: still its own counter
        "a\x00b",
        "a\ud800b",
        "\ud83d\ude00",
        "\U0001f600",
    ]
    for key in keys:
        assert (await lim.hit(key, 1, 60.0)).allowed, key
    for key in keys:
        assert not (await lim.hit(key, 1, 60.0)).allowed, key
        assert await lim.blocked(key, 1, 60.0) == 60, key
    stored = rows(store)
    assert len(stored) == len(keys)
    assert "a" * 200 in stored and digest(long_a) in stored and digest(long_b) in stored
    assert all(len(key) <= 200 for key in stored)


# --- outages --------------------------------------------------------------------------------------


@pytest.fixture(
    params=[
        "sqlite-directory-removed",
        "sqlite-not-a-database",
        "sqlite-not-migrated",
        pytest.param("postgresql-port-1", marks=pytest.mark.postgres),
    ]
)
def down_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """A store whose backend cannot answer."""
    if request.param == "sqlite-directory-removed":
        directory = tmp_path / "data"
        directory.mkdir()
        url = f"sqlite:///{directory / 'restguard.db'}"
        migrate(url)
        shutil.rmtree(directory)
    elif request.param == "sqlite-not-a-database":
        path = tmp_path / "restguard.db"
        path.write_bytes(b"this is not a SQLite database, " * 64)
        url = f"sqlite:///{path}"
    elif request.param == "sqlite-not-migrated":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        url = "postgresql://postgres@127.0.0.1:1/test"
    sql_store = open_store(url)
    try:
        yield sql_store
    finally:
        sql_store.close()


async def test_an_unreachable_database_fails_closed(down_store: SqlStore) -> None:
    for name, call in {
        "hit": lambda: down_store.rate_limits.hit("k", 5, 60.0),
        "blocked": lambda: down_store.rate_limits.blocked("k", 5, 60.0),
    }.items():
        with pytest.raises(BackendUnavailable) as caught:
            await call()
        assert caught.value.status == 503, name
        assert f"rate_limits.{name}" in caught.value.debug, name
        assert caught.value.__cause__ is None, name


# --- the migration --------------------------------------------------------------------------------


def test_migration_0012_downgrades_and_upgrades(database_url: str) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        for target, present in (("0011", False), ("head", True)):
            with engine.connect() as conn:
                config = Config()
                config.set_main_option("script_location", str(MIGRATIONS))
                config.attributes["connection"] = conn
                if present:
                    command.upgrade(config, target)
                else:
                    command.downgrade(config, target)
                conn.commit()
            with engine.connect() as conn:
                assert ("rate_limits" in inspect(conn).get_table_names()) is present
    finally:
        engine.dispose()


# --- latency (printed, not asserted) --------------------------------------------------------------


async def test_per_hit_latency(store: SqlStore, capsys: pytest.CaptureFixture[str]) -> None:
    n = 300
    await store.rate_limits.hit("warm", 10**6, 60.0)
    started = time.perf_counter()
    for i in range(n):
        await store.rate_limits.hit(f"t{i % 20}", 10**6, 60.0)
    took = (time.perf_counter() - started) / n
    with capsys.disabled():
        print(f"\n{store.engine.dialect.name}: {took * 1e3:.3f} ms per hit (sequential, {n})")


async def test_a_refund_gives_one_event_back_never_before_now(store: SqlStore) -> None:
    clock = FakeClock()
    lim = limiter(store, clock)
    assert [(await lim.hit("k", 3, 60.0)).allowed for _ in range(4)] == [True] * 3 + [False]
    await lim.refund("k", 3, 60.0)
    assert (await lim.hit("k", 3, 60.0)).allowed
    assert not (await lim.hit("k", 3, 60.0)).allowed
    for _ in range(10):  # never below now: refunds do not bank events
        await lim.refund("k", 3, 60.0)
    assert rows(store)["k"] == T0
    assert [(await lim.hit("k", 3, 60.0)).allowed for _ in range(4)] == [True] * 3 + [False]
    await lim.refund("never-seen", 3, 60.0)  # nothing to give back: nothing written
    assert "never-seen" not in rows(store)
