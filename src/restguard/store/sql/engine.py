"""Build the one synchronous SQLAlchemy engine a store or a migration runs on.

Accepted URLs: ``sqlite:///ABSOLUTE/PATH`` (the embedded default) and
``postgresql://user@host:port/db`` (also ``postgresql+psycopg://...``; psycopg 3 is the driver,
installed by the ``restguard[postgres]`` extra).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from restguard.store.errors import DriverMissing

ACCEPTED = "sqlite:///ABSOLUTE/PATH or postgresql://user@host:port/db"
POSTGRES_EXTRA = "pip install 'restguard[postgres]'"

#: Applied to every new SQLite connection. ``busy_timeout`` comes first so that switching the
#: journal to WAL waits for a concurrent starter instead of failing with "database is locked".
SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=5000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)

PG_CONNECT_TIMEOUT = 3
# One pooled connection per store thread (runner.READ_THREADS + WRITE_THREADS): with fewer,
# SQLAlchemy opens an overflow connection under load and closes it on return, so a busy store
# reconnected to PostgreSQL all the time (bench/oauth2_grants.py: 1,044 us CPU per grant).
PG_POOL_SIZE = 10
PG_MAX_OVERFLOW = 5
PG_POOL_TIMEOUT = 5
# A network partition must not hang a connection for the kernel's default 15+ minutes: TCP
# keep-alive probes after 1 s of silence, the connection is dropped once sent data stays
# unacknowledged for 3 s (Linux TCP_USER_TIMEOUT), and no statement may run longer than the
# store's deadline. (Migrations run without the statement limit: they wait on each other's lock.)
PG_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 1,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 3000,
}


def parse_url(url: str) -> URL:
    """Parse and normalise ``url``; ``ValueError`` unless it is one of the accepted forms."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"not a database URL; use {ACCEPTED}") from None
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        if parsed.database in (None, "", ":memory:") or parsed.host:
            raise ValueError(f"a SQLite URL needs a file path; use {ACCEPTED}")
        return parsed.set(drivername="sqlite")
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        if not parsed.database:
            raise ValueError(f"a PostgreSQL URL needs a database name; use {ACCEPTED}")
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}; use {ACCEPTED}")


def own_only(database: Path) -> None:
    """Create the SQLite file readable by its owner only, and tighten one an older version left
    readable by others (it holds key hashes and the sealed signing key). SQLite creates the
    ``-wal`` and ``-shm`` files with the database file's mode, so they follow."""
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(database, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        with contextlib.suppress(OSError):  # absent, or not ours to change
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)


def make_engine(url: str, *, statement_timeout: float | None = None) -> Engine:
    """Return an engine for ``url`` with the project's connection settings applied.
    ``statement_timeout`` (s) caps every statement on PostgreSQL."""
    parsed = parse_url(url)
    if parsed.drivername == "sqlite":
        own_only(Path(str(parsed.database)))
        engine = create_engine(
            parsed, hide_parameters=True, connect_args={"check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    require_postgres_driver()
    return create_engine(
        parsed,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_MAX_OVERFLOW,
        pool_timeout=PG_POOL_TIMEOUT,
        connect_args={
            "connect_timeout": PG_CONNECT_TIMEOUT,
            **PG_KEEPALIVE,
            **(
                {"options": f"-c statement_timeout={round(statement_timeout * 1000)}"}
                if statement_timeout
                else {}
            ),
        },
    )


def require_postgres_driver() -> None:
    """``DriverMissing`` naming the extra to install, unless psycopg imports. (The default
    install is SQLite only: the driver is the ``restguard[postgres]`` extra.)"""
    try:
        importlib.import_module("psycopg")
    except ModuleNotFoundError as exc:
        if exc.name != "psycopg":
            raise DriverMissing(
                f"storage.database: the PostgreSQL driver (psycopg) cannot be loaded: {exc}. "
                f"Fix: {POSTGRES_EXTRA}"
            ) from None
        raise DriverMissing(
            "storage.database: a PostgreSQL URL needs the PostgreSQL driver (psycopg), which is "
            f"not installed. Fix: {POSTGRES_EXTRA}"
        ) from None
    except ImportError as exc:  # installed without a libpq it can load
        raise DriverMissing(
            f"storage.database: the PostgreSQL driver (psycopg) cannot be loaded: {exc}. "
            f"Fix: {POSTGRES_EXTRA} (it brings psycopg's binary build, libpq included)"
        ) from None


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()
