"""HTTP Message Signatures (RFC 9421 §3.3): the algorithms, verify and sign.

Split from :mod:`restguard.wire.rfc9421` (parsing and the signature base, no cryptography
library) because these need pyca ``cryptography``, a server dependency that
``restguard.client`` must not load. ``hmac-sha256``, ``ed25519`` and ``ecdsa-p256-sha256``,
through ``cryptography`` only; never hand-rolled. Every ``verify_*`` returns ``None`` or raises
:class:`~restguard.wire.rfc9421.SignatureInvalid`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.hmac import HMAC

from restguard.wire.rfc8941 import Params
from restguard.wire.rfc9421 import Message, SignatureInvalid, sign_request_with

__all__ = [
    "HmacSha256Key",
    "sign",
    "sign_request",
    "signer",
    "verify_ecdsa_p256_sha256",
    "verify_ed25519",
    "verify_hmac_sha256",
    "verify_signature",
]


class HmacSha256Key:
    """An hmac-sha256 secret, keyed once: RFC 2104's keyed state (the key's inner and outer
    pads) is made here, and each verification starts from a copy of it, which costs about a
    third of keying afresh. Holds the secret: its ``repr`` never shows it."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("an empty HMAC key")
        self._keyed = HMAC(key, _SHA256)

    def __repr__(self) -> str:
        return "HmacSha256Key(<secret>)"

    def mac(self) -> HMAC:
        """A fresh HMAC-SHA256 context under this key (a copy of the keyed state)."""
        return self._keyed.copy()


def verify_hmac_sha256(key: bytes | HmacSha256Key, base: bytes, signature: bytes) -> None:
    """§3.3.3: HMAC-SHA256 over the base, compared in constant time.

    pyca ``cryptography``'s ``HMAC.verify`` (a constant-time comparison). ``key``: the secret,
    or the same keyed once (:class:`HmacSha256Key`, what a verifier keeps: its copy costs about
    a third of keying afresh). Raises :class:`SignatureInvalid`.
    """
    if type(key) is HmacSha256Key:
        mac = key.mac()
    elif not key:
        raise ValueError("an empty HMAC key")
    else:
        mac = HMAC(key, _SHA256)  # type: ignore[arg-type]  # (bytes)
    mac.update(base)
    try:
        mac.verify(signature)
    except InvalidSignature:
        raise SignatureInvalid("hmac-sha256 signature mismatch") from None


def verify_ed25519(public_key: ed25519.Ed25519PublicKey, base: bytes, signature: bytes) -> None:
    """§3.3.6: Ed25519 (RFC 8032) over the base; the signature is the 64 raw bytes."""
    try:
        public_key.verify(signature, base)
    except InvalidSignature:
        raise SignatureInvalid("ed25519 signature mismatch") from None


_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(_SHA256)


def verify_ecdsa_p256_sha256(
    public_key: ec.EllipticCurvePublicKey, base: bytes, signature: bytes
) -> None:
    """§3.3.4: ECDSA on P-256 with SHA-256.

    "The signature algorithm returns two integer values: r and s. These are both encoded as
    big-endian unsigned integers, zero padded to 32 octets each. These encoded values are
    concatenated into a single 64-octet array" (not DER): anything but 64 bytes is refused,
    then r and s become DER for ``cryptography``.
    """
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise ValueError("not a P-256 public key")
    if len(signature) != 64:
        raise SignatureInvalid("ecdsa-p256-sha256 signature is not 64 bytes")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public_key.verify(der, base, _ECDSA_SHA256)
    except InvalidSignature:
        raise SignatureInvalid("ecdsa-p256-sha256 signature mismatch") from None


def verify_signature(alg: str, key: Any, base: bytes, signature: bytes) -> None:
    """Verify with the algorithm ``alg`` (fixed by the key's record, never by the request)."""
    if alg == "hmac-sha256":
        verify_hmac_sha256(key, base, signature)
    elif alg == "ed25519":
        verify_ed25519(key, base, signature)
    elif alg == "ecdsa-p256-sha256":
        verify_ecdsa_p256_sha256(key, base, signature)
    else:
        raise ValueError(f"unsupported algorithm {alg!r}")


def sign(alg: str, key: Any, base: bytes) -> bytes:
    """The raw signature of ``base`` with ``alg`` (§3.3): ``key`` is the HMAC secret (bytes),
    an ``Ed25519PrivateKey`` or a P-256 ``EllipticCurvePrivateKey`` (``r || s``, 64 bytes)."""
    if alg == "hmac-sha256":
        if not isinstance(key, bytes) or not key:
            raise ValueError("hmac-sha256 signs with a non-empty bytes secret")
        mac = HMAC(key, _SHA256)
        mac.update(base)
        return mac.finalize()
    if alg == "ed25519":
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("ed25519 signs with an Ed25519PrivateKey")
        return key.sign(base)
    if alg == "ecdsa-p256-sha256":
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise ValueError("ecdsa-p256-sha256 signs with a P-256 private key")
        r, s = decode_dss_signature(key.sign(base, _ECDSA_SHA256))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    raise ValueError(f"unsupported algorithm {alg!r}")


def signer(alg: str, key: Any) -> Callable[[bytes], bytes]:
    """A ``signer`` for :func:`~restguard.wire.rfc9421.sign_request_with` and
    ``restguard.client.SignatureAuth``: ``base -> raw signature`` with ``key``."""
    sign(alg, key, b"")  # refuse a wrong key type now, not on the first request
    return partial(sign, alg, key)


# --- signing (for clients and tests) -----------------------------------------------------


def sign_request(
    msg: Message,
    *,
    label: str = "sig1",
    keyid: str,
    alg: str,
    key: Any,
    components: Sequence[str | tuple[str, Params]],
    created: int,
    expires: int | None = None,
    nonce: str | None = None,
    tag: str | None = None,
    include_alg: bool = True,
) -> tuple[bytes, bytes]:
    """Sign ``msg`` with ``key`` (see :func:`sign`): the ``Signature-Input`` and ``Signature``
    field values, as bytes; :func:`~restguard.wire.rfc9421.sign_request_with` does the rest."""
    return sign_request_with(
        msg,
        partial(sign, alg, key),
        label=label,
        keyid=keyid,
        alg=alg,
        components=components,
        created=created,
        expires=expires,
        nonce=nonce,
        tag=tag,
        include_alg=include_alg,
    )
