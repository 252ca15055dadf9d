"""Signing apps (RFC 9421): create, list, read, revoke, rotate (``restguard app``, ``/api/apps``).

An hmac-sha256 app's secret is drawn here, shown once (create, rotate) and stored sealed by the
master key, so the master key must belong to the data directory (``ensure_master_key`` runs
before anything is sealed); ``sealer`` is only opened for such an app. An ed25519 or
ecdsa-p256-sha256 app registers a PEM public key (a file's bytes from the CLI, the PEM text from
the API); a private key is refused and never echoed. Every view of an app carries its ``etag``:
revoke and rotate honour ``If-Match`` with it (412 when stale).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from restguard.credentials.apps import ALGORITHMS, HMAC_SHA256, check_app, new_app, rotated_app
from restguard.keys.master_check import ensure_master_key
from restguard.keys.sealing import Sealer
from restguard.manage.errors import Conflict, Invalid, NotFound
from restguard.manage.pages import page
from restguard.manage.rotation import check_rotatable, rotation_lost
from restguard.manage.values import MAX_SCOPES, iso
from restguard.manage.versions import changed_meanwhile, checked, etag, require_match
from restguard.store.errors import DuplicateRecord, StaleRecord, UnknownRecord
from restguard.store.ports import AppRecord, Store

STATES = ("active", "grace", "revoked")
#: The CLI option each input field comes from (``credentials.apps`` names the option in its
#: messages: ``--public-key: ...``); the CLI maps a field back to its option.
OPTIONS = {"name": "--name", "scopes": "--scope", "alg": "--alg", "public_key": "--public-key"}
_FIELDS = {option: field for field, option in OPTIONS.items()}


def fingerprint(rec: AppRecord) -> str | None:
    """SHA-256 of the DER SubjectPublicKeyInfo, base64url without padding (None for hmac)."""
    if rec.public_key is None:
        return None
    digest = hashlib.sha256(rec.public_key).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def state(rec: AppRecord, now: datetime) -> str:
    """``active``, ``grace`` (rotated, accepted until ``revoked_at``) or ``revoked``."""
    if rec.revoked_at and rec.revoked_at <= now:
        return "revoked"
    if rec.revoked_at:
        return "grace"
    return "active"


def version(rec: AppRecord) -> str:
    """The app's entity tag: what an operator can change."""
    return etag(
        [rec.key_id, rec.name, rec.alg, list(rec.scopes), fingerprint(rec), iso(rec.revoked_at)]
    )


def public(rec: AppRecord, now: datetime) -> dict[str, Any]:
    """What may be shown of an app: never its secret, sealed or not."""
    return {
        "key_id": rec.key_id,
        "name": rec.name,
        "alg": rec.alg,
        "scopes": list(rec.scopes),
        "state": state(rec, now),
        "public_key_sha256": fingerprint(rec),
        "created_at": iso(rec.created_at),
        "revoked_at": iso(rec.revoked_at),
        "etag": version(rec),
    }


def issued(rec: AppRecord, secret: str | None, old: AppRecord | None = None) -> dict[str, Any]:
    """A new credential, its secret shown once (None for a public-key app). After a rotation
    (``old``): the old key_id and when it stops working (``grace_ends_at``)."""
    data: dict[str, Any] = {
        "key_id": rec.key_id,
        "secret": secret,
        "alg": rec.alg,
        "name": rec.name,
        "scopes": list(rec.scopes),
        "created_at": iso(rec.created_at),
    }
    if old is not None:
        data |= {"old_id": old.key_id, "grace_ends_at": iso(old.revoked_at)}
    return data | {"public_key_sha256": fingerprint(rec), "etag": version(rec)}


def _invalid(exc: ValueError) -> Invalid:
    """``ValueError("--option: problem")`` from ``credentials.apps`` as Invalid on its field."""
    option, _, problem = str(exc).partition(": ")
    if option in _FIELDS and problem:
        return Invalid(problem, field=_FIELDS[option])
    return Invalid(str(exc))


def pem_bytes(value: Any, field: str = "public_key") -> bytes | None:
    """A public key's PEM: the CLI's file bytes, or the API's text (None when absent)."""
    if value is None or isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise Invalid("must be the PEM text of a public key", field=field)
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid("must be the PEM text of a public key", field=field) from None


def _scope_list(scopes: Any) -> list[str]:
    if not isinstance(scopes, list | tuple) or not all(isinstance(s, str) for s in scopes):
        raise Invalid("must be a list of strings", field="scopes")
    if len(scopes) > MAX_SCOPES:
        raise Invalid(f"at most {MAX_SCOPES} scopes", field="scopes")
    return list(scopes)


