"""``restguard.toml`` -> frozen settings.

Every mistake is a ``ConfigError`` naming the file (and line), the key and the fix:
``restguard.toml:14: routes[2].path: ... Fix: ...``. Unknown keys are mistakes too (a typo must
not silently fall back to a default). Reading goes on after a mistake: ``validate`` returns every
problem at once (``restguard check``), ``load`` raises the first. Values are parsed in
``config_base``, routes read in ``config_routes``; lines come from ``wire.toml_lines``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restguard.authz.policy import Route
from restguard.config_base import (
    MAX_DURATION,
    ConfigError,
    Doc,
    KeyPath,
    Reader,
    http_url_problem,
    parse_duration,
    parse_rate,
    scope_problem,
    span,
    upstream_url_problem,
    valid_scope,
)
from restguard.config_routes import read_routes
from restguard.keys.tls import TLSFileError, server_context
from restguard.tracing import available as tracing_available
from restguard.wire.toml_lines import KeyLines, key_lines

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "MAX_DURATION",
    "ConfigError",
    "Listen",
    "ServerSettings",
    "Settings",
    "UpstreamSettings",
    "Validation",
    "config_path",
    "http_url_problem",
    "load",
    "parse_duration",
    "parse_rate",
    "scope_problem",
    "upstream_url_problem",
    "valid_scope",
    "validate",
]

CONFIG_ENV = "RESTGUARD_CONFIG"
STORE_TIMEOUT = 2.0
DEFAULT_CONFIG = "restguard.toml"
MAX_SETTING_DURATION = 86400.0  # a duration in restguard.toml: 1 day at most
_SYNTAX_LINE = re.compile(r"\(at line (\d+), column \d+\)")


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


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``restguard.toml`` says, checked and resolved."""

    file: Path
    server: ServerSettings = ServerSettings()
    admin_listen: Listen = Listen("127.0.0.1", 8081)
    database_url: str = ""
    redis_url: str = ""
    redis_prefix: str = "restguard:"
    upstream: UpstreamSettings = UpstreamSettings()
    routes: tuple[Route, ...] = ()
    audit_path: Path | None = None
    audit_required: bool = False  # true: a decision that cannot be recorded is refused (503)
    log_format: str = "text"  # [log] format: restguard's own log lines as text or JSON
    log_level: str = "warning"
    tracing: bool = False  # [tracing] enabled: OpenTelemetry spans (restguard[otel])
    master_key_path: Path = Path("master.key")
    store_timeout: float = STORE_TIMEOUT  # every store operation's deadline, then 503
    # Not in the file: how many processes serve it here (``serve --workers``). More than one
    # (or PostgreSQL, or Redis) and the counters of limits live where all of them see them.
    processes: int = 1
    lines: KeyLines | None = field(default=None, compare=False, repr=False)

    @property
    def base_dir(self) -> Path:
        return self.file.parent

    def error(self, path: KeyPath, problem: str, fix: str) -> ConfigError:
        """A ConfigError about the key at ``path`` (``("routes", 2, "auth")``), with its line."""
        return Doc(self.file, self.lines).error(path, problem, fix)


def config_path(explicit: str | None) -> Path:
    """The config file to use: --config, else $RESTGUARD_CONFIG, else ./restguard.toml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _listen(r: Reader, name: str, default: Listen) -> Listen:
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


def _seconds(r: Reader, name: str, default: float) -> float:
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
    window = _seconds(r, "oauth1_timestamp_window", d)
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


def _server(doc: Doc, table: Any) -> ServerSettings:
    r = Reader(doc, ("server",), table)
    d = ServerSettings()
    listen = _listen(r, "listen", d.listen)
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
        client_header_timeout=_seconds(r, "client_header_timeout", d.client_header_timeout),
        keepalive_timeout=_seconds(r, "keepalive_timeout", d.keepalive_timeout),
        client_body_timeout=_seconds(r, "client_body_timeout", d.client_body_timeout),
        client_body_min_rate=_positive(
            r, "client_body_min_rate", d.client_body_min_rate, "bytes per second"
        ),
        client_send_timeout=_seconds(r, "client_send_timeout", d.client_send_timeout),
        send_buffer_bytes=_positive(r, "send_buffer_bytes", d.send_buffer_bytes, "bytes"),
        max_connections=_positive(r, "max_connections", d.max_connections, "connections"),
        body_buffer_bytes=_positive(r, "body_buffer_bytes", d.body_buffer_bytes, "bytes"),
        shutdown_grace=_seconds(r, "shutdown_grace", d.shutdown_grace),
        tls_cert=tls[0] if tls else None,
        tls_key=tls[1] if tls else None,
        oauth1_timestamp_window=_window(r),
    )
    r.finish()
    return settings


def _upstream(doc: Doc, table: Any) -> UpstreamSettings:
    r = Reader(doc, ("upstream",), table)
    d = UpstreamSettings()
    url = _http_url(r, "url", d.url, upstream=True)
    connect = _seconds(r, "connect_timeout", d.connect_timeout)
    timeout = _seconds(r, "timeout", d.timeout)
    pool = _positive(r, "pool_size", d.pool_size, "connections, e.g. 100")
    queue = _seconds(r, "queue_timeout", d.queue_timeout)
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


def _database(r: Reader, default: str) -> str:
    text: str = r.get("database", str, default, '"sqlite:///restguard.db"')
    fix = 'write "sqlite:///restguard.db" or "postgresql://user@host/db"'
    if text.startswith("sqlite:///"):
        rest = text[len("sqlite:///") :]
        if not rest or rest.startswith(":memory:"):
            r.fail("database", "needs a file", 'write "sqlite:///restguard.db"')
            return ""
        p = Path(rest)
        text = "sqlite:///" + str(p if p.is_absolute() else (r.doc.file.parent / p).resolve())
    elif not text.startswith(("postgresql://", "postgresql+psycopg://")):
        r.fail("database", f"'{text}' is not a supported database URL", fix)
        return ""
    from restguard.store.sql.engine import parse_url  # (SQLAlchemy, only when reading one)

    try:
        parse_url(text)
    except ValueError as exc:
        r.fail("database", f"'{text}' does not parse: {exc}", fix)
        return ""
    return text


def _read(text: str, file: Path) -> tuple[dict[str, Any], Doc]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _SYNTAX_LINE.search(str(exc))
        raise ConfigError(
            file,
            "(syntax)",
            str(exc),
            "correct the TOML syntax",
            line=int(m.group(1)) if m else None,
        ) from None
    return raw, Doc(file, key_lines(text, raw))


@dataclass(frozen=True, slots=True)
class Validation:
    """Every problem of one configuration file, in file order. ``settings`` is what was read
    (a key with a problem holds its default) and None when the file does not parse: use it
    only when ``ok``, or to look further where no problem was found (``restguard check``)."""

    settings: Settings | None
    problems: tuple[ConfigError, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(file: Path) -> Validation:
    """Read and check ``file``, going on after each mistake: every problem, in file order."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        error = ConfigError(
            file, "(file)", "does not exist", "run 'restguard init --dir DIR' or pass --config PATH"
        )
        return Validation(None, (error,))
    except (OSError, UnicodeDecodeError) as exc:
        error = ConfigError(
            file, "(file)", f"cannot be read ({exc})", "check the path and its permissions"
        )
        return Validation(None, (error,))
    try:
        raw, doc = _read(text, file.resolve())
    except ConfigError as exc:
        return Validation(None, (exc,))
    settings = _settings(doc, raw)
    problems = sorted(doc.problems, key=lambda e: e.line or 1 << 30)  # (stable: file order)
    return Validation(settings, tuple(problems))


