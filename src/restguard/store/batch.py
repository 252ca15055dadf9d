"""``Coalescer``: concurrent calls of one kind, sent to a backend as one call.

Every hot-path backend call (a rate-limit hit, a nonce) is one request's question; under load
many requests ask at once. Sent one by one, each pays a round trip: for Redis the client's
Python, two syscalls and a wake-up, ~90-180 us of gateway CPU here (bench/README.md); for the
database a worker thread and a write transaction. A ``Coalescer`` queues the questions and keeps
one call in flight: whatever queued while it was out goes next, as one call that answers each
in order. The backends decide a batch exactly as the same calls one at a time: a Redis Lua
script runs atomically and in order
(https://redis.io/docs/latest/develop/interact/programmability/eval-intro/), and a database
batch is one transaction (``store/sql/nonce_batches.py``), so limits and replay checks stay
exact across instances.

Deadlines: a call fails with ``BackendUnavailable`` no later than ``timeout`` after it was
submitted (its batch is sent with the earliest deadline among its calls; a call waiting behind
the batch in flight is sent with what remains of its own). A call whose caller went away before
its batch was sent is left out of it: nothing is counted for it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from restguard.errors import BackendUnavailable

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
T = TypeVar("T")

#: At most this many calls in one batch: Redis runs a script alone, so one batch must stay
#: short (a GCRA step is ~1-2 us of Redis's time); a database transaction likewise.
MAX_BATCH = 256


async def within(
    backend: str,
    operation: str,
    call: Callable[[], Awaitable[T]],
    deadline: float | None,
    timeout: float,
) -> T:
    """``call()`` by ``deadline`` (a loop time; None: ``timeout`` from now). Any failure is
    ``BackendUnavailable`` naming the backend, the operation and the exception's class, never
    its text (a driver's message may hold a URL with a password)."""
    if deadline is None:
        deadline = asyncio.get_running_loop().time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            return await call()
    except BackendUnavailable:
        raise
    except Exception as exc:  # (the deadline, a driver error, a reply parsed wrong, a bug)
        raise BackendUnavailable(debug=f"{backend} {operation}: {type(exc).__name__}") from None


class Lane(Protocol):
    """How a batch reaches its backend: ``run`` awaits ``call()`` by ``deadline`` (a loop
    time) and raises ``BackendUnavailable`` on any failure; ``timeout`` is each call's time."""

    timeout: float

    async def run(
        self, operation: str, call: Callable[[], Awaitable[T]], *, deadline: float | None = None
    ) -> T: ...


#: ``send(items)`` -> one result per item, in order (it validates the reply and raises
#: ``BackendUnavailable`` for a reply of another shape).
Send = Callable[[Sequence[ItemT]], Awaitable[list[ResultT]]]


class Coalescer(Generic[ItemT, ResultT]):
    """One batch in flight at a time; the calls that queue meanwhile form the next one."""

    def __init__(
        self, link: Lane, operation: str, send: Send[ItemT, ResultT], *, max_batch: int = MAX_BATCH
    ) -> None:
        self._link = link
        self._operation = operation
        self._send = send
        self._max_batch = max_batch
        self._queue: deque[tuple[ItemT, asyncio.Future[ResultT], float]] = deque()
        self._sender: asyncio.Task[None] | None = None

    def submit(self, item: ItemT) -> asyncio.Future[ResultT]:
        """``item`` queued now; the future gives its answer (``BackendUnavailable`` if the
        backend does not give it in time). Cancelling the future leaves the item out of any
        batch not yet sent. (A plain function: one coroutine less per call on the hot path.)"""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        self._queue.append((item, future, loop.time() + self._link.timeout))
        if self._sender is None:
            self._sender = loop.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        batch: list[tuple[ItemT, asyncio.Future[ResultT], float]] = []
        try:
            while self._queue:
                batch = []
                while self._queue and len(batch) < self._max_batch:
                    entry = self._queue.popleft()
                    if not entry[1].done():  # (its caller was cancelled: not sent, not counted)
                        batch.append(entry)
                if not batch:
                    continue
                try:
                    results = await self._link.run(
                        self._operation,
                        self._call([item for item, _, _ in batch]),
                        deadline=batch[0][2],  # the oldest call's (calls queue in order)
                    )
                except BackendUnavailable as exc:
                    self._fail(batch, exc)
                    continue
                for (_, future, _), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                batch = []
        except BaseException as exc:  # cancelled (shutdown) or a bug: no caller waits forever
            failure = BackendUnavailable(debug=f"{self._operation}: {type(exc).__name__}")
            self._fail(batch, failure)
            self._fail(self._queue, failure)
            self._queue.clear()
            raise
        finally:
            self._sender = None

    def _call(self, items: list[ItemT]) -> Callable[[], Awaitable[list[ResultT]]]:
        return lambda: self._send(items)

    @staticmethod
    def _fail(
        entries: Iterable[tuple[ItemT, asyncio.Future[ResultT], float]], exc: BackendUnavailable
    ) -> None:
        for _, future, _ in entries:
            if not future.done():  # each caller its own exception (tracebacks are per raise)
                failure = BackendUnavailable(debug=exc.debug)
                failure.__suppress_context__ = True  # (as ``from None``: no driver error chained)
                future.set_exception(failure)
