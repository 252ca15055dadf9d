"""Decisions over time for the console's dashboard, read off the metrics without touching the
hot path: every ``SAMPLE_SECONDS`` the admin process notes the decision totals (every
worker's), and the dashboard shows the differences per minute for the last hour."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

SAMPLE_SECONDS = 10.0
MINUTES = 60

Totals = dict[tuple[str, str, int], int]


class Minute(NamedTuple):
    start: float  # epoch seconds
    allowed: int
    denied: int


class Timeline:
    """Samples of ``read()`` (decision totals) over the last ``MINUTES`` minutes."""

    def __init__(self, read: Callable[[], Totals], now: Callable[[], float] = time.time) -> None:
        self.read, self.now = read, now
        self.samples: deque[tuple[float, int, int]] = deque(
            maxlen=int(MINUTES * 60 / SAMPLE_SECONDS) + 2
        )

    def sample(self) -> None:
        allowed = denied = 0
        for (_, outcome, _), count in self.read().items():
            if outcome == "allow":
                allowed += count
            else:
                denied += count
        self.samples.append((self.now(), allowed, denied))

    def minutes(self) -> list[Minute]:
        """The last ``MINUTES`` minutes, oldest first: decisions allowed and denied in each
        (what happened between two samples counts in the later sample's minute)."""
        self.sample()
        last = int(self.now() // 60) * 60
        first = last - (MINUTES - 1) * 60
        allowed = dict.fromkeys(range(MINUTES), 0)
        denied = dict.fromkeys(range(MINUTES), 0)
        samples = list(self.samples)
        for (_, a0, d0), (t1, a1, d1) in itertools.pairwise(samples):
            slot = int((t1 - first) // 60)
            if 0 <= slot < MINUTES:
                allowed[slot] += max(a1 - a0, 0)
                denied[slot] += max(d1 - d0, 0)
        return [Minute(first + i * 60, allowed[i], denied[i]) for i in range(MINUTES)]

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)
