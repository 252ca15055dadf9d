"""``restguard.toml`` -> frozen settings.

Every mistake raises ``ConfigError`` whose message names the file, the key and the fix. Unknown
keys are mistakes too (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from restguard.authz.policy import AUTH_METHODS, HTTP_METHODS, PatternError, Policy, Route
from restguard.authz.policy import compile_pattern as _compile

CONFIG_ENV = "RESTGUARD_CONFIG"
STORE_TIMEOUT = 2.0
DEFAULT_CONFIG = "restguard.toml"

_DURATION = re.compile(r"^([1-9][0-9]{0,8})(ms|s|m|h|d)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^([1-9][0-9]{0,8})/(second|minute|hour|day)$")
_RATE_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_SCOPE = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")  # RFC 6749 §3.3 scope-token


class ConfigError(Exception):
    """A configuration mistake: file, key, problem and fix in one message."""

    def __init__(self, file: Path | str, key: str, problem: str, fix: str) -> None:
        self.file, self.key, self.problem, self.fix = str(file), key, problem, fix
        super().__init__(f"{file}: {key}: {problem}. Fix: {fix}")


def parse_duration(text: str) -> float:
    """'30d' -> seconds, '250ms' -> 0.25. A number with ms, s, m, h or d; ValueError otherwise."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(
            f"'{text}' is not a duration; write a number with ms, s, m, h or d, e.g. 30d"
        )
    unit = _DURATION_UNITS[m.group(2)]
    return int(m.group(1)) * unit if unit >= 1 else int(m.group(1)) / 1000


def parse_rate(text: str) -> tuple[int, float]:
    """'100/minute' -> (100, 60.0)."""
    m = _RATE.match(text.strip())
    if not m:
        raise ValueError(f"'{text}' is not a rate; write N/second, N/minute, N/hour or N/day")
    return int(m.group(1)), _RATE_UNITS[m.group(2)]


def valid_scope(scope: str) -> bool:
    """True when ``scope`` is an RFC 6749 §3.3 scope-token."""
    return bool(_SCOPE.match(scope))


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


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
    upstream: UpstreamSettings = UpstreamSettings()
    routes: tuple[Route, ...] = ()
    audit_path: Path | None = None
    audit_required: bool = False  # true: a decision that cannot be recorded is refused (503)
    master_key_path: Path = Path("master.key")
    store_timeout: float = STORE_TIMEOUT  # every store operation's deadline, then 503

    @property
    def base_dir(self) -> Path:
        return self.file.parent


