"""Review of "a signed body is read whole before the decision, then exactly those bytes are
forwarded" (``exchange._decide_and_forward`` -> ``exchange_body._collect_body``), against
STOCK upstreams: a plain ASGI app under a real uvicorn and a plain WSGI app under
``wsgiref``. Each app appends every body it receives to a list, so a test can say exactly
what the app got.

Every attack has its valid twin, over raw sockets: Content-Length and chunked bodies, a pipelined
request after a signed body, a body that stalls midway, ``Expect: 100-continue`` with no body,
and a Content-Length the client never fills.

Finding this file holds the code to (failed before its fix in ``exchange._decide_and_forward``):

* ``test_signed_chunked_body_arrives_exactly[wsgiref]`` (and the chunked pipelined test): a
  signed chunked body was read whole and verified, then forwarded still chunked. ``wsgiref``
  (like other HTTP/1.0-style servers) does not decode a chunked request body: the app ran the
  signed request with ``b""`` as its body, not the signed bytes. A body read whole now goes
  upstream with ``Content-Length`` (and no ``Transfer-Encoding``).
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.attacks.sockets import closed_within, connect, read
from tests.attacks.wire import chunked, exchange
from tests.harness import GatewayProcess
from tests.signature_support import add_app, signed_headers
from tests.stock_upstreams import UvicornUpstream, WsgiRefUpstream

HOST = b"gateway.test"
ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET", "POST"]
scopes = ["notes:write"]
auth = ["signature"]
"""
BODY_TIMEOUT = 1.0
EXTRA = {
    "server.failed_attempts": '"100000/minute"',
    "server.client_body_timeout": '"1s"',
}

# --- stock upstreams ------------------------------------------------------------------------


