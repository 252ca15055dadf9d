"""Binding a data directory to its master key, so that a key that does not belong to it never
seals anything into it.

Without this, a database holding no sealed secret yet (a fresh ``restguard init``, or every
signing key retired) has nothing to check a master key against: ``signing-key rotate`` or the
first ``serve`` with a wrong key would seal the new signing key with it, and the right key would
then no longer open the data directory.

The store keeps one *check value*: a fixed text sealed by the data directory's master key under
the purpose ``master-key-check`` (``MasterKeyCheckStore``). ``ensure_master_key`` runs before
anything is sealed (``restguard init``, ``wiring.open_runtime`` -- so ``serve`` and embedding --,
``signing-key rotate``, ``master-key rotate``): the check value must open with the key; where
there is none yet, every stored secret must open with it (a data directory made before the
check existed), and then the check value is written, once (several instances starting at once
all end up checking the one that won). ``verify_master_key`` is the same check without the
write, for ``restguard check``. ``master-key rotate`` re-seals the check value with every other
secret, in the same transaction (``store/sql/reseal.py``).
"""

from __future__ import annotations

from typing import Final

from restguard.keys.sealing import MASTER_KEY_ENV, MasterKeyError, Sealer, SealError
from restguard.store.ports import Store

#: The sealing purpose (associated data) of the check value.
CHECK_PURPOSE: Final = "master-key-check"
#: What the check value holds; opening it (AES-GCM's tag) is the proof, the text a second one.
CHECK_PLAINTEXT: Final = b"restguard master key check v1"


class WrongMasterKey(MasterKeyError):
    """The master key does not open the data directory's stored secrets."""


def _refusal(what: str) -> WrongMasterKey:
    return WrongMasterKey(
        f"this master key does not open the data directory's stored secrets ({what}); use the "
        f"master key the data directory was created with ([keys] master_key or {MASTER_KEY_ENV})"
    )


def _named(purpose: str) -> str:
    """``signing-key:K`` -> ``signing key K``: a secret as the message names it."""
    kind, _, name = purpose.partition(":")
    return f"{kind.replace('-', ' ')} {name}".strip()


def check_value(sealer: Sealer) -> bytes:
    """A fresh check value sealed by ``sealer``."""
    return sealer.seal(CHECK_PLAINTEXT, CHECK_PURPOSE)


def _opens(sealed: bytes, sealer: Sealer) -> bool:
    try:
        return sealer.open(sealed, CHECK_PURPOSE) == CHECK_PLAINTEXT
    except SealError:
        return False


async def verify_master_key(store: Store, sealer: Sealer) -> bool:
    """Whether the data directory is bound to a master key yet; ``WrongMasterKey`` if
    ``sealer`` does not open its check value (or, unbound, one of its stored secrets). Writes
    nothing."""
    sealed = await store.master_key_check.get()
    if sealed is not None:
        if not _opens(sealed, sealer):
            raise _refusal("its master-key check")
        return True
    for purpose, value in await store.master_key_check.sealed_secrets():
        try:
            sealer.open(value, purpose)
        except SealError:
            raise _refusal(_named(purpose)) from None
    return False


async def ensure_master_key(store: Store, sealer: Sealer) -> None:
    """Refuse (``WrongMasterKey``) a master key that does not belong to the data directory;
    bind an unbound one to it. Call before sealing anything into the store."""
    if await verify_master_key(store, sealer):
        return
    stored = await store.master_key_check.put_if_absent(check_value(sealer))
    if not _opens(stored, sealer):  # another instance bound it first, with another key
        raise _refusal("its master-key check")
