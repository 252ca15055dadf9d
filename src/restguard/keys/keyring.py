"""The live keyring of a running restguard: the current ``SigningKeys`` snapshot, refreshed from
the store every ``REFRESH_SECONDS`` so that a ``signing-key rotate`` reaches every instance's
JWKS and signer within the contract's 5 s.

A refresh unseals only kids it has not seen, and swaps in a new immutable snapshot. It never
raises: a store that fails, or a new key the master key does not open, keeps the last snapshot
(logged, without any key material). Keys past ``retired_at`` leave the JWKS by the clock at
serve time (``SigningKeys.jwks_body``), between refreshes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from restguard.clock import Clock
from restguard.errors import BackendUnavailable
from restguard.keys.sealing import MasterKeyError, Sealer, SealError
from restguard.keys.signing import LiveKey, SigningKeys, unseal
from restguard.store.ports import SigningKeyRecord, SigningKeyStore

REFRESH_SECONDS: Final = 2.0

_log = logging.getLogger("restguard.keyring")


class Keyring:
    """The current snapshot (``current``), and what readers use of it: ``signer``, ``sign``,
    ``jwks``, ``jwks_body`` and ``verify``.

    ``reopen_sealer`` (optional) reads the master key again: a refresh calls it once when a new
    key does not open, so that a ``master-key rotate`` does not strand a running instance.
    """

    def __init__(
        self,
        store: SigningKeyStore,
        sealer: Sealer,
        clock: Clock,
        keys: SigningKeys,
        *,
        reopen_sealer: Callable[[], Sealer] | None = None,
    ) -> None:
        self.store, self.sealer, self.clock = store, sealer, clock
        self.current = keys
        self._reopen = reopen_sealer
        self._unopenable: set[str] = set()

    @property
    def signer(self) -> LiveKey:
        return self.current.signer

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        return self.current.sign(claims, typ)

    def jwks(self) -> dict[str, Any]:
        return self.current.jwks(self.clock.now())

    def jwks_body(self) -> bytes:
        return self.current.jwks_body(self.clock.now())

    def verify(self, token: str) -> dict[str, Any]:
        return self.current.verify(token)

    async def refresh(self) -> bool:
        """Reload from the store; whether a new snapshot is in force. Never raises."""
        try:
            records = await self.store.list()
        except BackendUnavailable as exc:
            _log.warning("signing keys not refreshed: the store failed (%s)", exc.debug or exc)
            return False
        except Exception:
            _log.exception("signing keys not refreshed")
            return False
        return self._swap(records, self.clock.now())

    def _swap(self, records: list[SigningKeyRecord], now: datetime) -> bool:
        known = {k.kid: k for k in self.current.keys}
        keys: list[LiveKey] = []
        for rec in records:
            if rec.retired_at is not None and rec.retired_at <= now:
                continue
            old = known.get(rec.kid)
            if old is None:
                new = self._unseal(rec)
                if new is not None:  # (one that does not open is left out, and retried)
                    keys.append(new)
            elif old.retired_at == rec.retired_at:
                keys.append(old)
            else:
                keys.append(replace(old, retired_at=rec.retired_at))
        if not keys or {(k.kid, k.retired_at) for k in keys} == {
            (k.kid, k.retired_at) for k in self.current.keys
        }:
            return False
        self.current = SigningKeys(keys)
        _log.info("signing keys refreshed: %s signs", self.current.signer.kid)
        return True

    def _unseal(self, rec: SigningKeyRecord) -> LiveKey | None:
        try:
            return unseal(rec, self.sealer)
        except SealError:
            pass
        except ValueError:
            self._report(rec.kid, f"signing key {rec.kid} is not a usable {rec.alg} key; ignored")
            return None
        if self._reopen is not None:
            with contextlib.suppress(MasterKeyError, SealError, ValueError):  # reported below
                self.sealer = self._reopen()
                return unseal(rec, self.sealer)
        self._report(
            rec.kid,
            f"signing key {rec.kid} does not open with this instance's master key; it is left "
            "out (restart with the data directory's current master key)",
        )
        return None

    def _report(self, kid: str, message: str) -> None:
        if kid not in self._unopenable:  # once per kid: refreshes retry every few seconds
            self._unopenable.add(kid)
            _log.error("%s", message)

    async def run(self, every: float = REFRESH_SECONDS) -> None:
        """Refresh every ``every`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(every)
            await self.refresh()
