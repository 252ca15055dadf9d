"""A request body's accounting on its way through the gateway: what arrived, what may pass, what
was written to the upstream, and whether that matches the framing the upstream was told.

The framing invariant lives here (``framing_kept``): an upstream connection is reused only when
the body bytes written equal the declared ``Content-Length``, or the chunked body was
terminated. The cap (``max_body_bytes``), the ``_method`` gate of bodies that upstreams read as
parameters (``wire.forms``) and the slow-body clock (``time_left``) apply to every byte on the
way in.
"""

from __future__ import annotations

from collections.abc import Sequence

from restguard.errors import AuthError, PayloadTooLarge
from restguard.wire.forms import Gate, gate_for

_LAST_CHUNK = b"0\r\n\r\n"


class RequestBody:
    """One request's body. ``take`` and ``finish`` raise AuthError when it must not go on."""

    __slots__ = (
        "_cap",
        "_gate",
        "_window_seen",
        "chunked",
        "content_length",
        "error",
        "expected",
        "seen",
        "sent",
        "started",
        "terminated",
    )

    def __init__(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        *,
        content_length: int | None,
        chunked: bool,
        max_bytes: int,
        started: float,
    ) -> None:
        self.content_length = content_length
        self.chunked = chunked
        self.expected = bool(content_length) or chunked
        self.seen = 0  # bytes received from the client
        self.sent = 0  # bytes written to the upstream (framing excluded)
        self.terminated = False  # the last chunk was written
        self.started = started  # the current slow-body window's start (reading time)
        self._window_seen = 0
        self.error: AuthError | None = None  # a Content-Type that makes the body ambiguous
        self._gate: Gate | None = None
        self._cap = max_bytes
        if self.expected:
            try:
                self._gate = gate_for(headers)
            except AuthError as err:
                self.error = err

    def take(self, data: bytes) -> bytes:
        """Count ``data``; return what may pass on now (the gate may hold some back)."""
        self.seen += len(data)
        if self.seen > self._cap:
            raise PayloadTooLarge(debug="body over the limit")
        return self._gate.feed(data) if self._gate is not None else data

    def limit(self, max_bytes: int) -> None:
        """Lower the cap to ``max_bytes`` (an own endpoint's ``body_limit``); ``take`` refuses
        the first byte beyond it."""
        self._cap = min(self._cap, max_bytes)

    def finish(self) -> bytes:
        """The body ended: what the gate still held back (its last byte, or a line)."""
        return self._gate.finish() if self._gate is not None else b""

    def encode(self, data: bytes) -> bytes:
        """``data`` as written to the upstream (a chunk when the body is chunked), counted."""
        self.sent += len(data)
        return b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data

    def last_chunk(self) -> bytes:
        self.terminated = True
        return _LAST_CHUNK if self.chunked else b""

    def framing_kept(self) -> bool:
        """The bytes written match the framing the upstream was told (the invariant)."""
        if self.chunked:
            return self.terminated
        return self.sent == (self.content_length or 0)

    def time_left(self, now: float, timeout: float, min_rate: int) -> float:
        """Reading time left before this body is too slow: every ``timeout`` of reading time
        must bring ``min_rate`` bytes/s on average, in a window of its own (bytes sent early
        buy no credit for a trickle later: the front-loaded slowloris)."""
        while True:
            end = self.started + timeout
            if now < end:
                return end - now
            if self.seen - self._window_seen < min_rate * timeout:
                return 0.0
            self.started, self._window_seen = end, self.seen


# What a request without a body shares (never fed, never written: nothing of it changes).
NO_BODY = RequestBody((), content_length=None, chunked=False, max_bytes=0, started=0.0)
