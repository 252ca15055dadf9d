"""keys/keyring.py and rotation: the newest key signs, rotated-out keys stay published for
MAX_TOKEN_LIFETIME and then leave the JWKS by the clock; refreshes never crash."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
from datetime import timedelta

import jwt as pyjwt
import pytest

from restguard.clock import FixedClock
from restguard.errors import BackendUnavailable
from restguard.gateway.identity import IDENTITY_REUSE_SECONDS, IdentityHeaders
from restguard.guard import Decision
from restguard.keys import signing
from restguard.keys.keyring import Keyring
from restguard.keys.sealing import Sealer
from restguard.keys.signing import (
    IDENTITY_LIFETIME,
    MAX_TOKEN_LIFETIME,
    IdentityMinter,
    load_signing_keys,
    rotation_plan,
    signer_of,
    status,
)
from restguard.types import verified_principal
from tests.unit.fakes import T0, FakeSigningKeyStore


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(secrets.token_bytes(32))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


async def keyring(
    store: FakeSigningKeyStore, sealer: Sealer, clock: FixedClock, **kw: object
) -> Keyring:
    keys = await load_signing_keys(store, sealer, clock)
    return Keyring(store, sealer, clock, keys, **kw)  # type: ignore[arg-type]


async def rotate(store: FakeSigningKeyStore, sealer: Sealer, clock: FixedClock, alg: str) -> str:
    new, retire_at = rotation_plan(sealer, clock.now(), alg)
    await store.rotate(new, retire_at)
    return new.kid


def kids(ring: Keyring) -> list[str]:
    return [k["kid"] for k in json.loads(ring.jwks_body())["keys"]]


def test_max_token_lifetime_covers_every_token_restguard_signs() -> None:
    assert IDENTITY_LIFETIME + IDENTITY_REUSE_SECONDS <= MAX_TOKEN_LIFETIME
    assert MAX_TOKEN_LIFETIME == 3600


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
async def test_rotation_signs_with_the_new_key_and_keeps_the_old_published(
    sealer: Sealer, clock: FixedClock, alg: str
) -> None:
    store = FakeSigningKeyStore()
    ring = await keyring(store, sealer, clock)
    first = ring.signer.kid
    old_token = ring.sign({"sub": "before"})
    clock.advance(10)
    new = await rotate(store, sealer, clock, alg)
    assert await ring.refresh() is True
    assert ring.signer.kid == new
    token = ring.sign({"sub": "after"})
    assert pyjwt.get_unverified_header(token) == {"alg": alg, "kid": new, "typ": "JWT"}
    assert kids(ring) == [new, first]
    assert ring.verify(old_token) == {"sub": "before"}
    jwks = pyjwt.PyJWKSet.from_dict(json.loads(ring.jwks_body()))
    assert pyjwt.decode(token, jwks[new], algorithms=[alg]) == {"sub": "after"}
    assert pyjwt.decode(old_token, jwks[first], algorithms=["EdDSA"]) == {"sub": "before"}
    # the old key retires MAX_TOKEN_LIFETIME after the rotation, by the clock alone
    retired = next(r for r in store.records if r.kid == first).retired_at
    assert retired == clock.now() + timedelta(seconds=MAX_TOKEN_LIFETIME)
    clock.advance(MAX_TOKEN_LIFETIME - 1)
    assert kids(ring) == [new, first]
    clock.advance(1)
    assert kids(ring) == [new]  # no refresh needed: computed at serve time
    assert ring.jwks() == {"keys": [json.loads(ring.jwks_body())["keys"][0]]}
    assert await ring.refresh() is True  # and the next refresh drops it from the snapshot
    assert [k.kid for k in ring.current.keys] == [new]
    with pytest.raises(ValueError, match="live restguard key"):
        ring.verify(old_token)


async def test_a_second_rotation_keeps_an_earlier_retirement(
    sealer: Sealer, clock: FixedClock
) -> None:
    store = FakeSigningKeyStore()
    ring = await keyring(store, sealer, clock)
    first = ring.signer.kid
    await rotate(store, sealer, clock, "EdDSA")
    first_end = clock.now() + timedelta(seconds=MAX_TOKEN_LIFETIME)
    clock.advance(600)
    second = await rotate(store, sealer, clock, "ES256")
    ends = {r.kid: r.retired_at for r in store.records}
    assert ends[first] == first_end
    assert ends[second] is None
    await ring.refresh()
    assert len(kids(ring)) == 3 and ring.signer.kid == second


async def test_refresh_unseals_only_new_kids(
    sealer: Sealer, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FakeSigningKeyStore()
    ring = await keyring(store, sealer, clock)
    first = ring.current.signer
    opened: list[str] = []
    real = signing.unseal

    def counting(rec: signing.SigningKeyRecord, s: Sealer) -> signing.LiveKey:
        opened.append(rec.kid)
        return real(rec, s)

    monkeypatch.setattr("restguard.keys.keyring.unseal", counting)
    assert await ring.refresh() is False  # nothing changed: same snapshot
    new = await rotate(store, sealer, clock, "EdDSA")
    assert await ring.refresh() is True
    assert opened == [new]
    again = next(k for k in ring.current.keys if k.kid == first.kid)
    assert again.key is first.key  # the known key was reused, not unsealed
    assert await ring.refresh() is False
    assert opened == [new]


async def test_a_failing_store_keeps_the_last_snapshot(
    sealer: Sealer, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeSigningKeyStore()
    ring = await keyring(store, sealer, clock)
    before = ring.current
    store.fail = BackendUnavailable(debug="connection refused")
    assert await ring.refresh() is False
    store.fail = RuntimeError("driver bug")
    assert await ring.refresh() is False
    assert ring.current is before
    assert "connection refused" in caplog.text
    store.fail = None
    await rotate(store, sealer, clock, "EdDSA")
    assert await ring.refresh() is True


async def test_a_key_the_master_key_does_not_open_is_left_out_and_logged_once(
    sealer: Sealer, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeSigningKeyStore()
    ring = await keyring(store, sealer, clock)
    first = ring.signer.kid
    stranger = Sealer(secrets.token_bytes(32))
    clock.advance(1)
    await rotate(store, stranger, clock, "EdDSA")
    with caplog.at_level(logging.ERROR, "restguard.keyring"):
        assert await ring.refresh() is True  # the old key's new retirement is taken
        assert await ring.refresh() is False
    assert ring.signer.kid == first
    assert caplog.text.count("does not open") == 1
    assert "rg1" not in caplog.text


async def test_reopen_sealer_picks_up_a_rotated_master_key(clock: FixedClock) -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    store = FakeSigningKeyStore()
    ring = await keyring(store, Sealer(old), clock, reopen_sealer=lambda: Sealer(new))
    kid = await rotate(store, Sealer(new), clock, "EdDSA")
    assert await ring.refresh() is True
    assert ring.signer.kid == kid


async def test_run_refreshes_on_a_timer_until_cancelled(sealer: Sealer, clock: FixedClock) -> None:
    store = FakeSigningKeyStore()
    ring = await keyring(store, sealer, clock)
    task = asyncio.create_task(ring.run(every=0.01))
    kid = await rotate(store, sealer, clock, "EdDSA")
    for _ in range(100):
        if ring.signer.kid == kid:
            break
        await asyncio.sleep(0.01)
    assert ring.signer.kid == kid
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_jwks_body_is_encoded_once_per_change(sealer: Sealer, clock: FixedClock) -> None:
    store = FakeSigningKeyStore()
    ring = await keyring(store, sealer, clock)
    assert ring.jwks_body() is ring.jwks_body()
    await rotate(store, sealer, clock, "EdDSA")
    await ring.refresh()
    body = ring.jwks_body()
    assert body is ring.jwks_body()
    clock.advance(MAX_TOKEN_LIFETIME)
    assert ring.jwks_body() is not body


def test_status_and_signer(sealer: Sealer) -> None:
    old, retire_at = rotation_plan(sealer, T0)
    new = signing.new_signing_key(sealer, T0 + timedelta(seconds=5), "ES256")
    old = dataclasses.replace(old, retired_at=retire_at)
    now = T0 + timedelta(seconds=10)
    signer = signer_of([old, new], now)
    assert signer is not None and signer.kid == new.kid
    assert status(new, signer.kid, now) == "signing"
    assert status(old, signer.kid, now) == "published"
    later = retire_at + timedelta(seconds=1)
    assert status(old, signer.kid, later) == "retired"
    assert signer_of([dataclasses.replace(old, retired_at=T0)], now) is None


async def test_identity_headers_switch_to_the_new_key_at_once(
    sealer: Sealer, clock: FixedClock
) -> None:
    store = FakeSigningKeyStore()
    ring = await keyring(store, sealer, clock)
    headers = IdentityHeaders(IdentityMinter(ring, "http://127.0.0.1:8080", clock))
    p = verified_principal(subject="s", client_id="c", scopes={"a"}, auth_method="api_key")
    decision = Decision(route=None, principal=p)  # type: ignore[arg-type]

    def kid_of(block: bytes) -> str:
        line = next(x for x in block.split(b"\r\n") if x.startswith(b"x-restguard-identity"))
        return str(pyjwt.get_unverified_header(line.split(b": ", 1)[1].decode())["kid"])

    first = headers(decision)
    assert headers(decision) is first  # reused within the minute
    new = await rotate(store, sealer, clock, "RS256")
    await ring.refresh()
    assert kid_of(headers(decision)) == new
    assert kid_of(first) != new
