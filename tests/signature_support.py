"""Helpers for the RFC 9421 tests: a signing app written to a gateway's store, and the
headers of a request it signs."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime

from restguard.credentials.apps import new_app
from restguard.keys.sealing import open_sealer
from restguard.store.sql import open_store
from restguard.wire import rfc9421, rfc9421_algorithms, rfc9530
from tests.harness import GatewayProcess


def add_app(
    gw: GatewayProcess,
    alg: str,
    public_pem: bytes | None = None,
    *,
    name: str = "billing",
    scopes: tuple[str, ...] = ("notes:write",),
) -> tuple[str, str | None]:
    """Register an app on ``gw``'s store: ``(key_id, secret)`` (secret None for a public key)."""
    sealer = open_sealer(gw.settings.master_key_path)
    record, secret = new_app(name, scopes, alg, public_pem, now=datetime.now(UTC), sealer=sealer)

    async def insert() -> None:
        store = open_store(gw.settings.database_url)
        try:
            await store.apps.insert(record)
        finally:
            store.close()

    asyncio.run(insert())
    return record.key_id, secret


def signed_headers(
    method: str,
    path: str,
    *,
    keyid: str,
    key: bytes,
    authority: bytes,
    body: bytes = b"",
    created: int | None = None,
    nonce: str | None = None,
) -> list[tuple[bytes, bytes]]:
    """The headers an hmac-sha256 app sends with ``method path`` to ``authority``: its
    Content-Digest when there is a body, Signature-Input and Signature over ``@method``,
    ``@authority``, ``@path`` (and ``content-digest``), created now and a fresh nonce unless
    given."""
    headers: list[tuple[bytes, bytes]] = []
    if body:
        headers.append((b"content-digest", rfc9530.content_digest(body).encode()))
    message = rfc9421.Message(
        method=method,
        scheme="http",
        authority=authority.decode(),
        path=path,
        query=b"",
        headers=[(b"host", authority), *headers],
    )
    sig_input, signature = rfc9421_algorithms.sign_request(
        message,
        keyid=keyid,
        alg="hmac-sha256",
        key=key,
        components=["@method", "@authority", "@path"] + (["content-digest"] if body else []),
        created=int(time.time()) if created is None else created,
        nonce=secrets.token_urlsafe(12) if nonce is None else nonce,
    )
    return [*headers, (b"signature-input", sig_input), (b"signature", signature)]


def keyed_with(verifier: object, secret: bytes) -> bool:
    """Whether ``verifier`` (what ``verification_key`` gives an hmac-sha256 app) accepts the
    signatures made with ``secret``, and refuses those made with another secret."""
    base = b'"@method": GET'
    check = rfc9421_algorithms.verify_hmac_sha256
    try:
        check(verifier, base, rfc9421_algorithms.sign("hmac-sha256", secret, base))  # type: ignore[arg-type]
    except rfc9421.SignatureInvalid:
        return False
    try:
        check(verifier, base, rfc9421_algorithms.sign("hmac-sha256", secret + b"!", base))  # type: ignore[arg-type]
    except rfc9421.SignatureInvalid:
        return True
    return False