class Stock:
    """A stock server and the bodies its app received (one entry per request, in order)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.bodies: list[bytes] = []
        self.server: Any
        if kind == "uvicorn":

            async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
                await self._asgi(scope, receive, send)  # (a plain function: ASGI 3)

            self.server = UvicornUpstream(app)
        else:
            self.server = WsgiRefUpstream(self._wsgi)

    @property
    def url(self) -> str:
        return str(self.server.url)

    def stop(self) -> None:
        self.server.stop()

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        answer = b'{"got": %d}' % len(body)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(answer)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = environ.get("CONTENT_LENGTH") or ""
        body = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""
        self.bodies.append(body)
        answer = b'{"got": %d}' % len(body)
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))],
        )
        return [answer]


@dataclass
class Setup:
    gw: GatewayProcess
    stock: Stock
    keyid: str
    key: bytes


@pytest.fixture(scope="module", params=["uvicorn", "wsgiref"])
def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    stock = Stock(request.param)
    gateway = GatewayProcess(
        tmp_path_factory.mktemp(f"bodyfirst-{request.param}") / "gw",
        stock,  # type: ignore[arg-type]  # (only .url is used)
        routes=ROUTES,
        extra=EXTRA,
    ).start()
    keyid, secret = add_app(gateway, "hmac-sha256")
    assert secret is not None
    key = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    yield Setup(gateway, stock, keyid, key)
    gateway.stop()
    stock.stop()


@pytest.fixture
def s(env: Setup) -> Setup:
    env.stock.bodies.clear()
    return env


# --- signing and raw requests ---------------------------------------------------------------


def sign(s: Setup, method: str, path: str, body: bytes = b"") -> list[tuple[bytes, bytes]]:
    return signed_headers(method, path, keyid=s.keyid, key=s.key, authority=HOST, body=body)


def head(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + HOST]
    lines += [k + b": " + v for k, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def post(s: Setup, body: bytes, *, path: str = "/notes/1", framing: str = "length") -> bytes:
    headers = sign(s, "POST", path, body)
    if framing == "length":
        headers.append((b"Content-Length", b"%d" % len(body)))
        return head("POST", path, headers) + body
    headers.append((b"Transfer-Encoding", b"chunked"))
    return head("POST", path, headers) + chunked(body, size=7)


def settle(stock: Stock, n: int, timeout: float = 2.0) -> None:
    """Wait (briefly) until the app recorded ``n`` bodies (it records before it answers)."""
    deadline = time.monotonic() + timeout
    while len(stock.bodies) < n and time.monotonic() < deadline:
        time.sleep(0.01)


BODY = b'{"text": "pay 10 to alice", "pad": "' + b"x" * 3000 + b'"}'


# --- (1) Content-Length: exactly the signed bytes ------------------------------------------


def test_signed_content_length_body_arrives_exactly(s: Setup) -> None:
    got = exchange(s.gw.port, post(s, BODY))
    assert [r.status for r in got] == [200], got
    assert s.stock.bodies == [BODY]


def test_changed_body_under_signature_never_reaches_the_app(s: Setup) -> None:
    data = post(s, BODY)
    evil = data.replace(b"pay 10 to alice", b"pay 99 to mallo")  # same length
    assert evil != data
    got = exchange(s.gw.port, evil)
    assert [r.status for r in got] == [401], got
    time.sleep(0.1)
    assert s.stock.bodies == []


# --- (2) chunked: the app gets the same bytes, well framed ----------------------------------


def test_signed_chunked_body_arrives_exactly(s: Setup) -> None:
    got = exchange(s.gw.port, post(s, BODY, framing="chunked"))
    assert [r.status for r in got] == [200], got
    settle(s.stock, 1)
    assert s.stock.bodies == [BODY]


def test_chunked_body_with_extra_trailing_bytes_in_a_chunk_is_refused(s: Setup) -> None:
    """A chunked body whose chunks carry a byte more than the signed body: never forwarded."""
    data = head(
        "POST",
        "/notes/1",
        [*sign(s, "POST", "/notes/1", BODY), (b"Transfer-Encoding", b"chunked")],
    ) + chunked(BODY + b"!", size=7)
    got = exchange(s.gw.port, data)
    assert [r.status for r in got] == [401], got
    time.sleep(0.1)
    assert s.stock.bodies == []


# --- (3) pipelined request after a signed body ---------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_pipelined_request_is_answered_separately(s: Setup, framing: str) -> None:
    second_body = b'{"second": true}'
    data = post(s, BODY, framing=framing) + post(s, second_body, path="/notes/2")
    got = exchange(s.gw.port, data, responses=2)
    assert [r.status for r in got] == [200, 200], got
    settle(s.stock, 2)
    assert s.stock.bodies == [BODY, second_body]


def test_unsigned_pipelined_request_is_not_glued_into_the_signed_body(s: Setup) -> None:
    """The second request is not signed: it is refused on its own (401), the first is
    forwarded with its own bytes only."""
    smuggled = b"POST /notes/9 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nevil!"
    got = exchange(s.gw.port, post(s, BODY) + smuggled, responses=2)
    assert [r.status for r in got] == [200, 401], got
    settle(s.stock, 1)
    time.sleep(0.1)
    assert s.stock.bodies == [BODY]


# --- (4) a signed body that stalls midway --------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_stalled_signed_body_is_answered_in_time_and_app_gets_nothing(
    s: Setup, framing: str
) -> None:
    data = post(s, BODY, framing=framing)
    cut = len(data) - 1000
    with connect(s.gw.port, timeout=10) as sock:
        sock.sendall(data[:cut])
        started = time.monotonic()
        got = closed_within(sock, timeout=BODY_TIMEOUT + 5)
        took = time.monotonic() - started
    assert took < BODY_TIMEOUT + 3, took
    assert [r.status for r in got.responses] == [408], got.responses
    time.sleep(0.1)
    assert s.stock.bodies == []


def test_slow_but_steady_signed_body_twin_is_forwarded(s: Setup) -> None:
    data = post(s, BODY)
    with connect(s.gw.port, timeout=10) as sock:
        for i in range(0, len(data), 1024):
            sock.sendall(data[i : i + 1024])
            time.sleep(0.2)
        got = read(sock, timeout=5)
    assert [r.status for r in got.responses] == [200], got
    assert s.stock.bodies == [BODY]


# --- (5) Expect: 100-continue with no body -------------------------------------------------


def test_expect_continue_without_body_never_calls_the_app(s: Setup) -> None:
    headers = sign(s, "POST", "/notes/1", BODY)
    headers += [(b"Content-Length", b"%d" % len(BODY)), (b"Expect", b"100-continue")]
    with connect(s.gw.port, timeout=10) as sock:
        sock.sendall(head("POST", "/notes/1", headers))
        started = time.monotonic()
        got = closed_within(sock, timeout=BODY_TIMEOUT + 5)
        took = time.monotonic() - started
    assert b"100 Continue" in got.raw  # asked for the body
    assert took < BODY_TIMEOUT + 3, took
    assert [r.status for r in got.responses] == [408], got.responses
    time.sleep(0.1)
    assert s.stock.bodies == []


def test_expect_continue_twin_with_body_is_forwarded(s: Setup) -> None:
    headers = sign(s, "POST", "/notes/1", BODY)
    headers += [(b"Content-Length", b"%d" % len(BODY)), (b"Expect", b"100-continue")]
    with connect(s.gw.port, timeout=10) as sock:
        sock.sendall(head("POST", "/notes/1", headers))
        sock.settimeout(3)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 100"), first
        sock.sendall(BODY)
        got = read(sock, timeout=5)
    assert [r.status for r in got.responses] == [200], got
    assert s.stock.bodies == [BODY]


# --- (6) Content-Length larger than what is sent, then close -------------------------------


def test_short_body_then_close_never_calls_the_app(s: Setup) -> None:
    headers = sign(s, "POST", "/notes/1", BODY)
    headers.append((b"Content-Length", b"%d" % (len(BODY) + 500)))
    with connect(s.gw.port, timeout=10) as sock:
        sock.sendall(head("POST", "/notes/1", headers) + BODY)
        sock.shutdown(socket.SHUT_WR)
        got = closed_within(sock, timeout=BODY_TIMEOUT + 5)
    assert got.closed
    assert [r.status for r in got.responses] in ([400], [408], []), got.responses
    time.sleep(0.3)
    assert s.stock.bodies == []


def test_short_body_then_full_close_never_calls_the_app(s: Setup) -> None:
    headers = sign(s, "POST", "/notes/1", BODY)
    headers.append((b"Content-Length", b"%d" % (len(BODY) + 500)))
    sock = connect(s.gw.port, timeout=10)
    sock.sendall(head("POST", "/notes/1", headers) + BODY)
    sock.close()
    time.sleep(0.5)
    assert s.stock.bodies == []
    # and the gateway still serves the valid twin
    got = exchange(s.gw.port, post(s, BODY))
    assert [r.status for r in got] == [200], got
    assert s.stock.bodies == [BODY]
