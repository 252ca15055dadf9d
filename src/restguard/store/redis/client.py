"""``open_redis``: the Redis adapters of one deployment, on one connection pool."""

from __future__ import annotations

from restguard.errors import BackendUnavailable
from restguard.store.redis._link import Link
from restguard.store.redis.nonces import NonceBatches, RedisNonceStore, RedisOAuth1NonceStore
from restguard.store.redis.rate_limit import RedisRateLimiter
from restguard.store.redis.revocations import RevocationBus


class RedisBackend:
    """The shared rate limiter, replay caches and revocation bus. Every call is tried once
    within the timeout and fails with ``BackendUnavailable``: callers fail closed."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self.limiter = RedisRateLimiter(link)
        nonces = NonceBatches(link)
        self.signature_nonces = RedisNonceStore(nonces)
        self.oauth1_nonces = RedisOAuth1NonceStore(nonces)
        self.revocations = RevocationBus(link)

    async def ping(self) -> None:
        """``BackendUnavailable`` unless Redis answers within the timeout."""
        await self._link.call("ping", lambda client: client.ping())

    async def up(self) -> bool:
        """Whether Redis answers now (``/readyz``'s ``redis``)."""
        try:
            await self.ping()
        except BackendUnavailable:
            return False
        return True

    async def aclose(self) -> None:
        """Stop the revocation subscriber and close the connections."""
        await self.revocations.stop()
        await self._link.aclose()


def open_redis(
    url: str, *, timeout: float, prefix: str = "restguard:", max_connections: int = 100
) -> RedisBackend:
    """The backend on ``url`` (``redis://`` or ``rediss://``); nothing connects until the first
    call. Keys and the channel start with ``prefix``; ``timeout`` bounds every call (seconds);
    at most ``max_connections`` connections (the revocation subscriber holds one)."""
    return RedisBackend(Link(url, timeout=timeout, prefix=prefix, max_connections=max_connections))
