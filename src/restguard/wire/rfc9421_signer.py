"""RFC 9421 request signing as a client does it: the signing core of
``restguard.client.SignatureAuth`` and ``restguard sign``, with no HTTP library and no
``cryptography`` (``restguard.client`` loads none of the server's dependencies, and the CLI
runs on a base install).

Per request: the components the gateway requires (``@method``, ``@authority``, ``@path``;
``@query`` with a query; ``content-digest``, sha-256, added, with a body), ``created`` now and a
fresh ``nonce``. Keys: ``hmac-sha256`` with the standard library's ``hmac``; ``ed25519`` by the
key's own ``sign``; ``ecdsa-p256-sha256`` by a signer callable returning ``r || s``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Final, Protocol, runtime_checkable

from restguard.wire import rfc9421
from restguard.wire.rfc8941 import Params
from restguard.wire.rfc9530 import content_digest

ALGORITHMS: Final = ("hmac-sha256", "ed25519", "ecdsa-p256-sha256")
NONCE_BYTES: Final = 16  # 128 random bits per request, base64url: 22 characters
_REQUIRED: Final = ("@method", "@authority", "@path")
_SIGNATURE_LENGTH: Final = {"ed25519": 64, "ecdsa-p256-sha256": 64}
_SET_BY_US: Final = frozenset({b"signature-input", b"signature", b"content-digest"})


@runtime_checkable
class SupportsSign(Protocol):
    """A private key object with ``sign(data) -> bytes`` (``Ed25519PrivateKey``)."""

    def sign(self, data: bytes, /) -> bytes: ...


Signer = Callable[[bytes], bytes]


class RequestSigner:
    """Signs requests as the app ``key_id`` (``key`` and ``components``: see
    ``restguard.client.SignatureAuth``)."""

    def __init__(
        self,
        key_id: str,
        key: str | bytes | SupportsSign | Signer,
        *,
        alg: str = "hmac-sha256",
        components: Iterable[str | tuple[str, Params]] | None = None,
        label: str = "sig1",
        tag: str | None = None,
    ) -> None:
        if alg not in ALGORITHMS:
            raise ValueError(f"unsupported algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")
        if not key_id:
            raise ValueError("key_id is the app's key_id (app_...)")
        self.key_id, self.alg, self.label, self.tag = key_id, alg, label, tag
        self._sign = _signer(alg, key)
        extra = tuple(components or ())
        names = [c if isinstance(c, str) else c[0] for c in extra]
        if any(name.lower() in ("@query", "content-digest") for name in names):
            raise ValueError("@query and content-digest are covered whenever the request has them")
        self._extra = tuple(c for c in extra if c not in _REQUIRED)
        self._check_parameters()

    def _check_parameters(self) -> None:
        """Refuse a malformed label, tag or component now, not on the first request (with a
        dummy signer: the key is not used here)."""
        # A covered header absent from this dummy request is fine (SignatureBaseError).
        with contextlib.suppress(rfc9421.SignatureBaseError):
            rfc9421.sign_request_with(
                rfc9421.Message("GET", "https", "example.test", "/"),
                lambda base: b"-",
                label=self.label,
                keyid=self.key_id,
                alg=self.alg,
                components=[*_REQUIRED, *self._extra],
                created=0,
                nonce="-",
                tag=self.tag,
            )

    # -- signing ------------------------------------------------------------------------------

    def signed(
        self,
        method: str,
        scheme: str,
        authority: str,
        target: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
    ) -> list[tuple[str, str]]:
        """The fields to set on a request: ``Content-Digest`` (with a body), then
        ``Signature-Input`` and ``Signature``. ``target`` is the path and query as sent."""
        path, _, query = target.partition("?")
        fields: list[tuple[str, str]] = []
        lines = [(name.lower(), value) for name, value in headers]
        lines = [(name, value) for name, value in lines if name not in _SET_BY_US]
        components: list[str | tuple[str, Params]] = list(_REQUIRED)
        if query:
            components.append("@query")
        if body:
            digest = content_digest(body)  # sha-256
            fields.append(("Content-Digest", digest))
            lines.append((b"content-digest", digest.encode("ascii")))
            components.append("content-digest")
        components.extend(self._extra)
        message = rfc9421.Message(
            method=method.upper(),
            scheme=scheme,
            authority=authority,
            path=path or "/",
            query=query.encode("ascii"),
            headers=lines,
        )
        signature_input, signature = rfc9421.sign_request_with(
            message,
            self._sign,
            label=self.label,
            keyid=self.key_id,
            alg=self.alg,
            components=components,
            created=int(time.time()),
            nonce=secrets.token_urlsafe(NONCE_BYTES),  # fresh for every request, never reused
            tag=self.tag,
        )
        fields.append(("Signature-Input", signature_input.decode("ascii")))
        fields.append(("Signature", signature.decode("ascii")))
        return fields

    def __repr__(self) -> str:
        return f"RequestSigner({self.key_id!r}, alg={self.alg!r})"


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def _signer(alg: str, key: object) -> Signer:
    if alg == "hmac-sha256":
        if isinstance(key, str):
            key = _secret_bytes(key)
        if not isinstance(key, bytes | bytearray) or not key:
            raise TypeError(
                "hmac-sha256: key is the app's secret as printed by 'restguard app create' "
                "(str) or the decoded HMAC key (bytes)"
            )
        return partial(_hmac_sha256, bytes(key))
    if alg == "ed25519" and isinstance(key, SupportsSign) and not hasattr(key, "curve"):
        return partial(_checked, alg, key.sign)
    if callable(key) and not isinstance(key, SupportsSign):
        return partial(_checked, alg, key)
    if alg == "ecdsa-p256-sha256":
        raise TypeError(
            "ecdsa-p256-sha256: key is a signer callable, base -> r || s (64 bytes), e.g. "
            "restguard.wire.rfc9421_algorithms.signer('ecdsa-p256-sha256', private_key)"
        )
    raise TypeError("ed25519: key is an Ed25519PrivateKey (an object with sign(data) -> bytes)")


def _secret_bytes(secret: str) -> bytes:
    """The HMAC key: the base64url secret (no padding) decoded (CONTRACT: 32 random bytes)."""
    text = secret.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 16 or base64.urlsafe_b64encode(key).rstrip(b"=").decode() != text:
        raise ValueError("not an app secret: base64url (no padding) as 'app create' printed it")
    return key


def _hmac_sha256(key: bytes, base: bytes) -> bytes:
    """RFC 9421 §3.3.3: HMAC-SHA256 over the signature base."""
    return hmac.digest(key, base, hashlib.sha256)


def _checked(alg: str, sign: Signer, base: bytes) -> bytes:
    signature = sign(base)
    if not isinstance(signature, bytes) or len(signature) != _SIGNATURE_LENGTH[alg]:
        raise ValueError(
            f"{alg}: the signer must return {_SIGNATURE_LENGTH[alg]} raw bytes"
            + (" (r || s, not DER)" if alg.startswith("ecdsa") else "")
        )
    return signature
