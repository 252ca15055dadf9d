"""The OAuth 1.0a stores on SQLite and the real PostgreSQL: consumers (round trip, duplicates,
revocation that takes their tokens along), temporary and token credentials (authorized once,
exchanged once -- also under races between separate connections, as between the workers of
`serve --workers N` and between instances), listings and revocations by user and admin, sealed
secrets in the master-key registry, and nonces single-use per consumer, token and timestamp."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from restguard.credentials.oauth1_consumers import (
    OOB,
    consumer_secret,
    new_consumer,
    secret_purpose,
)
from restguard.credentials.oauth1_tokens import (
    TEMPORARY_TTL,
    new_temporary_credentials,
    new_token_credentials,
    new_verifier,
    token_secret,
)
from restguard.credentials.oauth1_tokens import secret_purpose as token_purpose
from restguard.keys.sealing import Sealer
from restguard.store.errors import DuplicateRecord, UnknownRecord
from restguard.store.ports import OAuth1ConsumerRecord, OAuth1TokenRecord, Store, UserRecord
from restguard.store.sql import SqlStore, migrate, open_store
from restguard.store.sql.nonce_batches import CLOCK_SKEW_MARGIN
from restguard.store.sql.reseal import check_all, reseal_all
from restguard.store.sql.tables import oauth1_nonces

T0 = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
RACERS = 8
SEALER = Sealer(b"\x01" * 32)
ALICE = "rg_us_alice00000000000"
BOB = "rg_us_bob0000000000000"


def consumer(name: str = "svc", **fields: object) -> tuple[OAuth1ConsumerRecord, str]:
    record, secret = new_consumer(
        name,
        ["notes:read", "notes:write"],
        callback="https://app.example/cb",
        now=T0,
        sealer=SEALER,
    )
    return replace(record, **fields), secret  # type: ignore[arg-type]


def temporary(owner: OAuth1ConsumerRecord, at: datetime = T0) -> tuple[OAuth1TokenRecord, str]:
    return new_temporary_credentials(owner, OOB, now=at, sealer=SEALER)


async def add_users(store: Store) -> None:
    for user_id, name in ((ALICE, "alice"), (BOB, "bob")):
        await store.users.insert(UserRecord(user_id, name, "$argon2id$x", ("notes:read",), T0))


async def authorized(
    store: Store, owner: OAuth1ConsumerRecord, user_id: str = ALICE
) -> tuple[OAuth1TokenRecord, str]:
    """Temporary credentials stored and authorized by ``user_id``; the verifier."""
    temp, _ = temporary(owner)
    await store.oauth1_tokens.insert(temp)
    verifier, digest = new_verifier()
    assert await store.oauth1_tokens.authorize(
        temp.token,
        user_id=user_id,
        subject=user_id.removeprefix("rg_us_")[:5],
        scopes=("notes:read",),
        verifier_hash=digest,
        at=T0 + timedelta(seconds=1),
    )
    got = await store.oauth1_tokens.get(temp.token)
    assert got is not None
    return got, verifier


async def access_token(
    store: Store, owner: OAuth1ConsumerRecord, user_id: str = ALICE, at: datetime = T0
) -> OAuth1TokenRecord:
    temp, _ = await authorized(store, owner, user_id)
    new, _ = new_token_credentials(temp, now=at, sealer=SEALER)
    digest = temp.verifier_hash
    assert digest is not None
    assert await store.oauth1_tokens.exchange(temp.token, digest, new, T0) == "exchanged"
    return new


# --- consumers -----------------------------------------------------------------------------------


async def test_consumer_round_trip_keeps_values_order_and_utc(store: SqlStore) -> None:
    record, secret = consumer(
        created_at=datetime(2030, 1, 1, 14, 0, 0, 123456, tzinfo=CEST),
        scopes=("write", "admin", "read"),
        rsa_public_key=b"der",
        callback=None,
    )
    await store.oauth1_consumers.insert(record)
    got = await store.oauth1_consumers.get(record.consumer_key)
    assert got == replace(record, created_at=T0)  # the same instant, read back in UTC
    assert got is not None and got.created_at.tzinfo is UTC
    assert got.scopes == ("write", "admin", "read") and got.callback is None
    assert got.signature_methods == ("HMAC-SHA1", "HMAC-SHA256", "PLAINTEXT")
    assert consumer_secret(got, SEALER) == secret  # opens after storage
    assert await store.oauth1_consumers.get("ck_nosuch") is None


async def test_consumer_list_duplicates_and_bad_records(store: SqlStore) -> None:
    b, _ = consumer("b", consumer_key="ck_b", created_at=T0)
    a, _ = consumer("a", consumer_key="ck_a", created_at=T0)
    older, _ = consumer("z", consumer_key="ck_z", created_at=T0 - timedelta(days=1))
    for record in (b, a, older):
        await store.oauth1_consumers.insert(record)
    assert [r.consumer_key for r in await store.oauth1_consumers.list()] == ["ck_z", "ck_a", "ck_b"]
    with pytest.raises(DuplicateRecord):
        await store.oauth1_consumers.insert(replace(a, name="again"))
    with pytest.raises(ValueError, match="naive"):
        await store.oauth1_consumers.insert(
            replace(a, consumer_key="ck_n", created_at=T0.replace(tzinfo=None))
        )
    with pytest.raises(ValueError, match="without spaces"):
        await store.oauth1_consumers.insert(
            replace(a, consumer_key="ck_s", callback="https://x/ y")
        )
    assert len(await store.oauth1_consumers.list()) == 3


async def test_revoking_a_consumer_revokes_its_tokens(store: SqlStore) -> None:
    await add_users(store)
    mine, _ = consumer("mine")
    other, _ = consumer("other")
    await store.oauth1_consumers.insert(mine)
    await store.oauth1_consumers.insert(other)
    access = await access_token(store, mine)
    pending, _ = temporary(mine)
    await store.oauth1_tokens.insert(pending)
    kept = await access_token(store, other)
    at = T0 + timedelta(hours=1)
    revoked = await store.oauth1_consumers.revoke(mine.consumer_key, at)
    assert revoked.revoked_at == at
    for token in (access.token, pending.token):
        got = await store.oauth1_tokens.get(token)
        assert got is not None and got.revoked_at == at
    got = await store.oauth1_tokens.get(kept.token)
    assert got is not None and got.revoked_at is None
    # a later revocation keeps the earlier time; a sooner one wins
    assert (
        await store.oauth1_consumers.revoke(mine.consumer_key, at + timedelta(hours=1))
    ).revoked_at == at
    assert (await store.oauth1_consumers.revoke(mine.consumer_key, T0)).revoked_at == T0
    with pytest.raises(UnknownRecord):
        await store.oauth1_consumers.revoke("ck_nosuch", T0)
    # temporary credentials of a revoked consumer can no longer be authorized
    assert not await store.oauth1_tokens.authorize(
        pending.token, user_id=ALICE, subject="alice", scopes=(), verifier_hash=b"v", at=T0
    )


# --- temporary and token credentials -------------------------------------------------------------


async def test_token_round_trip(store: SqlStore) -> None:
    owner, _ = consumer()
    temp, secret = temporary(owner)
    await store.oauth1_tokens.insert(temp)
    assert await store.oauth1_tokens.get(temp.token) == temp
    got = await store.oauth1_tokens.get(temp.token)
    assert got is not None and token_secret(got, SEALER) == secret
    assert await store.oauth1_tokens.get("rg_ot_nosuch") is None
    with pytest.raises(DuplicateRecord):
        await store.oauth1_tokens.insert(temp)
    with pytest.raises(ValueError, match="kind"):
        await store.oauth1_tokens.insert(replace(temp, token="rg_or_x", kind="refresh"))
    with pytest.raises(ValueError, match="user and subject"):
        await store.oauth1_tokens.insert(replace(temp, token="rg_ot_x", kind="access"))


async def test_expired_temporary_credentials_are_dropped_on_insert(store: SqlStore) -> None:
    await add_users(store)
    owner, _ = consumer()
    old, _ = temporary(owner)
    await store.oauth1_tokens.insert(old)
    access = await access_token(store, owner)
    later, _ = temporary(owner, T0 + TEMPORARY_TTL)
    await store.oauth1_tokens.insert(later)
    assert await store.oauth1_tokens.get(old.token) is None
    assert await store.oauth1_tokens.get(access.token) is not None  # token credentials stay


async def test_authorize_once(store: SqlStore) -> None:
    await add_users(store)
    owner, _ = consumer()
    temp, _ = temporary(owner)
    await store.oauth1_tokens.insert(temp)
    tokens = store.oauth1_tokens
    at = T0 + timedelta(minutes=1)

    async def authorize(token: str, user: str = ALICE, when: datetime = at) -> bool:
        return await tokens.authorize(
            token,
            user_id=user,
            subject="alice",
            scopes=("notes:read",),
            verifier_hash=b"h" * 32,
            at=when,
        )

    assert not await authorize(temp.token, user="rg_us_nobody")  # no such user
    assert not await authorize("rg_or_nosuch")
    assert not await authorize(temp.token, when=T0 + TEMPORARY_TTL)  # expired
    assert await authorize(temp.token)
    got = await tokens.get(temp.token)
    assert got is not None
    assert (got.user_id, got.subject, got.scopes, got.verifier_hash) == (
        ALICE,
        "alice",
        ("notes:read",),
        b"h" * 32,
    )
    assert not await authorize(temp.token, user=BOB)  # once
    assert await tokens.get(temp.token) == got
    access = await access_token(store, owner)
    assert not await authorize(access.token)  # token credentials are not temporary


async def test_exchange_answers(store: SqlStore) -> None:
    await add_users(store)
    owner, _ = consumer()
    other, _ = consumer("other")
    temp, verifier = await authorized(store, owner)
    assert temp.verifier_hash is not None
    new, _ = new_token_credentials(temp, now=T0, sealer=SEALER)
    tokens = store.oauth1_tokens
    at = T0 + timedelta(minutes=1)
    assert await tokens.exchange(temp.token, b"\x00" * 32, new, at) == "invalid"  # verifier
    assert (
        await tokens.exchange(
            temp.token, temp.verifier_hash, replace(new, consumer_key=other.consumer_key), at
        )
        == "invalid"
    )
    assert (
        await tokens.exchange(temp.token, temp.verifier_hash, replace(new, user_id=BOB), at)
        == "invalid"
    )
    assert (
        await tokens.exchange(temp.token, temp.verifier_hash, new, T0 + TEMPORARY_TTL) == "invalid"
    )
    assert await tokens.exchange("rg_or_nosuch", temp.verifier_hash, new, at) == "invalid"
    with pytest.raises(ValueError, match="token credentials only"):
        await tokens.exchange(temp.token, temp.verifier_hash, replace(new, kind="temporary"), at)
    assert await tokens.get(new.token) is None  # nothing written
    assert await tokens.exchange(temp.token, temp.verifier_hash, new, at) == "exchanged"
    assert await tokens.get(new.token) == new
    used = await tokens.get(temp.token)
    assert used is not None and used.used_at == at
    again, _ = new_token_credentials(temp, now=T0, sealer=SEALER)
    assert await tokens.exchange(temp.token, temp.verifier_hash, again, at) == "used"
    assert await tokens.get(again.token) is None
    # unauthorized temporary credentials, and token credentials, are not exchanged
    fresh, _ = temporary(owner)
    await tokens.insert(fresh)
    assert await tokens.exchange(fresh.token, temp.verifier_hash, again, at) == "invalid"
    assert await tokens.exchange(new.token, temp.verifier_hash, again, at) == "invalid"
    assert verifier  # (the verifier itself is never stored)


async def test_exchange_of_a_removed_users_credentials_is_invalid(store: SqlStore) -> None:
    await add_users(store)
    owner, _ = consumer()
    temp, _ = await authorized(store, owner)
    assert temp.verifier_hash is not None
    new, _ = new_token_credentials(temp, now=T0, sealer=SEALER)
    await store.users.remove(ALICE)
    assert await store.oauth1_tokens.exchange(temp.token, temp.verifier_hash, new, T0) == "invalid"


async def test_exchange_of_revoked_temporary_credentials_is_invalid(store: SqlStore) -> None:
    await add_users(store)
    owner, _ = consumer()
    temp, _ = await authorized(store, owner)
    assert temp.verifier_hash is not None
    await store.oauth1_tokens.revoke(temp.token, T0)
    new, _ = new_token_credentials(temp, now=T0, sealer=SEALER)
    assert await store.oauth1_tokens.exchange(temp.token, temp.verifier_hash, new, T0) == "invalid"


async def test_list_and_revoke_by_user_and_admin(store: SqlStore) -> None:
    await add_users(store)
    one, _ = consumer("one")
    two, _ = consumer("two")
    a1 = await access_token(store, one, ALICE, T0)
    a2 = await access_token(store, two, ALICE, T0 + timedelta(seconds=1))
    b1 = await access_token(store, one, BOB, T0 + timedelta(seconds=2))
    tokens = store.oauth1_tokens
    assert await tokens.list() == [a1, a2, b1]  # token credentials only, oldest first
    assert await tokens.list(user_id=ALICE) == [a1, a2]
    assert await tokens.list(consumer_key=one.consumer_key) == [a1, b1]
    assert await tokens.list(user_id=BOB, consumer_key=two.consumer_key) == []
    at = T0 + timedelta(hours=1)
    assert (await tokens.revoke(a1.token, at)).revoked_at == at
    assert (await tokens.revoke(a1.token, at + timedelta(hours=1))).revoked_at == at  # earlier kept
    with pytest.raises(UnknownRecord):
        await tokens.revoke("rg_ot_nosuch", at)
    assert await tokens.revoke_user(ALICE, at, consumer_key=two.consumer_key) == 1
    assert await tokens.revoke_user(ALICE, at) == 0  # (used temporary credentials: not counted)
    pending, _ = await authorized(store, one)  # authorized, not yet exchanged
    assert await tokens.revoke_user(ALICE, at) == 1
    got = await tokens.get(pending.token)
    assert got is not None and got.revoked_at == at
    listed = await tokens.list()
    assert [r.revoked_at for r in listed] == [at, at, None]
    assert await tokens.revoke_user(BOB, at) == 1


# --- races between separate connections ----------------------------------------------------------


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


async def test_exactly_one_of_racing_authorizations_wins(stores: list[SqlStore]) -> None:
    await add_users(stores[0])
    owner, _ = consumer()
    for round_ in range(3):
        temp, _ = temporary(owner)
        await stores[0].oauth1_tokens.insert(temp)
        results = await asyncio.gather(
            *(
                s.oauth1_tokens.authorize(
                    temp.token,
                    user_id=ALICE if i % 2 else BOB,
                    subject=f"racer{i}",
                    scopes=("notes:read",),
                    verifier_hash=bytes([i]) * 32,
                    at=T0,
                )
                for i, s in enumerate(stores)
            )
        )
        assert sorted(results) == [False] * (RACERS - 1) + [True], (round_, results)
        winner = results.index(True)
        got = await stores[0].oauth1_tokens.get(temp.token)
        assert got is not None and got.subject == f"racer{winner}"
        assert got.verifier_hash == bytes([winner]) * 32


async def test_exactly_one_of_racing_exchanges_wins(stores: list[SqlStore]) -> None:
    await add_users(stores[0])
    owner, _ = consumer()
    for round_ in range(3):
        temp, _ = await authorized(stores[0], owner)
        assert temp.verifier_hash is not None
        news = [new_token_credentials(temp, now=T0, sealer=SEALER)[0] for _ in stores]
        results = await asyncio.gather(
            *(
                s.oauth1_tokens.exchange(temp.token, temp.verifier_hash, new, T0)
                for s, new in zip(stores, news, strict=True)
            )
        )
        assert sorted(results) == ["exchanged"] + ["used"] * (RACERS - 1), (round_, results)
        winner = news[results.index("exchanged")]
        stored = [t.token for t in await stores[0].oauth1_tokens.list()]
        assert winner.token in stored
        assert not {n.token for n in news if n is not winner} & set(stored)


# --- sealed secrets ------------------------------------------------------------------------------


async def test_sealed_secrets_are_in_the_master_key_registry(store: SqlStore) -> None:
    """``master-key rotate`` re-seals consumer and token secrets."""
    await add_users(store)
    owner, secret = consumer()
    await store.oauth1_consumers.insert(owner)
    temp, temp_secret = temporary(owner)
    await store.oauth1_tokens.insert(temp)
    assert sorted(await store.master_key_check.sealed_secrets()) == sorted(
        [
            (secret_purpose(owner.consumer_key), owner.sealed_secret),
            (token_purpose(temp.token), temp.sealed_secret),
        ]
    )
    assert check_all(store.engine, SEALER) == 2
    nxt = Sealer(b"\x02" * 32)
    assert reseal_all(store.engine, Sealer(b"\x02" * 32, also=(b"\x01" * 32,)), nxt) == 2
    got = await store.oauth1_consumers.get(owner.consumer_key)
    assert got is not None and got.sealed_secret != owner.sealed_secret
    assert consumer_secret(got, nxt) == secret
    got_temp = await store.oauth1_tokens.get(temp.token)
    assert got_temp is not None and token_secret(got_temp, nxt) == temp_secret


# --- nonces --------------------------------------------------------------------------------------


async def test_a_nonce_is_used_once_per_consumer_token_and_timestamp(store: SqlStore) -> None:
    until = T0 + timedelta(minutes=10)
    use = store.oauth1_nonces.use
    assert await use("ck_a", "", 1700000000, "n1", until, T0) is True
    assert await use("ck_a", "", 1700000000, "n1", until, T0 + timedelta(seconds=1)) is False
    assert await use("ck_a", "rg_ot_x", 1700000000, "n1", until, T0) is True  # another token
    assert await use("ck_b", "", 1700000000, "n1", until, T0) is True  # another consumer
    assert await use("ck_a", "", 1700000001, "n1", until, T0) is True  # another timestamp
    assert await use("ck_a", "", 1700000000, "n2", until, T0) is True
    assert await use("ck_a", "", 2**40, "n1", until, T0) is True  # beyond 32 bits
    # once its record expired, the nonce may recur (the timestamp window is long closed)
    # expired, but not by the clock-skew margin: another instance's clock may still accept it
    assert await use("ck_a", "", 1700000000, "n1", until + timedelta(minutes=5), until) is False
    gone = until + CLOCK_SKEW_MARGIN
    assert await use("ck_a", "", 1700000000, "n1", gone + timedelta(minutes=5), gone) is True
    assert await use("ck_a", "", 1700000000, "n1", gone + timedelta(minutes=5), gone) is False
    for bad in (-1, True, "1700000000"):
        with pytest.raises(ValueError, match="non-negative integer"):
            await use("ck_a", "", bad, "n", until, T0)  # type: ignore[arg-type]


async def test_expired_nonces_are_swept(store: SqlStore) -> None:
    nonces = store.oauth1_nonces
    for i in range(5):
        assert await nonces.use("ck_a", "", i, "old", T0 + timedelta(minutes=1), T0)
    later = T0 + timedelta(minutes=2)
    nonces._batches._next_sweep = 0.0  # type: ignore[attr-defined]
    assert await nonces.use("ck_a", "", 9, "fresh", later + timedelta(minutes=1), later)
    with store.engine.connect() as conn:
        left = conn.execute(select(oauth1_nonces.c.nonce)).scalars().all()
    assert left == ["fresh"]


async def test_exactly_one_of_racing_nonce_uses_wins(stores: list[SqlStore]) -> None:
    until = T0 + timedelta(minutes=5)
    for round_ in range(3):
        results = await asyncio.gather(
            *(
                s.oauth1_nonces.use("ck_a", "rg_ot_t", 1700000000, f"race{round_}", until, T0)
                for s in stores
            )
        )
        assert sorted(results) == [False] * (RACERS - 1) + [True], results
