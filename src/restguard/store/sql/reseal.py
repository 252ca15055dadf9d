"""Re-seal every sealed secret in the database under a new master key, in ONE transaction.

``SEALED_COLUMNS`` names each sealed column: its table, the key column, the sealed column and
the sealing purpose of a row (the associated data its value was sealed with). A table that adds
a sealed column adds one entry here, and ``restguard master-key rotate`` covers it (and a first
binding to a master key checks it: ``sealed_secrets``, ``keys/master_check.py``). The
master-key check value is re-sealed with the secrets but not counted as one (``secret``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Table, select, update

from restguard.credentials.apps import secret_purpose as app_secret_purpose
from restguard.credentials.oauth1_consumers import secret_purpose as consumer_secret_purpose
from restguard.credentials.oauth1_tokens import secret_purpose as token_secret_purpose
from restguard.keys.master_check import CHECK_PURPOSE
from restguard.keys.sealing import Sealer
from restguard.keys.signing import purpose as signing_key_purpose
from restguard.store.sql.tables import (
    apps,
    master_key_check,
    oauth1_consumers,
    oauth1_tokens,
    signing_keys,
)


@dataclass(frozen=True, slots=True)
class SealedColumn:
    table: Table
    key: str
    sealed: str
    purpose: Callable[[str], str]
    secret: bool = True  # False: the master-key check (re-sealed, not counted)


def _check_purpose(row_id: str) -> str:
    return CHECK_PURPOSE


SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn(signing_keys, "kid", "sealed_private", signing_key_purpose),
    SealedColumn(apps, "key_id", "sealed_secret", app_secret_purpose),  # NULL: a public-key app
    SealedColumn(oauth1_consumers, "consumer_key", "sealed_secret", consumer_secret_purpose),
    SealedColumn(oauth1_tokens, "token", "sealed_secret", token_secret_purpose),
    SealedColumn(master_key_check, "id", "sealed", _check_purpose, secret=False),
)


def sealed_secrets(
    conn: Connection, columns: Sequence[SealedColumn] = SEALED_COLUMNS
) -> list[tuple[str, bytes]]:
    """``(purpose, sealed value)`` of every stored secret (not the master-key check)."""
    found = []
    for col in columns:
        if col.secret:
            key, sealed = col.table.c[col.key], col.table.c[col.sealed]
            for row_key, value in conn.execute(select(key, sealed).where(sealed.is_not(None))):
                found.append((col.purpose(str(row_key)), bytes(value)))
    return found


def check_all(
    engine: Engine, opener: Sealer, columns: Sequence[SealedColumn] = SEALED_COLUMNS
) -> int:
    """Open every sealed value with ``opener`` (nothing is written); how many secrets.
    ``SealError`` if one does not open."""
    count = 0
    with engine.connect() as conn:
        for col in columns:
            key, sealed = col.table.c[col.key], col.table.c[col.sealed]
            for row_key, value in conn.execute(select(key, sealed).where(sealed.is_not(None))):
                opener.open(bytes(value), col.purpose(str(row_key)))
                count += col.secret
    return count


def reseal_all(
    engine: Engine,
    opener: Sealer,
    sealer: Sealer,
    columns: Sequence[SealedColumn] = SEALED_COLUMNS,
) -> int:
    """Open every sealed value with ``opener`` and seal it again with ``sealer``, in one
    transaction; the number of secrets. ``SealError`` (nothing changes) if one does not open.

    The transaction starts with a write to every table (taking SQLite's write lock first and
    locking PostgreSQL's rows), so no value can change between reading and re-sealing it.
    """
    count = 0
    with engine.begin() as conn:
        for col in columns:
            sealed = col.table.c[col.sealed]
            conn.execute(update(col.table).values({col.sealed: sealed}))
        for col in columns:
            key, sealed = col.table.c[col.key], col.table.c[col.sealed]
            rows = conn.execute(select(key, sealed).where(sealed.is_not(None))).all()
            for row_key, value in rows:
                purpose = col.purpose(str(row_key))
                fresh = sealer.seal(opener.open(bytes(value), purpose), purpose)
                conn.execute(update(col.table).where(key == row_key).values({col.sealed: fresh}))
                count += col.secret
    return count
