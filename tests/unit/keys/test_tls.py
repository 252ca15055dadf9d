"""keys/tls.py: the listener's context (TLS 1.2+, ALPN http/1.1, ...), file errors that name
the setting at fault, and ``ServerTLS.reload``: new connections get the new certificate, a
broken pair keeps the old one serving."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop
from cryptography.hazmat.primitives.asymmetric import ec

from restguard.keys.tls import ServerTLS, TLSFileError, server_context
from tests.pki import Pki, key_pem, subject_of


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def test_the_context_is_tls12_plus_http11_only_without_compression(pki: Pki) -> None:
    context = server_context(*pki.pair())
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_mode == ssl.CERT_NONE  # (no client certificates asked for)
    suites = context.get_ciphers()
    assert suites and all(s["aead"] for s in suites)
    assert {s["kea"] for s in suites} == {"kx-any", "kx-ecdhe"}  # (1.3's, and ECDHE for 1.2)


def _problem(cert: Path, key: Path) -> TLSFileError:
    with pytest.raises(TLSFileError) as caught:
        server_context(cert, key)
    return caught.value


def test_a_missing_file_names_its_setting(pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.pair()
    err = _problem(tmp_path / "nope.crt", key)
    assert (err.key, err.problem) == ("tls_cert", f"{tmp_path / 'nope.crt'} does not exist")
    err = _problem(cert, tmp_path / "nope.key")
    assert err.key == "tls_key" and "does not exist" in err.problem
    assert _problem(tmp_path, key).problem == f"{tmp_path} is a directory"


def test_an_unreadable_key_says_so(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = pki.pair()
    key.chmod(0)
    if os.geteuid() == 0:  # root reads any file: refuse it the way the kernel would
        read = Path.read_bytes

        def refuse(path: Path) -> bytes:
            if path == key:
                raise PermissionError(13, "Permission denied")
            return read(path)

        monkeypatch.setattr(Path, "read_bytes", refuse)
    err = _problem(cert, key)
    assert err.key == "tls_key"
    assert err.problem == f"cannot read {key} (Permission denied)"
    assert err.fix == "make it readable by the user restguard runs as"


def test_a_key_given_as_the_certificate_is_named(pki: Pki) -> None:
    _, key = pki.pair()
    err = _problem(key, key)
    assert err.key == "tls_cert"
    assert err.problem == f"{key} holds no PEM certificate (it looks like the private key)"


def test_a_certificate_that_does_not_parse(pki: Pki, tmp_path: Path) -> None:
    _, key = pki.pair()
    bad = tmp_path / "bad.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    err = _problem(bad, key)
    assert (err.key, err.problem) == ("tls_cert", f"{bad} holds a certificate that does not parse")


def test_a_mismatched_pair_blames_the_key(pki: Pki) -> None:
    cert, _ = pki.pair("one")
    _, other_key = pki.pair("two")
    err = _problem(cert, other_key)
    assert err.key == "tls_key"
    assert err.problem == f"{other_key} does not match the certificate in {cert}"


def test_a_key_that_is_no_key(pki: Pki) -> None:
    cert, _ = pki.pair()
    err = _problem(cert, cert)
    assert (err.key, err.problem) == ("tls_key", f"{cert} holds no PEM private key that loads")


def test_an_encrypted_key_is_refused_without_a_prompt(pki: Pki, tmp_path: Path) -> None:
    cert, _ = pki.pair()
    locked = tmp_path / "locked.key"
    locked.write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1()), b"secret"))
    err = _problem(cert, locked)  # (a prompt would block on the terminal; stdin is not read)
    assert (err.key, err.problem) == ("tls_key", f"{locked} is encrypted with a passphrase")


# --- reload on a live listener ----------------------------------------------------------------


class _Hello(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"hello " + data)  # type: ignore[attr-defined]


@pytest.fixture
def listener(pki: Pki) -> Iterator[tuple[ServerTLS, int]]:
    """A uvloop TLS server (as the gateway's) with ``ServerTLS`` serving pki's "first" pair."""
    tls = ServerTLS(*pki.pair("first"))
    loop = uvloop.new_event_loop()
    sock = socket.create_server(("127.0.0.1", 0))
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(
            loop.create_server(_Hello, sock=sock, ssl=tls.context, ssl_handshake_timeout=5)
        )
        ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(5)
    yield tls, sock.getsockname()[1]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _connect(
    port: int, ca: Path, server_name: str | None = None, *, check: bool = True
) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = check and server_name is not None
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname=server_name)


def _talk(conn: ssl.SSLSocket) -> bytes:
    conn.sendall(b"x")
    return conn.recv(100)


def test_reload_serves_the_new_certificate_to_new_connections(
    pki: Pki, listener: tuple[ServerTLS, int]
) -> None:
    tls, port = listener
    before = _connect(port, pki.ca)
    assert subject_of(before.getpeercert(binary_form=True)) == "first"
    assert before.selected_alpn_protocol() is None and before.version() in ("TLSv1.3", "TLSv1.2")
    cert, key = pki.pair("second")
    tls.reload(cert, key)
    # no SNI (to an IP address), SNI, SNI for another name (the client does not check)
    for name, check in ((None, True), ("localhost", True), ("wrong.example", False)):
        with _connect(port, pki.ca, name, check=check) as after:
            assert subject_of(after.getpeercert(binary_form=True)) == "second"
            assert _talk(after) == b"hello x"
    # the connection opened before keeps its certificate and keeps working
    assert _talk(before) == b"hello x"
    assert subject_of(before.getpeercert(binary_form=True)) == "first"
    before.close()
    assert (tls.cert, tls.key) == (cert, key)


def test_reload_rereads_the_same_paths(pki: Pki, listener: tuple[ServerTLS, int]) -> None:
    tls, port = listener
    cert, key = pki.pair("second")
    tls.cert.write_bytes(cert.read_bytes())  # (a renewal written over the served files)
    tls.key.write_bytes(key.read_bytes())
    tls.reload()
    with _connect(port, pki.ca) as conn:
        assert subject_of(conn.getpeercert(binary_form=True)) == "second"


def test_a_broken_reload_keeps_the_old_pair_serving(
    pki: Pki, listener: tuple[ServerTLS, int], tmp_path: Path
) -> None:
    tls, port = listener
    served = (tls.cert, tls.key)
    cert, _ = pki.pair("second")
    _, stranger = pki.pair("third")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM\n")
    for new in ((cert, stranger), (garbage, stranger), (cert, tmp_path / "gone.key")):
        with pytest.raises(TLSFileError):
            tls.reload(*new)
        assert (tls.cert, tls.key) == served
        with _connect(port, pki.ca) as conn:
            assert subject_of(conn.getpeercert(binary_form=True)) == "first"
            assert _talk(conn) == b"hello x"
    # a renewal half-written over the served files: refused, the loaded pair still serves
    tls.key.write_bytes(stranger.read_bytes())
    with pytest.raises(TLSFileError, match="does not match"):
        tls.reload()
    with _connect(port, pki.ca) as conn:
        assert subject_of(conn.getpeercert(binary_form=True)) == "first"


def test_a_client_that_wants_another_name_refuses_and_others_go_on(
    pki: Pki, listener: tuple[ServerTLS, int]
) -> None:
    _, port = listener
    with pytest.raises(ssl.SSLCertVerificationError):
        _connect(port, pki.ca, "wrong.example")
    with _connect(port, pki.ca, "localhost") as conn:
        assert _talk(conn) == b"hello x"


def test_tls12_is_served_with_aead_suites_only(pki: Pki, listener: tuple[ServerTLS, int]) -> None:
    _, port = listener

    def tls12(ciphers: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.check_hostname = False
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
        return context

    with tls12("DEFAULT").wrap_socket(socket.create_connection(("127.0.0.1", port))) as conn:
        assert conn.version() == "TLSv1.2"
        cipher = conn.cipher()
        assert cipher is not None and cipher[0].startswith("ECDHE-ECDSA-")
        assert "GCM" in cipher[0] or "CHACHA20" in cipher[0]
        assert _talk(conn) == b"hello x"
    # a client that offers only CBC suites finds none in common
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        tls12("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384").wrap_socket(raw)


def test_alpn_selects_http11_only(pki: Pki, listener: tuple[ServerTLS, int]) -> None:
    _, port = listener
    for offered, selected in ((["h2", "http/1.1"], "http/1.1"), (["h2"], None)):
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.set_alpn_protocols(offered)
        with context.wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"
        ) as conn:
            assert conn.selected_alpn_protocol() == selected
