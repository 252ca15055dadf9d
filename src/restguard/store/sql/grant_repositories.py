"""The stores of the authorization code and refresh token grants on SQL: codes, refresh-token
families, remembered consents, opaque access tokens (``repositories.py`` says how operations run).

Single use is one conditional ``UPDATE ... WHERE used_at IS NULL``: of racing callers, in one
process or many, on SQLite (one writer at a time) or PostgreSQL (the row lock; READ COMMITTED
re-checks the condition after waiting), exactly one changes the row. A rotation and a
revocation of the same family both write the family's row, so they never interleave: a
revocation that follows a rotation sees (and revokes) the access token that rotation issued.

A grant ends with its user (``user remove``): the same conditional statements that use a code
or rotate a refresh token also require the user to exist, so a code issued, or a family
started, just before the removal gives nothing afterwards (RFC 6749 §10.5: a code is bound to
the resource owner who authorized it).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, RowMapping, delete, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite

from restguard.store.errors import DuplicateRecord
from restguard.store.ports import (
    AccessTokenRecord,
    AccessTokenStore,
    AuthorizationCodeRecord,
    AuthorizationCodeStore,
    ConsentStore,
    RefreshTokenRecord,
    RefreshTokenStore,
)
from restguard.store.sql.runner import Runner, insert_row, tokens_text, utc_or_none
from restguard.store.sql.tables import (
    oauth2_access_tokens,
    oauth2_codes,
    oauth2_consents,
    oauth2_refresh_tokens,
    oauth2_token_families,
    revoked_tokens,
    to_utc,
    users,
)

#: How long a code is kept after it expired: a replay within this time still revokes what the
#: code produced (RFC 6749 §4.1.2); refresh families outlive it on their own.
_KEEP_USED = timedelta(days=1)


def _user_exists(user_id: Any) -> ColumnElement[bool]:
    """The condition that the user ``user_id`` (a column or a value) still exists."""
    return exists().where(users.c.user_id == user_id)


def _code_record(row: RowMapping) -> AuthorizationCodeRecord:
    return AuthorizationCodeRecord(
        code_hash=bytes(row["code_hash"]),
        client_id=row["client_id"],
        user_id=row["user_id"],
        subject=row["subject"],
        redirect_uri=row["redirect_uri"],
        redirect_uri_given=bool(row["redirect_uri_given"]),
        scopes=tuple(row["scopes"].split()),
        code_challenge=row["code_challenge"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        family_id=row["family_id"],
        access_jti=row["access_jti"],
    )


class SqlAuthorizationCodeStore(AuthorizationCodeStore):
    """``AuthorizationCodeStore`` on ``oauth2_codes``; expired codes are dropped as new ones
    are written."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: AuthorizationCodeRecord) -> None:
        row = {
            "code_hash": bytes(record.code_hash),
            "client_id": record.client_id,
            "user_id": record.user_id,
            "subject": record.subject,
            "redirect_uri": record.redirect_uri,
            "redirect_uri_given": record.redirect_uri_given,
            "scopes": tokens_text(record.scopes),
            "code_challenge": record.code_challenge,
            "created_at": to_utc(record.created_at),
            "expires_at": to_utc(record.expires_at),
        }
        # A used code is kept past its expiry for a while, so that a late replay still
        # revokes what it produced (RFC 6749 §4.1.2).
        stale = to_utc(record.created_at) - _KEEP_USED

        def work() -> None:
            with self._engine.begin() as conn:
                conn.execute(delete(oauth2_codes).where(oauth2_codes.c.expires_at < stale))
                insert_row(conn, oauth2_codes, row, "authorization code")

        await self._run("oauth2_codes.insert", work, write=True)

    async def get(self, code_hash: bytes) -> AuthorizationCodeRecord | None:
        def work() -> AuthorizationCodeRecord | None:
            query = select(oauth2_codes).where(oauth2_codes.c.code_hash == code_hash)
            with self._engine.connect() as conn:
                row = conn.execute(query).mappings().first()
            return None if row is None else _code_record(row)

        return await self._run("oauth2_codes.get", work)

    async def consume(
        self, code_hash: bytes, at: datetime, *, family_id: str | None, access_jti: str
    ) -> bool:
        """True for the one call that uses the code; False if it was used, or if its user
        no longer exists (then it stays unused)."""
        c = oauth2_codes.c
        statement = (
            update(oauth2_codes)
            .where(c.code_hash == code_hash, c.used_at.is_(None), _user_exists(c.user_id))
            .values(used_at=to_utc(at), family_id=family_id, access_jti=access_jti)
        )

        def work() -> bool:
            with self._engine.begin() as conn:
                return conn.execute(statement).rowcount == 1

        return await self._run("oauth2_codes.consume", work, write=True)


