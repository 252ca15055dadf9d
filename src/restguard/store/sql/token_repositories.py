"""The stores of the token methods on SQL: external JWT issuers, OAuth 2.0 clients, revoked
access tokens (``repositories.py`` says how operations run)."""

from __future__ import annotations

import builtins
import contextlib
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, RowMapping, delete, select

from restguard.store.errors import DuplicateRecord, UnknownRecord
from restguard.store.ports import (
    IssuerRecord,
    IssuerStore,
    OAuthClientRecord,
    OAuthClientStore,
    RevokedTokenStore,
)
from restguard.store.sql.revocation import revoke_row
from restguard.store.sql.runner import Runner, insert_row, tokens_text, utc_or_none
from restguard.store.sql.tables import issuers, oauth2_clients, revoked_tokens, to_utc


def _issuer_row(record: IssuerRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "issuer": record.issuer,
        "jwks_uri": record.jwks_uri,
        "audience": record.audience,
        "algorithms": tokens_text(record.algorithms),
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
        "grants": tokens_text(record.grants, "grant"),
        "redirect_uris": tokens_text(record.redirect_uris, "redirect URI"),
        "scopes": tokens_text(record.scopes),
        "token_format": record.token_format,
        "created_at": to_utc(record.created_at),
        "revoked_at": utc_or_none(record.revoked_at),
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


class SqlIssuerStore(IssuerStore):
    """``IssuerStore`` on the ``issuers`` table."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: IssuerRecord) -> None:
        """Add an issuer; ``DuplicateRecord`` if its id or issuer exists (nothing written)."""
        row = _issuer_row(record)

        def work() -> None:
            with self._engine.begin() as conn:
                insert_row(conn, issuers, row, f"issuer {record.issuer!r}")

        await self._run("issuers.insert", work, write=True)

    async def list(self) -> builtins.list[IssuerRecord]:
        """All issuers, oldest first (by ``created_at``, then id)."""

        def work() -> builtins.list[IssuerRecord]:
            query = select(issuers).order_by(issuers.c.created_at, issuers.c.id)
            with self._engine.connect() as conn:
                return [_issuer_record(row) for row in conn.execute(query).mappings()]

        return await self._run("issuers.list", work)

    async def remove(self, issuer_id: str) -> IssuerRecord:
        """Delete and return the issuer; ``UnknownRecord`` if absent (nothing changes). One
        ``DELETE ... RETURNING``: of two removals at once exactly one gets the record (a read
        before the delete would let both report it removed)."""

        def work() -> IssuerRecord:
            statement = delete(issuers).where(issuers.c.id == issuer_id).returning(*issuers.c)
            with self._engine.begin() as conn:
                row = conn.execute(statement).mappings().first()
            if row is None:
                raise UnknownRecord(f"no issuer has id {issuer_id!r}")
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
                insert_row(conn, oauth2_clients, row, f"OAuth 2.0 client {record.client_id!r}")

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

    async def revoke(
        self, client_id: str, at: datetime, *, expected: OAuthClientRecord | None = None
    ) -> OAuthClientRecord:
        """Set ``revoked_at`` to ``at`` unless an earlier one is set; ``UnknownRecord`` if
        absent; with ``expected``, ``StaleRecord`` when its ``revoked_at`` (the one column of a
        client that changes after it is made) changed since (nothing changes)."""
        at = to_utc(at)
        c = oauth2_clients.c
        read = None if expected is None else [(c.revoked_at, utc_or_none(expected.revoked_at))]
        what = f"OAuth 2.0 client {client_id!r}"

        def work() -> OAuthClientRecord:
            with self._engine.begin() as conn:
                row = revoke_row(conn, oauth2_clients, (c.client_id, client_id), at, what, read)
            return _oauth2_client_record(row)

        return await self._run("oauth2_clients.revoke", work, write=True)


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
                    insert_row(conn, revoked_tokens, row, f"revocation of {jti!r}")

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
