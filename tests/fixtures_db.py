"""Database fixtures: every storage test runs on SQLite and on the real PostgreSQL.

PostgreSQL is expected on 127.0.0.1:5432 (user ``postgres``, trust auth; CI has it). If it is not
reachable the test fails with a clear message: it is never skipped silently.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from restguard.store.sql import SqlStore, migrate, open_store

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/"
PG_ADMIN_DSN = PG_SERVER + "test"


def _pg_admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip()
    pytest.fail(
        f"PostgreSQL is not reachable at {PG_ADMIN_DSN} ({reason}). "
        "Start it with /work/shared/services-up; storage tests need the real server.",
        pytrace=False,
    )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A freshly created, empty PostgreSQL database, dropped at teardown."""
    name = f"rg_test_{secrets.token_hex(8)}"
    with _pg_admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PG_SERVER + name
    finally:
        with _pg_admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def module_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, prefix: str
) -> str:
    """For a module-scoped fixture parametrized ``sqlite`` / ``postgresql``: a SQLite file, or
    a PostgreSQL database of its own (``prefix`` names it), dropped when the module is done."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp(prefix) / 'restguard.db'}"
    name = f"{prefix}_{secrets.token_hex(6)}"

    def drop() -> None:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    drop()
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    request.addfinalizer(drop)
    return PG_SERVER + name


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file (not yet created) in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'restguard.db'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database URL on each backend."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    """A migrated ``SqlStore`` on ``database_url``, closed at teardown."""
    migrate(database_url)
    sql_store = open_store(database_url)
    try:
        yield sql_store
    finally:
        sql_store.close()


@contextmanager
def nth_statement_fails(engine: Engine, verb: str, nth: int) -> Iterator[None]:
    """While open, the ``nth`` statement ``engine`` runs that starts with ``verb`` (``INSERT``,
    ``DELETE``) fails as a driver error would (a full disk)."""
    seen = 0

    def fail(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal seen
        if statement.lstrip().upper().startswith(verb):
            seen += 1
            if seen == nth:
                raise OperationalError(statement, {}, Exception("disk I/O error"))

    event.listen(engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", fail)
