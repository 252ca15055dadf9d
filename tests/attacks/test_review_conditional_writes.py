"""Review attacks on the conditional writes of ``restguard.manage`` (the version check of
``If-Match``, RFC 9110 §13.1.1, made part of the write's SQL statement: ``store/sql/revocation.py``
and the repositories, ``manage/{apps,apikeys,oauth2_clients,oauth1,users}.py``).

Attacked through the manage/store Python API (one store, and two ``SqlStore`` engines on one
database standing for two instances), the admin REST API over HTTP and the ``restguard`` CLI, on
SQLite and the real PostgreSQL:

- many rotations and revocations of one app or API key at once (every caller has read before
  any writes: a barrier in the read), with and without ``If-Match``, with and without grace;
- two engines racing; a revocation landing between a CLI rotation's read and its write;
- records in their grace period; ``If-Match: *``; OAuth 1.0a credentials revoked with their
  consumer in between; a user removed and recreated under the same name in between; two
  removals of one user or one issuer with one ETag;
- ``revoked_at`` with microseconds and non-UTC offsets (an unchanged record must never be 412);
- error bodies (the JSON shape, no stack trace, no secret).

Each test asserts the safe behaviour. Three findings of this review were fixed with it (a
record in its grace period rotated again, ``If-Match: *`` refused after a change, two removals
of one issuer both answered 200); their tests say so.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, event

from restguard.cli.init import write_data_dir
from restguard.cli.main import cli
from restguard.keys.sealing import Sealer, open_sealer
from restguard.manage import apikeys, apps, issuers, oauth1, oauth2_clients, users
from restguard.manage.errors import Conflict, NotFound, Stale
from restguard.store.ports import OAuth1TokenRecord
from restguard.store.sql import SqlStore, migrate, open_store
from restguard.store.sql.app_repository import SqlAppStore
from restguard.store.sql.repositories import SqlApiKeyStore
from tests.fixtures_db import module_backend
from tests.integration.admin_support import AdminClient, open_admin

NOW = datetime.now(UTC).replace(microsecond=0)
LATER = NOW + timedelta(hours=1)
SEALER = Sealer(b"\x05" * 32)
PASSWORD = "correct horse battery staple"


def seal() -> Sealer:
    return SEALER


def unique(prefix: str = "cw") -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


# --- the databases: one per backend for the module, a second engine on demand ---------------


@dataclass
class Db:
    url: str
    store: SqlStore


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ],
)
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    """A migrated database of this module's own (records are named per test, so tests share
    it without seeing each other's)."""
    url = module_backend(request, tmp_path_factory, "rg_review_cw")
    migrate(url)
    store = open_store(url)
    try:
        yield Db(url, store)
    finally:
        store.close()


@pytest.fixture
def other(db: Db) -> Iterator[SqlStore]:
    """A second ``SqlStore`` (its own engine and pool) on the same database: another instance."""
    store = open_store(db.url)
    try:
        yield store
    finally:
        store.close()


# --- interleavings ---------------------------------------------------------------------------


def hold_reads(repositories: list[object], method: str, ident: str, n: int) -> Callable[[], None]:
    """The first ``n`` calls of ``method`` for ``ident`` (over all ``repositories``) each wait,
    after reading, until all ``n`` have read: every caller then writes against the same read,
    and the writes race for real (worker threads, and PostgreSQL's row locks). Returns the undo."""
    barrier = asyncio.Barrier(n)
    left = [n]

    def wrap(repository: object) -> None:
        real = getattr(repository, method)

        async def read(*args: Any) -> Any:
            got = await real(*args)
            if args and args[0] == ident and left[0] > 0:
                left[0] -= 1
                async with asyncio.timeout(10):
                    await barrier.wait()
            return got

        setattr(repository, method, read)

    for repository in repositories:
        wrap(repository)

    def undo() -> None:
        for repository in repositories:
            delattr(repository, method)

    return undo


def after_read(repository: object, method: str, change: Callable[[], Awaitable[object]]) -> None:
    """The next ``repository.method`` call reads, then ``change`` commits, then the caller goes
    on: another request's write landing between this one's read and its write."""
    real = getattr(repository, method)

    async def read(*args: Any) -> Any:
        got = await real(*args)
        delattr(repository, method)
        await change()
        return got

    setattr(repository, method, read)


def outcome(result: object) -> str:
    """``ok``, ``Stale`` (412), ``Conflict`` (409) or ``NotFound``; anything else fails."""
    if isinstance(result, Stale | Conflict | NotFound):
        return type(result).__name__
    if isinstance(result, BaseException):
        raise AssertionError(f"unexpected {type(result).__name__}: {result}") from result
    return "ok"


