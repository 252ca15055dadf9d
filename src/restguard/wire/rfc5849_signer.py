"""OAuth 1.0a signing as a client does it (RFC 5849 §3.5.1, §3.4): the ``Authorization: OAuth``
header of a request, with the signing left to a ``signer`` callable (this module holds no key
and needs no cryptography library; ``rfc5849_algorithms.signer`` makes one for RSA-SHA1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from restguard.wire.rfc5849 import collect
from restguard.wire.rfc5849_encoding import percent_encode

__all__ = ["authorization_header", "sign_request_with"]


def authorization_header(params: Sequence[tuple[str, str]], *, realm: str | None = None) -> str:
    """§3.5.1: ``OAuth realm="...", name="value", ...`` with names and values encoded per §3.6
    (``realm`` a quoted-string, RFC 2617 §1.2)."""
    parts = [f'{percent_encode(name)}="{percent_encode(value)}"' for name, value in params]
    if realm is not None:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in realm):
            raise ValueError("a realm with control characters")
        escaped = realm.replace("\\", "\\\\").replace('"', '\\"')
        parts.insert(0, f'realm="{escaped}"')
    return "OAuth " + ", ".join(parts)


def sign_request_with(
    method: str,
    scheme: str,
    authority: str,
    raw_path: str,
    raw_query: bytes = b"",
    form_body: bytes | None = None,
    *,
    signer: Callable[[str], str],
    consumer_key: str,
    signature_method: str,
    nonce: str,
    timestamp: int,
    token: str | None = None,
    callback: str | None = None,
    verifier: str | None = None,
    realm: str | None = None,
    include_version: bool = True,
) -> str:
    """Sign a request; the ``Authorization`` header value (§3.5.1) to send with it.

    ``form_body`` is the body when it is single-part ``application/x-www-form-urlencoded``
    (its parameters are signed, §3.4.1.3.1), else ``None``. ``signer`` turns the base string
    into the ``oauth_signature`` value (:func:`sign_hmac`, :func:`plaintext_signature`, or
    :func:`restguard.wire.rfc5849_algorithms.signer` for RSA-SHA1); this module never holds a
    key. ``nonce`` and ``timestamp`` are the caller's (§3.3: the nonce "MUST be unique across
    all requests with the same timestamp, client credentials, and token combinations"). The
    signed request is collected back by :func:`collect`, so that what is signed is exactly what
    a verifier here rebuilds.
    """
    oauth: list[tuple[str, str]] = [
        ("oauth_consumer_key", consumer_key),
        ("oauth_signature_method", signature_method),
        ("oauth_timestamp", str(timestamp)),
        ("oauth_nonce", nonce),
    ]
    if token is not None:
        oauth.append(("oauth_token", token))
    if callback is not None:
        oauth.append(("oauth_callback", callback))
    if verifier is not None:
        oauth.append(("oauth_verifier", verifier))
    if include_version:
        oauth.append(("oauth_version", "1.0"))
    unsigned = authorization_header(oauth, realm=realm).encode("utf-8")
    headers = [(b"authorization", unsigned + b', oauth_signature="x"')]
    draft = collect(
        method, scheme, authority, raw_path, raw_query, headers, form_body, form_body is not None
    )
    signature = signer(draft.base_string)
    if not isinstance(signature, str) or not signature:
        raise ValueError("the signer returned no signature")
    value = authorization_header([*oauth, ("oauth_signature", signature)], realm=realm)
    signed = collect(
        method,
        scheme,
        authority,
        raw_path,
        raw_query,
        [(b"authorization", value.encode("utf-8"))],
        form_body,
        form_body is not None,
    )
    if signed.base_string != draft.base_string or signed.signature != signature:
        raise AssertionError("the signed request does not collect back to its base string")
    return value
