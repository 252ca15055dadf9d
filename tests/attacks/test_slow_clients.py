"""Slow clients (finding 4): partial heads, trickled bodies, idle keep-alive connections, too many
connections, and a pool drained by slow senders. Each attack runs on a gateway with tiny limits
(``[server] client_header_timeout``, ``keepalive_timeout``, ``client_body_timeout``,
``max_connections``; ``[upstream] pool_size``, ``queue_timeout``) and asserts both that the attacker
is cut off in bounded time and that other clients are still served meanwhile.

Every wait here is bounded by the test's own socket deadlines, whatever the gateway does.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.attacks.sockets import connect, read
from tests.attacks.wire import api_key, assert_json_error, request, send
from tests.harness import GatewayProcess, RecordingUpstream


class Env:
    """Gateways with chosen settings, and client sockets closed before the gateways stop."""

    def __init__(self, tmp_path: Path, upstream: RecordingUpstream) -> None:
        self.tmp_path, self.upstream = tmp_path, upstream
        self.gateways: list[GatewayProcess] = []
        self.sockets: list[socket.socket] = []

    def gateway(self, **extra: str) -> GatewayProcess:
        directory = self.tmp_path / f"gw{len(self.gateways)}"
        gw = GatewayProcess(directory, self.upstream, extra=extra).start()
        self.gateways.append(gw)
        return gw

    def connect(self, gw: GatewayProcess) -> socket.socket:
        s = connect(gw.port, timeout=3.0)
        self.sockets.append(s)
        return s

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        for gw in self.gateways:
            gw.stop()


@pytest.fixture
def env(tmp_path: Path, upstream: RecordingUpstream) -> Iterator[Env]:
    e = Env(tmp_path, upstream)
    yield e
    e.close()


def readable(s: socket.socket) -> bool:
    return bool(select.select([s], [], [], 0)[0])


def post_head(key: str, length: int, target: bytes = b"/notes/1") -> bytes:
    return request(
        target, api_key(key), (b"Content-Length", b"%d" % length), method=b"POST", body=b""
    )


def assert_served_quickly(gw: GatewayProcess, key: str, bound: float = 1.0) -> None:
    """Another client gets its answer within ``bound`` seconds."""
    started = time.monotonic()
    response = send(gw.port, request(b"/notes/1", api_key(key)), timeout=2.0)
    elapsed = time.monotonic() - started
    assert response.status == 200, (response.status, response.body[:200])
    assert elapsed < bound, f"another client waited {elapsed:.2f}s"


def assert_cut_with(s: socket.socket, status: int, deadline: float) -> None:
    """``s`` gets one JSON ``status`` answer and is closed, before ``deadline``."""
    got = read(s, count=0, timeout=max(0.05, deadline - time.monotonic()))
    assert got.responses, f"no answer before the deadline (closed={got.closed}, raw={got.raw!r})"
    assert_json_error(got.responses[0], status)
    assert got.closed, "the connection stayed open"
    assert time.monotonic() <= deadline + 0.05


# --- request heads ------------------------------------------------------------------------------


def test_slowloris_partial_heads_get_408_and_others_are_served(env: Env) -> None:
    gw = env.gateway(client_header_timeout='"300ms"')
    _, key = gw.issue_key("notes:read")
    started = time.monotonic()
    slow = [env.connect(gw) for _ in range(100)]
    for s in slow:
        s.sendall(b"GET /notes/1 HTTP/1.1\r\nHo")
    silent = [env.connect(gw) for _ in range(10)]  # connected, not a byte sent
    assert_served_quickly(gw, key)
    deadline = started + 2.0  # 300 ms, plus slack for a loaded machine
    for s in slow:
        assert_cut_with(s, 408, deadline)
    for s in silent:
        got = read(s, count=0, timeout=max(0.05, deadline - time.monotonic()))
        assert got.closed and got.raw == b"", got  # nothing arrived: closed without an answer
    assert [r.target for r in env.upstream.requests] == [b"/notes/1"]  # the other client only
    # Twin: a head in two parts, well within the timeout, is served.
    s = env.connect(gw)
    data = request(b"/notes/2", api_key(key))
    s.sendall(data[:20])
    time.sleep(0.1)
    s.sendall(data[20:])
    got = read(s, timeout=2.0)
    assert [r.status for r in got.responses] == [200]


def test_head_trickled_byte_by_byte_is_cut(env: Env) -> None:
    # Every byte arrives well within the timeout, yet the head as a whole must be complete within
    # client_header_timeout of its first byte: a trickle does not reset the clock.
    gw = env.gateway(client_header_timeout='"300ms"')
    _, key = gw.issue_key("notes:read")
    s = env.connect(gw)
    head = b"GET /notes/1 HTTP/1.1\r\nHost: gateway.test\r\nX-Pad: " + b"a" * 200
    started = time.monotonic()
    for i, byte in enumerate(head):
        if readable(s) or time.monotonic() - started > 2.5:
            break
        try:
            s.send(bytes([byte]))
        except OSError:
            break
        if i == 3:
            assert_served_quickly(gw, key)
        time.sleep(0.05)
    assert_cut_with(s, 408, started + 1.5)
    assert [r.target for r in env.upstream.requests] == [b"/notes/1"]


def test_idle_keepalive_connection_is_closed(env: Env) -> None:
    gw = env.gateway(keepalive_timeout='"300ms"')
    _, key = gw.issue_key("notes:read")
    s = env.connect(gw)
    s.sendall(request(b"/notes/1", api_key(key)))
    assert [r.status for r in read(s).responses] == [200]
    # Twin: reused within the timeout, the connection serves the next request.
    time.sleep(0.1)
    s.sendall(request(b"/notes/2", api_key(key)))
    assert [r.status for r in read(s).responses] == [200]
    idle_since = time.monotonic()
    got = read(s, count=0, timeout=2.0)
    assert got.closed, "an idle keep-alive connection stayed open"
    assert got.raw == b""  # no byte of a next request arrived: no 408, just closed
    assert time.monotonic() - idle_since < 1.2


# --- request bodies -----------------------------------------------------------------------------

LENGTHS = pytest.mark.parametrize("length", [1000, 200_000], ids=["buffered-body", "streamed-body"])


def assert_body_twin(env: Env, gw: GatewayProcess, key: str, length: int) -> None:
    """An honest sender, in pieces well above the minimum rate, is answered with its body."""
    body = bytes(i % 251 for i in range(length))
    s = env.connect(gw)
    s.sendall(post_head(key, length, b"/notes/twin"))
    step = max(1, length // 5)
    for i in range(0, length, step):
        s.sendall(body[i : i + step])
        time.sleep(0.05)
    got = read(s, timeout=3.0)
    assert [r.status for r in got.responses] == [200]
    [seen] = [r for r in env.upstream.requests if r.target == b"/notes/twin"]
    assert seen.body == body


@LENGTHS
def test_stalled_body_gets_408(env: Env, length: int) -> None:
    gw = env.gateway(client_body_timeout='"300ms"')
    _, key = gw.issue_key("notes:read", "notes:write")
    s = env.connect(gw)
    started = time.monotonic()
    s.sendall(post_head(key, length) + b"x" * 100)  # then nothing more
    assert_served_quickly(gw, key)
    assert_cut_with(s, 408, started + 1.5)
    assert not [r for r in env.upstream.requests if r.method == "POST"]
    assert_body_twin(env, gw, key, length)


@LENGTHS
def test_body_trickled_below_the_minimum_rate_gets_408(env: Env, length: int) -> None:
    # One byte every 100 ms: each gap is within client_body_timeout, but the average (10 B/s)
    # is far below client_body_min_rate (1024 B/s by default) once the first timeout has passed.
    gw = env.gateway(client_body_timeout='"300ms"')
    _, key = gw.issue_key("notes:read", "notes:write")
    s = env.connect(gw)
    started = time.monotonic()
    s.sendall(post_head(key, length) + b"x" * 10)
    for i in range(30):
        if readable(s):
            break
        try:
            s.send(b"x")
        except OSError:
            break
        if i == 2:
            assert_served_quickly(gw, key)
        time.sleep(0.1)
    assert_cut_with(s, 408, started + 2.0)
    assert not [r for r in env.upstream.requests if r.method == "POST"]
    assert_body_twin(env, gw, key, length)


# --- connections and the upstream pool ----------------------------------------------------------


def test_connection_cap_gets_503_and_frees_up(env: Env) -> None:
    gw = env.gateway(max_connections="20")
    _, key = gw.issue_key("notes:read")
    held = []
    for i in range(20):  # idle keep-alive clients, each served once
        s = env.connect(gw)
        s.sendall(request(b"/notes/%d" % i, api_key(key)))
        assert [r.status for r in read(s).responses] == [200]
        held.append(s)
    extra = env.connect(gw)
    got = read(extra, count=0, timeout=0.3)  # refused at once, or after reading the request
    if not got.responses and not got.closed:
        extra.sendall(request(b"/notes/over", api_key(key)))
        got = read(extra, count=0, timeout=2.0)
    assert got.responses, f"the connection over the cap got no answer (closed={got.closed})"
    response = got.responses[0]
    assert_json_error(response, 503, "temporarily_unavailable")
    assert int(response.header("Retry-After") or 0) >= 1
    assert got.closed
    assert b"/notes/over" not in [r.target for r in env.upstream.requests]
    # The connections within the cap are still served.
    held[0].sendall(request(b"/notes/again", api_key(key)))
    assert [r.status for r in read(held[0]).responses] == [200]
    # Once some close, a new client gets in within a moment.
    for s in held[-5:]:
        s.close()
    deadline = time.monotonic() + 1.0
    while True:
        got = read_one(gw, key)
        if got == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert got == 200


def read_one(gw: GatewayProcess, key: str) -> int | None:
    """The status of one fresh request, or None if it got no answer."""
    with connect(gw.port, timeout=2.0) as s:
        try:
            s.sendall(request(b"/notes/1", api_key(key)))
        except OSError:
            return None
        got = read(s, timeout=2.0)
    return got.responses[0].status if got.responses else None


def test_pool_wait_is_bounded_with_503(env: Env) -> None:
    gw = env.gateway(pool_size="2", queue_timeout='"300ms"')
    _, key = gw.issue_key("notes:read")
    env.upstream.reply.delay = 1.0
    busy = [env.connect(gw) for _ in range(2)]
    for i, s in enumerate(busy):
        s.sendall(request(b"/notes/busy%d" % i, api_key(key)))
    time.sleep(0.2)  # both hold a pooled connection, waiting on the slow upstream
    started = time.monotonic()
    response = send(gw.port, request(b"/notes/queued", api_key(key)), timeout=3.0)
    waited = time.monotonic() - started
    assert_json_error(response, 503, "temporarily_unavailable")
    assert int(response.header("Retry-After") or 0) >= 1
    assert waited < 0.9, f"waited {waited:.2f}s for a pooled connection"
    for s in busy:
        assert [r.status for r in read(s, timeout=3.0).responses] == [200]
    env.upstream.reply.delay = 0
    # Twin: with a free pooled connection the same request is served.
    assert_served_quickly(gw, key)
    assert b"/notes/queued" not in [r.target for r in env.upstream.requests]


def test_slow_small_bodies_hold_no_pooled_connection(env: Env) -> None:
    # Bodies up to body_buffer_bytes are read completely before an upstream connection is taken:
    # twice as many slow senders as pooled connections do not stall anyone.
    gw = env.gateway(pool_size="2", queue_timeout='"2s"', client_body_timeout='"5s"')
    _, key = gw.issue_key("notes:read", "notes:write")
    slow = [env.connect(gw) for _ in range(4)]
    for i, s in enumerate(slow):
        s.sendall(post_head(key, 100, b"/notes/slow%d" % i) + b"a" * 10)
    time.sleep(0.3)
    assert_served_quickly(gw, key)
    assert not [r for r in env.upstream.requests if r.method == "POST"]
    for s in slow:
        s.sendall(b"a" * 90)
    for s in slow:
        assert [r.status for r in read(s, timeout=2.0).responses] == [200]
    posts = sorted((r.target, r.body) for r in env.upstream.requests if r.method == "POST")
    assert posts == [(b"/notes/slow%d" % i, b"a" * 100) for i in range(4)]
