"""Running store operations: worker threads, a deadline, driver errors translated.


Each operation runs in a worker thread, reads and writes on separate thread pools (so a write
waiting for SQLite's lock never holds up a read), under a deadline (``[storage] timeout``): an
operation that does not finish in time is ``BackendUnavailable`` (503, fail closed) while its
thread runs out in the background. Each write is one transaction (``engine.begin()``), so a
failed write leaves the store unchanged. Driver exceptions never leave this module: they become
``BackendUnavailable`` with the driver's message in the private ``debug`` text only.

On SQLite every write transaction starts with its write statement, so it takes the write lock
first (waiting up to ``busy_timeout``) and never has to upgrade a read snapshot.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, insert
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from restguard.errors import BackendUnavailable
from restguard.store.batch import within
from restguard.store.errors import DuplicateRecord, StoreError
from restguard.store.sql.tables import to_utc

T = TypeVar("T")

#: Driver error codes of a primary-key or unique clash: PostgreSQL SQLSTATE, SQLite error name.
_PG_UNIQUE_VIOLATION = "23505"
_SQLITE_UNIQUE = frozenset({"SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"})


#: What a failing backend raises: SQLAlchemy's wrappers, and driver errors that escape them.
#: psycopg is the restguard[postgres] extra: without it only SQLite can be configured (the
#: engine says so).
_BACKEND_ERRORS: tuple[type[Exception], ...]
try:
    import psycopg
except ImportError:
    _BACKEND_ERRORS = (DBAPIError, PoolTimeout, sqlite3.Error)
else:
    _BACKEND_ERRORS = (DBAPIError, PoolTimeout, sqlite3.Error, psycopg.Error)

DEFAULT_TIMEOUT = 2.0
READ_THREADS = 8
WRITE_THREADS = 2


class Runner:
    """Runs store operations in threads, under a deadline, translating driver errors."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="restguard-store-read")
        self._writes = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="restguard-store-write")

    async def __call__(self, operation: str, work: Callable[[], T], *, write: bool = False) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._writes if write else self._reads, work)
        try:
            async with asyncio.timeout(self.timeout):  # (not wait_for: clock.wait_for_event)
                return await future
        except TimeoutError:
            raise BackendUnavailable(
                debug=f"store {operation} took longer than {self.timeout:g}s"
            ) from None
        except IntegrityError:
            raise StoreError("the record breaks a constraint of the store") from None
        except _BACKEND_ERRORS as exc:
            cause = exc.orig if isinstance(exc, DBAPIError) else exc
            raise BackendUnavailable(
                debug=f"store {operation} failed: {type(cause).__name__}: {cause}".strip()
            ) from None
        except StatementError as exc:
            # A value our column types refused while binding parameters (a naive datetime).
            if isinstance(exc.orig, ValueError | TypeError):
                raise type(exc.orig)(str(exc.orig)) from None
            raise

    def close(self) -> None:
        """Stop taking work; threads still running finish in the background."""
        self._reads.shutdown(wait=False, cancel_futures=True)
        self._writes.shutdown(wait=False, cancel_futures=True)


def is_unique_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    return (
        getattr(orig, "sqlstate", None) == _PG_UNIQUE_VIOLATION
        or getattr(orig, "sqlite_errorname", None) in _SQLITE_UNIQUE
    )


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else to_utc(value)


def tokens_text(scopes: Iterable[str], what: str = "scope") -> str:
    """Space-separated ``scopes`` (or grants, redirect URIs: ``what``); ValueError for a value
    that would not read back as itself."""
    scopes = tuple(scopes)
    for scope in scopes:
        if not scope or scope != scope.strip() or any(c.isspace() for c in scope):
            raise ValueError(f"a {what} must be a non-empty token without spaces: {scope!r}")
    return " ".join(scopes)


def insert_row(conn: Connection, table: Any, row: dict[str, Any], what: str) -> None:
    """Insert ``row``; ``DuplicateRecord`` on a primary-key clash (the transaction is then void)."""
    try:
        conn.execute(insert(table).values(**row))
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise DuplicateRecord(f"{what} already exists") from None
        raise


class RunnerLane:
    """The ``Coalescer``'s lane to the database: a batch is one ``Runner`` call (a write
    thread, the store's deadline and error translation), held to the oldest call's deadline."""

    def __init__(self, run: Runner) -> None:
        self.timeout = run.timeout

    async def run(
        self, operation: str, call: Callable[[], Awaitable[T]], *, deadline: float | None = None
    ) -> T:
        return await within("store", operation, call, deadline, self.timeout)
