"""Oversized bodies: refused with 413 JSON before the upstream sees a complete request."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.attacks.wire import (
    Response,
    api_key,
    assert_forwarded,
    assert_json_error,
    assert_refused,
    chunked,
    exchange,
    request,
)
from tests.harness import GatewayProcess, RecordingUpstream

LIMIT = 1024


@pytest.fixture(scope="module")
def small(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[tuple[GatewayProcess, str]]:
    """A gateway with ``max_body_bytes = 1024`` and a key that may write."""
    gw = GatewayProcess(
        tmp_path_factory.mktemp("sizes") / "gw", upstream, extra={"max_body_bytes": str(LIMIT)}
    ).start()
    _, key = gw.issue_key("notes:read", "notes:write", name="writer")
    yield gw, key
    gw.stop()


def post(key: str, header: tuple[bytes, bytes], body: bytes) -> bytes:
    return request(b"/notes/1", api_key(key), header, method=b"POST", body=body)


def length(n: int) -> tuple[bytes, bytes]:
    return (b"Content-Length", b"%d" % n)


TE = (b"Transfer-Encoding", b"chunked")


def test_body_over_limit_with_content_length(small: tuple[GatewayProcess, str]) -> None:
    gw, key = small
    for size in (LIMIT + 1, 2000, 100_000):
        assert_refused(gw, post(key, length(size), b"a" * size), 413)
    # Announced but never sent: refused on the announcement alone.
    assert_refused(gw, post(key, length(10**12), b""), 413)
    _, seen = assert_forwarded(
        gw, post(key, length(LIMIT), b"a" * LIMIT), b"/notes/1", method="POST"
    )
    assert seen.body == b"a" * LIMIT


def test_chunked_body_over_limit(small: tuple[GatewayProcess, str]) -> None:
    gw, key = small
    for size in (LIMIT + 1, 2000, 100_000):
        assert_refused(gw, post(key, TE, chunked(b"a" * size, 500)), 413)
    data = post(key, TE, chunked(b"a" * LIMIT, 500))
    _, seen = assert_forwarded(gw, data, b"/notes/1", method="POST")
    assert seen.body == b"a" * LIMIT


def test_chunked_body_trickled_over_limit(small: tuple[GatewayProcess, str]) -> None:
    # The body arrives slowly, so the gateway is already streaming when the limit is crossed:
    # the client still gets 413 JSON and the upstream never receives a complete request.
    gw, key = small
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(post(key, TE, b""))
        for _ in range(4):
            time.sleep(0.05)
            s.sendall(b"190\r\n" + b"a" * 400 + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:])]
    assert_json_error(Response(int(lines[0].split()[1]), headers, body), 413)
    time.sleep(0.05)
    assert gw.upstream.requests == []
    # Twin: the same trickle within the limit arrives whole.
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(post(key, TE, b""))
        for _ in range(2):
            time.sleep(0.05)
            s.sendall(b"190\r\n" + b"a" * 400 + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert [r.body for r in gw.upstream.requests] == [b"a" * 800]


def test_connection_survives_a_refused_body(small: tuple[GatewayProcess, str]) -> None:
    # After a 413 the rest of the refused body must not be read as a new request; the next
    # real request on the connection is judged and forwarded normally (the twin).
    gw, key = small
    smuggled = request(b"/notes/2", api_key(key)).ljust(2000, b"a")
    data = post(key, length(2000), smuggled) + request(b"/notes/3", api_key(key))
    responses = exchange(gw.port, data, responses=2)
    assert [r.status for r in responses] == [413, 200]
    assert [r.target for r in gw.upstream.requests] == [b"/notes/3"]
