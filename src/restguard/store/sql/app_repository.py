"""The stores of signed requests on SQL (RFC 9421): signing apps (``apps``) and the nonces
their signatures used (``signature_nonces``).

Operations run as ``repositories.py`` describes (``runner.py``: worker threads, a deadline,
driver errors become ``BackendUnavailable``). An app's rotation is one transaction, as an API
key's. A nonce is single-use by the table's primary key: of racing INSERTs of one
``(key_id, nonce)`` exactly one commits -- PostgreSQL makes the others wait for it, then fail
with a unique violation; SQLite runs one write transaction at a time -- so every worker and
every instance on the database agrees (RFC 9421 §7.2.2).
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, select

from restguard.store.ports import AppRecord, AppStore, NonceStore
from restguard.store.sql.nonce_batches import NonceBatches
from restguard.store.sql.revocation import revoke_row
from restguard.store.sql.runner import (
    Runner,
    insert_row,
    tokens_text,
    utc_or_none,
)
from restguard.store.sql.tables import apps, signature_nonces, to_utc


def _app_row(record: AppRecord) -> dict[str, Any]:
    if (record.sealed_secret is None) == (record.public_key is None):
        raise ValueError("an app has either a sealed secret or a public key, not both or neither")
    return {
        "key_id": record.key_id,
        "name": record.name,
        "alg": record.alg,
        "scopes": tokens_text(record.scopes),
        "sealed_secret": None if record.sealed_secret is None else bytes(record.sealed_secret),
        "public_key": None if record.public_key is None else bytes(record.public_key),
        "created_at": to_utc(record.created_at),
        "revoked_at": utc_or_none(record.revoked_at),
    }


def _app_record(row: RowMapping) -> AppRecord:
    sealed, public = row["sealed_secret"], row["public_key"]
    return AppRecord(
        key_id=row["key_id"],
        name=row["name"],
        alg=row["alg"],
        scopes=tuple(row["scopes"].split()),
        sealed_secret=None if sealed is None else bytes(sealed),
        public_key=None if public is None else bytes(public),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def _revoke_in(
    conn: Connection, key_id: str, at: datetime, expected: AppRecord | None = None
) -> AppRecord:
    """Set ``revoked_at`` to ``at`` unless an earlier one is set; ``UnknownRecord`` if absent.
    With ``expected``: only while ``revoked_at`` (the one column of an app that changes after
    it is made) is still the one the caller read, else ``StaleRecord``."""
    c = apps.c
    read = None if expected is None else [(c.revoked_at, utc_or_none(expected.revoked_at))]
    return _app_record(revoke_row(conn, apps, (c.key_id, key_id), at, f"app {key_id!r}", read))


class SqlAppStore(AppStore):
    """``AppStore`` on the ``apps`` table."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: AppRecord) -> None:
        """Add an app; ``DuplicateRecord`` if the key_id exists (nothing written)."""
        row = _app_row(record)

        def work() -> None:
            with self._engine.begin() as conn:
                insert_row(conn, apps, row, f"app {record.key_id!r}")

        await self._run("apps.insert", work, write=True)

    async def get(self, key_id: str) -> AppRecord | None:
        def work() -> AppRecord | None:
            with self._engine.connect() as conn:
                row = conn.execute(select(apps).where(apps.c.key_id == key_id)).mappings().first()
            return None if row is None else _app_record(row)

        return await self._run("apps.get", work)

    async def list(self) -> builtins.list[AppRecord]:
        """All apps, oldest first (by ``created_at``, then key_id)."""

        def work() -> builtins.list[AppRecord]:
            query = select(apps).order_by(apps.c.created_at, apps.c.key_id)
            with self._engine.connect() as conn:
                return [_app_record(row) for row in conn.execute(query).mappings()]

        return await self._run("apps.list", work)

    async def revoke(
        self, key_id: str, at: datetime, *, expected: AppRecord | None = None
    ) -> AppRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent; with
        ``expected``, ``StaleRecord`` when its ``revoked_at`` changed since."""
        at = to_utc(at)

        def work() -> AppRecord:
            with self._engine.begin() as conn:
                return _revoke_in(conn, key_id, at, expected)

        return await self._run("apps.revoke", work, write=True)

    async def rotate(
        self,
        old_key_id: str,
        new: AppRecord,
        old_revoked_at: datetime,
        *,
        expected: AppRecord | None = None,
    ) -> None:
        """In one transaction: insert ``new`` and revoke ``old_key_id`` at ``old_revoked_at``
        (keeping an earlier revocation). ``DuplicateRecord`` if ``new.key_id`` exists,
        ``UnknownRecord`` if ``old_key_id`` does not, ``StaleRecord`` if ``expected`` is given
        and the old app's ``revoked_at`` changed since it was read (two rotations at once, or a
        rotation and a revocation: one wins); in every case nothing changes."""
        row = _app_row(new)
        at = to_utc(old_revoked_at)

        def work() -> None:
            with self._engine.begin() as conn:
                _revoke_in(conn, old_key_id, at, expected)  # first: a stale one inserts nothing
                insert_row(conn, apps, row, f"app {new.key_id!r}")

        await self._run("apps.rotate", work, write=True)


class SqlNonceStore(NonceStore):
    """``NonceStore`` on the ``signature_nonces`` table, written in batches
    (``nonce_batches.py``: the nonces of concurrent requests in one transaction)."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._batches = NonceBatches(engine, run, signature_nonces, "signature_nonces.use")

    async def use(self, key_id: str, nonce: str, expires_at: datetime, now: datetime) -> bool:
        """True for the one call that records ``(key_id, nonce)`` first, False while it is
        recorded (an expired record is overwritten: the nonce may be used again)."""
        return await self._batches.use((key_id, nonce), expires_at, now)