def _refresh_record(row: RowMapping) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        token_hash=bytes(row["token_hash"]),
        family_id=row["family_id"],
        client_id=row["client_id"],
        user_id=row["user_id"],
        subject=row["subject"],
        scopes=tuple(row["scopes"].split()),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        access_jti=row["access_jti"],
        access_expires_at=row["access_expires_at"],
        used_at=row["used_at"],
        family_revoked_at=row["family_revoked_at"],
    )


def _refresh_row(record: RefreshTokenRecord) -> dict[str, Any]:
    return {
        "token_hash": bytes(record.token_hash),
        "family_id": record.family_id,
        "client_id": record.client_id,
        "user_id": record.user_id,
        "subject": record.subject,
        "scopes": tokens_text(record.scopes),
        "created_at": to_utc(record.created_at),
        "expires_at": to_utc(record.expires_at),
        "access_jti": record.access_jti,
        "access_expires_at": to_utc(record.access_expires_at),
        "used_at": utc_or_none(record.used_at),
    }


def _insert_ignoring_duplicates(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).values(rows).on_conflict_do_nothing())


class SqlRefreshTokenStore(RefreshTokenStore):
    """``RefreshTokenStore`` on ``oauth2_token_families`` and ``oauth2_refresh_tokens``."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def start_family(self, first: RefreshTokenRecord) -> None:
        family = {
            "family_id": first.family_id,
            "client_id": first.client_id,
            "user_id": first.user_id,
            "created_at": to_utc(first.created_at),
        }
        row = _refresh_row(first)

        def work() -> None:
            with self._engine.begin() as conn:
                insert_row(conn, oauth2_token_families, family, "token family")
                insert_row(conn, oauth2_refresh_tokens, row, "refresh token")

        await self._run("refresh_tokens.start_family", work, write=True)

    async def get(self, token_hash: bytes) -> RefreshTokenRecord | None:
        t, f = oauth2_refresh_tokens.c, oauth2_token_families.c
        query = (
            select(oauth2_refresh_tokens, f.revoked_at.label("family_revoked_at"))
            .join(oauth2_token_families, f.family_id == t.family_id)
            .where(t.token_hash == token_hash)
        )

        def work() -> RefreshTokenRecord | None:
            with self._engine.connect() as conn:
                row = conn.execute(query).mappings().first()
            return None if row is None else _refresh_record(row)

        return await self._run("refresh_tokens.get", work)

    async def rotate(self, used: bytes, new: RefreshTokenRecord, at: datetime) -> str:
        now = to_utc(at)
        t, f = oauth2_refresh_tokens.c, oauth2_token_families.c
        row = _refresh_row(new)

        class _Refused(Exception):
            pass

        def work() -> str:
            try:
                with self._engine.begin() as conn:
                    # SQLite: the write comes first, so the write lock is taken first.
                    took = conn.execute(
                        update(oauth2_refresh_tokens)
                        .where(t.token_hash == used, t.used_at.is_(None))
                        .values(used_at=now)
                    ).rowcount
                    if took != 1:
                        return "reused"
                    live = conn.execute(
                        update(oauth2_token_families)
                        .where(
                            f.family_id == new.family_id,
                            f.revoked_at.is_(None),
                            _user_exists(f.user_id),
                        )
                        .values(rotated_at=now)
                    ).rowcount
                    if live != 1:
                        raise _Refused  # roll back: the used token stays as it was
                    insert_row(conn, oauth2_refresh_tokens, row, "refresh token")
                    return "rotated"
            except _Refused:
                return "revoked"

        return await self._run("refresh_tokens.rotate", work, write=True)

    def _revoke(self, conn: Connection, family_ids: Iterable[str], now: datetime) -> int:
        ids = list(family_ids)
        if not ids:
            return 0
        f, t = oauth2_token_families.c, oauth2_refresh_tokens.c
        conn.execute(
            update(oauth2_token_families)
            .where(f.family_id.in_(ids), f.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        live = conn.execute(
            select(t.access_jti, t.client_id, t.access_expires_at).where(
                t.family_id.in_(ids), t.access_expires_at > now
            )
        ).all()
        rows = [
            {"jti": jti, "client_id": client, "expires_at": exp, "revoked_at": now}
            for jti, client, exp in live
        ]
        _insert_ignoring_duplicates(conn, revoked_tokens, rows)
        return len(ids)

    async def revoke_family(self, family_id: str, at: datetime) -> None:
        now = to_utc(at)

        def work() -> None:
            with self._engine.begin() as conn:
                self._revoke(conn, [family_id], now)

        await self._run("refresh_tokens.revoke_family", work, write=True)

    async def revoke_user(self, user_id: str, at: datetime, client_id: str | None = None) -> int:
        now = to_utc(at)
        f = oauth2_token_families.c
        mine = [f.user_id == user_id, f.revoked_at.is_(None)]
        if client_id is not None:
            mine.append(f.client_id == client_id)

        def work() -> int:
            with self._engine.begin() as conn:
                # (the write first: a no-op update that takes SQLite's write lock)
                conn.execute(
                    update(oauth2_token_families).where(*mine).values(rotated_at=f.rotated_at)
                )
                ids = conn.execute(select(f.family_id).where(*mine)).scalars()
                return self._revoke(conn, list(ids), now)

        return await self._run("refresh_tokens.revoke_user", work, write=True)


class SqlAccessTokenStore(AccessTokenStore):
    """``AccessTokenStore`` on ``oauth2_access_tokens``; expired tokens are dropped as new ones
    are written."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: AccessTokenRecord) -> None:
        row = {
            "token_hash": bytes(record.token_hash),
            "jti": record.jti,
            "client_id": record.client_id,
            "subject": record.subject,
            "scopes": tokens_text(record.scopes),
            "created_at": to_utc(record.created_at),
            "expires_at": to_utc(record.expires_at),
        }
        now = to_utc(record.created_at)
        t = oauth2_access_tokens.c

        def work() -> None:
            with self._engine.begin() as conn:
                conn.execute(delete(oauth2_access_tokens).where(t.expires_at < now))
                insert_row(conn, oauth2_access_tokens, row, "access token")

        await self._run("oauth2_access_tokens.insert", work, write=True)

    async def get(self, token_hash: bytes) -> AccessTokenRecord | None:
        t = oauth2_access_tokens.c
        query = select(oauth2_access_tokens).where(t.token_hash == token_hash)

        def work() -> AccessTokenRecord | None:
            with self._engine.connect() as conn:
                row = conn.execute(query).mappings().first()
            if row is None:
                return None
            return AccessTokenRecord(
                token_hash=bytes(row["token_hash"]),
                jti=row["jti"],
                client_id=row["client_id"],
                subject=row["subject"],
                scopes=tuple(row["scopes"].split()),
                created_at=row["created_at"],
                expires_at=row["expires_at"],
            )

        return await self._run("oauth2_access_tokens.get", work)


