"""The rate limiter on SQL (``rate_limits``): one counter per key shared by every worker process
and instance on the database, so a limit is never multiplied by their number.

Each ``hit`` is one atomic statement, the same on SQLite (3.35 or later) and PostgreSQL::

    INSERT INTO rate_limits (key, tat, seen, prev, ok)
    VALUES (:key, :now + :interval, :now, NULL, true)
    ON CONFLICT (key) DO UPDATE SET
        tat  = CASE WHEN <allowed> THEN <base> + :interval ELSE rate_limits.tat END,
        seen = <at>,
        prev = rate_limits.tat,
        ok   = <allowed>
    RETURNING prev, ok, seen

where ``<at>`` is ``max(rate_limits.seen, :now)``, ``<base>`` is ``max(rate_limits.tat, <at>)``
and ``<allowed>`` is ``<base> - :dvt - <at> <= :eps``: ``authz.ratelimit.gcra``'s arithmetic,
term for term, on IEEE doubles in both databases. Every expression of an UPDATE's SET list reads
the row as it was before the update (in both databases), so ``prev`` is the TAT this event was
judged against and ``seen`` the time it was judged at; the verdict is ``gcra(prev, seen, limit,
window)`` computed here -- the same function as the other limiters. PostgreSQL serializes racing
upserts of one key on its row lock (the loser re-evaluates against the winner's committed row);
SQLite runs one write transaction at a time. Either way N racing events against a limit of L
admit exactly L.

``<at>`` keeps a key's time from running backwards: racing events read the clock in one order
and reach the row in another, and an event judged earlier than the one before it would find the
bucket emptier than it is (a burst of L would admit L - 1). Judged at the latest time seen, the
events of a key form the same sequence as in one process, with a clock that never goes back.

The hits of concurrent requests go to the database together (``store.batch.Coalescer``, as
nonces do): one worker-thread trip and one transaction for all of them, each hit its own
upsert, in key order. A batch is judged exactly as its hits one at a time (a key's hits keep
their order; different keys do not touch each other's rows), with one ``now`` for the batch;
a failed batch counts nothing and fails every hit in it closed.

``now`` is the wall clock (epoch seconds), the one clock instances share: their clocks should
agree (NTP) to well under a rate limit's interval (one running ahead moves the keys it touches
ahead by as much, for every instance). Rows whose TAT has passed mean the same as no row; one
``hit`` every ``SWEEP_INTERVAL`` seconds deletes them after its own answer is settled, in its
own transaction (a failure there is ignored). Driver errors and timeouts are
``BackendUnavailable`` (``runner.py``): the caller fails closed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

from sqlalchemy import Engine, Float, bindparam, case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from restguard.authz.ratelimit import _EPSILON, Verdict, gcra
from restguard.store.batch import Coalescer
from restguard.store.sql.runner import Runner, RunnerLane
from restguard.store.sql.tables import rate_limits

#: Expired counters are swept by one ``hit`` at most this often per limiter (seconds, monotonic).
SWEEP_INTERVAL: Final = 60.0
#: Keys up to this many characters are stored as they are; longer ones as their digest.
MAX_KEY_CHARS: Final = 200
HASHED_PREFIX: Final = "sha256:"
#: What the database said of one hit: the time it was judged at, the TAT it was judged against
#: (None: a new key) and whether it was allowed.
Judged = tuple[float, float | None, bool]


def stored_key(key: str) -> str:
    """The ``rate_limits.key`` of ``key``: itself, or ``sha256:<hex digest>`` when it is longer
    than ``MAX_KEY_CHARS``. A key that could pass for a digest (it starts with the prefix) or
    that a database's text cannot hold (NUL, a lone surrogate) is hashed too: distinct keys
    never share a row."""
    if len(key) <= MAX_KEY_CHARS and not key.startswith(HASHED_PREFIX) and _storable(key):
        return key
    # (surrogatepass: a one-to-one encoding of every str, lone surrogates included)
    return HASHED_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _storable(key: str) -> bool:
    if "\x00" in key:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _upsert(dialect: str) -> Any:
    """The ``hit`` statement for ``dialect`` (its parameters: key, now, interval, dvt, eps)."""
    c = rate_limits.c
    now, interval = bindparam("now", type_=Float), bindparam("interval", type_=Float)
    dvt, eps = bindparam("dvt", type_=Float), bindparam("eps", type_=Float)
    at = case((c.seen < now, now), else_=c.seen)
    base = case((c.tat < at, at), else_=c.tat)
    allowed = base - dvt - at <= eps
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(rate_limits).values(
        key=bindparam("key"), tat=now + interval, seen=now, prev=None, ok=True
    )
    return statement.on_conflict_do_update(
        index_elements=[c.key],
        set_={
            "tat": case((allowed, base + interval), else_=c.tat),
            "seen": at,
            "prev": c.tat,
            "ok": allowed,
        },
    ).returning(c.key, c.prev, c.ok, c.seen)


class SqlRateLimiter:
    """``RateLimiter`` (``authz.ratelimit``) on the ``rate_limits`` table. ``clock``: wall-clock
    epoch seconds (tests pass their own)."""

    def __init__(self, engine: Engine, run: Runner, clock: Callable[[], float] = time.time) -> None:
        self._engine, self._run, self._clock = engine, run, clock
        self._hit = _upsert(engine.dialect.name)
        self._next_sweep = 0.0
        self._batches: Coalescer[dict[str, Any], Judged] = Coalescer(
            RunnerLane(run), "rate_limits.hit", self._send
        )

    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        """Count one event for ``key`` if it is allowed, in one statement; its verdict is
        ``gcra``'s on the TAT the database judged it against."""
        interval = window / limit
        params = {
            "key": stored_key(key),
            "interval": interval,
            "dvt": float(window - interval),
            "eps": _EPSILON,
        }
        at, prev, ok = await self._batches.submit(params)
        verdict = gcra(prev, at, limit, window)[1]
        if verdict.allowed and not ok:  # (never: the database did gcra's arithmetic) fail closed
            return Verdict(False, 0, max(1, verdict.reset), 1)
        return verdict

    async def _send(self, hits: Sequence[dict[str, Any]]) -> list[Judged]:
        sweep = time.monotonic() >= self._next_sweep
        if sweep:
            self._next_sweep = time.monotonic() + SWEEP_INTERVAL
        return await self._run("rate_limits.hit", lambda: self._judge(hits, sweep), write=True)

    def _judge(self, hits: Sequence[dict[str, Any]], sweep: bool) -> list[Judged]:
        """The hits of concurrent requests, one transaction: each judged as if alone, in order.

        Round r upserts the r-th hit of every key in the batch, as one ``executemany`` (the
        drivers run it a row at a time here: the statement has parameters outside VALUES, so
        SQLAlchemy cannot fold it into one multi-row INSERT; were it folded, a key would still
        appear once per statement, as PostgreSQL's ``ON CONFLICT DO UPDATE`` requires). A
        key's hits keep their order. Each round's rows go in key order: every batch, of every
        worker and instance, takes its rows' locks in the same order, so two batches never
        wait for each other in a cycle (PostgreSQL would abort one as a deadlock: 503 for all
        its requests)."""
        now = float(self._clock())
        rounds: list[list[int]] = []  # round r: the r-th hit of each key in the batch
        taken: dict[str, int] = {}
        for index, hit in enumerate(hits):
            turn = taken[hit["key"]] = taken.get(hit["key"], -1) + 1
            if turn == len(rounds):
                rounds.append([])
            rounds[turn].append(index)
        judged: list[Judged | None] = [None] * len(hits)
        with self._engine.begin() as conn:
            for indexes in rounds:
                indexes.sort(key=lambda i: hits[i]["key"])
                rows = conn.execute(self._hit, [{**hits[i], "now": now} for i in indexes])
                by_key = {row.key: row for row in rows}
                for i in indexes:
                    row = by_key[hits[i]["key"]]
                    judged[i] = (row.seen, row.prev, bool(row.ok))
        if sweep:
            # Expired rows in key order, skipping those another transaction holds: a sweep
            # never waits for a lock, so it can never close a cycle with a batch (PostgreSQL
            # would abort the batch as a deadlock after a second: 503 for all of it). What it
            # skips, the next sweep takes.
            # (SQLite has one writer and no row locks: a plain delete.)
            c = rate_limits.c
            expired = c.tat < now
            if self._engine.dialect.name == "postgresql":
                in_order = select(c.key).where(expired).order_by(c.key)
                expired = c.key.in_(in_order.with_for_update(skip_locked=True))
            try:
                with self._engine.begin() as conn:
                    conn.execute(delete(rate_limits).where(expired))
            except DBAPIError:
                pass  # bookkeeping: the next sweep retries
        return cast(list[Judged], judged)

    async def blocked(self, key: str, limit: int, window: float) -> int | None:
        """Seconds until ``key`` may act again, or None; counts nothing (a plain read)."""
        c = rate_limits.c
        query = select(c.tat, c.seen).where(c.key == stored_key(key))

        def work() -> tuple[float, float | None]:
            now = float(self._clock())
            with self._engine.connect() as conn:
                row = conn.execute(query).first()
            if row is None:
                return now, None
            return max(now, row.seen), row.tat

        at, tat = await self._run("rate_limits.blocked", work)
        return gcra(tat, at, limit, window)[1].retry_after

    async def refund(self, key: str, limit: int, window: float) -> None:
        """Move the key's TAT back one interval, never before now (one statement)."""
        c = rate_limits.c
        now, interval = bindparam("now", type_=Float), bindparam("interval", type_=Float)
        back = c.tat - interval
        statement = (
            update(rate_limits)
            .where(c.key == stored_key(key))
            .values(tat=case((back > now, back), else_=now))
        )

        def work() -> None:
            with self._engine.begin() as conn:
                conn.execute(statement, {"now": float(self._clock()), "interval": window / limit})

        await self._run("rate_limits.refund", work, write=True)

    def close(self) -> None:
        """Nothing to release: the engine and runner belong to the ``SqlStore``."""