# --- the two kinds that rotate --------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """An app or an API key, driven through ``restguard.manage``."""

    repo: str  # the store's repository the manage call reads through
    make: Callable[[SqlStore, str], Awaitable[str]]
    version: Callable[[SqlStore, str], Awaitable[str]]
    rotate: Callable[[SqlStore, str, float | None, str | None], Awaitable[dict[str, Any]]]
    revoke: Callable[[SqlStore, str, str | None], Awaitable[dict[str, Any]]]
    records: Callable[[SqlStore, str], Awaitable[list[tuple[str, datetime | None]]]]


async def _make_app(s: SqlStore, name: str) -> str:
    return str((await apps.create(s, NOW, seal, name, ["a"]))["key_id"])


async def _app_version(s: SqlStore, ident: str) -> str:
    return apps.version(await apps.read(s, ident))


async def _app_records(s: SqlStore, name: str) -> list[tuple[str, datetime | None]]:
    return [(a.key_id, a.revoked_at) for a in await s.apps.list() if a.name == name]


async def _make_key(s: SqlStore, name: str) -> str:
    return str((await apikeys.create(s, NOW, name, ["a"]))["id"])


async def _key_version(s: SqlStore, ident: str) -> str:
    return apikeys.version(await apikeys.read(s, ident))


async def _key_records(s: SqlStore, name: str) -> list[tuple[str, datetime | None]]:
    return [(k.id, k.revoked_at) for k in await s.api_keys.list() if k.name == name]


KINDS = {
    "app": Kind(
        "apps",
        _make_app,
        _app_version,
        lambda s, i, g, m: apps.rotate(s, NOW, seal, i, grace=g, if_match=m),
        lambda s, i, m: apps.revoke(s, NOW, i, m),
        _app_records,
    ),
    "apikey": Kind(
        "api_keys",
        _make_key,
        _key_version,
        lambda s, i, g, m: apikeys.rotate(s, NOW, i, grace=g, if_match=m),
        lambda s, i, m: apikeys.revoke(s, NOW, i, m),
        _key_records,
    ),
}


def live(records: list[tuple[str, datetime | None]], ident: str) -> list[str]:
    """The successors of ``ident`` still working at NOW."""
    return [i for i, at in records if i != ident and (at is None or at > NOW)]


# --- many writes at once on one store ---------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("with_etag", [True, False], ids=["if-match", "no-if-match"])
async def test_rotations_at_once_make_one_successor(db: Db, kind: str, with_etag: bool) -> None:
    """Six rotations with grace, all having read the fresh record first: one wins; the others
    are 412 (with the ETag) or 409 (without) and make nothing."""
    k, name = KINDS[kind], unique()
    ident = await k.make(db.store, name)
    tag = await k.version(db.store, ident) if with_etag else None
    undo = hold_reads([getattr(db.store, k.repo)], "get", ident, 6)
    try:
        got = await asyncio.gather(
            *(k.rotate(db.store, ident, 60.0, tag) for _ in range(6)), return_exceptions=True
        )
    finally:
        undo()
    refused = "Stale" if with_etag else "Conflict"
    assert sorted(outcome(r) for r in got) == [refused] * 5 + ["ok"]
    records = await k.records(db.store, name)
    assert len(records) == 2 and len(live(records, ident)) == 1
    assert dict(records)[ident] == NOW + timedelta(seconds=60)


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_rotations_and_revocations_with_one_etag_one_wins(db: Db, kind: str) -> None:
    """Three rotations (grace) and three revocations with one ETag, all read before any writes:
    exactly one goes through; a revocation winning leaves no successor at all."""
    k, name = KINDS[kind], unique()
    ident = await k.make(db.store, name)
    tag = await k.version(db.store, ident)
    undo = hold_reads([getattr(db.store, k.repo)], "get", ident, 6)
    try:
        calls = [k.rotate(db.store, ident, 60.0, tag) for _ in range(3)]
        calls += [k.revoke(db.store, ident, tag) for _ in range(3)]
        got = [outcome(r) for r in await asyncio.gather(*calls, return_exceptions=True)]
    finally:
        undo()
    assert got.count("ok") == 1 and got.count("Stale") == 5, got
    records = await k.records(db.store, name)
    if got.index("ok") < 3:  # a rotation won
        assert len(records) == 2 and dict(records)[ident] == NOW + timedelta(seconds=60)
    else:
        assert records == [(ident, NOW)]


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_rotations_racing_plain_revocations_never_outlive_them(db: Db, kind: str) -> None:
    """Without ``If-Match``: three rotations and three revocations after one read. The
    revocations all go through; at most one rotation does (it committed first), and the old
    record ends revoked now whatever the order."""
    k, name = KINDS[kind], unique()
    ident = await k.make(db.store, name)
    readers = 6 if kind == "app" else 3  # an API key's plain revocation reads nothing first
    undo = hold_reads([getattr(db.store, k.repo)], "get", ident, readers)
    try:
        calls = [k.rotate(db.store, ident, 60.0, None) for _ in range(3)]
        calls += [k.revoke(db.store, ident, None) for _ in range(3)]
        got = [outcome(r) for r in await asyncio.gather(*calls, return_exceptions=True)]
    finally:
        undo()
    assert got[3:] == ["ok"] * 3
    assert got[:3].count("ok") <= 1 and got[:3].count("Conflict") >= 2, got
    records = await k.records(db.store, name)
    assert len(records) == 1 + got[:3].count("ok")
    assert dict(records)[ident] == NOW


