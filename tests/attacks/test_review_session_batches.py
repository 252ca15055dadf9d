"""Review attacks on three changes: ``bearer_token``'s memo of the last header tuple, the SQL
rate limiter's hits batched by a ``Coalescer`` (one transaction, upserts in key order) and the
nonce batches' precompiled ``INSERT ... ON CONFLICT ... RETURNING`` (insertmanyvalues; ``DO
NOTHING`` then, ``DO UPDATE ... WHERE`` expired since).

Every test is an attack that now holds. Two were findings, fixed since (each failed before its
fix): a rate-limit sweep that locked rows in scan order could deadlock another worker's batch,
and two workers' nonce batches with the same nonces in opposite orders deadlocked (PostgreSQL
aborted one: 503 for every request in it). Sweeps now skip locked rows, in key order, and nonce
batches insert in key order.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, insert, select

from restguard.credentials import bearer
from restguard.credentials.bearer import bearer_token
from restguard.edge.view import view_from_scope
from restguard.errors import BackendUnavailable, InvalidRequest, RateLimited
from restguard.guard import Guard
from restguard.store.batch import MAX_BATCH
from restguard.store.sql import SqlStore, migrate, open_store
from restguard.store.sql.rate_limit_repository import SqlRateLimiter, stored_key
from restguard.store.sql.tables import rate_limits, signature_nonces
from restguard.types import RequestView
from tests.attacks.test_review_oauth2_token import ROUTES as OAUTH_ROUTES
from tests.attacks.test_review_oauth2_token import fetch_token, make_client
from tests.attacks.wire import exchange
from tests.attacks.wire import request as http_request
from tests.fixtures_db import nth_statement_fails
from tests.harness import GatewayProcess, RecordingUpstream
from tests.jwt_support import bearer as jwt_bearer

T0 = 1_800_000_000.25


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def view(headers: Any) -> RequestView:
    return RequestView("GET", "/", headers=headers)


def auth(token: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return ((b"host", b"x"), (b"authorization", b"Bearer " + token))


@pytest.fixture
def two_stores(database_url: str) -> Iterator[tuple[SqlStore, SqlStore]]:
    """Two workers: two stores (engines, runners, coalescers) on one database."""
    migrate(database_url)
    a, b = open_store(database_url, timeout=10.0), open_store(database_url, timeout=10.0)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


# --- 1. bearer_token's memo --------------------------------------------------------------------


def test_bearer_memo_interleaved_distinct_tuples_never_mix() -> None:
    """Requests interleaved (A, B, A, none, A ...) each get their own token, including equal
    tuples that are distinct objects and the empty-headers singleton."""
    a, b, none = auth(b"tok-a"), auth(b"tok-b"), ((b"host", b"x"),)
    a_copy = tuple(list(a))
    assert a_copy == a
    for _ in range(3):
        for headers, want in ((a, b"tok-a"), (b, b"tok-b"), (none, None), (a_copy, b"tok-a")):
            assert bearer_token(view(headers)) == want
            assert bearer_token(view(headers)) == want  # (the memo's answer)
        assert bearer_token(view(())) is None
    # a view copy with other fields keeps the headers' answer; a copy with other headers not
    v = view(a)
    assert bearer_token(v._replace(path="/other", client="10.0.0.1")) == b"tok-a"
    assert bearer_token(v._replace(headers=b)) == b"tok-b"
    assert bearer_token(v._replace(headers=none)) is None


def test_bearer_memo_repeated_authorization_always_raises() -> None:
    """A repeated Authorization header raises every time, whether the memo holds another
    tuple, the same tuple was asked before, or a copy of a good tuple precedes it."""
    twice = (*auth(b"one"), (b"authorization", b"Bearer two"))
    for primer in (auth(b"one"), twice, (), ((b"host", b"x"),)):
        try:
            bearer_token(view(primer))
        except InvalidRequest:
            pass
        for _ in range(3):
            with pytest.raises(InvalidRequest):
                bearer_token(view(twice))
    # the same duplicate on a view copy too
    with pytest.raises(InvalidRequest):
        bearer_token(view(twice)._replace(path="/x"))


def test_bearer_memo_ignores_lists_and_tuple_subclasses() -> None:
    """Only exact tuples are kept: a list (or a tuple subclass) mutated between calls is read
    afresh every time."""
    headers = list(auth(b"first"))
    assert bearer_token(view(headers)) == b"first"
    headers[1] = (b"authorization", b"Bearer second")
    assert bearer_token(view(headers)) == b"second"
    headers.append((b"authorization", b"Bearer third"))
    with pytest.raises(InvalidRequest):
        bearer_token(view(headers))

    class Headers(tuple):  # type: ignore[type-arg]
        pass

    sub = Headers(auth(b"sub"))
    assert bearer_token(view(sub)) == b"sub"
    assert bearer._last[0] is not sub


def test_bearer_memo_threads_never_see_each_others_token() -> None:
    """Eight threads (as several event loops in threads sharing one Guard would), each with
    its own header tuples, ask in tight loops with a tiny switch interval: every answer is the
    thread's own."""
    wrong: list[tuple[int, object]] = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def worker(n: int) -> None:
        mine = auth(b"t%d" % n)
        none = ((b"host", b"h%d" % n),)
        dup = (*mine, (b"authorization", b"Bearer x"))
        for i in range(3000):
            fresh = auth(b"t%d" % n) if i % 7 == 0 else mine
            got = bearer_token(view(fresh))
            if got != b"t%d" % n:
                wrong.append((n, got))
            if bearer_token(view(none)) is not None:
                wrong.append((n, "token where none"))
            if i % 50 == 0:
                try:
                    bearer_token(view(dup))
                    wrong.append((n, "duplicate accepted"))
                except InvalidRequest:
                    pass

    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert wrong == []


