"""The OAuth 1.0a credential stores on SQL (RFC 5849): temporary and token credentials
(``oauth1_tokens``) and the nonces requests used (``oauth1_nonces``); the consumers are in
``oauth1_repository.py``.

Operations run as ``repositories.py`` describes (``runner.py``: worker threads, a deadline,
driver errors become ``BackendUnavailable``). Every state change of credentials is one
conditional write, so racing callers agree on every worker and instance: the authorization of
temporary credentials (§2.2) and their exchange (§2.3) are each an ``UPDATE ... WHERE`` on the
row's state -- PostgreSQL makes a second writer wait for the first and re-check the condition,
SQLite runs one write transaction at a time -- and the first wins. A nonce is single-use by the
table's primary key ``(consumer_key, token, timestamp, nonce)``, as ``signature_nonces``
(``app_repository.py``).
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    RowMapping,
    and_,
    delete,
    exists,
    or_,
    select,
    update,
)

from restguard.store.ports import OAuth1NonceStore, OAuth1TokenRecord, OAuth1TokenStore
from restguard.store.sql.nonce_batches import NonceBatches
from restguard.store.sql.revocation import not_revoked_before, revoke_row
from restguard.store.sql.runner import (
    Runner,
    insert_row,
    tokens_text,
    utc_or_none,
)
from restguard.store.sql.tables import oauth1_nonces, oauth1_tokens, to_utc, users

_KINDS = ("temporary", "access")


# --- temporary and token credentials -------------------------------------------------------------


def _token_row(record: OAuth1TokenRecord) -> dict[str, Any]:
    if record.kind not in _KINDS:
        raise ValueError(f"an OAuth 1.0a token's kind is 'temporary' or 'access': {record.kind!r}")
    if record.kind == "access" and (record.user_id is None or record.subject is None):
        raise ValueError("token credentials need the user and subject who authorized them")
    return {
        "token": record.token,
        "kind": record.kind,
        "consumer_key": record.consumer_key,
        "sealed_secret": bytes(record.sealed_secret),
        "scopes": tokens_text(record.scopes),
        "user_id": record.user_id,
        "subject": record.subject,
        "callback": record.callback,
        "verifier_hash": None if record.verifier_hash is None else bytes(record.verifier_hash),
        "created_at": to_utc(record.created_at),
        "expires_at": utc_or_none(record.expires_at),
        "used_at": utc_or_none(record.used_at),
        "revoked_at": utc_or_none(record.revoked_at),
    }


def _token_record(row: RowMapping) -> OAuth1TokenRecord:
    verifier = row["verifier_hash"]
    return OAuth1TokenRecord(
        token=row["token"],
        kind=row["kind"],
        consumer_key=row["consumer_key"],
        sealed_secret=bytes(row["sealed_secret"]),
        scopes=tuple(row["scopes"].split()),
        created_at=row["created_at"],
        user_id=row["user_id"],
        subject=row["subject"],
        callback=row["callback"],
        verifier_hash=None if verifier is None else bytes(verifier),
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        revoked_at=row["revoked_at"],
    )


def _get_token(conn: Connection, token: str) -> RowMapping | None:
    query = select(oauth1_tokens).where(oauth1_tokens.c.token == token)
    return conn.execute(query).mappings().first()


def _live_temporary(token: str, at: datetime) -> ColumnElement[bool]:
    """Temporary credentials ``token``: unexpired at ``at``, unused, unrevoked."""
    t = oauth1_tokens.c
    return and_(
        t.token == token,
        t.kind == "temporary",
        t.expires_at > at,
        t.used_at.is_(None),
        not_revoked_before(t.revoked_at, at),
    )


class SqlOAuth1TokenStore(OAuth1TokenStore):
    """``OAuth1TokenStore`` on the ``oauth1_tokens`` table."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: OAuth1TokenRecord) -> None:
        """Add credentials; ``DuplicateRecord`` if the token exists (nothing written). Expired
        temporary credentials are deleted in the same transaction (after the insert, so
        SQLite's write lock is taken by the first statement)."""
        row = _token_row(record)
        t = oauth1_tokens.c
        expired = delete(oauth1_tokens).where(
            t.kind == "temporary", t.expires_at <= to_utc(record.created_at)
        )

        def work() -> None:
            with self._engine.begin() as conn:
                insert_row(conn, oauth1_tokens, row, f"OAuth 1.0a token {record.token!r}")
                conn.execute(expired)

        await self._run("oauth1_tokens.insert", work, write=True)

    async def get(self, token: str) -> OAuth1TokenRecord | None:
        def work() -> OAuth1TokenRecord | None:
            with self._engine.connect() as conn:
                row = _get_token(conn, token)
            return None if row is None else _token_record(row)

        return await self._run("oauth1_tokens.get", work)

    async def authorize(
        self,
        temporary_token: str,
        *,
        user_id: str,
        subject: str,
        scopes: tuple[str, ...],
        verifier_hash: bytes,
        at: datetime,
    ) -> bool:
        """One conditional ``UPDATE``: live, not yet authorized temporary credentials and an
        existing user; True when it changed the row."""
        at = to_utc(at)
        t = oauth1_tokens.c
        statement = (
            update(oauth1_tokens)
            .where(
                _live_temporary(temporary_token, at),
                t.verifier_hash.is_(None),
                exists().where(users.c.user_id == user_id),
            )
            .values(
                user_id=user_id,
                subject=subject,
                scopes=tokens_text(scopes),
                verifier_hash=bytes(verifier_hash),
            )
        )

        def work() -> bool:
            with self._engine.begin() as conn:
                return conn.execute(statement).rowcount == 1

        return await self._run("oauth1_tokens.authorize", work, write=True)

    async def exchange(
        self, temporary_token: str, verifier_hash: bytes, new: OAuth1TokenRecord, at: datetime
    ) -> str:
        """One transaction: the conditional ``UPDATE`` that uses the temporary credentials up
        (authorized with this verifier, for ``new``'s consumer and user, who still exists),
        then the insert of ``new``. Otherwise nothing is written and the row says why."""
        if new.kind != "access":
            raise ValueError("temporary credentials are exchanged for token credentials only")
        row = _token_row(new)
        at = to_utc(at)
        t = oauth1_tokens.c
        use = (
            update(oauth1_tokens)
            .where(
                _live_temporary(temporary_token, at),
                t.verifier_hash == bytes(verifier_hash),
                t.consumer_key == new.consumer_key,
                t.user_id == new.user_id,
                exists().where(users.c.user_id == t.user_id),
            )
            .values(used_at=at)
        )

        def work() -> str:
            with self._engine.begin() as conn:
                if conn.execute(use).rowcount == 1:
                    insert_row(conn, oauth1_tokens, row, f"OAuth 1.0a token {new.token!r}")
                    return "exchanged"
                found = _get_token(conn, temporary_token)
            if found is not None and found["kind"] == "temporary" and found["used_at"] is not None:
                return "used"
            return "invalid"

        return await self._run("oauth1_tokens.exchange", work, write=True)

    async def list(
        self, *, user_id: str | None = None, consumer_key: str | None = None
    ) -> builtins.list[OAuth1TokenRecord]:
        """Token credentials (revoked ones too), oldest first (then by token)."""
        t = oauth1_tokens.c
        query = select(oauth1_tokens).where(t.kind == "access")
        if user_id is not None:
            query = query.where(t.user_id == user_id)
        if consumer_key is not None:
            query = query.where(t.consumer_key == consumer_key)
        query = query.order_by(t.created_at, t.token)

        def work() -> builtins.list[OAuth1TokenRecord]:
            with self._engine.connect() as conn:
                return [_token_record(row) for row in conn.execute(query).mappings()]

        return await self._run("oauth1_tokens.list", work)

    async def revoke(
        self, token: str, at: datetime, *, expected: OAuth1TokenRecord | None = None
    ) -> OAuth1TokenRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent; with
        ``expected``, ``StaleRecord`` when what its version covers and can change (its scopes,
        set when temporary credentials are authorized, and ``revoked_at``) changed since."""
        at = to_utc(at)
        t = oauth1_tokens.c
        what = "OAuth 1.0a token"  # (not the token itself: errors may be logged)
        read = None
        if expected is not None:
            read = [
                (t.scopes, tokens_text(expected.scopes)),
                (t.revoked_at, utc_or_none(expected.revoked_at)),
            ]

        def work() -> OAuth1TokenRecord:
            with self._engine.begin() as conn:
                row = revoke_row(conn, oauth1_tokens, (t.token, token), at, what, read)
            return _token_record(row)

        return await self._run("oauth1_tokens.revoke", work, write=True)

    async def revoke_user(self, user_id: str, at: datetime, consumer_key: str | None = None) -> int:
        """Revoke the user's token credentials and authorized, not yet exchanged temporary
        credentials that are not revoked yet (to one consumer, or all); how many."""
        at = to_utc(at)
        t = oauth1_tokens.c
        statement = update(oauth1_tokens).where(
            t.user_id == user_id,
            or_(t.kind == "access", t.used_at.is_(None)),  # not the used-up temporary ones
            not_revoked_before(t.revoked_at, at),
        )
        if consumer_key is not None:
            statement = statement.where(t.consumer_key == consumer_key)
        statement = statement.values(revoked_at=at)

        def work() -> int:
            with self._engine.begin() as conn:
                return int(conn.execute(statement).rowcount)

        return await self._run("oauth1_tokens.revoke_user", work, write=True)


# --- nonces --------------------------------------------------------------------------------------


class SqlOAuth1NonceStore(OAuth1NonceStore):
    """``OAuth1NonceStore`` on the ``oauth1_nonces`` table, written in batches
    (``nonce_batches.py``: the nonces of concurrent requests in one transaction)."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._batches = NonceBatches(engine, run, oauth1_nonces, "oauth1_nonces.use")

    async def use(
        self,
        consumer_key: str,
        token: str,
        timestamp: int,
        nonce: str,
        expires_at: datetime,
        now: datetime,
    ) -> bool:
        """True for the one call that records the nonce first, False while it is recorded (an
        expired record is overwritten: the nonce may be used again)."""
        if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
            raise ValueError("an OAuth 1.0a timestamp is a non-negative integer")
        return await self._batches.use((consumer_key, token, timestamp, nonce), expires_at, now)