# --- two instances (two engines) on one database ---------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_two_engines_rotating_at_once_make_one_successor(
    db: Db, other: SqlStore, kind: str
) -> None:
    """Eight rotations with grace and one ETag, alternating between two engines, every one
    having read first: one successor, seven 412."""
    k, name = KINDS[kind], unique()
    ident = await k.make(db.store, name)
    tag = await k.version(db.store, ident)
    stores = [db.store, other]
    undo = hold_reads([getattr(s, k.repo) for s in stores], "get", ident, 8)
    try:
        got = await asyncio.gather(
            *(k.rotate(stores[n % 2], ident, 30.0, tag) for n in range(8)),
            return_exceptions=True,
        )
    finally:
        undo()
    assert sorted(outcome(r) for r in got) == ["Stale"] * 7 + ["ok"]
    assert len(live(await k.records(other, name), ident)) == 1


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_two_engines_rotate_and_revoke_without_barrier(
    db: Db, other: SqlStore, kind: str
) -> None:
    """Free-running: six rotations (no grace, no ETag) on one engine and six revocations on the
    other. At most one successor, and no successor is live unless its rotation committed
    before every revocation (then the old record was revoked at the rotation, not later)."""
    k, name = KINDS[kind], unique()
    ident = await k.make(db.store, name)
    calls = [k.rotate(db.store, ident, None, None) for _ in range(6)]
    calls += [k.revoke(other, ident, None) for _ in range(6)]
    got = [outcome(r) for r in await asyncio.gather(*calls, return_exceptions=True)]
    assert got[6:] == ["ok"] * 6
    assert got[:6].count("ok") <= 1, got
    records = await k.records(db.store, name)
    assert len(records) == 1 + got[:6].count("ok")
    assert dict(records)[ident] == NOW


# --- a record in its grace period ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_revoking_in_the_grace_period_with_its_etag(db: Db, kind: str) -> None:
    """Rotated with grace, then revoked with the ETag read in the grace period: it stops now,
    the successor stays; the ETag from before the rotation is 412 and changes nothing."""
    k, name = KINDS[kind], unique()
    ident = await k.make(db.store, name)
    before = await k.version(db.store, ident)
    await k.rotate(db.store, ident, 3600.0, None)
    with pytest.raises(Stale):
        await k.revoke(db.store, ident, before)
    assert dict(await k.records(db.store, name))[ident] == LATER
    await k.revoke(db.store, ident, await k.version(db.store, ident))
    records = await k.records(db.store, name)
    assert dict(records)[ident] == NOW and len(live(records, ident)) == 1


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_revocation_in_the_grace_period_stops_a_racing_rotation(db: Db, kind: str) -> None:
    """In its grace period, revoked between a rotation's read and its write: the rotation is
    409 and makes nothing, so the revoked record gets no further live successor."""
    k, name = KINDS[kind], unique()
    ident = await k.make(db.store, name)
    await k.rotate(db.store, ident, 3600.0, None)
    after_read(getattr(db.store, k.repo), "get", lambda: k.revoke(db.store, ident, None))
    with pytest.raises(Conflict):
        await k.rotate(db.store, ident, 7200.0, None)
    records = await k.records(db.store, name)
    assert len(records) == 2 and dict(records)[ident] == NOW


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_record_in_its_grace_period_is_not_rotated_again(db: Db, kind: str) -> None:
    """Found here first: a rotation that kept the earlier grace end left ``revoked_at``, and
    so the ETag and the write's check, unchanged, and N rotations with one ETag made N live
    successors. A record with a successor is not rotated again (409: rotate the successor)."""
    k, name = KINDS[kind], unique()
    ident = await k.make(db.store, name)
    await k.rotate(db.store, ident, 3600.0, None)  # in its grace period until LATER
    tag = await k.version(db.store, ident)
    undo = hold_reads([getattr(db.store, k.repo)], "get", ident, 3)
    try:
        got = await asyncio.gather(
            *(k.rotate(db.store, ident, 7200.0, tag) for _ in range(3)), return_exceptions=True
        )
    finally:
        undo()
    assert sorted(outcome(r) for r in got) == ["Conflict"] * 3
    assert len(live(await k.records(db.store, name), ident)) == 1  # the first rotation's


