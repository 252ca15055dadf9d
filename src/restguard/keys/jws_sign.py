"""Private signing keys for restguard's own JWS (RFC 7515 compact), on pyca ``cryptography``.

Three algorithms, fixed per key: ``EdDSA`` (Ed25519, RFC 8037, the default), ``ES256`` (P-256,
RFC 7518 §3.4) and ``RS256`` (RSA 3072, RFC 7518 §3.3). Each key knows its public JWK (with
``kid``, ``alg`` and ``use: "sig"``) and signs a JWS signing input. The verifying side is
``keys/jwk.py``; this module never verifies.

RFC 9864 names the fully specified "Ed25519" as the successor of "EdDSA", but common verifiers
(PyJWT among them) only know "EdDSA" today, so restguard signs with "EdDSA".
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ALGORITHMS: Final = ("EdDSA", "ES256", "RS256")
DEFAULT_ALG: Final = "EdDSA"
RSA_BITS: Final = 3072  # RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used"
MIN_RSA_BITS: Final = 2048
# Names people type for each algorithm (case-insensitive).
ALIASES: Final = {"eddsa": "EdDSA", "ed25519": "EdDSA", "es256": "ES256", "rs256": "RS256"}

PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_alg(name: str) -> str:
    """``EdDSA``, ``ES256`` or ``RS256`` for any accepted spelling; ``ValueError`` otherwise."""
    alg = ALIASES.get(name.strip().lower())
    if alg is None:
        raise ValueError(f"unknown signing algorithm {name!r}; use EdDSA, ES256 or RS256")
    return alg


def _int_bytes(value: int, length: int | None = None) -> bytes:
    return value.to_bytes(length or max(1, (value.bit_length() + 7) // 8), "big")


class PrivateSigningKey:
    """One private key, its JWS algorithm and its ``kid``. Never printed (``repr`` omits it)."""

    __slots__ = ("_key", "alg", "kid")

    def __init__(self, kid: str, alg: str, key: PrivateKey) -> None:
        expected = _alg_of(key)
        if alg != expected:
            raise ValueError(f"a {type(key).__name__} signs {expected}, not {alg}")
        self.kid, self.alg, self._key = kid, alg, key

    @classmethod
    def generate(cls, kid: str, alg: str = DEFAULT_ALG) -> PrivateSigningKey:
        key: PrivateKey
        if alg == "EdDSA":
            key = Ed25519PrivateKey.generate()
        elif alg == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif alg == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        else:
            raise ValueError(f"unknown signing algorithm {alg!r}; use EdDSA, ES256 or RS256")
        return cls(kid, alg, key)

    def private_bytes(self) -> bytes:
        """PKCS #8 DER, for sealing. Never written anywhere unsealed."""
        return self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_private_bytes(cls, kid: str, alg: str, data: bytes) -> PrivateSigningKey:
        """From ``private_bytes``, or from the JSON private JWK earlier versions stored (Ed25519
        keys sealed by joserfc). ``ValueError`` when it is neither, or not an ``alg`` key."""
        if data[:1] == b"{":
            return cls(kid, alg, _from_private_jwk(json.loads(data)))
        key = serialization.load_der_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"unsupported private key type {type(key).__name__}")
        return cls(kid, alg, key)

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK (RFC 7517 §4; members per RFC 8037 §2, RFC 7518 §6)."""
        jwk: dict[str, Any]
        key = self._key
        if isinstance(key, Ed25519PrivateKey):
            raw = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            nums = key.public_key().public_numbers()
            # RFC 7518 §6.2.1.2: "MUST be the full size of a coordinate for the curve"
            jwk = {"kty": "EC", "crv": "P-256"}
            jwk |= {"x": b64url(_int_bytes(nums.x, 32)), "y": b64url(_int_bytes(nums.y, 32))}
        else:
            pub = key.public_key().public_numbers()
            jwk = {"kty": "RSA", "n": b64url(_int_bytes(pub.n)), "e": b64url(_int_bytes(pub.e))}
        return jwk | {"kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, signing_input: bytes) -> bytes:
        """The JWS signature over ``signing_input`` (RFC 7515 §5.1 step 5)."""
        key = self._key
        if isinstance(key, Ed25519PrivateKey):
            return key.sign(signing_input)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            # RFC 7518 §3.4: the JWS Signature is R || S, each 32 octets (not DER).
            r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            return _int_bytes(r, 32) + _int_bytes(s, 32)
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())

    def sign_jwt(self, claims: Mapping[str, Any], typ: str = "JWT") -> str:
        """A JWS compact serialisation (RFC 7515 §7.1) of ``claims`` as a JWT of type ``typ``
        (``at+jwt`` for RFC 9068 access tokens)."""
        header = {"alg": self.alg, "kid": self.kid, "typ": typ}
        head = b64url(json.dumps(header, separators=(",", ":")).encode())
        body = b64url(json.dumps(dict(claims), separators=(",", ":")).encode())
        signing_input = f"{head}.{body}"
        return f"{signing_input}.{b64url(self.sign(signing_input.encode('ascii')))}"

    def __repr__(self) -> str:
        return f"PrivateSigningKey(kid={self.kid!r}, alg={self.alg!r})"


def _alg_of(key: PrivateKey) -> str:
    if isinstance(key, Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"EC curve {key.curve.name} is not supported (P-256 only)")
        return "ES256"
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS}")
        return "RS256"
    raise ValueError(f"unsupported private key type {type(key).__name__}")


def _from_private_jwk(jwk: Mapping[str, Any]) -> PrivateKey:
    """An Ed25519 private JWK (RFC 8037 §2), the form earlier versions sealed."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("d"), str):
        raise ValueError("a stored private JWK must be an Ed25519 OKP key")
    return Ed25519PrivateKey.from_private_bytes(_b64decode(jwk["d"]))
