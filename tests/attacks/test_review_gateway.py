"""Review of the issue-5 gateway, as an attacker: what still gets through or falls over.

Every test here drives the real gateway over raw sockets and fails against the gateway it was
written for; each attack has a valid twin that must keep working. They are grouped by class:

* a request the policy refused, executed: ``_method`` parts the multipart gate does not see but
  Django or werkzeug parse (a header block the gate ends early at a bare LF, the preamble and
  epilogue, field names in another charset), and ``_method`` in bodies other upstreams read as
  forms (no Content-Type and multipart/mixed for Rack, JSON for Laravel);
* one client stalling every other: a catastrophic regex in the multipart gate, header fields
  buffered before they are capped, the upstream pool held by slow senders or slow readers;
* one connection growing without bound or parked forever: answers written for a client that
  never reads, a queued pipelined request refused out of turn;
* a traceback instead of an answer: unbounded recursion on pipelined ``Upgrade`` requests;
* credentials: restguard API keys forwarded under other header shapes, and a key in a refused
  URL logged when its prefix is percent-encoded.

The router-differential stacks (Flask and Django under wsgiref behind the gateway) come from
``test_router_differentials``. Every wait is bounded by the test's own socket deadlines.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.attacks.conftest import Keys
from tests.attacks.sockets import connect, read
from tests.attacks.test_router_differentials import (
    BOUNDARY,
    MULTIPART,
    Stack,
    each_stack,
    expect_handler,
    expect_refused,
    stack,
    stacks,
)
from tests.attacks.test_router_differentials import post as form_post
from tests.attacks.wire import (
    api_key,
    assert_forwarded,
    assert_json_error,
    assert_refused,
    exchange,
    request,
    send,
)
from tests.harness import GatewayProcess, Received, RecordingUpstream

Header = tuple[bytes, bytes]
_ = (stack, stacks)  # the router-differential stacks' fixtures, used by name below


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

    def connect(self, gw: GatewayProcess, timeout: float = 3.0) -> socket.socket:
        s = connect(gw.port, timeout=timeout)
        self.sockets.append(s)
        return s

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        for gw in self.gateways:
            gw.stop()


@pytest.fixture
def env(tmp_path: Path, upstream: RecordingUpstream) -> Iterator[Env]:
    upstream.clear()
    e = Env(tmp_path, upstream)
    yield e
    e.close()


def multipart_post(
    target: bytes, part_headers: bytes, *headers: Header, value: bytes = b"v"
) -> bytes:
    body = b"--XB\r\n" + part_headers + b"\r\n\r\n" + value + b"\r\n--XB--\r\n"
    return request(
        target,
        *headers,
        (b"Content-Type", b"multipart/form-data; boundary=XB"),
        (b"Content-Length", b"%d" % len(body)),
        method=b"POST",
        body=body,
    )


def served_within(gw: GatewayProcess, data: bytes, started: float, bound: float) -> None:
    """Another client's request is answered 200 within ``bound`` s of ``started``."""
    response = send(gw.port, data, timeout=30.0)
    elapsed = time.monotonic() - started
    assert response.status == 200, (response.status, response.body[:200])
    assert elapsed < bound, f"another client waited {elapsed:.2f}s"


# --- 1. one request freezes the event loop: super-linear regex in the multipart gate ------------