# --- If-Match: * ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revocable:
    repo: str
    make: Callable[[SqlStore], Awaitable[str]]
    change: Callable[[SqlStore, str], Awaitable[object]]  # leaves the record existing, live
    revoke: Callable[[SqlStore, str, str | None], Awaitable[dict[str, Any]]]
    version: Callable[[SqlStore, str], Awaitable[str]]
    revoked_at: Callable[[SqlStore, str], Awaitable[datetime | None]]


async def _client(s: SqlStore) -> str:
    made = await oauth2_clients.create(s, NOW, unique(), ["a"], ["client_credentials"])
    return str(made["client_id"])


async def _consumer(s: SqlStore) -> str:
    return str((await oauth1.create_consumer(s, NOW, seal, unique(), ["a"]))["consumer_key"])


async def _temporary(s: SqlStore) -> str:
    rec = OAuth1TokenRecord(
        unique("tok"),
        "temporary",
        await _consumer(s),
        b"rg1sealed",
        ("a", "b"),
        NOW,
        expires_at=LATER,
    )
    await s.oauth1_tokens.insert(rec)
    return rec.token


async def _authorize(s: SqlStore, token: str) -> None:
    user = await users.create(s, NOW, unique("u"), PASSWORD, ["a"])
    assert await s.oauth1_tokens.authorize(
        token, user_id=user["user_id"], subject="u", scopes=("a",), verifier_hash=b"v" * 32, at=NOW
    )


async def _revoked_at(getter: Awaitable[Any]) -> datetime | None:
    rec = await getter
    assert rec is not None
    at: datetime | None = rec.revoked_at
    return at


REVOCABLE = {
    "app": Revocable(
        "apps",
        lambda s: _make_app(s, unique()),
        lambda s, i: apps.rotate(s, NOW, seal, i, grace=3600),
        lambda s, i, m: apps.revoke(s, NOW, i, m),
        _app_version,
        lambda s, i: _revoked_at(s.apps.get(i)),
    ),
    "apikey": Revocable(
        "api_keys",
        lambda s: _make_key(s, unique()),
        lambda s, i: apikeys.rotate(s, NOW, i, grace=3600),
        lambda s, i, m: apikeys.revoke(s, NOW, i, m),
        _key_version,
        lambda s, i: _revoked_at(s.api_keys.get(i)),
    ),
    "oauth2_client": Revocable(
        "oauth2_clients",
        _client,
        lambda s, i: s.oauth2_clients.revoke(i, LATER),  # revoked from LATER: live now
        lambda s, i, m: oauth2_clients.revoke(s, NOW, i, m),
        lambda s, i: _vers(oauth2_clients.version, s.oauth2_clients.get(i)),
        lambda s, i: _revoked_at(s.oauth2_clients.get(i)),
    ),
    "oauth1_consumer": Revocable(
        "oauth1_consumers",
        _consumer,
        lambda s, i: s.oauth1_consumers.revoke(i, LATER),
        lambda s, i, m: oauth1.revoke_consumer(s, NOW, i, m),
        lambda s, i: _vers(oauth1.consumer_version, s.oauth1_consumers.get(i)),
        lambda s, i: _revoked_at(s.oauth1_consumers.get(i)),
    ),
    "oauth1_token": Revocable(
        "oauth1_tokens",
        _temporary,
        _authorize,  # authorized with fewer scopes: a new version
        lambda s, i, m: oauth1.revoke_token(s, NOW, i, m),
        lambda s, i: _vers(oauth1.token_version, s.oauth1_tokens.get(i)),
        lambda s, i: _revoked_at(s.oauth1_tokens.get(i)),
    ),
}


async def _vers(version: Callable[[Any], str], getter: Awaitable[Any]) -> str:
    rec = await getter
    assert rec is not None
    return version(rec)


@pytest.mark.parametrize("kind", sorted(REVOCABLE))
async def test_a_stale_etag_revocation_changes_nothing(db: Db, kind: str) -> None:
    """The change lands between the read and the write: a revocation with the ETag read
    before it is 412 and the record keeps what the change left (not revoked now)."""
    r = REVOCABLE[kind]
    ident = await r.make(db.store)
    tag = await r.version(db.store, ident)
    after_read(getattr(db.store, r.repo), "get", lambda: r.change(db.store, ident))
    with pytest.raises(Stale) as refused:
        await r.revoke(db.store, ident, tag)
    assert refused.value.status == 412 and refused.value.field == "If-Match"
    assert await r.revoked_at(db.store, ident) != NOW


