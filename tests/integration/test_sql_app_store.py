"""The signing apps' stores on SQLite and the real PostgreSQL: app records (round trip,
duplicates, revocation, atomic rotation), their sealed secrets in the master-key registry, and
signature nonces that are single-use under races between separate connections (as between the
workers of `serve --workers N` and between instances)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from restguard.credentials.apps import (
    ED25519,
    HMAC_SHA256,
    decode_secret,
    new_app,
    secret_purpose,
    verification_key,
)
from restguard.keys.sealing import Sealer
from restguard.store.errors import DuplicateRecord, UnknownRecord
from restguard.store.ports import AppRecord
from restguard.store.sql import SqlStore, migrate, open_store
from restguard.store.sql.nonce_batches import CLOCK_SKEW_MARGIN
from restguard.store.sql.reseal import check_all, reseal_all
from restguard.store.sql.tables import signature_nonces
from tests.signature_support import keyed_with

T0 = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
RACERS = 8
SEALER = Sealer(b"\x01" * 32)


def hmac_app(name: str = "svc", **fields: object) -> tuple[AppRecord, str]:
    record, secret = new_app(name, ["notes:read"], HMAC_SHA256, None, now=T0, sealer=SEALER)
    assert secret is not None
    return replace(record, **fields), secret  # type: ignore[arg-type]


def ed_app(name: str = "edge", **fields: object) -> AppRecord:
    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    record, _ = new_app(name, ["a", "b"], ED25519, pem, now=T0, sealer=None)
    return replace(record, **fields)  # type: ignore[arg-type]


# --- apps ----------------------------------------------------------------------------------------


async def test_round_trip_keeps_values_order_and_utc(store: SqlStore) -> None:
    record, secret = hmac_app(
        created_at=datetime(2030, 1, 1, 14, 0, 0, 123456, tzinfo=CEST),
        scopes=("write", "admin", "read"),
    )
    public = ed_app(revoked_at=T0 + timedelta(hours=1))
    await store.apps.insert(record)
    await store.apps.insert(public)
    got = await store.apps.get(record.key_id)
    assert got == replace(record, created_at=T0)  # the same instant, read back in UTC
    assert got is not None and got.created_at.tzinfo is UTC
    assert got.scopes == ("write", "admin", "read")
    assert await store.apps.get(public.key_id) == public
    assert await store.apps.get("app_nosuch0000000000") is None
    assert keyed_with(verification_key(got, SEALER), decode_secret(secret))  # opens after storage
    assert isinstance(verification_key(public, SEALER), ed25519.Ed25519PublicKey)


async def test_list_is_oldest_first_then_by_key_id(store: SqlStore) -> None:
    b, _ = hmac_app(key_id="app_b000000000000000", created_at=T0)
    a, _ = hmac_app(key_id="app_a000000000000000", created_at=T0)
    older = ed_app(key_id="app_z000000000000000", created_at=T0 - timedelta(days=1))
    for record in (b, a, older):
        await store.apps.insert(record)
    assert [r.key_id for r in await store.apps.list()] == [older.key_id, a.key_id, b.key_id]


async def test_duplicate_insert_raises_and_keeps_the_first(store: SqlStore) -> None:
    first, _ = hmac_app("first")
    await store.apps.insert(first)
    with pytest.raises(DuplicateRecord):
        await store.apps.insert(replace(ed_app("second"), key_id=first.key_id))
    assert await store.apps.list() == [first]


async def test_records_with_both_or_neither_credential_are_refused(store: SqlStore) -> None:
    record, _ = hmac_app()
    for bad in (replace(record, public_key=b"x"), replace(record, sealed_secret=None)):
        with pytest.raises(ValueError, match="either a sealed secret or a public key"):
            await store.apps.insert(bad)
    with pytest.raises(ValueError, match="naive"):
        await store.apps.insert(replace(record, created_at=datetime(2030, 1, 1)))
    assert await store.apps.list() == []


async def test_revoke_sets_and_keeps_an_earlier_time(store: SqlStore) -> None:
    record, _ = hmac_app()
    await store.apps.insert(record)
    later = T0 + timedelta(hours=1)
    revoked = await store.apps.revoke(record.key_id, later)
    assert revoked.revoked_at == later
    again = await store.apps.revoke(record.key_id, T0 + timedelta(hours=2))  # later: ignored
    assert again.revoked_at == later
    sooner = await store.apps.revoke(record.key_id, T0)  # sooner: ends the grace early
    assert sooner.revoked_at == T0
    with pytest.raises(UnknownRecord):
        await store.apps.revoke("app_nosuch0000000000", T0)


async def test_rotate_inserts_new_and_revokes_old_in_one_transaction(store: SqlStore) -> None:
    old, _ = hmac_app("svc")
    await store.apps.insert(old)
    new, _ = hmac_app("svc", created_at=T0 + timedelta(seconds=1))
    grace = T0 + timedelta(minutes=10)
    await store.apps.rotate(old.key_id, new, grace)
    assert await store.apps.get(new.key_id) == new
    got = await store.apps.get(old.key_id)
    assert got is not None and got.revoked_at == grace
    # a second rotation keeps the earlier end of the first grace period
    newer, _ = hmac_app("svc", created_at=T0 + timedelta(seconds=2))
    await store.apps.rotate(old.key_id, newer, grace + timedelta(hours=1))
    got = await store.apps.get(old.key_id)
    assert got is not None and got.revoked_at == grace


async def test_rotate_onto_an_existing_key_id_changes_nothing(store: SqlStore) -> None:
    old, _ = hmac_app("old")
    other = ed_app("other")
    await store.apps.insert(old)
    await store.apps.insert(other)
    with pytest.raises(DuplicateRecord):
        await store.apps.rotate(old.key_id, replace(old, key_id=other.key_id), T0)
    assert await store.apps.get(old.key_id) == old  # not revoked
    assert await store.apps.get(other.key_id) == other


async def test_rotate_of_an_unknown_app_inserts_nothing(store: SqlStore) -> None:
    new, _ = hmac_app()
    with pytest.raises(UnknownRecord):
        await store.apps.rotate("app_nosuch0000000000", new, T0)
    assert await store.apps.list() == []


async def test_sealed_secrets_are_in_the_master_key_registry(store: SqlStore) -> None:
    """``master-key rotate`` re-seals an app's secret; public-key apps have none to re-seal."""
    record, secret = hmac_app()
    public = ed_app()
    await store.apps.insert(record)
    await store.apps.insert(public)
    assert record.sealed_secret is not None
    assert await store.master_key_check.sealed_secrets() == [
        (secret_purpose(record.key_id), record.sealed_secret)
    ]
    assert check_all(store.engine, SEALER) == 1
    nxt = Sealer(b"\x02" * 32)
    assert reseal_all(store.engine, Sealer(b"\x02" * 32, also=(b"\x01" * 32,)), nxt) == 1
    got = await store.apps.get(record.key_id)
    assert got is not None and got.sealed_secret != record.sealed_secret
    assert keyed_with(verification_key(got, nxt), decode_secret(secret))  # the same secret
    assert await store.apps.get(public.key_id) == public  # untouched


