"""The SQL store on SQLite and the real PostgreSQL: records, atomic writes, migrations, outages."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from restguard.errors import BackendUnavailable
from restguard.store.errors import DuplicateRecord, UnknownRecord
from restguard.store.ports import (
    AccessTokenRecord,
    ApiKeyRecord,
    AppRecord,
    AuthorizationCodeRecord,
    DeviceCodeRecord,
    IssuerRecord,
    OAuth1ConsumerRecord,
    OAuth1TokenRecord,
    OAuthClientRecord,
    RefreshTokenRecord,
    SigningKeyRecord,
    Store,
    UserRecord,
)
from restguard.store.sql import SqlStore, make_engine, migrate, open_store, pending
from restguard.store.sql.migrate import MIGRATIONS
from restguard.store.sql.tables import metadata

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
HEADS = ScriptDirectory(str(MIGRATIONS)).get_heads()
#: Every revision, oldest first.
REVISIONS = [r.revision for r in reversed(list(ScriptDirectory(str(MIGRATIONS)).walk_revisions()))]


def api_key(key_id: str, created_at: datetime = T0, **fields: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=key_id,
        name=fields.pop("name", f"key {key_id}"),
        key_hash=fields.pop("key_hash", b"\x00\xff" + key_id.encode()),
        scopes=fields.pop("scopes", ("read",)),
        created_at=created_at,
        **fields,
    )


def user_record(user_id: str, username: str = "alice") -> UserRecord:
    return UserRecord(user_id, username, "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA", ("a",), T0)


def signing_key(kid: str, created_at: datetime) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid=kid,
        alg="EdDSA",
        public_jwk=json.dumps({"kty": "OKP", "crv": "Ed25519", "x": kid}),
        sealed_private=b"\x01sealed\x00" + kid.encode(),
        created_at=created_at,
    )


# --- records -------------------------------------------------------------------------------------


async def test_api_key_round_trip_keeps_values_order_and_utc(store: SqlStore) -> None:
    full = api_key(
        "ak_full",
        created_at=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=CEST),  # 12:00:00.123456 UTC
        scopes=("write", "admin", "read"),
        expires_at=T0 + timedelta(days=30),
        revoked_at=T0 + timedelta(days=1),
        last_used_at=T0 + timedelta(seconds=5),
    )
    await store.api_keys.insert(full)

    got = await store.api_keys.get("ak_full")

    assert got == full
    assert got is not None
    assert got.scopes == ("write", "admin", "read")
    for stamp in (got.created_at, got.expires_at, got.revoked_at, got.last_used_at):
        assert stamp is not None
        assert stamp.tzinfo is not None
        assert stamp.utcoffset() == timedelta(0)
    assert got.created_at == T0
    assert await store.api_keys.get("absent") is None


async def test_api_key_list_is_oldest_first_then_by_id(store: SqlStore) -> None:
    newest = api_key("a_newest", T0 + timedelta(hours=1))
    tie_b = api_key("b_tie", T0)
    tie_a = api_key("a_tie", T0)
    oldest = api_key("z_oldest", T0 - timedelta(microseconds=1), scopes=())
    for record in (newest, tie_b, oldest, tie_a):
        await store.api_keys.insert(record)

    assert await store.api_keys.list() == [oldest, tie_a, tie_b, newest]


async def test_naive_datetime_is_refused_and_nothing_is_written(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.api_keys.insert(api_key("naive", datetime(2024, 5, 1, 12)))
    await store.api_keys.insert(api_key("ak"))
    with pytest.raises(ValueError, match="naive"):
        await store.api_keys.revoke("ak", datetime(2024, 5, 2))

    assert [record.id for record in await store.api_keys.list()] == ["ak"]
    assert (await store.api_keys.get("ak")) == api_key("ak")


async def test_duplicate_insert_raises_and_keeps_the_first(store: SqlStore) -> None:
    first = api_key("ak_dup", name="first")
    await store.api_keys.insert(first)

    with pytest.raises(DuplicateRecord):
        await store.api_keys.insert(api_key("ak_dup", name="second", scopes=("admin",)))

    assert await store.api_keys.get("ak_dup") == first
    assert await store.api_keys.list() == [first]


# --- revoke, rotate, touch -----------------------------------------------------------------------


async def test_revoke_sets_and_keeps_an_earlier_time(store: SqlStore) -> None:
    await store.api_keys.insert(api_key("ak"))
    at = T0 + timedelta(days=2)

    revoked = await store.api_keys.revoke("ak", at)
    assert revoked.revoked_at == at

    later = await store.api_keys.revoke("ak", at + timedelta(days=5))
    assert later.revoked_at == at  # the earlier revocation stands

    earlier = await store.api_keys.revoke("ak", (at - timedelta(hours=1)).astimezone(CEST))
    assert earlier.revoked_at == at - timedelta(hours=1)  # an earlier time moves it forward
    assert await store.api_keys.get("ak") == earlier


async def test_revoke_unknown_id(store: SqlStore) -> None:
    with pytest.raises(UnknownRecord):
        await store.api_keys.revoke("absent", T0)
    assert await store.api_keys.list() == []


async def test_rotate_inserts_new_and_revokes_old(store: SqlStore) -> None:
    old = api_key("ak_old")
    new = api_key("ak_new", T0 + timedelta(days=1))
    await store.api_keys.insert(old)
    grace_end = T0 + timedelta(days=1, hours=1)

    await store.api_keys.rotate("ak_old", new, grace_end)

    assert await store.api_keys.get("ak_new") == new
    got_old = await store.api_keys.get("ak_old")
    assert got_old is not None
    assert got_old.revoked_at == grace_end


async def test_rotate_onto_an_existing_id_changes_nothing(store: SqlStore) -> None:
    old = api_key("ak_old")
    taken = api_key("ak_taken", name="already here")
    await store.api_keys.insert(old)
    await store.api_keys.insert(taken)

    with pytest.raises(DuplicateRecord):
        await store.api_keys.rotate("ak_old", api_key("ak_taken", name="new"), T0)

    assert await store.api_keys.get("ak_old") == old  # still not revoked
    assert await store.api_keys.get("ak_taken") == taken


async def test_rotate_of_an_unknown_old_id_inserts_nothing(store: SqlStore) -> None:
    with pytest.raises(UnknownRecord):
        await store.api_keys.rotate("absent", api_key("ak_new"), T0)

    assert await store.api_keys.get("ak_new") is None
    assert await store.api_keys.list() == []


async def test_touch_records_the_latest_use(store: SqlStore) -> None:
    await store.api_keys.insert(api_key("ak"))

    await store.api_keys.insert(api_key("ak2"))
    await store.api_keys.touch({"ak": T0 + timedelta(minutes=5), "ak2": T0})
    await store.api_keys.touch({"ak": T0 + timedelta(minutes=1)})  # late arrival: ignored
    await store.api_keys.touch({"absent": T0})  # no error, nothing created
    await store.api_keys.touch({})  # nothing to do

    got = await store.api_keys.get("ak")
    assert got is not None
    assert got.last_used_at == T0 + timedelta(minutes=5)
    got2 = await store.api_keys.get("ak2")
    assert got2 is not None and got2.last_used_at == T0
    assert [record.id for record in await store.api_keys.list()] == ["ak", "ak2"]


# --- signing keys --------------------------------------------------------------------------------


async def test_signing_keys_newest_first(store: SqlStore) -> None:
    keys = [signing_key(f"kid{i}", T0 + timedelta(days=i)) for i in range(3)]
    for record in (keys[1], keys[0], keys[2]):
        await store.signing_keys.insert(record)

    assert await store.signing_keys.list() == [keys[2], keys[1], keys[0]]
    with pytest.raises(DuplicateRecord):
        await store.signing_keys.insert(signing_key("kid1", T0))
    assert await store.signing_keys.list() == [keys[2], keys[1], keys[0]]


# --- issuers -------------------------------------------------------------------------------------


def issuer(issuer_id: str, created_at: datetime = T0, **fields: Any) -> IssuerRecord:
    return IssuerRecord(
        id=issuer_id,
        issuer=fields.pop("issuer", f"https://{issuer_id}.example/"),
        jwks_uri=fields.pop("jwks_uri", f"https://{issuer_id}.example/jwks"),
        audience=fields.pop("audience", "api"),
        algorithms=fields.pop("algorithms", ("RS256", "ES256")),
        scope_claim=fields.pop("scope_claim", "scope"),
        typ=fields.pop("typ", None),
        created_at=created_at,
        **fields,
    )


async def test_issuers_round_trip_oldest_first(store: SqlStore) -> None:
    second = issuer("b", T0 + timedelta(seconds=1), typ="at+jwt", leeway=30.0)
    first = issuer("a", T0.astimezone(CEST), scope_claim="scp")
    await store.issuers.insert(second)
    await store.issuers.insert(first)

    assert await store.issuers.list() == [issuer("a", T0, scope_claim="scp"), second]


async def test_issuer_duplicates_change_nothing(store: SqlStore) -> None:
    await store.issuers.insert(issuer("a"))
    with pytest.raises(DuplicateRecord):
        await store.issuers.insert(issuer("a", issuer="https://other.example/"))
    with pytest.raises(DuplicateRecord):  # one issuer, two rows: which rules would apply?
        await store.issuers.insert(issuer("b", issuer="https://a.example/"))
    assert [r.id for r in await store.issuers.list()] == ["a"]


async def test_issuer_remove(store: SqlStore) -> None:
    await store.issuers.insert(issuer("a"))
    await store.issuers.insert(issuer("b"))

    assert await store.issuers.remove("a") == issuer("a")
    with pytest.raises(UnknownRecord):
        await store.issuers.remove("a")
    assert [r.id for r in await store.issuers.list()] == ["b"]


# --- OAuth 2.0 clients ---------------------------------------------------------------------------


def oauth2_client(client_id: str, created_at: datetime = T0, **fields: Any) -> OAuthClientRecord:
    return OAuthClientRecord(
        client_id=client_id,
        name=fields.pop("name", f"client {client_id}"),
        secret_hash=fields.pop("secret_hash", b"\x00\xff" + client_id.encode()),
        grants=fields.pop("grants", ("authorization_code", "refresh_token")),
        redirect_uris=fields.pop(
            "redirect_uris", ("https://app.example/cb?x=1&y=%20", "com.example.app:/cb")
        ),
        scopes=fields.pop("scopes", ("notes:read", "notes:write")),
        token_format=fields.pop("token_format", "jwt"),
        created_at=created_at,
        **fields,
    )


async def test_oauth2_client_round_trip_keeps_values_order_and_utc(store: SqlStore) -> None:
    confidential = oauth2_client(
        "rg_ci_conf",
        created_at=T0.astimezone(CEST),
        grants=("refresh_token", "device_code", "authorization_code"),
        scopes=("z", "a", "m"),
        token_format="opaque",
        revoked_at=T0 + timedelta(days=1),
    )
    public = oauth2_client("rg_ci_pub", secret_hash=None, grants=("device_code",), redirect_uris=())
    await store.oauth2_clients.insert(confidential)
    await store.oauth2_clients.insert(public)

    got = await store.oauth2_clients.get("rg_ci_conf")
    assert got == oauth2_client(
        "rg_ci_conf",
        grants=("refresh_token", "device_code", "authorization_code"),
        scopes=("z", "a", "m"),
        token_format="opaque",
        revoked_at=T0 + timedelta(days=1),
    )
    assert got is not None
    for stamp in (got.created_at, got.revoked_at):
        assert stamp is not None and stamp.utcoffset() == timedelta(0)
    got_public = await store.oauth2_clients.get("rg_ci_pub")
    assert got_public == public
    assert got_public is not None
    assert got_public.secret_hash is None and got_public.redirect_uris == ()
    assert await store.oauth2_clients.get("absent") is None


async def test_oauth2_client_list_is_oldest_first_then_by_id(store: SqlStore) -> None:
    newest = oauth2_client("a_newest", T0 + timedelta(hours=1))
    tie_b = oauth2_client("b_tie", T0)
    tie_a = oauth2_client("a_tie", T0)
    oldest = oauth2_client("z_oldest", T0 - timedelta(microseconds=1))
    for record in (newest, tie_b, oldest, tie_a):
        await store.oauth2_clients.insert(record)

    assert await store.oauth2_clients.list() == [oldest, tie_a, tie_b, newest]


async def test_oauth2_client_duplicate_keeps_the_first(store: SqlStore) -> None:
    first = oauth2_client("rg_ci_dup", name="first")
    await store.oauth2_clients.insert(first)

    with pytest.raises(DuplicateRecord):
        await store.oauth2_clients.insert(oauth2_client("rg_ci_dup", name="second"))

    assert await store.oauth2_clients.list() == [first]


@pytest.mark.parametrize(
    "fields",
    [
        {"redirect_uris": ("https://app.example/a b",)},
        {"redirect_uris": ("",)},
        {"scopes": ("a b",)},
        {"grants": ("authorization_code\t",)},
        {"created_at": datetime(2024, 5, 1, 12)},  # naive
    ],
    ids=["space-in-uri", "empty-uri", "space-in-scope", "tab-in-grant", "naive"],
)
async def test_oauth2_client_values_that_would_not_read_back_are_refused(
    store: SqlStore, fields: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        await store.oauth2_clients.insert(oauth2_client("rg_ci_bad", **fields))
    assert await store.oauth2_clients.list() == []


async def test_oauth2_client_revoke_sets_and_keeps_an_earlier_time(store: SqlStore) -> None:
    await store.oauth2_clients.insert(oauth2_client("rg_ci_a"))
    await store.oauth2_clients.insert(oauth2_client("rg_ci_b"))
    at = T0 + timedelta(days=2)

    revoked = await store.oauth2_clients.revoke("rg_ci_a", at)
    assert revoked == oauth2_client("rg_ci_a", revoked_at=at)

    later = await store.oauth2_clients.revoke("rg_ci_a", at + timedelta(days=5))
    assert later.revoked_at == at  # the earlier revocation stands

    earlier = await store.oauth2_clients.revoke(
        "rg_ci_a", (at - timedelta(hours=1)).astimezone(CEST)
    )
    assert earlier.revoked_at == at - timedelta(hours=1)
    assert await store.oauth2_clients.get("rg_ci_a") == earlier
    assert await store.oauth2_clients.get("rg_ci_b") == oauth2_client("rg_ci_b")  # untouched
    with pytest.raises(ValueError, match="naive"):
        await store.oauth2_clients.revoke("rg_ci_b", datetime(2024, 5, 2))


async def test_oauth2_client_revoke_unknown_id(store: SqlStore) -> None:
    with pytest.raises(UnknownRecord):
        await store.oauth2_clients.revoke("absent", T0)
    assert await store.oauth2_clients.list() == []


async def test_master_key_check_keeps_the_first_value(store: SqlStore) -> None:
    assert await store.master_key_check.get() is None
    assert await store.master_key_check.put_if_absent(b"first\x00") == b"first\x00"
    assert await store.master_key_check.put_if_absent(b"second") == b"first\x00"
    assert await store.master_key_check.get() == b"first\x00"


async def test_master_key_check_racing_writers_all_read_the_winner(store: SqlStore) -> None:
    values = [b"value %d" % i for i in range(8)]
    got = await asyncio.gather(*(store.master_key_check.put_if_absent(v) for v in values))
    assert len(set(got)) == 1 and got[0] in values
    assert await store.master_key_check.get() == got[0]


async def test_master_key_check_lists_every_sealed_secret_but_itself(store: SqlStore) -> None:
    assert await store.master_key_check.sealed_secrets() == []
    await store.signing_keys.insert(signing_key("k1", T0))
    await store.signing_keys.rotate(signing_key("k2", T0 + timedelta(seconds=1)), T0)
    await store.master_key_check.put_if_absent(b"check")
    await store.apps.insert(app_record("app_h"))
    await store.apps.insert(replace(app_record("app_p"), sealed_secret=None, public_key=b"der"))
    assert sorted(await store.master_key_check.sealed_secrets()) == [
        ("app-secret:app_h", b"rg1sealed"),  # an app's HMAC secret; a public key is none
        ("signing-key:k1", b"\x01sealed\x00k1"),  # retired ones too
        ("signing-key:k2", b"\x01sealed\x00k2"),
    ]


# --- revoked access tokens -----------------------------------------------------------------------


async def test_revoked_tokens_are_kept_until_they_expire(store: SqlStore) -> None:
    later = T0 + timedelta(minutes=15)
    await store.revoked_tokens.revoke("j1", "rg_ci_a", later, T0)
    await store.revoked_tokens.revoke("j1", "rg_ci_a", later + timedelta(days=1), T0)  # again
    await store.revoked_tokens.revoke("j2", "rg_ci_b", T0 + timedelta(minutes=1), T0)
    assert sorted(await store.revoked_tokens.active(T0)) == ["j1", "j2"]
    assert await store.revoked_tokens.active(T0 + timedelta(minutes=2)) == ["j1"]
    assert await store.revoked_tokens.active(later) == []  # expired: no longer listed
    # a later revocation sweeps the expired rows away
    await store.revoked_tokens.revoke(
        "j3", "rg_ci_a", later + timedelta(hours=1), later + timedelta(seconds=1)
    )
    assert await store.revoked_tokens.active(T0) == ["j3"]


async def test_ping(store: SqlStore) -> None:
    await store.ping()


# --- migrations ----------------------------------------------------------------------------------


def test_migrate_applies_once_then_nothing(database_url: str) -> None:
    assert REVISIONS == [
        "0001",
        "0002",
        "0003",
        "0004",
        "0005",
        "0006",
        "0007",
        "0008",
        "0009",
        "0010",
        "0011",
        "0012",
    ]
    assert pending(database_url) == REVISIONS
    assert migrate(database_url) == REVISIONS
    assert migrate(database_url) == []
    assert pending(database_url) == []


def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


CONCURRENT_MIGRATE = """
import json, sys, time
from restguard.store.sql import migrate
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(json.dumps(migrate(sys.argv[1])))
"""


@pytest.mark.slow
def test_concurrent_migrations_all_succeed_and_apply_once(database_url: str) -> None:
    start_at = str(time.time() + 2.0)  # every process imports first, then all start together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_MIGRATE, database_url, start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))

    assert sorted(results) == [[], [], [], REVISIONS]
    assert pending(database_url) == []
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert [row[0] for row in versions] == list(HEADS)
    expected = {"api_keys", "signing_keys", "issuers", "master_key_check", "oauth2_clients"}
    assert expected | {"revoked_tokens", "users"} <= tables


# --- outages -------------------------------------------------------------------------------------


@pytest.fixture(
    params=[
        "sqlite-directory-removed",
        "sqlite-not-a-database",
        pytest.param("postgresql-port-1", marks=pytest.mark.postgres),
    ]
)
def down_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL whose backend cannot answer."""
    if request.param == "sqlite-directory-removed":
        directory = tmp_path / "data"
        directory.mkdir()
        url = f"sqlite:///{directory / 'restguard.db'}"
        migrate(url)
        shutil.rmtree(directory)
        return url
    if request.param == "sqlite-not-a-database":
        path = tmp_path / "restguard.db"
        path.write_bytes(b"this is not a SQLite database, " * 64)
        return f"sqlite:///{path}"
    return "postgresql://postgres@127.0.0.1:1/test"


