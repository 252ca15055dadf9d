"""An https upstream: certificate and host name verified, fail closed when they are not."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness import GatewayProcess, RecordingUpstream, free_port

PUBLIC = '[[routes]]\npath = "/public/**"\nmethods = ["GET"]\npublic = true\n'


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_pair(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("restguard test CA"))
        .issuer_name(_name("restguard test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class _TlsUpstream(asyncio.Protocol):
    seen: list[bytes]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.seen.append(data)
        if b"\r\n\r\n" in data:
            body = b'{"tls": true}'
            self.transport.write(  # type: ignore[attr-defined]
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[int, Path, list[bytes]]]:
    ca, cert, key = _pem_pair(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    port, seen = free_port(), []
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        proto = type("P", (_TlsUpstream,), {"seen": seen})
        server = loop.run_until_complete(loop.create_server(proto, "127.0.0.1", port, ssl=context))
        ready.set()
        loop.run_forever()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(5)
    yield port, ca, seen
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _gateway(
    tmp_path: Path, upstream: RecordingUpstream, port: int, ca: Path | None
) -> GatewayProcess:
    gw = GatewayProcess(tmp_path / "gw", upstream, routes=PUBLIC)
    text = gw.config.read_text().replace(upstream.url, f"https://127.0.0.1:{port}")
    if ca is not None:
        text = text.replace("pool_size = 100", f'pool_size = 100\nca_file = "{ca}"')
    gw.config.write_text(text)
    from restguard.config import load

    gw.settings = load(gw.config)
    return gw.start()


def test_https_upstream_with_its_ca_is_reached_over_tls(
    tmp_path: Path, upstream: RecordingUpstream, tls_upstream: tuple[int, Path, list[bytes]]
) -> None:
    port, ca, seen = tls_upstream
    gw = _gateway(tmp_path, upstream, port, ca)
    try:
        r = httpx.get(gw.url + "/public/x")
        assert (r.status_code, r.json()) == (200, {"tls": True})
        assert seen and seen[0].startswith(b"GET /public/x HTTP/1.1\r\n")
        assert f"host: 127.0.0.1:{port}".encode() in seen[0]
    finally:
        gw.stop()


def test_https_upstream_with_an_untrusted_certificate_is_502(
    tmp_path: Path, upstream: RecordingUpstream, tls_upstream: tuple[int, Path, list[bytes]]
) -> None:
    port, _, seen = tls_upstream
    gw = _gateway(tmp_path, upstream, port, None)
    try:
        r = httpx.get(gw.url + "/public/x")
        assert r.status_code == 502
        assert r.json()["error"] == "bad_gateway"
        assert seen == []  # the handshake failed: no request bytes were sent
    finally:
        gw.stop()
