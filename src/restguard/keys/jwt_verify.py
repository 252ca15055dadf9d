"""Strict, sans-IO verification of JWS compact-serialised JWTs (RFC 7515, 7519, 8725).

Keys are parsed once (``VerificationKey.from_jwk``, ``KeySet``): each holds a pyca public key
and the one algorithm it verifies. ``JWTVerifier(keys, rules).verify(token, now)`` (one per
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
  (CVE-2022-21449, "psychic signatures"). RFC 8037 §3.1: Ed25519 signatures are 64 octets.
  RFC 8017 §8.2.2: an RSASSA-PKCS1-v1_5 signature has the modulus' length.

The size cap applies before any parsing. Only the stdlib and pyca ``cryptography`` are used.
"""

from __future__ import annotations

import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from restguard.errors import InvalidCredential

MAX_LEEWAY: Final = 60  # seconds; RFC 8725 does not fix one, a few minutes at most is usual
DEFAULT_MAX_TOKEN_BYTES: Final = 8192
MAX_TOKEN_BYTES_LIMIT: Final = 65536
MAX_KID_LENGTH: Final = 256
MIN_RSA_BITS: Final = 2048  # RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used"

# Header parameters that would let the token choose its own key (RFC 8725 §3.10).
UNTRUSTED_KEY_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c"})
# Private JWK members: a verification key set never carries them.
_PRIVATE_JWK_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
_PKCS1V15: Final = padding.PKCS1v15()
_SHA256: Final = hashes.SHA256()

# Three non-empty base64url parts, nothing else (no padding, no whitespace, no other alphabet).
_COMPACT = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


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


