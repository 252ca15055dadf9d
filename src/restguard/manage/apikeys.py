"""API keys: create, list, read, revoke, rotate (``restguard apikey``, ``/api/apikeys``).

A key is shown once, when it is made (create, rotate); only its hash is stored. Every view of a
key carries its ``etag``: revoke and rotate honour ``If-Match`` with it (412 when stale).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from restguard.credentials.apikey import check_name, generate_key, new_record
from restguard.keys.hashing import token_digest
from restguard.manage.errors import Invalid, NotFound
from restguard.manage.pages import page
from restguard.manage.rotation import check_rotatable, rotation_lost
from restguard.manage.values import check_scopes, iso
from restguard.manage.versions import changed_meanwhile, checked, etag, require_match
from restguard.store.errors import StaleRecord, UnknownRecord
from restguard.store.ports import ApiKeyRecord, Store

STATES = ("active", "grace", "expired", "revoked")
#: The scope of admin keys: the admin API (``/api/``) admits no other credential.
ADMIN_SCOPE = "restguard:admin"
BOOTSTRAP_NAME = "bootstrap admin"


def state(rec: ApiKeyRecord, now: datetime) -> str:
    """``active``, ``grace`` (rotated or revoked, still working until ``revoked_at``),
    ``expired`` or ``revoked``."""
    if rec.revoked_at and rec.revoked_at <= now:
        return "revoked"
    if rec.expires_at and rec.expires_at <= now:
        return "expired"
    if rec.revoked_at:
        return "grace"
    return "active"


def version(rec: ApiKeyRecord) -> str:
    """The key's entity tag: what an operator can change (``last_used_at`` is bookkeeping)."""
    return etag([rec.id, rec.name, list(rec.scopes), iso(rec.expires_at), iso(rec.revoked_at)])


def public(rec: ApiKeyRecord, now: datetime) -> dict[str, Any]:
    """A key as operators see it: never its hash."""
    return {
        "id": rec.id,
        "name": rec.name,
        "scopes": list(rec.scopes),
        "state": state(rec, now),
        "created_at": iso(rec.created_at),
        "expires_at": iso(rec.expires_at),
        "revoked_at": iso(rec.revoked_at),
        "last_used_at": iso(rec.last_used_at),
        "etag": version(rec),
    }


def issued(rec: ApiKeyRecord, key: str, old: ApiKeyRecord | None = None) -> dict[str, Any]:
    """A new key, shown once; after a rotation, the old key's id and when it stops working."""
    data: dict[str, Any] = {
        "id": rec.id,
        "name": rec.name,
        "key": key,
        "scopes": list(rec.scopes),
        "expires_at": iso(rec.expires_at),
        "etag": version(rec),
    }
    if old is not None:
        data |= {"old_id": old.id, "grace_ends_at": iso(old.revoked_at)}
    return data


async def create(
    store: Store,
    now: datetime,
    name: Any,
    scopes: Any = (),
    expires_in: float | None = None,
) -> dict[str, Any]:
    """A new key (the key itself in ``key``, shown once)."""
    if not isinstance(name, str):
        raise Invalid("must be a string", field="name")
    try:
        check_name(name)
    except ValueError as exc:
        raise Invalid(str(exc), field="name") from None
    record, key = new_record(name, check_scopes(scopes), now, expires_in)
    await store.api_keys.insert(record)
    return issued(record, key)


async def listing(
    store: Store,
    now: datetime,
    *,
    state_is: str | None = None,
    name: str | None = None,
    scope: str | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """One page of keys, oldest first, filtered by state, exact name and held scope."""
    if state_is is not None and state_is not in STATES:
        raise Invalid("must be one of " + ", ".join(STATES), field="state")

    def keep(rec: ApiKeyRecord) -> bool:
        return (
            (state_is is None or state(rec, now) == state_is)
            and (name is None or rec.name == name)
            and (scope is None or scope in rec.scopes)
        )

    records = await store.api_keys.list()
    return page(
        records, lambda r: r.id, lambda r: public(r, now), keep=keep, limit=limit, after=after
    )


async def everything(store: Store, now: datetime) -> list[dict[str, Any]]:
    """Every key, oldest first (the CLI's listing)."""
    return [public(r, now) for r in await store.api_keys.list()]


async def read(store: Store, key_id: str) -> ApiKeyRecord:
    rec = await store.api_keys.get(key_id)
    if rec is None:
        raise NotFound(f"no API key has the id '{key_id}'", field="id")
    return rec


async def revoke(
    store: Store, now: datetime, key_id: str, if_match: str | None = None
) -> dict[str, Any]:
    """Revoke at once (a key in its grace period stops now too); idempotent. With
    ``if_match``, the version check and the write are one statement: a change in between is
    412, never overwritten."""
    expected = None
    if if_match is not None:
        expected = checked(if_match, await read(store, key_id), version)
    try:
        rec = await store.api_keys.revoke(key_id, now, expected=expected)
    except UnknownRecord:
        raise NotFound(f"no API key has the id '{key_id}'", field="id") from None
    except StaleRecord:
        raise changed_meanwhile(f"API key '{key_id}'") from None
    return public(rec, now)


async def rotate(
    store: Store,
    now: datetime,
    key_id: str,
    grace: float | None = None,
    if_match: str | None = None,
) -> dict[str, Any]:
    """A new key with the same name, scopes and expiry; the old one stops at once, or after
    ``grace`` seconds. Only a live key that was never rotated (``manage.rotation``), and
    written only as it was read: of two rotations (or a rotation and a revocation) at once
    one wins, and the other makes no key (412 with an ``If-Match`` version, else 409)."""
    old = await read(store, key_id)
    require_match(if_match, version(old))
    check_rotatable(f"API key '{key_id}'", old.revoked_at, now)
    new_id, key = generate_key()
    new = replace(
        old,
        id=new_id,
        key_hash=token_digest(key),
        created_at=now,
        revoked_at=None,
        last_used_at=None,
    )
    ends = now + timedelta(seconds=grace or 0)
    try:
        await store.api_keys.rotate(old.id, new, ends, expected=old)
    except UnknownRecord:
        raise NotFound(f"no API key has the id '{key_id}'", field="id") from None
    except StaleRecord:
        raise rotation_lost(f"API key '{key_id}'", if_match) from None
    return issued(new, key, replace(old, revoked_at=ends))  # (it was live: now it ends then)