def load(file: Path) -> Settings:
    """Read and check ``file``; raise the first ConfigError (``.problems`` holds them all)."""
    result = validate(file)
    if result.problems:
        first = result.problems[0]
        first.problems = result.problems
        raise first
    assert result.settings is not None
    return result.settings


def _settings(doc: Doc, raw: dict[str, Any]) -> Settings:
    top = Reader(doc, (), raw)
    server = _server(doc, top.get("server", dict, {}, "a [server] table"))
    admin_r = Reader(doc, ("admin",), top.get("admin", dict, {}, "an [admin] table"))
    admin_listen = _listen(admin_r, "listen", Listen("127.0.0.1", 8081))
    admin_r.finish()
    storage = Reader(doc, ("storage",), top.get("storage", dict, {}, "a [storage] table"))
    db = _database(storage, "sqlite:///restguard.db")
    redis = storage.get("redis", str, "", '"redis://127.0.0.1:6379/0"')
    if redis and not redis.startswith(("redis://", "rediss://")):
        storage.fail(  # (the value is not repeated: it may hold a password)
            "redis", "is not a redis:// or rediss:// URL", 'write "redis://127.0.0.1:6379/0" or ""'
        )
    prefix = storage.get("redis_prefix", str, "restguard:", '"restguard:"')
    if not 0 < len(prefix) <= 64 or not prefix.isascii() or not prefix.isprintable():
        storage.fail(
            "redis_prefix", "must be 1 to 64 printable ASCII characters", 'e.g. "restguard:"'
        )
    store_timeout = _seconds(storage, "timeout", STORE_TIMEOUT)
    storage.finish()
    upstream = _upstream(doc, top.get("upstream", dict, {}, "an [upstream] table"))
    routes = read_routes(doc, top.get("routes", list, [], "[[routes]] tables"))
    audit = Reader(doc, ("audit",), top.get("audit", dict, {}, "an [audit] table"))
    audit_text = audit.get("path", str, "audit.log", '"audit.log" (or "" to turn the file off)')
    required = audit.get("required", bool, False, "true or false")
    if required and not audit_text:
        audit.fail("required", "needs an audit file", 'set [audit] path, or remove "required"')
    audit.finish()
    log = Reader(doc, ("log",), top.get("log", dict, {}, "a [log] table"))
    log_format = log.get("format", str, "text", '"text" or "json"')
    if log_format not in ("text", "json"):
        log.fail("format", "is neither text nor json", 'write "text" or "json"')
    log_level = log.get("level", str, "warning", '"warning"')
    if log_level not in ("debug", "info", "warning", "error"):
        log.fail("level", "is not a level", 'write "debug", "info", "warning" or "error"')
    log.finish()
    tracing_r = Reader(doc, ("tracing",), top.get("tracing", dict, {}, "a [tracing] table"))
    tracing = tracing_r.get("enabled", bool, False, "true or false")
    if tracing and not tracing_available():
        tracing_r.fail(
            "enabled", "needs the OpenTelemetry packages", "pip install 'restguard[otel]'"
        )
    tracing_r.finish()
    keys = Reader(doc, ("keys",), top.get("keys", dict, {}, "a [keys] table"))
    master = Path(keys.get("master_key", str, "master.key", '"master.key"'))
    keys.finish()
    top.finish()
    file = doc.file
    return Settings(
        file=file,
        server=server,
        admin_listen=admin_listen,
        database_url=db,
        redis_url=redis,
        redis_prefix=prefix,
        upstream=upstream,
        routes=routes,
        audit_path=(file.parent / audit_text) if audit_text else None,
        audit_required=required,
        log_format=log_format,
        log_level=log_level,
        tracing=tracing,
        master_key_path=master if master.is_absolute() else file.parent / master,
        store_timeout=store_timeout,
        lines=doc.lines,
    )
