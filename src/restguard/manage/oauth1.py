"""OAuth 1.0a consumers (create, list, read, revoke) and the admin's view of their token
credentials (list, read, revoke): ``restguard oauth1 consumer|token``, ``/api/oauth1/consumers``
and ``/api/oauth1/tokens``.

A consumer's secret is drawn here, shown once and stored sealed by the master key (the server
needs it to verify HMAC signatures), so the master key must belong to the data directory
(``ensure_master_key`` runs before anything is sealed). An RSA public key (for RSA-SHA1) is a
PEM (a file's bytes from the CLI, the PEM text from the API); a private key is refused and never
echoed. Token views never show a secret. Every view carries its ``etag``: revocations honour
``If-Match`` with it (412 when stale).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from restguard.credentials.oauth1_consumers import check_consumer, new_consumer
from restguard.credentials.oauth1_tokens import state as token_state
from restguard.keys.master_check import ensure_master_key
from restguard.keys.sealing import Sealer
from restguard.manage.apps import pem_bytes
from restguard.manage.errors import Conflict, Invalid, NotFound
from restguard.manage.pages import page
from restguard.manage.values import MAX_SCOPES, iso
from restguard.manage.versions import changed_meanwhile, checked, etag
from restguard.oauth2.users import normalize_username
from restguard.store.errors import DuplicateRecord, StaleRecord, UnknownRecord
from restguard.store.ports import OAuth1ConsumerRecord, OAuth1TokenRecord, Store

CONSUMER_STATES = ("active", "revoked")
#: What a token-credentials listing may show (temporary credentials are not listed).
TOKEN_STATES = ("active", "expired", "revoked")
#: The CLI option each input field comes from (``credentials.oauth1_consumers`` names the
#: option in its messages); the CLI maps a field back to its option.
OPTIONS = {
    "name": "--name",
    "scopes": "--scope",
    "callback": "--callback",
    "rsa_public_key": "--rsa-public-key",
    "signature_methods": "--signature-method",
}
_FIELDS = {option: field for field, option in OPTIONS.items()}


# --- consumers ----------------------------------------------------------------------------------


def fingerprint(rec: OAuth1ConsumerRecord) -> str | None:
    """SHA-256 of the DER SubjectPublicKeyInfo, base64url without padding (None without)."""
    if rec.rsa_public_key is None:
        return None
    digest = hashlib.sha256(rec.rsa_public_key).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def consumer_state(rec: OAuth1ConsumerRecord, now: datetime) -> str:
    return "revoked" if rec.revoked_at is not None and rec.revoked_at <= now else "active"


def consumer_version(rec: OAuth1ConsumerRecord) -> str:
    """The consumer's entity tag: what an operator can change."""
    return etag(
        [
            rec.consumer_key,
            rec.name,
            list(rec.scopes),
            rec.callback,
            list(rec.signature_methods),
            fingerprint(rec),
            iso(rec.revoked_at),
        ]
    )


def public_consumer(rec: OAuth1ConsumerRecord, now: datetime) -> dict[str, Any]:
    """What may be shown of a consumer: never its secret, sealed or not."""
    return {
        "consumer_key": rec.consumer_key,
        "name": rec.name,
        "scopes": list(rec.scopes),
        "callback": rec.callback,
        "signature_methods": list(rec.signature_methods),
        "rsa_public_key_sha256": fingerprint(rec),
        "state": consumer_state(rec, now),
        "created_at": iso(rec.created_at),
        "revoked_at": iso(rec.revoked_at),
        "etag": consumer_version(rec),
    }


def _invalid(exc: ValueError) -> Invalid:
    """``ValueError("--option: problem")`` as Invalid on the option's field."""
    option, _, problem = str(exc).partition(": ")
    if option in _FIELDS and problem:
        return Invalid(problem, field=_FIELDS[option])
    return Invalid(str(exc))