@pytest.mark.parametrize("kind", sorted(REVOCABLE))
async def test_if_match_star_revocation_holds_while_the_record_exists(db: Db, kind: str) -> None:
    r = REVOCABLE[kind]
    ident = await r.make(db.store)
    after_read(getattr(db.store, r.repo), "get", lambda: r.change(db.store, ident))
    await r.revoke(db.store, ident, "*")
    assert await r.revoked_at(db.store, ident) == NOW


@pytest.mark.parametrize("kind", sorted(REVOCABLE))
async def test_if_match_star_on_a_missing_record_is_404(db: Db, kind: str) -> None:
    with pytest.raises(NotFound):
        await REVOCABLE[kind].revoke(db.store, unique("missing"), "*")


# --- OAuth 1.0a credentials revoked with their consumer in between --------------------------------


async def test_a_token_revoked_with_its_consumer_in_between_is_412(db: Db) -> None:
    token = await _temporary(db.store)
    rec = await db.store.oauth1_tokens.get(token)
    assert rec is not None
    tag = oauth1.token_version(rec)
    at = NOW - timedelta(minutes=5, microseconds=7)

    async def change() -> None:
        await db.store.oauth1_consumers.revoke(rec.consumer_key, at)

    after_read(db.store.oauth1_tokens, "get", change)
    with pytest.raises(Stale):
        await oauth1.revoke_token(db.store, NOW, token, tag)
    assert await _revoked_at(db.store.oauth1_tokens.get(token)) == at
    # without If-Match it goes through, keeping the consumer's earlier time
    done = await oauth1.revoke_token(db.store, NOW, token)
    assert done["state"] == "revoked"
    assert await _revoked_at(db.store.oauth1_tokens.get(token)) == at


async def test_a_refused_consumer_revocation_leaves_its_tokens_alone(db: Db) -> None:
    """The consumer's revocation revokes its credentials in the same transaction: refused (412,
    a change in between), it must revoke none of them either."""
    token = await _temporary(db.store)
    rec = await db.store.oauth1_tokens.get(token)
    assert rec is not None
    consumer = rec.consumer_key
    tag = await REVOCABLE["oauth1_consumer"].version(db.store, consumer)

    async def change() -> None:
        await db.store.oauth1_consumers.revoke(consumer, LATER)  # its token too, from LATER

    after_read(db.store.oauth1_consumers, "get", change)
    with pytest.raises(Stale):
        await oauth1.revoke_consumer(db.store, NOW, consumer, tag)
    assert await _revoked_at(db.store.oauth1_consumers.get(consumer)) == LATER
    assert await _revoked_at(db.store.oauth1_tokens.get(token)) == LATER


# --- sub-second and non-UTC revocation times: never a false 412 -----------------------------------

IST = timezone(timedelta(hours=5, minutes=30))
BRT = timezone(timedelta(hours=-3))
ODD = timezone(timedelta(hours=-9, minutes=-59, seconds=-59, microseconds=-999999))


@pytest.mark.parametrize("micro", [0, 1, 500_000, 999_999])
@pytest.mark.parametrize("kind", sorted(REVOCABLE))
async def test_an_unchanged_revoked_record_is_never_412(db: Db, kind: str, micro: int) -> None:
    """Revoked at a time with microseconds given in an odd offset, read, then revoked again
    (idempotent) with its current ETag from another offset: 200, its time kept exactly."""
    r = REVOCABLE[kind]
    ident = await r.make(db.store)
    first = (NOW - timedelta(minutes=3)).replace(microsecond=micro).astimezone(IST)
    revoke_at: dict[str, Callable[[], Awaitable[object]]] = {
        "app": lambda: db.store.apps.revoke(ident, first),
        "apikey": lambda: db.store.api_keys.revoke(ident, first),
        "oauth2_client": lambda: db.store.oauth2_clients.revoke(ident, first),
        "oauth1_consumer": lambda: db.store.oauth1_consumers.revoke(ident, first),
        "oauth1_token": lambda: db.store.oauth1_tokens.revoke(ident, first),
    }
    await revoke_at[kind]()
    for zone in (BRT, ODD, UTC):
        tag = await r.version(db.store, ident)
        rec = await getattr(db.store, r.repo).get(ident)
        assert rec.revoked_at == first
        # the store's conditional write with the record exactly as read, in another offset
        again = await getattr(db.store, r.repo).revoke(
            ident, NOW.astimezone(zone), expected=_in_zone(rec, zone)
        )
        assert again.revoked_at == first
        await r.revoke(db.store, ident, tag)
        assert await r.revoked_at(db.store, ident) == first


