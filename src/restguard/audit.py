"""Decision events: one per request decision, never carrying a secret.

The sink is a port (any callable taking a DecisionEvent); ``JsonLinesAudit`` appends one JSON
object per line to a file, which ``restguard audit [--follow]`` reads.
"""

from __future__ import annotations

import json
import json.encoder
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from restguard.clock import Clock
from restguard.errors import AuthError, BackendUnavailable
from restguard.tokens import redact
from restguard.types import RequestView

_log = logging.getLogger("restguard.audit")
WARN_EVERY = 60.0  # seconds between two log lines about a failing audit file


class DecisionEvent(NamedTuple):
    """One decision (immutable: a NamedTuple, two per request on the gateway, where a frozen
    dataclass's constructor cost ~3 us for these 13 fields)."""

    time: str
    method: str
    path: str
    route: str | None
    outcome: str  # "allow" | "deny"
    status: int
    error: str | None
    auth_method: str | None
    credential_id: str | None
    client: str
    detail: str | None
    duration_ms: float
    # What became of an allowed request at the gateway: "ok" (the upstream answered), "error"
    # (unreachable or failed: 502, or 503 with no connection free), "timeout" (504), "cut" (the
    # answer broke off), "aborted" (restguard stopped it: a refused or broken request body, the
    # shutdown grace over), "client_gone" (status 499 before an answer, as nginx logs it),
    # "not_forwarded" (refused after the decision, before forwarding), "pending" (a required
    # log's line, written before forwarding); None for denials and where there is no upstream.
    upstream: str | None = None
    # The request's id (``X-Request-Id``), as the upstream received it; None where there was
    # none (a request refused before it could be viewed).
    request_id: str | None = None

    def finished(self, status: int, upstream: str) -> DecisionEvent:
        """This event with the status sent and the upstream outcome (a plain constructor call:
        ``dataclasses.replace`` cost ~3 us on the gateway's hot path)."""
        return DecisionEvent(
            self.time,
            self.method,
            self.path,
            self.route,
            self.outcome,
            status,
            self.error,
            self.auth_method,
            self.credential_id,
            self.client,
            self.detail,
            self.duration_ms,
            upstream,
            self.request_id,
        )

    def to_json(self) -> str:
        """One compact JSON object, byte for byte what ``json.dumps(asdict(event),
        separators=(",", ":"))`` gives, built with the json module's C string encoder
        (the generic encoder cost ~5 us per request on the gateway's hot path; a helper call
        per field another ~0.5 us)."""
        e = _encode_string
        route, error, auth_method = self.route, self.error, self.auth_method
        credential_id, detail = self.credential_id, self.detail
        upstream, request_id = self.upstream, self.request_id
        return (
            f'{{"time":{e(self.time)},"method":{e(self.method)},"path":{e(self.path)},'
            f'"route":{"null" if route is None else e(route)},"outcome":{e(self.outcome)},'
            f'"status":{self.status:d},"error":{"null" if error is None else e(error)},'
            f'"auth_method":{"null" if auth_method is None else e(auth_method)},'
            f'"credential_id":{"null" if credential_id is None else e(credential_id)},'
            f'"client":{e(self.client)},"detail":{"null" if detail is None else e(detail)},'
            f'"duration_ms":{float(self.duration_ms)!r},'
            f'"upstream":{"null" if upstream is None else e(upstream)},'
            f'"request_id":{"null" if request_id is None else e(request_id)}}}'
        )


_encode_string: Callable[[str], str] = (
    json.encoder.c_encode_basestring_ascii or json.encoder.py_encode_basestring_ascii  # type: ignore[attr-defined]
)

EventSink = Callable[[DecisionEvent], None]


def decision_event(
    clock: Clock,
    view: RequestView,
    started: float,
    *,
    route: str | None,
    status: int,
    error: str | None,
    auth_method: str | None,
    credential_id: str | None,
    detail: str | None,
) -> DecisionEvent:
    """The event of one decision about ``view``, begun at ``started`` (``clock.monotonic``).
    The path is redacted here; ``detail`` must be already. (Positional: keyword arguments
    to a NamedTuple cost ~0.4 us more per event.)"""
    return DecisionEvent(
        timestamp(clock.now()),
        view.method,
        redact(view.path),
        route,
        "allow" if status < 400 else "deny",
        status,
        error,
        auth_method,
        credential_id,
        view.client,
        detail,
        round((clock.monotonic() - started) * 1000, 3),
        None,
        view.request_id or None,
    )