def _strings(value: Any, field: str, *, most: int = MAX_SCOPES) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise Invalid("must be a list of strings", field=field)
    if len(value) > most:
        raise Invalid(f"at most {most} items", field=field)
    return list(value)


def check_consumer_input(
    name: Any,
    scopes: Any,
    callback: Any = None,
    rsa_public_key: Any = None,
    signature_methods: Any = (),
) -> bytes | None:
    """Validate a new consumer's input without touching anything (the CLI checks its options
    with it before it opens the master key); the RSA key's PEM bytes. Invalid naming the field."""
    if not isinstance(name, str):
        raise Invalid("must be a string", field="name")
    scope_list = _strings(scopes, "scopes")
    if callback is not None and not isinstance(callback, str):
        raise Invalid("must be a string (omit it for 'oob' only)", field="callback")
    pem = pem_bytes(rsa_public_key, "rsa_public_key")
    methods = _strings(signature_methods, "signature_methods", most=10)
    try:
        check_consumer(name, scope_list, callback, pem, methods)
    except ValueError as exc:
        raise _invalid(exc) from None
    return pem


async def create_consumer(
    store: Store,
    now: datetime,
    sealer: Callable[[], Sealer],
    name: Any,
    scopes: Any,
    callback: Any = None,
    rsa_public_key: Any = None,
    signature_methods: Any = (),
) -> dict[str, Any]:
    """A new consumer: its consumer_key and consumer_secret (shown once)."""
    pem = check_consumer_input(name, scopes, callback, rsa_public_key, signature_methods)
    seal = sealer()
    await ensure_master_key(store, seal)  # a wrong master key must seal nothing
    try:
        record, secret = new_consumer(
            name,
            list(scopes),
            callback=callback,
            rsa_public_key_pem=pem,
            methods=list(signature_methods),
            now=now,
            sealer=seal,
        )
    except ValueError as exc:
        raise _invalid(exc) from None
    try:
        await store.oauth1_consumers.insert(record)
    except DuplicateRecord:
        raise Conflict(
            f"a consumer has the consumer_key '{record.consumer_key}' already",
            field="consumer_key",
        ) from None
    return {
        "consumer_key": record.consumer_key,
        "consumer_secret": secret,
        "name": record.name,
        "scopes": list(record.scopes),
        "callback": record.callback,
        "signature_methods": list(record.signature_methods),
        "created_at": iso(record.created_at),
        "rsa_public_key_sha256": fingerprint(record),
        "etag": consumer_version(record),
    }


async def consumers(store: Store, now: datetime) -> list[dict[str, Any]]:
    """Every consumer, oldest first (the CLI's listing)."""
    return [public_consumer(r, now) for r in await store.oauth1_consumers.list()]