def _in_zone(rec: Any, zone: timezone) -> Any:
    """``rec`` with its times given in ``zone`` (the same instants)."""
    return replace(
        rec, revoked_at=None if rec.revoked_at is None else rec.revoked_at.astimezone(zone)
    )


@pytest.mark.parametrize("grace", [0.000001, 0.123457, 1.5])
@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_sub_second_grace_end_matches_itself(db: Db, kind: str, grace: float) -> None:
    """Rotated with a grace of microseconds: the grace end (microsecond precision) read back
    matches in the write's check, for a revocation and a second rotation alike."""
    k, name = KINDS[kind], unique()
    ident = await k.make(db.store, name)
    await k.rotate(db.store, ident, grace, await k.version(db.store, ident))
    end = dict(await k.records(db.store, name))[ident]
    assert end == NOW + timedelta(seconds=grace)
    await k.revoke(db.store, ident, await k.version(db.store, ident))
    assert dict(await k.records(db.store, name))[ident] == NOW


# --- users removed by the user_id read ------------------------------------------------------------


async def test_a_namesake_created_in_between_by_another_instance_stays(
    db: Db, other: SqlStore
) -> None:
    name = unique("al")
    first = await users.create(db.store, NOW, name, PASSWORD, ["a"])

    async def replace_user() -> None:
        await users.remove(other, NOW, first["user_id"])
        await users.create(other, NOW, name, PASSWORD, ["b"])

    after_read(db.store.users, "by_username", replace_user)
    with pytest.raises(NotFound):
        await users.remove(db.store, NOW, name.upper())
    left = await users.find(db.store, name)
    assert left.user_id != first["user_id"] and left.scopes == ("b",)


async def test_two_removals_of_one_user_with_one_etag(db: Db, other: SqlStore) -> None:
    name = unique("bo")
    made = await users.create(db.store, NOW, name, PASSWORD, ["a"])
    tag = users.version(await users.find(db.store, made["user_id"]))
    got = await asyncio.gather(
        users.remove(db.store, NOW, name, tag),
        users.remove(other, NOW, name, tag),
        return_exceptions=True,
    )
    assert sorted(outcome(r) for r in got) == ["NotFound", "ok"]


@contextmanager
def removals_interleaved(*engines: Engine) -> Iterator[None]:
    """While open, the first ``DELETE FROM issuers`` (on any of ``engines``) waits until two
    removals have read the issuers: both find it before either deletes it, the interleaving of
    two instances' removals made deterministic. (Found here first: the store's removal read
    the row, then deleted it unchecked, so both answered 200; it is one ``DELETE ...
    RETURNING`` now.)"""
    lock, both_read = threading.Lock(), threading.Event()
    seen = {"select": 0, "delete": 0}

    def words(statement: str) -> str:
        return " ".join(statement.split()).upper()

    def selected(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        text = words(statement)
        if "ISSUERS" in text and text.startswith("SELECT"):
            with lock:
                seen["select"] += 1
                if seen["select"] >= 2:
                    both_read.set()

    def deleting(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        text = words(statement)
        if "ISSUERS" in text and text.startswith("DELETE"):
            with lock:
                seen["delete"] += 1
                first = seen["delete"] == 1
            if first:
                both_read.wait(5)

    for engine in engines:
        event.listen(engine, "after_cursor_execute", selected)  # (its row is read by then)
        event.listen(engine, "before_cursor_execute", deleting)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, "after_cursor_execute", selected)
            event.remove(engine, "before_cursor_execute", deleting)


async def test_two_instances_removing_one_issuer_with_one_etag(db: Db, other: SqlStore) -> None:
    rec = issuers.check(NOW, f"https://{unique('idp')}.example", "https://idp.example/j", "api")
    await db.store.issuers.insert(rec)
    tag = issuers.version(rec)
    with removals_interleaved(db.store.engine, other.engine):
        got = await asyncio.gather(
            issuers.remove(db.store, rec.id, tag),
            issuers.remove(other, rec.id, tag),
            return_exceptions=True,
        )
    assert rec.id not in [i.id for i in await db.store.issuers.list()]
    assert sorted(outcome(r) for r in got) == ["NotFound", "ok"]


async def test_two_removals_of_one_user_interleaved_one_wins(db: Db, other: SqlStore) -> None:
    """The user store's removal is one ``DELETE ... RETURNING``: of two at once, whatever the
    interleaving, one answers the record and the other 404."""
    name = unique("cy")
    made = await users.create(db.store, NOW, name, PASSWORD, ["a"])
    tag = users.version(await users.find(db.store, made["user_id"]))
    undo = hold_reads([db.store.users, other.users], "get", made["user_id"], 2)
    try:
        got = await asyncio.gather(
            users.remove(db.store, NOW, made["user_id"], tag),
            users.remove(other, NOW, made["user_id"], tag),
            return_exceptions=True,
        )
    finally:
        undo()
    assert sorted(outcome(r) for r in got) == ["NotFound", "ok"]


# --- the admin API over HTTP, on SQLite and PostgreSQL ------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
async def admin(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AdminClient]:
    url = None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))
    async with open_admin(tmp_path, AdminClient, database=url) as client:
        yield client


