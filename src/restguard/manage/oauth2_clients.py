"""OAuth 2.0 clients of restguard's authorization server: create, list, read, revoke
(``restguard oauth2 client``, ``/api/oauth2/clients``).

A confidential client's secret is shown once, when it is made; only its hash is stored. The
checks are ``oauth2.clients.new_client``'s (RFC 6749, RFC 9700): each refusal names the field
(``OPTIONS`` maps it to the command line's option). Every view carries an ``etag``: revoke
honours ``If-Match`` with it (412 when stale).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from restguard.manage.errors import Conflict, Invalid, NotFound
from restguard.manage.pages import page
from restguard.manage.values import iso
from restguard.manage.versions import changed_meanwhile, checked, etag
from restguard.oauth2.clients import GRANTS, TOKEN_FORMATS, is_active, new_client
from restguard.store.errors import DuplicateRecord, StaleRecord, UnknownRecord
from restguard.store.ports import OAuthClientRecord, Store

STATES = ("active", "revoked")
#: The API's field for each command-line option (``new_client`` names the option).
OPTIONS = {
    "--name": "name",
    "--scope": "scopes",
    "--grant": "grants",
    "--redirect-uri": "redirect_uris",
    "--public": "public",
    "--token-format": "token_format",
}


@dataclass(frozen=True)
class Prepared:
    """A checked client, not stored yet, and its secret (None for a public client)."""

    record: OAuthClientRecord
    secret: str | None


def state(rec: OAuthClientRecord, now: datetime) -> str:
    return "active" if is_active(rec, now) else "revoked"


def version(rec: OAuthClientRecord) -> str:
    """The client's entity tag: everything an operator sets or changes (never the secret)."""
    return etag(
        [
            rec.client_id,
            rec.name,
            rec.secret_hash is None,
            list(rec.grants),
            list(rec.redirect_uris),
            list(rec.scopes),
            rec.token_format,
            iso(rec.revoked_at),
        ]
    )


def public(rec: OAuthClientRecord, now: datetime) -> dict[str, Any]:
    """What may be shown of a client: everything but its secret (not even the hash)."""
    return {
        "client_id": rec.client_id,
        "name": rec.name,
        "public": rec.secret_hash is None,
        "grants": list(rec.grants),
        "redirect_uris": list(rec.redirect_uris),
        "scopes": list(rec.scopes),
        "token_format": rec.token_format,
        "state": state(rec, now),
        "created_at": iso(rec.created_at),
        "revoked_at": iso(rec.revoked_at),
        "etag": version(rec),
    }


def issued(rec: OAuthClientRecord, secret: str | None) -> dict[str, Any]:
    """A new client with its secret, shown once (None for a public client)."""
    data = {"client_id": rec.client_id, "client_secret": secret} | public(rec, rec.created_at)
    del data["state"], data["revoked_at"]
    return data


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise Invalid("must be a list of strings", field=field)
    return tuple(value)


def prepare(
    now: datetime,
    name: Any,
    scopes: Any,
    grants: Any,
    redirect_uris: Any = (),
    public: Any = False,
    token_format: Any = "jwt",  # noqa: S107 (a format's name, not a secret)
) -> Prepared:
    """A checked client to store (``add``), or Invalid naming the field."""
    if not isinstance(name, str):
        raise Invalid("must be a string", field="name")
    scope_list = _strings(scopes, "scopes")
    grant_list = _strings(grants, "grants")
    uris = _strings(redirect_uris, "redirect_uris")
    if not isinstance(public, bool):
        raise Invalid("must be true or false", field="public")
    if not isinstance(token_format, str):
        raise Invalid(f"must be {' or '.join(TOKEN_FORMATS)}", field="token_format")
    try:
        record, secret = new_client(
            name, scope_list, grant_list, uris, public, token_format, now=now
        )
    except ValueError as exc:
        option, _, message = str(exc).partition(": ")
        raise Invalid(message, field=OPTIONS.get(option, option)) from None
    return Prepared(record, secret)


def option_of(field: str | None) -> str | None:
    """The command-line option of an API field (the CLI's messages name options)."""
    for option, name in OPTIONS.items():
        if name == field:
            return option
    return None


async def add(store: Store, prepared: Prepared) -> dict[str, Any]:
    """Store a prepared client; the answer holds its secret, once."""
    try:
        await store.oauth2_clients.insert(prepared.record)
    except DuplicateRecord:  # a client_id drawn twice: 2^-82, but never overwrite
        raise Conflict("a client with this client_id exists already; try again") from None
    return issued(prepared.record, prepared.secret)


async def create(
    store: Store,
    now: datetime,
    name: Any,
    scopes: Any,
    grants: Any,
    redirect_uris: Any = (),
    public: Any = False,
    token_format: Any = "jwt",  # noqa: S107 (a format's name, not a secret)
) -> dict[str, Any]:
    """A new client (its secret in ``client_secret``, shown once; None for a public one)."""
    return await add(store, prepare(now, name, scopes, grants, redirect_uris, public, token_format))


def _filter_choice(value: str | None, choices: Sequence[str], field: str) -> None:
    if value is not None and value not in choices:
        raise Invalid("must be one of " + ", ".join(choices), field=field)


async def listing(
    store: Store,
    now: datetime,
    *,
    state_is: str | None = None,
    name: str | None = None,
    scope: str | None = None,
    grant: str | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """One page of clients, oldest first, filtered by state, exact name, scope and grant."""
    _filter_choice(state_is, STATES, "state")
    _filter_choice(grant, GRANTS, "grant")

    def keep(rec: OAuthClientRecord) -> bool:
        return (
            (state_is is None or state(rec, now) == state_is)
            and (name is None or rec.name == name)
            and (scope is None or scope in rec.scopes)
            and (grant is None or grant in rec.grants)
        )

    records = await store.oauth2_clients.list()
    return page(
        records,
        lambda r: r.client_id,
        lambda r: public(r, now),
        keep=keep,
        limit=limit,
        after=after,
    )


async def everything(store: Store, now: datetime) -> list[dict[str, Any]]:
    """Every client, oldest first (the CLI's listing)."""
    return [public(r, now) for r in await store.oauth2_clients.list()]


def _unknown(client_id: str) -> NotFound:
    return NotFound(f"no OAuth 2.0 client has the id '{client_id}'", field="id")


async def read(store: Store, client_id: str) -> OAuthClientRecord:
    rec = await store.oauth2_clients.get(client_id)
    if rec is None:
        raise _unknown(client_id)
    return rec


async def revoke(
    store: Store, now: datetime, client_id: str, if_match: str | None = None
) -> dict[str, Any]:
    """Revoke at once: its secret and tokens are refused on every instance within one second;
    idempotent (an earlier revocation keeps its time). With ``if_match``, the version check
    and the write are one statement: a change in between is 412, never overwritten."""
    expected = None
    if if_match is not None:
        expected = checked(if_match, await read(store, client_id), version)
    try:
        rec = await store.oauth2_clients.revoke(client_id, now, expected=expected)
    except UnknownRecord:
        raise _unknown(client_id) from None
    except StaleRecord:
        raise changed_meanwhile(f"OAuth 2.0 client '{client_id}'") from None
    return public(rec, now)
