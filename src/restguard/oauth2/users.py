"""Resource owners: the people who log in on the authorization server's login page and consent
to clients (``restguard user create|list|remove``), and the login check itself.

* ``user_id``: ``rg_us_`` and 16 characters of ``[0-9a-z]`` (like client ids: public, not
  enumerable).
* **Usernames** are 1 to 64 ASCII characters: letters, digits and ``. _ @ + -``, starting with
  a letter or a digit (so ``user@example.com`` works and nothing looks like a command-line
  option). They are accepted in any case and stored lower-cased, so ``Alice`` and ``alice`` are
  one user, and the login page matches whatever case is typed. Non-ASCII names are refused
  rather than folded: Unicode case folding and look-alike characters (a Cyrillic
  and a Latin 'a') would let two different strings show as one name at consent. ``rg_`` is
  reserved for restguard's identifiers, so ``user remove`` never confuses a name with an id.
* **Passwords** are 8 to 1024 characters after Unicode NFC normalisation (RFC 8265 §4.2, the
  OpaqueString profile, so the same password typed on two systems that compose characters
  differently still matches), not only white space, without control characters. Only an
  Argon2id hash is stored (``hash_password``).

``LoginChecker`` checks a username and password for the login page with a per-account throttle
(per address is the gateway's). It never returns a bool: a user record, or ``LoginFailed``.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Final, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from restguard.store.ports import UserRecord, UserStore
from restguard.wire.scope import scope_problem

T = TypeVar("T")

ID_PREFIX: Final = "rg_us_"
MAX_USERNAME_CHARS: Final = 64
MIN_PASSWORD_CHARS: Final = 8
MAX_PASSWORD_CHARS: Final = 1024
#: Seconds a sign-in waits for a free password-check slot before it is refused (LoginBusy).
SLOT_WAIT: Final = 5.0
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_USER_ID = re.compile(r"rg_us_[0-9a-z]{16}")
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@+\-]*")
#: A user id no user has: the unknown-user path counts a failure against it (see ``check``).
_NO_USER: Final = ""

#: Argon2id with RFC 9106 §4's second recommended option (the "low memory" profile, argon2-cffi's
#: default): t=3 passes, m=64 MiB, p=4 lanes, 16-byte salt, 32-byte tag, stored as a PHC string
#: ``$argon2id$v=19$m=65536,t=3,p=4$salt$tag``. Named rather than taken from the library's
#: default, so an upgrade of argon2-cffi cannot change it silently; when it is changed here,
#: ``check_needs_rehash`` upgrades each user's hash at their next successful login.
PASSWORD_HASHER: Final = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)


def new_user_id() -> str:
    return ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def is_user_id(text: str) -> bool:
    """Whether ``text`` has the form of a user id (safe to log: ids are public)."""
    return _USER_ID.fullmatch(text) is not None


def normalize_username(name: str) -> str:
    """The stored form of ``name`` (lower-cased); ``ValueError`` saying what is wrong with it."""
    problem = username_problem(name)
    if problem:
        raise ValueError(problem)
    return name.lower()


def username_problem(name: str) -> str | None:
    """Why ``name`` cannot be a username, or None (the module doc has the rules)."""
    shown = repr(name) if len(name) <= 70 else repr(name[:67] + "...")
    if not name:
        return "must not be empty"
    if len(name) > MAX_USERNAME_CHARS:
        return f"{shown} is longer than {MAX_USERNAME_CHARS} characters"
    if not name.isascii():
        return f"{shown} has non-ASCII characters; use ASCII letters, digits and . _ @ + -"
    if not _USERNAME.fullmatch(name.lower()):
        return (
            f"{shown} may hold only ASCII letters, digits and . _ @ + -, "
            "and must start with a letter or digit"
        )
    if name.lower().startswith("rg_"):
        return f"{shown}: names starting with 'rg_' are reserved for restguard's ids"
    return None


def login_username(text: str) -> str | None:
    """The stored form of a username typed on the login page, or None if no user can have it."""
    try:
        return normalize_username(text)
    except ValueError:
        return None


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be a user's password, or None (the module doc has the rules)."""
    password = unicodedata.normalize("NFC", password)
    if not password.strip():
        return "must not be empty or only white space"
    if len(password) < MIN_PASSWORD_CHARS:
        return f"must be at least {MIN_PASSWORD_CHARS} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"must be at most {MAX_PASSWORD_CHARS} characters"
    if any(unicodedata.category(c) == "Cc" for c in password):
        return "must not contain control characters (tab, newline, ...)"
    return None


