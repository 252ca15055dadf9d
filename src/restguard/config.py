"""``restguard.toml`` -> frozen settings.

Every mistake is a ``ConfigError`` naming the file (and line), the key and the fix:
``restguard.toml:14: routes[2].path: ... Fix: ...``. Unknown keys are mistakes too (a typo must
not silently fall back to a default). Reading goes on after a mistake: ``validate`` returns every
problem at once (``restguard check``), ``load`` raises the first. Values are parsed in
``config_base``, the [server] and [upstream] tables read in ``config_server``, routes in
``config_routes``; lines come from ``wire.toml_lines``.
"""

from __future__ import annotations

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
    upstream_url_problem,
    valid_scope,
)
from restguard.config_routes import read_routes
from restguard.config_server import (
    Listen,
    ServerSettings,
    UpstreamSettings,
    read_listen,
    read_seconds,
    read_server,
    read_upstream,
)
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
_SYNTAX_LINE = re.compile(r"\(at line (\d+), column \d+\)")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``restguard.toml`` says, checked and resolved."""

    file: Path
    server: ServerSettings = ServerSettings()  # noqa: RUF009 - frozen, shared safely
    admin_listen: Listen = Listen("127.0.0.1", 8081)  # noqa: RUF009 - frozen
    database_url: str = ""
    redis_url: str = ""
    redis_prefix: str = "restguard:"
    upstream: UpstreamSettings = UpstreamSettings()  # noqa: RUF009 - frozen
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
    server = read_server(doc, top.get("server", dict, {}, "a [server] table"))
    admin_r = Reader(doc, ("admin",), top.get("admin", dict, {}, "an [admin] table"))
    admin_listen = read_listen(admin_r, "listen", Listen("127.0.0.1", 8081))
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
    store_timeout = read_seconds(storage, "timeout", STORE_TIMEOUT)
    storage.finish()
    upstream = read_upstream(doc, top.get("upstream", dict, {}, "an [upstream] table"))
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
