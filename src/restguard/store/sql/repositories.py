"""The storage ports on SQL: SQLite or PostgreSQL through one synchronous SQLAlchemy engine.

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
import builtins
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    bindparam,
    delete,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from restguard.errors import BackendUnavailable
from restguard.store.errors import DuplicateRecord, StoreError, UnknownRecord
from restguard.store.ports import (
    ApiKeyRecord,
    ApiKeyStore,
    IssuerRecord,
    IssuerStore,
    MasterKeyCheckStore,
    OAuthClientRecord,
    OAuthClientStore,
    RevokedTokenStore,
    SigningKeyRecord,
    SigningKeyStore,
    Store,
)
from restguard.store.sql.reseal import sealed_secrets
from restguard.store.sql.tables import (
    MASTER_KEY_CHECK_ID,
    api_keys,
    issuers,
    master_key_check,
    oauth2_clients,
    revoked_tokens,
    signing_keys,
    to_utc,
)

__all__ = [
    "SqlApiKeyStore",
    "SqlIssuerStore",
    "SqlMasterKeyCheckStore",
    "SqlOAuthClientStore",
    "SqlSigningKeyStore",
    "SqlStore",
]

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
            return await asyncio.wait_for(future, self.timeout)
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


def _is_unique_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    return (
        getattr(orig, "sqlstate", None) == _PG_UNIQUE_VIOLATION
        or getattr(orig, "sqlite_errorname", None) in _SQLITE_UNIQUE
    )


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else to_utc(value)


def _scopes_text(scopes: Iterable[str], what: str = "scope") -> str:
    """Space-separated ``scopes`` (or grants, redirect URIs: ``what``); ValueError for a value
    that would not read back as itself."""
    scopes = tuple(scopes)
    for scope in scopes:
        if not scope or scope != scope.strip() or any(c.isspace() for c in scope):
            raise ValueError(f"a {what} must be a non-empty token without spaces: {scope!r}")
    return " ".join(scopes)


def _api_key_row(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "key_hash": bytes(record.key_hash),
        "scopes": _scopes_text(record.scopes),
        "created_at": to_utc(record.created_at),
        "expires_at": _utc_or_none(record.expires_at),
        "revoked_at": _utc_or_none(record.revoked_at),
        "last_used_at": _utc_or_none(record.last_used_at),
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
        "retired_at": _utc_or_none(record.retired_at),
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


def _issuer_row(record: IssuerRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "issuer": record.issuer,
        "jwks_uri": record.jwks_uri,
        "audience": record.audience,
        "algorithms": _scopes_text(record.algorithms),
        "scope_claim": record.scope_claim,
        "typ": record.typ,
        "leeway": float(record.leeway),
        "created_at": to_utc(record.created_at),
    }


def _issuer_record(row: RowMapping) -> IssuerRecord:
    return IssuerRecord(
        id=row["id"],
        issuer=row["issuer"],
        jwks_uri=row["jwks_uri"],
        audience=row["audience"],
        algorithms=tuple(row["algorithms"].split()),
        scope_claim=row["scope_claim"],
        typ=row["typ"],
        created_at=row["created_at"],
        leeway=row["leeway"],
    )


def _oauth2_client_row(record: OAuthClientRecord) -> dict[str, Any]:
    return {
        "client_id": record.client_id,
        "name": record.name,
        "secret_hash": None if record.secret_hash is None else bytes(record.secret_hash),
        "grants": _scopes_text(record.grants, "grant"),
        "redirect_uris": _scopes_text(record.redirect_uris, "redirect URI"),
        "scopes": _scopes_text(record.scopes),
        "token_format": record.token_format,
        "created_at": to_utc(record.created_at),
        "revoked_at": _utc_or_none(record.revoked_at),
    }


def _oauth2_client_record(row: RowMapping) -> OAuthClientRecord:
    secret_hash = row["secret_hash"]
    return OAuthClientRecord(
        client_id=row["client_id"],
        name=row["name"],
        secret_hash=None if secret_hash is None else bytes(secret_hash),
        grants=tuple(row["grants"].split()),
        redirect_uris=tuple(row["redirect_uris"].split()),
        scopes=tuple(row["scopes"].split()),
        token_format=row["token_format"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def _insert_row(conn: Connection, table: Any, row: dict[str, Any], what: str) -> None:
    """Insert ``row``; ``DuplicateRecord`` on a primary-key clash (the transaction is then void)."""
    try:
        conn.execute(insert(table).values(**row))
    except IntegrityError as exc:
        if _is_unique_violation(exc):
            raise DuplicateRecord(f"{what} already exists") from None
        raise


def _revoke_in(conn: Connection, key_id: str, at: datetime) -> ApiKeyRecord:
    """Set ``revoked_at`` to ``at`` unless an earlier one is set; ``UnknownRecord`` if absent."""
    col = api_keys.c.revoked_at
    conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, or_(col.is_(None), col > at))
        .values(revoked_at=at)
    )
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
    if row is None:
        raise UnknownRecord(f"no API key has id {key_id!r}")
    return _api_key_record(row)


class SqlApiKeyStore(ApiKeyStore):
    """``ApiKeyStore`` on the ``api_keys`` table."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: ApiKeyRecord) -> None:
        row = _api_key_row(record)

        def work() -> None:
            with self._engine.begin() as conn:
                _insert_row(conn, api_keys, row, f"API key {record.id!r}")

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

    async def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent."""
        at = to_utc(at)

        def work() -> ApiKeyRecord:
            with self._engine.begin() as conn:
                return _revoke_in(conn, key_id, at)

        return await self._run("api_keys.revoke", work, write=True)

    async def rotate(self, old_id: str, new: ApiKeyRecord, old_revoked_at: datetime) -> None:
        """In one transaction: insert ``new`` and revoke ``old_id`` at ``old_revoked_at``.

        ``DuplicateRecord`` if ``new.id`` exists, ``UnknownRecord`` if ``old_id`` does not; in
        both cases nothing changes.
        """
        row = _api_key_row(new)
        at = to_utc(old_revoked_at)

        def work() -> None:
            with self._engine.begin() as conn:
                _insert_row(conn, api_keys, row, f"API key {new.id!r}")
                _revoke_in(conn, old_id, at)

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
                _insert_row(conn, signing_keys, row, f"signing key {record.kid!r}")

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
                _insert_row(conn, signing_keys, row, f"signing key {new.kid!r}")
                conn.execute(
                    update(signing_keys)
                    .where(signing_keys.c.kid != new.kid, or_(col.is_(None), col > at))
                    .values(retired_at=at)
                )

        await self._run("signing_keys.rotate", work, write=True)


class SqlIssuerStore(IssuerStore):
    """``IssuerStore`` on the ``issuers`` table."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: IssuerRecord) -> None:
        """Add an issuer; ``DuplicateRecord`` if its id or issuer exists (nothing written)."""
        row = _issuer_row(record)

        def work() -> None:
            with self._engine.begin() as conn:
                _insert_row(conn, issuers, row, f"issuer {record.issuer!r}")

        await self._run("issuers.insert", work, write=True)

    async def list(self) -> builtins.list[IssuerRecord]:
        """All issuers, oldest first (by ``created_at``, then id)."""

        def work() -> builtins.list[IssuerRecord]:
            query = select(issuers).order_by(issuers.c.created_at, issuers.c.id)
            with self._engine.connect() as conn:
                return [_issuer_record(row) for row in conn.execute(query).mappings()]

        return await self._run("issuers.list", work)

    async def remove(self, issuer_id: str) -> IssuerRecord:
        """Delete and return the issuer; ``UnknownRecord`` if absent (nothing changes)."""

        def work() -> IssuerRecord:
            with self._engine.begin() as conn:
                query = select(issuers).where(issuers.c.id == issuer_id)
                row = conn.execute(query).mappings().first()
                if row is None:
                    raise UnknownRecord(f"no issuer has id {issuer_id!r}")
                conn.execute(delete(issuers).where(issuers.c.id == issuer_id))
                return _issuer_record(row)

        return await self._run("issuers.remove", work, write=True)


