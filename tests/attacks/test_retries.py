"""Retries on a stale upstream connection (finding 7).

A pooled keep-alive connection can die under a request: the upstream read it and closed
without answering. RFC 9110 §9.2.2: a proxy MUST NOT automatically retry a non-idempotent
request — the upstream may already have acted on it. Only GET, HEAD and OPTIONS are retried (on a
fresh connection); any other method gets 502, and the upstream sees it at most once.

``StaleUpstream`` answers the first request on every connection with a keep-alive 200; when
``armed``, it reads the next request on a *reused* connection, records it, and closes the
connection without a byte of answer.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.attacks.wire import assert_json_error, request, send
from tests.harness import GatewayProcess

ROUTES = """\
[[routes]]
path = "/r/**"
methods = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
public = true
"""


@dataclass
class Seen:
    connection: int
    index: int  # 0 for the first request on its connection
    method: str
    target: str
    body: bytes
    answered: bool


class StaleUpstream:
    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.armed = False
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._stopped = False
        self.port = self._sock.getsockname()[1]
        self._conns = 0
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self, target: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.target == target]

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self._conns += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn, self._conns), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buf = b""
        index = 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                fields = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (x.partition(":") for x in lines[1:])
                }
                assert "transfer-encoding" not in fields, "this upstream reads Content-Length only"
                length = int(fields.get("content-length", "0"))
                while len(buf) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                body, buf = buf[:length], buf[length:]
                with self._lock:
                    drop = self.armed and index > 0
                    if drop:
                        self.armed = False
                    self.requests.append(Seen(number, index, method, target, body, not drop))
                if drop:
                    return  # closes: the request was read, never answered
                payload = b"" if method == "HEAD" else b"{}"
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: 2\r\n\r\n" + payload
                )
                index += 1

    def stop(self) -> None:
        self._stopped = True
        self._thread.join(5)
        self._sock.close()
        for conn in self._open:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture(scope="module")
def stale() -> Iterator[StaleUpstream]:
    server = StaleUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def retry_gw(
    tmp_path_factory: pytest.TempPathFactory, stale: StaleUpstream
) -> Iterator[GatewayProcess]:
    directory: Path = tmp_path_factory.mktemp("retries") / "gw"
    gateway = GatewayProcess(directory, stale, routes=ROUTES).start()  # type: ignore[arg-type]
    yield gateway
    gateway.stop()


def prime(gw: GatewayProcess, stale: StaleUpstream) -> None:
    """Make sure the pool holds a connection that has already carried a request."""
    stale.armed = False
    assert send(gw.port, request(b"/r/prime")).status == 200
    stale.armed = True


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"OPTIONS"])
def test_safe_method_is_retried_on_a_fresh_connection(
    retry_gw: GatewayProcess, stale: StaleUpstream, method: bytes
) -> None:
    prime(retry_gw, stale)
    target = "/r/safe-" + method.decode().lower()
    response = send(retry_gw.port, request(target.encode(), method=method), head=method == b"HEAD")
    assert response.status == 200, (response.status, response.body[:200])
    dropped, retried = stale.seen(target)
    assert not dropped.answered and dropped.index > 0  # read on the stale connection
    assert retried.answered and retried.index == 0  # then once more on a fresh one
    assert retried.connection != dropped.connection


NON_IDEMPOTENT = {
    "POST-no-body": (b"POST", []),
    "POST-empty": (b"POST", [(b"Content-Length", b"0")]),
    "POST-body": (b"POST", [(b"Content-Length", b"5")]),
    "PUT-body": (b"PUT", [(b"Content-Length", b"5")]),
    "PATCH-empty": (b"PATCH", [(b"Content-Length", b"0")]),
    "PATCH-no-body": (b"PATCH", []),
    "DELETE": (b"DELETE", []),
}


@pytest.mark.parametrize("case", NON_IDEMPOTENT)
def test_non_idempotent_request_is_never_replayed(
    retry_gw: GatewayProcess, stale: StaleUpstream, case: str
) -> None:
    method, headers = NON_IDEMPOTENT[case]
    body = b"hello" if headers and headers[0][1] == b"5" else b""
    target = f"/r/once-{case.lower()}"
    prime(retry_gw, stale)
    data = request(target.encode(), *headers, method=method, body=body)
    response = send(retry_gw.port, data)
    assert_json_error(response, 502, "bad_gateway")
    seen = stale.seen(target)
    assert len(seen) <= 1, f"{method.decode()} replayed: {seen}"
    # Twin: on a healthy reused connection it goes through, once.
    twin = target + "-twin"
    stale.armed = False
    response = send(retry_gw.port, request(twin.encode(), *headers, method=method, body=body))
    assert response.status == 200, (response.status, response.body[:200])
    [once] = stale.seen(twin)
    assert once.body == body and once.method == method.decode()
