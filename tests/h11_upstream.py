"""A strict keep-alive upstream built on h11, for the framing tests.

``H11Upstream`` serves HTTP/1.1 on 127.0.0.1 (one thread per connection, blocking sockets) and
records, per connection, every request h11 parses from the bytes it received: method, target,
headers and the complete body (``Parsed.complete`` says whether the body's framing ended, or the
connection closed in the middle of it). It also keeps every byte received per connection.

Whatever a correct gateway never makes it see is recorded in ``violations``:

* any h11 protocol error (a malformed head, bad chunking, a connection closed mid-head ...);
* bytes of a next request arriving before the answer to the current one was sent (the gateway
  does not pipeline to its upstream: such bytes can only be framing gone wrong);
* an error while answering.

Each answer is ``200`` with ``Content-Length`` and the body ``b"ok " + target`` (none for
HEAD), so a client can tell which request an answer belongs to. A request is answered after its
body was read completely, or, when ``early(request)`` is true, as soon as its head is parsed,
before its body is read (what most frameworks do for GET: the app answers without touching
the body; the server then reads and discards the rest per its framing, as uvicorn does). By
default a request is answered early when it carries ``X-Upstream-Answer: early``.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

EARLY_HEADER = b"x-upstream-answer"


@dataclass
class Parsed:
    """One request as h11 parsed it on one upstream connection."""

    connection: int
    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    complete: bool = False  # the body's framing ended (EndOfMessage)
    answered_early: bool = False
    seq: int = 0  # arrival order over all connections

    def header(self, name: str) -> bytes | None:
        values = [v for k, v in self.headers if k == name.lower().encode()]
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None


@dataclass
class UpstreamConnection:
    """What one connection carried: raw bytes, parsed requests, violations."""

    id: int
    raw: bytearray = field(default_factory=bytearray)
    requests: list[Parsed] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    closed_by: str = ""  # "gateway" or "upstream" (``close_connections``)


def answer_early_on_header(request: Parsed) -> bool:
    return request.header(EARLY_HEADER.decode()) == b"early"


class H11Upstream:
    """A strict HTTP/1.1 keep-alive upstream on 127.0.0.1 that records what it parses."""

    def __init__(self, early: Callable[[Parsed], bool] = answer_early_on_header) -> None:
        self.early = early
        self.connections: list[UpstreamConnection] = []
        self._lock = threading.Lock()
        self._open: dict[int, tuple[socket.socket, threading.Thread]] = {}
        self._closing: set[int] = set()
        self._last_activity = time.monotonic()
        self._seq = itertools.count()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- what was seen -------------------------------------------------------------------------
    @property
    def requests(self) -> list[Parsed]:
        """Every parsed request over all connections, in arrival order."""
        with self._lock:
            return sorted((r for c in self.connections for r in c.requests), key=lambda r: r.seq)

    @property
    def violations(self) -> list[str]:
        with self._lock:
            return [
                f"upstream connection {c.id}: {v}" for c in self.connections for v in c.violations
            ]

    def clear(self) -> None:
        """Forget what was recorded (open connections keep their parser state)."""
        with self._lock:
            for conn in self.connections:
                conn.raw.clear()
                conn.requests.clear()
                conn.violations.clear()

    def settle(self, quiet: float = 0.05, timeout: float = 3.0) -> None:
        """Wait until no byte arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            idle = time.monotonic() - self._last_activity
            if idle >= quiet:
                return
            time.sleep(quiet - idle)

    def close_connections(self, timeout: float = 3.0) -> None:
        """Close every open connection from this side and wait until each is recorded as closed
        (a test isolates its examples with this: the gateway's pool holds nothing afterwards)."""
        with self._lock:
            open_now = list(self._open.items())
            self._closing.update(cid for cid, _ in open_now)
        for _, (sock, _) in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, (_, thread) in open_now:
            thread.join(timeout)

    def stop(self) -> None:
        self._stopped = True
        socket.create_connection(("127.0.0.1", self.port)).close()  # wakes the accept loop
        self._thread.join(5)
        self._listener.close()
        self.close_connections()

    # --- serving -------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            if self._stopped:
                sock.close()
                return
            with self._lock:
                record = UpstreamConnection(len(self.connections))
                self.connections.append(record)
                thread = threading.Thread(target=self._serve, args=(sock, record), daemon=True)
                self._open[record.id] = (sock, thread)
            thread.start()

    def _serve(self, sock: socket.socket, record: UpstreamConnection) -> None:
        try:
            _Server(self, sock, record).run()
        finally:
            with self._lock:
                self._open.pop(record.id, None)
            sock.close()

    def _touch(self) -> None:
        self._last_activity = time.monotonic()


