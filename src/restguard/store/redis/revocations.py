"""Revocation fan-out: one instance revokes, every instance forgets what it cached.

``publish`` sends ``kind`` + LF + ``key`` on the channel prefix + ``revoked``. A background
task per instance holds a subscription and calls ``handler(kind, key)`` for each message. Pub/sub
delivers at most once, so whenever the task (re)subscribes -- at start and after every lost
connection -- it first calls ``handler("*", "")``: forget everything, messages may have been
missed. A silent connection (a network partition) is found by a PING every ``ping_every``
seconds that is not answered before the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from restguard.store.redis._link import Link

logger = logging.getLogger("restguard.redis")

FORGET_ALL = "*"
FIRST_DELAY, MAX_DELAY = 0.1, 5.0  # seconds between reconnection attempts (doubling)


class _Lost(Exception):
    """The subscription's connection stopped answering."""


class RevocationBus:
    """Publish revocations; deliver everyone's to ``handler`` while started."""

    def __init__(self, link: Link, *, ping_every: float = 1.0) -> None:
        self._link = link
        self._channel = f"{link.prefix}revoked"
        self._ping_every = ping_every
        self._task: asyncio.Task[None] | None = None
        self.subscriptions = 0  # how many times the task (re)subscribed

    async def publish(self, kind: str, key: str) -> None:
        """Tell every subscribed instance; ``BackendUnavailable`` if Redis cannot take it."""
        if not kind or "\n" in kind:
            raise ValueError("a revocation kind is a non-empty line")
        message = f"{kind}\n{key}".encode("utf-8", "surrogatepass")
        await self._link.call("revocations.publish", lambda c: c.publish(self._channel, message))

    def start(self, handler: Callable[[str, str], None]) -> None:
        """Run the subscriber task (in the running loop) until ``stop``."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("the revocation bus is already started")
        self._task = asyncio.get_running_loop().create_task(
            self._run(handler), name="restguard.redis.revocations"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, handler: Callable[[str, str], None]) -> None:
        delay = FIRST_DELAY
        while True:
            pubsub = self._link.client().pubsub()
            try:
                await self._subscribe(pubsub)
                delay = FIRST_DELAY
                self.subscriptions += 1
                _deliver(handler, FORGET_ALL, "")
                await self._listen(pubsub, handler)
            except (RedisError, OSError, TimeoutError, _Lost) as exc:
                logger.warning(
                    "redis revocations: subscription lost (%s); retrying in %.1f s",
                    type(exc).__name__,
                    delay,
                )
            except Exception:  # a bug must not end the fan-out for good: log, resubscribe
                logger.exception("redis revocations: unexpected failure; retrying in %.1f s", delay)
            finally:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(self._link.timeout):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    async def _subscribe(self, pubsub: PubSub) -> None:
        """SUBSCRIBE and wait for Redis's confirmation (after it, nothing published is missed)."""
        async with asyncio.timeout(self._link.timeout):
            await pubsub.subscribe(self._channel)
            while True:
                reply = await pubsub.get_message(timeout=self._link.timeout)
                if reply is not None and reply["type"] == "subscribe":
                    return

    async def _listen(self, pubsub: PubSub, handler: Callable[[str, str], None]) -> None:
        pinged = False
        while True:
            async with asyncio.timeout(self._ping_every + self._link.timeout):
                reply = await pubsub.get_message(timeout=self._ping_every)
            if reply is None:
                if pinged:
                    raise _Lost("no answer to PING")
                async with asyncio.timeout(self._link.timeout):
                    await pubsub.ping()
                pinged = True
                continue
            pinged = False
            if reply["type"] == "message":
                parsed = _parse(reply["data"])
                if parsed is not None:
                    _deliver(handler, *parsed)


def _parse(data: Any) -> tuple[str, str] | None:
    """``(kind, key)`` from a message, or None when it is malformed."""
    if not isinstance(data, bytes):
        return None
    try:
        kind, sep, key = data.decode("utf-8").partition("\n")
    except UnicodeDecodeError:
        return None
    return (kind, key) if sep and kind else None


def _deliver(handler: Callable[[str, str], None], kind: str, key: str) -> None:
    try:
        handler(kind, key)
    except Exception:
        logger.exception("redis revocations: the handler failed on a %r message", kind)
