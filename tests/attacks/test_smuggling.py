"""Request smuggling: every framing the gateway and the upstream could read differently is
refused (RFC 9112 §6), and pipelined requests are judged one by one."""

from __future__ import annotations

import socket
import time

import pytest

from tests.attacks.conftest import Keys
from tests.attacks.wire import (
    api_key,
    assert_forwarded,
    assert_json_error,
    assert_refused,
    chunked,
    exchange,
    request,
)
from tests.harness import GatewayProcess

HIDDEN = b"GET /admin HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


def post(key: str, *headers: tuple[bytes, bytes], body: bytes = b"", **kw: bytes) -> bytes:
    return request(b"/notes/1", api_key(key), *headers, method=b"POST", body=body, **kw)


def assert_post_twin(gw: GatewayProcess, key: str, body: bytes = b"hello") -> None:
    """The honest POST: Content-Length, or chunked, and the upstream gets exactly ``body``."""
    data = post(key, (b"Content-Length", b"%d" % len(body)), body=body)
    _, seen = assert_forwarded(gw, data, b"/notes/1", method="POST")
    assert seen.body == body
    data = post(key, (b"Transfer-Encoding", b"chunked"), body=chunked(body, 2))
    _, seen = assert_forwarded(gw, data, b"/notes/1", method="POST")
    assert seen.body == body
    assert seen.header("Content-Length") is None or seen.header("Transfer-Encoding") is None


def test_content_length_with_transfer_encoding(gw: GatewayProcess, keys: Keys) -> None:
    # CL.TE / TE.CL: one side reads 5 bytes, the other reads chunks and sees a second request.
    body = b"0\r\n\r\n" + HIDDEN
    for headers in (
        [(b"Content-Length", b"%d" % len(body)), (b"Transfer-Encoding", b"chunked")],
        [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5")],
        [(b"Content-Length", b"0"), (b"Transfer-Encoding", b"chunked")],
    ):
        assert_refused(gw, post(keys.writer, *headers, body=body), 400)
    assert_post_twin(gw, keys.writer)


@pytest.mark.parametrize(
    "lengths", [(b"5", b"6"), (b"5", b"5"), (b"5, 6",), (b"5, 5",), (b"6", b"5")]
)
def test_two_content_lengths(gw: GatewayProcess, keys: Keys, lengths: tuple[bytes, ...]) -> None:
    headers = [(b"Content-Length", n) for n in lengths]
    assert_refused(gw, post(keys.writer, *headers, body=b"hello!"), 400)
    assert_post_twin(gw, keys.writer)


@pytest.mark.parametrize(
    "coding",
    [
        b"xchunked",
        b"chunked, identity",
        b"identity, chunked",
        b"gzip, chunked",  # would reach the upstream gzip-encoded under a plain "chunked"
        b"chunked, chunked",
        b"identity",
        b'"chunked"',
        b"chunked;q=1",
    ],
)
def test_obfuscated_transfer_encoding(gw: GatewayProcess, keys: Keys, coding: bytes) -> None:
    data = post(keys.writer, (b"Transfer-Encoding", coding), body=chunked(b"hello"))
    assert_refused(gw, data, 400)
    assert_post_twin(gw, keys.writer)


def test_transfer_encoding_repeated(gw: GatewayProcess, keys: Keys) -> None:
    te = (b"Transfer-Encoding", b"chunked")
    assert_refused(gw, post(keys.writer, te, te, body=chunked(b"hello")), 400)
    data = post(keys.writer, (b"Transfer-Encoding", b"Chunked"), body=chunked(b"hello"))
    _, seen = assert_forwarded(gw, data, b"/notes/1", method="POST")  # case-insensitive coding
    assert seen.body == b"hello"


def test_transfer_encoding_in_http_1_0(gw: GatewayProcess, keys: Keys) -> None:
    # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    data = post(
        keys.writer, (b"Transfer-Encoding", b"chunked"), body=chunked(b"hello"), version=b"HTTP/1.0"
    )
    response = assert_refused(gw, data, 400)
    assert response.header("Connection") == "close"
    data = post(keys.writer, (b"Content-Length", b"5"), body=b"hello", version=b"HTTP/1.0")
    _, seen = assert_forwarded(gw, data, b"/notes/1", method="POST")
    assert seen.body == b"hello"


@pytest.mark.parametrize(
    "length", [b"-1", b"abc", b"+5", b"5.0", b"0x5", b"5 5", b"99999999999999999999"]
)
def test_malformed_content_length(gw: GatewayProcess, keys: Keys, length: bytes) -> None:
    assert_refused(gw, post(keys.writer, (b"Content-Length", length), body=b"hello"), 400)
    assert_post_twin(gw, keys.writer)


