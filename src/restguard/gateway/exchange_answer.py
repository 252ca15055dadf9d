"""The answer side of an exchange (``gateway/exchange.py``): fed by the upstream connection
(``gateway/upstream.py``'s ``ResponseSink``), written to the client, with back-pressure both
ways, and the upstream connection released or dropped when the answer ends.

Framing is an invariant, not a list of cases: the upstream connection goes back to the pool only
when the body bytes written match the framing declared in the head sent (exactly
``Content-Length`` bytes, or a terminated chunked body) and the answer was complete; anything
else closes it, so no byte of one request can ever be read as part of another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from restguard.errors import AuthError, UpstreamError, UpstreamTimeout
from restguard.gateway.headers import client_head

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Coroutine

    from restguard.gateway.http1 import ClientConnection
    from restguard.gateway.request_body import RequestBody
    from restguard.gateway.server import Gateway
    from restguard.gateway.upstream import UpstreamConnection
    from restguard.guard import Decision

# RFC 9110 §9.2.2: "A proxy MUST NOT automatically retry non-idempotent requests." restguard
# retries only safe methods, and sends the others only on connections idle for less than
# ``FRESH_ENOUGH`` s (upstreams close idle keep-alive connections after 2 to 5 s by default).
RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS"})
FRESH_ENOUGH = 1.0


class ExchangeAnswer:
    """One request's answer, from the upstream connection on. A base of ``Exchange``."""

    # The answer's own state (set in ``Exchange.__init__``, or class defaults there).
    _head_sent: bool  # the client's answer has started
    _chunked_out: bool  # the answer is sent to the client chunked
    _close_after: bool  # the answer ends the client connection
    _retried: bool
    _retry: asyncio.Task[None] | None
    _forwarded_at: float
    _decision: Decision | None
    _status: int  # the status the client was sent
    _outcome: str  # what became of the upstream exchange (audit's "upstream")

    # What it reads of the rest of the exchange (``gateway/exchange.py``,
    # ``gateway/exchange_body.py``).
    client: ClientConnection
    gw: Gateway
    method: str
    http_version: str
    request_id: bytes
    body: RequestBody
    body_complete: bool
    finished: bool
    _discard: bool
    _upstream: UpstreamConnection | None
    _forwarding: bool

    if TYPE_CHECKING:  # the exchange's own (declared here for the type checker)

        async def _forward(self, *, fresh: bool) -> None: ...

        async def _guarded(self, work: Coroutine[object, object, None]) -> None: ...

        def _abort_upstream(self) -> None: ...

        def _respond_error(self, err: AuthError) -> None: ...

        def _finish(self) -> None: ...

        def _connection_header(self) -> bytes: ...

    # --- the answer, fed by the upstream connection ------------------------------------------
    def response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None:
        if self.finished:
            return
        out, framing = client_head(
            status,
            reason,
            headers,
            no_body=self.method == "HEAD",
            http_11=self.http_version == "1.1",
            request_id=self.request_id,
            rate=self._decision.rate_headers if self._decision is not None else (),
        )
        if framing == "chunked":
            self._chunked_out = True
        elif framing == "close":
            self._close_after = True
        out.append(self._connection_header())
        out.append(b"\r\n")
        self._head_sent = True
        self._status = status
        self.client.write(b"".join(out))

    def response_body(self, data: bytes) -> None:
        if self.finished or not data:
            return
        if self._chunked_out:
            self.client.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.client.write(data)

    def response_done(self) -> None:
        if self.finished:
            return
        if self._chunked_out:
            self.client.write(b"0\r\n\r\n")
        reusable = self.body_complete and not self._discard and self.body.framing_kept()
        if self._upstream is not None and reusable:
            self.gw.pool.release(self._upstream)
            self._upstream = None
        else:  # the body was not all sent (an early answer, a refusal): never reused
            self._abort_upstream()
        self.gw.observe_upstream(self.gw.loop.time() - self._forwarded_at)
        self._outcome = "ok"
        self._finish()

    def upstream_failed(self, reason: str) -> None:
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            self.gw.pool.forget(upstream)
        if self.finished:
            return
        if not self._head_sent:
            if (
                upstream is not None
                and upstream.reused
                and not upstream.received_any
                and not self._retried
                and not self.body.seen
                and self.method in RETRYABLE
            ):
                # A reused keep-alive connection the upstream had already closed: one retry on
                # a fresh connection, for a safe method without a body (RFC 9110 §9.2.2).
                self._retried = True
                self._forwarding = False
                # (the loop keeps only weak references to tasks: hold this one)
                self._retry = self.gw.loop.create_task(self._guarded(self._forward(fresh=True)))
                return
            self._outcome = "error"
            self._respond_error(UpstreamError(debug=reason))
        else:  # the answer was cut short: the client must see a broken connection too
            self._outcome = "cut"
            self._close_after = True
            self._finish()

    def flush_output(self) -> None:
        """End of one upstream read: send what it produced to the client in one write."""
        self.client.flush()

    def upstream_writable(self, writable: bool) -> None:
        if writable:
            self.client.resume("upstream")
        else:
            self.client.pause("upstream")

    def client_writable(self, writable: bool) -> None:
        if self._upstream is not None:
            if writable:
                self._upstream.resume_reading()
            else:
                self._upstream.pause_reading()

    def upstream_timed_out(self, reason: str) -> None:
        """The upstream's answer is late (its connection's clock; see gateway/upstream.py)."""
        if self.finished:
            return
        self._abort_upstream()
        if self._head_sent:  # cut, never spliced
            self._outcome = "cut"
            self._close_after = True
            self._finish()
        else:
            self._outcome = "timeout"
            self._respond_error(UpstreamTimeout(debug=reason))