class SqlOAuthClientStore(OAuthClientStore):
    """``OAuthClientStore`` on the ``oauth2_clients`` table."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: OAuthClientRecord) -> None:
        """Add a client; ``DuplicateRecord`` if the client_id exists (nothing written)."""
        row = _oauth2_client_row(record)

        def work() -> None:
            with self._engine.begin() as conn:
                _insert_row(conn, oauth2_clients, row, f"OAuth 2.0 client {record.client_id!r}")

        await self._run("oauth2_clients.insert", work, write=True)

    async def get(self, client_id: str) -> OAuthClientRecord | None:
        def work() -> OAuthClientRecord | None:
            with self._engine.connect() as conn:
                query = select(oauth2_clients).where(oauth2_clients.c.client_id == client_id)
                row = conn.execute(query).mappings().first()
            return None if row is None else _oauth2_client_record(row)

        return await self._run("oauth2_clients.get", work)

    async def list(self) -> builtins.list[OAuthClientRecord]:
        """All clients, oldest first (by ``created_at``, then client_id)."""

        def work() -> builtins.list[OAuthClientRecord]:
            c = oauth2_clients.c
            query = select(oauth2_clients).order_by(c.created_at, c.client_id)
            with self._engine.connect() as conn:
                return [_oauth2_client_record(row) for row in conn.execute(query).mappings()]

        return await self._run("oauth2_clients.list", work)

    async def revoke(self, client_id: str, at: datetime) -> OAuthClientRecord:
        """Set ``revoked_at`` to ``at`` unless an earlier one is set; ``UnknownRecord`` if
        absent (nothing changes)."""
        at = to_utc(at)
        c = oauth2_clients.c

        def work() -> OAuthClientRecord:
            with self._engine.begin() as conn:
                conn.execute(
                    update(oauth2_clients)
                    .where(c.client_id == client_id, or_(c.revoked_at.is_(None), c.revoked_at > at))
                    .values(revoked_at=at)
                )
                query = select(oauth2_clients).where(c.client_id == client_id)
                row = conn.execute(query).mappings().first()
            if row is None:
                raise UnknownRecord(f"no OAuth 2.0 client has client_id {client_id!r}")
            return _oauth2_client_record(row)

        return await self._run("oauth2_clients.revoke", work, write=True)


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
                    _insert_row(conn, master_key_check, row, "the master-key check")
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


class SqlRevokedTokenStore(RevokedTokenStore):
    """``RevokedTokenStore`` on the ``revoked_tokens`` table."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def revoke(self, jti: str, client_id: str, expires_at: datetime, at: datetime) -> None:
        row = {
            "jti": jti,
            "client_id": client_id,
            "expires_at": to_utc(expires_at),
            "revoked_at": to_utc(at),
        }
        now = to_utc(at)

        def work() -> None:
            with self._engine.begin() as conn:
                conn.execute(delete(revoked_tokens).where(revoked_tokens.c.expires_at < now))
                found = conn.execute(
                    select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti)
                ).first()
                if found is None:
                    _insert_row(conn, revoked_tokens, row, f"revocation of {jti!r}")

        # revoked at the same moment by another request or instance: done either way
        with contextlib.suppress(DuplicateRecord):
            await self._run("revoked_tokens.revoke", work, write=True)

    async def active(self, now: datetime) -> builtins.list[str]:
        at = to_utc(now)

        def work() -> builtins.list[str]:
            query = select(revoked_tokens.c.jti).where(revoked_tokens.c.expires_at > at)
            with self._engine.connect() as conn:
                return [row[0] for row in conn.execute(query)]

        return await self._run("revoked_tokens.active", work)


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

    async def ping(self) -> None:
        """Run ``SELECT 1``; ``BackendUnavailable`` unless the database answers."""

        def work() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        await self._run("ping", work)

    def close(self) -> None:
        """Close every pooled connection."""
        self._run.close()
        self.engine.dispose()
