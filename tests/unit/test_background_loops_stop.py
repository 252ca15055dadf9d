"""A background loop that sleeps until it is woken stops when it is cancelled, whenever the
cancellation comes: also in the same turn as a wake-up. (3.11's ``asyncio.wait_for`` dropped a
cancellation that arrived as the event was set, so the loop ran on and a teardown awaiting its
task hung the whole test run: ``clock.wait_for_event`` is the one sleep they use now.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import pytest
import uvloop

from restguard.clock import SystemClock, wait_for_event
from restguard.credentials.jwt_issuers import IssuerDirectory
from restguard.credentials.oauth2 import RevocationList

#: How many loop turns after the wake-up the cancellation comes (0 to this): the window
#: in which ``wait_for`` lost it was one to three turns wide.
TURNS = 8


class _Revoked:
    async def active(self, now: datetime) -> list[str]:
        return []


class _Issuers:
    async def list(self) -> list[object]:
        return []


async def _loop_over(event: asyncio.Event) -> None:
    while True:
        await wait_for_event(event, 30)
        event.clear()


async def _cancelled_around_a_wake(
    start: Callable[[], Awaitable[tuple[asyncio.Task[None], Callable[[], None]]]],
) -> list[int]:
    """The turns after a wake-up at which a cancelled loop did not stop within a second."""
    lost = []
    for turns in range(TURNS):
        task, wake = await start()
        for _ in range(3):
            await asyncio.sleep(0)  # (asleep in its wait)
        wake()
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=1.0)
        if not done:
            lost.append(turns)
            task.cancel()  # (end it for good: asleep again, it takes this one)
            await asyncio.wait([task], timeout=1.0)
    return lost


async def _helper() -> tuple[asyncio.Task[None], Callable[[], None]]:
    event = asyncio.Event()
    return asyncio.get_running_loop().create_task(_loop_over(event)), event.set


async def _revocations() -> tuple[asyncio.Task[None], Callable[[], None]]:
    revoked = RevocationList(_Revoked(), SystemClock())  # type: ignore[arg-type]
    await revoked.start()
    assert revoked._task is not None
    return revoked._task, revoked.drop_cached


async def _issuers() -> tuple[asyncio.Task[None], Callable[[], None]]:
    directory = IssuerDirectory(_Issuers(), lambda issuers: None, SystemClock())  # type: ignore[arg-type]
    await directory.start()
    assert directory._task is not None
    return directory._task, directory.drop_cached


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize(
    "start", [_helper, _revocations, _issuers], ids=["helper", "revocations", "issuers"]
)
def test_a_cancelled_loop_stops_even_as_it_is_woken(loop: str, start: object) -> None:
    run = uvloop.run if loop == "uvloop" else asyncio.run
    assert run(_cancelled_around_a_wake(start)) == []  # type: ignore[arg-type]


def test_the_wait_returns_on_the_event_and_on_the_deadline() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        loop.call_later(0.05, event.set)
        started = loop.time()
        await wait_for_event(event, 30)
        woken = loop.time() - started
        started = loop.time()
        await wait_for_event(asyncio.Event(), 0.05)
        return woken, loop.time() - started

    woken, timed_out = asyncio.run(main())
    assert woken < 5 and 0.04 <= timed_out < 5
