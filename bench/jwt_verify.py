"""JWT verification micro-benchmark: microseconds per verify, median, side by side.

    python bench/jwt_verify.py            # 9 interleaved rounds
    python bench/jwt_verify.py --quick    # 3 short rounds (smoke)

For ES256, EdDSA and RS256, one token (a typical access token's claims) is verified by:

* ``primitive`` - pyca ``cryptography``'s verify alone on the prepared signature (DER for
  ECDSA), the floor any verifier pays;
* ``restguard`` - ``JWTVerifier.verify`` (parse, checks, signature, claims);
* ``pyjwt``     - ``jwt.decode`` with iss, aud and exp required;
* ``joserfc``   - ``jwt.decode`` plus ``JWTClaimsRegistry.validate`` with the same rules.

Keys are prepared once. Rounds interleave the verifiers so that a drifting machine moves all of
them alike; the median round is reported. Targets (issue 8): restguard within 1.3x of the
primitive for ES256 and EdDSA, 2x for RS256, and at least 2x faster than the faster of PyJWT and
joserfc.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src")]

import jwt as pyjwt  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402
from cryptography.hazmat.primitives.serialization import (  # noqa: E402
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from joserfc import jwt as jose_jwt  # noqa: E402
from joserfc.jwk import ECKey, OKPKey, RSAKey  # noqa: E402
from joserfc.jws import JWSRegistry  # noqa: E402

from restguard.keys.jwt_verify import JWTVerifier, KeySet, Rules, VerificationKey  # noqa: E402

ISSUER = "https://issuer.example/"
AUDIENCE = "https://api.example"


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _jose_registry() -> JWSRegistry:
    quiet = type(JWSRegistry.algorithms["EdDSA"])()
    quiet.security_warning = None  # "EdDSA" is deprecated by RFC 9864; not under test
    registry = JWSRegistry(algorithms=["EdDSA", "ES256", "RS256"])
    registry.algorithms = {
        "EdDSA": quiet,
        "ES256": JWSRegistry.algorithms["ES256"],
        "RS256": JWSRegistry.algorithms["RS256"],
    }
    return registry


def _jwk(alg: str, pub: Any, kid: str) -> dict[str, Any]:
    if alg == "EdDSA":
        return {"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": _b64(pub.public_bytes(
            Encoding.Raw, PublicFormat.Raw))}  # fmt: skip
    nums = pub.public_numbers()
    if alg == "ES256":
        return {"kty": "EC", "crv": "P-256", "kid": kid, "x": _b64(nums.x.to_bytes(32, "big")),
                "y": _b64(nums.y.to_bytes(32, "big"))}  # fmt: skip
    return {"kty": "RSA", "kid": kid, "n": _b64(nums.n.to_bytes(256, "big")),
            "e": _b64(nums.e.to_bytes(3, "big"))}  # fmt: skip


def setup(alg: str) -> dict[str, Callable[[], object]]:
    """The four verifiers for one algorithm, each a no-argument call, everything prepared."""
    private: Any
    if alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(65537, 2048)
    pub = private.public_key()
    kid = f"{alg.lower()}-2026-01"
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "auth0|5f7c8ec7c33c6c004bbafe82",
        "aud": [AUDIENCE, "https://issuer.example/userinfo"],
        "iat": now,
        "exp": now + 3600,
        "azp": "YmFzZTY0IGNsaWVudCBpZA",
        "scope": "openid profile email read:notes write:notes",
    }
    token = pyjwt.encode(claims, private, algorithm=alg, headers={"kid": kid, "typ": "JWT"})
    h, p, s = token.split(".")
    signing_input = f"{h}.{p}".encode()
    sig = _b64d(s)

    if alg == "EdDSA":

        def primitive() -> object:
            return pub.verify(sig, signing_input)
    elif alg == "ES256":
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        ecdsa = ec.ECDSA(hashes.SHA256())

        def primitive() -> object:
            return pub.verify(der, signing_input, ecdsa)
    else:
        pad, sha = padding.PKCS1v15(), hashes.SHA256()

        def primitive() -> object:
            return pub.verify(sig, signing_input, pad, sha)

    verifier = JWTVerifier(
        KeySet([VerificationKey.from_jwk(_jwk(alg, pub, kid))]), Rules(ISSUER, AUDIENCE)
    )

    def restguard() -> object:
        return verifier.verify(token, datetime.now(UTC))

    def with_pyjwt() -> object:
        return pyjwt.decode(
            token,
            pub,
            algorithms=[alg],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iss", "aud"]},
        )

    registry = _jose_registry()
    jose_class = {"EdDSA": OKPKey, "ES256": ECKey, "RS256": RSAKey}[alg]
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    jose_key = jose_class.import_key(jose_class.import_key(pem).as_dict(private=False))
    claims_registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
    )

    def with_joserfc() -> object:
        decoded = jose_jwt.decode(token, jose_key, algorithms=[alg], registry=registry)
        claims_registry.validate(decoded.claims)
        return decoded

    verifiers = {
        "primitive": primitive,
        "restguard": restguard,
        "pyjwt": with_pyjwt,
        "joserfc": with_joserfc,
    }
    for fn in verifiers.values():  # every one accepts the token before it is timed
        fn()
    return verifiers


def time_once(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 short rounds (smoke)")
    args = parser.parse_args()
    rounds, budget = (3, 0.05) if args.quick else (9, 0.3)  # seconds per verifier per round
    algs = ["ES256", "EdDSA", "RS256"]
    names = ["primitive", "restguard", "pyjwt", "joserfc"]
    results: dict[str, dict[str, float]] = {}
    for alg in algs:
        verifiers = setup(alg)
        n = {name: max(20, int(budget / (time_once(fn, 20) / 1e6))) for name, fn in
             verifiers.items()}  # fmt: skip
        samples: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(rounds):
            for name in names:
                samples[name].append(time_once(verifiers[name], n[name]))
        results[alg] = {name: statistics.median(samples[name]) for name in names}

    print(f"python {sys.version.split()[0]}, cryptography, {rounds} rounds; us per verify (median)")
    head = f"{'alg':6} " + " ".join(f"{n:>10}" for n in names)
    print(head + f"  {'rg/prim':>8} {'peer/rg':>8}")
    for alg in algs:
        r = results[alg]
        ratio = r["restguard"] / r["primitive"]
        peer = min(r["pyjwt"], r["joserfc"]) / r["restguard"]
        cells = " ".join(f"{r[n]:10.1f}" for n in names)
        print(f"{alg:6} {cells}  {ratio:7.2f}x {peer:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