def test_multipart_part_header_is_scanned_in_linear_time(gw: GatewayProcess, keys: Keys) -> None:
    # wire.forms._PARAM = r'\s*([^=;"]*?)\s*=...' is applied with findall() to every
    # Content-Disposition value; on a run of spaces without '=' the three overlapping
    # quantifiers backtrack in ~n^3.5 steps (360 spaces ~ 3 s, 800 ~ 1 min, 2000 ~ hours). The
    # gate runs while the body is read, before the decision: an unauthenticated POST to a path
    # no route matches freezes every connection of the gateway.
    attack = multipart_post(b"/nowhere/at/all", b"Content-Disposition: x" + b" " * 360)
    started = time.monotonic()
    with connect(gw.port, timeout=30.0) as attacker:
        attacker.sendall(attack)
        served_within(gw, request(b"/notes/1", api_key(keys.reader)), started, 1.0)
        got = read(attacker, timeout=30.0)
    assert [r.status for r in got.responses] == [404]
    assert [r.target for r in gw.upstream.requests] == [b"/notes/1"]
    # Twin: an ordinary multipart body goes through the gate and reaches the upstream intact.
    twin = multipart_post(b"/public/upload", b'Content-Disposition: form-data; name="title"')
    _, seen = assert_forwarded(gw, twin, b"/public/upload", method="POST")
    assert seen.body.endswith(b'name="title"\r\n\r\nv\r\n--XB--\r\n')


# --- 2. header fields are capped only once complete -------------------------------------------

BIG_FIELDS = {
    # httptools concatenates the pieces of one header name or value in Python
    # (``_current_header_value += val``) and hands the field over only when it ends; the
    # gateway's max_header_bytes check (client_parsing.on_header) runs then. A field that never ends
    # grows at line rate until client_header_timeout (10 s by default), each piece copying the
    # whole field again (quadratic): one such client stalled another's request for 8.9 s.
    "head-value": b"GET /public/x HTTP/1.1\r\nHost: gateway.test\r\nX-Big: ",
    "head-name": b"GET /public/x HTTP/1.1\r\nHost: gateway.test\r\nX-",
    # Trailer fields are not counted at all (``on_header`` returns early outside the head).
    "trailer-value": (
        b"POST /public/x HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Big: "
    ),
}


@pytest.mark.parametrize("prefix", list(BIG_FIELDS.values()), ids=list(BIG_FIELDS))
def test_oversized_header_field_is_refused_before_it_ends(
    gw: GatewayProcess, prefix: bytes
) -> None:
    # 4 MiB of one header field is 256 times max_header_bytes (16 KiB): the gateway must refuse
    # (431 or 400) and close long before the field ends, not buffer it until a timeout.
    with connect(gw.port, timeout=5.0) as s:
        s.sendall(prefix)
        piece = b"a" * (256 * 1024)
        deadline = time.monotonic() + 3.0
        try:
            for _ in range(16):
                if time.monotonic() > deadline:
                    break
                s.sendall(piece)
        except OSError:
            pass  # the gateway refused and closed: what it should do
        got = read(s, count=0, timeout=1.0)
    assert got.responses, "the gateway kept reading one header field far past the cap"
    assert_json_error(got.responses[0], got.responses[0].status)
    assert got.responses[0].status in (400, 431)
    assert got.closed
    assert [r for r in gw.upstream.requests if r.target == b"/public/x"] == []
    # Twin: a large field under the cap is forwarded.
    value = b"v" * 8192
    _, seen = assert_forwarded(gw, request(b"/public/x", (b"X-Big", value)), b"/public/x")
    assert seen.header("X-Big") == value.decode()


# --- 3. a pipelined request refused while queued is answered out of turn, then hangs ----------


def test_queued_request_refused_by_its_body_is_answered_in_order(env: Env) -> None:
    # A (allowed, its answer takes a moment) + B (refused by the multipart gate while its body
    # is read, which happens while B is still queued behind A) + C, in one write. B's 400 is
    # written at once, before A's answer (RFC 9112 §9.3.2: answers go in request order); when
    # A is done, B's task finds itself finished and never hands over: C is never answered.
    gw = env.gateway()
    _, key = gw.issue_key("notes:read")
    env.upstream.reply.delay = 0.2
    a = request(b"/notes/1", api_key(key))
    b = multipart_post(b"/public/x", b'Content-Disposition: form-data; name="_method"')
    c = request(b"/public/c")
    s = env.connect(gw)
    s.sendall(a + b + c)
    got = read(s, count=3, timeout=2.0)
    env.upstream.reply.delay = 0
    statuses = [r.status for r in got.responses]
    assert statuses == [200, 400, 200], statuses
    assert got.responses[0].body == b'{"ok": true}'
    assert_json_error(got.responses[1], 400, "invalid_request")
    assert [r.target for r in env.upstream.requests] == [b"/notes/1", b"/public/c"]
    # Twin: the same three with an acceptable B are answered in order.
    env.upstream.clear()
    b_ok = multipart_post(b"/public/x", b'Content-Disposition: form-data; name="title"')
    s = env.connect(gw)
    s.sendall(a + b_ok + c)
    assert [r.status for r in read(s, count=3, timeout=2.0).responses] == [200, 200, 200]