@pytest.mark.parametrize(
    "body",
    [
        b"5\nhello\n0\n\n",  # bare LF in chunk framing
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n\r\n",
        b"5\r\nhelloXX\r\n0\r\n\r\n",  # chunk longer than its size
    ],
    ids=["bare-lf", "hex-prefix", "negative", "space-after-size", "overlong-chunk"],
)
def test_malformed_chunked_body(gw: GatewayProcess, keys: Keys, body: bytes) -> None:
    assert_refused(gw, post(keys.writer, (b"Transfer-Encoding", b"chunked"), body=body), 400)
    assert_post_twin(gw, keys.writer)


def test_bare_lf_line_endings(gw: GatewayProcess, keys: Keys) -> None:
    key = keys.reader.encode()
    assert_refused(
        gw, b"GET /notes/1 HTTP/1.1\nHost: gateway.test\nX-API-Key: " + key + b"\n\n", 400
    )
    mixed = b"GET /notes/1 HTTP/1.1\r\nHost: gateway.test\nX-API-Key: " + key + b"\r\n\r\n"
    assert_refused(gw, mixed, 400)
    bare_cr = b"GET /notes/1 HTTP/1.1\rHost: gateway.test\rX-API-Key: " + key + b"\r\r"
    assert_refused(gw, bare_cr, 400)
    crlf = b"GET /notes/1 HTTP/1.1\r\nHost: gateway.test\r\nX-API-Key: " + key + b"\r\n\r\n"
    assert_forwarded(gw, crlf, b"/notes/1")


def test_pipelined_unauthorized_request(gw: GatewayProcess, keys: Keys) -> None:
    # The second request rides on the first one's connection without a credential.
    first = request(b"/notes/1", api_key(keys.reader))
    second = request(b"/notes/2")
    third = request(b"/notes/3", (b"Connection", b"close"), api_key(keys.reader))
    responses = exchange(gw.port, first + second + third, responses=3)
    assert [r.status for r in responses] == [200, 401, 200]
    assert_json_error(responses[1], 401, "unauthorized")
    assert [r.target for r in gw.upstream.requests] == [b"/notes/1", b"/notes/3"]


def test_request_hidden_in_a_body(gw: GatewayProcess, keys: Keys) -> None:
    # A request inside a correctly framed body is data: the upstream gets one POST carrying it.
    data = post(keys.writer, (b"Content-Length", b"%d" % len(HIDDEN)), body=HIDDEN)
    _, seen = assert_forwarded(gw, data, b"/notes/1", method="POST")
    assert seen.body == HIDDEN
    assert len(gw.upstream.requests) == 1
    # A body shorter than the bytes sent: the rest is the next request, judged on its own (404).
    data = post(keys.writer, (b"Content-Length", b"5"), body=b"hello" + HIDDEN)
    responses = exchange(gw.port, data, responses=2)
    assert [r.status for r in responses] == [200, 404]
    assert [r.target for r in gw.upstream.requests] == [b"/notes/1", b"/notes/1"]
    assert gw.upstream.requests[-1].body == b"hello"


def test_chunk_trailer_cannot_add_identity(gw: GatewayProcess, keys: Keys) -> None:
    body = b"5\r\nhello\r\n0\r\nX-Restguard-Subject: admin\r\n\r\n"
    data = post(keys.writer, (b"Transfer-Encoding", b"chunked"), body=body)
    responses = exchange(gw.port, data)
    # Refused, or forwarded without the trailer; never an upstream that sees the forged subject.
    for seen in gw.upstream.requests:
        assert seen.header("X-Restguard-Subject") == "writer"
        assert b"admin" not in seen.body
    assert responses and responses[0].status in (200, 400)
    assert_post_twin(gw, keys.writer)


def test_expect_continue_on_refused_request(gw: GatewayProcess, keys: Keys) -> None:
    # A refused request gets its final answer at once: no "100 Continue" invites the body, and
    # the body the client may send anyway is consumed as that request's content, not parsed.
    expect = (b"Expect", b"100-continue")
    head = request(b"/notes/1", expect, (b"Content-Length", b"%d" % len(HIDDEN)), method=b"POST")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(head)
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 401 "), first
        s.sendall(HIDDEN)
        time.sleep(0.1)
    assert gw.upstream.requests == []
    # Twin: an allowed request is invited to send its body, which reaches the upstream.
    head = post(keys.writer, expect, (b"Content-Length", b"5"))
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(head)
        assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
    [seen] = gw.upstream.requests
    assert seen.body == b"hello"
    assert seen.header("Expect") is None
