"""In-memory fakes of the storage ports, for unit tests of the core only.

Storage itself is tested on the real databases in tests/integration/test_sql_store.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from restguard.credentials.apikey import new_record
from restguard.store.errors import DuplicateRecord, StaleRecord, UnknownRecord
from restguard.store.ports import ApiKeyRecord, SigningKeyRecord

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class FakeApiKeyStore:
    """Implements ``restguard.store.ports.ApiKeyStore`` in a dict; counts reads and touches."""

    def __init__(self) -> None:
        self.records: dict[str, ApiKeyRecord] = {}
        self.gets = 0
        self.touches: list[tuple[str, datetime]] = []

    async def insert(self, record: ApiKeyRecord) -> None:
        if record.id in self.records:
            raise DuplicateRecord(record.id)
        self.records[record.id] = record

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        self.gets += 1
        return self.records.get(key_id)

    async def list(self) -> list[ApiKeyRecord]:
        return sorted(self.records.values(), key=lambda r: r.created_at)

    async def revoke(
        self, key_id: str, at: datetime, *, expected: ApiKeyRecord | None = None
    ) -> ApiKeyRecord:
        if key_id not in self.records:
            raise UnknownRecord(key_id)
        rec = self.records[key_id]
        if expected is not None and rec.revoked_at != expected.revoked_at:
            raise StaleRecord(key_id)
        if rec.revoked_at is None or rec.revoked_at > at:
            rec = dataclasses.replace(rec, revoked_at=at)
            self.records[key_id] = rec
        return rec

    async def rotate(
        self,
        old_id: str,
        new: ApiKeyRecord,
        old_revoked_at: datetime,
        *,
        expected: ApiKeyRecord | None = None,
    ) -> None:
        await self.revoke(old_id, old_revoked_at, expected=expected)
        await self.insert(new)

    async def touch(self, uses: Mapping[str, datetime]) -> None:
        for key_id, at in uses.items():
            self.touches.append((key_id, at))
            if key_id in self.records:
                self.records[key_id] = dataclasses.replace(self.records[key_id], last_used_at=at)

    # -- helpers for tests ---------------------------------------------------------------------

    def add(
        self,
        *scopes: str,
        name: str = "tester",
        now: datetime = T0,
        expires_in: int | None = None,
        **fields: object,
    ) -> tuple[ApiKeyRecord, str]:
        """Store a fresh key and return (record, key)."""
        record, key = new_record(name, tuple(scopes), now, expires_in)
        if fields:
            record = dataclasses.replace(record, **fields)  # type: ignore[arg-type]
        self.records[record.id] = record
        return record, key

    def set(self, key_id: str, **fields: object) -> None:
        self.records[key_id] = dataclasses.replace(self.records[key_id], **fields)  # type: ignore[arg-type]


class FakeSigningKeyStore:
    """Implements ``restguard.store.ports.SigningKeyStore`` in a list (newest first)."""

    def __init__(self) -> None:
        self.records: list[SigningKeyRecord] = []
        self.fail: Exception | None = None  # raised by ``list`` while set

    async def insert(self, record: SigningKeyRecord) -> None:
        self.records.append(record)

    async def list(self) -> list[SigningKeyRecord]:
        if self.fail is not None:
            raise self.fail
        return sorted(self.records, key=lambda r: r.created_at, reverse=True)

    async def rotate(self, new: SigningKeyRecord, retire_at: datetime) -> None:
        if any(r.kid == new.kid for r in self.records):
            raise DuplicateRecord(new.kid)
        self.records = [
            r
            if r.retired_at is not None and r.retired_at <= retire_at
            else dataclasses.replace(r, retired_at=retire_at)
            for r in self.records
        ]
        self.records.append(new)


class FakeRevokedTokenStore:
    """Implements ``restguard.store.ports.RevokedTokenStore`` in a dict (jti -> expiry)."""

    def __init__(self) -> None:
        self.rows: dict[str, datetime] = {}
        self.down = False

    async def revoke(self, jti: str, client_id: str, expires_at: datetime, at: datetime) -> None:
        self.rows.setdefault(jti, expires_at)

    async def active(self, now: datetime) -> list[str]:
        if self.down:
            from restguard.errors import BackendUnavailable

            raise BackendUnavailable(debug="down")
        return [jti for jti, expires in self.rows.items() if expires > now]


def server_parts(
    issuer: str,
    clients: Any,
    tokens: Any,
    clock: Any,
    inspector: Any,
    revoked: FakeRevokedTokenStore,
    **kwargs: Any,
) -> Any:
    """``oauth2.server.ServerParts`` for the token endpoints' unit tests: a store of which only
    the revoked tokens are used (the grants that need the others are tested on SQL)."""
    from types import SimpleNamespace

    from restguard.oauth2.server import ServerParts
    from restguard.oauth2.web_tokens import WebTokens

    store = SimpleNamespace(
        revoked_tokens=revoked,
        refresh_tokens=None,
        oauth2_codes=None,
        users=None,
        consents=None,
        device_codes=None,
    )
    return ServerParts(issuer, clients, tokens, store, WebTokens(None), clock, inspector, **kwargs)  # type: ignore[arg-type]