def _b64decode(part: str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2); the caller checked the alphabet.
    Canonical: the decoded octets re-encode to exactly ``part`` (no stray trailing bits)."""
    rem = len(part) % 4
    if rem == 1:
        raise ValueError("impossible base64url length")
    if rem and part[-1] not in _CANONICAL_LAST[rem]:
        raise ValueError("non-canonical base64url")
    return binascii.a2b_base64(part.encode("ascii").translate(_TO_STANDARD) + _PADDING[rem])


def _b64decode_checked(part: str) -> bytes:
    if not isinstance(part, str) or not _B64URL.fullmatch(part):
        raise ValueError("not base64url")
    try:
        return _b64decode(part)
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
_DECODER: Final = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")  # UTF-8 only (RFC 8259 §8.1); json.loads(bytes) guesses
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeError too
        raise TokenInvalid(f"{what} is not valid JSON: {exc}") from None
    if type(value) is not dict:
        raise TokenInvalid(f"{what} is not a JSON object")
    return value


def decode_part(part: str, what: str) -> dict[str, Any]:
    """One unverified part of a compact JWS (header or payload) as a JSON object, decoded as
    strictly as ``verify`` does; ``TokenInvalid`` otherwise. For routing a token to its issuer
    and key only: nothing in it is trusted before ``verify``."""
    try:
        raw = _b64decode_checked(part)
    except ValueError:
        raise TokenInvalid(f"{what} is not canonical base64url") from None
    return _json_object(raw, what)


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """RFC 7519 §2 NumericDate: a JSON number (not a boolean, not a string), finite."""
    if name not in claims:
        return None
    value = claims[name]
    if type(value) is not int and type(value) is not float:
        raise TokenInvalid(f"'{name}' is not a number")
    if not math.isfinite(value):
        raise TokenInvalid(f"'{name}' is not finite")
    return value


def _normalise_typ(typ: str) -> str:
    typ = typ.lower()
    return typ[len("application/") :] if typ.startswith("application/") else typ


class VerificationKey:
    """One public key and the one algorithm it verifies. Built once, from a JWK."""

    __slots__ = ("_ec", "_ed", "_rsa", "_rsa_len", "alg", "kid")

    alg: str
    kid: str | None

    def __init__(
        self,
        kid: str | None,
        key: Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        *,
        alg: str | None = None,
    ) -> None:
        if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH):
            raise UnusableKey(f"'kid' must be a string of 1..{MAX_KID_LENGTH} characters")
        self.kid = kid
        self._ed: Ed25519PublicKey | None = None
        self._ec: ec.EllipticCurvePublicKey | None = None
        self._rsa: rsa.RSAPublicKey | None = None
        self._rsa_len = 0
        allowed: tuple[str, ...]
        if isinstance(key, Ed25519PublicKey):
            natural, allowed = "EdDSA", ("EdDSA", "Ed25519")
            self._ed = key
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise UnusableKey(f"EC curve {key.curve.name} is not supported (P-256 only)")
            natural, allowed = "ES256", ("ES256",)
            self._ec = key
        elif isinstance(key, rsa.RSAPublicKey):
            if key.key_size < MIN_RSA_BITS:
                raise UnusableKey(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS}")
            natural, allowed = "RS256", ("RS256",)
            self._rsa, self._rsa_len = key, (key.key_size + 7) // 8
        else:
            raise UnusableKey("unsupported key type (Ed25519, P-256 or RSA only)")
        if alg is not None and alg not in allowed:
            raise UnusableKey(f"key 'alg' {alg!r} does not fit this key (expected {natural})")
        self.alg = alg or natural

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> VerificationKey:
        """A verification key from a public JWK (RFC 7517): OKP/Ed25519 (EdDSA), EC/P-256
        (ES256) or RSA of at least 2048 bits (RS256). The JWK's ``alg``, if present, must be
        that algorithm; ``use``, if present, must be ``sig``; ``key_ops``, if present, must
        allow ``verify``. Raises ``UnusableKey``."""
        if not isinstance(jwk, Mapping):
            raise UnusableKey("a JWK is a JSON object")
        if _PRIVATE_JWK_MEMBERS & jwk.keys():
            raise UnusableKey("the JWK carries private or symmetric key material")
        alg = jwk.get("alg")
        if alg is not None and not isinstance(alg, str):
            raise UnusableKey("'alg' must be a string")
        use = jwk.get("use")
        if use is not None and use != "sig":
            raise UnusableKey(f"'use' is {use!r}, not 'sig'")
        ops = jwk.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            raise UnusableKey("'key_ops' does not allow 'verify'")
        kty = jwk.get("kty")
        key: Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
        try:
            if kty == "OKP":
                if jwk.get("crv") != "Ed25519":
                    raise UnusableKey(f"OKP curve {jwk.get('crv')!r} is not supported")
                x = _b64decode_checked(jwk.get("x"))  # type: ignore[arg-type]
                if len(x) != 32:
                    raise UnusableKey("Ed25519 'x' must be 32 octets")
                key = Ed25519PublicKey.from_public_bytes(x)
            elif kty == "EC":
                if jwk.get("crv") != "P-256":
                    raise UnusableKey(f"EC curve {jwk.get('crv')!r} is not supported")
                x = _b64decode_checked(jwk.get("x"))  # type: ignore[arg-type]
                y = _b64decode_checked(jwk.get("y"))  # type: ignore[arg-type]
                if len(x) != 32 or len(y) != 32:  # RFC 7518 §6.2.1.2: full-size coordinates
                    raise UnusableKey("P-256 'x' and 'y' must be 32 octets each")
                key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
            elif kty == "RSA":
                n = int.from_bytes(_b64decode_checked(jwk.get("n")), "big")  # type: ignore[arg-type]
                e = int.from_bytes(_b64decode_checked(jwk.get("e")), "big")  # type: ignore[arg-type]
                key = rsa.RSAPublicNumbers(e, n).public_key()
            else:
                raise UnusableKey(f"key type {kty!r} is not supported (OKP, EC or RSA only)")
        except UnusableKey:
            raise
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise UnusableKey(f"invalid {kty} key: {exc}") from None
        return cls(jwk.get("kid"), key, alg=alg)

    def verify_signature(self, signing_input: bytes, signature: bytes) -> None:
        """Raises ``TokenInvalid`` unless ``signature`` is this key's over ``signing_input``."""
        try:
            if self._ed is not None:
                if len(signature) != 64:
                    raise TokenInvalid("Ed25519 signature is not 64 octets")
                self._ed.verify(signature, signing_input)
            elif self._ec is not None:
                if len(signature) != 64:
                    raise TokenInvalid("ES256 signature is not 64 octets (R || S)")
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
                    raise TokenInvalid("ES256 signature R or S out of range [1, n-1]")
                self._ec.verify(encode_dss_signature(r, s), signing_input, _ECDSA_SHA256)
            else:
                assert self._rsa is not None
                if len(signature) != self._rsa_len:
                    raise TokenInvalid("RS256 signature length is not the modulus length")
                self._rsa.verify(signature, signing_input, _PKCS1V15, _SHA256)
        except InvalidSignature:
            raise TokenInvalid("bad signature") from None

    def __repr__(self) -> str:
        return f"VerificationKey(kid={self.kid!r}, alg={self.alg!r})"


