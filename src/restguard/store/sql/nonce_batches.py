"""Replay caches in the database, written in batches: the nonces of concurrent requests go as
one transaction (``store.batch.Coalescer``), not one transaction and worker-thread trip each.

A batch decides exactly as its calls one at a time, in order: the first call that records a
nonce gets True, every later one (in the same batch, in an earlier one, or on another instance)
gets False, because the table's primary key decides and a batch is one transaction. It is one
statement: every nonce is inserted, and one already recorded is overwritten only where its record
expired ``CLOCK_SKEW_MARGIN`` ago (for the batch's earliest caller): ``ON CONFLICT DO UPDATE ...
WHERE expires_at <= :expired_by RETURNING`` (SQLite >= 3.35, PostgreSQL), so a nonce that comes
back was recorded by this call, and one that does not is a replay. (Its rows go in key order, so
the batches of two instances never wait for each other in a cycle; a conflict on PostgreSQL
waits for the other transaction and then judges its committed row.) One statement instead of a
delete and an insert: 406 -> 230 us of CPU per batch of 13 on SQLite, 874 -> 398 on PostgreSQL
(bench/README.md). A failed batch records nothing (one transaction) and fails every caller
closed (503). Every
``SWEEP_INTERVAL`` seconds the batch also deletes the other expired records (by the same
margin, skipping rows another transaction holds), afterwards and in a transaction of its own
(a failure there changes no answer).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, ColumnElement, Engine, Table, bindparam, delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from restguard.store.batch import Coalescer
from restguard.store.sql.runner import Runner, RunnerLane
from restguard.store.sql.tables import to_utc

#: Expired nonces are swept at most this often per table and process (seconds, monotonic).
SWEEP_INTERVAL = 60.0
#: A record is deleted only once it expired this long ago by the deleting instance's clock.
#: Each record's ``expires_at`` is written by the instance that accepted the request, and every
#: instance deletes by its own clock: without a margin, an instance whose clock runs ahead
#: deleted another's records early, and a replay to the other was forwarded again.
CLOCK_SKEW_MARGIN = timedelta(seconds=60)

#: One call: the nonce's key (the table's primary-key values, in column order), when its record
#: expires, and the caller's now.
Use = tuple[tuple[Any, ...], datetime, datetime]


class NonceBatches:
    """One replay cache: ``use(key, expires_at, now)`` is True for the first call with ``key``."""

    def __init__(self, engine: Engine, run: Runner, table: Table, operation: str) -> None:
        self._engine, self._run, self._table, self._operation = engine, run, table, operation
        self._columns: list[Column[Any]] = [c for c in table.columns if c.primary_key]
        self._names = [c.name for c in self._columns]
        insert: Callable[[Table], sqlite.Insert | postgresql.Insert]
        if engine.dialect.name == "sqlite":
            insert = sqlite.insert
        elif engine.dialect.name == "postgresql":
            insert = postgresql.insert
        else:
            raise ValueError(f"no nonce table on a {engine.dialect.name} database")
        rows = insert(table)
        self._record_rows = rows.on_conflict_do_update(
            index_elements=self._columns,
            set_={"expires_at": rows.excluded.expires_at},
            where=table.c.expires_at <= bindparam("expired_by"),
        ).returning(*self._columns)
        self._row_locks = engine.dialect.name == "postgresql"
        self._next_sweep = 0.0
        self._batches: Coalescer[Use, bool] = Coalescer(RunnerLane(run), operation, self._send)

    def _unheld(self, rows: ColumnElement[bool]) -> ColumnElement[bool]:
        """``rows`` less those another transaction holds, on PostgreSQL (``FOR UPDATE SKIP
        LOCKED``, in key order): a sweep never waits, and what it skips the next sweep takes.
        SQLite has one writer and no row locks: ``rows`` as they are (there a subquery would
        scan the whole table, where this uses an index)."""
        if not self._row_locks:
            return rows
        columns = self._columns
        taken = select(*columns).where(rows).order_by(*columns)
        return tuple_(*columns).in_(taken.with_for_update(skip_locked=True))

    async def use(self, key: tuple[Any, ...], expires_at: datetime, now: datetime) -> bool:
        return await self._batches.submit((key, to_utc(expires_at), to_utc(now)))

    async def _send(self, uses: Sequence[Use]) -> list[bool]:
        sweep = time.monotonic() >= self._next_sweep
        if sweep:
            self._next_sweep = time.monotonic() + SWEEP_INTERVAL
        return await self._run(self._operation, lambda: self._record(uses, sweep), write=True)

    def _record(self, uses: Sequence[Use], sweep: bool) -> list[bool]:
        first: dict[tuple[Any, ...], int] = {}
        expiry: dict[tuple[Any, ...], datetime] = {}
        for index, (key, expires, _) in enumerate(uses):
            if key not in first:  # (a key twice in one batch: the first call records it)
                first[key], expiry[key] = index, expires
        # A record this batch may overwrite expired by then: for every call of the batch, on
        # every instance's clock. (One value for the whole batch, and it must stay one: it is
        # not in VALUES, and SQLAlchemy folds the rows into one multi-row INSERT.)
        at = min(now for _, _, now in uses) - CLOCK_SKEW_MARGIN
        # Rows in key order: the batches of every worker and instance then wait for each
        # other's uncommitted rows in one order, never in a cycle (PostgreSQL would abort one
        # batch as a deadlock, 503 for all of it: a captured request sent to two instances at
        # once could do that on purpose).
        names = self._names
        rows = [
            {**dict(zip(names, key, strict=True)), "expires_at": expiry[key], "expired_by": at}
            for key in sorted(first)
        ]
        table = self._table
        with self._engine.begin() as conn:
            # One statement compiled once, its rows passed as parameters: SQLAlchemy's
            # "insertmanyvalues" sends them as multi-row INSERTs with RETURNING. (A statement
            # built with ``.values(rows)`` was compiled anew for every batch: 2.7 ms per 32.)
            added = conn.execute(self._record_rows, rows)
            recorded = {tuple(row) for row in added}
        if sweep:
            try:
                with self._engine.begin() as conn:
                    expired = table.c.expires_at <= at
                    conn.execute(delete(table).where(self._unheld(expired)))
            except DBAPIError:
                pass  # bookkeeping: the next sweep retries
        return [first[key] == index and key in recorded for index, (key, _, _) in enumerate(uses)]
