"""The Clock port: the core never reads the time itself. And ``wait_for_event``, the one way a
background loop sleeps until it is woken or its interval passes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic clock, for intervals."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FixedClock:
    """A clock that only moves when told to; for tests."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self._now += timedelta(seconds=seconds)
        self._mono += seconds


async def wait_for_event(event: asyncio.Event, seconds: float) -> None:
    """Return when ``event`` is set or ``seconds`` have passed, whichever comes first; a
    cancellation is always raised. (``asyncio.wait_for(event.wait(), seconds)`` on Python 3.11
    drops a cancellation that arrives as the event is set, gh-86296: a ``while True`` loop
    around it then never ends, and whoever awaits its cancelled task waits forever.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
