"""TLS on the gateway listener, end to end: a real ``restguard serve`` process with
``[server] tls_cert``/``tls_key`` from a test CA, driven by curl, httpx and raw sockets.

What must hold: API keys work over HTTPS and the upstream is told ``X-Forwarded-Proto: https``;
TLS 1.1 and plain HTTP are refused; a client that never finishes its handshake is closed within
``client_header_timeout`` (the handshake counts against it); none of this disturbs other
clients or leaves anything in the log; ``--workers 2`` serves TLS in every process; a bad pair
stops ``check`` and ``serve`` with one line.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

import restguard.cli.serve as serve_module
from restguard.config import ConfigError, Settings, load
from restguard.gateway.server import Gateway, make_gateway
from tests.faults import (
    RESTGUARD,
    ServeProcess,
    ready_workers,
    serve_dir,
    set_keys,
    wait_until,
    worker_decisions,
)
from tests.harness import TEST_ROUTES, GatewayProcess, RecordingUpstream
from tests.pki import Pki, subject_of

pytestmark = pytest.mark.slow

CURL = shutil.which("curl")
HEADER_TIMEOUT = 1.0


def tls_config(directory: Path, upstream: RecordingUpstream, pki: Pki) -> Path:
    """A data directory whose gateway speaks TLS with a certificate from ``pki``."""
    config = serve_dir(directory, upstream=upstream.url, routes=TEST_ROUTES)
    cert, key = pki.pair()
    listen = next(
        line.split('"')[1] for line in config.read_text().splitlines() if line.startswith("listen")
    )
    values = {
        "tls_cert": f'"{cert}"',
        "tls_key": f'"{key}"',
        "public_url": f'"https://{listen}"',
        "client_header_timeout": f'"{HEADER_TIMEOUT:g}s"',
    }
    set_keys(config, "server", values)
    return config


def api_key(config: Path, *scopes: str) -> str:
    scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
    command = [*RESTGUARD, "apikey", "create", "--config", str(config), "--name", "tls"]
    done = subprocess.run(
        [*command, "--json", *scope_args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["key"])


class Tls:
    """The module's TLS gateway: a ``restguard serve`` process, its CA and an API key."""

    def __init__(self, serve: ServeProcess, pki: Pki, key: str) -> None:
        self.serve, self.pki, self.key = serve, pki, key
        self.port = serve.port
        self.url = f"https://127.0.0.1:{serve.port}"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca))

    def status(self, path: str) -> int:
        """GET ``path`` on a new connection (http.client): the status."""
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.client_context(), timeout=5
        )
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        finally:
            conn.close()

    def assert_quiet(self) -> None:
        """Nothing about handshakes (or anything else going wrong) reached the log."""
        err = self.serve.stderr
        assert "Traceback" not in err
        for word in ("ssl", "handshake", "error", "fatal", "warning"):
            assert word not in err.lower(), err


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream) -> Iterator[Tls]:
    root = tmp_path_factory.mktemp("tls")
    pki = Pki(root / "pki")
    config = tls_config(root / "data", upstream, pki)
    key = api_key(config, "notes:read")
    serve = ServeProcess(config)
    try:
        serve.wait_up()
        yield Tls(serve, pki, key)
    finally:
        serve.stop()


# --- clients we did not write ---------------------------------------------------------------------