_second: tuple[tuple[int, ...], str] = ((), "")  # (one tuple: read and replaced whole)


def timestamp(now: datetime) -> str:
    """``now.isoformat(timespec="milliseconds")``; for UTC times, the text up to the second is
    made once per second (isoformat cost ~0.9 us per event, this ~0.3)."""
    global _second
    if now.tzinfo is not UTC:
        return now.isoformat(timespec="milliseconds")
    key = (now.second, now.minute, now.hour, now.day, now.month, now.year)
    second = _second
    if key != second[0]:
        second = _second = (key, now.isoformat(timespec="seconds")[:-6])
    return f"{second[1]}.{now.microsecond // 1000:03d}+00:00"


def send(event: DecisionEvent, sinks: Sequence[EventSink]) -> None:
    """Give ``event`` to every sink, even after one failed; then raise the first failure (a
    required audit log that cannot write: 503)."""
    failure: AuthError | None = None
    for sink in sinks:
        try:
            sink(event)
        except AuthError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


class JsonLinesAudit:
    """Appends events to a file, one JSON line each (created with mode 0600).

    Lines are written in batches: when ``flush_interval`` seconds have passed since the last
    write, on ``flush()`` (the server calls it on that interval when idle) and on ``close()``.
    One write per request cost ~8 us of CPU on the gateway's hot path (bench/README.md).

    When the file cannot be written (a full disk, a lost mount), the policy is explicit:

    * by default restguard keeps serving: the lines are dropped and counted (``dropped``, metric
      ``restguard_audit_dropped_total``), ``healthy`` turns false (``/readyz`` names ``audit``)
      and one line per minute goes to the server log;
    * with ``required`` (``[audit] required = true``) every decision is written before it takes
      effect, and one that cannot be written is refused: ``BackendUnavailable``, 503, fail closed.

    ``reopen()`` starts a new file at the same path (after logrotate renamed the old one).
    """

    def __init__(self, path: Path, *, flush_interval: float = 0.25, required: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.required = required
        self._fd = self._open()
        self._pending: list[str] = []
        self._interval = flush_interval
        self._last = time.monotonic()
        self._torn = False  # a failed write may have left half a line: end it first
        self._warned = -math.inf
        self.dropped = 0
        self.healthy = True

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def __call__(self, event: DecisionEvent) -> None:
        self._pending.append(event.to_json())
        if self.required:
            if not self.flush():
                raise BackendUnavailable(
                    "The decision could not be recorded.", debug="audit log write failed"
                )
        elif time.monotonic() - self._last >= self._interval:
            self.flush()

    def flush(self) -> bool:
        """Write what is pending; False (and the lines counted as dropped) when it fails."""
        self._last = time.monotonic()
        if not self._pending:
            return True
        lines = len(self._pending)
        data = ("\n".join(self._pending) + "\n").encode("utf-8")
        self._pending.clear()
        if self._torn:
            data = b"\n" + data
        try:
            while data:  # O_APPEND: each write lands at the end, whole lines first
                written = os.write(self._fd, data)
                self._torn = True
                data = data[written:]
        except OSError as exc:
            self.dropped += lines
            self.healthy = False
            if time.monotonic() - self._warned >= WARN_EVERY:
                self._warned = time.monotonic()
                _log.error(
                    "audit log %s cannot be written (%s): %d decision line(s) dropped so far%s",
                    self.path,
                    exc.strerror or exc,
                    self.dropped,
                    "; decisions are refused" if self.required else "",
                )
            return False
        self._torn = False
        self.healthy = True
        return True

    def probe(self) -> None:
        """While failing with nothing to write, try a blank line (readers skip it): readiness
        comes back as soon as the file takes writes again, without waiting for traffic."""
        if self.healthy or self._pending:
            return
        try:
            os.write(self._fd, b"\n")
        except OSError:
            return
        self._torn = False
        self.healthy = True

    def reopen(self) -> None:
        """Write to a fresh file at ``path`` from now on (logrotate's rename-then-signal)."""
        self.flush()
        try:
            fd = self._open()
        except OSError as exc:
            _log.error("audit log %s cannot be reopened: %s", self.path, exc)
            return
        os.close(self._fd)
        self._fd, self._torn = fd, False

    def close(self) -> None:
        self.flush()
        os.close(self._fd)
