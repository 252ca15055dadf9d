"""Strict, sans-IO verification of JWS compact-serialised JWTs (RFC 7515, 7519, 8725).

Keys are parsed once (``keys/jwk.py``: ``VerificationKey.from_jwk``, ``KeySet``): each holds a
pyca public key and the one algorithm it verifies; strict base64url and JSON are
``keys/jose.py``. ``JWTVerifier(keys, rules).verify(token, now)`` (one per
issuer, built once; ``verify(token, keys, rules, now)`` for a one-off) returns a
``VerifiedToken`` or raises ``TokenInvalid``; the exception's ``debug`` names the failure for
the audit log, its public description is the generic ``invalid_token`` one (RFC 6750 §3.1: a
malformed token is an invalid token).

The rules, each with the MUST it implements:

* RFC 8725 §3.1: "libraries MUST enable the caller to specify a supported set of algorithms and
  MUST NOT use any other algorithms". The algorithm comes from the key; the header's ``alg``
  must equal it. ``none`` and the HMAC algorithms are never accepted (no key has them).
* RFC 7515 §4.1.11: a recipient that does not understand a ``crit`` extension MUST reject the
  JWS. restguard understands none, so ``crit`` is always rejected.
* RFC 8725 §3.10: ``jku``, ``x5u``, ``jwk`` and ``x5c`` would let the token name its own key;
  they are rejected, never fetched or trusted.
* RFC 7515 §2 / RFC 7519 §7.2: strict base64url without padding; a part that does not re-encode
  to itself (non-zero trailing bits, a malleable encoding) is rejected.
* RFC 7519 §7.2 step 9/10 and RFC 8259 §4: header and claims are UTF-8 JSON objects; duplicate
  member names are rejected (RFC 7515 §4 allows "MUST reject" or last-wins; we reject).
* RFC 7519 §4.1.4: "the current date/time MUST be before the expiration date/time"; ``exp`` is
  required here (RFC 8725 §3.10 favours it); ``nbf`` and ``iat`` (not in the future) are honoured
  when present; the leeway is capped at ``MAX_LEEWAY`` seconds.
* RFC 7519 §4.1.1/§4.1.3: ``iss`` is compared as an exact string, ``aud`` (a string or an array
  of strings) must contain the configured audience.
* RFC 8725 §3.11: explicit typing, ``typ`` compared case-insensitively with an optional
  ``application/`` prefix (RFC 7515 §4.1.9), when the rules ask for one.
* RFC 7518 §3.4: ES256 signatures are the 64-octet R || S; R and S must lie in [1, n-1]
  (CVE-2022-21449, "psychic signatures"); a DER signature is refused by its length. A high-S
  signature (n - S of a valid one) is accepted on purpose: RFC 7518 does not ask for low-S,
  OpenSSL-based signers produce high-S half of the time, and a second encoding of a token
  grants nothing the token does not (nothing here is keyed on the token's bytes).
  RFC 8037 §3.1: Ed25519 signatures are 64 octets (a non-canonical S is refused by OpenSSL).
  RFC 8017 §8.2.2: an RSASSA-PKCS1-v1_5 signature has the modulus' length.

The size cap applies before any parsing. Only the stdlib and pyca ``cryptography`` are used.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from restguard.keys.jose import (
    TokenInvalid,
    UnusableKey,
    b64decode,
    b64decode_checked,
    json_object,
)
from restguard.keys.jwk import MAX_KID_LENGTH, KeySet, VerificationKey

__all__ = [
    "HEADER_CACHE_SIZE",
    "MAX_KID_LENGTH",
    "MAX_LEEWAY",
    "JWTVerifier",
    "KeySet",
    "Rules",
    "TokenInvalid",
    "UnusableKey",
    "VerificationKey",
    "VerifiedToken",
    "decode_part",
    "verify",
]

MAX_LEEWAY: Final = 60  # seconds; RFC 8725 does not fix one, a few minutes at most is usual
DEFAULT_MAX_TOKEN_BYTES: Final = 8192
MAX_TOKEN_BYTES_LIMIT: Final = 65536

# Header parameters that would let the token choose its own key (RFC 8725 §3.10).
UNTRUSTED_KEY_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c"})

# Three non-empty base64url parts, nothing else (no padding, no whitespace, no other alphabet).
_COMPACT = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")


def decode_part(part: str, what: str) -> dict[str, Any]:
    """One unverified part of a compact JWS (header or payload) as a JSON object, decoded as
    strictly as ``verify`` does; ``TokenInvalid`` otherwise. For routing a token to its issuer
    and key only: nothing in it is trusted before ``verify``."""
    try:
        raw = b64decode_checked(part)
    except ValueError:
        raise TokenInvalid(f"{what} is not canonical base64url") from None
    return json_object(raw, what)


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """RFC 7519 §2 NumericDate: a JSON number (not a boolean, not a string), finite."""
    if name not in claims:
        return None
    value = claims[name]
    if type(value) is not int and type(value) is not float:
        raise TokenInvalid(f"'{name}' is not a number")
    try:
        # an int beyond a float's range (10**400) would raise OverflowError here: not finite
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise TokenInvalid(f"'{name}' is not finite")
    return value


def _normalise_typ(typ: str) -> str:
    typ = typ.lower()
    return typ[len("application/") :] if typ.startswith("application/") else typ


@dataclass(frozen=True, slots=True)
class Rules:
    """What one issuer's tokens must satisfy. Unsafe values are refused at construction."""

    issuer: str
    audience: str
    leeway: float = 0
    typ: str | None = None
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    normalised_typ: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ValueError("issuer must be a non-empty string")
        if not isinstance(self.audience, str) or not self.audience:
            raise ValueError("audience must be a non-empty string")
        if isinstance(self.leeway, bool) or not isinstance(self.leeway, int | float):
            raise ValueError("leeway must be a number of seconds")
        if not 0 <= self.leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY} seconds")
        if self.typ is not None and (not isinstance(self.typ, str) or not self.typ):
            raise ValueError("typ must be a non-empty string or None")
        if not isinstance(self.max_token_bytes, int) or not (
            0 < self.max_token_bytes <= MAX_TOKEN_BYTES_LIMIT
        ):
            raise ValueError(f"max_token_bytes must be between 1 and {MAX_TOKEN_BYTES_LIMIT}")

        object.__setattr__(
            self, "normalised_typ", None if self.typ is None else _normalise_typ(self.typ)
        )