class SqlConsentStore(ConsentStore):
    """``ConsentStore`` on ``oauth2_consents``."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def granted(self, user_id: str, client_id: str) -> tuple[str, ...]:
        c = oauth2_consents.c
        query = select(c.scopes).where(c.user_id == user_id, c.client_id == client_id)

        def work() -> tuple[str, ...]:
            with self._engine.connect() as conn:
                found = conn.execute(query).scalar()
            return () if found is None else tuple(found.split())

        return await self._run("consents.granted", work)

    async def grant(
        self, user_id: str, client_id: str, scopes: tuple[str, ...], at: datetime
    ) -> None:
        now = to_utc(at)
        c = oauth2_consents.c
        mine = (c.user_id == user_id, c.client_id == client_id)

        def attempt() -> None:
            with self._engine.begin() as conn:
                touched = conn.execute(
                    update(oauth2_consents).where(*mine).values(granted_at=now)
                ).rowcount
                if touched == 0:
                    row = {
                        "user_id": user_id,
                        "client_id": client_id,
                        "scopes": tokens_text(scopes),
                        "granted_at": now,
                    }
                    insert_row(conn, oauth2_consents, row, "consent")
                    return
                before = conn.execute(select(c.scopes).where(*mine)).scalar_one().split()
                union = tokens_text(dict.fromkeys([*before, *scopes]))
                conn.execute(update(oauth2_consents).where(*mine).values(scopes=union))

        def work() -> None:
            try:
                attempt()
            except DuplicateRecord:  # another request inserted it first: add to theirs
                attempt()

        await self._run("consents.grant", work, write=True)

    async def list(self, user_id: str) -> builtins.list[tuple[str, tuple[str, ...], datetime]]:
        c = oauth2_consents.c
        query = (
            select(c.client_id, c.scopes, c.granted_at)
            .where(c.user_id == user_id)
            .order_by(c.granted_at, c.client_id)
        )

        def work() -> builtins.list[tuple[str, tuple[str, ...], datetime]]:
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            return [(client, tuple(scopes.split()), at) for client, scopes, at in rows]

        return await self._run("consents.list", work)

    async def revoke(self, user_id: str, client_id: str | None = None) -> int:
        c = oauth2_consents.c
        statement = delete(oauth2_consents).where(c.user_id == user_id)
        if client_id is not None:
            statement = statement.where(c.client_id == client_id)

        def work() -> int:
            with self._engine.begin() as conn:
                return conn.execute(statement).rowcount

        return await self._run("consents.revoke", work, write=True)