def hash_password(password: str, hasher: PasswordHasher = PASSWORD_HASHER) -> str:
    """The Argon2id PHC string of ``password`` (NFC-normalised, UTF-8) with ``PASSWORD_HASHER``'s
    parameters (RFC 9106 low-memory profile: Argon2id, t=3, m=64 MiB, p=4) and a fresh random
    salt. Slow on purpose: tens of milliseconds and 64 MiB per call."""
    return hasher.hash(unicodedata.normalize("NFC", password))


def check_user(username: str, scopes: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """The stored username and the scopes (repeats dropped; none: the user may sign in but
    grant nothing) ``new_user`` would use, or ``ValueError("--option: problem")``: for checking
    before asking for a password."""
    try:
        name = normalize_username(username)
    except ValueError as exc:
        raise ValueError(f"--username: {exc}") from None
    scope_list = tuple(dict.fromkeys(scopes))
    for scope in scope_list:
        problem = scope_problem(scope)
        if problem:
            raise ValueError(f"--scope: {problem}: repeat --scope for each one")
    return name, scope_list


def new_user(username: str, password: str, scopes: Iterable[str], *, now: datetime) -> UserRecord:
    """A record for ``user create`` to store (the password only as its Argon2id hash);
    ``ValueError("--option: problem")`` for anything refused. Repeated scopes count once, in the
    order first given; at least one is needed (a user's scopes are what they may grant)."""
    name, scope_list = check_user(username, scopes)
    problem = password_problem(password)
    if problem:
        raise ValueError(f"--password-stdin: the password {problem}")
    return UserRecord(
        user_id=new_user_id(),
        username=name,
        password_hash=hash_password(password),
        scopes=scope_list,
        created_at=now,
    )


class LoginFailed(Exception):
    """The username or password is wrong: one type for an unknown user and a wrong password, so
    the login page cannot tell them apart. ``debug`` says which, for the audit log only."""

    def __init__(self, debug: str = "") -> None:
        super().__init__("the username or password is not correct")
        self.debug = debug


class LoginBusy(Exception):
    """No password check could start within ``slot_wait``: every slot is taken (a flood of
    sign-ins). Refused, not queued without end; nothing is counted against the account."""


class LoginLocked(LoginFailed):
    """Too many failed logins: the account refuses logins for ``retry_after`` more seconds
    (checked before the password, so it costs no Argon2 run)."""

    def __init__(self, retry_after: int, debug: str = "") -> None:
        super().__init__(debug)
        self.args = (f"too many failed logins: try again in {retry_after} seconds",)
        self.retry_after = retry_after


class LoginChecker:
    """The login page's check of a username and password, with a per-account cap.

    * Every attempt is counted before its password is checked, atomically by the store and
      only while the account is not locked, so racing guesses on every instance each count
      and none gets past the lock; every ``lock_after``-th attempt in a row without a success
      locks the account for ``lock_for``, and a success resets the count. While locked,
      ``check`` raises ``LoginLocked`` before any Argon2 run. The default, 100 failures in a
      row, is NIST SP 800-63B §5.2.2's cap per account ("no more than 100 consecutive failed
      attempts on a single account"): a lock that anyone can set off refuses the owner too,
      so the page's own limits are per address and per account and address
      (``resource_owner.py``), and this one only stops guessing spread over many addresses.
      (Being locked shows that the account exists; the page may say so or stay generic.)
    * An unknown username is verified against a fixed dummy hash (made once, on first need) and
      counts a failure against no user, so it costs what a wrong password costs: the time of a
      check does not reveal which usernames exist.
    * Argon2 runs in a worker thread (``asyncio.to_thread``), at most ``max_concurrent`` at a
      time (each uses 64 MiB): a flood of logins queues instead of exhausting memory. A slot is
      held until its thread finishes, even if the waiting request goes away.
    * After a success, a hash made with older parameters is replaced (``check_needs_rehash``).

    ``hasher`` is for tests and for parameter changes: ``PASSWORD_HASHER`` by default.
    """

    def __init__(
        self,
        users: UserStore,
        *,
        lock_after: int = 100,
        lock_for: timedelta = timedelta(minutes=5),
        max_concurrent: int = 2,
        hasher: PasswordHasher = PASSWORD_HASHER,
        slot_wait: float = SLOT_WAIT,
    ) -> None:
        if lock_after < 1:
            raise ValueError("lock_after must be at least 1")
        if lock_for <= timedelta(0):
            raise ValueError("lock_for must be positive")
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._users = users
        self._lock_after = lock_after
        self._lock_for = lock_for
        self._hasher = hasher
        self._slots = asyncio.Semaphore(max_concurrent)
        self._slot_wait = slot_wait
        self._dummy_hash: str | None = None

    async def check(self, username: str, password: str, now: datetime) -> UserRecord:
        """The user whose username and password these are (its throttle reset); else
        ``LoginLocked`` while the account is locked, or ``LoginFailed``. The attempt is
        counted before the password is checked (racing guesses cannot all pass the lock) and
        the count reset when it succeeds."""
        name = login_username(username)
        user = None if name is None else await self._users.by_username(name)
        if user is not None:
            _refuse_if_locked(user, now)

        async def count() -> None:
            if user is None:  # the same write a known user's attempt makes (it matches no
                await self._count_attempt(_NO_USER, now)  # row): the same timing
                return
            if await self._count_attempt(user.user_id, now) is None:  # locked meanwhile by a
                again = await self._users.get(user.user_id)  # racing attempt (or removed)
                if again is not None:
                    _refuse_if_locked(again, now)
                raise LoginFailed(debug=f"user {user.user_id} could not be counted")

        password = unicodedata.normalize("NFC", password)
        matched, new_hash = False, None
        if len(password) <= MAX_PASSWORD_CHARS:  # longer is nobody's password: no Argon2 run
            stored = user.password_hash if user is not None else await self._dummy()
            verify = partial(self._verify, stored, password)
            # counted once it holds an Argon2 slot (a busy refusal counts nothing)
            matched, new_hash = await self._in_thread(verify, admitted=count)
        else:
            await count()
        if user is None:
            raise LoginFailed(debug="no user has this username")
        if not matched:  # (counted already)
            raise LoginFailed(debug=f"wrong password for user {user.user_id}")
        await self._users.login_succeeded(user.user_id, new_hash)
        return replace(
            user,
            password_hash=new_hash or user.password_hash,
            failed_logins=0,
            locked_until=None,
        )

    async def _count_attempt(self, user_id: str, now: datetime) -> UserRecord | None:
        return await self._users.login_attempt(
            user_id, now, lock_after=self._lock_after, lock_for=self._lock_for
        )

    def _verify(self, stored: str, password: str) -> tuple[bool, str | None]:
        """(matched, the new hash if the stored one's parameters are outdated); in a thread."""
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False, None
        if self._hasher.check_needs_rehash(stored):
            return True, self._hasher.hash(password)
        return True, None

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            nobody = secrets.token_urlsafe(16)
            self._dummy_hash = await self._in_thread(lambda: self._hasher.hash(nobody))
        return self._dummy_hash

    async def _in_thread(
        self, work: Callable[[], T], *, admitted: Callable[[], Awaitable[None]] | None = None
    ) -> T:
        """``work`` in a thread once a slot is free (``LoginBusy`` past ``slot_wait``);
        ``admitted`` runs first, holding the slot (what it raises ends the attempt)."""
        try:
            async with asyncio.timeout(self._slot_wait):  # every wait has a deadline
                await self._slots.acquire()
        except TimeoutError:
            raise LoginBusy from None
        try:
            if admitted is not None:
                await admitted()
            task = asyncio.ensure_future(asyncio.to_thread(work))
        except BaseException:
            self._slots.release()
            raise
        task.add_done_callback(lambda _: self._slots.release())
        return await asyncio.shield(task)


def _refuse_if_locked(user: UserRecord, now: datetime) -> None:
    if user.locked_until is not None and user.locked_until > now:
        wait = max(1, math.ceil((user.locked_until - now).total_seconds()))
        raise LoginLocked(wait, debug=f"user {user.user_id} is locked for {wait} s")
