"""Every conditional write of ``restguard.manage`` holds against a change that lands between
its read and its write, on SQLite and the real PostgreSQL.

An operation that takes ``if_match`` reads the record, checks the version (RFC 9110 §13.1.1)
and then writes. A change committed in between (another operator, instance or worker) must
not be overwritten: the check is part of the write's statement, so the write answers 412
(``Stale``) and changes nothing. A rotation also checks without ``If-Match`` (409): a revoked
app or key never gets a live successor, and of two rotations at once one wins.

``test_every_conditional_write_has_a_race_here`` finds each ``if_match`` operation of
``restguard.manage`` by inspection: one added later without a case here fails it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import restguard.manage
from restguard.errors import BackendUnavailable
from restguard.keys.sealing import Sealer
from restguard.manage import apikeys, apps, issuers, oauth1, oauth2_clients, users
from restguard.manage.errors import Conflict, NotFound, Stale
from restguard.store.ports import OAuth1TokenRecord
from restguard.store.sql import SqlStore, migrate, open_store

NOW = datetime.now(UTC).replace(microsecond=0)
LATER = NOW + timedelta(hours=1)
SEALER = Sealer(b"\x02" * 32)


def seal() -> Sealer:
    return SEALER


def after_read(repository: object, method: str, change: Callable[[], Awaitable[object]]) -> None:
    """The next ``repository.method`` call returns what it read, then ``change`` commits before
    the caller goes on: the interleaving of two requests, made deterministic."""
    real = getattr(repository, method)

    async def read(*args: Any) -> Any:
        got = await real(*args)
        delattr(repository, method)  # once
        await change()
        return got

    setattr(repository, method, read)


@dataclass
class Race:
    """``prepare`` makes the record and returns (its id, its version); ``change`` is the write
    that lands in between; ``act`` is the operation under test; ``state`` reads what should be
    left exactly as ``change`` left it."""

    getter: tuple[str, str]  # (store attribute, method) the operation reads through
    prepare: Callable[[SqlStore], Awaitable[tuple[str, str]]]
    change: Callable[[SqlStore, str], Awaitable[object]]
    act: Callable[[SqlStore, str, str | None], Awaitable[object]]
    state: Callable[[SqlStore, str], Awaitable[object]]
    refused: type[Exception] = Stale
    refused_unconditional: type[Exception] | None = None  # None: it goes through


# --- the records ------------------------------------------------------------------------------


async def _apikey(store: SqlStore) -> tuple[str, str]:
    made = await apikeys.create(store, NOW, "raced", ["a"])
    return made["id"], apikeys.version(await apikeys.read(store, made["id"]))


async def _app(store: SqlStore) -> tuple[str, str]:
    made = await apps.create(store, NOW, seal, "raced", ["a"])
    return made["key_id"], apps.version(await apps.read(store, made["key_id"]))


async def _client(store: SqlStore) -> tuple[str, str]:
    made = await oauth2_clients.create(store, NOW, "raced", ["a"], ["client_credentials"])
    rec = await oauth2_clients.read(store, made["client_id"])
    return rec.client_id, oauth2_clients.version(rec)


async def _consumer(store: SqlStore) -> tuple[str, str]:
    made = await oauth1.create_consumer(store, NOW, seal, "raced", ["a"])
    rec = await oauth1.read_consumer(store, made["consumer_key"])
    return rec.consumer_key, oauth1.consumer_version(rec)


async def _user(store: SqlStore, name: str = "alice") -> tuple[str, str]:
    made = await users.create(store, NOW, name, "correct horse battery staple", ["a"])
    return made["user_id"], users.version(await users.find(store, made["user_id"]))


async def _temporary(store: SqlStore) -> tuple[str, str]:
    consumer, _ = await _consumer(store)
    rec = OAuth1TokenRecord(
        "raced-token", "temporary", consumer, b"rg1sealed", ("a", "b"), NOW, expires_at=LATER
    )
    await store.oauth1_tokens.insert(rec)
    return rec.token, oauth1.token_version(rec)


async def _issuer(store: SqlStore) -> tuple[str, str]:
    rec = issuers.check(NOW, "https://idp.example", "https://idp.example/jwks", "api")
    await store.issuers.insert(rec)
    return rec.id, issuers.version(rec)


# --- what is left -------------------------------------------------------------------------------


async def _keys(store: SqlStore, key_id: str) -> object:
    return sorted((k.id == key_id, k.revoked_at) for k in await store.api_keys.list())


async def _apps(store: SqlStore, key_id: str) -> object:
    return sorted((a.key_id == key_id, a.revoked_at) for a in await store.apps.list())


async def _clients(store: SqlStore, client_id: str) -> object:
    return [(c.client_id, c.revoked_at) for c in await store.oauth2_clients.list()]


async def _consumers(store: SqlStore, consumer_key: str) -> object:
    return [(c.consumer_key, c.revoked_at) for c in await store.oauth1_consumers.list()]


async def _token(store: SqlStore, token: str) -> object:
    rec = await store.oauth1_tokens.get(token)
    assert rec is not None
    return rec.scopes, rec.user_id, rec.revoked_at


async def _users(store: SqlStore, user_id: str) -> object:
    return sorted((u.user_id, u.username) for u in await store.users.list())


async def _issuers(store: SqlStore, issuer_id: str) -> object:
    return [i.id for i in await store.issuers.list()]


async def _authorize(store: SqlStore, token: str) -> object:
    user_id, _ = await _user(store, "bob")
    return await store.oauth1_tokens.authorize(
        token, user_id=user_id, subject="bob", scopes=("a",), verifier_hash=b"v" * 32, at=NOW
    )


async def _replace_user(store: SqlStore, user_id: str) -> object:
    await users.remove(store, NOW, user_id)
    return await _user(store, "alice")  # a namesake, with a user_id of its own


RACES: dict[str, Race] = {
    # a rotation with a grace period moves revoked_at to LATER: a revocation at NOW that went
    # through would show as NOW
    "apikeys.revoke": Race(
        ("api_keys", "get"),
        _apikey,
        lambda s, i: apikeys.rotate(s, NOW, i, grace=3600),
        lambda s, i, m: apikeys.revoke(s, NOW, i, m),
        _keys,
    ),
    "apikeys.rotate": Race(
        ("api_keys", "get"),
        _apikey,
        lambda s, i: apikeys.revoke(s, NOW, i),
        lambda s, i, m: apikeys.rotate(s, NOW, i, if_match=m),
        _keys,
        refused_unconditional=Conflict,
    ),
    "apps.revoke": Race(
        ("apps", "get"),
        _app,
        lambda s, i: apps.rotate(s, NOW, seal, i, grace=3600),
        lambda s, i, m: apps.revoke(s, NOW, i, m),
        _apps,
    ),
    "apps.rotate": Race(
        ("apps", "get"),
        _app,
        lambda s, i: apps.revoke(s, NOW, i),
        lambda s, i, m: apps.rotate(s, NOW, seal, i, if_match=m),
        _apps,
        refused_unconditional=Conflict,
    ),
    "oauth2_clients.revoke": Race(
        ("oauth2_clients", "get"),
        _client,
        lambda s, i: s.oauth2_clients.revoke(i, LATER),
        lambda s, i, m: oauth2_clients.revoke(s, NOW, i, m),
        _clients,
    ),
    "oauth1.revoke_consumer": Race(
        ("oauth1_consumers", "get"),
        _consumer,
        lambda s, i: s.oauth1_consumers.revoke(i, LATER),
        lambda s, i, m: oauth1.revoke_consumer(s, NOW, i, m),
        _consumers,
    ),
    # temporary credentials authorized in between, with fewer scopes: a new version
    "oauth1.revoke_token": Race(
        ("oauth1_tokens", "get"),
        _temporary,
        _authorize,
        lambda s, i, m: oauth1.revoke_token(s, NOW, i, m),
        _token,
    ),
    # removed, and a namesake made: the namesake stays, with or without If-Match
    "users.remove": Race(
        ("users", "by_username"),
        _user,
        _replace_user,
        lambda s, i, m: users.remove(s, NOW, "alice", m),
        _users,
        refused=NotFound,
        refused_unconditional=NotFound,
    ),
    # issuers are never edited in place: removed in between is all that can happen
    "issuers.remove": Race(
        ("issuers", "list"),
        _issuer,
        lambda s, i: issuers.remove(s, i),
        lambda s, i, m: issuers.remove(s, i, m),
        _issuers,
        refused=NotFound,
        refused_unconditional=NotFound,
    ),
}


def conditional_writes() -> set[str]:
    """``module.function`` of every public coroutine function in ``restguard.manage`` that takes
    ``if_match``."""
    found = set()
    for info in pkgutil.iter_modules(restguard.manage.__path__):
        module = importlib.import_module(f"restguard.manage.{info.name}")
        for name, fn in vars(module).items():
            if (
                inspect.iscoroutinefunction(fn)
                and fn.__module__ == module.__name__
                and not name.startswith("_")
                and "if_match" in inspect.signature(fn).parameters
            ):
                found.add(f"{info.name}.{name}")
    return found


def test_every_conditional_write_has_a_race_here() -> None:
    assert conditional_writes() == set(RACES)


@pytest.mark.parametrize("name", sorted(RACES))
async def test_a_change_between_read_and_write_is_never_overwritten(
    store: SqlStore, name: str
) -> None:
    race = RACES[name]
    ident, tag = await race.prepare(store)
    seen: list[object] = []

    async def change() -> None:
        await race.change(store, ident)
        seen.append(await race.state(store, ident))

    after_read(getattr(store, race.getter[0]), race.getter[1], change)
    with pytest.raises(race.refused):
        await race.act(store, ident, tag)
    assert seen, "the change did not land between the read and the write"
    assert await race.state(store, ident) == seen[0]  # the refused write changed nothing


@pytest.mark.parametrize("name", sorted(RACES))
async def test_the_same_write_without_a_change_goes_through(store: SqlStore, name: str) -> None:
    """The control: with no change in between, the same call with the same tag succeeds, so
    the refusal above comes from the change and not from the call."""
    race = RACES[name]
    ident, tag = await race.prepare(store)
    before = await race.state(store, ident)
    await race.act(store, ident, tag)
    assert await race.state(store, ident) != before


@pytest.mark.parametrize(
    "name", sorted(n for n, r in RACES.items() if r.refused_unconditional is not None)
)
async def test_without_if_match_the_change_still_wins(store: SqlStore, name: str) -> None:
    race = RACES[name]
    assert race.refused_unconditional is not None
    ident, _ = await race.prepare(store)
    seen: list[object] = []

    async def change() -> None:
        await race.change(store, ident)
        seen.append(await race.state(store, ident))

    after_read(getattr(store, race.getter[0]), race.getter[1], change)
    with pytest.raises(race.refused_unconditional):
        await race.act(store, ident, None)
    assert seen and await race.state(store, ident) == seen[0]


@pytest.mark.parametrize("verb", ["revoke", "rotate"])
async def test_a_row_another_transaction_holds_stalls_no_write_past_its_deadline(
    postgres_url: str, verb: str
) -> None:
    """PostgreSQL: another instance's revocation of the app is not committed yet, so the
    conditional write waits on its row lock. It answers 503 by its deadline; once the other
    commits, its revocation stands and no successor exists (the timed-out statement, if it
    still ran, found the row changed)."""
    migrate(postgres_url)
    store = open_store(postgres_url, timeout=0.5)
    holder = psycopg.connect(postgres_url)
    try:
        ident, tag = await _app(store)
        held_at = NOW - timedelta(minutes=1)
        holder.execute("UPDATE apps SET revoked_at = %s WHERE key_id = %s", (held_at, ident))
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            if verb == "revoke":
                await apps.revoke(store, NOW, ident, tag)
            else:
                await apps.rotate(store, NOW, seal, ident, if_match=tag)
        assert time.monotonic() - started < 3.0
        holder.commit()
        await asyncio.sleep(0.6)  # (past the statement timeout: nothing of it is left)
        left = await store.apps.list()
        assert [(a.key_id, a.revoked_at) for a in left] == [(ident, held_at)]
    finally:
        holder.close()
        store.close()