class _Server:
    """One connection: h11 events in, answers out, everything recorded."""

    def __init__(self, owner: H11Upstream, sock: socket.socket, record: UpstreamConnection) -> None:
        self.owner, self.sock, self.record = owner, sock, record
        self.conn = h11.Connection(h11.SERVER)
        self.current: Parsed | None = None
        self.answered = False

    def violation(self, text: str) -> None:
        self.record.violations.append(text)

    def run(self) -> None:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.violation(f"h11 error: {exc} (after {bytes(self.record.raw[-300:])!r})")
                return
            if event is h11.NEED_DATA:
                if not self._receive():
                    return
            elif isinstance(event, h11.Request):
                self._request(event)
            elif isinstance(event, h11.Data):
                assert self.current is not None
                self.current.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                if not self._end_of_message():
                    return
            elif isinstance(event, h11.ConnectionClosed):
                return
            else:  # PAUSED: an upgrade proposal h11 waits on, or a cycle not restarted
                self.violation(f"h11 paused in states {self.conn.states}")
                return

    def _receive(self) -> bool:
        """Feed the next bytes (or the end of input) to h11; False when the connection ended."""
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        self.owner._touch()
        if data:
            self.record.raw += data
            self.conn.receive_data(data)
            return True
        by_us = self.record.id in self.owner._closing
        self.record.closed_by = "upstream" if by_us else "gateway"
        if self.conn.their_state is h11.SEND_BODY:
            return False  # the body was cut short: recorded as incomplete, not a violation
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self.violation(
                f"closed in the middle of a request head: {self.conn.trailing_data[0]!r}"
            )
            return False
        if self.conn.their_state in (h11.IDLE, h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            return False
        self.violation(f"closed in state {self.conn.states}")
        return False

    def _request(self, event: h11.Request) -> None:
        self.current = Parsed(
            self.record.id,
            event.method.decode("ascii"),
            bytes(event.target),
            [(bytes(k), bytes(v)) for k, v in event.headers],
            seq=next(self.owner._seq),
        )
        self.answered = False
        self.record.requests.append(self.current)
        if self.owner.early(self.current):
            self.current.answered_early = True
            self._answer()

    def _end_of_message(self) -> bool:
        assert self.current is not None
        self.current.complete = True
        if not self.answered:
            pending = self.conn.trailing_data[0]
            if pending:
                self.violation(f"bytes before the answer was sent: {pending[:200]!r}")
            if not self._answer():
                return False
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            self.current = None
            return True
        self.violation(f"cannot start a next request in states {self.conn.states}")
        return False

    def _answer(self) -> bool:
        assert self.current is not None
        self.answered = True
        body = b"ok " + self.current.target
        headers = [
            ("content-type", "text/plain"),
            ("content-length", str(len(body))),
        ]
        try:
            out = self.conn.send(h11.Response(status_code=200, headers=headers))
            if self.current.method != "HEAD":
                out += self.conn.send(h11.Data(data=body))
            out += self.conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            self.violation(f"cannot answer: {exc} in states {self.conn.states}")
            return False
        try:
            self.sock.sendall(out)
        except OSError:
            pass  # the gateway went away: what it sent is recorded all the same
        return True