async def consumer_listing(
    store: Store,
    now: datetime,
    *,
    state_is: str | None = None,
    name: str | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """One page of consumers, oldest first, filtered by state and exact name."""
    if state_is is not None and state_is not in CONSUMER_STATES:
        raise Invalid("must be one of " + ", ".join(CONSUMER_STATES), field="state")

    def keep(rec: OAuth1ConsumerRecord) -> bool:
        return (state_is is None or consumer_state(rec, now) == state_is) and (
            name is None or rec.name == name
        )

    records = await store.oauth1_consumers.list()
    return page(
        records,
        lambda r: r.consumer_key,
        lambda r: public_consumer(r, now),
        keep=keep,
        limit=limit,
        after=after,
    )


def _no_consumer(consumer_key: str) -> NotFound:
    return NotFound(f"no consumer has the consumer_key '{consumer_key}'", field="id")


async def read_consumer(store: Store, consumer_key: str) -> OAuth1ConsumerRecord:
    rec = await store.oauth1_consumers.get(consumer_key)
    if rec is None:
        raise _no_consumer(consumer_key)
    return rec


async def revoke_consumer(
    store: Store, now: datetime, consumer_key: str, if_match: str | None = None
) -> dict[str, Any]:
    """Revoke a consumer and every token issued to it, at once; idempotent. With
    ``if_match``, the version check and the write are one statement (412 for a change in
    between)."""
    expected = checked(if_match, await read_consumer(store, consumer_key), consumer_version)
    try:
        rec = await store.oauth1_consumers.revoke(consumer_key, now, expected=expected)
    except UnknownRecord:
        raise _no_consumer(consumer_key) from None
    except StaleRecord:
        raise changed_meanwhile(f"consumer '{consumer_key}'") from None
    return public_consumer(rec, now)


# --- token credentials --------------------------------------------------------------------------


def token_version(rec: OAuth1TokenRecord) -> str:
    """The credentials' entity tag: what an operator (or the user) can change."""
    return etag([rec.token, list(rec.scopes), iso(rec.expires_at), iso(rec.revoked_at)])


def public_token(rec: OAuth1TokenRecord, now: datetime) -> dict[str, Any]:
    """What may be shown of token credentials: the token (public: sent with every request),
    never its secret."""
    return {
        "token": rec.token,
        "consumer_key": rec.consumer_key,
        "user_id": rec.user_id,
        "subject": rec.subject,
        "scopes": list(rec.scopes),
        "state": token_state(rec, now),
        "created_at": iso(rec.created_at),
        "expires_at": iso(rec.expires_at),
        "revoked_at": iso(rec.revoked_at),
        "etag": token_version(rec),
    }


async def user_id_of(store: Store, user: str) -> str:
    """The user_id of ``user`` (a user_id or a username); NotFound (field ``user``) if neither."""
    found = await store.users.get(user)
    if found is None:
        try:
            found = await store.users.by_username(normalize_username(user))
        except ValueError:  # not a username at all (empty, say): no user has it
            found = None
    if found is None:
        raise NotFound(f"no user has the id or username '{user}'", field="user")
    return found.user_id


async def _token_records(
    store: Store, user: str | None, consumer: str | None
) -> list[OAuth1TokenRecord]:
    user_id = None if user is None else await user_id_of(store, user)
    return await store.oauth1_tokens.list(user_id=user_id, consumer_key=consumer)


async def tokens(
    store: Store, now: datetime, *, user: str | None = None, consumer: str | None = None
) -> list[dict[str, Any]]:
    """Token credentials, oldest first, of one user (id or username) and/or consumer (the
    CLI's listing)."""
    return [public_token(r, now) for r in await _token_records(store, user, consumer)]


async def token_listing(
    store: Store,
    now: datetime,
    *,
    user: str | None = None,
    consumer: str | None = None,
    state_is: str | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """One page of token credentials, oldest first, filtered by user, consumer and state."""
    if state_is is not None and state_is not in TOKEN_STATES:
        raise Invalid("must be one of " + ", ".join(TOKEN_STATES), field="state")
    records = await _token_records(store, user, consumer)
    return page(
        records,
        lambda r: r.token,
        lambda r: public_token(r, now),
        keep=lambda r: state_is is None or token_state(r, now) == state_is,
        limit=limit,
        after=after,
    )


def _no_token(token: str) -> NotFound:
    return NotFound(f"no OAuth 1.0a token '{token}'", field="id")


async def read_token(store: Store, token: str) -> OAuth1TokenRecord:
    rec = await store.oauth1_tokens.get(token)
    if rec is None:
        raise _no_token(token)
    return rec


async def revoke_token(
    store: Store, now: datetime, token: str, if_match: str | None = None
) -> dict[str, Any]:
    """Revoke token credentials (or temporary credentials) at once; idempotent. With
    ``if_match``, the version check and the write are one statement (412 for a change in
    between, such as temporary credentials authorized with other scopes)."""
    expected = checked(if_match, await read_token(store, token), token_version)
    try:
        rec = await store.oauth1_tokens.revoke(token, now, expected=expected)
    except UnknownRecord:
        raise _no_token(token) from None
    except StaleRecord:
        raise changed_meanwhile(f"OAuth 1.0a token '{token}'") from None
    return public_token(rec, now)
