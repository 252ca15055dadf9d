"""A request body's accounting on its way through the gateway: what arrived, what may pass, what
was written to the upstream, and whether that matches the framing the upstream was told.

The framing invariant lives here (``framing_kept``): an upstream connection is reused only when
the body bytes written equal the declared ``Content-Length``, or the chunked body was
terminated. The caps (``max_body_bytes``; ``FORM_BODY_CAP`` for urlencoded bodies, which are
read whole before the decision), the multipart ``_method`` gate (``wire.forms``) and the
slow-body clock (``time_left``) are applied to every byte on the way in.
"""

from __future__ import annotations

from collections.abc import Sequence

from restguard.errors import AuthError, PayloadTooLarge
from restguard.wire.forms import (
    FORM_BODY_CAP,
    MULTIPART,
    URLENCODED,
    MultipartGate,
    content_type,
)

_LAST_CHUNK = b"0\r\n\r\n"


class RequestBody:
    """One request's body. ``take`` and ``finish`` raise AuthError when it must not go on."""

    __slots__ = (
        "_cap",
        "_gate",
        "chunked",
        "content_length",
        "error",
        "expected",
        "form",
        "last",
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
        self.started = self.last = started
        self.form = False
        self.error: AuthError | None = None  # a Content-Type that makes the body ambiguous
        self._gate: MultipartGate | None = None
        self._cap = max_bytes
        if self.expected:
            try:
                kind, boundary = content_type(headers)
            except AuthError as err:
                self.error = err
                return
            self.form = kind == URLENCODED
            if self.form:
                self._cap = min(max_bytes, FORM_BODY_CAP)
            elif kind == MULTIPART:
                self._gate = MultipartGate(boundary)

    def take(self, data: bytes, now: float) -> bytes:
        """Count ``data`` (arrived at reading time ``now``); return what may pass on now."""
        self.seen += len(data)
        self.last = now
        if self.seen > self._cap:
            raise PayloadTooLarge(debug="body over the limit")
        return self._gate.feed(data) if self._gate is not None else data

    def finish(self) -> bytes:
        """The body ended: what the multipart gate still held back."""
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
        """Reading time left before this body is too slow: at most ``timeout`` between two
        reads, and ``min_rate`` bytes/s on average after the first ``timeout`` (Apache
        mod_reqtimeout's model)."""
        gap = self.last + timeout
        rate = self.started + timeout + self.seen / min_rate
        return min(gap, rate) - now


# What a request without a body shares (never fed, never written: nothing of it changes).
NO_BODY = RequestBody((), content_length=None, chunked=False, max_bytes=0, started=0.0)
