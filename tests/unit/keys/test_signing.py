"""keys/signing.py: own Ed25519 keys, JWKS, identity tokens (checked with PyJWT too)."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
from datetime import UTC, datetime, timedelta

import jwt as pyjwt
import pytest

from restguard.clock import FixedClock
from restguard.keys.sealing import Sealer
from restguard.keys.signing import (
    ALG,
    IDENTITY_LIFETIME,
    IdentityMinter,
    SigningKeys,
    load_signing_keys,
    new_signing_key,
    open_keys,
)
from restguard.types import verified_principal
from tests.unit.fakes import T0, FakeSigningKeyStore

ISSUER = "http://127.0.0.1:8080"


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(secrets.token_bytes(32))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_header(token: str, header: dict[str, object]) -> str:
    _, payload, signature = token.split(".")
    return ".".join([b64url(json.dumps(header).encode()), payload, signature])


def principal() -> object:
    return verified_principal(
        subject="billing", client_id="abc123", scopes={"b", "a"}, auth_method="api_key"
    )


def test_new_key_record_is_sealed(sealer: Sealer) -> None:
    rec = new_signing_key(sealer, T0)
    assert rec.alg == "EdDSA"
    assert rec.kid.startswith("20300101-")
    public = json.loads(rec.public_jwk)
    assert public["kty"] == "OKP" and public["crv"] == "Ed25519"
    assert public["kid"] == rec.kid and public["alg"] == "EdDSA" and public["use"] == "sig"
    assert "d" not in public
    assert rec.sealed_private.startswith(b"rg1")
    assert b'"d"' not in rec.sealed_private


def test_jwks_lists_live_keys_newest_first_and_no_private_part(sealer: Sealer) -> None:
    old = new_signing_key(sealer, T0)
    new = new_signing_key(sealer, T0 + timedelta(days=1))
    keys = open_keys([new, old], sealer, T0 + timedelta(days=1))
    jwks = keys.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [new.kid, old.kid]
    assert all("d" not in k for k in jwks["keys"])
    assert keys.signer.kid == new.kid


def test_sign_and_verify(sealer: Sealer) -> None:
    keys = open_keys([new_signing_key(sealer, T0)], sealer, T0)
    token = keys.sign({"sub": "x", "n": 1})
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "EdDSA", "kid": keys.signer.kid, "typ": "JWT"}
    assert keys.verify(token) == {"sub": "x", "n": 1}


def test_old_keys_still_verify_after_rotation(sealer: Sealer) -> None:
    old = new_signing_key(sealer, T0)
    token = open_keys([old], sealer, T0).sign({"sub": "x"})
    new = new_signing_key(sealer, T0 + timedelta(days=1))
    rotated = open_keys([new, old], sealer, T0 + timedelta(days=1))
    assert rotated.verify(token) == {"sub": "x"}
    assert rotated.verify(rotated.sign({"sub": "y"})) == {"sub": "y"}


def test_retired_keys_are_excluded(sealer: Sealer) -> None:
    now = T0 + timedelta(days=2)
    old = new_signing_key(sealer, T0)
    old_token = open_keys([old], sealer, T0).sign({"sub": "x"})
    retired = dataclasses.replace(old, retired_at=now)
    retiring = dataclasses.replace(new_signing_key(sealer, T0), retired_at=now + timedelta(hours=1))
    live = new_signing_key(sealer, now)
    keys = open_keys([live, retiring, retired], sealer, now)
    assert [k["kid"] for k in keys.jwks()["keys"]] == [live.kid, retiring.kid]
    with pytest.raises(ValueError, match="live restguard key"):
        keys.verify(old_token)


def test_no_live_key_is_refused(sealer: Sealer) -> None:
    old = dataclasses.replace(new_signing_key(sealer, T0), retired_at=T0)
    with pytest.raises(ValueError, match="at least one"):
        open_keys([old], sealer, T0)


def test_sealed_private_key_opens_only_for_its_kid(sealer: Sealer) -> None:
    a, b = new_signing_key(sealer, T0), new_signing_key(sealer, T0)
    swapped = dataclasses.replace(a, sealed_private=b.sealed_private)
    with pytest.raises(Exception, match="does not open"):
        open_keys([swapped], sealer, T0)


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256", "none", "Ed25519", "eddsa"])
def test_verify_refuses_another_header_alg(sealer: Sealer, alg: str) -> None:
    keys = open_keys([new_signing_key(sealer, T0)], sealer, T0)
    token = keys.sign({"sub": "x"})
    header = {"alg": alg, "kid": keys.signer.kid, "typ": "JWT"}
    with pytest.raises(ValueError, match="live restguard key"):
        keys.verify(with_header(token, header))


def test_verify_refuses_a_header_without_alg(sealer: Sealer) -> None:
    keys = open_keys([new_signing_key(sealer, T0)], sealer, T0)
    token = keys.sign({"sub": "x"})
    with pytest.raises(Exception):
        keys.verify(with_header(token, {"kid": keys.signer.kid, "typ": "JWT"}))


def test_verify_refuses_none_alg_without_signature(sealer: Sealer) -> None:
    keys = open_keys([new_signing_key(sealer, T0)], sealer, T0)
    payload = b64url(b'{"sub":"admin"}')
    header = b64url(json.dumps({"alg": "none", "kid": keys.signer.kid}).encode())
    with pytest.raises(ValueError):
        keys.verify(f"{header}.{payload}.")


def test_verify_refuses_unknown_kid(sealer: Sealer) -> None:
    ours = open_keys([new_signing_key(sealer, T0)], sealer, T0)
    theirs = open_keys([new_signing_key(sealer, T0)], sealer, T0)
    with pytest.raises(ValueError, match="live restguard key"):
        ours.verify(theirs.sign({"sub": "x"}))
    token = ours.sign({"sub": "x"})
    header = {"alg": "EdDSA", "typ": "JWT"}  # no kid at all
    with pytest.raises(ValueError):
        ours.verify(with_header(token, header))


def test_verify_refuses_a_forged_signature_under_a_known_kid(sealer: Sealer) -> None:
    ours = open_keys([new_signing_key(sealer, T0)], sealer, T0)
    theirs = open_keys([new_signing_key(sealer, T0)], sealer, T0)
    forged = with_header(theirs.sign({"sub": "admin"}), {"alg": "EdDSA", "kid": ours.signer.kid})
    with pytest.raises(Exception):
        ours.verify(forged)
    token = ours.sign({"sub": "x"})
    head, _, sig = token.split(".")
    payload = b64url(b'{"sub":"admin"}')
    with pytest.raises(Exception):
        ours.verify(f"{head}.{payload}.{sig}")


async def test_load_signing_keys_creates_the_first_key_once(sealer: Sealer) -> None:
    store = FakeSigningKeyStore()
    clock = FixedClock(T0)
    keys = await load_signing_keys(store, sealer, clock)
    assert len(store.records) == 1
    again = await load_signing_keys(store, sealer, clock)
    assert len(store.records) == 1
    assert again.signer.kid == keys.signer.kid


async def test_load_signing_keys_replaces_an_all_retired_set(sealer: Sealer) -> None:
    store = FakeSigningKeyStore()
    await store.insert(dataclasses.replace(new_signing_key(sealer, T0), retired_at=T0))
    keys = await load_signing_keys(store, sealer, FixedClock(T0 + timedelta(days=1)))
    assert len(store.records) == 2
    assert len(keys.keys) == 1


# --- identity tokens ------------------------------------------------------------------------------


def test_identity_token_claims(sealer: Sealer) -> None:
    clock = FixedClock(T0)
    keys = open_keys([new_signing_key(sealer, T0)], sealer, T0)
    minter = IdentityMinter(keys, ISSUER, clock)
    claims = keys.verify(minter.mint(principal()))  # type: ignore[arg-type]
    iat = int(T0.timestamp())
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "billing"
    assert claims["client_id"] == "abc123"
    assert claims["scope"] == "a b"
    assert claims["auth_method"] == "api_key"
    assert claims["iat"] == iat
    assert claims["exp"] == iat + IDENTITY_LIFETIME
    assert IDENTITY_LIFETIME <= 300
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    second = keys.verify(minter.mint(principal()))  # type: ignore[arg-type]
    assert second["jti"] != claims["jti"]


def test_pyjwt_verifies_an_identity_token_with_the_jwks(sealer: Sealer) -> None:
    now = datetime.now(UTC)
    keys = open_keys([new_signing_key(sealer, now)], sealer, now)
    token = IdentityMinter(keys, ISSUER, FixedClock(now)).mint(principal())  # type: ignore[arg-type]
    jwks = pyjwt.PyJWKSet.from_dict(json.loads(json.dumps(keys.jwks())))
    kid = pyjwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims = pyjwt.decode(
        token,
        key,
        algorithms=[ALG],
        issuer=ISSUER,
        options={"require": ["iss", "sub", "exp", "iat", "jti"]},
    )
    assert claims["sub"] == "billing"
    assert claims["auth_method"] == "api_key"
    # and PyJWT refuses it with another (unpublished) key
    other = open_keys([new_signing_key(sealer, now)], sealer, now)
    other_key = pyjwt.PyJWK.from_dict(other.jwks()["keys"][0])
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(token, other_key, algorithms=[ALG], issuer=ISSUER)


def test_pyjwt_sees_an_expired_identity_token(sealer: Sealer) -> None:
    past = datetime.now(UTC) - timedelta(seconds=IDENTITY_LIFETIME + 5)
    keys = open_keys([new_signing_key(sealer, past)], sealer, past)
    token = IdentityMinter(keys, ISSUER, FixedClock(past)).mint(principal())  # type: ignore[arg-type]
    key = pyjwt.PyJWK.from_dict(keys.jwks()["keys"][0])
    with pytest.raises(pyjwt.ExpiredSignatureError):
        pyjwt.decode(token, key, algorithms=[ALG], issuer=ISSUER)


def test_signing_keys_needs_a_key() -> None:
    with pytest.raises(ValueError):
        SigningKeys([])
