"""Raw client sockets for the attack tests that need more than one request-response: a chosen
source address (127.0.0.2 is another client on loopback), connections held open, partial heads
and bodies, and reading with a deadline while telling "answered" from "closed" from "silent".
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from tests.attacks.wire import Response, _parse_one


def connect(port: int, *, source: str | None = None, timeout: float = 3.0) -> socket.socket:
    """A connection to 127.0.0.1:``port``, from ``source`` (a loopback address) if given."""
    return socket.create_connection(
        ("127.0.0.1", port),
        timeout=timeout,
        source_address=(source, 0) if source else None,
    )


@dataclass
class Read:
    """What came back on a connection within a deadline."""

    responses: list[Response] = field(default_factory=list)
    closed: bool = False  # the server closed (FIN or RST)
    raw: bytes = b""  # every byte received


def read(sock: socket.socket, *, count: int = 1, timeout: float = 2.0, head: bool = False) -> Read:
    """Read until ``count`` final responses arrived, the server closed, or ``timeout`` s passed.
    With ``count=0``: read until the server closes or the deadline."""
    out = Read()
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        parsed = _parse_one(buf, head)
        if parsed is not None:
            response, buf = parsed
            if not 100 <= response.status < 200:
                out.responses.append(response)
            if count and len(out.responses) >= count:
                return out
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return out
        except (ConnectionResetError, BrokenPipeError):
            out.closed = True
            return out
        if not chunk:
            out.closed = True
            return out
        out.raw += chunk
        buf += chunk


def send_from(port: int, data: bytes, source: str, *, timeout: float = 5.0) -> Response:
    """One request from the loopback address ``source``; its response."""
    with connect(port, source=source, timeout=timeout) as s:
        s.sendall(data)
        got = read(s, timeout=timeout)
    assert got.responses, f"no response to {data[:120]!r} from {source}"
    return got.responses[0]


def closed_within(sock: socket.socket, timeout: float) -> Read:
    """Everything the server sends until it closes, or until ``timeout`` s passed."""
    return read(sock, count=0, timeout=timeout)
