"""Review round 3 (after the round-2 fixes, 6cdf159), as an attacker: what still gets through.

Every test here fails against 6cdf159 and has a valid twin that must keep working. The whole
module takes ~20 s (most of it the event-loop freeze of case 1).

1. The urlencoded gate holds a name of brackets ("%5B" * n) without bound and re-decodes it on
   every feed: one anonymous chunked POST freezes the worker (quadratic, ~12 s for 15 KB).
2. JSON bodies are held whole in memory (10 MiB each, no budget across connections) by anyone
   a route allows, anonymous clients on public POST routes included.
3. A format extension on the prefix of an earlier subtree route (/api/admin.json with
   /api/admin/** before /api/{page}) is judged by the later route; Rails, DRF and old Spring
   route it to the subtree's handler.
4. X-Script-Name (Flask snippet #35's ReverseProxied, klaus, ...) is forwarded: the app strips
   the prefix from the path and runs a protected handler for an anonymous public request.
5. Form names in IIS's %uXXXX escapes, which ASP.NET decodes: X-HTTP-Method-Override again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.attacks.conftest import Keys
from tests.attacks.sockets import connect, read
from tests.attacks.wire import api_key, assert_forwarded, assert_refused, request, send
from tests.harness import GatewayProcess, RecordingUpstream
from tests.router_apps import Recorder, flask_app
from tests.stock_upstreams import WsgiRefUpstream


def _one_byte_chunks(body: bytes) -> bytes:
    return b"".join(b"1\r\n%s\r\n" % body[i : i + 1] for i in range(len(body))) + b"0\r\n\r\n"


# --- 1. the urlencoded gate holds a bracket run without bound, and re-reads it per feed ---------


def test_urlencoded_gate_is_linear_on_a_bracket_name(gw: GatewayProcess, keys: Keys) -> None:
    # UrlencodedGate keeps an unfinished name "open" while any reading of it may still become
    # an override name. Its qs/Rack reading drops every "[" and "]" ("[_method]" is "_method"),
    # so a name made only of brackets reads as "" -- a prefix of every override name -- and is
    # held however long it grows (there is no cap on held names). Every feed then rebuilds
    # held + data and decodes all of it again: _may_hold_override (unquote_to_bytes, a Python
    # loop over each "%") and _name_verdict (unquote_plus, strip, translate ...). With 1-byte
    # chunks (one feed per body byte whatever TCP does) a name of "%5B" * 5000 -- 15 KB of body,
    # ~90 KB on the wire, no credential needed on a public POST route -- freezes the worker's
    # event loop for ~10 s (quadratic: 24 KB ~ 30 s). Round 2 fixed the same class for "%" runs.
    body = b"%5B" * 5000 + b"=x"
    attack = request(
        b"/public/x",
        (b"Content-Type", b"application/x-www-form-urlencoded"),
        (b"Transfer-Encoding", b"chunked"),
        method=b"POST",
        body=_one_byte_chunks(body),
    )
    started = time.monotonic()
    with connect(gw.port, timeout=60.0) as attacker:
        attacker.sendall(attack)
        time.sleep(0.05)  # the attacker's bytes are in the gateway's hands
        victim = send(gw.port, request(b"/notes/1", api_key(keys.reader)), timeout=60.0)
        elapsed = time.monotonic() - started
        got = read(attacker, timeout=60.0)
    assert victim.status == 200
    assert [r.status for r in got.responses] == [200]
    assert elapsed < 2.5, f"another client waited {elapsed:.2f}s"
    # Twin: the same body in one piece (and ordinary bracketed names) is forwarded as sent.
    twin = request(
        b"/public/x",
        (b"Content-Type", b"application/x-www-form-urlencoded"),
        (b"Content-Length", b"%d" % len(body)),
        method=b"POST",
        body=body,
    )
    _, seen = assert_forwarded(gw, twin, b"/public/x", method="POST")
    assert seen.body == body


# --- 2. JSON bodies are held whole in memory, by anyone a route allows -------------------------


def _rss() -> int:
    """This process's resident memory in bytes (the gateway runs in a thread of it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_json_bodies_are_not_held_whole_in_memory(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    # JsonGate buffers a JSON body whole (up to max_body_bytes, 10 MiB) in the gateway's memory
    # once the request is allowed, before an upstream connection is taken; every other body
    # streams through at most body_buffer_bytes (64 KiB). The gate is chosen by the client's
    # own Content-Type ("/json" anywhere in it), so any route that allows a POST -- a public
    # one needs no credential at all -- takes it. There is no budget across connections: each
    # of max_connections (4096) clients may park 10 MiB (40 GiB in all), keeping the body
    # alive with client_body_min_rate (1 KiB/s) after sending it at loopback speed. nginx
    # spools request bodies beyond client_body_buffer_size (16 KiB) to disk instead.
    # Here: 20 anonymous clients, 10 MB each, never finished: ~200 MB of resident memory.
    # Fixed: the JSON gate streams (it keeps the first bytes of the string it is in, and holds
    # back the last byte). The upstream here reads and drops what it gets, so that what is
    # measured is the gateway's memory alone (the recorder would keep every body).
    sink = _Sink()
    gw = GatewayProcess(tmp_path / "gw", cast(RecordingUpstream, sink)).start()
    size = 10 * 1024 * 1024 - 4096
    body = b"[" + b"0," * ((size - 2) // 2) + b"0"
    clients: list[socket.socket] = []
    try:
        before = _rss()
        for i in range(20):
            s = connect(gw.port, timeout=10.0)
            clients.append(s)
            head = request(
                b"/public/upload%d" % i,
                (b"Content-Type", b"application/json"),
                (b"Content-Length", b"%d" % (len(body) + 1)),  # one byte still to come
                method=b"POST",
            )
            s.sendall(head + body)
        time.sleep(1.5)
        grown = _rss() - before
        assert grown < 64 << 20, f"20 unfinished JSON bodies hold {grown >> 20} MiB"
        # Twin: an honest JSON POST is forwarded whole (to the recorder, by another gateway).
        twin = b'{"title": "hello"}'
        honest = request(
            b"/public/x",
            (b"Content-Type", b"application/json"),
            (b"Content-Length", b"%d" % len(twin)),
            method=b"POST",
            body=twin,
        )
        recorded = GatewayProcess(tmp_path / "gw2", upstream).start()
        try:
            _, seen = assert_forwarded(recorded, honest, b"/public/x", method="POST")
        finally:
            recorded.stop()
        assert seen.body == twin
    finally:
        for s in clients:
            s.close()
        gw.stop()
        sink.stop()


class _Sink:
    """An upstream that reads and drops everything (it never answers)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(1 << 16):
                pass

    def stop(self) -> None:
        self._server.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


# --- 3. a format extension on the prefix of an earlier subtree route ----------------------------

SUBTREE_ROUTES = """\
[[routes]]
path = "/api/admin/**"
methods = ["GET"]
scopes = ["notes:admin"]

[[routes]]
path = "/api/{page}"
methods = ["GET"]
public = true
"""


@pytest.fixture(scope="module")
def subtree_gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("subtree") / "gw", upstream, routes=SUBTREE_ROUTES
    ).start()
    yield gateway
    gateway.stop()


def test_format_suffix_of_an_earlier_subtree_prefix(subtree_gw: GatewayProcess) -> None:
    # README: "/notes/** matches /notes itself and everything below it", and a path that
    # matches an earlier route once a format extension is dropped from its last segment is
    # refused (round 2: Rails' "(.:format)" on every route, Spring MVC's suffix patterns before
    # 5.3, DRF's format_suffix_patterns serve /api/admin.json from the /api/admin handler).
    # Route.matches_suffixed skips subtree routes, so with "/api/admin/**" (notes:admin) before
    # "/api/{page}" (public), an anonymous GET /api/admin.json is judged by the public route
    # and forwarded; Rails (`namespace :api { get "admin" => "admin#index" }` is
    # /api/admin(.:format)) runs the admin index for it. Case and a trailing slash on the same
    # prefix are already refused (/api/Admin); the extension is not.
    gw = subtree_gw
    _, admin = gw.issue_key("notes:admin", name="admin")
    assert_refused(gw, request(b"/api/admin.json"), 400, "invalid_request")
    assert_refused(gw, request(b"/api/admin.xml"), 400, "invalid_request")
    # Twins: the subtree itself with its scope, and another page with an extension.
    assert_forwarded(gw, request(b"/api/admin", api_key(admin)), b"/api/admin")
    assert_forwarded(
        gw, request(b"/api/admin/users.json", api_key(admin)), b"/api/admin/users.json"
    )
    assert_forwarded(gw, request(b"/api/about.json"), b"/api/about.json")
    assert_refused(gw, request(b"/api/Admin"), 400, "invalid_request")  # (already today)


# --- 4. a path-prefix header the upstream strips from the path it routes -----------------------


class ReverseProxied:
    """Flask snippet #35 ("Fixing SCRIPT_NAME/url_scheme when behind reverse proxy"), as copied
    into klaus (klaus/utils.py SubUri), Tandoor Recipes' docs and many Flask apps: the proxy
    names the mount point in X-Script-Name, and the app strips it from PATH_INFO."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        script_name = environ.get("HTTP_X_SCRIPT_NAME", "")
        if script_name:
            environ["SCRIPT_NAME"] = script_name
            path_info = environ["PATH_INFO"]
            if path_info.startswith(script_name):
                environ["PATH_INFO"] = path_info[len(script_name) :]
        scheme = environ.get("HTTP_X_SCHEME", "")
        if scheme:
            environ["wsgi.url_scheme"] = scheme
        return self.app(environ, start_response)


def test_path_prefix_header_cannot_move_the_routed_path(tmp_path: Path) -> None:
    # restguard refuses X-Original-URL and X-Rewrite-URL and strips X-Forwarded-Prefix,
    # X-Original-URI and X-Scheme (the snippet's other header) unless a trusted proxy sent
    # them -- but X-Script-Name goes through. An anonymous GET /public/notes/1 is judged by the
    # public route; the app strips the client's "X-Script-Name: /public" from PATH_INFO and
    # routes /notes/1: note.read (notes:read) runs for nobody.
    recorder = Recorder("flask-script-name")
    app = flask_app(recorder)
    server = WsgiRefUpstream(ReverseProxied(app))
    gw = GatewayProcess(tmp_path / "gw", server).start()  # type: ignore[arg-type]
    try:
        attack = request(b"/public/notes/1", (b"X-Script-Name", b"/public"))
        response = send(gw.port, attack)
        assert "note.read" not in recorder.ran(), (response.status, recorder.calls)
        assert response.status in (200, 400), response.status
        # Twins: the public page is served as itself; the note needs its scope.
        recorder.clear()
        assert send(gw.port, request(b"/public/notes/1")).status == 200
        assert recorder.ran() == ["public"]
        assert send(gw.port, request(b"/notes/1")).status == 401
        _, reader = gw.issue_key("notes:read", name="reader")
        recorder.clear()
        assert send(gw.port, request(b"/notes/1", api_key(reader))).status == 200
        assert recorder.ran() == ["note.read"]
    finally:
        gw.stop()
        server.stop()


# --- 5. a form name in IIS's %uXXXX escapes ----------------------------------------------------


def test_override_name_in_percent_u_escapes(gw: GatewayProcess) -> None:
    # Round 2 refused the X-HTTP-Method-Override *parameter* ASP.NET MVC reads from the form
    # (System.Web.Mvc GetHttpMethodOverride: Headers, then Form, then QueryString, names
    # compared without case). System.Web decodes form names with HttpUtility.UrlDecode, which
    # also reads IIS's non-standard "%uXXXX" escapes (HttpEncoder.UrlDecode: '%' 'u' and four
    # hex digits is one UTF-16 unit). The gates decode with unquote_plus, which leaves "%u0065"
    # as it is, so "X-HTTP-Method-Overrid%u0065" is an unknown name to restguard and
    # "X-HTTP-Method-Override" to ASP.NET: a POST acted on as DELETE. The query string is safe
    # (split_target refuses a "%" without two hex digits); form bodies are not checked so.
    form = (b"Content-Type", b"application/x-www-form-urlencoded")
    for body in (
        b"X-HTTP-Method-Overrid%u0065=DELETE",
        b"title=x&%u0058-HTTP-Method-Override=PUT",
    ):
        attack = request(
            b"/public/x", form, (b"Content-Length", b"%d" % len(body)), method=b"POST", body=body
        )
        assert_refused(gw, attack, 400, "invalid_request")
    # Twin: ordinary escapes in names and values are forwarded as sent.
    twin = b"title=%41%42+c&note%5Bx%5D=y"
    ok = request(
        b"/public/x", form, (b"Content-Length", b"%d" % len(twin)), method=b"POST", body=twin
    )
    _, seen = assert_forwarded(gw, ok, b"/public/x", method="POST")
    assert seen.body == twin
