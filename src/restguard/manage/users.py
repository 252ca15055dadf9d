"""Resource owners of restguard's authorization server: create, list, read, remove, and their
consents (``restguard user``, ``/api/users``).

The checks are ``oauth2.users``': usernames are stored lower-cased, passwords are checked
(RFC 8265 OpaqueString rules) and only their Argon2id hash is stored. A password is never
shown, echoed or logged: no answer or error holds it. Each refusal names the field (``OPTIONS``
maps it to the command line's option). Every view carries an ``etag``: remove honours
``If-Match`` with it (412 when stale).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from restguard.manage.errors import Conflict, Invalid, NotFound
from restguard.manage.pages import page
from restguard.manage.values import iso
from restguard.manage.versions import etag, require_match
from restguard.oauth2.users import check_user, is_user_id, new_user
from restguard.store.errors import DuplicateRecord, UnknownRecord
from restguard.store.ports import Store, UserRecord

STATES = ("active", "locked")
#: The API's field for each command-line option (``oauth2.users`` names the option).
OPTIONS = {"--username": "username", "--scope": "scopes", "--password-stdin": "password"}


def option_of(field: str | None) -> str | None:
    """The command-line option of an API field (the CLI's messages name options)."""
    for option, name in OPTIONS.items():
        if name == field:
            return option
    return None


def _invalid(exc: ValueError) -> Invalid:
    """``oauth2.users``' ``ValueError("--option: problem")`` as Invalid naming the field (its
    messages never hold the password)."""
    option, _, message = str(exc).partition(": ")
    return Invalid(message, field=OPTIONS.get(option, option))


def version(rec: UserRecord) -> str:
    """The user's entity tag: what an operator sets (login bookkeeping and the password hash
    stay out of it)."""
    return etag([rec.user_id, rec.username, list(rec.scopes)])


def created(rec: UserRecord) -> dict[str, Any]:
    """A new user as ``create`` shows it (never the password nor its hash)."""
    return {
        "user_id": rec.user_id,
        "username": rec.username,
        "scopes": list(rec.scopes),
        "created_at": iso(rec.created_at),
        "etag": version(rec),
    }


def is_locked(rec: UserRecord, now: datetime) -> bool:
    return rec.locked_until is not None and rec.locked_until > now


def public(rec: UserRecord, now: datetime) -> dict[str, Any]:
    """What may be shown of a user: everything but the password hash."""
    locked = is_locked(rec, now)
    data = created(rec)
    tag = data.pop("etag")
    return data | {
        "state": "locked" if locked else "active",
        "failed_logins": rec.failed_logins,
        "locked_until": iso(rec.locked_until) if locked else None,
        "etag": tag,
    }


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise Invalid("must be a list of strings", field=field)
    return tuple(value)


def check(username: Any, scopes: Any = ()) -> tuple[str, tuple[str, ...]]:
    """The stored username and scopes, or Invalid naming the field: what can be checked
    before a password is asked for."""
    if not isinstance(username, str):
        raise Invalid("must be a string", field="username")
    scope_list = _strings(scopes, "scopes")
    try:
        return check_user(username, scope_list)
    except ValueError as exc:
        raise _invalid(exc) from None


def prepare(now: datetime, username: Any, password: Any, scopes: Any = ()) -> UserRecord:
    """A checked user to store (``add``), its password as an Argon2id hash (slow on purpose:
    tens of milliseconds and 64 MiB); Invalid naming the field."""
    check(username, scopes)
    if not isinstance(password, str):
        raise Invalid("must be a string", field="password")
    try:
        return new_user(username, password, _strings(scopes, "scopes"), now=now)
    except ValueError as exc:
        raise _invalid(exc) from None


async def add(store: Store, record: UserRecord) -> dict[str, Any]:
    """Store a prepared user; Conflict when the username (any case) is taken."""
    try:
        await store.users.insert(record)
    except DuplicateRecord:
        raise Conflict(
            f"a user named '{record.username}' already exists (usernames ignore case)",
            field="username",
        ) from None
    return created(record)


async def create(
    store: Store, now: datetime, username: Any, password: Any, scopes: Any = ()
) -> dict[str, Any]:
    """A new user who can log in and consent. The password is hashed in a worker thread (the
    event loop keeps serving) and never returned."""
    check(username, scopes)  # cheap refusals first, without an Argon2 run
    if not isinstance(password, str):
        raise Invalid("must be a string", field="password")
    record = await asyncio.to_thread(prepare, now, username, password, scopes)
    return await add(store, record)


async def listing(
    store: Store,
    now: datetime,
    *,
    state_is: str | None = None,
    username: str | None = None,
    scope: str | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """One page of users, oldest first, filtered by state, username (any case) and scope."""
    if state_is is not None and state_is not in STATES:
        raise Invalid("must be one of " + ", ".join(STATES), field="state")
    wanted = None if username is None else username.lower()

    def keep(rec: UserRecord) -> bool:
        return (
            (state_is is None or ("locked" if is_locked(rec, now) else "active") == state_is)
            and (wanted is None or rec.username == wanted)
            and (scope is None or scope in rec.scopes)
        )

    records = await store.users.list()
    return page(
        records, lambda r: r.user_id, lambda r: public(r, now), keep=keep, limit=limit, after=after
    )


async def everything(store: Store, now: datetime) -> list[dict[str, Any]]:
    """Every user, oldest first (the CLI's listing)."""
    return [public(r, now) for r in await store.users.list()]


def _key(user: str) -> str:
    return user if is_user_id(user) else user.lower()


def _unknown(user: str) -> NotFound:
    return NotFound(f"no user has the id or username '{user}'", field="id")


async def find(store: Store, user: str) -> UserRecord:
    """The user with this user_id, else this username (any case); NotFound."""
    key = _key(user)
    found = await store.users.get(key) or await store.users.by_username(key)
    if found is None:
        raise _unknown(user)
    return found


async def _revoke_grants(store: Store, user_id: str, now: datetime) -> None:
    await store.refresh_tokens.revoke_user(user_id, now)
    await store.oauth1_tokens.revoke_user(user_id, now)


async def remove(
    store: Store, now: datetime, user: str, if_match: str | None = None
) -> dict[str, Any]:
    """Remove a user (by user_id or username): they can no longer log in, their consents are
    forgotten, and every refresh token they granted is revoked with the access tokens issued
    beside it (on every instance within a second), as are the OAuth 1.0a token credentials
    they authorized."""
    key = _key(user)
    found = await store.users.get(key) or await store.users.by_username(key)
    if if_match is not None:
        if found is None:
            raise _unknown(user)
        require_match(if_match, version(found))
    if found is not None:  # what they granted goes first: a failure leaves them revoked
        await _revoke_grants(store, found.user_id, now)
        await store.consents.revoke(found.user_id)
    try:
        # the user found above and no other: by username, a namesake created in between
        # (this one removed meanwhile) would be removed in their place
        removed = await store.users.remove(key if found is None else found.user_id)
    except UnknownRecord:
        raise _unknown(user) from None
    # and again: a grant that completed in between (its code or refresh token used, its
    # OAuth 1.0a verifier exchanged, before the user row went) is revoked too; from now on
    # none can complete (the store checks that the user exists when it would)
    await _revoke_grants(store, removed.user_id, now)
    return public(removed, now)


def _consent(client_id: str, scopes: Iterable[str], at: datetime) -> dict[str, Any]:
    return {"client_id": client_id, "scopes": list(scopes), "granted_at": iso(at)}


async def consents(store: Store, user: str) -> list[dict[str, Any]]:
    """The applications a user has allowed, and the scopes each was granted, oldest first."""
    found = await find(store, user)
    return [_consent(*row) for row in await store.consents.list(found.user_id)]


async def consent_page(
    store: Store, user: str, *, limit: int | None = None, after: str | None = None
) -> dict[str, Any]:
    """One page of a user's consents (the cursor is a client_id)."""
    rows = await consents(store, user)
    return page(rows, lambda r: str(r["client_id"]), lambda r: r, limit=limit, after=after)


async def revoke_consent(
    store: Store, now: datetime, user: str, client_id: Any = None
) -> dict[str, Any]:
    """Take back what a user allowed one application (or every one): the consent is forgotten
    and the refresh tokens issued under it are revoked with their access tokens."""
    if client_id is not None and not isinstance(client_id, str):
        raise Invalid("must be a string", field="client_id")
    found = await find(store, user)
    families = await store.refresh_tokens.revoke_user(found.user_id, now, client_id)
    forgotten = await store.consents.revoke(found.user_id, client_id)
    return {
        "user_id": found.user_id,
        "client_id": client_id,
        "consents_revoked": forgotten,
        "token_families_revoked": families,
        "username": found.username,
    }