def grant_code() -> AuthorizationCodeRecord:
    return AuthorizationCodeRecord(
        b"c", "ci", "us", "alice", "https://a.example/cb", True, ("a",), "x" * 43, T0, T0
    )


def access_record() -> AccessTokenRecord:
    return AccessTokenRecord(b"t", "j", "ci", "alice", ("a",), T0, T0)


def refresh_record() -> RefreshTokenRecord:
    return RefreshTokenRecord(b"r", "f", "ci", "us", "alice", ("a",), T0, T0, "j", T0)


def device_record() -> DeviceCodeRecord:
    return DeviceCodeRecord(b"d", "BCDFGHJK", "ci", ("a",), T0, T0, 5)


def app_record(key_id: str) -> AppRecord:
    return AppRecord(key_id, "svc", "hmac-sha256", ("a",), b"rg1sealed", None, T0)


def consumer_record() -> OAuth1ConsumerRecord:
    return OAuth1ConsumerRecord("ck_a", "svc", b"rg1sealed", ("a",), None, ("HMAC-SHA1",), None, T0)


def oauth1_token(token: str, kind: str = "temporary") -> OAuth1TokenRecord:
    return OAuth1TokenRecord(
        token, kind, "ck_a", b"rg1sealed", ("a",), T0, user_id="us", subject="alice"
    )


