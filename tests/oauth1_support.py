"""Helpers for the OAuth 1.0a (RFC 5849) gateway tests: consumers, users and token credentials
written to a gateway's store the way the provider will write them, and an independent signer.

The signer here does not use ``restguard.wire.rfc5849``: it builds the §3.4.1 signature base
string from explicit, already-decoded parameters with the standard library (``urllib.parse``
for §3.6 encoding, ``hmac``) and pyca ``cryptography`` for RSA-SHA1, so that a test can sign
exactly what it means -- including requests restguard must refuse (a repeated parameter, a
timestamp with a sign, a method restguard does not know) -- and so that a mistake shared by
restguard's signer and verifier cannot make a test pass.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from restguard.credentials.oauth1_consumers import OOB, new_consumer
from restguard.credentials.oauth1_tokens import (
    new_temporary_credentials,
    new_token_credentials,
    new_verifier,
)
from restguard.keys.sealing import Sealer, open_sealer
from restguard.oauth2.users import new_user_id
from restguard.store.ports import OAuth1ConsumerRecord, OAuth1TokenRecord, Store, UserRecord
from restguard.store.sql import open_store
from tests.harness import GatewayProcess

T = TypeVar("T")
Pair = tuple[str, str]

SCOPES = ("notes:read", "notes:write")


# --- the store ----------------------------------------------------------------------------------


def with_store(gw: GatewayProcess, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``action`` on a store opened on ``gw``'s database (from the test's own thread)."""

    async def go() -> T:
        store = open_store(gw.settings.database_url)
        try:
            return await action(store)
        finally:
            store.close()

    return asyncio.run(go())


@dataclass(frozen=True)
class Consumer:
    """A registered consumer: its record, its secret text and (RSA-SHA1) its private key."""

    record: OAuth1ConsumerRecord
    secret: str
    rsa_key: rsa.RSAPrivateKey | None = None

    @property
    def key(self) -> str:
        return self.record.consumer_key

    def rsa_pem(self) -> str:
        """The private key as PKCS #8 PEM text (what oauthlib's ``rsa_key`` takes)."""
        assert self.rsa_key is not None
        return self.rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")


@dataclass(frozen=True)
class Token:
    """Token credentials (or temporary credentials) and their secret."""

    record: OAuth1TokenRecord
    secret: str

    @property
    def token(self) -> str:
        return self.record.token


async def insert_consumer(
    store: Store,
    sealer: Sealer,
    methods: Sequence[str] = (),
    *,
    rsa_key: bool = False,
    name: str = "billing",
    scopes: Sequence[str] = SCOPES,
) -> Consumer:
    """Register a consumer allowed ``methods`` (default: restguard's default set, plus RSA-SHA1
    with ``rsa_key``); with ``rsa_key`` a fresh 2048-bit RSA key is made and its public half
    registered."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_key else None
    pem = (
        None
        if private is None
        else private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    record, secret = new_consumer(
        name,
        list(scopes),
        rsa_public_key_pem=pem,
        methods=methods,
        now=datetime.now(UTC),
        sealer=sealer,
    )
    await store.oauth1_consumers.insert(record)
    return Consumer(record, secret, private)


async def insert_user(store: Store, username: str, scopes: Sequence[str] = SCOPES) -> str:
    """The user_id of ``username``, created if absent (no usable password: these tests never
    log in)."""
    found = await store.users.by_username(username)
    if found is not None:
        return found.user_id
    user_id = new_user_id()
    await store.users.insert(
        UserRecord(user_id, username, "$argon2id$unused", tuple(scopes), datetime.now(UTC))
    )
    return user_id


async def insert_temporary(
    store: Store,
    sealer: Sealer,
    consumer: Consumer,
    *,
    username: str | None = None,
    scopes: Sequence[str] | None = None,
) -> Token:
    """Temporary credentials (``rg_or_``) of ``consumer``, authorized by ``username`` if given
    (RFC 5849 §2.1, §2.2; the user is created if absent), not exchanged."""
    now = datetime.now(UTC)
    temp, secret = new_temporary_credentials(consumer.record, OOB, now=now, sealer=sealer)
    await store.oauth1_tokens.insert(temp)
    if username is not None:
        _, digest = new_verifier()
        assert await store.oauth1_tokens.authorize(
            temp.token,
            user_id=await insert_user(store, username),
            subject=username,
            scopes=tuple(scopes or consumer.record.scopes),
            verifier_hash=digest,
            at=now,
        )
    got = await store.oauth1_tokens.get(temp.token)
    assert got is not None
    return Token(got, secret)


async def insert_token(
    store: Store,
    sealer: Sealer,
    consumer: Consumer,
    username: str = "alice",
    *,
    scopes: Sequence[str] | None = None,
    expires_at: datetime | None = None,
) -> Token:
    """Token credentials (``rg_ot_``) of ``consumer`` for ``username`` (created if absent), as
    the provider makes them: temporary credentials, authorized, exchanged (§2.1-§2.3). The
    subject is the username; ``scopes`` default to all the consumer's."""
    now = datetime.now(UTC)
    temp = await insert_temporary(store, sealer, consumer, username=username, scopes=scopes)
    digest = temp.record.verifier_hash
    assert digest is not None
    access, secret = new_token_credentials(
        temp.record, now=now, sealer=sealer, expires_at=expires_at
    )
    assert await store.oauth1_tokens.exchange(temp.token, digest, access, now) == "exchanged"
    return Token(access, secret)


def _sealer(gw: GatewayProcess) -> Sealer:
    return open_sealer(gw.settings.master_key_path)


