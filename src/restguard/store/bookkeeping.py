"""Bookkeeping writes (last-used times) off the decision path: coalesced, batched, droppable.

Nothing on the decision path waits for bookkeeping (ARCHITECTURE principle 14): ``record`` only
notes a time in memory and returns. A background task writes what was noted ``interval`` seconds
later, all of it in one store write. A write that fails or runs past the store's deadline (a
locked SQLite, a partitioned PostgreSQL) drops its batch, and ``dropped`` counts what was lost
(metric ``restguard_bookkeeping_dropped_total``): a last-used time is worth less than a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from restguard.errors import BackendUnavailable
from restguard.store.errors import StoreError

_log = logging.getLogger("restguard.bookkeeping")
MAX_PENDING = 100_000


class UsageBook:
    """Last-used times per credential id, written in batches by ``write``."""

    def __init__(
        self,
        write: Callable[[Mapping[str, datetime]], Awaitable[None]],
        *,
        interval: float = 1.0,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._write = write
        self.interval = interval
        self.max_pending = max_pending
        self.pending: dict[str, datetime] = {}
        self.written = 0
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def record(self, credential_id: str, at: datetime) -> None:
        """Note a use (from the event loop); never waits, never raises."""
        before = self.pending.get(credential_id)
        if before is not None:
            if at > before:
                self.pending[credential_id] = at
            return
        if len(self.pending) >= self.max_pending:
            self.dropped += 1
            return
        self.pending[credential_id] = at
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        while True:  # (uses noted while a write was under way go in the next one)
            await asyncio.sleep(self.interval)
            await self.flush()
            if not self.pending:
                return

    async def flush(self) -> None:
        """Write what is pending now, in one write; drop it if the store fails."""
        batch, self.pending = self.pending, {}
        if not batch:
            return
        try:
            await self._write(batch)
        except (BackendUnavailable, StoreError) as exc:
            self.dropped += len(batch)
            _log.warning("dropped %d last-used time(s): %s", len(batch), getattr(exc, "debug", exc))
        else:
            self.written += len(batch)

    def close(self) -> None:
        """Stop; what is still pending is dropped (``await flush()`` first to keep it)."""
        if self._task is not None:
            with contextlib.suppress(RuntimeError):  # its loop may be closed already
                self._task.cancel()
        self.dropped += len(self.pending)
        self.pending = {}
