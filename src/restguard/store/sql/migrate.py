"""Schema migrations: Alembic driven from code, safe when several processes start at once.

There is no ``alembic.ini``: the configuration is built here and points at the ``migrations``
directory inside this package. ``migrate`` holds a lock for the whole upgrade so concurrent
starters queue up: the first applies the pending revisions, the others find the schema current.
PostgreSQL: a session-level advisory lock on a dedicated connection that Alembic then runs on.
SQLite: an exclusive ``flock`` on ``<database file>.migrate.lock``, taken before connecting.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from restguard.errors import BackendUnavailable
from restguard.store.sql.engine import make_engine, parse_url

__all__ = ["MIGRATIONS", "PG_MIGRATION_LOCK", "migrate", "pending"]

MIGRATIONS = Path(__file__).parent / "migrations"

#: Key of the PostgreSQL advisory lock held while migrating: b"restguar" as a signed 64-bit int.
PG_MIGRATION_LOCK = 0x7265_7374_6775_6172


def migrate(url: str) -> list[str]:
    """Upgrade the database at ``url`` to head; return the revision ids applied, oldest first.

    Returns ``[]`` when the schema is already current. ``BackendUnavailable`` if the database
    (or, for SQLite, its directory) cannot be reached.
    """
    engine = make_engine(url)
    try:
        with _migration_lock(engine, url) as connection:
            applied = _pending_on(connection)
            if applied:
                command.upgrade(_config(connection), "heads")
                if connection.in_transaction():
                    connection.commit()
            return applied
    except (DBAPIError, OSError) as exc:
        raise _unavailable("migrate", exc) from None
    finally:
        engine.dispose()


def pending(url: str) -> list[str]:
    """The revision ids ``migrate`` would apply to the database at ``url``, oldest first."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return _pending_on(connection)
    except DBAPIError as exc:
        raise _unavailable("pending", exc) from None
    finally:
        engine.dispose()


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def _pending_on(connection: Connection) -> list[str]:
    """Revisions between the database's current heads and the scripts' heads, oldest first.

    Leaves ``connection`` outside any transaction, ready for Alembic to begin its own.
    """
    script = ScriptDirectory.from_config(_config(connection))
    try:
        current = MigrationContext.configure(connection).get_current_heads()
    finally:
        if connection.in_transaction():
            connection.rollback()
    revisions = script.iterate_revisions("heads", current or "base")
    return [revision.revision for revision in revisions][::-1]


@contextmanager
def _migration_lock(engine: Engine, url: str) -> Iterator[Connection]:
    """Yield a connection while holding the cross-process migration lock for ``url``."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_MIGRATION_LOCK})
            connection.commit()
            try:
                yield connection
            finally:
                if connection.in_transaction():
                    connection.rollback()
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": PG_MIGRATION_LOCK}
                )
                connection.commit()
        return
    database = parse_url(url).database
    assert database is not None  # parse_url refuses a SQLite URL without a path
    fd = os.open(f"{database}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with engine.connect() as connection:
            yield connection
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _unavailable(operation: str, exc: BaseException) -> BackendUnavailable:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return BackendUnavailable(debug=f"{operation} failed: {type(cause).__name__}: {cause}")