async def test_bearer_memo_interleaved_coroutines_via_asgi_views() -> None:
    """Views built the way the ASGI middleware builds them (``view_from_scope``), from scopes
    whose headers are tuples (the common case returns the very same tuple), for coroutines
    that interleave at every await: each gets its own token or None."""

    def scope(headers: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": "/p",
            "raw_path": b"/p",
            "query_string": b"",
            "headers": headers,
            "http_version": "1.1",
            "client": ("127.0.0.1", 1),
        }

    async def request(n: int) -> list[bytes | None]:
        headers: Any = ((b"host", b"x"),) if n % 3 == 0 else auth(b"c%d" % n)
        if n % 2:
            headers = list(headers)
        v = view_from_scope(scope(headers))
        seen = []
        for _ in range(5):
            seen.append(bearer_token(v))
            await asyncio.sleep(0)
        return seen

    results = await asyncio.gather(*(request(n) for n in range(60)))
    for n, seen in enumerate(results):
        assert seen == [None if n % 3 == 0 else b"c%d" % n] * 5


async def lock_waiters(admin: psycopg.Connection[Any], n: int) -> bool:
    """Until ``n`` sessions wait for a lock (True), or 1.5 s passed (False)."""
    for _ in range(75):
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone()
        if row is not None and row[0] >= n:
            return True
        await asyncio.sleep(0.02)
    return False


