"""Keys and a hand-rolled minter for the JWT verifier tests: any header, any payload bytes,
any signature, so that every malformed shape can be built."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from restguard.keys.jwt_verify import KeySet, Rules, VerificationKey

ISSUER = "https://issuer.example/"
AUDIENCE = "https://api.example"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
T = int(NOW.timestamp())
RULES = Rules(ISSUER, AUDIENCE)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int, size: int | None = None) -> str:
    return b64(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


@dataclass
class Signer:
    alg: str
    private: Any
    kid: str

    def jwk(self, **extra: Any) -> dict[str, Any]:
        pub = self.private.public_key()
        if self.alg == "EdDSA":
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

            raw = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
            jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
        elif self.alg == "ES256":
            nums = pub.public_numbers()
            jwk = {"kty": "EC", "crv": "P-256", "x": uint(nums.x, 32), "y": uint(nums.y, 32)}
        else:
            nums = pub.public_numbers()
            jwk = {"kty": "RSA", "n": uint(nums.n), "e": uint(nums.e)}
        return {**jwk, "kid": self.kid, **extra}

    def sign(self, signing_input: bytes) -> bytes:
        if self.alg == "EdDSA":
            return bytes(self.private.sign(signing_input))
        if self.alg == "ES256":
            der = self.private.sign(signing_input, ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return bytes(self.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256()))

    def verification_key(self) -> VerificationKey:
        return VerificationKey.from_jwk(self.jwk())

    def keyset(self) -> KeySet:
        return KeySet([self.verification_key()])


ED = Signer("EdDSA", ed25519.Ed25519PrivateKey.generate(), "ed-1")
EC = Signer("ES256", ec.generate_private_key(ec.SECP256R1()), "ec-1")
RSA = Signer("RS256", rsa.generate_private_key(65537, 2048), "rsa-1")
ALL_KEYS = (ED, EC, RSA)


def claims(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": T + 300}
    base.update(over)
    return {k: v for k, v in base.items() if v is not DROP}


DROP: Any = object()


def part(value: dict[str, Any] | bytes | str) -> str:
    if isinstance(value, str):
        return value
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return b64(raw)


def mint(
    key: Signer = EC,
    payload: dict[str, Any] | bytes | str | None = None,
    header: dict[str, Any] | bytes | str | None = None,
    **header_over: Any,
) -> str:
    """A token signed by ``key``; header/payload may be dicts, raw bytes or ready parts."""
    if header is None:
        header = {"alg": key.alg, "typ": "JWT", "kid": key.kid, **header_over}
        header = {k: v for k, v in header.items() if v is not DROP}
    signing_input = part(header) + "." + part(claims() if payload is None else payload)
    return signing_input + "." + b64(key.sign(signing_input.encode()))
