"""The OAuth 1.0a consumer store on SQL (RFC 5849): consumers (``oauth1_consumers``); their
temporary and token credentials and the nonces are in ``oauth1_token_repository.py``.

Operations run as ``repositories.py`` describes (``runner.py``: worker threads, a deadline,
driver errors become ``BackendUnavailable``). Revoking a consumer revokes its credentials
(``oauth1_tokens``) in the same transaction, each write keeping an earlier revocation.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, RowMapping, select, update

from restguard.store.ports import OAuth1ConsumerRecord, OAuth1ConsumerStore
from restguard.store.sql.revocation import not_revoked_before, revoke_row
from restguard.store.sql.runner import Runner, insert_row, tokens_text, utc_or_none
from restguard.store.sql.tables import oauth1_consumers, oauth1_tokens, to_utc


def _consumer_row(record: OAuth1ConsumerRecord) -> dict[str, Any]:
    return {
        "consumer_key": record.consumer_key,
        "name": record.name,
        "sealed_secret": bytes(record.sealed_secret),
        "scopes": tokens_text(record.scopes),
        "callback": record.callback,
        "signature_methods": tokens_text(record.signature_methods, "signature method"),
        "rsa_public_key": None if record.rsa_public_key is None else bytes(record.rsa_public_key),
        "created_at": to_utc(record.created_at),
        "revoked_at": utc_or_none(record.revoked_at),
    }


def _consumer_record(row: RowMapping) -> OAuth1ConsumerRecord:
    rsa = row["rsa_public_key"]
    return OAuth1ConsumerRecord(
        consumer_key=row["consumer_key"],
        name=row["name"],
        sealed_secret=bytes(row["sealed_secret"]),
        scopes=tuple(row["scopes"].split()),
        callback=row["callback"],
        signature_methods=tuple(row["signature_methods"].split()),
        rsa_public_key=None if rsa is None else bytes(rsa),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class SqlOAuth1ConsumerStore(OAuth1ConsumerStore):
    """``OAuth1ConsumerStore`` on the ``oauth1_consumers`` table."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: OAuth1ConsumerRecord) -> None:
        """Add a consumer; ``DuplicateRecord`` if the consumer_key exists (nothing written)."""
        if record.callback is not None and (
            not record.callback or any(c.isspace() for c in record.callback)
        ):
            raise ValueError(f"a callback must be a URI without spaces: {record.callback!r}")
        row = _consumer_row(record)

        def work() -> None:
            with self._engine.begin() as conn:
                insert_row(conn, oauth1_consumers, row, f"consumer {record.consumer_key!r}")

        await self._run("oauth1_consumers.insert", work, write=True)

    async def get(self, consumer_key: str) -> OAuth1ConsumerRecord | None:
        c = oauth1_consumers.c

        def work() -> OAuth1ConsumerRecord | None:
            query = select(oauth1_consumers).where(c.consumer_key == consumer_key)
            with self._engine.connect() as conn:
                row = conn.execute(query).mappings().first()
            return None if row is None else _consumer_record(row)

        return await self._run("oauth1_consumers.get", work)

    async def list(self) -> builtins.list[OAuth1ConsumerRecord]:
        """All consumers, oldest first (by ``created_at``, then consumer_key)."""
        c = oauth1_consumers.c

        def work() -> builtins.list[OAuth1ConsumerRecord]:
            query = select(oauth1_consumers).order_by(c.created_at, c.consumer_key)
            with self._engine.connect() as conn:
                return [_consumer_record(row) for row in conn.execute(query).mappings()]

        return await self._run("oauth1_consumers.list", work)

    async def revoke(
        self, consumer_key: str, at: datetime, *, expected: OAuth1ConsumerRecord | None = None
    ) -> OAuth1ConsumerRecord:
        """Set ``revoked_at`` (keeping an earlier one) and revoke the consumer's tokens, in one
        transaction; ``UnknownRecord`` if absent; with ``expected``, ``StaleRecord`` when its
        ``revoked_at`` (the one column of a consumer that changes after it is made) changed
        since. In both cases nothing changes."""
        at = to_utc(at)
        c, t = oauth1_consumers.c, oauth1_tokens.c
        read = None if expected is None else [(c.revoked_at, utc_or_none(expected.revoked_at))]
        what = f"consumer {consumer_key!r}"

        def work() -> OAuth1ConsumerRecord:
            with self._engine.begin() as conn:
                key = (c.consumer_key, consumer_key)
                row = revoke_row(conn, oauth1_consumers, key, at, what, read)
                conn.execute(
                    update(oauth1_tokens)
                    .where(t.consumer_key == consumer_key, not_revoked_before(t.revoked_at, at))
                    .values(revoked_at=at)
                )
            return _consumer_record(row)

        return await self._run("oauth1_consumers.revoke", work, write=True)
