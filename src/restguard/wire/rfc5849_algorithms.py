"""OAuth 1.0 signature methods (RFC 5849 §3.4.2-§3.4.4): one ``verify`` and one ``sign`` for
``HMAC-SHA1``, ``HMAC-SHA256``, ``RSA-SHA1`` and ``PLAINTEXT``.

Split from :mod:`restguard.wire.rfc5849` (parameters, the base string) and
:mod:`restguard.wire.rfc5849_signatures` (the shared-secret methods on the standard library)
because ``RSA-SHA1`` needs pyca ``cryptography``, a server dependency that ``restguard.client``
must not load. :func:`verify` returns ``None`` or raises
:class:`~restguard.wire.rfc5849.SignatureInvalid`; the method a consumer may use is the
consumer record's, checked by the caller before this is called.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from functools import partial

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from restguard.wire.rfc5849 import HMAC_METHODS, SignatureInvalid, UnsupportedSignatureMethod
from restguard.wire.rfc5849_signatures import (
    plaintext_signature,
    sign_hmac,
    verify_hmac,
    verify_plaintext,
)
from restguard.wire.rfc5849_signer import sign_request_with

__all__ = ["sign", "sign_request", "signer", "verify", "verify_rsa_sha1"]

_PKCS1V15 = padding.PKCS1v15()
_SHA1 = hashes.SHA1()  # noqa: S303  # RSA-SHA1 is the method's definition (§3.4.3)


def verify_rsa_sha1(public_key: rsa.RSAPublicKey, base_string: str, signature: str) -> None:
    """§3.4.3: "RSASSA-PKCS1-V1_5-VERIFY ((n, e), M, S)" with SHA-1, ``M`` the base string and
    ``S`` the base64-decoded ``oauth_signature`` (decoded strictly)."""
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("RSA-SHA1 verifies with an RSAPublicKey")
    try:
        raw = binascii.a2b_base64(signature.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        raise SignatureInvalid("oauth_signature is not base64") from None
    try:
        public_key.verify(raw, base_string.encode("ascii"), _PKCS1V15, _SHA1)
    except (InvalidSignature, UnicodeEncodeError):
        raise SignatureInvalid("RSA-SHA1 signature mismatch") from None


def verify(
    method: str,
    base_string: str,
    signature: str,
    *,
    consumer_secret: str | None = None,
    token_secret: str | None = None,
    rsa_public_key: rsa.RSAPublicKey | None = None,
) -> None:
    """Verify ``signature`` (the decoded ``oauth_signature``) over ``base_string`` (§3.2:
    "Recalculating the request signature independently as described in Section 3.4 and
    comparing it to the value received"). HMAC and PLAINTEXT compare in constant time.

    ``token_secret`` is ``""`` or ``None`` for a request without a token (§2.1: "MUST use the
    empty string as the token secret value"). PLAINTEXT does not use the base string; whether
    it is allowed (over TLS only, §3.4.4) is the caller's decision. Raises
    :class:`SignatureInvalid`, :class:`UnsupportedSignatureMethod`, or ``ValueError`` when the
    credentials for ``method`` are not given.
    """
    if method in HMAC_METHODS:
        if not consumer_secret:
            raise ValueError(f"{method} needs the consumer secret")
        verify_hmac(method, base_string, signature, consumer_secret, token_secret or "")
    elif method == "RSA-SHA1":
        if rsa_public_key is None:
            raise ValueError("RSA-SHA1 needs the consumer's RSA public key")
        verify_rsa_sha1(rsa_public_key, base_string, signature)
    elif method == "PLAINTEXT":
        if not consumer_secret:
            raise ValueError("PLAINTEXT needs the consumer secret")
        verify_plaintext(signature, consumer_secret, token_secret or "")
    else:
        raise UnsupportedSignatureMethod(f"unsupported signature method {method!r}")


def sign(
    method: str,
    base_string: str,
    *,
    consumer_secret: str | None = None,
    token_secret: str | None = None,
    rsa_private_key: rsa.RSAPrivateKey | None = None,
) -> str:
    """The ``oauth_signature`` value of ``base_string`` with ``method`` (§3.4.2-§3.4.4)."""
    if method in HMAC_METHODS or method == "PLAINTEXT":
        if not consumer_secret:
            raise ValueError(f"{method} needs the consumer secret")
        if method == "PLAINTEXT":
            return plaintext_signature(consumer_secret, token_secret or "")
        return sign_hmac(method, base_string, consumer_secret, token_secret or "")
    if method == "RSA-SHA1":
        if not isinstance(rsa_private_key, rsa.RSAPrivateKey):
            raise ValueError("RSA-SHA1 signs with an RSAPrivateKey")
        raw = rsa_private_key.sign(base_string.encode("ascii"), _PKCS1V15, _SHA1)
        return binascii.b2a_base64(raw, newline=False).decode("ascii")
    raise UnsupportedSignatureMethod(f"unsupported signature method {method!r}")


def signer(
    method: str,
    *,
    consumer_secret: str | None = None,
    token_secret: str | None = None,
    rsa_private_key: rsa.RSAPrivateKey | None = None,
) -> Callable[[str], str]:
    """A ``signer`` for :func:`~restguard.wire.rfc5849_signer.sign_request_with`: base string ->
    ``oauth_signature``. Wrong or missing credentials are refused now, not on first use."""
    fn = partial(
        sign,
        method,
        consumer_secret=consumer_secret,
        token_secret=token_secret,
        rsa_private_key=rsa_private_key,
    )
    fn("")
    return fn


def sign_request(
    method: str,
    scheme: str,
    authority: str,
    raw_path: str,
    raw_query: bytes = b"",
    form_body: bytes | None = None,
    *,
    consumer_key: str,
    signature_method: str,
    nonce: str,
    timestamp: int,
    consumer_secret: str | None = None,
    token: str | None = None,
    token_secret: str | None = None,
    rsa_private_key: rsa.RSAPrivateKey | None = None,
    callback: str | None = None,
    verifier: str | None = None,
    realm: str | None = None,
    include_version: bool = True,
) -> str:
    """Sign a request with these credentials: the ``Authorization`` header value (§3.5.1).
    See :func:`~restguard.wire.rfc5849_signer.sign_request_with` for the arguments."""
    return sign_request_with(
        method,
        scheme,
        authority,
        raw_path,
        raw_query,
        form_body,
        signer=signer(
            signature_method,
            consumer_secret=consumer_secret,
            token_secret=token_secret,
            rsa_private_key=rsa_private_key,
        ),
        consumer_key=consumer_key,
        signature_method=signature_method,
        nonce=nonce,
        timestamp=timestamp,
        token=token,
        callback=callback,
        verifier=verifier,
        realm=realm,
        include_version=include_version,
    )