def test_bearer_memo_through_the_gateway_pipelined_and_concurrent(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    """The real gateway: 6 connections at once, each pipelining requests whose Bearer token
    alternates between two clients' tokens, none, a junk token and a repeated header. Every
    forwarded request carries its own client's identity; no token is 401, a repeated header
    400, and neither reaches the upstream."""
    gw = GatewayProcess(
        tmp_path / "gw",
        upstream,
        routes=OAUTH_ROUTES,
        extra={"server.failed_attempts": '"100000/minute"'},
    ).start()
    try:
        clients = [make_client(gw, "notes:read") for _ in range(2)]
        tokens = [fetch_token(gw, c) for c in clients]
        upstream.clear()
        kinds = ["a", "b", "none", "a", "dup", "b", "junk", "a"]

        def headers(kind: str) -> tuple[tuple[bytes, bytes], ...]:
            if kind in ("a", "b"):
                return (jwt_bearer(tokens[kind == "b"]),)
            if kind == "dup":
                return (jwt_bearer(tokens[0]), jwt_bearer(tokens[1]))
            if kind == "junk":
                return (jwt_bearer("x.y.z"),)
            return ()

        def connection(n: int) -> list[tuple[str, int]]:
            order = kinds[n % len(kinds) :] + kinds[: n % len(kinds)]
            data = b"".join(
                http_request(b"/notes/%d-%d-%s" % (n, i, k.encode()), *headers(k))
                for i, k in enumerate(order)
            )
            got = exchange(gw.port, data, responses=len(order), timeout=10.0)
            return list(zip(order, [r.status for r in got], strict=False))

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(connection, range(6)))
        forwarded = 0
        for answered in results:
            for kind, status in answered:
                want = {"a": 200, "b": 200, "none": 401, "junk": 401, "dup": 400}[kind]
                assert status == want, (kind, status, answered)
                forwarded += status == 200
        assert forwarded >= 12 and len(upstream.requests) == forwarded, results
        for seen in upstream.requests:
            kind = seen.target.rsplit(b"-", 1)[1].decode()
            assert kind in ("a", "b"), seen.target
            assert seen.header("x-restguard-client-id") == clients[kind == "b"].id, seen.target
    finally:
        gw.stop()


# --- 2. SqlRateLimiter batches -----------------------------------------------------------------


async def test_racing_hits_of_two_workers_admit_exactly_the_limit(
    two_stores: tuple[SqlStore, SqlStore],
) -> None:
    """60 hits racing on one key from two workers (two stores, coalescers, engines), in a few
    waves, against a limit of 17: exactly 17 admitted."""
    a, b = two_stores
    key = f"race-{time.monotonic_ns()}"
    verdicts = []
    for _ in range(3):
        verdicts += await asyncio.gather(
            *(a.rate_limits.hit(key, 17, 3600.0) for _ in range(10)),
            *(b.rate_limits.hit(key, 17, 3600.0) for _ in range(10)),
        )
    assert sum(v.allowed for v in verdicts) == 17
    assert all(v.retry_after is not None for v in verdicts if not v.allowed)


async def test_more_than_max_batch_hits_on_one_key_admit_exactly_the_limit(
    store: SqlStore,
) -> None:
    """MAX_BATCH + 90 concurrent hits (several batches) against a limit of 200: exactly 200."""
    lim = SqlRateLimiter(store.engine, store._run, FakeClock())
    n = MAX_BATCH + 90
    verdicts = await asyncio.gather(*(lim.hit("big", 200, 3600.0) for _ in range(n)))
    assert sum(v.allowed for v in verdicts) == 200
    assert [v.allowed for v in verdicts] == [True] * 200 + [False] * (n - 200)


async def test_odd_keys_in_one_batch_are_counted_apart(store: SqlStore) -> None:
    """Keys that sort oddly or are stored hashed (unicode, case, NUL, a lone surrogate, the
    digest prefix, long keys differing in their last character, a long key and its own
    digest) in one batch: each key's limit is its own."""
    long_a, long_b = "L" * 300 + "a", "L" * 300 + "b"
    keys = [
        "k",
        "K",
        "é",
        "e\u0301",  # NFD of é: another key
        "\U0001f600",
        "k\x00",
        "k\ud800",
        "sha256:" + "0" * 64,
        long_a,
        long_b,
        stored_key(long_a),  # its digest, as a plain key
        "",
        " k",
    ]
    lim = SqlRateLimiter(store.engine, store._run, FakeClock())
    calls = [k for k in keys for _ in range(3)][::-1]  # (arrival order unlike key order)
    verdicts = await asyncio.gather(*(lim.hit(k, 2, 3600.0) for k in calls))
    per_key: dict[str, list[bool]] = {}
    for k, v in zip(calls, verdicts, strict=True):
        per_key.setdefault(k, []).append(v.allowed)
    assert per_key == {k: [True, True, False] for k in keys}


