"""The users store on SQLite and the real PostgreSQL: records, unique usernames, removal by id
or username, and the login throttle counted atomically under concurrent callers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from restguard.store.errors import DuplicateRecord, UnknownRecord
from restguard.store.ports import UserRecord
from restguard.store.sql import SqlStore, open_store

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"
LOCK_FOR = timedelta(minutes=5)


def user(user_id: str, username: str | None = None, **fields: Any) -> UserRecord:
    return UserRecord(
        user_id=user_id,
        username=username or f"user-{user_id}",
        password_hash=fields.pop("password_hash", HASH),
        scopes=fields.pop("scopes", ("notes:read", "notes:write")),
        created_at=fields.pop("created_at", T0),
        **fields,
    )


# --- records -------------------------------------------------------------------------------------


async def test_round_trip_keeps_values_order_and_utc(store: SqlStore) -> None:
    locked = user(
        "rg_us_a",
        "alice@example.com",
        scopes=("z", "a", "m"),
        created_at=T0.astimezone(CEST),
        failed_logins=7,
        locked_until=(T0 + LOCK_FOR).astimezone(CEST),
    )
    await store.users.insert(locked)
    await store.users.insert(user("rg_us_b", "bob"))

    got = await store.users.get("rg_us_a")
    assert got == user(
        "rg_us_a",
        "alice@example.com",
        scopes=("z", "a", "m"),
        failed_logins=7,
        locked_until=T0 + LOCK_FOR,
    )
    assert got is not None
    for stamp in (got.created_at, got.locked_until):
        assert stamp is not None and stamp.utcoffset() == timedelta(0)
    assert await store.users.get("rg_us_b") == user("rg_us_b", "bob")
    assert await store.users.by_username("alice@example.com") == got
    assert await store.users.by_username("bob") == user("rg_us_b", "bob")
    assert await store.users.get("absent") is None
    assert await store.users.by_username("absent") is None
    assert await store.users.by_username("rg_us_b") is None  # an id is not a username


async def test_list_is_oldest_first_then_by_id(store: SqlStore) -> None:
    newest = user("a_newest", created_at=T0 + timedelta(hours=1))
    tie_b = user("b_tie")
    tie_a = user("a_tie")
    oldest = user("z_oldest", created_at=T0 - timedelta(microseconds=1))
    for record in (newest, tie_b, oldest, tie_a):
        await store.users.insert(record)

    assert await store.users.list() == [oldest, tie_a, tie_b, newest]


async def test_duplicate_id_or_username_keeps_the_first(store: SqlStore) -> None:
    first = user("rg_us_a", "alice")
    await store.users.insert(first)

    with pytest.raises(DuplicateRecord):
        await store.users.insert(user("rg_us_a", "other"))
    with pytest.raises(DuplicateRecord):
        await store.users.insert(user("rg_us_b", "alice", password_hash="$argon2id$other"))

    assert await store.users.list() == [first]


@pytest.mark.parametrize(
    "fields",
    [{"scopes": ("a b",)}, {"scopes": ("",)}, {"created_at": datetime(2024, 5, 1, 12)}],
    ids=["space-in-scope", "empty-scope", "naive"],
)
async def test_values_that_would_not_read_back_are_refused(
    store: SqlStore, fields: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        await store.users.insert(user("rg_us_bad", **fields))
    assert await store.users.list() == []


async def test_remove_by_id_or_username(store: SqlStore) -> None:
    alice, bob = user("rg_us_a", "alice"), user("rg_us_b", "bob")
    await store.users.insert(alice)
    await store.users.insert(bob)

    assert await store.users.remove("rg_us_a") == alice
    assert await store.users.remove("bob") == bob
    for gone in ("rg_us_a", "bob", "alice", "nobody"):
        with pytest.raises(UnknownRecord):
            await store.users.remove(gone)
    assert await store.users.list() == []


async def test_remove_prefers_the_id(store: SqlStore) -> None:
    """A username equal to another user's id (``oauth2/users.py`` refuses one): the id wins."""
    await store.users.insert(user("rg_us_a", "alice"))
    await store.users.insert(user("rg_us_b", "rg_us_a"))
    removed = await store.users.remove("rg_us_a")
    assert removed.username == "alice"
    assert [u.user_id for u in await store.users.list()] == ["rg_us_b"]


# --- the login throttle ---------------------------------------------------------------------------


