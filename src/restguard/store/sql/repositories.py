"""The storage ports on SQL: SQLite or PostgreSQL through one synchronous SQLAlchemy engine
(API keys, signing keys, the master-key check and the store itself here; the token methods'
stores in ``token_repositories.py``, the users in ``user_repository.py``, signing apps and
signature nonces in ``app_repository.py``, the OAuth 1.0a consumers in ``oauth1_repository.py``
and their credentials and nonces in ``oauth1_token_repository.py``, the shared rate-limit
counters in ``rate_limit_repository.py``; ``runner.py`` runs every operation, as follows).

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

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    bindparam,
    or_,
    select,
    text,
    update,
)

from restguard.authz.ratelimit import RateLimiter
from restguard.store.errors import DuplicateRecord, StoreError
from restguard.store.ports import (
    AccessTokenStore,
    ApiKeyRecord,
    ApiKeyStore,
    AppStore,
    AuthorizationCodeStore,
    ConsentStore,
    DeviceCodeStore,
    IssuerStore,
    MasterKeyCheckStore,
    NonceStore,
    OAuth1ConsumerStore,
    OAuth1NonceStore,
    OAuth1TokenStore,
    OAuthClientStore,
    RefreshTokenStore,
    RevokedTokenStore,
    SigningKeyRecord,
    SigningKeyStore,
    Store,
    UserStore,
)
from restguard.store.sql.app_repository import SqlAppStore, SqlNonceStore
from restguard.store.sql.device_repositories import SqlDeviceCodeStore
from restguard.store.sql.grant_repositories import (
    SqlAccessTokenStore,
    SqlAuthorizationCodeStore,
    SqlConsentStore,
    SqlRefreshTokenStore,
)
from restguard.store.sql.oauth1_repository import SqlOAuth1ConsumerStore
from restguard.store.sql.oauth1_token_repository import SqlOAuth1NonceStore, SqlOAuth1TokenStore
from restguard.store.sql.rate_limit_repository import SqlRateLimiter
from restguard.store.sql.reseal import sealed_secrets
from restguard.store.sql.revocation import revoke_row
from restguard.store.sql.runner import (
    DEFAULT_TIMEOUT,
    Runner,
    insert_row,
    tokens_text,
    utc_or_none,
)
from restguard.store.sql.tables import (
    MASTER_KEY_CHECK_ID,
    api_keys,
    master_key_check,
    signing_keys,
    to_utc,
)
from restguard.store.sql.token_repositories import (
    SqlIssuerStore,
    SqlOAuthClientStore,
    SqlRevokedTokenStore,
)
from restguard.store.sql.user_repository import SqlUserStore

__all__ = [
    "SqlApiKeyStore",
    "SqlAppStore",
    "SqlIssuerStore",
    "SqlMasterKeyCheckStore",
    "SqlNonceStore",
    "SqlOAuthClientStore",
    "SqlRateLimiter",
    "SqlSigningKeyStore",
    "SqlStore",
    "SqlUserStore",
]


def _api_key_row(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "key_hash": bytes(record.key_hash),
        "scopes": tokens_text(record.scopes),
        "created_at": to_utc(record.created_at),
        "expires_at": utc_or_none(record.expires_at),
        "revoked_at": utc_or_none(record.revoked_at),
        "last_used_at": utc_or_none(record.last_used_at),
    }


def _api_key_record(row: RowMapping) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        name=row["name"],
        key_hash=bytes(row["key_hash"]),
        scopes=tuple(row["scopes"].split()),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def _signing_key_row(record: SigningKeyRecord) -> dict[str, Any]:
    return {
        "kid": record.kid,
        "alg": record.alg,
        "public_jwk": record.public_jwk,
        "sealed_private": bytes(record.sealed_private),
        "created_at": to_utc(record.created_at),
        "retired_at": utc_or_none(record.retired_at),
    }


def _signing_key_record(row: RowMapping) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid=row["kid"],
        alg=row["alg"],
        public_jwk=row["public_jwk"],
        sealed_private=bytes(row["sealed_private"]),
        created_at=row["created_at"],
        retired_at=row["retired_at"],
    )


def _revoke_in(
    conn: Connection, key_id: str, at: datetime, expected: ApiKeyRecord | None = None
) -> ApiKeyRecord:
    """Set ``revoked_at`` to ``at`` unless an earlier one is set; ``UnknownRecord`` if absent.
    With ``expected``: in the same statement, only while ``revoked_at`` (the one column of a
    key that changes after it is made) is still the one the caller read (``StaleRecord``
    otherwise; the caller's transaction then rolls back)."""
    c = api_keys.c
    read = None if expected is None else [(c.revoked_at, utc_or_none(expected.revoked_at))]
    row = revoke_row(conn, api_keys, (c.id, key_id), at, f"API key {key_id!r}", read)
    return _api_key_record(row)


class SqlApiKeyStore(ApiKeyStore):
    """``ApiKeyStore`` on the ``api_keys`` table."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: ApiKeyRecord) -> None:
        row = _api_key_row(record)

        def work() -> None:
            with self._engine.begin() as conn:
                insert_row(conn, api_keys, row, f"API key {record.id!r}")

        await self._run("api_keys.insert", work, write=True)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        def work() -> ApiKeyRecord | None:
            with self._engine.connect() as conn:
                query = select(api_keys).where(api_keys.c.id == key_id)
                row = conn.execute(query).mappings().first()
            return None if row is None else _api_key_record(row)

        return await self._run("api_keys.get", work)

    async def list(self) -> builtins.list[ApiKeyRecord]:
        """All keys, oldest first (by ``created_at``, then id)."""

        def work() -> builtins.list[ApiKeyRecord]:
            query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
            with self._engine.connect() as conn:
                return [_api_key_record(row) for row in conn.execute(query).mappings()]

        return await self._run("api_keys.list", work)

    async def revoke(
        self, key_id: str, at: datetime, *, expected: ApiKeyRecord | None = None
    ) -> ApiKeyRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent; with
        ``expected``, ``StaleRecord`` when its ``revoked_at`` changed since."""
        at = to_utc(at)

        def work() -> ApiKeyRecord:
            with self._engine.begin() as conn:
                return _revoke_in(conn, key_id, at, expected)

        return await self._run("api_keys.revoke", work, write=True)

    async def rotate(
        self,
        old_id: str,
        new: ApiKeyRecord,
        old_revoked_at: datetime,
        *,
        expected: ApiKeyRecord | None = None,
    ) -> None:
        """In one transaction: insert ``new`` and revoke ``old_id`` at ``old_revoked_at``.

        ``DuplicateRecord`` if ``new.id`` exists, ``UnknownRecord`` if ``old_id`` does not,
        ``StaleRecord`` if ``expected`` is given and the old key's ``revoked_at`` changed since
        it was read (two rotations at once: one wins); in every case nothing changes.
        """
        row = _api_key_row(new)
        at = to_utc(old_revoked_at)

        def work() -> None:
            with self._engine.begin() as conn:
                _revoke_in(conn, old_id, at, expected)  # first: a stale one inserts nothing
                insert_row(conn, api_keys, row, f"API key {new.id!r}")

        await self._run("api_keys.rotate", work, write=True)

    async def touch(self, uses: Mapping[str, datetime]) -> None:
        """Record last-used times, in one transaction. Never moves one backwards; absent ids are
        ignored."""
        if not uses:
            return
        col = api_keys.c.last_used_at
        params = [{"key_id": key_id, "at": to_utc(at)} for key_id, at in uses.items()]
        statement = (
            update(api_keys)
            .where(
                api_keys.c.id == bindparam("key_id"),
                or_(col.is_(None), col < bindparam("at")),
            )
            .values(last_used_at=bindparam("at"))
        )

        def work() -> None:
            with self._engine.begin() as conn:
                conn.execute(statement, params)

        await self._run("api_keys.touch", work, write=True)


class SqlSigningKeyStore(SigningKeyStore):
    """``SigningKeyStore`` on the ``signing_keys`` table."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: SigningKeyRecord) -> None:
        """Add a key; ``DuplicateRecord`` if the kid exists."""
        row = _signing_key_row(record)

        def work() -> None:
            with self._engine.begin() as conn:
                insert_row(conn, signing_keys, row, f"signing key {record.kid!r}")

        await self._run("signing_keys.insert", work, write=True)

    async def list(self) -> builtins.list[SigningKeyRecord]:
        """All keys, newest first (by ``created_at``, then kid)."""

        def work() -> builtins.list[SigningKeyRecord]:
            query = select(signing_keys).order_by(
                signing_keys.c.created_at.desc(), signing_keys.c.kid.desc()
            )
            with self._engine.connect() as conn:
                return [_signing_key_record(row) for row in conn.execute(query).mappings()]

        return await self._run("signing_keys.list", work)

    async def rotate(self, new: SigningKeyRecord, retire_at: datetime) -> None:
        """In one transaction: insert ``new``, then set ``retired_at`` to ``retire_at`` on every
        other key not retired earlier. ``DuplicateRecord`` if ``new.kid`` exists (nothing
        changes)."""
        row = _signing_key_row(new)
        at = to_utc(retire_at)
        col = signing_keys.c.retired_at

        def work() -> None:
            with self._engine.begin() as conn:
                insert_row(conn, signing_keys, row, f"signing key {new.kid!r}")
                conn.execute(
                    update(signing_keys)
                    .where(signing_keys.c.kid != new.kid, or_(col.is_(None), col > at))
                    .values(retired_at=at)
                )

        await self._run("signing_keys.rotate", work, write=True)


class SqlMasterKeyCheckStore(MasterKeyCheckStore):
    """``MasterKeyCheckStore`` on the one-row ``master_key_check`` table; the secrets it lists
    are every entry of ``reseal.SEALED_COLUMNS``."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    def _read(self, conn: Connection) -> bytes | None:
        check = master_key_check.c
        query = select(check.sealed).where(check.id == MASTER_KEY_CHECK_ID)
        value = conn.execute(query).scalar_one_or_none()
        return None if value is None else bytes(value)

    async def get(self) -> bytes | None:
        def work() -> bytes | None:
            with self._engine.connect() as conn:
                return self._read(conn)

        return await self._run("master_key_check.get", work)

    async def put_if_absent(self, sealed: bytes) -> bytes:
        """Insert the check value unless one exists; the stored value. Racing writers: the
        primary key lets one insert win (PostgreSQL makes the others wait for its commit, SQLite
        for its write lock); the others read the winner's value back."""
        row = {"id": MASTER_KEY_CHECK_ID, "sealed": bytes(sealed)}

        def work() -> bytes:
            try:
                with self._engine.begin() as conn:
                    insert_row(conn, master_key_check, row, "the master-key check")
                return bytes(sealed)
            except DuplicateRecord:
                pass
            with self._engine.connect() as conn:
                stored = self._read(conn)
            if stored is None:  # (the row is never deleted)
                raise StoreError("the master-key check vanished while it was written")
            return stored

        return await self._run("master_key_check.put_if_absent", work, write=True)

    async def sealed_secrets(self) -> builtins.list[tuple[str, bytes]]:
        def work() -> builtins.list[tuple[str, bytes]]:
            with self._engine.connect() as conn:
                return sealed_secrets(conn)

        return await self._run("master_key_check.sealed_secrets", work)


class SqlStore(Store):
    """The SQL backend: every store on one engine, its health check, and its shutdown."""

    def __init__(self, engine: Engine, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.engine = engine
        self._run = Runner(timeout)
        self.api_keys: ApiKeyStore = SqlApiKeyStore(engine, self._run)
        self.signing_keys: SigningKeyStore = SqlSigningKeyStore(engine, self._run)
        self.issuers: IssuerStore = SqlIssuerStore(engine, self._run)
        self.master_key_check: MasterKeyCheckStore = SqlMasterKeyCheckStore(engine, self._run)
        self.oauth2_clients: OAuthClientStore = SqlOAuthClientStore(engine, self._run)
        self.revoked_tokens: RevokedTokenStore = SqlRevokedTokenStore(engine, self._run)
        self.users: UserStore = SqlUserStore(engine, self._run)
        self.oauth2_codes: AuthorizationCodeStore = SqlAuthorizationCodeStore(engine, self._run)
        self.refresh_tokens: RefreshTokenStore = SqlRefreshTokenStore(engine, self._run)
        self.consents: ConsentStore = SqlConsentStore(engine, self._run)
        self.oauth2_access_tokens: AccessTokenStore = SqlAccessTokenStore(engine, self._run)
        self.device_codes: DeviceCodeStore = SqlDeviceCodeStore(engine, self._run)
        self.apps: AppStore = SqlAppStore(engine, self._run)
        self.signature_nonces: NonceStore = SqlNonceStore(engine, self._run)
        self.oauth1_consumers: OAuth1ConsumerStore = SqlOAuth1ConsumerStore(engine, self._run)
        self.oauth1_tokens: OAuth1TokenStore = SqlOAuth1TokenStore(engine, self._run)
        self.oauth1_nonces: OAuth1NonceStore = SqlOAuth1NonceStore(engine, self._run)
        # Not in the ``Store`` port: ``store.ports`` sits below ``authz`` (``RateLimiter``).
        # Its own threads: a flood of failed attempts (each one counted, strangers' too) must
        # not queue the nonces, tokens and bookkeeping behind it.
        self._limits_run = Runner(timeout)
        self.rate_limits: RateLimiter = SqlRateLimiter(engine, self._limits_run)

    async def ping(self) -> None:
        """Run ``SELECT 1``; ``BackendUnavailable`` unless the database answers."""

        def work() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        await self._run("ping", work)

    def close(self) -> None:
        """Close every pooled connection."""
        self._run.close()
        self._limits_run.close()
        self.engine.dispose()