async def test_mixed_limits_for_one_key_in_one_batch_match_one_at_a_time(store: SqlStore) -> None:
    """One key asked with different limits and windows in one batch: the same verdicts as
    the same hits awaited one by one on a fresh key."""
    clock = FakeClock()
    lim = SqlRateLimiter(store.engine, store._run, clock)
    hits = [(3, 60.0), (1, 1.0), (5, 3600.0), (2, 60.0), (3, 60.0), (1, 60.0), (4, 10.0)] * 3
    one = [await lim.hit("mix-one", n, w) for n, w in hits]
    together = await asyncio.gather(*(lim.hit("mix-all", n, w) for n, w in hits))
    assert list(together) == one


async def test_a_stalled_batch_times_out_closed_and_never_admits(database_url: str) -> None:
    """The batch's transaction stalls past the store's deadline: every hit in it is
    BackendUnavailable (never an allowed verdict), and whatever the late thread commits only
    over-counts: the limit is never exceeded afterwards."""
    migrate(database_url)
    st = open_store(database_url, timeout=0.5)
    lim = SqlRateLimiter(st.engine, st._run, FakeClock())
    stall = threading.Event()

    def slow(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT") and not stall.is_set():
            time.sleep(0.8)

    try:
        await lim.hit("warm", 10, 60.0)
        event.listen(st.engine, "before_cursor_execute", slow)
        verdicts = await asyncio.gather(
            *(lim.hit("stall", 3, 3600.0) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(v, BackendUnavailable) for v in verdicts), verdicts
        stall.set()
        event.remove(st.engine, "before_cursor_execute", slow)
        await asyncio.sleep(3.0)  # the late thread finishes (and may commit)
        later = [await lim.hit("stall", 3, 3600.0) for _ in range(4)]
        assert sum(v.allowed for v in later) <= 3
    finally:
        st.close()


async def test_a_cancelled_caller_never_frees_a_slot(store: SqlStore) -> None:
    """Callers cancelled while their batch is in flight still count (over-counting: closed);
    one cancelled before its batch is sent counts nothing; the coalescer keeps working and
    the limit is exact."""
    lim = SqlRateLimiter(store.engine, store._run, FakeClock())
    gate = threading.Event()

    def hold(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            gate.wait(5)

    await lim.hit("warm", 10, 60.0)
    event.listen(store.engine, "before_cursor_execute", hold)
    try:
        tasks = [asyncio.ensure_future(lim.hit("cx", 8, 3600.0)) for _ in range(6)]
        await asyncio.sleep(0.1)  # the batch is in flight, held at its first upsert
        for t in tasks[:3]:
            t.cancel()
        queued = [asyncio.ensure_future(lim.hit("cx", 8, 3600.0)) for _ in range(3)]
        await asyncio.sleep(0)
        queued[0].cancel()  # cancelled before its batch is sent: not counted
        await asyncio.sleep(0.05)
        gate.set()
        done = await asyncio.gather(*tasks[3:], *queued[1:])
    finally:
        gate.set()
        event.remove(store.engine, "before_cursor_execute", hold)
    after = [await lim.hit("cx", 8, 3600.0) for _ in range(3)]
    assert all(t.cancelled() for t in tasks[:3]) and queued[0].cancelled()
    assert [v.allowed for v in done] == [True] * 5  # slots 4-6 (batch one), 7-8 (batch two)
    assert [v.allowed for v in after] == [False] * 3


async def test_a_failed_batch_on_one_worker_leaves_the_other_exact(
    two_stores: tuple[SqlStore, SqlStore],
) -> None:
    """Worker a's batch fails at its last upsert (rolled back, all its hits 503) while worker
    b counts: afterwards exactly the limit is admitted in all."""
    a, b = two_stores
    key = f"fail-{time.monotonic_ns()}"
    await a.rate_limits.hit("warm", 10, 60.0)
    with nth_statement_fails(a.engine, "INSERT", 5):
        got = await asyncio.gather(
            *(a.rate_limits.hit(key, 6, 3600.0) for _ in range(5)),
            *(b.rate_limits.hit(key, 6, 3600.0) for _ in range(5)),
            return_exceptions=True,
        )
    assert all(isinstance(v, BackendUnavailable) for v in got[:5]), got
    admitted = sum(v.allowed for v in got[5:])  # type: ignore[union-attr]
    admitted += sum([(await a.rate_limits.hit(key, 6, 3600.0)).allowed for _ in range(4)])
    assert admitted == 6


async def test_failed_attempt_flood_gets_429_past_the_limit_across_workers(
    two_stores: tuple[SqlStore, SqlStore],
) -> None:
    """``Guard.failed_attempt`` on the SQL limiter (the ``--workers`` / PostgreSQL setup): 40
    concurrent bad credentials from one address over two workers: exactly 5 pass as 401s, the
    other 35 are 429."""
    a, b = two_stores
    guards = [SimpleNamespace(failed_attempts=(5, 600.0), limiter=s.rate_limits) for s in (a, b)]
    client = f"203.0.113.{time.monotonic_ns() % 250}"

    async def attempt(g: SimpleNamespace) -> str:
        try:
            await Guard.failed_attempt(g, client)  # type: ignore[arg-type]
        except RateLimited:
            return "429"
        return "401"

    answers = await asyncio.gather(*(attempt(guards[i % 2]) for i in range(40)))
    assert answers.count("401") == 5
    assert answers.count("429") == 35


# (Two workers' opposite-order batches over unicode and hashed keys: tests/integration/
# test_sql_rate_limits.py::test_batches_of_two_workers_never_deadlock.)


@pytest.mark.postgres
async def test_postgres_a_sweep_never_deadlocks_the_batch_of_another_worker(
    postgres_url: str,
) -> None:
    """Worker 1's batch over keys ``k-a`` < ``k-b`` (both expired rows) holds ``k-a``. Worker 2's
    sweep deletes expired rows in tat order: ``k-b`` first, then (after a row another session
    holds briefly, standing for a long scan) ``k-a``. Worker 1 then asks for ``k-b``: a cycle;
    worker 1 waited first, so its deadlock check fires first and its batch is aborted."""
    migrate(postgres_url)
    w1, w2 = open_store(postgres_url, timeout=10.0), open_store(postgres_url, timeout=10.0)
    lim1 = SqlRateLimiter(w1.engine, w1._run, FakeClock())
    lim2 = SqlRateLimiter(w2.engine, w2._run, FakeClock())
    lim1._next_sweep = float("inf")  # only worker 2 sweeps
    with w1.engine.begin() as conn:
        for key, tat in (("k-b", T0 - 300), ("k-lock", T0 - 200), ("k-a", T0 - 100)):
            conn.execute(insert(rate_limits).values(key=key, tat=tat, seen=tat - 1, ok=True))
    holder = psycopg.connect(postgres_url)
    admin = psycopg.connect(postgres_url, autocommit=True)
    a_held, go_b = threading.Event(), threading.Event()

    def pause_after_a(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT") and isinstance(params, dict):
            if params.get("key") == "k-a":
                a_held.set()
                go_b.wait(10)

    async def waiters(n: int) -> None:  # (fixed code may never wait: then go on)
        await lock_waiters(admin, n)

    event.listen(w1.engine, "after_cursor_execute", pause_after_a)
    try:
        holder.execute("SELECT 1 FROM rate_limits WHERE key = 'k-lock' FOR UPDATE")
        batch = asyncio.gather(
            lim1.hit("k-a", 5, 60.0), lim1.hit("k-b", 5, 60.0), return_exceptions=True
        )
        await asyncio.to_thread(a_held.wait, 10)
        sweeper = asyncio.ensure_future(lim2.hit("k-z", 5, 60.0))  # then its sweep
        await waiters(1)  # the sweep deleted k-b and waits for k-lock
        go_b.set()
        await waiters(2)  # worker 1's batch waits for k-b
        holder.rollback()  # the sweep moves on to k-a: a cycle
        got = await batch
        await sweeper
    finally:
        go_b.set()
        event.remove(w1.engine, "after_cursor_execute", pause_after_a)
        holder.close()
        admin.close()
        w1.close()
        w2.close()
    failures = [getattr(v, "debug", v) for v in got if isinstance(v, BaseException)]
    assert failures == []  # now: ["store rate_limits.hit failed: DeadlockDetected: ..."] * 2


# --- 3. nonce batches (insertmanyvalues RETURNING) ---------------------------------------------

NOW = datetime(2027, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


async def test_same_nonce_twice_in_one_batch_and_across_batches(store: SqlStore) -> None:
    n = store.signature_nonces
    got = await asyncio.gather(*(n.use("app", f"n{i % 4}", LATER, NOW) for i in range(12)))
    assert got == [True] * 4 + [False] * 8
    again = await asyncio.gather(*(n.use("app", f"n{i}", LATER, NOW) for i in range(6)))
    assert again == [False] * 4 + [True] * 2


async def test_nonces_race_across_two_workers_exactly_one_wins(
    two_stores: tuple[SqlStore, SqlStore],
) -> None:
    """Ten nonces, each used 6 times by each of two workers at once: each nonce admitted once."""
    a, b = two_stores
    tag = time.monotonic_ns()
    calls = [(s, f"r{tag}-{i % 10}") for i in range(60) for s in (a, b)]
    got = await asyncio.gather(*(s.signature_nonces.use("app", k, LATER, NOW) for s, k in calls))
    wins: dict[str, int] = {}
    for (_, k), fresh in zip(calls, got, strict=True):
        wins[k] = wins.get(k, 0) + fresh
    assert wins == {f"r{tag}-{i}": 1 for i in range(10)}


async def test_nonces_that_differ_only_in_case_unicode_or_spaces_are_distinct(
    store: SqlStore,
) -> None:
    """RETURNING rows must match the keys sent exactly: case, NFC/NFD, spaces, astral
    characters, long values; and each is a replay the second time."""
    nonces = ["abc", "ABC", "é", "e\u0301", "x ", " x", "x", "\U0001f600", "n" * 2000, "'\"%_\\"]
    keys = ["app", "APP", "ápp"]
    calls = [(k, n) for k in keys for n in nonces]
    first = await asyncio.gather(*(store.signature_nonces.use(k, n, LATER, NOW) for k, n in calls))
    assert first == [True] * len(calls)
    second = await asyncio.gather(*(store.signature_nonces.use(k, n, LATER, NOW) for k, n in calls))
    assert second == [False] * len(calls)


async def test_oauth1_nonce_keys_round_trip_through_returning(store: SqlStore) -> None:
    """The four-column key (text, '' token, a 64-bit integer timestamp, text): big
    timestamps and an empty token come back equal to what was sent."""
    n = store.oauth1_nonces
    stamps = [1, 1_800_000_000, 2**53 + 1, 2**63 - 1]
    calls = [("ck", tok, ts, "nn") for tok in ("", "tok") for ts in stamps]
    got = await asyncio.gather(*(n.use(*c, LATER, NOW) for c in calls))
    assert got == [True] * len(calls)
    got = await asyncio.gather(*(n.use(*c, LATER, NOW) for c in calls))
    assert got == [False] * len(calls)


async def test_batches_larger_than_a_page_collect_every_returning_row(store: SqlStore) -> None:
    """One ``_record`` call with 2600 rows (more than insertmanyvalues' page of 1000 and the
    SQLite parameter budget per statement) of which every fifth was recorded before: exactly
    the new ones are True. And MAX_BATCH * 2 + 7 concurrent uses (several batches) likewise."""
    batches = store.signature_nonces._batches  # type: ignore[attr-defined]
    old = [(("big", f"n{i}"), LATER, NOW) for i in range(0, 2600, 5)]
    assert batches._record(old, False) == [True] * len(old)
    uses = [(("big", f"n{i}"), LATER, NOW) for i in range(2600)]
    assert batches._record(uses, False) == [i % 5 != 0 for i in range(2600)]
    with store.engine.connect() as conn:
        count = len(conn.execute(select(signature_nonces.c.nonce)).all())
    assert count == 2600

    m = MAX_BATCH * 2 + 7
    got = await asyncio.gather(
        *(store.signature_nonces.use("c", f"m{i}", LATER, NOW) for i in range(m))
    )
    assert got == [True] * m
    got = await asyncio.gather(
        *(store.signature_nonces.use("c", f"m{i}", LATER, NOW) for i in range(m))
    )
    assert got == [False] * m


async def test_a_batch_failing_mid_insert_records_nothing_and_fails_closed(store: SqlStore) -> None:
    """The batch fails after its DELETE, at its INSERT: every caller 503, nothing recorded, and
    the nonces are all usable afterwards (exactly once)."""
    n = store.signature_nonces
    await n.use("warm", "w", LATER, NOW)
    with nth_statement_fails(store.engine, "INSERT", 1):
        got = await asyncio.gather(
            *(n.use("app", f"f{i % 3}", LATER, NOW) for i in range(9)), return_exceptions=True
        )
    assert all(isinstance(v, BackendUnavailable) for v in got), got
    again = await asyncio.gather(*(n.use("app", f"f{i % 3}", LATER, NOW) for i in range(6)))
    assert again == [True] * 3 + [False] * 3


async def test_an_expired_nonce_is_reusable_only_once_per_batch(store: SqlStore) -> None:
    """A record expired past the margin is deleted and re-recorded in the same transaction:
    of a batch reusing it six times, exactly one is fresh; an unexpired one stays a replay."""
    n = store.signature_nonces
    past = NOW - timedelta(hours=1)
    assert await n.use("app", "old", past + timedelta(minutes=1), past)
    assert await n.use("app", "recent", NOW + timedelta(minutes=1), NOW)
    got = await asyncio.gather(*(n.use("app", "old", LATER, NOW) for _ in range(6)))
    assert sorted(got) == [False] * 5 + [True]
    got = await asyncio.gather(*(n.use("app", "recent", LATER, NOW) for _ in range(3)))
    assert got == [False] * 3


@pytest.mark.postgres
async def test_postgres_nonce_batches_of_two_workers_in_opposite_orders_never_deadlock(
    postgres_url: str,
) -> None:
    """Worker a's batch [n1, m, n2] inserts n1 and waits at m (a row another session is
    inserting, standing for any slow moment); worker b's batch [n2, n1] inserts n2 and waits
    for n1; the other session gives up m, a moves on to n2: a cycle."""
    migrate(postgres_url)
    a, b = open_store(postgres_url, timeout=10.0), open_store(postgres_url, timeout=10.0)
    holder = psycopg.connect(postgres_url)
    admin = psycopg.connect(postgres_url, autocommit=True)

    async def waiters(n: int) -> None:  # (fixed code may never wait: then go on)
        await lock_waiters(admin, n)

    try:
        await asyncio.gather(
            a.signature_nonces.use("app", "warm-a", LATER, NOW),
            b.signature_nonces.use("app", "warm-b", LATER, NOW),
        )
        holder.execute(
            "INSERT INTO signature_nonces (key_id, nonce, expires_at) VALUES ('app', 'm', %s)",
            (LATER,),
        )
        first = asyncio.gather(
            *(a.signature_nonces.use("app", k, LATER, NOW) for k in ("n1", "m", "n2")),
            return_exceptions=True,
        )
        await waiters(1)  # a holds n1, waits at m
        second = asyncio.gather(
            *(b.signature_nonces.use("app", k, LATER, NOW) for k in ("n2", "n1")),
            return_exceptions=True,
        )
        await waiters(2)  # b holds n2, waits at n1
        holder.rollback()  # a moves on to n2: a cycle
        got = [*(await first), *(await second)]
    finally:
        holder.close()
        admin.close()
        a.close()
        b.close()
    failures = [getattr(v, "debug", v) for v in got if isinstance(v, BaseException)]
    assert failures == []  # now: DeadlockDetected for every caller of one batch
    assert sorted(v for v in got if isinstance(v, bool)).count(True) == 3  # n1, m, n2 once each
