"""The SQL storage driver: SQLite (embedded default) or PostgreSQL, with Alembic migrations."""

from __future__ import annotations

from restguard.store.sql.engine import make_engine
from restguard.store.sql.migrate import migrate, pending
from restguard.store.sql.repositories import SqlApiKeyStore, SqlSigningKeyStore, SqlStore
from restguard.store.sql.runner import DEFAULT_TIMEOUT

__all__ = [
    "SqlApiKeyStore",
    "SqlSigningKeyStore",
    "SqlStore",
    "make_engine",
    "migrate",
    "open_store",
    "pending",
]


def open_store(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> SqlStore:
    """Return a ``SqlStore`` on ``url`` (no connection is made until first use); every
    operation has ``timeout`` seconds, then it is ``BackendUnavailable``.

    ``ValueError`` if the URL is not an accepted form. Run ``migrate(url)`` first.
    """
    return SqlStore(make_engine(url, statement_timeout=timeout), timeout=timeout)
