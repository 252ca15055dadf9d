"""PyJWT's ``PyJWKClient`` against a running gateway's JWKS verifies the ``X-Restguard-Identity``
tokens its upstream receives, across a ``signing-key rotate`` (CONTRACT: the new key is in every
running instance's JWKS within 5 s; old keys stay until tokens they signed expire)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
from click.testing import CliRunner

from restguard.cli.main import cli
from restguard.keys.sealing import open_sealer
from restguard.keys.signing import new_signing_key
from restguard.store.sql import open_store
from tests.harness import GatewayProcess

CONTRACT_SECONDS = 5.0


def identity_token(gw: GatewayProcess, key: str) -> str:
    r = requests.get(gw.url + "/notes/1", headers={"X-API-Key": key}, timeout=5)
    assert r.status_code == 200, r.text
    token = gw.upstream.last().header("X-Restguard-Identity")
    assert token is not None
    return token


def verify(gw: GatewayProcess, token: str) -> dict[str, object]:
    client = jwt.PyJWKClient(gw.url + "/.well-known/jwks.json", cache_keys=False)
    key = client.get_signing_key_from_jwt(token)
    claims: dict[str, object] = jwt.decode(
        token,
        key,
        algorithms=["EdDSA", "ES256", "RS256"],
        issuer=gw.settings.server.public_url,
        options={"require": ["iss", "sub", "exp", "iat", "jti"]},
    )
    return claims


def published(gw: GatewayProcess) -> list[str]:
    r = requests.get(gw.url + "/.well-known/jwks.json", timeout=5)
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "public, max-age=60"
    return [k["kid"] for k in r.json()["keys"]]


def wait_for(check: object, seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if check():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


@pytest.mark.parametrize("alg", ["ES256", "RS256", "ed25519"])
def test_rotation_end_to_end(gateway_on: GatewayProcess, alg: str) -> None:
    gw = gateway_on
    key_id, key = gw.issue_key("notes:read")
    before = identity_token(gw, key)
    claims = verify(gw, before)
    assert claims["sub"] == "tester" and claims["client_id"] == key_id
    first = kid_of(before)
    assert published(gw) == [first]

    result = CliRunner().invoke(
        cli, ["signing-key", "rotate", "--alg", alg, "--config", str(gw.config), "--json"]
    )
    assert result.exit_code == 0, result.output
    new = json.loads(result.stdout)["kid"]
    waited = wait_for(lambda: published(gw) == [new, first], CONTRACT_SECONDS)
    assert waited < CONTRACT_SECONDS
    # new identity tokens carry the new key at once (the cached block is dropped)
    wait_for(lambda: kid_of(identity_token(gw, key)) == new, 1.0)
    after = identity_token(gw, key)
    assert jwt.get_unverified_header(after)["alg"] == ("EdDSA" if alg == "ed25519" else alg)
    assert verify(gw, after)["sub"] == "tester"
    # the token signed before the rotation still verifies through the JWKS
    assert verify(gw, before)["jti"] == claims["jti"]

    # a later rotation retiring the first key in 2 s: past that time it leaves the JWKS
    async def rotate_soon() -> str:
        store = open_store(gw.settings.database_url)
        try:
            now = datetime.now(UTC)
            rec = new_signing_key(open_sealer(gw.settings.master_key_path), now)
            await store.signing_keys.rotate(rec, now + timedelta(seconds=2))
            return rec.kid
        finally:
            store.close()

    third = asyncio.run(rotate_soon())
    wait_for(lambda: third in published(gw), CONTRACT_SECONDS)
    wait_for(lambda: published(gw) == [third], 2 + CONTRACT_SECONDS)
    with pytest.raises(jwt.PyJWKClientError):
        verify(gw, before)
    with pytest.raises(jwt.PyJWKClientError):
        verify(gw, after)
    assert verify(gw, identity_token(gw, key))["sub"] == "tester"
