"""OAuth 1.0 shared-secret signature methods (RFC 5849 §3.4.2, §3.4.4): ``HMAC-SHA1``,
``HMAC-SHA256`` and ``PLAINTEXT``, sign and verify, verification in constant time.

Standard library only (``hmac``), so a client (``restguard.client``) can sign with them without
the server's dependencies. Split from :mod:`restguard.wire.rfc5849` (collecting the parameters,
the base string) like :mod:`restguard.wire.rfc5849_algorithms`, which holds ``RSA-SHA1`` (pyca
``cryptography``) and the one ``verify`` and ``sign`` for every method, built on these.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from restguard.wire.rfc5849 import HMAC_METHODS, SignatureInvalid, UnsupportedSignatureMethod
from restguard.wire.rfc5849_encoding import percent_encode

__all__ = ["plaintext_signature", "sign_hmac", "verify_hmac", "verify_plaintext"]


# --- §3.4.2, §3.4.4: the shared-secret methods (standard library only) ---------------------------


def _key(consumer_secret: str, token_secret: str) -> str:
    # §3.4.2 and §3.4.4: the encoded client secret, "An "&" character (ASCII code 38), which
    # MUST be included even when either secret is empty", the encoded token secret.
    return f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"


def _hmac_digest(method: str, base_string: str, consumer_secret: str, token_secret: str) -> bytes:
    digest = HMAC_METHODS.get(method)
    if digest is None:
        raise UnsupportedSignatureMethod(f"{method!r} is not an HMAC method")
    if not consumer_secret:
        raise ValueError("an empty consumer secret")
    key = _key(consumer_secret, token_secret).encode("utf-8")
    return hmac.digest(key, base_string.encode("utf-8"), digest)


def sign_hmac(method: str, base_string: str, consumer_secret: str, token_secret: str = "") -> str:
    """§3.4.2 (``HMAC-SHA1``; ``HMAC-SHA256`` alike): HMAC over the base string with the key
    ``encode(consumer secret) & encode(token secret)``, base64-encoded (RFC 2045 §6.8)."""
    digest = _hmac_digest(method, base_string, consumer_secret, token_secret)
    return base64.b64encode(digest).decode("ascii")


def verify_hmac(
    method: str, base_string: str, signature: str, consumer_secret: str, token_secret: str = ""
) -> None:
    """§3.2: "Recalculating the request signature independently ... and comparing it to the
    value received". The received value is base64-decoded strictly and compared in constant
    time; raises :class:`SignatureInvalid`, never returns a verdict."""
    expected = _hmac_digest(method, base_string, consumer_secret, token_secret)
    try:
        received = binascii.a2b_base64(signature.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        raise SignatureInvalid("oauth_signature is not base64") from None
    if not hmac.compare_digest(expected, received):
        raise SignatureInvalid(f"{method} signature mismatch")


def plaintext_signature(consumer_secret: str, token_secret: str = "") -> str:
    """§3.4.4: ``encode(consumer secret) & encode(token secret)``. "It MUST be used with a
    transport-layer mechanism such as TLS": the caller decides whether it is allowed."""
    if not consumer_secret:
        raise ValueError("an empty consumer secret")
    return _key(consumer_secret, token_secret)


def verify_plaintext(signature: str, consumer_secret: str, token_secret: str = "") -> None:
    """§3.4.4, compared in constant time; raises :class:`SignatureInvalid`."""
    expected = plaintext_signature(consumer_secret, token_secret).encode("utf-8")
    if not hmac.compare_digest(expected, signature.encode("utf-8")):
        raise SignatureInvalid("PLAINTEXT signature mismatch")
