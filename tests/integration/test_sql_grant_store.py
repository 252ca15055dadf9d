"""The stores of the authorization code and refresh token grants on SQLite and the real
PostgreSQL: single use is exact under races between separate connections (as between the
workers of `serve --workers N` and between instances), and a family revocation misses nothing."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from restguard.store.errors import DuplicateRecord
from restguard.store.ports import AuthorizationCodeRecord, RefreshTokenRecord, UserRecord
from restguard.store.sql import SqlStore, migrate, open_store

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
RACERS = 8


@pytest.fixture
def stores(database_url: str) -> Iterator[list[SqlStore]]:
    """Separate stores (engines, pools, connections) on one database: separate processes."""
    migrate(database_url)
    opened = [open_store(database_url) for _ in range(RACERS)]
    asyncio.run(_add_users(opened[0], "rg_us_a", "rg_us_b"))
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


async def _add_users(store: SqlStore, *user_ids: str) -> None:
    """The users the records below belong to: a grant lives only as long as its user."""
    for user_id in user_ids:
        record = UserRecord(user_id, user_id.removeprefix("rg_us_"), "x", ("s",), T0)
        try:
            await store.users.insert(record)
        except DuplicateRecord:
            pass


def code(name: str, **fields: object) -> AuthorizationCodeRecord:
    base = AuthorizationCodeRecord(
        code_hash=hashlib.sha256(name.encode()).digest(),
        client_id="rg_ci_a",
        user_id="rg_us_a",
        subject="alice",
        redirect_uri="https://app.example/cb",
        redirect_uri_given=True,
        scopes=("notes:read", "notes:write"),
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        created_at=T0,
        expires_at=T0 + timedelta(seconds=60),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def refresh(name: str, family: str = "fam", **fields: object) -> RefreshTokenRecord:
    base = RefreshTokenRecord(
        token_hash=hashlib.sha256(name.encode()).digest(),
        family_id=family,
        client_id="rg_ci_a",
        user_id="rg_us_a",
        subject="alice",
        scopes=("notes:read",),
        created_at=T0,
        expires_at=T0 + timedelta(days=30),
        access_jti="jti-" + name,
        access_expires_at=T0 + timedelta(minutes=16),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


async def test_code_round_trip_and_exactly_one_consumer(stores: list[SqlStore]) -> None:
    record = code("c1")
    await stores[0].oauth2_codes.insert(record)
    assert await stores[1].oauth2_codes.get(record.code_hash) == record
    assert await stores[1].oauth2_codes.get(b"\x00" * 32) is None
    results = await asyncio.gather(
        *(
            s.oauth2_codes.consume(record.code_hash, T0, family_id=f"f{i}", access_jti=f"j{i}")
            for i, s in enumerate(stores)
        )
    )
    assert results.count(True) == 1
    winner = results.index(True)
    used = await stores[0].oauth2_codes.get(record.code_hash)
    assert used is not None
    assert (used.used_at, used.family_id, used.access_jti) == (T0, f"f{winner}", f"j{winner}")
    # and never again
    again = await stores[0].oauth2_codes.consume(
        record.code_hash, T0, family_id=None, access_jti="late"
    )
    assert again is False


async def test_expired_codes_are_dropped_a_day_later(stores: list[SqlStore]) -> None:
    old = code("old")
    await stores[0].oauth2_codes.insert(old)
    later = T0 + timedelta(days=1, minutes=2)
    await stores[0].oauth2_codes.insert(code("new", created_at=later, expires_at=later))
    assert await stores[0].oauth2_codes.get(old.code_hash) is None


async def test_exactly_one_of_racing_rotations_wins(stores: list[SqlStore]) -> None:
    first = refresh("r0")
    await stores[0].refresh_tokens.start_family(first)
    got = await stores[1].refresh_tokens.get(first.token_hash)
    assert got == first
    outcomes = await asyncio.gather(
        *(
            s.refresh_tokens.rotate(first.token_hash, refresh(f"r1-{i}"), T0)
            for i, s in enumerate(stores)
        )
    )
    assert sorted(outcomes) == ["reused"] * (RACERS - 1) + ["rotated"]
    winner = outcomes.index("rotated")
    new = await stores[0].refresh_tokens.get(refresh(f"r1-{winner}").token_hash)
    assert new is not None and new.used_at is None
    for i in range(RACERS):  # the losers' tokens were never written
        if i != winner:
            assert await stores[0].refresh_tokens.get(refresh(f"r1-{i}").token_hash) is None
    used = await stores[0].refresh_tokens.get(first.token_hash)
    assert used is not None and used.used_at == T0


async def test_family_revocation_covers_every_token_and_its_access_tokens(
    stores: list[SqlStore],
) -> None:
    store = stores[0]
    await store.refresh_tokens.start_family(refresh("a0", family="A"))
    assert await store.refresh_tokens.rotate(refresh("a0").token_hash, refresh("a1", "A"), T0) == (
        "rotated"
    )
    await store.refresh_tokens.start_family(refresh("b0", family="B"))
    expired = refresh("a1", "A", access_expires_at=T0 - timedelta(seconds=1))
    assert expired.access_jti == "jti-a1"
    await store.refresh_tokens.revoke_family("A", T0)
    for name in ("a0", "a1"):
        found = await store.refresh_tokens.get(refresh(name).token_hash)
        assert found is not None and found.family_revoked_at == T0
    revoked = set(await store.revoked_tokens.active(T0))
    assert {"jti-a0", "jti-a1"} <= revoked and "jti-b0" not in revoked
    # a revoked family rotates no more
    assert await store.refresh_tokens.rotate(refresh("a1").token_hash, refresh("a2", "A"), T0) == (
        "revoked"
    )
    assert await store.refresh_tokens.get(refresh("a2").token_hash) is None
    unused = await store.refresh_tokens.get(refresh("a1").token_hash)
    assert unused is not None and unused.used_at is None  # (the refused rotation rolled back)
    # revoking twice changes nothing
    await store.refresh_tokens.revoke_family("A", T0 + timedelta(seconds=5))
    again = await store.refresh_tokens.get(refresh("a0").token_hash)
    assert again is not None and again.family_revoked_at == T0


async def test_a_rotation_racing_a_revocation_leaves_nothing_alive(
    stores: list[SqlStore],
) -> None:
    for round_ in range(10):
        family = f"race{round_}"
        await stores[0].refresh_tokens.start_family(refresh(f"{family}-0", family))
        outcome, _ = await asyncio.gather(
            stores[1].refresh_tokens.rotate(
                refresh(f"{family}-0").token_hash, refresh(f"{family}-1", family), T0
            ),
            stores[2].refresh_tokens.revoke_family(family, T0),
        )
        revoked = set(await stores[0].revoked_tokens.active(T0))
        assert f"jti-{family}-0" in revoked
        if outcome == "rotated":  # the new token and its access token are revoked too
            new = await stores[0].refresh_tokens.get(refresh(f"{family}-1").token_hash)
            assert new is not None and new.family_revoked_at is not None
            assert f"jti-{family}-1" in revoked
        else:
            assert outcome == "revoked"


async def test_revoke_user_revokes_every_family_of_the_user(stores: list[SqlStore]) -> None:
    store = stores[0]
    await store.refresh_tokens.start_family(refresh("u1", family="U1"))
    await store.refresh_tokens.start_family(refresh("u2", family="U2"))
    await store.refresh_tokens.start_family(refresh("o1", family="O1", user_id="rg_us_b"))
    await store.refresh_tokens.start_family(refresh("u3", family="U3", client_id="rg_ci_b"))
    assert await store.refresh_tokens.revoke_user("rg_us_a", T0, client_id="rg_ci_b") == 1
    assert await store.refresh_tokens.revoke_user("rg_us_a", T0) == 2
    assert await store.refresh_tokens.revoke_user("rg_us_a", T0) == 0
    other = await store.refresh_tokens.get(refresh("o1").token_hash)
    assert other is not None and other.family_revoked_at is None
    assert {"jti-u1", "jti-u2"} <= set(await store.revoked_tokens.active(T0))


async def test_a_removed_users_code_and_family_give_nothing(stores: list[SqlStore]) -> None:
    store = stores[0]
    await _add_users(store, "rg_us_gone")
    record = code("gone", user_id="rg_us_gone")
    await store.oauth2_codes.insert(record)
    first = refresh("gone", family="G", user_id="rg_us_gone")
    await store.refresh_tokens.start_family(first)
    await store.users.remove("rg_us_gone")
    used = await store.oauth2_codes.consume(record.code_hash, T0, family_id=None, access_jti="j")
    assert used is False
    left = await store.oauth2_codes.get(record.code_hash)
    assert left is not None and left.used_at is None
    outcome = await store.refresh_tokens.rotate(first.token_hash, refresh("gone2", family="G"), T0)
    assert outcome == "revoked"


async def test_consents_add_up_and_are_revoked(stores: list[SqlStore]) -> None:
    consents = stores[0].consents
    assert await consents.granted("u", "c") == ()
    await consents.grant("u", "c", ("notes:read",), T0)
    await consents.grant("u", "c", ("notes:write", "notes:read"), T0)
    assert await consents.granted("u", "c") == ("notes:read", "notes:write")
    # racing first grants from separate connections: both kept
    await asyncio.gather(
        *(s.consents.grant("u", "d", (f"s{i}",), T0) for i, s in enumerate(stores))
    )
    assert set(await consents.granted("u", "d")) == {f"s{i}" for i in range(RACERS)}
    await consents.grant("v", "c", ("x",), T0)
    listed = await consents.list("u")
    assert [(client, set(scopes)) for client, scopes, _ in listed] == [
        ("c", {"notes:read", "notes:write"}),
        ("d", {f"s{i}" for i in range(RACERS)}),
    ]
    assert await consents.list("nobody") == []
    assert await consents.revoke("u", "c") == 1
    assert await consents.granted("u", "c") == ()
    assert await consents.revoke("u") == 1
    assert await consents.granted("v", "c") == ("x",)
