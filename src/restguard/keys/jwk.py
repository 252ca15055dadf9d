"""Verification keys from JWKs (RFC 7517): each holds a pyca public key and the one algorithm it
verifies (the algorithm comes from the key, never from a token: RFC 8725 §3.1), parsed once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from restguard.keys.jose import TokenInvalid, UnusableKey, b64decode_checked

MAX_KID_LENGTH: Final = 256
MIN_RSA_BITS: Final = 2048  # RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used"
# Private JWK members: a verification key set never carries them.
_PRIVATE_JWK_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
_PKCS1V15: Final = padding.PKCS1v15()
_SHA256: Final = hashes.SHA256()


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
                x = b64decode_checked(jwk.get("x"))  # type: ignore[arg-type]
                if len(x) != 32:
                    raise UnusableKey("Ed25519 'x' must be 32 octets")
                key = Ed25519PublicKey.from_public_bytes(x)
            elif kty == "EC":
                if jwk.get("crv") != "P-256":
                    raise UnusableKey(f"EC curve {jwk.get('crv')!r} is not supported")
                x = b64decode_checked(jwk.get("x"))  # type: ignore[arg-type]
                y = b64decode_checked(jwk.get("y"))  # type: ignore[arg-type]
                if len(x) != 32 or len(y) != 32:  # RFC 7518 §6.2.1.2: full-size coordinates
                    raise UnusableKey("P-256 'x' and 'y' must be 32 octets each")
                key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
            elif kty == "RSA":
                n = int.from_bytes(b64decode_checked(jwk.get("n")), "big")  # type: ignore[arg-type]
                e = int.from_bytes(b64decode_checked(jwk.get("e")), "big")  # type: ignore[arg-type]
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