@pytest.mark.parametrize("refusal", ["multipart-method", "body-over-limit"])
def test_queued_refusal_does_not_park_the_connection_forever(env: Env, refusal: str) -> None:
    # The same out-of-turn refusal leaves the connection with an "active" exchange that never
    # ends, and a busy connection has no timer at all: every slow-client timeout here is 300 ms,
    # yet such connections stay open forever. max_connections of them lock everyone out (503).
    gw = env.gateway(
        client_header_timeout='"300ms"',
        keepalive_timeout='"300ms"',
        client_body_timeout='"300ms"',
        max_connections="4",
        max_body_bytes="1024",
    )
    a = request(b"/public/a")
    if refusal == "multipart-method":
        b = multipart_post(b"/public/x", b'Content-Disposition: form-data; name="_method"')
    else:
        b = request(b"/public/x", (b"Content-Length", b"2000"), method=b"POST", body=b"a" * 2000)
    parked = [env.connect(gw) for _ in range(4)]
    for s in parked:
        s.sendall(a + b)
    time.sleep(1.5)  # five times every timeout
    for s in parked:
        got = read(s, count=0, timeout=0.5)
        assert got.closed, f"connection still open: {got.raw[:200]!r}"
    # Twin: with the parked ones gone, connections are free for others.
    response = send(gw.port, request(b"/public/victim"), timeout=2.0)
    assert response.status == 200, (response.status, response.body[:200])


# --- 4. answers written for a client that never reads: unbounded memory ------------------------


