"""JOSE building blocks parsed strictly, shared by the JWT verifier (``jwt_verify``), JWKs
(``jwk``) and the JWKS fetcher (``jwks_fetch``): base64url without padding and only in its
canonical form (RFC 7515 §2, RFC 4648 §3.5), and UTF-8 JSON objects without duplicate member
names or non-JSON constants (RFC 7515 §4, RFC 8259). The two error kinds live here too: a
token that fails (401) and a key that cannot be used (a configuration error)."""

from __future__ import annotations

import binascii
import json
import re
from typing import Any, Final

from restguard.errors import InvalidCredential

B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")


class TokenInvalid(InvalidCredential):
    """Every verification failure. ``debug`` says why (audit log only); the client sees the
    generic ``invalid_token`` description."""

    def __init__(self, detail: str) -> None:
        super().__init__(debug=detail)
        self.detail = detail


class UnusableKey(ValueError):
    """A JWK that cannot be a verification key here (configuration error, not a 401)."""


_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
_PADDING: Final = (b"", b"", b"==", b"=")
# The last character of a part whose length is 2 or 3 mod 4 carries 4 or 2 unused bits; they
# MUST be zero for the encoding to be the canonical one (RFC 4648 §3.5).
_CANONICAL_LAST: Final = ("", "", "AQgw", "AEIMQUYcgkosw048")


def b64decode(part: str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2); the caller checked the alphabet.
    Canonical: the decoded octets re-encode to exactly ``part`` (no stray trailing bits)."""
    rem = len(part) % 4
    if rem == 1:
        raise ValueError("impossible base64url length")
    if rem and part[-1] not in _CANONICAL_LAST[rem]:
        raise ValueError("non-canonical base64url")
    return binascii.a2b_base64(part.encode("ascii").translate(_TO_STANDARD) + _PADDING[rem])


def b64decode_checked(part: str) -> bytes:
    if not isinstance(part, str) or not B64URL.fullmatch(part):
        raise ValueError("not base64url")
    try:
        return b64decode(part)
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads(..., object_pairs_hook=...) would build a decoder per call.
STRICT_JSON: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_no_constants
)


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")  # UTF-8 only (RFC 8259 §8.1); json.loads(bytes) guesses
        value = STRICT_JSON.decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeError too
        raise TokenInvalid(f"{what} is not valid JSON: {exc}") from None
    if type(value) is not dict:
        raise TokenInvalid(f"{what} is not a JSON object")
    return value
