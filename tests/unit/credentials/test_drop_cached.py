"""credentials: every hot-path cache forgets at once when told (``HoldsCache.drop_cached``),
so an announced revocation applies before the cache's one-second lifetime ends."""

from __future__ import annotations

import asyncio
from datetime import datetime

from restguard.credentials.oauth2 import RevocationList
from restguard.credentials.read_through import ReadThrough


async def test_read_through_reads_again_after_drop_cached() -> None:
    reads: list[str] = []

    async def load(key: str) -> str | None:
        reads.append(key)
        return "record"

    cache: ReadThrough[str, str, int] = ReadThrough(load, len)
    await cache.get("a")
    await cache.get("a")
    assert reads == ["a"]
    cache.drop_cached()
    await cache.get("a")
    assert reads == ["a", "a"]


class Revoked:
    def __init__(self) -> None:
        self.jtis: list[str] = []
        self.reads = 0

    async def revoke(self, jti: str, expires_at: datetime) -> None:
        self.jtis.append(jti)

    async def active(self, now: datetime) -> list[str]:
        self.reads += 1
        return list(self.jtis)


class Clock:
    def now(self) -> datetime:
        return datetime(2026, 1, 1)

    def monotonic(self) -> float:
        return 0.0


async def test_revocation_list_reads_at_once_when_told() -> None:
    store = Revoked()
    revocations = RevocationList(store, Clock())  # type: ignore[arg-type]
    await revocations.start()
    try:
        assert not revocations.revoked("j1")
        store.jtis.append("j1")  # revoked by another instance
        revocations.drop_cached()
        for _ in range(100):  # well under the 0.5 s tick
            await asyncio.sleep(0.001)
            if revocations.revoked("j1"):
                break
        assert revocations.revoked("j1")
        assert store.reads == 2
    finally:
        revocations.close()