def check(name: Any, scopes: Any, alg: Any, public_key: Any) -> bytes | None:
    """Validate a new app's input without touching anything (the CLI checks its options with it
    before it opens the master key); the public key's PEM bytes. Invalid naming the field."""
    if not isinstance(name, str):
        raise Invalid("must be a string", field="name")
    scope_list = _scope_list(scopes)
    if not isinstance(alg, str):
        raise Invalid("must be one of " + ", ".join(ALGORITHMS), field="alg")
    pem = pem_bytes(public_key)
    try:
        check_app(name, scope_list, alg, pem)
    except ValueError as exc:
        raise _invalid(exc) from None
    return pem


async def create(
    store: Store,
    now: datetime,
    sealer: Callable[[], Sealer],
    name: Any,
    scopes: Any,
    alg: Any = HMAC_SHA256,
    public_key: Any = None,
) -> dict[str, Any]:
    """A new app: its key_id and, for hmac-sha256, the secret (shown once)."""
    pem = check(name, scopes, alg, public_key)
    seal: Sealer | None = None
    if alg == HMAC_SHA256:
        seal = sealer()
        await ensure_master_key(store, seal)  # a wrong master key must seal nothing
    try:
        record, secret = new_app(name, list(scopes), alg, pem, now=now, sealer=seal)
    except ValueError as exc:
        raise _invalid(exc) from None
    try:
        await store.apps.insert(record)
    except DuplicateRecord:
        raise Conflict(f"an app has the key_id '{record.key_id}' already", field="key_id") from None
    return issued(record, secret)


async def everything(store: Store, now: datetime) -> list[dict[str, Any]]:
    """Every app, oldest first (the CLI's listing)."""
    return [public(r, now) for r in await store.apps.list()]


async def listing(
    store: Store,
    now: datetime,
    *,
    state_is: str | None = None,
    name: str | None = None,
    alg: str | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """One page of apps, oldest first, filtered by state, exact name and algorithm."""
    if state_is is not None and state_is not in STATES:
        raise Invalid("must be one of " + ", ".join(STATES), field="state")
    if alg is not None and alg not in ALGORITHMS:
        raise Invalid("must be one of " + ", ".join(ALGORITHMS), field="alg")

    def keep(rec: AppRecord) -> bool:
        return (
            (state_is is None or state(rec, now) == state_is)
            and (name is None or rec.name == name)
            and (alg is None or rec.alg == alg)
        )

    records = await store.apps.list()
    return page(
        records, lambda r: r.key_id, lambda r: public(r, now), keep=keep, limit=limit, after=after
    )


def _not_found(key_id: str) -> NotFound:
    return NotFound(f"no app has the key_id '{key_id}'", field="id")


async def read(store: Store, key_id: str) -> AppRecord:
    rec = await store.apps.get(key_id)
    if rec is None:
        raise _not_found(key_id)
    return rec


async def revoke(
    store: Store, now: datetime, key_id: str, if_match: str | None = None
) -> dict[str, Any]:
    """Revoke at once (an app in its grace period stops now too); idempotent. With
    ``if_match``, the version check and the write are one statement: a change in between is
    412, never overwritten."""
    expected = checked(if_match, await read(store, key_id), version)
    try:
        rec = await store.apps.revoke(key_id, now, expected=expected)
    except UnknownRecord:
        raise _not_found(key_id) from None
    except StaleRecord:
        raise changed_meanwhile(f"app '{key_id}'") from None
    return public(rec, now)


async def rotate(
    store: Store,
    now: datetime,
    sealer: Callable[[], Sealer],
    key_id: str,
    public_key: Any = None,
    grace: float | None = None,
    if_match: str | None = None,
) -> dict[str, Any]:
    """A new key_id and credential (a new secret, or the new ``public_key``) with the same
    name, scopes and algorithm; the old key_id stops at once, or after ``grace`` seconds.
    Only a live app that was never rotated (``manage.rotation``), and written only as it was
    read: of two rotations (or a rotation and a revocation) at once one wins, and the other
    makes no app (412 with an ``If-Match`` version, else 409), so a revoked app never gets a
    live successor."""
    pem = pem_bytes(public_key)
    old = await read(store, key_id)
    require_match(if_match, version(old))
    check_rotatable(f"app '{key_id}'", old.revoked_at, now)
    seal: Sealer | None = None
    if old.alg == HMAC_SHA256 and pem is None:
        seal = sealer()
        await ensure_master_key(store, seal)  # a wrong master key must seal nothing
    try:
        new, secret = rotated_app(old, pem, now=now, sealer=seal)
    except ValueError as exc:
        raise _invalid(exc) from None
    ends = now + timedelta(seconds=grace or 0)
    try:
        await store.apps.rotate(old.key_id, new, ends, expected=old)
    except UnknownRecord:
        raise _not_found(key_id) from None
    except StaleRecord:
        raise rotation_lost(f"app '{key_id}'", if_match) from None
    return issued(new, secret, replace(old, revoked_at=ends))  # (it was live: now it ends then)