async def test_login_failed_counts_and_locks_at_each_multiple(store: SqlStore) -> None:
    await store.users.insert(user("rg_us_a", "alice"))
    await store.users.insert(user("rg_us_b", "bob"))

    for n in range(1, 5):
        got = await store.users.login_attempt("rg_us_a", T0, lock_after=5, lock_for=LOCK_FOR)
        assert got is not None and (got.failed_logins, got.locked_until) == (n, None)
    fifth = T0 + timedelta(seconds=5)
    got = await store.users.login_attempt("rg_us_a", fifth, lock_after=5, lock_for=LOCK_FOR)
    assert got is not None and (got.failed_logins, got.locked_until) == (5, fifth + LOCK_FOR)
    later = fifth + timedelta(minutes=10)
    got = await store.users.login_attempt("rg_us_a", later, lock_after=5, lock_for=LOCK_FOR)
    assert got is not None and (got.failed_logins, got.locked_until) == (6, fifth + LOCK_FOR)
    for _ in range(4):
        got = await store.users.login_attempt("rg_us_a", later, lock_after=5, lock_for=LOCK_FOR)
    assert got is not None and (got.failed_logins, got.locked_until) == (10, later + LOCK_FOR)
    assert await store.users.get("rg_us_a") == got
    assert await store.users.get("rg_us_b") == user("rg_us_b", "bob")  # untouched


async def test_login_failed_for_no_user_writes_nothing(store: SqlStore) -> None:
    await store.users.insert(user("rg_us_a", "alice"))
    assert await store.users.login_attempt("", T0, lock_after=1, lock_for=LOCK_FOR) is None
    assert await store.users.login_attempt("alice", T0, lock_after=1, lock_for=LOCK_FOR) is None
    assert await store.users.list() == [user("rg_us_a", "alice")]
    with pytest.raises(ValueError, match="naive"):
        await store.users.login_attempt(
            "rg_us_a", datetime(2024, 5, 1), lock_after=1, lock_for=LOCK_FOR
        )
    with pytest.raises(ValueError):
        await store.users.login_attempt("rg_us_a", T0, lock_after=0, lock_for=LOCK_FOR)


async def test_login_succeeded_resets_and_may_replace_the_hash(store: SqlStore) -> None:
    await store.users.insert(user("rg_us_a", "alice", failed_logins=3, locked_until=T0))
    await store.users.insert(user("rg_us_b", "bob", failed_logins=2))

    await store.users.login_succeeded("rg_us_a", None)
    assert await store.users.get("rg_us_a") == user("rg_us_a", "alice")
    await store.users.login_succeeded("rg_us_a", "$argon2id$v=19$new")
    assert await store.users.get("rg_us_a") == user(
        "rg_us_a", "alice", password_hash="$argon2id$v=19$new"
    )
    await store.users.login_succeeded("absent", "$argon2id$v=19$x")  # nothing, no error
    assert await store.users.get("rg_us_b") == user("rg_us_b", "bob", failed_logins=2)


CONCURRENT = 20


@pytest.fixture
def instances(database_url: str, store: SqlStore) -> Iterator[list[SqlStore]]:
    """Four more stores on the migrated database: four instances of restguard, each with its
    own connections and write threads (``store`` migrated it)."""
    opened = [open_store(database_url, timeout=30) for _ in range(4)]
    try:
        yield opened
    finally:
        for each in opened:
            each.close()


async def test_racing_attempts_from_many_instances_count_up_to_the_lock_and_no_further(
    store: SqlStore, instances: list[SqlStore]
) -> None:
    await store.users.insert(user("rg_us_a", "alice"))

    results = await asyncio.gather(
        *(
            instances[i % len(instances)].users.login_attempt(
                "rg_us_a", T0, lock_after=5, lock_for=LOCK_FOR
            )
            for i in range(CONCURRENT)
        )
    )

    counts = sorted(r.failed_logins for r in results if r is not None)
    assert counts == [1, 2, 3, 4, 5]  # each saw its own increment; the 5th locked the rest out
    assert sum(r is None for r in results) == CONCURRENT - 5
    got = await store.users.get("rg_us_a")
    assert got is not None
    assert (got.failed_logins, got.locked_until) == (5, T0 + LOCK_FOR)


def test_racing_attempts_from_threads_count_up_to_the_lock_and_no_further(
    store: SqlStore, instances: list[SqlStore]
) -> None:
    """Twenty threads, each with its own event loop, released together by a barrier."""
    asyncio.run(store.users.insert(user("rg_us_a", "alice")))
    barrier = threading.Barrier(CONCURRENT)
    seen: list[int] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        async def fail() -> UserRecord | None:
            return await instances[i % len(instances)].users.login_attempt(
                "rg_us_a", T0, lock_after=7, lock_for=LOCK_FOR
            )

        try:
            barrier.wait(timeout=30)
            got = asyncio.run(fail())
            seen.append(0 if got is None else got.failed_logins)
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(seen) == [0] * (CONCURRENT - 7) + list(range(1, 8))  # none past the lock
    got = asyncio.run(store.users.get("rg_us_a"))
    assert got is not None
    assert (got.failed_logins, got.locked_until) == (7, T0 + LOCK_FOR)
