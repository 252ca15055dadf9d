"""The device authorization grant's store on SQL (RFC 8628): ``oauth2_device_codes``.

Every change of state is one conditional ``UPDATE``: ``approve``/``deny`` only ``WHERE status =
'pending'`` and unexpired, ``consume`` only ``WHERE status = 'approved'``. Of racing callers, in
one process or many, on SQLite (one writer at a time) or PostgreSQL (the row lock; READ
COMMITTED re-checks the condition after waiting), exactly one changes the row. ``poll`` is a
compare-and-set on the previous poll time: of two polls racing on one code only one can find
the interval respected; the other is too fast.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, RowMapping, delete, exists, select, update

from restguard.store.ports import DeviceCodeRecord, DeviceCodeStore
from restguard.store.sql.runner import Runner, insert_row, tokens_text, utc_or_none
from restguard.store.sql.tables import oauth2_device_codes, to_utc, users

#: How long a device code is kept after it expired, so that a late poll still hears
#: ``expired_token`` (RFC 8628 §3.5) rather than ``invalid_grant``.
_KEEP_EXPIRED = timedelta(days=1)

_c = oauth2_device_codes.c


def _record(row: RowMapping) -> DeviceCodeRecord:
    return DeviceCodeRecord(
        device_code_hash=bytes(row["device_code_hash"]),
        user_code=row["user_code"],
        client_id=row["client_id"],
        scopes=tuple(row["scopes"].split()),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        interval=int(row["interval"]),
        status=row["status"],
        last_polled_at=row["last_polled_at"],
        user_id=row["user_id"],
        subject=row["subject"],
        granted_scopes=tuple((row["granted_scopes"] or "").split()),
        used_at=row["used_at"],
    )


class SqlDeviceCodeStore(DeviceCodeStore):
    """``DeviceCodeStore`` on ``oauth2_device_codes``. Writing a new code also ends the
    pending codes that expired (``status = 'expired'``: their user codes are free again) and
    drops those expired for a day."""

    def __init__(self, engine: Engine, run: Runner) -> None:
        self._engine, self._run = engine, run

    async def insert(self, record: DeviceCodeRecord) -> None:
        now = to_utc(record.created_at)
        row = {
            "device_code_hash": bytes(record.device_code_hash),
            "user_code": record.user_code,
            "client_id": record.client_id,
            "scopes": tokens_text(record.scopes),
            "created_at": now,
            "expires_at": to_utc(record.expires_at),
            "interval": record.interval,
            "last_polled_at": utc_or_none(record.last_polled_at),
            "status": record.status,
            "user_id": record.user_id,
            "subject": record.subject,
            "granted_scopes": tokens_text(record.granted_scopes),
            "used_at": utc_or_none(record.used_at),
        }

        def work() -> None:
            with self._engine.begin() as conn:
                conn.execute(
                    update(oauth2_device_codes)
                    .where(_c.status == "pending", _c.expires_at <= now)
                    .values(status="expired")
                )
                conn.execute(delete(oauth2_device_codes).where(_c.expires_at < now - _KEEP_EXPIRED))
                insert_row(conn, oauth2_device_codes, row, "device code")

        await self._run("device_codes.insert", work, write=True)

    async def get(self, device_code_hash: bytes) -> DeviceCodeRecord | None:
        query = select(oauth2_device_codes).where(_c.device_code_hash == device_code_hash)

        def work() -> DeviceCodeRecord | None:
            with self._engine.connect() as conn:
                row = conn.execute(query).mappings().first()
            return None if row is None else _record(row)

        return await self._run("device_codes.get", work)

    async def by_user_code(self, user_code: str, now: datetime) -> DeviceCodeRecord | None:
        query = select(oauth2_device_codes).where(
            _c.user_code == user_code, _c.status == "pending", _c.expires_at > to_utc(now)
        )

        def work() -> DeviceCodeRecord | None:
            with self._engine.connect() as conn:
                row = conn.execute(query).mappings().first()
            return None if row is None else _record(row)

        return await self._run("device_codes.by_user_code", work)

    async def _decide(self, operation: str, user_code: str, at: datetime, **values: object) -> bool:
        now = to_utc(at)
        statement = (
            update(oauth2_device_codes)
            .where(_c.user_code == user_code, _c.status == "pending", _c.expires_at > now)
            .values(**values)
        )

        def work() -> bool:
            with self._engine.begin() as conn:
                return conn.execute(statement).rowcount == 1

        return await self._run(operation, work, write=True)

    async def approve(
        self,
        user_code: str,
        *,
        user_id: str,
        subject: str,
        scopes: tuple[str, ...],
        at: datetime,
    ) -> bool:
        return await self._decide(
            "device_codes.approve",
            user_code,
            at,
            status="approved",
            user_id=user_id,
            subject=subject,
            granted_scopes=tokens_text(scopes),
        )

    async def deny(self, user_code: str, at: datetime) -> bool:
        return await self._decide("device_codes.deny", user_code, at, status="denied")

    async def poll(self, device_code_hash: bytes, at: datetime, *, step: int) -> bool:
        now = to_utc(at)
        mine = _c.device_code_hash == device_code_hash
        read = select(_c.last_polled_at, _c.interval).where(mine)

        def work() -> bool:
            with self._engine.connect() as conn:
                found = conn.execute(read).first()
            if found is None:
                return False
            last, interval = found
            if last is None or now >= last + timedelta(seconds=int(interval)):
                same = _c.last_polled_at.is_(None) if last is None else _c.last_polled_at == last
                with self._engine.begin() as conn:
                    took = conn.execute(
                        update(oauth2_device_codes).where(mine, same).values(last_polled_at=now)
                    ).rowcount
                if took == 1:
                    return False
            # Too fast, or another poll of this code came in between: RFC 8628 §3.5.
            with self._engine.begin() as conn:
                conn.execute(
                    update(oauth2_device_codes)
                    .where(mine)
                    .values(interval=_c.interval + step, last_polled_at=now)
                )
            return True

        return await self._run("device_codes.poll", work, write=True)

    async def consume(self, device_code_hash: bytes, at: datetime) -> bool:
        statement = (
            update(oauth2_device_codes)
            .where(
                _c.device_code_hash == device_code_hash,
                _c.status == "approved",
                exists().where(users.c.user_id == _c.user_id),  # not for a removed user
            )
            .values(status="used", used_at=to_utc(at))
        )

        def work() -> bool:
            with self._engine.begin() as conn:
                return conn.execute(statement).rowcount == 1

        return await self._run("device_codes.consume", work, write=True)
