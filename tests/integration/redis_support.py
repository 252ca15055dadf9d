"""Shared helpers of the Redis tests: the real Redis on 127.0.0.1:6379, one key prefix per test
(the server is shared: never FLUSHDB), its keys deleted afterwards."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import redis

REDIS_URL = "redis://127.0.0.1:6379/0"


def unique_prefix() -> str:
    return f"rgtest:{uuid.uuid4().hex}:"


def delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` (every 5 ms) until it holds; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - started
