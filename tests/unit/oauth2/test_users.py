"""oauth2/users.py: the username and password rules, the Argon2id hash and its parameters, and
the login check (generic failures, the per-account lock, no Argon2 run while locked, timing
parity for unknown users, rehash on success, bounded concurrency)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher, Type

from restguard.oauth2.users import (
    MAX_PASSWORD_CHARS,
    PASSWORD_HASHER,
    LoginBusy,
    LoginChecker,
    LoginFailed,
    LoginLocked,
    hash_password,
    is_user_id,
    login_username,
    new_user,
    new_user_id,
    normalize_username,
    password_problem,
)
from restguard.store.errors import DuplicateRecord, UnknownRecord
from restguard.store.ports import UserRecord
from tests.unit.fakes import T0

PASSWORD = "correct horse battery"
LOCK_FOR = timedelta(minutes=5)


class FakeUserStore:
    """Implements ``restguard.store.ports.UserStore`` in a dict; records the throttle calls."""

    def __init__(self) -> None:
        self.records: dict[str, UserRecord] = {}
        self.failed: list[str] = []
        self.succeeded: list[tuple[str, str | None]] = []

    async def insert(self, record: UserRecord) -> None:
        if record.user_id in self.records or await self.by_username(record.username):
            raise DuplicateRecord(record.username)
        self.records[record.user_id] = record

    async def get(self, user_id: str) -> UserRecord | None:
        return self.records.get(user_id)

    async def by_username(self, username: str) -> UserRecord | None:
        return next((r for r in self.records.values() if r.username == username), None)

    async def list(self) -> list[UserRecord]:
        return sorted(self.records.values(), key=lambda r: (r.created_at, r.user_id))

    async def remove(self, user_id_or_username: str) -> UserRecord:
        found = await self.get(user_id_or_username) or await self.by_username(user_id_or_username)
        if found is None:
            raise UnknownRecord(user_id_or_username)
        return self.records.pop(found.user_id)

    async def login_attempt(
        self, user_id: str, now: Any, *, lock_after: int, lock_for: timedelta
    ) -> UserRecord | None:
        self.failed.append(user_id)
        rec = self.records.get(user_id)
        if rec is None or (rec.locked_until is not None and rec.locked_until > now):
            return None
        count = rec.failed_logins + 1
        locked = now + lock_for if count % lock_after == 0 else rec.locked_until
        rec = dataclasses.replace(rec, failed_logins=count, locked_until=locked)
        self.records[user_id] = rec
        return rec

    async def login_succeeded(self, user_id: str, new_password_hash: str | None) -> None:
        self.succeeded.append((user_id, new_password_hash))
        if user_id in self.records:
            rec = self.records[user_id]
            self.records[user_id] = dataclasses.replace(
                rec,
                failed_logins=0,
                locked_until=None,
                password_hash=new_password_hash or rec.password_hash,
            )


class CountingHasher(PasswordHasher):
    """Cheap Argon2id parameters for fast tests, counting every verify."""

    def __init__(self, time_cost: int = 1, memory_cost: int = 8, parallelism: int = 1) -> None:
        super().__init__(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
        self.verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # type: ignore[override]
        self.verifies += 1
        return super().verify(hash, password)


def stored_user(store: FakeUserStore, hasher: PasswordHasher, name: str = "alice") -> UserRecord:
    rec = dataclasses.replace(
        new_user(name, PASSWORD, ("notes:read",), now=T0),
        password_hash=hash_password(PASSWORD, hasher),
    )
    store.records[rec.user_id] = rec
    return rec


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def users() -> FakeUserStore:
    return FakeUserStore()


@pytest.fixture
def checker(users: FakeUserStore, hasher: CountingHasher) -> LoginChecker:
    return LoginChecker(users, lock_after=5, lock_for=LOCK_FOR, hasher=hasher)


# --- usernames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("alice", "alice"),
        ("Alice", "alice"),
        ("Alice.Smith+notes@Example.COM", "alice.smith+notes@example.com"),
        ("bob_99", "bob_99"),
        ("7", "7"),
        ("x" * 64, "x" * 64),
    ],
)
def test_usernames_are_stored_lower_cased(given: str, stored: str) -> None:
    assert normalize_username(given) == stored
    assert login_username(given) == stored


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("x" * 65, "longer than 64"),
        ("zoë", "non-ASCII"),
        ("\u0430lice", "non-ASCII"),  # a Cyrillic a: a look-alike
        ("al ice", "may hold only"),
        ("a/b", "may hold only"),
        ("-alice", "start with a letter or digit"),
        (".alice", "start with a letter or digit"),
        ("alice\n", "may hold only"),
        ("rg_us_0123456789abcdef", "reserved"),
        ("RG_x", "reserved"),
    ],
)
def test_usernames_refused(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_username(name)
    assert login_username(name) is None
    with pytest.raises(ValueError, match=r"^--username: "):
        new_user(name, PASSWORD, ("a",), now=T0)


def test_user_ids() -> None:
    user_id = new_user_id()
    assert re.fullmatch(r"rg_us_[0-9a-z]{16}", user_id) and is_user_id(user_id)
    assert new_user_id() != user_id
    assert not is_user_id("alice") and not is_user_id("rg_ci_0123456789abcdef")


# --- passwords -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password", ["12345678", "correct horse", " spaces around ", "é" * 8, "x" * 1024, "🔑" * 8]
)
def test_passwords_accepted(password: str) -> None:
    assert password_problem(password) is None


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("", "empty"),
        (" " * 12, "only white space"),
        ("\u3000" * 9, "only white space"),
        ("1234567", "at least 8"),
        ("e\u0301" * 4, "at least 8"),  # 8 code points, 4 characters once composed (NFC)
        ("x" * 1025, "at most 1024"),
        ("pass\tword", "control"),
        ("password\x00", "control"),
    ],
)
def test_passwords_refused(password: str, why: str) -> None:
    problem = password_problem(password)
    assert problem is not None and why in problem
    with pytest.raises(ValueError, match=r"^--password-stdin: the password "):
        new_user("alice", password, ("a",), now=T0)


def test_hash_is_argon2id_with_rfc9106_low_memory_parameters() -> None:
    phc = hash_password(PASSWORD)
    match = re.fullmatch(
        r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)", phc
    )
    assert match, phc
    memory, passes, lanes = (int(match[i]) for i in (1, 2, 3))
    assert (memory, passes, lanes) == (64 * 1024, 3, 4)  # KiB: 64 MiB
    salt = base64.b64decode(match[4] + "=" * (-len(match[4]) % 4))
    tag = base64.b64decode(match[5] + "=" * (-len(match[5]) % 4))
    assert (len(salt), len(tag)) == (16, 32)
    assert PASSWORD_HASHER.type is Type.ID
    assert hash_password(PASSWORD) != phc  # a fresh salt each time
    assert PASSWORD not in phc
    assert PASSWORD_HASHER.verify(phc, PASSWORD)


def test_new_user_record() -> None:
    rec = new_user("Alice", PASSWORD, ("notes:read", "notes:write", "notes:read"), now=T0)
    assert is_user_id(rec.user_id)
    assert rec.username == "alice"
    assert rec.scopes == ("notes:read", "notes:write")
    assert (rec.created_at, rec.failed_logins, rec.locked_until) == (T0, 0, None)
    assert rec.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD_HASHER.verify(rec.password_hash, PASSWORD)


def test_a_user_without_scopes_may_sign_in_but_grant_nothing() -> None:
    assert new_user("alice", PASSWORD, (), now=T0).scopes == ()  # CONTRACT: --scope optional


@pytest.mark.parametrize("scopes", [("a b",), ("a,b",), ('a"',)])
def test_new_user_scopes_refused(scopes: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match=r"^--scope: "):
        new_user("alice", PASSWORD, scopes, now=T0)


# --- the login check -----------------------------------------------------------------------------


async def test_success_returns_the_user_and_resets_the_count(
    users: FakeUserStore, hasher: CountingHasher, checker: LoginChecker
) -> None:
    rec = stored_user(users, hasher)
    users.records[rec.user_id] = dataclasses.replace(rec, failed_logins=3)

    got = await checker.check("Alice", PASSWORD, T0)  # any case

    assert got == dataclasses.replace(rec, failed_logins=0)
    assert users.succeeded == [(rec.user_id, None)]  # same parameters: no rehash
    assert users.records[rec.user_id].failed_logins == 0
    assert hasher.verifies == 1


async def test_wrong_password_and_unknown_user_fail_alike(
    users: FakeUserStore, hasher: CountingHasher, checker: LoginChecker
) -> None:
    rec = stored_user(users, hasher)

    with pytest.raises(LoginFailed) as wrong:
        await checker.check("alice", PASSWORD + "!", T0)
    with pytest.raises(LoginFailed) as unknown:
        await checker.check("mallory", PASSWORD, T0)
    with pytest.raises(LoginFailed) as invalid:
        await checker.check("not a username!", PASSWORD, T0)

    assert type(wrong.value) is type(unknown.value) is type(invalid.value) is LoginFailed
    assert str(wrong.value) == str(unknown.value) == str(invalid.value)
    assert "wrong password" in wrong.value.debug and "no user" in unknown.value.debug
    # the unknown ones cost what a wrong password costs: one Argon2 run and one counted failure
    assert hasher.verifies == 3
    assert users.failed == [rec.user_id, "", ""]
    assert users.records[rec.user_id].failed_logins == 1
    assert users.succeeded == []


async def test_unknown_users_verify_against_one_dummy_hash(
    users: FakeUserStore, hasher: CountingHasher, checker: LoginChecker, monkeypatch: Any
) -> None:
    made: list[str] = []
    real_hash = hasher.hash

    def counting_hash(password: str | bytes, *, salt: bytes | None = None) -> str:
        made.append("hash")
        return real_hash(password, salt=salt)

    monkeypatch.setattr(hasher, "hash", counting_hash)
    for name in ("mallory", "eve", "trent"):
        with pytest.raises(LoginFailed):
            await checker.check(name, PASSWORD, T0)
    assert made == ["hash"] and hasher.verifies == 3  # made once, verified each time


async def test_lockout_after_n_failures_refuses_without_argon2(
    users: FakeUserStore, hasher: CountingHasher, checker: LoginChecker
) -> None:
    rec = stored_user(users, hasher)
    for i in range(5):
        with pytest.raises(LoginFailed) as failed:
            await checker.check("alice", f"wrong password {i}", T0)
        assert type(failed.value) is LoginFailed  # the failure itself is generic
    assert hasher.verifies == 5
    assert users.records[rec.user_id].locked_until == T0 + LOCK_FOR

    for at, wait in ((T0, 300), (T0 + timedelta(seconds=299, milliseconds=1), 1)):
        with pytest.raises(LoginLocked) as locked:
            await checker.check("alice", PASSWORD, at)  # even the right password
        assert locked.value.retry_after == wait
        assert isinstance(locked.value, LoginFailed)
        assert str(wait) in str(locked.value)

    assert hasher.verifies == 5  # no Argon2 run while locked
    assert users.failed == [rec.user_id] * 5  # refusals while locked do not count
    assert users.succeeded == []


async def test_lock_expires(
    users: FakeUserStore, hasher: CountingHasher, checker: LoginChecker
) -> None:
    rec = stored_user(users, hasher)
    for _ in range(5):
        with pytest.raises(LoginFailed):
            await checker.check("alice", "wrong password", T0)

    got = await checker.check("alice", PASSWORD, T0 + LOCK_FOR)  # locked_until is exclusive

    assert (got.failed_logins, got.locked_until) == (0, None)
    assert users.records[rec.user_id] == dataclasses.replace(rec)
    # after the reset, the count starts again: four failures lock nothing
    for _ in range(4):
        with pytest.raises(LoginFailed):
            await checker.check("alice", "wrong password", T0 + LOCK_FOR)
    assert users.records[rec.user_id].locked_until is None


async def test_rehash_on_success_when_parameters_change(users: FakeUserStore) -> None:
    old = CountingHasher(time_cost=1, memory_cost=8)
    new = CountingHasher(time_cost=2, memory_cost=16)
    rec = stored_user(users, old)
    checker = LoginChecker(users, hasher=new)

    got = await checker.check("alice", PASSWORD, T0)

    [(user_id, new_hash)] = users.succeeded
    assert user_id == rec.user_id and new_hash is not None
    assert new_hash.startswith("$argon2id$v=19$m=16,t=2,p=1$")
    assert got.password_hash == new_hash == users.records[rec.user_id].password_hash
    assert new.verify(new_hash, PASSWORD)
    await checker.check("alice", PASSWORD, T0)
    assert users.succeeded[-1] == (rec.user_id, None)  # up to date now


async def test_password_is_nfc_normalised(users: FakeUserStore, hasher: CountingHasher) -> None:
    composed, decomposed = "caf\u00e9 au lait", "cafe\u0301 au lait"
    rec = dataclasses.replace(
        new_user("alice", decomposed, ("a",), now=T0),
        password_hash=hash_password(decomposed, hasher),
    )
    users.records[rec.user_id] = rec
    assert (await LoginChecker(users, hasher=hasher).check("alice", composed, T0)) is not None


async def test_oversized_password_fails_without_argon2(
    users: FakeUserStore, hasher: CountingHasher, checker: LoginChecker
) -> None:
    rec = stored_user(users, hasher)
    for name in ("alice", "mallory"):
        with pytest.raises(LoginFailed):
            await checker.check(name, "x" * (MAX_PASSWORD_CHARS + 1), T0)
    assert hasher.verifies == 0
    assert users.failed == [rec.user_id, ""]  # still counted


async def test_a_corrupt_stored_hash_fails_closed(
    users: FakeUserStore, hasher: CountingHasher, checker: LoginChecker
) -> None:
    rec = stored_user(users, hasher)
    users.records[rec.user_id] = dataclasses.replace(rec, password_hash="not a PHC string")
    with pytest.raises(LoginFailed):
        await checker.check("alice", PASSWORD, T0)


async def test_argon2_runs_in_threads_at_most_max_concurrent(users: FakeUserStore) -> None:
    class Slow(CountingHasher):
        def __init__(self) -> None:
            super().__init__()
            self.running = self.peak = 0
            self.threads: set[int] = set()
            self.lock = threading.Lock()

        def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # type: ignore[override]
            with self.lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
                self.threads.add(threading.get_ident())
            time.sleep(0.05)
            with self.lock:
                self.running -= 1
            return super().verify(hash, password)

    slow = Slow()
    stored_user(users, slow)
    checker = LoginChecker(users, max_concurrent=2, hasher=slow)

    results = await asyncio.gather(
        *(checker.check("alice", PASSWORD, T0) for _ in range(6)), return_exceptions=True
    )

    assert all(isinstance(r, UserRecord) for r in results)
    assert slow.verifies == 6 and slow.peak == 2
    assert threading.get_ident() not in slow.threads  # never on the event loop's thread


async def test_a_cancelled_check_keeps_its_slot_until_argon2_finishes(
    users: FakeUserStore,
) -> None:
    release = threading.Event()
    started: list[int] = []

    class Blocking(CountingHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # type: ignore[override]
            started.append(threading.get_ident())
            release.wait(5)
            return super().verify(hash, password)

    blocking = Blocking()
    stored_user(users, blocking)
    checker = LoginChecker(users, max_concurrent=1, hasher=blocking)
    first = asyncio.ensure_future(checker.check("alice", PASSWORD, T0))
    await asyncio.sleep(0.05)
    first.cancel()
    second = asyncio.ensure_future(checker.check("alice", PASSWORD, T0))
    await asyncio.sleep(0.1)
    assert len(started) == 1  # the second waits: the first thread still holds its 64 MiB
    release.set()
    assert isinstance(await second, UserRecord)
    assert len(started) == 2 and first.cancelled()


async def test_a_sign_in_waits_for_a_slot_no_longer_than_slot_wait(
    users: FakeUserStore,
) -> None:
    release = threading.Event()

    class Blocking(CountingHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # type: ignore[override]
            release.wait(5)
            return super().verify(hash, password)

    blocking = Blocking()
    rec = stored_user(users, blocking)
    checker = LoginChecker(users, max_concurrent=1, hasher=blocking, slot_wait=0.2)
    first = asyncio.ensure_future(checker.check("alice", PASSWORD, T0))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(LoginBusy):  # refused, not queued without end
        await checker.check("alice", PASSWORD, T0)
    assert time.monotonic() - started < 2
    # the first attempt is counted (it holds the slot); the refused one counted nothing
    assert users.failed == [rec.user_id]
    release.set()
    assert isinstance(await first, UserRecord)


@pytest.mark.parametrize(
    "over",
    [{"lock_after": 0}, {"lock_for": timedelta(0)}, {"max_concurrent": 0}],
    ids=["lock_after", "lock_for", "max_concurrent"],
)
def test_unsafe_settings_are_refused(users: FakeUserStore, over: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LoginChecker(users, **over)


async def test_the_account_wide_cap_is_nists_100_failures_in_a_row(
    users: FakeUserStore, hasher: CountingHasher
) -> None:
    """The default lock needs 100 wrong passwords in a row (NIST SP 800-63B §5.2.2): the page's
    per account and address throttle holds a single stranger back long before; only guessing
    spread over many addresses reaches this one."""
    stored_user(users, hasher)
    checker = LoginChecker(users, hasher=hasher)
    for _ in range(99):
        with pytest.raises(LoginFailed) as failed:
            await checker.check("alice", "wrong password!", T0)
        assert not isinstance(failed.value, LoginLocked)
    assert (await checker.check("alice", PASSWORD, T0)).username == "alice"  # and it resets
    for _ in range(100):
        with pytest.raises(LoginFailed):
            await checker.check("alice", "wrong password!", T0)
    with pytest.raises(LoginLocked):
        await checker.check("alice", PASSWORD, T0)