def add_consumer(
    gw: GatewayProcess,
    methods: Sequence[str] = (),
    *,
    rsa_key: bool = False,
    name: str = "billing",
    scopes: Sequence[str] = SCOPES,
) -> Consumer:
    """:func:`insert_consumer` on ``gw``'s store."""
    return with_store(
        gw,
        lambda s: insert_consumer(
            s, _sealer(gw), methods, rsa_key=rsa_key, name=name, scopes=scopes
        ),
    )


def add_user(gw: GatewayProcess, username: str, scopes: Sequence[str] = SCOPES) -> str:
    """:func:`insert_user` on ``gw``'s store."""
    return with_store(gw, lambda s: insert_user(s, username, scopes))


def add_temporary(
    gw: GatewayProcess,
    consumer: Consumer,
    *,
    username: str | None = None,
    scopes: Sequence[str] | None = None,
) -> Token:
    """:func:`insert_temporary` on ``gw``'s store."""
    return with_store(
        gw,
        lambda s: insert_temporary(s, _sealer(gw), consumer, username=username, scopes=scopes),
    )


def add_token(
    gw: GatewayProcess,
    consumer: Consumer,
    username: str = "alice",
    *,
    scopes: Sequence[str] | None = None,
    expires_at: datetime | None = None,
) -> Token:
    """:func:`insert_token` on ``gw``'s store."""
    return with_store(
        gw,
        lambda s: insert_token(
            s, _sealer(gw), consumer, username, scopes=scopes, expires_at=expires_at
        ),
    )


def revoke_token(gw: GatewayProcess, token: str) -> None:
    async def go(store: Store) -> None:
        await store.oauth1_tokens.revoke(token, datetime.now(UTC))

    with_store(gw, go)


def revoke_consumer(gw: GatewayProcess, consumer_key: str) -> None:
    async def go(store: Store) -> None:
        await store.oauth1_consumers.revoke(consumer_key, datetime.now(UTC))

    with_store(gw, go)


# --- an independent signer (RFC 5849 §3.4) ------------------------------------------------------


def enc(value: str) -> str:
    """§3.6: UTF-8, every octet but ALPHA / DIGIT / ``-._~`` as upper-case ``%XX``."""
    return quote(value.encode("utf-8"), safe="~")


def base_uri(scheme: str, authority: str, path: str) -> str:
    """§3.4.1.2: scheme and host in lower case, the default port left out."""
    scheme = scheme.lower()
    host, _, port = authority.lower().partition(":")
    if port and port != {"http": "80", "https": "443"}[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{path or '/'}"


def base_string(method: str, uri: str, params: Sequence[Pair]) -> str:
    """§3.4.1.1 over decoded parameters (``oauth_signature`` and ``realm`` already left out)."""
    pairs = sorted((enc(n), enc(v)) for n, v in params)
    normalized = "&".join(f"{n}={v}" for n, v in pairs)
    return "&".join((enc(method.upper()), enc(uri), enc(normalized)))


def signature(
    signature_method: str,
    base: str,
    consumer_secret: str,
    token_secret: str = "",
    rsa_key: rsa.RSAPrivateKey | None = None,
) -> str:
    """§3.4.2-§3.4.4 (and HMAC-SHA256). An unknown method is signed as HMAC-SHA1 over its base
    string: what a confused client would send."""
    key = f"{enc(consumer_secret)}&{enc(token_secret)}"
    if signature_method.upper() == "PLAINTEXT":
        return key
    if signature_method == "RSA-SHA1":
        assert rsa_key is not None
        raw = rsa_key.sign(base.encode("ascii"), padding.PKCS1v15(), hashes.SHA1())
        return base64.b64encode(raw).decode("ascii")
    digest = hashlib.sha256 if signature_method == "HMAC-SHA256" else hashlib.sha1
    return base64.b64encode(hmac.digest(key.encode(), base.encode(), digest)).decode("ascii")


def nonce() -> str:
    return secrets.token_hex(16)


def oauth_params(
    consumer_key: str,
    signature_method: str,
    *,
    token: str | None = None,
    timestamp: str | int | None = None,
    nonce_value: str | None = None,
    version: str | None = "1.0",
    extra: Sequence[Pair] = (),
) -> list[Pair]:
    """The protocol parameters of one request (without ``oauth_signature``)."""
    params = [
        ("oauth_consumer_key", consumer_key),
        ("oauth_signature_method", signature_method),
        ("oauth_timestamp", str(int(time.time()) if timestamp is None else timestamp)),
        ("oauth_nonce", nonce() if nonce_value is None else nonce_value),
    ]
    if token is not None:
        params.append(("oauth_token", token))
    if version is not None:
        params.append(("oauth_version", version))
    return params + list(extra)


def authorization(params: Sequence[Pair], realm: str | None = None) -> str:
    """§3.5.1: ``OAuth realm="...", name="value", ...`` (names and values §3.6-encoded)."""
    parts = [f'{enc(n)}="{enc(v)}"' for n, v in params]
    if realm is not None:
        parts.insert(0, f'realm="{realm}"')
    return "OAuth " + ", ".join(parts)


def form(params: Sequence[Pair]) -> str:
    """Parameters as an ``application/x-www-form-urlencoded`` string (§3.5.2, §3.5.3)."""
    return "&".join(f"{enc(n)}={enc(v)}" for n, v in params)


def parse_form(text: str) -> list[Pair]:
    """The decoded pairs of a query or form body (``+`` is a space), empty pieces skipped."""
    from urllib.parse import unquote_plus

    out: list[Pair] = []
    for piece in text.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            out.append((unquote_plus(name), unquote_plus(value)))
    return out
