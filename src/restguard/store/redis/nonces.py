"""The replay caches on Redis: ``SET key 1 NX PX ttl`` per nonce; the key's expiry drops it.

Keys are prefix + kind + the SHA-256 of the length-prefixed parts (attacker-chosen strings:
``("a:b", "c")`` and ``("a", "b:c")`` are different nonces). The record lives for
``expires_at - now`` (at least 1 ms) from when Redis sets it: a duration rather than an
absolute time, so a gateway whose clock disagrees with Redis's still keeps its nonces as long
as it accepts them. Like the SQL twin, an ``expires_at`` not after ``now`` is recorded
(True) and is gone at once. Concurrent nonces of one process (both kinds) travel together: one
script runs the ``SET``s in order, so a nonce used twice in one batch is fresh only once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import datetime, timedelta
from typing import Final

from restguard.errors import BackendUnavailable
from restguard.store.batch import Coalescer
from restguard.store.redis._link import Lane, Link, digest, script_sha

_MS = timedelta(milliseconds=1)

#: For each of KEYS, in order, with ARGV[i] its time to live (ms): "1" if recorded now, "0"
#: if it was there already (a replay); one string (one bulk reply: cheap to parse).
NONCES_LUA: Final = """
local out = {}
for i = 1, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[i]) then out[i] = '1' else out[i] = '0' end
end
return table.concat(out)
"""
NONCES_SHA: Final = script_sha(NONCES_LUA)

#: One nonce: its key (prefixed) and time to live in ms.
Nonce = tuple[str, int]


def _ttl_ms(expires_at: datetime, now: datetime) -> int:
    return max(1, -((now - expires_at) // _MS))  # ceil((expires_at - now) / 1 ms)


def fresh(reply: object, count: int) -> list[bool]:
    """A batch's reply: ``count`` answers (True: recorded now), or ``BackendUnavailable`` if
    any part of it has another shape."""
    if not (isinstance(reply, bytes) and len(reply) == count and not reply.strip(b"01")):
        raise BackendUnavailable(debug="redis nonces: a reply of an unexpected shape")
    return [c == 0x31 for c in reply]


class NonceBatches:
    """The one ``Coalescer`` of both replay caches."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._lane = Lane(link)
        self._batches: Coalescer[Nonce, bool] = Coalescer(link, "nonces.use", self._send)

    async def _send(self, nonces: Sequence[Nonce]) -> list[bool]:
        keys = [key for key, _ in nonces]
        args: list[str | int] = [ttl for _, ttl in nonces]
        reply = await self._lane.script(NONCES_SHA, NONCES_LUA, keys, args)
        return fresh(reply, len(nonces))

    def use(self, kind: str, parts: str, expires_at: datetime, now: datetime) -> Awaitable[bool]:
        """Whether ``kind:parts`` is recorded now, first (awaited by the caller)."""
        key = f"{self.link.prefix}{kind}:{parts}"
        return self._batches.submit((key, _ttl_ms(expires_at, now)))


class RedisNonceStore:
    """``NonceStore``: RFC 9421 signature nonces per app."""

    def __init__(self, batches: NonceBatches) -> None:
        self._batches = batches

    async def use(self, key_id: str, nonce: str, expires_at: datetime, now: datetime) -> bool:
        """True for the one call (of any instance) that recorded ``(key_id, nonce)`` first."""
        return await self._batches.use("sig-nonce", digest(key_id, nonce), expires_at, now)


class RedisOAuth1NonceStore:
    """``OAuth1NonceStore``: RFC 5849 §3.3 nonces per consumer, token and timestamp."""

    def __init__(self, batches: NonceBatches) -> None:
        self._batches = batches

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
        return await self._batches.use("oauth1-nonce", parts, expires_at, now)
