"""The ``[server]`` and ``[upstream]`` tables of ``restguard.toml`` (``config.py`` reads the
rest): their settings and their readers, each mistake a ``ConfigError`` naming the key."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restguard.config_base import (
    Doc,
    Reader,
    http_url_problem,
    parse_duration,
    parse_rate,
    span,
    upstream_url_problem,
)
from restguard.keys.tls import TLSFileError, server_context

MAX_SETTING_DURATION = 86400.0  # a duration in restguard.toml: 1 day at most


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


DEFAULT_OAUTH1_WINDOW = 300.0


@dataclass(frozen=True, slots=True)
class ServerSettings:
    listen: Listen = Listen("127.0.0.1", 8080)
    public_url: str = "http://127.0.0.1:8080"
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_body_bytes: int = 10 * 1024 * 1024
    max_header_bytes: int = 16 * 1024
    failed_attempts: tuple[int, float] = (30, 60.0)
    # Slow clients (nginx's client_header_timeout, keepalive_timeout, client_body_timeout;
    # Apache mod_reqtimeout's minimum body rate).
    client_header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    client_body_timeout: float = 15.0
    client_body_min_rate: int = 1024
    client_send_timeout: float = 60.0
    send_buffer_bytes: int = 256 * 1024  # an answer held for a slow reader, upstream freed
    max_connections: int = 4096
    body_buffer_bytes: int = 64 * 1024
    # On SIGTERM/SIGINT: stop accepting, let requests in flight finish this long, then answer
    # what has not started with 503 and close.
    shutdown_grace: float = 10.0
    # Both or neither: the listener speaks HTTPS with this PEM certificate (chain) and key.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # OAuth 1.0a: how far an ``oauth_timestamp`` may lie from now, either way (RFC 5849 §3.3)
    oauth1_timestamp_window: float = DEFAULT_OAUTH1_WINDOW

    @property
    def tls(self) -> bool:
        """Whether the gateway listener speaks TLS."""
        return self.tls_cert is not None


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    url: str = "http://127.0.0.1:9000"
    connect_timeout: float = 5.0
    timeout: float = 30.0
    pool_size: int = 100
    ca_file: Path | None = None  # PEM certificates to trust for an https upstream
    queue_timeout: float = 5.0  # waiting for a free pooled connection, then 503


def read_listen(r: Reader, name: str, default: Listen) -> Listen:
    text = r.get(name, str, str(default), '"127.0.0.1:8080"')
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        r.fail(name, f"'{text}' is not host:port", 'write e.g. "127.0.0.1:8080"')
        return default
    return Listen(host, int(port))


def _http_url(r: Reader, name: str, default: str, *, upstream: bool = False) -> str:
    text: str = r.get(name, str, default, '"http://127.0.0.1:9000"')
    problem = (upstream_url_problem if upstream else http_url_problem)(text)
    if problem is not None:
        r.fail(name, *problem)
        return default
    return text.rstrip("/")


def read_seconds(r: Reader, name: str, default: float) -> float:
    text = r.get(name, str, f"{round(default * 1000)}ms", '"30s"')
    try:
        return float(parse_duration(text, at_most=MAX_SETTING_DURATION))
    except ValueError as exc:
        r.fail(name, str(exc), f'write e.g. "30s" or "250ms", at most {span(MAX_SETTING_DURATION)}')
        return default


def _window(r: Reader) -> float:
    """``oauth1_timestamp_window``: 1 s to 1 h (a replayed request is refused by its nonce
    only while the nonce is kept, which is as long as this window)."""
    d = DEFAULT_OAUTH1_WINDOW
    window = read_seconds(r, "oauth1_timestamp_window", d)
    if not 1 <= window <= 3600:
        r.fail("oauth1_timestamp_window", "must be between 1s and 1h", 'write e.g. "5m"')
        return d
    return window


def _positive(r: Reader, name: str, default: int, what: str) -> int:
    value: int = r.get(name, int, default, f"a positive number of {what}")
    if value <= 0:
        r.fail(name, "must be positive", f"write a positive number of {what}")
        return default
    return value


def _tls(r: Reader) -> tuple[Path, Path] | None:
    """``tls_cert`` and ``tls_key``: both or neither, and a pair that loads and matches."""
    texts = {}
    for name in ("tls_cert", "tls_key"):
        texts[name] = r.get(name, str, "", f'"{name[4:]}.pem" (a PEM file)')
    cert_text, key_text = texts["tls_cert"], texts["tls_key"]
    if not cert_text and not key_text:
        return None
    if not cert_text or not key_text:
        given, missing = ("tls_cert", "tls_key") if cert_text else ("tls_key", "tls_cert")
        if given not in r.failed:
            r.fail(
                given,
                f"is set but {missing} is not",
                f"set both tls_cert and tls_key (PEM paths), or remove {given}",
            )
        return None
    base = r.doc.file.parent
    cert, key = (base / cert_text, base / key_text)  # (an absolute path stays as it is)
    try:
        server_context(cert, key)
    except TLSFileError as exc:
        r.fail(exc.key, exc.problem, exc.fix)
        return None
    return cert, key


def read_server(doc: Doc, table: Any) -> ServerSettings:
    r = Reader(doc, ("server",), table)
    d = ServerSettings()
    listen = read_listen(r, "listen", d.listen)
    tls = _tls(r)
    scheme = "https" if tls else "http"
    public_url = _http_url(r, "public_url", f"{scheme}://{listen}")
    if tls and public_url.startswith("http://"):
        r.fail(
            "public_url",
            f"'{public_url}' is http:// but the listener speaks TLS (tls_cert, tls_key)",
            f'write "https://{public_url[len("http://") :]}"',
        )
    proxies = []
    for text in r.strings("trusted_proxies", (), '["10.0.0.0/8"]'):
        try:
            proxies.append(ipaddress.ip_network(text))
        except ValueError:
            r.fail(
                "trusted_proxies",
                f"'{text}' is not an address or network",
                'write addresses or CIDR networks, e.g. ["10.0.0.5", "10.1.0.0/16"]',
            )
    body = _positive(r, "max_body_bytes", d.max_body_bytes, "bytes")
    head = _positive(r, "max_header_bytes", d.max_header_bytes, "bytes")
    failed = r.get("failed_attempts", str, "30/minute", '"30/minute"')
    failed_rate = d.failed_attempts
    try:
        failed_rate = parse_rate(failed)
    except ValueError as exc:
        r.fail("failed_attempts", str(exc), 'write e.g. "30/minute"')
    settings = ServerSettings(
        listen,
        public_url,
        tuple(proxies),
        body,
        head,
        failed_rate,
        client_header_timeout=read_seconds(r, "client_header_timeout", d.client_header_timeout),
        keepalive_timeout=read_seconds(r, "keepalive_timeout", d.keepalive_timeout),
        client_body_timeout=read_seconds(r, "client_body_timeout", d.client_body_timeout),
        client_body_min_rate=_positive(
            r, "client_body_min_rate", d.client_body_min_rate, "bytes per second"
        ),
        client_send_timeout=read_seconds(r, "client_send_timeout", d.client_send_timeout),
        send_buffer_bytes=_positive(r, "send_buffer_bytes", d.send_buffer_bytes, "bytes"),
        max_connections=_positive(r, "max_connections", d.max_connections, "connections"),
        body_buffer_bytes=_positive(r, "body_buffer_bytes", d.body_buffer_bytes, "bytes"),
        shutdown_grace=read_seconds(r, "shutdown_grace", d.shutdown_grace),
        tls_cert=tls[0] if tls else None,
        tls_key=tls[1] if tls else None,
        oauth1_timestamp_window=_window(r),
    )
    r.finish()
    return settings


def read_upstream(doc: Doc, table: Any) -> UpstreamSettings:
    r = Reader(doc, ("upstream",), table)
    d = UpstreamSettings()
    url = _http_url(r, "url", d.url, upstream=True)
    connect = read_seconds(r, "connect_timeout", d.connect_timeout)
    timeout = read_seconds(r, "timeout", d.timeout)
    pool = _positive(r, "pool_size", d.pool_size, "connections, e.g. 100")
    queue = read_seconds(r, "queue_timeout", d.queue_timeout)
    ca_text = r.get("ca_file", str, "", '"upstream-ca.pem"')
    ca_file = None
    if ca_text:
        base = doc.file.parent
        ca_file = Path(ca_text) if Path(ca_text).is_absolute() else base / ca_text
        if not ca_file.is_file():
            r.fail(
                "ca_file",
                f"'{ca_file}' is not a file",
                "give the path of a PEM file with the certificates to trust",
            )
        elif "url" not in r.failed and not url.startswith("https://"):
            r.fail("ca_file", "only applies to an https upstream", "remove it or use https")
    r.finish()
    return UpstreamSettings(url, connect, timeout, pool, ca_file, queue)