_SEAL: Final = object()


class VerifiedToken:
    """A token that passed ``verify``; only ``verify`` creates one."""

    __slots__ = ("alg", "claims", "header", "kid")

    def __init__(
        self, seal: object, header: dict[str, Any], claims: dict[str, Any], key: VerificationKey
    ) -> None:
        if seal is not _SEAL:
            raise TypeError("a VerifiedToken comes from verify() only")
        self.header: Mapping[str, Any] = MappingProxyType(header)
        self.claims: Mapping[str, Any] = MappingProxyType(claims)
        self.alg = key.alg
        self.kid = key.kid

    @property
    def issuer(self) -> str:
        return str(self.claims["iss"])

    @property
    def subject(self) -> str | None:
        sub = self.claims.get("sub")
        return sub if isinstance(sub, str) else None

    @property
    def expires_at(self) -> float:
        return float(self.claims["exp"])

    def __repr__(self) -> str:
        return f"VerifiedToken(kid={self.kid!r}, alg={self.alg!r}, sub={self.subject!r})"


def _check_header(header: dict[str, Any], rules: Rules, keys: KeySet) -> VerificationKey:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise TokenInvalid("header 'alg' missing or not a string")
    if "crit" in header:
        raise TokenInvalid("header 'crit' present; no extension is understood")
    untrusted = UNTRUSTED_KEY_HEADERS & header.keys()
    if untrusted:
        raise TokenInvalid(f"header names its own key ({', '.join(sorted(untrusted))})")
    if "b64" in header and header["b64"] is not True:
        raise TokenInvalid("header 'b64' (RFC 7797) is not supported")
    cty = header.get("cty")
    if cty is not None and (not isinstance(cty, str) or _normalise_typ(cty) == "jwt"):
        raise TokenInvalid("header 'cty' is not a string or announces a nested JWT")
    typ = header.get("typ")
    if typ is not None and not isinstance(typ, str):
        raise TokenInvalid("header 'typ' is not a string")
    wanted = rules.normalised_typ
    if wanted is not None and (typ is None or _normalise_typ(typ) != wanted):
        raise TokenInvalid(f"header 'typ' is {typ!r}, expected {rules.typ!r}")
    kid = header.get("kid")
    # RFC 7515 §4.1.4: a string. ``"kid": null`` is not an absent kid (which a one-key set
    # answers with its only key): it is refused like any other non-string.
    if "kid" in header and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
        raise TokenInvalid("header 'kid' is not a short string")
    key = keys.select(kid)
    if key is None:
        raise TokenInvalid("no key for this 'kid'" if kid is not None else "no 'kid' in header")
    if alg != key.alg:  # RFC 8725 §3.1: the key's algorithm, never the token's choice
        raise TokenInvalid(f"header 'alg' {alg[:32]!r} is not the key's {key.alg!r}")
    return key


