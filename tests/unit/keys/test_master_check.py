"""keys/master_check.py: a data directory is bound to one master key; no other seals into it."""

from __future__ import annotations

import secrets
from typing import cast

import pytest

from restguard.keys.master_check import (
    CHECK_PURPOSE,
    WrongMasterKey,
    check_value,
    ensure_master_key,
    verify_master_key,
)
from restguard.keys.sealing import MASTER_KEY_ENV, MasterKeyError, Sealer
from restguard.store.ports import Store


class FakeCheckStore:
    """``MasterKeyCheckStore`` in memory; counts writes."""

    def __init__(self, secrets_: list[tuple[str, bytes]] | None = None) -> None:
        self.value: bytes | None = None
        self.secrets = secrets_ or []
        self.writes = 0

    async def get(self) -> bytes | None:
        return self.value

    async def put_if_absent(self, sealed: bytes) -> bytes:
        if self.value is None:
            self.writes += 1
            self.value = sealed
        return self.value

    async def sealed_secrets(self) -> list[tuple[str, bytes]]:
        return list(self.secrets)


class FakeStore:
    def __init__(self, check: FakeCheckStore) -> None:
        self.master_key_check = check


def store_of(check: FakeCheckStore) -> Store:
    return cast(Store, FakeStore(check))


def key() -> Sealer:
    return Sealer(secrets.token_bytes(32))


async def test_the_first_use_binds_and_then_only_that_key_opens() -> None:
    right, wrong = key(), key()
    check = FakeCheckStore()
    assert await verify_master_key(store_of(check), right) is False
    await ensure_master_key(store_of(check), right)
    assert check.writes == 1 and check.value is not None
    assert right.open(check.value, CHECK_PURPOSE)
    await ensure_master_key(store_of(check), right)  # bound: nothing more is written
    assert check.writes == 1
    assert await verify_master_key(store_of(check), right) is True
    with pytest.raises(WrongMasterKey) as caught:
        await ensure_master_key(store_of(check), wrong)
    message = str(caught.value)
    assert message.startswith("this master key does not open the data directory's stored secrets")
    assert MASTER_KEY_ENV in message and "\n" not in message
    assert isinstance(caught.value, MasterKeyError)  # the CLI's and serve's short message
    with pytest.raises(WrongMasterKey):
        await verify_master_key(store_of(check), wrong)


async def test_an_unbound_store_with_secrets_binds_only_a_key_that_opens_them_all() -> None:
    right, wrong = key(), key()
    sealed = [
        (f"signing-key:k{i}", right.seal(b"private %d" % i, f"signing-key:k{i}")) for i in range(3)
    ]
    check = FakeCheckStore(sealed)
    with pytest.raises(WrongMasterKey, match="signing key k0"):
        await ensure_master_key(store_of(check), wrong)
    assert check.writes == 0 and check.value is None  # nothing written
    await ensure_master_key(store_of(check), right)
    assert check.writes == 1
    # one secret that the key does not open is enough to refuse it
    mixed = FakeCheckStore([*sealed, ("signing-key:k9", wrong.seal(b"x", "signing-key:k9"))])
    with pytest.raises(WrongMasterKey, match="signing key k9"):
        await ensure_master_key(store_of(mixed), right)
    assert mixed.value is None


async def test_a_lost_race_checks_the_winners_value() -> None:
    right, other = key(), key()
    check = FakeCheckStore()
    original = check.put_if_absent

    async def racing(sealed: bytes) -> bytes:  # another instance writes first, with its key
        await original(check_value(other))
        return await original(sealed)

    check.put_if_absent = racing  # type: ignore[method-assign]
    with pytest.raises(WrongMasterKey, match="master-key check"):
        await ensure_master_key(store_of(check), right)
    assert check.value is not None and other.open(check.value, CHECK_PURPOSE)


async def test_a_value_for_another_purpose_or_tampered_does_not_pass() -> None:
    right = key()
    check = FakeCheckStore()
    check.value = right.seal(b"restguard master key check v1", "signing-key:x")
    with pytest.raises(WrongMasterKey):
        await verify_master_key(store_of(check), right)
    check.value = right.seal(b"something else", CHECK_PURPOSE)
    with pytest.raises(WrongMasterKey):
        await verify_master_key(store_of(check), right)


async def test_during_a_rotation_either_key_opens() -> None:
    current, nxt = secrets.token_bytes(32), secrets.token_bytes(32)
    check = FakeCheckStore()
    await ensure_master_key(store_of(check), Sealer(current))
    both = Sealer(nxt, also=(current,))
    await ensure_master_key(store_of(check), both)
    check.value = check_value(Sealer(nxt))  # re-sealed, not yet renamed
    await ensure_master_key(store_of(check), both)
    with pytest.raises(WrongMasterKey):
        await ensure_master_key(store_of(check), Sealer(current))