def config_path(explicit: str | None) -> Path:
    """The config file to use: --config, else $RESTGUARD_CONFIG, else ./restguard.toml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


class _Reader:
    """Reads one table, remembering which keys were used so unknown ones can be refused."""

    def __init__(self, file: Path, prefix: str, table: Any) -> None:
        self.file, self.prefix = file, prefix
        if not isinstance(table, dict):
            raise ConfigError(file, prefix, "must be a table", f"write it as [{prefix}]")
        self.table: dict[str, Any] = table
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem, fix)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any, example: str) -> Any:
        self.used.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(
                name, f"has the wrong type ({type(value).__name__})", f"write {example}"
            )
        return value

    def strings(self, name: str, default: tuple[str, ...], example: str) -> tuple[str, ...]:
        value = self.get(name, list, list(default), example)
        if not all(isinstance(v, str) for v in value):
            raise self.error(name, "must be a list of strings", f"write {example}")
        return tuple(value)

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used)) or "none"
            raise self.error(unknown[0], "is not a known key", f"remove it; known keys: {known}")


def _listen(r: _Reader, default: Listen) -> Listen:
    text = r.get("listen", str, str(default), '"127.0.0.1:8080"')
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise r.error("listen", f"'{text}' is not host:port", 'write e.g. "127.0.0.1:8080"')
    return Listen(host, int(port))


def _http_url(r: _Reader, name: str, default: str) -> str:
    text: str = r.get(name, str, default, '"http://127.0.0.1:9000"')
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise r.error(name, f"'{text}' is not an http(s) URL", 'write e.g. "http://127.0.0.1:9000"')
    if (port is not None and not 0 < port < 65536) or text.rstrip("/").endswith(":"):
        raise r.error(name, f"'{text}' has no valid port", "write a port from 1 to 65535")
    if parts.query or parts.fragment or parts.username:
        raise r.error(name, "must not carry a query, fragment or user info", "remove them")
    return text.rstrip("/")


def _seconds(r: _Reader, name: str, default: float) -> float:
    text = r.get(name, str, f"{round(default * 1000)}ms", '"30s"')
    try:
        return float(parse_duration(text))
    except ValueError as exc:
        raise r.error(name, str(exc), 'write e.g. "30s"') from None


def _positive(r: _Reader, name: str, default: int, what: str) -> int:
    value: int = r.get(name, int, default, f"a positive number of {what}")
    if value <= 0:
        raise r.error(name, "must be positive", f"write a positive number of {what}")
    return value


def _server(file: Path, table: Any) -> ServerSettings:
    r = _Reader(file, "server", table)
    d = ServerSettings()
    listen = _listen(r, d.listen)
    public_url = _http_url(r, "public_url", f"http://{listen}")
    proxies = []
    for text in r.strings("trusted_proxies", (), '["10.0.0.0/8"]'):
        try:
            proxies.append(ipaddress.ip_network(text))
        except ValueError:
            raise r.error(
                "trusted_proxies",
                f"'{text}' is not an address or network",
                'write addresses or CIDR networks, e.g. ["10.0.0.5", "10.1.0.0/16"]',
            ) from None
    body = _positive(r, "max_body_bytes", d.max_body_bytes, "bytes")
    head = _positive(r, "max_header_bytes", d.max_header_bytes, "bytes")
    failed = r.get("failed_attempts", str, "30/minute", '"30/minute"')
    try:
        failed_rate = parse_rate(failed)
    except ValueError as exc:
        raise r.error("failed_attempts", str(exc), 'write e.g. "30/minute"') from None
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
    )
    r.finish()
    return settings


def _upstream(file: Path, table: Any) -> UpstreamSettings:
    r = _Reader(file, "upstream", table)
    d = UpstreamSettings()
    url = _http_url(r, "url", d.url)
    if urlsplit(url).path not in ("", "/"):
        raise r.error(
            "url",
            "must not carry a path (the upstream gets the policy's path)",
            'write only scheme, host and port, e.g. "http://127.0.0.1:9000"',
        )
    connect = _seconds(r, "connect_timeout", d.connect_timeout)
    timeout = _seconds(r, "timeout", d.timeout)
    pool = _positive(r, "pool_size", d.pool_size, "connections, e.g. 100")
    queue = _seconds(r, "queue_timeout", d.queue_timeout)
    ca_text = r.get("ca_file", str, "", '"upstream-ca.pem"')
    ca_file = None
    if ca_text:
        ca_file = Path(ca_text) if Path(ca_text).is_absolute() else file.parent / ca_text
        if not ca_file.is_file():
            raise r.error(
                "ca_file",
                f"'{ca_file}' is not a file",
                "give the path of a PEM file with the certificates to trust",
            )
        if not url.startswith("https://"):
            raise r.error("ca_file", "only applies to an https upstream", "remove it or use https")
    r.finish()
    return UpstreamSettings(url, connect, timeout, pool, ca_file, queue)


def _route(file: Path, index: int, table: Any) -> Route:
    r = _Reader(file, f"routes[{index}]", table)
    if "path" not in table:
        raise r.error("path", "is missing", 'add path = "/notes/{id}"')
    path = r.get("path", str, "", '"/notes/{id}"')
    try:
        segments, subtree = _compile(path)
    except PatternError as exc:
        raise r.error(
            "path", str(exc), "write literal segments, {param} and a trailing /**"
        ) from None
    methods = r.strings("methods", (), '["GET", "POST"]')
    if not methods:
        raise r.error("methods", "is missing or empty", 'add methods = ["GET"]')
    for m in methods:
        if m not in HTTP_METHODS:
            raise r.error(
                "methods",
                f"'{m}' is not a supported method",
                f"use upper-case names from {', '.join(HTTP_METHODS)}",
            )
    if "HEAD" in methods and "GET" not in methods:
        # A HEAD request is decided exactly as GET (frameworks run the GET handler for it).
        raise r.error(
            "methods",
            "HEAD is decided as GET, so a route cannot allow HEAD without GET",
            'add "GET" to the list, or remove "HEAD"',
        )
    public = r.get("public", bool, False, "true or false")
    scopes = r.strings("scopes", (), '["notes:read"]')
    for s in scopes:
        if not valid_scope(s):
            raise r.error("scopes", f"'{s}' is not a valid scope", "use printable ASCII, no spaces")
    auth = r.strings("auth", AUTH_METHODS, '["api_key"]')
    for a in auth:
        if a not in AUTH_METHODS:
            raise r.error("auth", f"'{a}' is not an auth method", f"use {', '.join(AUTH_METHODS)}")
    if not auth:
        raise r.error("auth", "is empty", "list at least one method, or set public = true")
    if public and ("scopes" in table or "auth" in table):
        raise r.error(
            "public",
            "a public route takes no scopes or auth methods",
            "remove scopes/auth, or remove public = true",
        )
    rate = None
    if "rate_limit" in table:
        try:
            rate = parse_rate(r.get("rate_limit", str, "", '"100/minute"'))
        except ValueError as exc:
            raise r.error("rate_limit", str(exc), 'write e.g. "100/minute"') from None
    forward = r.get("forward_credentials", bool, False, "true or false")
    r.finish()
    route = Route(
        index,
        path,
        frozenset(methods),
        scopes,
        public,
        tuple(dict.fromkeys(auth)),
        rate,
        forward,
        segments,
        subtree,
    )
    reserved = Policy.overlaps_reserved(route)
    if reserved:
        raise r.error(
            "path",
            f"'{path}' overlaps restguard's own endpoint {reserved}",
            "choose a path outside /.well-known/, /oauth2/, /oauth1/, /login and /consent",
        )
    return route


def _resolve_db(file: Path, r: _Reader, text: str) -> str:
    if text.startswith("sqlite:///"):
        rest = text[len("sqlite:///") :]
        if not rest or rest.startswith(":memory:"):
            raise r.error("database", "needs a file", 'write "sqlite:///restguard.db"')
        p = Path(rest)
        return "sqlite:///" + str(p if p.is_absolute() else (file.parent / p).resolve())
    if text.startswith(("postgresql://", "postgresql+psycopg://")):
        return text
    raise r.error(
        "database",
        f"'{text}' is not a supported database URL",
        'write "sqlite:///restguard.db" or "postgresql://user@host/db"',
    )


def load(file: Path) -> Settings:
    """Read and check ``file``; raise ConfigError naming file, key and fix."""
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            file, "(file)", "does not exist", "run 'restguard init --dir DIR' or pass --config PATH"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "(syntax)", str(exc), "correct the TOML syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            file, "(file)", f"cannot be read ({exc})", "check the path and its permissions"
        ) from None
    file = file.resolve()
    top = _Reader(file, "", raw)
    server = _server(file, top.get("server", dict, {}, "a [server] table"))
    admin_r = _Reader(file, "admin", top.get("admin", dict, {}, "an [admin] table"))
    admin_listen = _listen(admin_r, Listen("127.0.0.1", 8081))
    admin_r.finish()
    storage = _Reader(file, "storage", top.get("storage", dict, {}, "a [storage] table"))
    db = _resolve_db(
        file,
        storage,
        storage.get("database", str, "sqlite:///restguard.db", '"sqlite:///restguard.db"'),
    )
    redis = storage.get("redis", str, "", '"redis://127.0.0.1:6379/0"')
    if redis and not redis.startswith(("redis://", "rediss://")):
        raise storage.error(
            "redis", f"'{redis}' is not a redis URL", 'write "redis://127.0.0.1:6379/0" or ""'
        )
    store_timeout = _seconds(storage, "timeout", STORE_TIMEOUT)
    storage.finish()
    upstream = _upstream(file, top.get("upstream", dict, {}, "an [upstream] table"))
    route_tables = top.get("routes", list, [], "[[routes]] tables")
    routes = tuple(_route(file, i, t) for i, t in enumerate(route_tables))
    audit = _Reader(file, "audit", top.get("audit", dict, {}, "an [audit] table"))
    audit_text = audit.get("path", str, "audit.log", '"audit.log" (or "" to turn the file off)')
    required = audit.get("required", bool, False, "true or false")
    if required and not audit_text:
        raise audit.error(
            "required", "needs an audit file", 'set [audit] path, or remove "required"'
        )
    audit.finish()
    keys = _Reader(file, "keys", top.get("keys", dict, {}, "a [keys] table"))
    master = Path(keys.get("master_key", str, "master.key", '"master.key"'))
    keys.finish()
    top.finish()
    return Settings(
        file=file,
        server=server,
        admin_listen=admin_listen,
        database_url=db,
        redis_url=redis,
        upstream=upstream,
        routes=routes,
        audit_path=(file.parent / audit_text) if audit_text else None,
        audit_required=required,
        master_key_path=master if master.is_absolute() else file.parent / master,
        store_timeout=store_timeout,
    )
