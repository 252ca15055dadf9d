"""The replay caches on Redis: one ``SET key 1 NX PX`` per nonce; the key's expiry drops it.

Keys are prefix + kind + the SHA-256 of the length-prefixed parts (attacker-chosen strings:
``("a:b", "c")`` and ``("a", "b:c")`` are different nonces). The record lives for
``expires_at - now`` (at least 1 ms) from when Redis sets it: a duration rather than an
absolute time, so a gateway whose clock disagrees with Redis's still keeps its nonces as long
as it accepts them. Like the SQL twin, an ``expires_at`` not after ``now`` is recorded
(True) and is gone at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from restguard.errors import BackendUnavailable
from restguard.store.redis._link import Link, digest

_MS = timedelta(milliseconds=1)


def _ttl_ms(expires_at: datetime, now: datetime) -> int:
    return max(1, -((now - expires_at) // _MS))  # ceil((expires_at - now) / 1 ms)


async def _record(link: Link, operation: str, key: str, ttl_ms: int) -> bool:
    reply = await link.call(operation, lambda client: client.set(key, b"1", nx=True, px=ttl_ms))
    if reply is True or reply is None:  # recorded now; or there already (nil): a replay
        return reply is True
    raise BackendUnavailable(debug=f"redis {operation}: a reply of an unexpected shape")


class RedisNonceStore:
    """``NonceStore``: RFC 9421 signature nonces per app."""

    def __init__(self, link: Link) -> None:
        self._link = link

    async def use(self, key_id: str, nonce: str, expires_at: datetime, now: datetime) -> bool:
        """True for the one call (of any instance) that recorded ``(key_id, nonce)`` first."""
        key = f"{self._link.prefix}sig-nonce:{digest(key_id, nonce)}"
        return await _record(self._link, "signature_nonces.use", key, _ttl_ms(expires_at, now))


class RedisOAuth1NonceStore:
    """``OAuth1NonceStore``: RFC 5849 §3.3 nonces per consumer, token and timestamp."""

    def __init__(self, link: Link) -> None:
        self._link = link

    async def use(
        self,
        consumer_key: str,
        token: str,
        timestamp: int,
        nonce: str,
        expires_at: datetime,
        now: datetime,
    ) -> bool:
        """True for the one call that recorded the nonce first, False for a replay."""
        parts = digest(consumer_key, token, str(timestamp), nonce)
        key = f"{self._link.prefix}oauth1-nonce:{parts}"
        return await _record(self._link, "oauth1_nonces.use", key, _ttl_ms(expires_at, now))
