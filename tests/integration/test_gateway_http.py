"""The gateway's HTTP/1.1 behaviour on the wire, both ways: keep-alive and the upstream pool,
stale upstream connections, response framing, HTTP/1.0 clients, large bodies under backpressure,
upstream failures mid-answer, header hygiene, graceful stop and the admin listener.

Refusals (paths, headers, smuggling, sizes, 502/504/503) are the attack suite's (tests/attacks/).
Here the client side is raw sockets with strict framing (``Conn``); the upstream is either the
harness's ``RecordingUpstream`` or ``RawUpstream`` below, whose per-test ``handler`` writes
byte-exact answers and which records each request with the upstream connection it came on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.attacks.sockets import read
from tests.attacks.wire import Response, api_key, assert_json_error, chunked, request
from tests.harness import GatewayProcess, Reply
from tests.raw_upstream import Conn, Incomplete, RawUpstream, Seen, UpConn, answer_ok, get, values

# --- 1. keep-alive both ways ----------------------------------------------------------------------


def test_fifty_requests_on_one_client_connection_reuse_one_upstream_connection(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
) -> None:
    gw, raw, key = via_raw
    with Conn(gw.port) as c:
        for i in range(50):
            c.send(get(key, b"/notes/%d" % i))
            r = c.response()
            assert (r.status, r.body) == (200, b"ok /notes/%d" % i)
            assert values(r, "connection") == []
        assert c.idle()
    assert [s.target for s in raw.requests] == [b"/notes/%d" % i for i in range(50)]
    # Sequential requests: the pooled upstream connection is reused, not one per request.
    assert len({s.port for s in raw.requests}) == raw.accepted <= 2


def test_upstream_connection_close_is_not_passed_to_the_client(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
) -> None:
    # "Connection: close" from the upstream ends that upstream connection only.
    gw, raw, key = via_raw

    async def answer_and_close(conn: UpConn, seen: Seen) -> None:
        conn.answer(200, b"ok " + seen.target, "Connection: close")
        conn.close()

    raw.handler = answer_and_close
    with Conn(gw.port) as c:
        for i in range(3):
            c.send(get(key, b"/notes/%d" % i))
            r = c.response()
            assert (r.status, r.body) == (200, b"ok /notes/%d" % i)
            assert values(r, "connection") == []
        assert c.idle()
    assert [(s.conn, s.index) for s in raw.requests] == [(1, 0), (2, 0), (3, 0)]


# --- 2. stale upstream connections ----------------------------------------------------------------


def test_upstream_closing_idle_connections_after_answering(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
) -> None:
    # The upstream answers with keep-alive, then closes each connection 50 ms later.
    gw, raw, key = via_raw

    async def answer_then_close(conn: UpConn, seen: Seen) -> None:
        conn.answer(200, b"ok " + seen.target)
        await asyncio.sleep(0.05)
        conn.close()

    raw.handler = answer_then_close
    with Conn(gw.port) as c:
        for i in range(3):
            c.send(get(key, b"/notes/%d" % i))
            assert c.response().body == b"ok /notes/%d" % i
            time.sleep(0.15)
    assert [s.target for s in raw.requests] == [b"/notes/0", b"/notes/1", b"/notes/2"]
    assert [s.index for s in raw.requests] == [0, 0, 0]  # each on a fresh connection


async def drop_reused(conn: UpConn, seen: Seen) -> None:
    """Answer the first request on a connection; close on any later one without answering: what
    a gateway sees when it reuses a kept-alive connection the upstream was closing just then."""
    if seen.index == 0:
        conn.answer(200, b"ok " + seen.target)
    else:
        conn.close()


def test_stale_connection_get_is_retried_once_on_a_fresh_connection(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
) -> None:
    gw, raw, key = via_raw
    raw.handler = drop_reused
    with Conn(gw.port) as c:
        for i in range(3):
            c.send(get(key, b"/notes/%d" % i))
            r = c.response()
            assert (r.status, r.body) == (200, b"ok /notes/%d" % i)
    # /notes/1 and /notes/2 each met a stale connection once, then a fresh one answered.
    got = [(s.target, s.index) for s in raw.requests]
    assert got == [
        (b"/notes/0", 0),
        (b"/notes/1", 1),
        (b"/notes/1", 0),
        (b"/notes/2", 1),
        (b"/notes/2", 0),
    ]


def test_stale_retry_uses_a_fresh_connection_when_every_pooled_one_is_stale(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
) -> None:
    # Two pooled connections, then the upstream drops every request on an old connection (as
    # when it restarts or times idle connections out together).
    gw, raw, key = via_raw

    async def slow(conn: UpConn, seen: Seen) -> None:
        await asyncio.sleep(0.2)
        conn.answer(200, b"ok")

    raw.handler = slow
    with ThreadPoolExecutor(2) as pool:
        warm = list(pool.map(lambda _: send_one(gw.port, get(key)), range(2)))
    assert [r.status for r in warm] == [200, 200]
    assert raw.accepted == 2
    raw.handler = drop_reused
    r = send_one(gw.port, get(key, b"/notes/9"))
    tries = [(s.conn, s.index) for s in raw.requests if s.target == b"/notes/9"]
    assert (r.status, r.body) == (200, b"ok /notes/9"), tries
    assert tries[-1] == (3, 0)  # the retry went to a new connection


def test_stale_connection_post_with_body_is_502_not_repeated(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
) -> None:
    gw, raw, key = via_raw
    raw.handler = drop_reused
    with Conn(gw.port) as c:
        c.send(get(key))
        assert c.response().status == 200
        c.send(
            request(
                b"/notes/1",
                api_key(key),
                (b"Content-Length", b"11"),
                method=b"POST",
                body=b"hello world",
            )
        )
        assert_json_error(c.response(), 502, "bad_gateway")
    time.sleep(0.1)  # a retry would have arrived by now
    posts = [s for s in raw.requests if s.method == "POST"]
    assert len(posts) == 1 and posts[0].index == 1, posts  # only the one the stale socket took
    assert raw.accepted == 1


# --- 3. the pool limit ----------------------------------------------------------------------------


def send_one(port: int, data: bytes, *, head: bool = False) -> Response:
    with Conn(port) as c:
        c.send(data)
        return c.response(head=head)


def test_pool_size_caps_concurrent_upstream_connections(
    raw: RawUpstream, start: Callable[..., GatewayProcess]
) -> None:
    gw = start(raw, pool_size="2")
    _, key = gw.issue_key("notes:read")

    async def slow(conn: UpConn, seen: Seen) -> None:
        await asyncio.sleep(0.3)
        conn.answer(200, b"ok " + seen.target)

    raw.handler = slow
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda i: send_one(gw.port, get(key, b"/notes/%d" % i)), range(6)))
    elapsed = time.monotonic() - started
    assert [(r.status, r.body) for r in got] == [(200, b"ok /notes/%d" % i) for i in range(6)]
    assert raw.max_open == 2
    assert raw.accepted == 2  # the two connections were reused by the waiting requests
    assert elapsed >= 0.85  # three rounds of two, never six at once


# --- 4. response framing --------------------------------------------------------------------------


def test_chunked_upstream_answer_is_rechunked(gateway: GatewayProcess) -> None:
    gw = gateway
    _, key = gw.issue_key("notes:read")
    body = bytes(range(256)) * 300
    gw.upstream.reply = Reply(body=body, chunked=True)
    with Conn(gw.port) as c:
        for _ in range(2):
            c.send(get(key))
            r = c.response()
            assert (r.status, r.body) == (200, body)
            assert values(r, "transfer-encoding") == ["chunked"]
            assert values(r, "content-length") == []
        assert c.idle()


def test_streamed_chunks_with_extensions_and_trailers(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
) -> None:
    gw, raw, key = via_raw

    async def stream(conn: UpConn, seen: Seen) -> None:
        conn.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n")
        for part in (b"5;name=value\r\nhello\r\n", b"6\r\n world\r\n", b"1\r\n!\r\n"):
            await asyncio.sleep(0.02)
            conn.write(part)
        conn.write(b"0\r\nX-Sum: 12\r\n\r\n")

    raw.handler = stream
    with Conn(gw.port) as c:
        c.send(get(key))
        r = c.response()
        assert (r.status, r.body) == (200, b"hello world!")
        assert c.buf == b""  # nothing after the last chunk (the trailer is not forwarded)
        c.send(get(key))
        assert c.response().body == b"hello world!"


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
def test_close_delimited_upstream_answer_reaches_a_1_1_client_whole(
    via_raw: tuple[GatewayProcess, RawUpstream, str], version: bytes
) -> None:
    gw, raw, key = via_raw
    body = b"0123456789" * 5000

    async def close_delimited(conn: UpConn, seen: Seen) -> None:
        conn.write(version + b" 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body[:20000])
        await asyncio.sleep(0.02)
        conn.write(body[20000:])
        await asyncio.sleep(0.02)
        conn.close()

    raw.handler = close_delimited
    with Conn(gw.port) as c:
        c.send(get(key))
        r = c.response()
        assert (r.status, r.body) == (200, body)


def test_close_delimited_upstream_answer_reaches_a_1_0_client_whole(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
) -> None:
    gw, raw, key = via_raw
    body = b"0123456789" * 5000

    async def close_delimited(conn: UpConn, seen: Seen) -> None:
        conn.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)
        await asyncio.sleep(0.02)
        conn.close()

    raw.handler = close_delimited
    with Conn(gw.port) as c:
        c.send(request(b"/notes/1", api_key(key), version=b"HTTP/1.0"))
        r = c.response()  # close-delimited for the client too
        assert (r.status, r.body) == (200, body)
        assert values(r, "transfer-encoding") == []


def test_204_and_304_carry_no_body_and_keep_the_connection(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
) -> None:
    gw, raw, key = via_raw

    async def no_body(conn: UpConn, seen: Seen) -> None:
        if seen.target == b"/notes/204":
            conn.write(b"HTTP/1.1 204 No Content\r\nX-Kind: empty\r\n\r\n")
        elif seen.target == b"/notes/304":
            conn.write(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n')
        else:
            conn.answer(200, b"after")

    raw.handler = no_body
    with Conn(gw.port) as c:
        for _ in range(2):
            c.send(get(key, b"/notes/204"))
            r = c.response()
            assert r.status == 204 and r.header("x-kind") == "empty"
            # RFC 9110 §8.6 / RFC 9112 §6.1: neither framing field on a 204.
            assert values(r, "content-length") == values(r, "transfer-encoding") == []
            c.send(get(key, b"/notes/304", (b"If-None-Match", b'"v1"')))
            r = c.response()
            assert r.status == 304 and r.header("etag") == '"v1"'
            assert values(r, "transfer-encoding") == []
            c.send(get(key, b"/notes/2"))
            r = c.response()
            assert (r.status, r.body) == (200, b"after")
        assert c.idle()
    assert raw.accepted == 1


@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"],
    ids=["100", "103"],
)
def test_interim_upstream_answers_are_not_forwarded(
    via_raw: tuple[GatewayProcess, RawUpstream, str], interim: bytes
) -> None:
    gw, raw, key = via_raw

    async def interim_then_final(conn: UpConn, seen: Seen) -> None:
        conn.write(interim)
        await asyncio.sleep(0.02)
        conn.answer(200, b"final")

    raw.handler = interim_then_final
    with Conn(gw.port) as c:
        for _ in range(2):
            c.send(get(key))
            r = c.response()
            assert (r.status, r.body) == (200, b"final")
            assert values(r, "link") == []
        assert c.idle()


def test_head_answer_with_a_length_and_no_body_keeps_both_connections(
    gateway: GatewayProcess,
) -> None:
    gw = gateway
    _, key = gw.issue_key("notes:read")
    gw.upstream.reply = Reply(body=b"x" * 1000)
    with Conn(gw.port) as c:
        c.send(request(b"/notes/a", api_key(key), method=b"HEAD"))
        r = c.response(head=True)
        assert r.status == 200 and values(r, "content-length") == ["1000"]
        assert values(r, "transfer-encoding") == []
        gw.upstream.reply = Reply(body=b"next")
        c.send(get(key, b"/notes/b"))
        r = c.response()
        assert (r.status, r.body) == (200, b"next")
        c.send(request(b"/notes/c", api_key(key), method=b"HEAD"))
        assert values(c.response(head=True), "content-length") == ["4"]
        assert c.idle()
    assert [(s.method, s.target) for s in gw.upstream.requests] == [
        ("HEAD", b"/notes/a"),
        ("GET", b"/notes/b"),
        ("HEAD", b"/notes/c"),
    ]


# --- 5. HTTP/1.0 clients --------------------------------------------------------------------------


@pytest.mark.parametrize("upstream_chunked", [False, True], ids=["length", "chunked"])
def test_http_1_0_client_gets_a_whole_answer_then_close(
    gateway: GatewayProcess, upstream_chunked: bool
) -> None:
    gw = gateway
    _, key = gw.issue_key("notes:read")
    body = b"abc" * 10000
    gw.upstream.reply = Reply(body=body, chunked=upstream_chunked)
    with Conn(gw.port) as c:
        c.send(request(b"/notes/1", api_key(key), version=b"HTTP/1.0"))
        r = c.response()
        assert (r.status, r.body) == (200, body)
        assert values(r, "transfer-encoding") == []  # no chunked coding for an HTTP/1.0 client
        assert c.closed()


@pytest.mark.parametrize("pipelined", [1, 3])
def test_a_half_closed_client_gets_its_answers_then_close(
    gateway: GatewayProcess, pipelined: int
) -> None:
    gw = gateway
    _, key = gw.issue_key("notes:read")
    gw.upstream.reply = Reply(body=b"x" * 100_000, delay=0.2)  # still coming after the EOF
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"".join(request(b"/notes/%d" % i, api_key(key)) for i in range(pipelined)))
        s.shutdown(socket.SHUT_WR)
        got = read(s, count=0, timeout=5)
    assert [(r.status, len(r.body)) for r in got.responses] == [(200, 100_000)] * pipelined
    assert got.closed


def test_a_request_cut_short_by_a_half_close_is_not_forwarded(gateway: GatewayProcess) -> None:
    gw = gateway
    _, key = gw.issue_key("notes:write")
    before = len(gw.upstream.requests)
    for cut in (
        request(b"/notes/1", api_key(key))[:-2],  # in the head
        request(b"/notes/1", api_key(key), (b"Content-Length", b"10"), method=b"PUT", body=b"abc"),
    ):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(cut)
            s.shutdown(socket.SHUT_WR)
            got = read(s, count=0, timeout=2)
            assert (got.raw, got.closed) == (b"", True)  # closed at once, nothing answered
    assert len(gw.upstream.requests) == before


def test_http_1_0_keep_alive_client_keeps_its_connection(gateway: GatewayProcess) -> None:
    gw = gateway
    _, key = gw.issue_key("notes:read")
    ka = (api_key(key), (b"Connection", b"keep-alive"))
    with Conn(gw.port) as c:
        for i in range(3):
            c.send(request(b"/notes/%d" % i, *ka, version=b"HTTP/1.0"))
            r = c.response()
            assert (r.status, r.body) == (200, b'{"ok": true}')
            assert "close" not in (r.header("connection") or "").lower()
        assert c.idle()
    # With a chunked upstream answer the length is unknown: close-delimited, then closed.
    gw.upstream.reply = Reply(body=b"streamed", chunked=True)
    with Conn(gw.port) as c:
        c.send(request(b"/notes/1", *ka, version=b"HTTP/1.0"))
        r = c.response()
        assert (r.status, r.body) == (200, b"streamed")
        assert (r.header("connection") or "").lower() == "close"
        assert c.eof


def test_http_1_0_keep_alive_is_acknowledged(gateway: GatewayProcess) -> None:
    gw = gateway
    _, key = gw.issue_key("notes:read")
    with Conn(gw.port) as c:
        c.send(
            request(b"/notes/1", api_key(key), (b"Connection", b"keep-alive"), version=b"HTTP/1.0")
        )
        r = c.response()
        assert r.status == 200
        assert (r.header("connection") or "").lower() == "keep-alive"


# --- 6. large bodies under backpressure -----------------------------------------------------------

BIG = 20 * 1024 * 1024


def test_large_download_read_slowly_arrives_intact_with_backpressure(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
) -> None:
    gw, raw, key = via_raw
    body = random.Random(20).randbytes(BIG)
    sent: list[float] = []

    async def big(conn: UpConn, seen: Seen) -> None:
        sock = conn.transport.get_extra_info("socket")  # type: ignore[union-attr]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        view = memoryview(body)
        for i in range(0, BIG, 256 * 1024):
            conn.write(bytes(view[i : i + 256 * 1024]))
            await conn.drain()
        while conn.transport.get_write_buffer_size():  # type: ignore[union-attr]
            await asyncio.sleep(0.001)
        sent.append(time.monotonic())

    raw.handler = big
    digest = hashlib.sha256()
    progress: list[tuple[float, int]] = []
    with Conn(gw.port, rcvbuf=64 * 1024, timeout=10) as c:
        c.send(get(key))
        while b"\r\n\r\n" not in c.buf:
            c._more()
        head, _, first = c.buf.partition(b"\r\n\r\n")
        c.buf = b""
        assert head.startswith(b"HTTP/1.1 200 ") and b"\r\ncontent-length: %d" % BIG in head
        digest.update(first)
        total = len(first)
        while total < BIG:
            time.sleep(0.002)
            chunk = c.sock.recv(65536)
            assert chunk, f"closed after {total} bytes"
            digest.update(chunk)
            total += len(chunk)
            progress.append((time.monotonic(), total))
        assert total == BIG
        assert c.idle(0.05)
    assert digest.hexdigest() == hashlib.sha256(body).hexdigest()
    # Backpressure: the upstream could only finish sending once the slow client had read most
    # of the body (without it the gateway would hold megabytes and the upstream finish at once).
    assert sent
    read_when_sent = max((n for t, n in progress if t <= sent[0]), default=0)

    assert read_when_sent > BIG // 2, (read_when_sent, BIG)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_upload_trickled_arrives_intact(
    raw: RawUpstream, start: Callable[..., GatewayProcess], framing: str
) -> None:
    gw = start(raw, max_body_bytes=str(16 * 1024 * 1024))
    _, key = gw.issue_key("notes:write")
    body = random.Random(8).randbytes(8 * 1024 * 1024)
    piece = 64 * 1024
    if framing == "chunked":
        header = (b"Transfer-Encoding", b"chunked")
        pieces = [
            chunked(body[i : i + piece], piece)[: -len(b"0\r\n\r\n")]
            for i in range(0, len(body), piece)
        ] + [b"0\r\n\r\n"]
    else:
        header = (b"Content-Length", b"%d" % len(body))
        pieces = [body[i : i + piece] for i in range(0, len(body), piece)]
    with Conn(gw.port, timeout=10) as c:
        c.send(request(b"/notes/1", api_key(key), header, method=b"POST"))
        for data in pieces:
            c.send(data)
            time.sleep(0.0005)
        r = c.response()
        assert (r.status, r.body) == (200, b"ok /notes/1")
    [seen] = raw.requests
    assert len(seen.body) == len(body)
    assert hashlib.sha256(seen.body).digest() == hashlib.sha256(body).digest()


# --- 7. upstream failures mid-answer --------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_answer_cut_short_closes_the_client_connection(
    via_raw: tuple[GatewayProcess, RawUpstream, str], framing: str
) -> None:
    gw, raw, key = via_raw

    async def half(conn: UpConn, seen: Seen) -> None:
        if framing == "chunked":
            conn.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n" + b"a" * 250)
        else:
            conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b"a" * 250)
        await asyncio.sleep(0.05)
        conn.close()

    raw.handler = half
    with Conn(gw.port) as c:
        c.send(get(key))
        with pytest.raises(Incomplete):
            c.response()
        assert c.eof
    # Twin: the whole answer goes through and the next request is served.
    raw.handler = answer_ok
    with Conn(gw.port) as c:
        c.send(get(key))
        assert c.response().status == 200


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"HELLO\r\n\r\n", id="not-http"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            id="two-lengths",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="length-and-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
            id="101",
        ),
    ],
)
def test_garbage_from_the_upstream_is_502_json(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
    garbage: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw, raw, key = via_raw

    async def talk_garbage(conn: UpConn, seen: Seen) -> None:
        conn.write(garbage)

    raw.handler = talk_garbage
    with Conn(gw.port) as c:
        c.send(get(key))
        assert_json_error(c.response(), 502, "bad_gateway")
    # Refused as designed, not by an exception escaping into the event loop.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- 8. identity and header hygiene on the wire ---------------------------------------------------


def test_what_the_upstream_receives_on_the_wire(
    via_raw: tuple[GatewayProcess, RawUpstream, str],
) -> None:
    gw, raw, key = via_raw
    with Conn(gw.port) as c:
        c.send(request(b"/notes/1", api_key(key), host=b"api.example.test:8443"))
        assert c.response().status == 200
    [seen] = raw.requests
    first_line = raw.conns[0].raw.split(b"\r\n", 1)[0]
    assert first_line == b"GET /notes/1 HTTP/1.1"
    assert seen.values("host") == [f"127.0.0.1:{raw.port}"]
    assert seen.values("x-forwarded-host") == ["api.example.test:8443"]
    assert seen.values("x-forwarded-for") == ["127.0.0.1"]
    assert seen.values("x-forwarded-proto") == ["http"]
    assert len(seen.values("x-restguard-identity")) == 1
    assert seen.values("x-api-key") == []


@pytest.mark.parametrize("upstream_chunked", [True, False], ids=["chunked", "length"])
def test_response_hop_by_hop_headers_are_not_forwarded(
    via_raw: tuple[GatewayProcess, RawUpstream, str], upstream_chunked: bool
) -> None:
    gw, raw, key = via_raw
    framing = (
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        if upstream_chunked
        else b"Content-Length: 5\r\n\r\nhello"
    )

    async def hop_by_hop(conn: UpConn, seen: Seen) -> None:
        conn.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Connection: X-Foo, keep-alive\r\n"
            b"X-Foo: hop\r\n"
            b"Keep-Alive: timeout=5, max=100\r\n"
            b"Proxy-Authenticate: Basic realm=up\r\n"
            b"Upgrade: h2c\r\n"
            b"Set-Cookie: a=1; Path=/\r\n"
            b"Set-Cookie: b=2; Path=/; HttpOnly\r\n"
            b"X-End-To-End: kept\r\n" + framing
        )

    raw.handler = hop_by_hop
    with Conn(gw.port) as c:
        c.send(get(key))
        r = c.response()
        assert (r.status, r.body) == (200, b"hello")
        names = {k.lower() for k, _ in r.headers}
        assert not names & {"x-foo", "keep-alive", "proxy-authenticate", "upgrade", "connection"}
        assert values(r, "set-cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
        assert values(r, "x-end-to-end") == ["kept"]
        if upstream_chunked:  # re-framed by the gateway: its own coding, once
            assert values(r, "transfer-encoding") == ["chunked"]
        else:
            assert values(r, "content-length") == ["5"]
            assert values(r, "transfer-encoding") == []
        assert c.idle()


# --- 9. graceful stop -----------------------------------------------------------------------------


def test_stop_lets_the_answer_in_flight_finish_and_refuses_new_connections(
    gateway: GatewayProcess,
) -> None:
    gw = gateway
    _, key = gw.issue_key("notes:read")
    idle = Conn(gw.port)
    idle.send(get(key))
    assert idle.response().status == 200
    gw.upstream.reply = Reply(body=b"slow", delay=0.5)
    with Conn(gw.port) as busy, idle:
        busy.send(get(key, b"/notes/2"))
        time.sleep(0.15)  # the request is at the upstream
        stopper = threading.Thread(target=gw.stop)
        stopper.start()
        assert idle.closed(1.0)  # an idle keep-alive connection is closed at once
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()
        r = busy.response()
        assert (r.status, r.body) == (200, b"slow")
        assert (r.header("connection") or "").lower() == "close"
        assert busy.closed()
        stopper.join(10)
        assert not stopper.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(gw.admin_url + "/healthz", timeout=1)


# --- 10. the admin listener -----------------------------------------------------------------------


def upstream_seconds_count(gw: GatewayProcess) -> float:
    r = httpx.get(gw.admin_url + "/metrics", timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    m = re.search(r"(?m)^restguard_upstream_seconds_count ([0-9.e+]+)$", r.text)
    assert m, r.text[:500]
    return float(m.group(1))


def test_admin_healthz_and_upstream_metrics(gateway: GatewayProcess) -> None:
    gw = gateway
    r = httpx.get(gw.admin_url + "/healthz", timeout=5)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert upstream_seconds_count(gw) == 0
    _, key = gw.issue_key("notes:read")
    with Conn(gw.port) as c:
        for i in range(3):
            c.send(get(key, b"/notes/%d" % i))
            assert c.response().status == 200
        c.send(request(b"/notes/9"))  # refused (401): never reaches the upstream
        assert c.response().status == 401
    assert upstream_seconds_count(gw) == 3
    # The gateway listener does not serve the admin endpoints.
    with Conn(gw.port) as c:
        c.send(request(b"/metrics"))
        assert c.response().status == 404
