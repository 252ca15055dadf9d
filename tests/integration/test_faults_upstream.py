"""Upstream faults (issue 6, findings 1 and 2), each injected by a scripted raw upstream: an
answer head that never ends, one that trickles, an upstream that goes quiet, and clients that
read slowly or not at all. Each asserts the outcome and that other clients are still served."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections.abc import Callable

from tests.attacks.wire import assert_json_error
from tests.harness import GatewayProcess
from tests.raw_upstream import Conn, RawUpstream, Seen, UpConn, get

Start = Callable[..., GatewayProcess]


def served_meanwhile(gw: GatewayProcess, key: str) -> float:
    """Seconds another client waits for an answer (through the same gateway, other path)."""
    started = time.monotonic()
    with Conn(gw.port, timeout=5) as c:
        c.send(get(key, b"/notes/other"))
        assert c.response().status == 200
    return time.monotonic() - started


def other_path_answers(handler: Callable[[UpConn, Seen], object]) -> Callable[..., object]:
    """``handler`` for /notes/1, a plain 200 for anything else."""

    async def dispatch(conn: UpConn, seen: Seen) -> None:
        if seen.target == b"/notes/1":
            await handler(conn, seen)  # type: ignore[misc]
        else:
            conn.answer(200, b"ok")

    return dispatch


def test_endless_answer_head_is_a_502_at_the_size_cap(raw: RawUpstream, start: Start) -> None:
    gw = start(raw, **{"upstream.timeout": '"10s"'})
    _, key = gw.issue_key("notes:read")
    streamed = [0]

    async def endless(conn: UpConn, seen: Seen) -> None:
        conn.write(b"HTTP/1.1 200 OK\r\n")
        while not conn.closed and streamed[0] < 50_000_000:
            line = b"X-Filler-%d: %s\r\n" % (streamed[0], b"a" * 200)
            conn.write(line)
            streamed[0] += len(line)
            await conn.drain()
            await asyncio.sleep(0)

    raw.handler = other_path_answers(endless)  # type: ignore[assignment]
    started = time.monotonic()
    with Conn(gw.port, timeout=10) as c:
        c.send(get(key))
        response = c.response()
    assert_json_error(response, 502, "bad_gateway")
    assert time.monotonic() - started < 3
    time.sleep(0.2)
    assert streamed[0] < 1_000_000  # the gateway stopped reading (and closed) near the cap
    assert raw.conns[0].closed
    assert served_meanwhile(gw, key) < 1


def test_too_many_header_fields_is_a_502(raw: RawUpstream, start: Start) -> None:
    gw = start(raw)
    _, key = gw.issue_key("notes:read")

    async def many(conn: UpConn, seen: Seen) -> None:
        fields = b"".join(b"X-%d: 1\r\n" % i for i in range(300))
        conn.write(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 2\r\n\r\nok")

    raw.handler = many
    with Conn(gw.port) as c:
        c.send(get(key))
        assert_json_error(c.response(), 502, "bad_gateway")
    # Twin: a head with a fair number of fields passes whole.
    raw.handler = lambda conn, seen: _fields(conn, 100)  # type: ignore[assignment,return-value]
    with Conn(gw.port) as c:
        c.send(get(key))
        response = c.response()
    assert response.status == 200 and response.header("X-99") == "1"


async def _fields(conn: UpConn, n: int) -> None:
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(n))
    conn.write(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 2\r\n\r\nok")


def test_answer_head_trickled_byte_by_byte_is_a_504_at_the_deadline(
    raw: RawUpstream, start: Start
) -> None:
    # Every byte arrives well within the timeout, so an idle timer alone would never fire.
    gw = start(raw, **{"upstream.timeout": '"1s"'})
    _, key = gw.issue_key("notes:read")

    async def trickle(conn: UpConn, seen: Seen) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
            if conn.closed:
                return
            conn.write(bytes([byte]))
            await asyncio.sleep(0.05)

    raw.handler = other_path_answers(trickle)  # type: ignore[assignment]
    started = time.monotonic()
    with Conn(gw.port, timeout=5) as c:
        c.send(get(key))
        response = c.response()
    elapsed = time.monotonic() - started
    assert_json_error(response, 504, "gateway_timeout")
    assert 0.9 < elapsed < 2.0, elapsed
    assert served_meanwhile(gw, key) < 1


def test_interim_answers_forever_are_a_504_at_the_deadline(raw: RawUpstream, start: Start) -> None:
    gw = start(raw, **{"upstream.timeout": '"1s"'})
    _, key = gw.issue_key("notes:read")

    async def interim(conn: UpConn, seen: Seen) -> None:
        while not conn.closed:
            conn.write(b"HTTP/1.1 102 Processing\r\n\r\n")
            await asyncio.sleep(0.1)

    raw.handler = other_path_answers(interim)  # type: ignore[assignment]
    started = time.monotonic()
    with Conn(gw.port, timeout=5) as c:
        c.send(get(key))
        assert_json_error(c.response(), 504, "gateway_timeout")
    assert time.monotonic() - started < 2.0


def test_upstream_quiet_after_its_head_cuts_the_answer(raw: RawUpstream, start: Start) -> None:
    gw = start(raw, **{"upstream.timeout": '"1s"'})
    _, key = gw.issue_key("notes:read")

    async def stall(conn: UpConn, seen: Seen) -> None:
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
        await asyncio.sleep(5)

    raw.handler = stall
    with Conn(gw.port, timeout=5) as c:
        c.send(get(key))
        started = time.monotonic()
        while b"half" not in c.buf:
            c._more()
        assert c.buf.startswith(b"HTTP/1.1 200 ") and c.buf.endswith(b"half")
        c.buf = b""
        assert c.closed(3)  # cut, never padded or spliced with an error
        assert 0.8 < time.monotonic() - started < 2.5


BIG = 8 * 1024 * 1024


def _big_download(raw: RawUpstream) -> bytes:
    body = random.Random(6).randbytes(BIG)

    async def big(conn: UpConn, seen: Seen) -> None:
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        view = memoryview(body)
        for i in range(0, BIG, 256 * 1024):
            conn.write(bytes(view[i : i + 256 * 1024]))
            await conn.drain()

    raw.handler = big
    return body


def test_a_client_pausing_longer_than_the_upstream_timeout_gets_its_whole_answer(
    raw: RawUpstream, start: Start
) -> None:
    # The upstream is healthy; the client stops reading for 2 s (twice the upstream timeout):
    # back-pressure pauses the upstream, and that pause is not the upstream going quiet.
    gw = start(raw, **{"upstream.timeout": '"1s"', "client_send_timeout": '"10s"'})
    _, key = gw.issue_key("notes:read")
    body = _big_download(raw)
    digest = hashlib.sha256()
    with Conn(gw.port, rcvbuf=64 * 1024, timeout=10) as c:
        c.send(get(key))
        while b"\r\n\r\n" not in c.buf:
            c._more()
        head, _, first = c.buf.partition(b"\r\n\r\n")
        c.buf = b""
        assert head.startswith(b"HTTP/1.1 200 ")
        digest.update(first)
        total = len(first)
        time.sleep(2.0)  # the pause
        while total < BIG:
            chunk = c.sock.recv(1 << 20)
            assert chunk, f"cut after {total} of {BIG} bytes"
            digest.update(chunk)
            total += len(chunk)
    assert digest.hexdigest() == hashlib.sha256(body).hexdigest()


def test_a_client_that_stops_reading_is_cut_after_the_send_timeout(
    raw: RawUpstream, start: Start
) -> None:
    gw = start(raw, **{"upstream.timeout": '"1s"', "client_send_timeout": '"1s"'})
    _, key = gw.issue_key("notes:read")
    _big_download(raw)
    with Conn(gw.port, rcvbuf=64 * 1024, timeout=10) as c:
        c.send(get(key))
        while b"\r\n\r\n" not in c.buf:
            c._more()
        stalled = time.monotonic()
        time.sleep(2.5)  # never read: past the 1 s send timeout
        # The gateway gave up on this client and dropped its upstream connection.
        deadline = time.monotonic() + 3
        while not raw.conns[0].closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert raw.conns[0].closed
        assert time.monotonic() - stalled < 4
        got = 0
        c.sock.settimeout(5)
        try:
            while chunk := c.sock.recv(1 << 20):
                got += len(chunk)
        except ConnectionResetError:
            pass
        assert got < BIG  # cut, not completed
    assert served_meanwhile(gw, key) < 1


def test_slow_upload_counts_as_upstream_activity_not_as_a_late_answer(
    raw: RawUpstream, start: Start
) -> None:
    # The head deadline starts once the request is completely sent: an upload that takes
    # longer than the upstream timeout (steadily, above the minimum rate) is not a 504.
    gw = start(raw, **{"upstream.timeout": '"1s"', "body_buffer_bytes": "1"})
    _, key = gw.issue_key("notes:read", "notes:write")
    size = 200_000
    body = bytes(i % 251 for i in range(size))
    with Conn(gw.port, timeout=10) as c:
        c.send(
            b"POST /notes/up HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Length: %d\r\n\r\n"
            % (key.encode(), size)
        )
        step = size // 25
        for i in range(0, size, step):  # 25 pieces over ~2.5 s
            c.send(body[i : i + step])
            time.sleep(0.1)
        response = c.response()
    assert response.status == 200
    assert raw.requests[-1].body == body


def test_upstream_timers_survive_many_requests_on_one_connection(
    raw: RawUpstream, start: Start
) -> None:
    # One timer per upstream connection, re-armed lazily: a slow answer on a connection that
    # already carried many quick ones still gets its 504.
    gw = start(raw, **{"upstream.timeout": '"1s"'})
    _, key = gw.issue_key("notes:read")
    with Conn(gw.port) as c:
        for i in range(50):
            c.send(get(key, b"/notes/%d" % i))
            assert c.response().status == 200
    slow = threading.Event()

    async def late(conn: UpConn, seen: Seen) -> None:
        slow.set()
        await asyncio.sleep(3)

    raw.handler = late
    with Conn(gw.port) as c:
        started = time.monotonic()
        c.send(get(key))
        assert_json_error(c.response(), 504, "gateway_timeout")
        assert time.monotonic() - started < 2
    assert slow.is_set()