@pytest.mark.skipif(CURL is None, reason="the curl binary is not installed")
def test_curl_with_the_ca_gets_through_with_an_api_key(
    tls: Tls, upstream: RecordingUpstream
) -> None:
    assert CURL is not None
    upstream.clear()

    def curl(*args: str) -> tuple[int, str]:
        options = ["-s", "--max-time", "10", "--cacert", str(tls.pki.ca), "-w", "\n%{http_code}"]
        done = subprocess.run(
            [CURL, *options, *args],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert done.returncode == 0, done.stderr
        body, _, status = done.stdout.rpartition("\n")
        return int(status), body

    # (a client's own claim about the scheme is not believed)
    status, body = curl(
        "-H", f"X-API-Key: {tls.key}", "-H", "X-Forwarded-Proto: http", tls.url + "/notes/7"
    )
    assert (status, json.loads(body)) == (200, {"ok": True})
    seen = upstream.last()
    assert seen.header("X-Forwarded-Proto") == "https"
    assert seen.header("X-Restguard-Auth-Method") == "api_key"
    assert seen.header("X-API-Key") is None
    status, body = curl(tls.url + "/notes/7")  # no key: the guard decides as ever
    assert (status, json.loads(body)["error"]) == (401, "unauthorized")
    assert len(upstream.requests) == 1
    # without the CA, curl refuses the certificate (no public CA issued it)
    done = subprocess.run([CURL, "-s", tls.url + "/public/x"], capture_output=True, timeout=20)
    assert done.returncode == 60  # CURLE_PEER_FAILED_VERIFICATION
    tls.assert_quiet()


def test_httpx_with_the_ca_keeps_its_connection_alive(
    tls: Tls, upstream: RecordingUpstream
) -> None:
    upstream.clear()
    ports = set()
    with httpx.Client(verify=tls.client_context(), timeout=5) as client:
        for _ in range(3):
            r = client.get(tls.url + "/notes/7", headers={"Authorization": f"Bearer {tls.key}"})
            assert (r.status_code, r.json(), r.http_version) == (200, {"ok": True}, "HTTP/1.1")
            stream = r.extensions["network_stream"]
            ports.add(stream.get_extra_info("client_addr")[1])
            assert stream.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        r = client.post(tls.url + "/public/echo", content=b"x" * 200_000)
        assert r.status_code == 200
    assert len(ports) == 1  # one connection served them all
    assert [seen.header("X-Forwarded-Proto") for seen in upstream.requests] == ["https"] * 4
    assert upstream.last().body == b"x" * 200_000
    tls.assert_quiet()


# --- what is refused, and harms no one -----------------------------------------------------------


def _old_protocol_client() -> ssl.SSLContext:
    """A client that offers TLS 1.1 at most (OpenSSL 3 needs security level 0 for it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _tls11_possible(pki: Pki) -> bool:
    """Whether this OpenSSL speaks TLS 1.1 at all: a handshake with a server that allows it."""
    cert, key = pki.pair("old")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.TLSv1_1
    try:
        server.set_ciphers("DEFAULT:@SECLEVEL=0")
        server.load_cert_chain(cert, key)
    except ssl.SSLError:
        return False
    listener = socket.create_server(("127.0.0.1", 0))
    versions: list[str | None] = []

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls_conn:
                versions.append(tls_conn.version())
        except OSError:
            versions.append(None)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=5) as raw,
            _old_protocol_client().wrap_socket(raw),
        ):
            pass
    except OSError:
        pass
    thread.join(5)
    listener.close()
    return versions == ["TLSv1.1"]


def test_tls_1_1_is_refused(tls: Tls) -> None:
    if not _tls11_possible(tls.pki):
        pytest.skip("the local OpenSSL cannot offer TLS 1.1")
    with (
        socket.create_connection(("127.0.0.1", tls.port), timeout=5) as raw,
        pytest.raises(OSError),  # (ssl.SSLError, or the connection reset)
    ):
        _old_protocol_client().wrap_socket(raw)
    assert tls.status("/public/after-tls11") == 200
    tls.assert_quiet()


def _closed_after(sock: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    """Read until the server closes ``sock``: (what it sent, seconds it took)."""
    sock.settimeout(limit)
    started, got = time.monotonic(), b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    return got, time.monotonic() - started


def test_plain_http_to_the_tls_port_is_refused_and_harms_no_one(
    tls: Tls, upstream: RecordingUpstream
) -> None:
    upstream.clear()
    key = tls.key.encode()
    with httpx.Client(verify=tls.client_context(), timeout=5) as client:
        assert client.get(tls.url + "/public/before").status_code == 200
        for request in (
            b"GET /public/plain HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /notes/7 HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key + b"\r\n\r\n",
            b"\r\n\r\n\x00" * 100,
        ):
            with socket.create_connection(("127.0.0.1", tls.port), timeout=5) as raw:
                raw.sendall(request)
                got, took = _closed_after(raw)
            assert not got.startswith(b"HTTP/"), got
            assert took < HEADER_TIMEOUT / 2  # refused at once, not left to time out
        # the TLS client's kept-alive connection never noticed
        assert client.get(tls.url + "/public/after").status_code == 200
    assert [seen.target for seen in upstream.requests] == [b"/public/before", b"/public/after"]
    tls.assert_quiet()


def test_a_handshake_never_completed_is_closed_within_the_header_timeout(tls: Tls) -> None:
    silent = socket.create_connection(("127.0.0.1", tls.port), timeout=5)
    partial = socket.create_connection(("127.0.0.1", tls.port), timeout=5)
    partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello, begun
    results: dict[str, tuple[bytes, float]] = {}

    def wait(name: str, sock: socket.socket) -> None:
        results[name] = _closed_after(sock)

    waiters = [
        threading.Thread(target=wait, args=("silent", silent)),
        threading.Thread(target=wait, args=("partial", partial)),
    ]
    for waiter in waiters:
        waiter.start()
    # meanwhile other clients are served at once
    started = time.monotonic()
    assert tls.status("/public/meanwhile") == 200
    assert time.monotonic() - started < HEADER_TIMEOUT / 2
    for waiter in waiters:
        waiter.join(15)
    assert set(results) == {"silent", "partial"}
    for name, (got, took) in results.items():
        assert got == b"", name
        assert HEADER_TIMEOUT * 0.8 <= took < HEADER_TIMEOUT + 1.0, (name, took)
    silent.close()
    partial.close()
    tls.assert_quiet()


def test_the_handshake_counts_against_the_header_timeout(tls: Tls) -> None:
    """A slow handshake buys no time: the first request head is due ``client_header_timeout``
    after the connection was accepted, handshake included."""
    raw = socket.create_connection(("127.0.0.1", tls.port), timeout=5)
    connected = time.monotonic()
    time.sleep(HEADER_TIMEOUT * 0.6)
    conn = tls.client_context().wrap_socket(raw, server_hostname="127.0.0.1")
    got, _ = _closed_after(conn)
    took = time.monotonic() - connected
    conn.close()
    assert got == b""
    assert HEADER_TIMEOUT * 0.8 <= took < HEADER_TIMEOUT * 1.4, took
    # a request sent in time after a slow handshake is answered
    raw = socket.create_connection(("127.0.0.1", tls.port), timeout=5)
    time.sleep(HEADER_TIMEOUT * 0.5)
    with tls.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(b"GET /public/slow-hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got, _ = _closed_after(conn)
    assert got.startswith(b"HTTP/1.1 200 ")
    tls.assert_quiet()


def test_a_client_that_wants_another_host_name_refuses_and_others_go_on(tls: Tls) -> None:
    with (
        socket.create_connection(("127.0.0.1", tls.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        tls.client_context().wrap_socket(raw, server_hostname="wrong.example")
    assert tls.status("/public/after-wrong-name") == 200
    tls.assert_quiet()


def test_serve_says_it_speaks_https(tls: Tls) -> None:
    assert f"restguard gateway on https://127.0.0.1:{tls.port}" in "\n".join(tls.serve.out)


# --- --workers 2 ----------------------------------------------------------------------------------


def test_every_worker_serves_tls(tmp_path: Path, upstream: RecordingUpstream) -> None:
    upstream.clear()
    pki = Pki(tmp_path / "pki")
    config = tls_config(tmp_path / "data", upstream, pki)
    serve = ServeProcess(config, "--workers", "2")
    try:
        serve.wait_up()
        (worker,) = ready_workers(serve.pid, 1)
        context = ssl.create_default_context(cafile=str(pki.ca))
        url = f"https://127.0.0.1:{serve.port}/public/w"
        own = 0.0
        for _ in range(20):
            for _ in range(20):  # each on a new connection: either process may accept it
                with httpx.Client(verify=context, timeout=5) as client:
                    assert client.get(url).status_code == 200
            time.sleep(1.2)  # workers publish their numbers every second
            _, own = worker_decisions(worker)
            if own:
                break
        assert own > 0, "the worker took none of the TLS connections"
        assert {seen.header("X-Forwarded-Proto") for seen in upstream.requests} == {"https"}
        assert "Traceback" not in serve.stderr
    finally:
        serve.stop()
    assert serve.proc.returncode == 0


def test_sigterm_finishes_tls_requests_and_does_not_wait_for_idle_clients(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    """Idle keep-alive clients do not answer the server's close_notify (nor need they): a stop
    must not wait ``shutdown_grace`` for them (docker stops with SIGKILL after 10 s)."""
    upstream.clear()
    pki = Pki(tmp_path / "pki")
    serve = ServeProcess(tls_config(tmp_path / "data", upstream, pki))
    try:
        serve.wait_up()
        url = f"https://127.0.0.1:{serve.port}/public/"
        idle = httpx.Client(verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=10)
        busy = httpx.Client(verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=10)
        assert idle.get(url + "idle").status_code == 200  # (its connection stays open)
        upstream.reply.delay = 1.0
        answers: list[int] = []
        flight = threading.Thread(target=lambda: answers.append(busy.get(url + "slow").status_code))
        flight.start()
        wait_until(lambda: len(upstream.requests) == 2, 5, "the slow request at the upstream")
        stopped = time.monotonic()
        serve.signal(signal.SIGTERM)
        assert serve.wait(15) == 0
        took = time.monotonic() - stopped
        flight.join(5)
        assert answers == [200]  # the request in flight was finished
        assert took < 3.0, took  # ~1 s for it; the idle client was not waited for
        idle.close()
        busy.close()
        assert "Traceback" not in serve.stderr
    finally:
        serve.stop()


# --- configuration mistakes: one line, before anything listens -----------------------------------


@pytest.mark.parametrize("mistake", ["only the certificate", "unreadable", "mismatched pair"])
def test_a_bad_pair_stops_check_and_serve_with_one_line(
    tmp_path: Path, upstream: RecordingUpstream, mistake: str
) -> None:
    pki = Pki(tmp_path / "pki")
    config = tls_config(tmp_path / "data", upstream, pki)
    _, other_key = pki.pair("other")
    if mistake == "only the certificate":
        text = config.read_text()
        config.write_text("\n".join(ln for ln in text.splitlines() if "tls_key" not in ln) + "\n")
        key, expected = "server.tls_cert", "is set but tls_key is not"
    elif mistake == "unreadable":  # (a directory: unreadable for root too)
        set_keys(config, "server", {"tls_key": f'"{tmp_path}"'})
        key, expected = "server.tls_key", f"{tmp_path} is a directory"
    else:
        set_keys(config, "server", {"tls_key": f'"{other_key}"'})
        key, expected = "server.tls_key", "does not match the certificate in"
    for args in (("check",), ("serve",), ("serve", "--workers", "2")):
        done = subprocess.run(
            [*RESTGUARD, *args, "--config", str(config)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) <= 2, lines  # (check adds a count line)
        assert f"{config}:" in lines[0] and f": {key}: " in lines[0], lines[0]
        assert expected in lines[0] and "Fix: " in lines[0], lines[0]
        assert done.stdout == ""


# --- reload (what SIGHUP's configuration reload calls) --------------------------------------------


def test_reload_serves_renewed_files_and_refuses_broken_ones(
    tmp_path: Path, upstream: RecordingUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateways: list[Gateway] = []

    def keep(*args: Any, **kwargs: Any) -> Gateway:
        gateways.append(make_gateway(*args, **kwargs))
        return gateways[-1]

    monkeypatch.setattr(serve_module, "make_gateway", keep)
    pki = Pki(tmp_path / "pki")
    cert, key = pki.pair("first")
    gw = GatewayProcess(tmp_path / "gw", upstream)
    set_keys(
        gw.config,
        "server",
        {
            "tls_cert": f'"{cert}"',
            "tls_key": f'"{key}"',
            "public_url": f'"https://127.0.0.1:{gw.port}"',
        },
    )
    gw.settings = load(gw.config)
    gw.start()
    try:
        (gateway,) = gateways

        def reload(settings: Settings) -> None:
            async def call() -> None:
                gateway.reload_tls(settings)

            asyncio.run_coroutine_threadsafe(call(), gw.loop).result(5)

        def connect() -> http.client.HTTPSConnection:
            context = ssl.create_default_context(cafile=str(pki.ca))
            conn = http.client.HTTPSConnection("127.0.0.1", gw.port, context=context, timeout=5)
            conn.connect()
            return conn

        def served(conn: http.client.HTTPSConnection, *, close: bool = True) -> str:
            """The subject of the certificate ``conn`` got; a request on it must work."""
            assert isinstance(conn.sock, ssl.SSLSocket)
            conn.request("GET", "/public/r")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
            subject = subject_of(conn.sock.getpeercert(binary_form=True))
            if close:
                conn.close()
            return subject

        before = connect()
        assert served(before, close=False) == "first"
        # a renewal written over the same files, then the reload
        new_cert, new_key = pki.pair("second")
        cert.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())
        settings = load(gw.config)
        reload(settings)
        assert served(connect()) == "second"
        assert upstream.last().header("X-Forwarded-Proto") == "https"
        assert served(before, close=False) == "first"  # an open connection keeps its own
        # a broken renewal (the key of another certificate): the configuration check refuses
        # it, and so does the reload itself; the pair loaded last keeps serving
        _, stranger = pki.pair("third")
        key.write_bytes(stranger.read_bytes())
        with pytest.raises(ConfigError, match="does not match"):
            load(gw.config)
        with pytest.raises(ConfigError) as caught:
            reload(settings)
        err = caught.value
        line = gw.config.read_text().splitlines().index(f'tls_key = "{key}"') + 1
        assert (err.key, err.file, err.line) == ("server.tls_key", str(gw.config), line)
        assert served(connect()) == "second"
        # TLS cannot be turned off (or on) without a restart
        plain = replace(settings, server=replace(settings.server, tls_cert=None, tls_key=None))
        with pytest.raises(ConfigError, match="needs a restart"):
            reload(plain)
        assert served(connect()) == "second"
        before.close()
    finally:
        gw.stop()