def port_calls(store: Store) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "ping": store.ping,
        "api_keys.insert": lambda: store.api_keys.insert(api_key("ak")),
        "api_keys.get": lambda: store.api_keys.get("ak"),
        "api_keys.list": store.api_keys.list,
        "api_keys.revoke": lambda: store.api_keys.revoke("ak", T0),
        "api_keys.rotate": lambda: store.api_keys.rotate("ak", api_key("ak2"), T0),
        "api_keys.touch": lambda: store.api_keys.touch({"ak": T0}),
        "signing_keys.insert": lambda: store.signing_keys.insert(signing_key("kid", T0)),
        "signing_keys.list": store.signing_keys.list,
        "signing_keys.rotate": lambda: store.signing_keys.rotate(signing_key("kid2", T0), T0),
        "issuers.insert": lambda: store.issuers.insert(issuer("is1")),
        "issuers.list": store.issuers.list,
        "issuers.remove": lambda: store.issuers.remove("is1"),
        "oauth2_clients.insert": lambda: store.oauth2_clients.insert(oauth2_client("ci")),
        "oauth2_clients.get": lambda: store.oauth2_clients.get("ci"),
        "oauth2_clients.list": store.oauth2_clients.list,
        "oauth2_clients.revoke": lambda: store.oauth2_clients.revoke("ci", T0),
        "revoked_tokens.revoke": lambda: store.revoked_tokens.revoke("j", "ci", T0, T0),
        "revoked_tokens.active": lambda: store.revoked_tokens.active(T0),
        "users.insert": lambda: store.users.insert(user_record("us")),
        "users.get": lambda: store.users.get("us"),
        "users.by_username": lambda: store.users.by_username("alice"),
        "users.list": store.users.list,
        "users.remove": lambda: store.users.remove("us"),
        "users.login_attempt": lambda: store.users.login_attempt(
            "us", T0, lock_after=5, lock_for=timedelta(minutes=5)
        ),
        "users.login_succeeded": lambda: store.users.login_succeeded("us", None),
        "oauth2_codes.insert": lambda: store.oauth2_codes.insert(grant_code()),
        "oauth2_codes.get": lambda: store.oauth2_codes.get(b"c"),
        "oauth2_codes.consume": lambda: store.oauth2_codes.consume(
            b"c", T0, family_id=None, access_jti="j"
        ),
        "refresh_tokens.start_family": lambda: store.refresh_tokens.start_family(refresh_record()),
        "refresh_tokens.get": lambda: store.refresh_tokens.get(b"r"),
        "refresh_tokens.rotate": lambda: store.refresh_tokens.rotate(b"r", refresh_record(), T0),
        "refresh_tokens.revoke_family": lambda: store.refresh_tokens.revoke_family("f", T0),
        "refresh_tokens.revoke_user": lambda: store.refresh_tokens.revoke_user("us", T0),
        "consents.granted": lambda: store.consents.granted("us", "ci"),
        "consents.grant": lambda: store.consents.grant("us", "ci", ("a",), T0),
        "consents.revoke": lambda: store.consents.revoke("us"),
        "consents.list": lambda: store.consents.list("us"),
        "device_codes.insert": lambda: store.device_codes.insert(device_record()),
        "device_codes.get": lambda: store.device_codes.get(b"d"),
        "device_codes.by_user_code": lambda: store.device_codes.by_user_code("BCDFGHJK", T0),
        "device_codes.approve": lambda: store.device_codes.approve(
            "BCDFGHJK", user_id="us", subject="alice", scopes=("a",), at=T0
        ),
        "device_codes.deny": lambda: store.device_codes.deny("BCDFGHJK", T0),
        "device_codes.poll": lambda: store.device_codes.poll(b"d", T0, step=5),
        "device_codes.consume": lambda: store.device_codes.consume(b"d", T0),
        "oauth2_access_tokens.insert": lambda: store.oauth2_access_tokens.insert(access_record()),
        "oauth2_access_tokens.get": lambda: store.oauth2_access_tokens.get(b"t"),
        "apps.insert": lambda: store.apps.insert(app_record("app_a")),
        "apps.get": lambda: store.apps.get("app_a"),
        "apps.list": store.apps.list,
        "apps.revoke": lambda: store.apps.revoke("app_a", T0),
        "apps.rotate": lambda: store.apps.rotate("app_a", app_record("app_b"), T0),
        "signature_nonces.use": lambda: store.signature_nonces.use("app_a", "n", T0, T0),
        "oauth1_consumers.insert": lambda: store.oauth1_consumers.insert(consumer_record()),
        "oauth1_consumers.get": lambda: store.oauth1_consumers.get("ck_a"),
        "oauth1_consumers.list": store.oauth1_consumers.list,
        "oauth1_consumers.revoke": lambda: store.oauth1_consumers.revoke("ck_a", T0),
        "oauth1_tokens.insert": lambda: store.oauth1_tokens.insert(oauth1_token("rg_or_t")),
        "oauth1_tokens.get": lambda: store.oauth1_tokens.get("rg_or_t"),
        "oauth1_tokens.authorize": lambda: store.oauth1_tokens.authorize(
            "rg_or_t", user_id="us", subject="alice", scopes=("a",), verifier_hash=b"v", at=T0
        ),
        "oauth1_tokens.exchange": lambda: store.oauth1_tokens.exchange(
            "rg_or_t", b"v", oauth1_token("rg_ot_t", kind="access"), T0
        ),
        "oauth1_tokens.list": store.oauth1_tokens.list,
        "oauth1_tokens.revoke": lambda: store.oauth1_tokens.revoke("rg_ot_t", T0),
        "oauth1_tokens.revoke_user": lambda: store.oauth1_tokens.revoke_user("us", T0),
        "oauth1_nonces.use": lambda: store.oauth1_nonces.use("ck_a", "", 1, "n", T0, T0),
        "master_key_check.get": store.master_key_check.get,
        "master_key_check.put_if_absent": lambda: store.master_key_check.put_if_absent(b"rg1x"),
        "master_key_check.sealed_secrets": store.master_key_check.sealed_secrets,
    }


