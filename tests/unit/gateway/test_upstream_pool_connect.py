"""Opening an upstream connection: within ``connect_timeout``, and a cancellation (the client
went away, the server stops) always ends the wait, whenever it comes, also in the turn the
connection opens. (3.11's ``asyncio.wait_for`` returned the connection and dropped such a
cancellation; the pool now waits with ``asyncio.timeout``.) Nothing is left open or counted
busy either way. On asyncio and on uvloop, against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
import uvloop

from restguard.gateway.upstream_pool import UpstreamPool

#: How many loop turns after the connect starts the cancellation comes (0 to this): a
#: connection to 127.0.0.1 opens within a few turns.
TURNS = 12


@pytest.fixture
def stalled() -> Iterator[int]:
    """A port that never completes a connection: a listener whose accept queue is full (Linux
    drops the SYNs of any further connection, so connecting waits until the timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for s in (*fillers, listener):
            s.close()


def _run(loop_kind: str, main: object) -> object:
    if loop_kind == "uvloop":
        return uvloop.run(main)  # type: ignore[arg-type]
    return asyncio.run(main)  # type: ignore[arg-type]


LOOPS = ["asyncio", "uvloop"]


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_stalled_upstream_times_out_and_leaves_nothing_busy(loop_kind: str, stalled: int) -> None:
    async def main() -> tuple[float, int, bool]:
        pool = UpstreamPool("127.0.0.1", stalled, connect_timeout=0.3, size=4)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await pool.acquire()
        took = loop.time() - started
        probed = await pool.probe()
        return took, len(pool._busy), probed

    took, busy, probed = _run(loop_kind, main())  # type: ignore[misc]
    assert 0.25 <= took < 2.0
    assert busy == 0
    assert probed is False


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_cancel_ends_the_connect_at_any_turn_and_nothing_stays_open(loop_kind: str) -> None:
    async def main() -> tuple[list[int], int, int]:
        opened: list[asyncio.StreamWriter] = []
        closed = asyncio.Event()
        ended = 0

        async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal ended
            opened.append(writer)
            await reader.read()  # until the gateway side closes it
            ended += 1
            closed.set()
            writer.close()

        server = await asyncio.start_server(upstream, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = UpstreamPool("127.0.0.1", port, connect_timeout=5, size=64)
        lost, got = [], 0
        for turns in range(TURNS):
            task = asyncio.get_running_loop().create_task(pool.acquire())
            for _ in range(turns):
                await asyncio.sleep(0)
            if task.cancel():  # (False: it had its connection already)
                try:
                    await task
                    lost.append(turns)  # a connection came back although cancelled
                except asyncio.CancelledError:
                    pass
            if task.done() and not task.cancelled() and task.exception() is None:
                got += 1
                task.result().close()
                pool._busy.discard(task.result())
        for _ in range(500):  # every connection the upstream saw is closed again (5 s at most)
            if ended >= len(opened):
                break
            await asyncio.sleep(0.01)
        server.close()
        return lost, len(opened) - ended, len(pool._busy)

    lost, still_open, busy = _run(loop_kind, main())  # type: ignore[misc]
    assert lost == []
    assert still_open == 0
    assert busy == 0
