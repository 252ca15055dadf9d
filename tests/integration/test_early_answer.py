"""An upstream that answers before the request body is complete."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import GatewayProcess, RecordingUpstream, free_port

ROUTES = '[[routes]]\npath = "/up/**"\nmethods = ["POST"]\npublic = true\n'


@pytest.fixture
def early_upstream() -> Iterator[int]:
    """Answers 200 with a long Content-Length as soon as a request head arrives, then trickles."""
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 1000)
                conn.settimeout(0.1)
                for _ in range(30):  # keep the answer open a while, reading what comes
                    try:
                        if not conn.recv(65536):
                            break
                    except TimeoutError:
                        pass
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(5)
    server.close()


def test_body_over_the_limit_after_the_answer_started_cuts_the_connection(
    tmp_path: Path, upstream: RecordingUpstream, early_upstream: int
) -> None:
    # body_buffer_bytes = 1: the head goes upstream at once, so the upstream can answer early.
    gw = GatewayProcess(
        tmp_path / "gw",
        upstream,
        routes=ROUTES,
        extra={"max_body_bytes": "1024", "body_buffer_bytes": "1"},
    )
    gw.config.write_text(
        gw.config.read_text().replace(upstream.url, f"http://127.0.0.1:{early_upstream}")
    )
    from restguard.config import load

    gw.settings = load(gw.config)
    gw.start()
    try:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(b"POST /up/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            s.sendall(b"100\r\n" + b"a" * 256 + b"\r\n")
            received = b""
            while len(received) < 1000:
                received += s.recv(65536)
            assert received.startswith(b"HTTP/1.1 200 OK\r\n")
            for _ in range(8):  # now go over the 1024-byte limit
                time.sleep(0.02)
                try:
                    s.sendall(b"100\r\n" + b"a" * 256 + b"\r\n")
                except OSError:
                    break
            s.settimeout(3)
            while True:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                received += chunk
        # The 200 answer is cut short (the client sees a broken response), never followed by a
        # second, spliced-in answer.
        assert b"HTTP/1.1 413" not in received
        assert received.count(b"HTTP/1.1 ") == 1
        _head, _, body = received.partition(b"\r\n\r\n")
        assert len(body) < 100000
    finally:
        gw.stop()