def assert_error_body(r: httpx.Response, status: int, *secrets_: str) -> None:
    """The contract's error shape, nothing more revealing."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) <= {"error", "error_description", "field"}
    assert isinstance(body["error"], str) and isinstance(body["error_description"], str)
    for leak in ("Traceback", "StaleRecord", "sqlalchemy", "psycopg", "UPDATE ", "SELECT "):
        assert leak not in r.text
    for secret in secrets_:
        assert secret not in r.text


async def _http_app(admin: AdminClient, name: str) -> dict[str, Any]:
    r = await admin.post("/api/apps", {"name": name, "scopes": ["notes:read"]})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def _http_items(admin: AdminClient, path: str, name: str) -> list[dict[str, Any]]:
    r = await admin.get(path, params={"limit": "1000", "name": name})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_http_rotations_and_revocations_with_one_etag(admin: AdminClient) -> None:
    """Four rotations (with grace) and four revocations of one app sent at once with its
    ETag: exactly one answer is 2xx; the others are 412 in the contract's shape, naming
    neither the winner's new secret nor the admin key."""
    name = unique()
    made = await _http_app(admin, name)
    path, tag = f"/api/apps/{made['key_id']}", made["etag"]
    sends = [
        admin.post(f"{path}/rotate", {"grace": "1h"}, headers={"If-Match": tag}) for _ in range(4)
    ]
    sends += [admin.post(f"{path}/revoke", headers={"If-Match": tag}) for _ in range(4)]
    answers = await asyncio.gather(*sends)
    ok = [r for r in answers if r.status_code < 300]
    assert len(ok) == 1, [r.status_code for r in answers]
    won = ok[0].json()
    for r in answers:
        if r is not ok[0]:
            assert_error_body(r, 412, admin.key, won.get("secret") or "never-there")
            assert r.json()["field"] == "If-Match"
    admin.runtime.audit.flush()  # type: ignore[union-attr]
    lines = [json.loads(line) for line in admin.audit.read_text().splitlines()]
    changed = [
        line["detail"]
        for line in lines
        if (line["detail"] or "").startswith(("admin app.rotate", "admin app.revoke"))
        and made["key_id"] in line["detail"]
    ]
    assert len(changed) == 1, changed  # the refused writes are not audited as changes
    items = await _http_items(admin, "/api/apps", name)
    live_apps = [a for a in items if a["state"] in ("active", "grace")]
    if "secret" in won:  # the rotation won: the old one in grace, one successor
        assert len(items) == 2 and len(live_apps) == 2
    else:
        assert len(items) == 1 and live_apps == []


async def test_http_key_rotations_at_once_with_one_etag(admin: AdminClient) -> None:
    name = unique()
    r = await admin.post("/api/apikeys", {"name": name, "scopes": ["notes:read"]})
    assert r.status_code == 201, r.text
    made = r.json()
    answers = await asyncio.gather(
        *(
            admin.post(f"/api/apikeys/{made['id']}/rotate", headers={"If-Match": made["etag"]})
            for _ in range(6)
        )
    )
    assert sorted(a.status_code for a in answers) == [201] + [412] * 5
    keys = [a.json()["key"] for a in answers if a.status_code == 201]
    for a in answers:
        if a.status_code == 412:
            assert_error_body(a, 412, admin.key, made["key"], *keys)
    items = await _http_items(admin, "/api/apikeys", name)
    assert sorted(i["state"] for i in items) == ["active", "revoked"]


async def test_http_rotation_without_etag_after_a_revocation_in_between_is_409(
    admin: AdminClient,
) -> None:
    name = unique()
    made = await _http_app(admin, name)
    store = admin.runtime.store

    async def revoke() -> None:
        await apps.revoke(store, datetime.now(UTC), made["key_id"])

    after_read(store.apps, "get", revoke)
    r = await admin.post(f"/api/apps/{made['key_id']}/rotate", {"grace": "1h"})
    assert_error_body(r, 409, admin.key, made["secret"])
    assert "changed while rotating" in r.json()["error_description"]
    items = await _http_items(admin, "/api/apps", name)
    assert [i["state"] for i in items] == ["revoked"]