class KeySet:
    """The keys one issuer verifies with, looked up by ``kid``. A token without ``kid`` is
    accepted only when the set holds exactly one key."""

    __slots__ = ("_by_kid", "_only", "keys", "skipped")

    def __init__(self, keys: Iterable[VerificationKey], *, skipped: tuple[str, ...] = ()) -> None:
        self.keys = tuple(keys)
        self.skipped = skipped
        self._by_kid: dict[str, VerificationKey] = {}
        for key in self.keys:
            if key.kid is None:
                continue
            if key.kid in self._by_kid:
                raise UnusableKey(f"duplicate kid {key.kid!r}")
            self._by_kid[key.kid] = key
        self._only = self.keys[0] if len(self.keys) == 1 else None

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> KeySet:
        """The usable signature keys of a JWK Set (RFC 7517 §5); the others (encryption keys,
        algorithms not supported here) are listed in ``skipped`` with the reason."""
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list):
            raise UnusableKey("a JWK Set has a 'keys' array")
        keys, skipped = [], []
        for entry in entries:
            try:
                keys.append(VerificationKey.from_jwk(entry))
            except UnusableKey as exc:
                kid = entry.get("kid") if isinstance(entry, Mapping) else None
                skipped.append(f"kid {kid!r}: {exc}")
        return cls(keys, skipped=tuple(skipped))

    def select(self, kid: str | None) -> VerificationKey | None:
        if kid is None:
            return self._only
        return self._by_kid.get(kid)

    def __len__(self) -> int:
        return len(self.keys)


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
    if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
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
                header_raw = _b64decode(h64)
            except (ValueError, binascii.Error):
                raise TokenInvalid("header is not canonical base64url") from None
            header = _json_object(header_raw, "header")
            key = _check_header(header, rules, self.keys)
        else:
            header, key = cached
        try:
            signature = _b64decode(s64)
            payload_raw = _b64decode(p64)
        except (ValueError, binascii.Error):
            raise TokenInvalid("payload or signature is not canonical base64url") from None
        key.verify_signature(token[: len(h64) + 1 + len(p64)].encode("ascii"), signature)
        if cached is None:
            if len(self._headers) >= HEADER_CACHE_SIZE:
                self._headers.clear()
            self._headers[h64] = (header, key)
        claims = _json_object(payload_raw, "payload")
        _check_claims(claims, rules, now.timestamp())
        return VerifiedToken(_SEAL, header, claims, key)


def verify(token: str, keys: KeySet, rules: Rules, now: datetime) -> VerifiedToken:
    """One-off ``JWTVerifier(keys, rules).verify(token, now)``; a server keeps the verifier."""
    return JWTVerifier(keys, rules).verify(token, now)
