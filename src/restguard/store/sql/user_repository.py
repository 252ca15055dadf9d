"""``UserStore`` on SQL: the resource owners of the authorization server (``users`` table).

Operations run as ``repositories.py`` describes (``runner.py``: worker threads, a deadline,
driver errors become ``BackendUnavailable``). The login throttle is counted by one ``UPDATE``
that reads and writes the row itself (``failed_logins = failed_logins + 1``), so concurrent
failures on any number of instances each count once: PostgreSQL locks the row for the
statement's transaction and re-reads it after a concurrent writer commits (READ COMMITTED);
SQLite runs one write transaction at a time.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Integer, RowMapping, case, delete, literal, or_, select, update

from restguard.store.errors import UnknownRecord
from restguard.store.ports import UserRecord, UserStore
from restguard.store.sql.runner import Runner, insert_row, tokens_text, utc_or_none
from restguard.store.sql.tables import UtcDateTime, to_utc, users


def _user_row(record: UserRecord) -> dict[str, Any]:
    return {
        "user_id": record.user_id,
        "username": record.username,
        "password_hash": record.password_hash,
        "scopes": tokens_text(record.scopes),
        "created_at": to_utc(record.created_at),
        "failed_logins": int(record.failed_logins),
        "locked_until": utc_or_none(record.locked_until),
    }


def _user_record(row: RowMapping) -> UserRecord:
    return UserRecord(
        user_id=row["user_id"],
        username=row["username"],
        password_hash=row["password_hash"],
        scopes=tuple(row["scopes"].split()),
        created_at=row["created_at"],
        failed_logins=row["failed_logins"],
        locked_until=row["locked_until"],
    )


class SqlUserStore(UserStore):
    """``UserStore`` on the ``users`` table."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: UserRecord) -> None:
        """Add a user; ``DuplicateRecord`` if its user_id or username exists (nothing written)."""
        row = _user_row(record)

        def work() -> None:
            with self._engine.begin() as conn:
                insert_row(conn, users, row, f"a user named {record.username!r}")

        await self._run("users.insert", work, write=True)

    async def get(self, user_id: str) -> UserRecord | None:
        def work() -> UserRecord | None:
            with self._engine.connect() as conn:
                row = conn.execute(select(users).where(users.c.user_id == user_id)).mappings()
                found = row.first()
            return None if found is None else _user_record(found)

        return await self._run("users.get", work)

    async def by_username(self, username: str) -> UserRecord | None:
        def work() -> UserRecord | None:
            with self._engine.connect() as conn:
                row = conn.execute(select(users).where(users.c.username == username)).mappings()
                found = row.first()
            return None if found is None else _user_record(found)

        return await self._run("users.by_username", work)

    async def list(self) -> builtins.list[UserRecord]:
        """All users, oldest first (by ``created_at``, then user_id)."""

        def work() -> builtins.list[UserRecord]:
            query = select(users).order_by(users.c.created_at, users.c.user_id)
            with self._engine.connect() as conn:
                return [_user_record(row) for row in conn.execute(query).mappings()]

        return await self._run("users.list", work)

    async def remove(self, user_id_or_username: str) -> UserRecord:
        """Delete and return the user with this user_id, else this username; ``UnknownRecord``
        if neither exists (nothing changes). One transaction."""
        key = user_id_or_username

        def work() -> UserRecord:
            c = users.c
            with self._engine.begin() as conn:
                # the DELETE comes first, so SQLite takes its write lock before reading
                gone = conn.execute(delete(users).where(c.user_id == key).returning(*users.c))
                row = gone.mappings().first()
                if row is None:
                    gone = conn.execute(delete(users).where(c.username == key).returning(*users.c))
                    row = gone.mappings().first()
            if row is None:
                raise UnknownRecord(f"no user has the id or username {key!r}")
            return _user_record(row)

        return await self._run("users.remove", work, write=True)

    async def login_attempt(
        self, user_id: str, now: datetime, *, lock_after: int, lock_for: timedelta
    ) -> UserRecord | None:
        """One ``UPDATE ... RETURNING`` on a user not locked at ``now``: ``failed_logins + 1``,
        and ``locked_until = now + lock_for`` when that is a multiple of ``lock_after`` (the
        module doc says why this is atomic). None, and nothing written, if there is no such
        user or it is locked."""
        if lock_after < 1:
            raise ValueError("lock_after must be at least 1")
        at = to_utc(now)
        until = at + lock_for
        c = users.c
        count = c.failed_logins + literal(1, Integer)
        statement = (
            update(users)
            .where(
                c.user_id == user_id,
                or_(c.locked_until.is_(None), c.locked_until <= literal(at, UtcDateTime)),
            )
            .values(
                failed_logins=count,
                locked_until=case(
                    (count % literal(lock_after, Integer) == 0, literal(until, UtcDateTime)),
                    else_=c.locked_until,
                ),
            )
            .returning(*users.c)
        )

        def work() -> UserRecord | None:
            with self._engine.begin() as conn:
                row = conn.execute(statement).mappings().first()
            return None if row is None else _user_record(row)

        return await self._run("users.login_attempt", work, write=True)

    async def login_succeeded(self, user_id: str, new_password_hash: str | None) -> None:
        """Reset the throttle and, when given, replace the password hash (one ``UPDATE``)."""
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        if new_password_hash is not None:
            values["password_hash"] = new_password_hash
        statement = update(users).where(users.c.user_id == user_id).values(**values)

        def work() -> None:
            with self._engine.begin() as conn:
                conn.execute(statement)

        await self._run("users.login_succeeded", work, write=True)