@pytest.fixture
def down_store(down_url: str) -> Iterator[SqlStore]:
    sql_store = open_store(down_url)
    try:
        yield sql_store
    finally:
        sql_store.close()


def test_port_calls_cover_every_port_method(tmp_path: Path) -> None:
    """A store or method added to the ports is added to the outage test too."""
    expected = {"ping"}
    for attr, port in get_type_hints(Store).items():
        expected |= {
            f"{attr}.{name}"
            for name, member in vars(port).items()
            if callable(member) and not name.startswith("_")
        }
    sql_store = open_store(f"sqlite:///{tmp_path / 'unused.db'}")
    try:
        assert set(port_calls(sql_store)) == expected
    finally:
        sql_store.close()


async def test_every_port_method_fails_closed_when_the_backend_is_down(
    down_store: SqlStore,
) -> None:
    for name, call in port_calls(down_store).items():
        with pytest.raises(BackendUnavailable) as caught:
            await call()
        error = caught.value
        assert error.status == 503, name
        assert error.description == BackendUnavailable.default_description, name
        assert "Error" in error.debug, (name, error.debug)  # names the driver error, privately
        assert error.__cause__ is None, name
        assert error.__suppress_context__, name


def test_migrate_fails_closed_when_the_backend_is_down(down_url: str) -> None:
    with pytest.raises(BackendUnavailable) as caught:
        migrate(down_url)
    assert caught.value.description == BackendUnavailable.default_description
    assert caught.value.debug


# --- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:////var/lib/restguard/restguard.db", "sqlite"),
        ("postgresql://rg@db.example:5432/restguard", "postgresql+psycopg"),
        ("postgresql+psycopg://rg@db.example:5432/restguard", "postgresql+psycopg"),
    ],
)
def test_accepted_urls(url: str, driver: str) -> None:
    engine = make_engine(url)
    try:
        assert engine.url.drivername == driver
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://rg@db.example/restguard",
        "postgresql+psycopg2://rg@db.example/restguard",
        "sqlite:///:memory:",
        "sqlite://",
        "not a url",
    ],
)
def test_rejected_urls(url: str) -> None:
    with pytest.raises(ValueError, match="postgresql://user@host:port/db"):
        make_engine(url)
