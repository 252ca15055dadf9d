"""restguard's own JWT signing keys: list and rotate (``restguard signing-key``,
``/api/signing-keys``). Never their private halves: those stay sealed in the store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from restguard.keys.jws_sign import DEFAULT_ALG, canonical_alg
from restguard.keys.master_check import ensure_master_key
from restguard.keys.sealing import Sealer
from restguard.keys.signing import open_keys, rotation_plan, signer_of, status
from restguard.manage.errors import Invalid
from restguard.manage.pages import page
from restguard.manage.values import iso
from restguard.store.ports import SigningKeyRecord, Store


def public(rec: SigningKeyRecord, signer_kid: str | None, now: datetime) -> dict[str, Any]:
    """A key as operators see it. ``status``: ``signing`` (signs new tokens), ``published``
    (in the JWKS until ``retired_at``, so tokens it signed still verify) or ``retired``."""
    return {
        "kid": rec.kid,
        "alg": rec.alg,
        "status": status(rec, signer_kid, now),
        "created_at": iso(rec.created_at),
        "retired_at": iso(rec.retired_at),
    }


async def everything(store: Store, now: datetime) -> list[dict[str, Any]]:
    """Every key, newest first."""
    records = await store.signing_keys.list()
    signer = signer_of(records, now)
    return [public(r, signer.kid if signer else None, now) for r in records]


async def listing(
    store: Store, now: datetime, *, limit: int | None = None, after: str | None = None
) -> dict[str, Any]:
    """One page of keys, newest first."""
    rows = await everything(store, now)
    return page(rows, lambda r: str(r["kid"]), lambda r: r, limit=limit, after=after)


def check_alg(value: Any) -> str:
    """The canonical JWS name of a signing algorithm (``EdDSA``, ``ES256``, ``RS256``)."""
    if value is None:
        return DEFAULT_ALG
    if not isinstance(value, str):
        raise Invalid("must be EdDSA, ES256 or RS256", field="alg")
    try:
        return canonical_alg(value)
    except ValueError as exc:
        raise Invalid(str(exc), field="alg") from None


async def rotate(store: Store, sealer: Sealer, now: datetime, alg: str) -> dict[str, Any]:
    """A new key that signs from now on (every running instance within 5 s); the others stay
    published for up to an hour more (one retiring sooner keeps its time)."""
    await ensure_master_key(store, sealer)  # a wrong master key must seal nothing
    before = await store.signing_keys.list()
    live = [r for r in before if r.retired_at is None or r.retired_at > now]
    if live:
        open_keys(live, sealer, now)  # the wrong master key must not seal the new key
    new, retire_at = rotation_plan(sealer, now, alg)
    await store.signing_keys.rotate(new, retire_at)
    after = await store.signing_keys.list()
    previous = [r for r in after if r.kid != new.kid and r.kid in {x.kid for x in live}]
    return {
        "kid": new.kid,
        "alg": new.alg,
        "created_at": iso(new.created_at),
        "previous": [{"kid": r.kid, "retired_at": iso(r.retired_at)} for r in previous],
    }
