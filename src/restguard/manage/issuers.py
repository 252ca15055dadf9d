"""Trusted external JWT issuers: add, list, read, remove (``restguard issuer``,
``/api/issuers``).

An issuer holds nothing secret (its keys come from ``jwks_uri``). Adding one is checked by
``credentials.jwt_issuers.new_issuer``, the same rules the verifier applies; each problem names
the input (``issuer``, ``jwks_uri``, ``audience``, ``algorithms``, ``scope_claim``, ``typ``,
``leeway``; ``OPTIONS`` gives the command line's option for each). Every running instance
picks up an added or removed issuer within a second (``IssuerDirectory``). Every view carries
its ``etag``; remove honours ``If-Match`` with it (412 when stale).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from restguard.credentials import jwt
from restguard.credentials.jwt_issuers import new_issuer
from restguard.keys.jwks_fetch import JWKSEndpoint, JWKSFetchError, fetch_jwks
from restguard.manage.errors import Conflict, Invalid, NotFound
from restguard.manage.pages import page
from restguard.manage.values import iso
from restguard.manage.versions import etag, require_match
from restguard.store.errors import DuplicateRecord, UnknownRecord
from restguard.store.ports import IssuerRecord, Store

#: Each input's command-line option (``restguard issuer add``).
OPTIONS = {
    "issuer": "--issuer",
    "jwks_uri": "--jwks-uri",
    "audience": "--audience",
    "algorithms": "--alg",
    "scope_claim": "--scope-claim",
    "typ": "--typ",
    "leeway": "--leeway",
}
_FIELDS = {option: field for field, option in OPTIONS.items()}
#: The claims an issuer's scopes may come from.
SCOPE_CLAIMS = tuple(sorted(jwt.SCOPE_CLAIMS))
MAX_ALGORITHMS = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"([0-9]{1,20})\.(.{1,64})", re.DOTALL)


def version(rec: IssuerRecord) -> str:
    """The issuer's entity tag: everything an operator set (records are never edited in
    place, so this changes only if the id is reused, which it never is)."""
    return etag(
        [
            rec.id,
            rec.issuer,
            rec.jwks_uri,
            rec.audience,
            list(rec.algorithms),
            rec.scope_claim,
            rec.typ,
            rec.leeway,
            iso(rec.created_at),
        ]
    )


def public(rec: IssuerRecord) -> dict[str, Any]:
    """An issuer as operators see it."""
    return {
        "id": rec.id,
        "issuer": rec.issuer,
        "jwks_uri": rec.jwks_uri,
        "audience": rec.audience,
        "algorithms": list(rec.algorithms),
        "scope_claim": rec.scope_claim,
        "typ": rec.typ,
        "leeway_seconds": rec.leeway,
        "created_at": iso(rec.created_at),
        "etag": version(rec),
    }


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise Invalid("must be a string", field=field)
    return value


def check(
    now: datetime,
    issuer: Any,
    jwks_uri: Any,
    audience: Any,
    algorithms: Any = (),
    scope_claim: Any = "scope",
    typ: Any = None,
    leeway: float | None = None,
    own_issuer: str | None = None,
) -> IssuerRecord:
    """A new issuer's record, every input checked (Invalid naming the first bad one)."""
    issuer = _text(issuer, "issuer")
    jwks_uri = _text(jwks_uri, "jwks_uri")
    audience = _text(audience, "audience")
    if not isinstance(algorithms, list | tuple) or not all(isinstance(a, str) for a in algorithms):
        raise Invalid("must be a list of strings", field="algorithms")
    if len(algorithms) > MAX_ALGORITHMS:
        raise Invalid(f"at most {MAX_ALGORITHMS} items", field="algorithms")
    scope_claim = _text(scope_claim, "scope_claim")
    if typ is not None:
        typ = _text(typ, "typ")
    try:
        return new_issuer(
            issuer=issuer,
            jwks_uri=jwks_uri,
            audience=audience,
            now=now,
            algorithms=algorithms,
            scope_claim=scope_claim,
            typ=typ,
            leeway=leeway or 0,
            own_issuer=own_issuer,
        )
    except ValueError as exc:
        option, _, message = str(exc).partition(": ")
        field = _FIELDS.get(option)
        if field is None:  # not one of new_issuer's "--option: problem" messages
            raise Invalid(str(exc), field="issuer") from None
        raise Invalid(message, field=field) from None