def _check_claims(claims: dict[str, Any], rules: Rules, now: float) -> None:
    leeway = rules.leeway
    exp = _numeric_date(claims, "exp")
    if exp is None:
        raise TokenInvalid("'exp' missing")
    # RFC 7519 §4.1.4. floor(): a fractional exp counts from its whole second, as PyJWT does.
    if now >= math.floor(exp) + leeway:
        raise TokenInvalid("token expired")
    nbf = _numeric_date(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise TokenInvalid("token not yet valid ('nbf')")
    iat = _numeric_date(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise TokenInvalid("token issued in the future ('iat')")
    iss = claims.get("iss")
    if type(iss) is not str or iss != rules.issuer:
        raise TokenInvalid("'iss' is not the configured issuer")
    aud = claims.get("aud")
    if type(aud) is str:
        if aud != rules.audience:
            raise TokenInvalid("'aud' is not the configured audience")
    elif type(aud) is list:
        if not all(type(a) is str for a in aud):
            raise TokenInvalid("'aud' array holds a non-string")
        if rules.audience not in aud:
            raise TokenInvalid("'aud' does not contain the configured audience")
    else:
        raise TokenInvalid("'aud' missing or not a string or array")
    for name in ("sub", "jti"):
        if name in claims and type(claims[name]) is not str:
            raise TokenInvalid(f"'{name}' is not a string")


HEADER_CACHE_SIZE: Final = 16


class JWTVerifier:
    """One issuer's verifier: its keys and rules, prepared once. ``verify`` is the hot path.

    Tokens of one issuer repeat a handful of headers (one per live key), so the outcome of the
    header checks is remembered per encoded header, but only once a token with that header has
    passed the signature check (an unsigned header never enters), and at most
    ``HEADER_CACHE_SIZE`` of them. New keys mean a new ``JWTVerifier`` (``with_keys``).
    """

    __slots__ = ("_headers", "keys", "rules")

    def __init__(self, keys: KeySet, rules: Rules) -> None:
        if not isinstance(keys, KeySet) or not isinstance(rules, Rules):
            raise TypeError("JWTVerifier(KeySet, Rules)")
        self.keys, self.rules = keys, rules
        self._headers: dict[str, tuple[dict[str, Any], VerificationKey]] = {}

    def with_keys(self, keys: KeySet) -> JWTVerifier:
        return JWTVerifier(keys, self.rules)

    def verify(self, token: str, now: datetime) -> VerifiedToken:
        """Verify a JWS compact serialisation carrying JWT claims, or raise ``TokenInvalid``.

        ``now`` must be timezone-aware (the injected clock's time).
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        rules = self.rules
        if not isinstance(token, str):
            raise TokenInvalid("token is not a string")
        if len(token) > rules.max_token_bytes:  # before any parsing
            raise TokenInvalid(f"token longer than {rules.max_token_bytes} octets")
        match = _COMPACT.fullmatch(token)
        if match is None:
            raise TokenInvalid("not three base64url parts (JWS compact serialisation)")
        h64, p64, s64 = match.groups()
        cached = self._headers.get(h64)
        if cached is None:
            try:
                header_raw = b64decode(h64)
            except (ValueError, binascii.Error):
                raise TokenInvalid("header is not canonical base64url") from None
            header = json_object(header_raw, "header")
            key = _check_header(header, rules, self.keys)
        else:
            header, key = cached
        try:
            signature = b64decode(s64)
            payload_raw = b64decode(p64)
        except (ValueError, binascii.Error):
            raise TokenInvalid("payload or signature is not canonical base64url") from None
        key.verify_signature(token[: len(h64) + 1 + len(p64)].encode("ascii"), signature)
        if cached is None:
            if len(self._headers) >= HEADER_CACHE_SIZE:
                self._headers.clear()
            self._headers[h64] = (header, key)
        claims = json_object(payload_raw, "payload")
        _check_claims(claims, rules, now.timestamp())
        return VerifiedToken(_SEAL, header, claims, key)


def verify(token: str, keys: KeySet, rules: Rules, now: datetime) -> VerifiedToken:
    """One-off ``JWTVerifier(keys, rules).verify(token, now)``; a server keeps the verifier."""
    return JWTVerifier(keys, rules).verify(token, now)
