"""The Redis driver: shared rate limits, replay caches and revocation fan-out for several
instances (``[storage] redis``)."""

from restguard.store.redis.client import RedisBackend, open_redis
from restguard.store.redis.nonces import RedisNonceStore, RedisOAuth1NonceStore
from restguard.store.redis.rate_limit import RedisRateLimiter
from restguard.store.redis.revocations import RevocationBus

__all__ = [
    "RedisBackend",
    "RedisNonceStore",
    "RedisOAuth1NonceStore",
    "RedisRateLimiter",
    "RevocationBus",
    "open_redis",
]