async def probe(jwks_uri: str) -> tuple[int | None, str | None]:
    """How many usable keys the JWKS URI serves now, or why it could not be read (bounded
    by the fetch's own deadline)."""
    try:
        fetched = await fetch_jwks(JWKSEndpoint.parse(jwks_uri))
    except JWKSFetchError as exc:
        return None, str(exc)
    return len(fetched.keys.keys), None


async def add(store: Store, record: IssuerRecord) -> dict[str, Any]:
    """Trust ``record`` (from ``check``); Conflict if its issuer is trusted already. The JWKS
    URI is fetched once to report on it (``jwks_keys``, ``jwks_problem``); a failure does not
    stop the issuer from being added: restguard keeps trying, and until it has keys the
    issuer's tokens get 503."""
    try:
        await store.issuers.insert(record)
    except DuplicateRecord:
        raise Conflict(
            f"the issuer {record.issuer} is already trusted; remove it first", field="issuer"
        ) from None
    keys, problem = await probe(record.jwks_uri)
    return public(record) | {"jwks_keys": keys, "jwks_problem": problem}


async def everything(store: Store) -> list[dict[str, Any]]:
    """Every issuer, oldest first (the CLI's listing)."""
    return [public(r) for r in await store.issuers.list()]


def cursor(rec: IssuerRecord) -> str:
    """A listing's place after ``rec``: its creation time (microseconds) and id, the store's
    order. It stays valid when ``rec`` is removed meanwhile (issuers are deleted, not
    revoked), so pages cover every issuer still there exactly once."""
    created = rec.created_at if rec.created_at.tzinfo else rec.created_at.replace(tzinfo=UTC)
    return f"{(created - _EPOCH) // timedelta(microseconds=1)}.{rec.id}"


def _place(rec: IssuerRecord) -> tuple[int, str]:
    micros, _, ident = cursor(rec).partition(".")
    return int(micros), ident


async def listing(
    store: Store,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """One page of issuers, oldest first, filtered by exact issuer URL and audience."""
    records = await store.issuers.list()
    if after is not None:
        m = _CURSOR.fullmatch(after)
        if m is None:
            raise Invalid("is not a cursor of this listing", field="after")
        place = (int(m.group(1)), m.group(2))
        records = [r for r in records if _place(r) > place]

    def keep(rec: IssuerRecord) -> bool:
        return (issuer is None or rec.issuer == issuer) and (
            audience is None or rec.audience == audience
        )

    return page(records, cursor, public, keep=keep, limit=limit)


def _unknown(issuer_id: str) -> NotFound:
    return NotFound(f"no issuer has the id '{issuer_id}'", field="id")


async def read(store: Store, issuer_id: str) -> IssuerRecord:
    for rec in await store.issuers.list():
        if rec.id == issuer_id:
            return rec
    raise _unknown(issuer_id)


async def find(store: Store, ident: str) -> IssuerRecord:
    """The issuer with the id ``ident``, or whose issuer URL is exactly ``ident``."""
    records = await store.issuers.list()
    for rec in records:
        if rec.issuer == ident:
            return rec
    for rec in records:
        if rec.id == ident:
            return rec
    raise _unknown(ident)


async def remove(
    store: Store, ident: str, if_match: str | None = None, *, by_issuer: bool = False
) -> dict[str, Any]:
    """Stop trusting an issuer (by id; also by its exact issuer URL with ``by_issuer``): its
    tokens are refused on every running instance within a second. The removed record."""
    rec = await (find(store, ident) if by_issuer else read(store, ident))
    require_match(if_match, version(rec))
    try:
        removed = await store.issuers.remove(rec.id)
    except UnknownRecord:
        raise _unknown(ident) from None
    return public(removed)