# --- signature nonces ----------------------------------------------------------------------------


@pytest.fixture
def stores(database_url: str) -> Iterator[list[SqlStore]]:
    """Separate stores (engines, pools, connections) on one database: separate processes."""
    migrate(database_url)
    opened = [open_store(database_url) for _ in range(RACERS)]
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


async def test_a_nonce_is_used_once_per_app(store: SqlStore) -> None:
    until = T0 + timedelta(minutes=5)
    nonces = store.signature_nonces
    assert await nonces.use("app_a", "n1", until, T0) is True
    assert await nonces.use("app_a", "n1", until, T0 + timedelta(seconds=1)) is False  # replay
    assert await nonces.use("app_a", "n1", until + timedelta(hours=1), T0) is False
    assert await nonces.use("app_b", "n1", until, T0) is True  # another app's nonce
    assert await nonces.use("app_a", "n2", until, T0) is True
    # once its record expired, a nonce may recur (the signature's window is long closed)
    # expired, but not by the clock-skew margin: another instance's clock may still accept it
    assert await nonces.use("app_a", "n1", until + timedelta(minutes=5), until) is False
    gone = until + CLOCK_SKEW_MARGIN
    assert await nonces.use("app_a", "n1", gone + timedelta(minutes=5), gone) is True
    assert await nonces.use("app_a", "n1", gone + timedelta(minutes=5), gone) is False


async def test_expired_nonces_are_swept(store: SqlStore) -> None:
    nonces = store.signature_nonces
    for i in range(5):
        assert await nonces.use("app_a", f"old{i}", T0 + timedelta(minutes=1), T0)
    later = T0 + timedelta(minutes=2)
    # the first use of this store swept already (nothing had expired); force the next sweep
    nonces._batches._next_sweep = 0.0  # type: ignore[attr-defined]
    assert await nonces.use("app_a", "fresh", later + timedelta(minutes=1), later)
    with store.engine.connect() as conn:
        left = conn.execute(select(signature_nonces.c.nonce)).scalars().all()
    assert left == ["fresh"]


async def test_exactly_one_of_racing_uses_wins(stores: list[SqlStore]) -> None:
    until = T0 + timedelta(minutes=5)
    for round_ in range(3):
        results = await asyncio.gather(
            *(s.signature_nonces.use("app_a", f"race{round_}", until, T0) for s in stores)
        )
        assert sorted(results) == [False] * (RACERS - 1) + [True], results


async def test_exactly_one_of_racing_uses_wins_over_an_expired_record(
    stores: list[SqlStore],
) -> None:
    """The racers each delete the expired record and insert theirs: still exactly one wins."""
    assert await stores[0].signature_nonces.use("app_a", "again", T0 + timedelta(seconds=1), T0)
    later = T0 + timedelta(seconds=1) + CLOCK_SKEW_MARGIN
    results = await asyncio.gather(
        *(
            s.signature_nonces.use("app_a", "again", later + timedelta(minutes=5), later)
            for s in stores
        )
    )
    assert sorted(results) == [False] * (RACERS - 1) + [True], results
