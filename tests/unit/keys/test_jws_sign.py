"""keys/jws_sign.py: EdDSA, ES256 and RS256 keys; every signature checked by PyJWT, joserfc and
restguard's own verifier (keys/jwk.py)."""

from __future__ import annotations

import base64
import json
import secrets
import warnings
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet as JoseKeySet
from joserfc.jwk import OKPKey

from restguard.keys.jwk import VerificationKey
from restguard.keys.jws_sign import ALGORITHMS, RSA_BITS, PrivateSigningKey, canonical_alg
from restguard.keys.sealing import Sealer
from restguard.keys.signing import new_signing_key, open_keys, purpose
from tests.unit.fakes import T0

CLAIMS = {"iss": "http://127.0.0.1:8080", "sub": "billing", "exp": 4102444800, "n": 1}


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateSigningKey]:
    return {alg: PrivateSigningKey.generate(f"kid-{alg}", alg) for alg in ALGORITHMS}


def parts(token: str) -> tuple[dict[str, Any], bytes]:
    head, _, sig = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    return header, base64.urlsafe_b64decode(sig + "==")


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_public_jwk_has_kid_alg_use_and_no_private_member(
    keys: dict[str, PrivateSigningKey], alg: str
) -> None:
    jwk = keys[alg].public_jwk()
    assert jwk["kid"] == f"kid-{alg}" and jwk["alg"] == alg and jwk["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
    assert VerificationKey.from_jwk(jwk).alg == alg


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_pyjwt_verifies_each_algorithm(keys: dict[str, PrivateSigningKey], alg: str) -> None:
    token = keys[alg].sign_jwt(CLAIMS)
    header, _ = parts(token)
    assert header == {"alg": alg, "kid": f"kid-{alg}", "typ": "JWT"}
    key = pyjwt.PyJWK.from_dict(keys[alg].public_jwk())
    assert pyjwt.decode(token, key, algorithms=[alg]) == CLAIMS


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_joserfc_verifies_each_algorithm(keys: dict[str, PrivateSigningKey], alg: str) -> None:
    token = keys[alg].sign_jwt(CLAIMS)
    keyset = JoseKeySet.import_key_set({"keys": [keys[alg].public_jwk()]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags "EdDSA" as deprecated (RFC 9864)
        decoded = jose_jwt.decode(token, keyset, algorithms=[alg])
    assert dict(decoded.claims) == CLAIMS


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_own_verifier_checks_each_algorithm(keys: dict[str, PrivateSigningKey], alg: str) -> None:
    key = VerificationKey.from_jwk(keys[alg].public_jwk())
    token = keys[alg].sign_jwt(CLAIMS)
    head, body, _ = token.split(".")
    _, signature = parts(token)
    key.verify_signature(f"{head}.{body}".encode(), signature)


def test_es256_signature_is_raw_r_and_s(keys: dict[str, PrivateSigningKey]) -> None:
    """RFC 7518 §3.4: R || S, 64 octets, never DER."""
    key = VerificationKey.from_jwk(keys["ES256"].public_jwk())
    for _ in range(64):  # a short R or S (~1 in 128) must still be left-padded to 32 octets
        token = keys["ES256"].sign_jwt({"n": secrets.token_hex(4)})
        head, body, _ = token.split(".")
        _, signature = parts(token)
        assert len(signature) == 64
        key.verify_signature(f"{head}.{body}".encode(), signature)


def test_rs256_key_size(keys: dict[str, PrivateSigningKey]) -> None:
    n = base64.urlsafe_b64decode(keys["RS256"].public_jwk()["n"] + "==")
    assert len(n) * 8 == RSA_BITS
    _, signature = parts(keys["RS256"].sign_jwt(CLAIMS))
    assert len(signature) == RSA_BITS // 8


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_private_bytes_round_trip(keys: dict[str, PrivateSigningKey], alg: str) -> None:
    again = PrivateSigningKey.from_private_bytes(f"kid-{alg}", alg, keys[alg].private_bytes())
    assert again.public_jwk() == keys[alg].public_jwk()


def test_a_key_refuses_another_algorithm(keys: dict[str, PrivateSigningKey]) -> None:
    with pytest.raises(ValueError):
        PrivateSigningKey.from_private_bytes("k", "ES256", keys["EdDSA"].private_bytes())
    with pytest.raises(ValueError, match="P-256"):
        PrivateSigningKey("k", "ES256", ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ValueError, match="2048"):
        PrivateSigningKey("k", "RS256", rsa.generate_private_key(65537, 1024))
    with pytest.raises(ValueError):
        PrivateSigningKey.generate("k", "HS256")


def test_repr_never_shows_the_key(keys: dict[str, PrivateSigningKey]) -> None:
    assert repr(keys["EdDSA"]) == "PrivateSigningKey(kid='kid-EdDSA', alg='EdDSA')"


@pytest.mark.parametrize(
    ("name", "alg"),
    [
        ("EdDSA", "EdDSA"),
        ("ed25519", "EdDSA"),
        ("ED25519", "EdDSA"),
        ("es256", "ES256"),
        ("Rs256", "RS256"),
        (" RS256 ", "RS256"),
    ],
)
def test_canonical_alg(name: str, alg: str) -> None:
    assert canonical_alg(name) == alg


@pytest.mark.parametrize("name", ["HS256", "none", "ES384", "", "PS256"])
def test_canonical_alg_refuses(name: str) -> None:
    with pytest.raises(ValueError, match="EdDSA, ES256 or RS256"):
        canonical_alg(name)


def test_a_key_sealed_by_an_earlier_version_still_signs() -> None:
    """Earlier versions sealed joserfc's private JWK JSON; those rows keep working."""
    sealer = Sealer(secrets.token_bytes(32))
    rec = new_signing_key(sealer, T0)
    old = OKPKey.generate_key("Ed25519", parameters={"kid": rec.kid, "alg": "EdDSA", "use": "sig"})
    legacy = type(rec)(
        rec.kid,
        "EdDSA",
        json.dumps(old.as_dict(private=False), sort_keys=True),
        sealer.seal(json.dumps(old.as_dict(private=True)).encode(), purpose(rec.kid)),
        T0,
    )
    keys = open_keys([legacy], sealer, T0)
    token = keys.sign({"sub": "x"})
    assert keys.verify(token) == {"sub": "x"}
    assert keys.jwks()["keys"][0]["x"] == old.as_dict(private=False)["x"]
    key = pyjwt.PyJWK.from_dict(keys.jwks()["keys"][0])
    assert pyjwt.decode(token, key, algorithms=["EdDSA"]) == {"sub": "x"}