def test_client_that_never_reads_cannot_grow_the_write_buffer(gw: GatewayProcess) -> None:
    # Requests the gateway answers itself (404 here; 401, 403, 400, the JWKS) are written to the
    # client transport whatever its back-pressure: pause_writing() only pauses the upstream of
    # the active exchange. A client pipelining small requests and never reading makes the
    # gateway read on and buffer answers without bound (measured: RSS +400 MB in 20 s from one
    # connection sending 0.9 MB/s). Once the client's window and the write buffer are full, the
    # gateway must stop reading from it.
    one = b"GET /nowhere HTTP/1.1\r\nHost: gateway.test\r\n\r\n"
    burst = one * (65536 // len(one))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    try:
        s.connect(("127.0.0.1", gw.port))
        s.setblocking(False)

        def push(seconds: float) -> int:
            accepted, pending = 0, memoryview(b"")
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if not pending:
                    pending = memoryview(burst)
                try:
                    n = s.send(pending)
                except BlockingIOError:
                    time.sleep(0.005)
                    continue
                accepted += n
                pending = pending[n:]
            return accepted

        # Push in one-second windows until two windows in a row are refused every byte: the
        # gateway has stopped reading. How long the buffers take to fill depends on the machine
        # (a busy CI host answers the 404s slowly, and the kernel grows its receive window
        # meanwhile), so the test waits for the stall instead of timing it. A gateway that reads
        # on never stalls: it takes ~1 MB/s for as long as the client sends.
        total, quiet, deadline = 0, 0, time.monotonic() + 30.0
        while quiet < 2 and time.monotonic() < deadline:
            window = push(1.0)
            total += window
            quiet = quiet + 1 if window == 0 else 0
    finally:
        s.close()
    assert quiet == 2, f"the gateway kept reading from a client not reading: {total} bytes in 30 s"
    assert total < 16 * 1024 * 1024, f"the gateway read {total} bytes before it stopped"
    # Twin: a client that reads gets every pipelined answer, in order.
    answers = exchange(gw.port, one * 200, responses=200)
    assert [r.status for r in answers] == [404] * 200


# --- 5. a traceback: recursion on pipelined Upgrade requests -----------------------------------


def test_many_pipelined_upgrade_requests_are_all_answered(gw: GatewayProcess) -> None:
    # client_parsing._ignore_upgrade feeds what follows an ignored Upgrade back into data_received
    # recursively; ~330 bodiless Upgrade requests in one write exceed Python's recursion limit.
    # uvloop then logs "Fatal error on transport" with a RecursionError traceback (~300 KB of log
    # per 41 KB sent) and drops the connection: none of the requests is answered.
    one = (
        b"GET /public/u HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"
    )
    answers = exchange(gw.port, one * 1000, responses=1000, timeout=20.0)
    assert len(answers) == 1000, f"{len(answers)} of 1000 answered"
    assert {r.status for r in answers} == {200}
    assert len(gw.upstream.requests) == 1000
    assert all(r.header("Upgrade") is None for r in gw.upstream.requests)
    # Twin: a few of them were always fine.
    gw.upstream.clear()
    assert [r.status for r in exchange(gw.port, one * 10, responses=10)] == [200] * 10


# --- 6. pooled upstream connections held by a front-loaded trickle ----------------------------


def test_front_loaded_trickle_cannot_hold_the_upstream_pool(env: Env) -> None:
    # Bodies over body_buffer_bytes (64 KiB) take a pooled connection once that much arrived,
    # and the slow-body clock credits every byte already sent (seen / min_rate): 70 KB bought
    # ~68 s during which one byte per client_body_timeout keeps the body "fast enough". With
    # the default pool of 100, 100 such clients (7 MB, then 200 B/s in all) give every route
    # 503 for a minute, indefinitely with a fresh 64 KiB per client per minute.
    gw = env.gateway(
        pool_size="2",
        queue_timeout='"300ms"',
        client_body_timeout='"300ms"',
    )
    slow = [env.connect(gw) for _ in range(2)]
    head = request(b"/public/upload", (b"Content-Length", b"1000000"), method=b"POST")
    for s in slow:
        s.sendall(head + b"a" * 70_000)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            for s in slow:
                try:
                    s.send(b"a")
                except OSError:
                    return
            time.sleep(0.1)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        time.sleep(0.8)  # well past client_body_timeout; both bodies still trickling
        statuses = [
            send(gw.port, request(b"/public/v%d" % i), timeout=2.0).status for i in range(3)
        ]
    finally:
        stop.set()
        thread.join(2)
    assert statuses == [200, 200, 200], statuses


def test_clients_not_reading_a_large_answer_cannot_hold_the_upstream_pool(env: Env) -> None:
    # The other direction: the answer is streamed, so a client that stops reading a large answer
    # stops the upstream connection with it (pause_reading) for up to [upstream] timeout (30 s,
    # which the contract lets a client pause for), then does it again. pool_size such clients
    # give every route 503. A proxy frees the upstream by buffering what the client is slow to
    # take (nginx's proxy_buffering) rather than by holding a pooled connection for it.
    # An answer that fits [server] send_buffer_bytes (256 KiB) is taken from the upstream whole
    # even when its client reads nothing, so the pooled connection is free at once. (A larger
    # one holds its upstream connection until the client reads, at most client_send_timeout.)
    gw = env.gateway(pool_size="2", queue_timeout='"300ms"')
    env.upstream.reply.body = b"x" * (200 << 10)
    readers = []
    for i in range(2):
        s = socket.socket()
        env.sockets.append(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(3.0)
        s.connect(("127.0.0.1", gw.port))
        s.sendall(request(b"/public/big%d" % i))  # and never read
        readers.append(s)
    time.sleep(1.0)
    env.upstream.reply.body = b'{"ok": true}'
    statuses = [send(gw.port, request(b"/public/v%d" % i), timeout=2.0).status for i in range(3)]
    assert statuses == [200, 200, 200], statuses


# --- 7. `_method` in bodies other upstreams read as forms ---------------------------------------

FORM_LIKE = {
    # Rack::Request#form_data?: a POST *without* Content-Type is form data, and
    # Rack::MethodOverride (in every Rails app's default middleware stack, and Sinatra's
    # classic apps) turns POST + _method=DELETE into DELETE. WebOb (Pyramid) reads an empty
    # Content-Type as a form too.
    "no-content-type": ((), b"_method=DELETE"),
    "empty-content-type": (((b"Content-Type", b""),), b"_method=DELETE"),
    # Rack::Request#parseable_data?: multipart/mixed and multipart/related are parsed like
    # multipart/form-data, and their parts' Content-Disposition names are params.
    "multipart-mixed": (
        ((b"Content-Type", b"multipart/mixed; boundary=XB"),),
        b'--XB\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--XB--\r\n',
    ),
    # Laravel's Request::createFromBase replaces the form bag with the JSON body, and
    # Symfony's getMethod() (parameter override on in Laravel's kernel) reads _method there.
    "json": (((b"Content-Type", b"application/json"),), b'{"_method": "DELETE"}'),
}


@pytest.mark.parametrize("case", list(FORM_LIKE.values()), ids=list(FORM_LIKE))
def test_method_override_in_bodies_upstreams_parse_as_forms(
    gw: GatewayProcess, keys: Keys, case: tuple[tuple[Header, ...], bytes]
) -> None:
    headers, body = case
    data = request(
        b"/notes/1",
        api_key(keys.writer),
        *headers,
        (b"Content-Length", b"%d" % len(body)),
        method=b"POST",
        body=body,
    )
    assert_refused(gw, data, 400, "invalid_request")
    # Twin: the same shapes without _method are forwarded with their body intact.
    twin_body = body.replace(b"_method", b"title").replace(b"DELETE", b"hello")
    twin = request(
        b"/notes/1",
        api_key(keys.writer),
        *headers,
        (b"Content-Length", b"%d" % len(twin_body)),
        method=b"POST",
        body=twin_body,
    )
    _, seen = assert_forwarded(gw, twin, b"/notes/1", method="POST")
    assert seen.body == twin_body


# --- 7b. a `_method` part hidden behind a header block the gate ends early ---------------------


def _one_part(after_delimiter: bytes, name: bytes, value: bytes) -> bytes:
    return (
        b"--"
        + BOUNDARY
        + after_delimiter
        + b'Content-Disposition: form-data; name="'
        + name
        + b'"\r\n\r\n'
        + value
        + b"\r\n--"
        + BOUNDARY
        + b"--\r\n"
    )


HIDDEN_PARTS = {
    # MultipartGate ends a part's header block at "\n\r?\n" (lenient about bare LF), so it
    # checks less than a parser that ends the block only at CRLF CRLF and splits lines on CRLF
    # (Django) or that reads on past a lone "\n\r\n" (werkzeug): both take the line after it
    # as one more header of the same part, here a Content-Disposition naming _method.
    "lf-crlf-inside": (b"\r\nContent-Type: text/plain\n\r\n", b"\r\nContent-Type: text/plain\r\n"),
    "lf-crlf-after-delimiter": (b"\n\r\n", b"\r\n"),
}


@each_stack(["gateway-flask", "gateway-django"])
@pytest.mark.parametrize("shape", list(HIDDEN_PARTS.values()), ids=list(HIDDEN_PARTS))
def test_method_part_after_a_bare_lf_line_end(stack: Stack, shape: tuple[bytes, bytes]) -> None:
    # POST /notes/{id} needs notes:write, DELETE /notes/{id} notes:admin. Today the writer's
    # POST runs note.delete on Flask and on Django: a request the policy refused, executed.
    k = stack.key
    hidden, plain = shape
    body = _one_part(hidden, b"_method", b"DELETE")
    expect_refused(
        stack, form_post(b"/notes/1", k("writer"), body=body, content_type=MULTIPART), 400
    )
    # Twin: the same part with CRLF line ends, naming an ordinary field, reaches note.update.
    twin = _one_part(plain, b"title", b"hi")
    expect_handler(
        stack,
        form_post(b"/notes/1", k("writer"), body=twin, content_type=MULTIPART),
        "note.update",
        {"id": "1", "title": "hi"},
        who="writer",
    )


OUTSIDE_PARTS = {
    # Django's multipart Parser hands the preamble (before the first delimiter) and the
    # epilogue (after the close delimiter) to parse_boundary_stream like any part: a header
    # block there is a field. MultipartGate checks header blocks only after a delimiter and
    # takes "--boundary--" as the end of all of them.
    "preamble": b'Content-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--'
    + BOUNDARY
    + b'\r\nContent-Disposition: form-data; name="title"\r\n\r\nhi\r\n--'
    + BOUNDARY
    + b"--\r\n",
    "epilogue": b"--"
    + BOUNDARY
    + b'\r\nContent-Disposition: form-data; name="title"\r\n\r\nhi\r\n--'
    + BOUNDARY
    + b'--\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE',
    "no-delimiter-at-all": b'Content-Disposition: form-data; name="_method"\r\n\r\nDELETE',
}


@each_stack(["gateway-django"])
@pytest.mark.parametrize("body", list(OUTSIDE_PARTS.values()), ids=list(OUTSIDE_PARTS))
def test_method_part_outside_the_delimiters(stack: Stack, body: bytes) -> None:
    # The writer's POST runs note.delete on Django today (DELETE needs notes:admin).
    k = stack.key
    expect_refused(
        stack, form_post(b"/notes/1", k("writer"), body=body, content_type=MULTIPART), 400
    )
    # Twin: the ordinary body with the same field, inside the delimiters, reaches note.update.
    twin = _one_part(b"\r\n", b"title", b"hi")
    expect_handler(
        stack,
        form_post(b"/notes/1", k("writer"), body=twin, content_type=MULTIPART),
        "note.update",
        {"id": "1", "title": "hi"},
        who="writer",
    )


CHARSET_NAMES = {
    # Django decodes a field name with the charset it is given: RFC 2231 ``name*=cs''v`` with
    # any codec Python knows, and a plain name with the request's ``charset`` parameter.
    # MultipartGate reads every name as latin-1, so "+AF8-method" (UTF-7 for "_method") and
    # UTF-16 bytes pass it.
    "rfc2231-utf-7": (MULTIPART, b"name*=utf-7''+AF8-method"),
    "rfc2231-utf-16le": (MULTIPART, b"name*=utf-16le''%5F%00m%00e%00t%00h%00o%00d%00"),
    "charset-param-utf-7": (MULTIPART + b"; charset=utf-7", b'name="+AF8-method"'),
}


@each_stack(["gateway-django"])
@pytest.mark.parametrize("case", list(CHARSET_NAMES.values()), ids=list(CHARSET_NAMES))
def test_method_part_named_in_another_charset(stack: Stack, case: tuple[bytes, bytes]) -> None:
    content_type, params = case
    k = stack.key
    body = (
        b"--"
        + BOUNDARY
        + b"\r\nContent-Disposition: form-data; "
        + params
        + b"\r\n\r\nDELETE\r\n--"
        + BOUNDARY
        + b"--\r\n"
    )
    data = form_post(b"/notes/1", k("writer"), body=body, content_type=content_type)
    expect_refused(stack, data, 400)
    # Twin: a field named in plain ASCII reaches note.update (a Content-Type whose charset is
    # not ASCII-compatible is refused whatever the body holds: the upstream would decode in it).
    twin = _one_part(b"\r\n", b"title", b"hi")
    expect_handler(
        stack,
        form_post(b"/notes/1", k("writer"), body=twin, content_type=MULTIPART),
        "note.update",
        {"id": "1", "title": "hi"},
        who="writer",
    )


# --- 8. restguard keys forwarded under other header shapes -------------------------------------


def _other_shapes(key: str) -> dict[str, Header]:
    raw = key.encode()
    return {
        # Stripe-style `curl -u rg_ak_...:`; GitHub-style `token`; a bare key.
        "basic": (b"Authorization", b"Basic " + base64.b64encode(raw + b":")),
        "token-scheme": (b"Authorization", b"Token " + raw),
        "bare-authorization": (b"Authorization", raw),
        "other-header": (b"X-Auth-Token", raw),
        "api-key-header": (b"Api-Key", raw),
    }


@pytest.mark.parametrize("shape", list(_other_shapes("rg_ak_x")))
def test_key_in_another_header_shape_is_not_forwarded(
    gw: GatewayProcess, keys: Keys, shape: str
) -> None:
    # CONTRACT: restguard's own credentials never reach the upstream unless the route sets
    # forward_credentials, on public routes too. The rg_ak_ prefix exists so that a key is
    # recognisable wherever it is (the query string is refused on sight); in headers only
    # three exact shapes are recognised, so a client using any other sends its live key on.
    name, value = _other_shapes(keys.reader)[shape]
    _, seen = assert_forwarded(gw, request(b"/public/x", (name, value)), b"/public/x")
    secret = keys.reader.split("_", 3)[3].encode()
    assert secret not in _decoded(seen), f"the upstream received the key in {name!r}"
    # Twin: an unrelated value in the same header is forwarded as sent.
    _, seen = assert_forwarded(gw, request(b"/public/x", (name, b"Token abc")), b"/public/x")
    assert seen.header(name.decode()) == "Token abc"


def _decoded(seen: Received) -> bytes:
    """Every header value the upstream received, Basic credentials base64-decoded too."""
    out = b""
    for _, value in seen.headers:
        out += value
        if value.lower().startswith(b"basic "):
            try:
                out += base64.b64decode(value[6:])
            except ValueError:
                pass
    return out


# --- 9. a key in a refused request's URL reaches the audit log --------------------------------


def test_percent_encoded_key_in_a_refused_path_is_not_logged(env: Env) -> None:
    # Guard.refused() logs the raw target of a request refused before it could be viewed, and
    # tokens.redact() only knows "rg", two lower-case letters and "_" or "%5F". A key whose
    # prefix letters are percent-encoded (any URL decoder yields the key) is logged in full.
    gw = env.gateway()
    _, key = gw.issue_key("notes:read", name="reader")
    secret = key.split("_", 3)[3]
    hidden = key.replace("rg_ak_", "%72g%5Fak%5F").encode()
    for data in (
        b"GET /notes/" + hidden + b" HTTP/1.1\r\n\r\n",  # no Host: refused before the view
        b"GET /notes/" + hidden + b"/%2F HTTP/1.1\r\nHost: gateway.test\r\n\r\n",
    ):
        assert send(gw.port, data).status == 400
    # Twin: the same refusals with the prefix written plainly are redacted.
    assert send(gw.port, b"GET /notes/" + key.encode() + b" HTTP/1.1\r\n\r\n").status == 400
    events = gw.audit_events()
    assert len(events) == 3
    assert "rg_ak_[redacted]" in events[2]["path"]
    leaked = [e["path"] for e in events if secret in str(e)]
    assert leaked == [], leaked