async def test_http_rotations_of_an_app_in_grace_with_one_etag(admin: AdminClient) -> None:
    name = unique()
    made = await _http_app(admin, name)
    first = await admin.post(f"/api/apps/{made['key_id']}/rotate", {"grace": "1h"})
    assert first.status_code == 201, first.text
    tag = (await admin.get(f"/api/apps/{made['key_id']}")).headers["etag"]
    answers = await asyncio.gather(
        *(
            admin.post(
                f"/api/apps/{made['key_id']}/rotate", {"grace": "2h"}, headers={"If-Match": tag}
            )
            for _ in range(4)
        )
    )
    assert sorted(a.status_code for a in answers) == [409] * 4
    assert all("rotated already" in a.json()["error_description"] for a in answers)


async def test_http_two_issuer_removals_with_one_etag(admin: AdminClient) -> None:
    r = await admin.post(
        "/api/issuers",
        {
            "issuer": f"https://{unique('idp')}.example",
            "jwks_uri": "https://idp.example/jwks",
            "audience": "api",
        },
    )
    assert r.status_code == 201, r.text
    made = r.json()
    engine: Engine = admin.runtime.store.engine  # type: ignore[attr-defined]
    path = f"/api/issuers/{made['id']}"
    with removals_interleaved(engine):
        answers = await asyncio.gather(
            *(admin.delete(path, headers={"If-Match": made["etag"]}) for _ in range(2))
        )
    codes = sorted(a.status_code for a in answers)
    admin.runtime.audit.flush()  # type: ignore[union-attr]
    removed = [
        line
        for line in admin.audit.read_text().splitlines()
        if f"admin issuer.remove {made['id']}" in line
    ]
    assert (await admin.get(path)).status_code == 404
    assert codes in ([200, 404], [200, 412]) and len(removed) == 1, (codes, len(removed))


async def test_http_unknown_record_with_if_match_is_404(admin: AdminClient) -> None:
    for path in (
        "/api/apps/app_aaaaaaaaaaaaaaaa/revoke",
        "/api/apps/app_aaaaaaaaaaaaaaaa/rotate",
        "/api/apikeys/aaaaaaaaaaaa/revoke",
        "/api/oauth2/clients/nope/revoke",
        "/api/oauth1/consumers/nope/revoke",
        "/api/oauth1/tokens/nope/revoke",
    ):
        r = await admin.post(path, headers={"If-Match": '"abc"'})
        assert r.status_code in (400, 404), (path, r.text)
        assert_error_body(r, r.status_code, admin.key)


# --- the CLI: another instance revokes between the CLI's read and its write ----------------------


@pytest.mark.parametrize("kind", ["app", "apikey"])
def test_cli_rotation_racing_another_instance_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    config = write_data_dir(tmp_path / "d")
    url = "sqlite:///" + str(config.parent / "restguard.db")
    sealer = open_sealer(config.parent / "master.key")
    name = unique()

    async def make() -> str:
        store = open_store(url)
        try:
            if kind == "app":
                return str((await apps.create(store, NOW, lambda: sealer, name, ["a"]))["key_id"])
            return await _make_key(store, name)
        finally:
            store.close()

    ident = asyncio.run(make())
    repo_class: Any = SqlAppStore if kind == "app" else SqlApiKeyStore
    real = repo_class.get
    fired: list[bool] = []

    async def get(self: Any, key: str) -> Any:
        got = await real(self, key)
        if key == ident and not fired:
            fired.append(True)
            instance = open_store(url)  # another instance revokes it now
            try:
                if kind == "app":
                    await apps.revoke(instance, datetime.now(UTC), ident)
                else:
                    await apikeys.revoke(instance, datetime.now(UTC), ident)
            finally:
                instance.close()
        return got

    monkeypatch.setattr(repo_class, "get", get)
    command = "app" if kind == "app" else "apikey"
    result = CliRunner().invoke(
        cli, [command, "rotate", ident, "--grace", "1h", "--config", str(config), "--json"]
    )
    monkeypatch.undo()
    assert fired and result.exit_code == 1, result.output
    assert "changed while rotating" in result.output and "Traceback" not in result.output

    async def left() -> list[tuple[str, datetime | None]]:
        store = open_store(url)
        try:
            return await KINDS[kind].records(store, name)
        finally:
            store.close()

    records = asyncio.run(left())
    assert len(records) == 1 and records[0][1] is not None  # revoked, no successor
