"""``restguard check``: validate a configuration as ``serve`` would, and start nothing.

Like ``nginx -t`` and ``kong check`` it lists every problem, not the first: the file's own
(``config.validate``), then what ``serve`` checks before it binds its listeners: every protected
route accepts an auth method this version provides, the master key is there, well-formed and
private and opens the data directory's stored secrets, the database (and Redis, when
configured) answers, the audit file can be opened. Nothing is created, migrated or bound (a
running server holds the listeners).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import click

from restguard.cli.context import config_option, given_config, json_option, run
from restguard.cli.output import emit_json, success, warn
from restguard.config import ConfigError, Settings, config_path, validate
from restguard.errors import BackendUnavailable
from restguard.keys.master_check import verify_master_key
from restguard.keys.sealing import MasterKeyError, Sealer, open_sealer
from restguard.store.sql import open_store, pending
from restguard.wiring import open_redis_for, unservable_routes

_MASTER_KEY = ("keys", "master_key")
_DATABASE = ("storage", "database")


class _Findings:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.problems: list[ConfigError] = []
        self.database = ""  # the database's state, for the summary
        self.redis = ""  # Redis's, likewise

    def add(self, path: tuple[str, ...], problem: str, fix: str) -> None:
        self.problems.append(self.settings.error(path, problem, fix))

    def master_key(self, exc: MasterKeyError) -> None:
        problem, _, fix = str(exc).partition("; ")
        self.add(_MASTER_KEY, problem, fix or "use the master key the data directory was made with")


def _untouched(problems: tuple[ConfigError, ...], *tables: str) -> bool:
    return not any(p.key.split(".")[0].split("[")[0] in tables for p in problems)


async def _preflight(settings: Settings, seen: tuple[ConfigError, ...]) -> _Findings:
    found = _Findings(settings)
    found.problems += unservable_routes(settings)
    sealer = None
    if _untouched(seen, "keys"):
        try:
            sealer = open_sealer(settings.master_key_path)
        except MasterKeyError as exc:
            found.master_key(exc)
    if _untouched(seen, "storage") and settings.database_url:
        await _database(found, sealer)
    if _untouched(seen, "storage") and settings.redis_url:
        await _redis(found)
    audit = settings.audit_path
    if audit is not None and _untouched(seen, "audit"):
        target = audit if audit.exists() else audit.parent
        if not os.access(target, os.W_OK) or audit.is_dir():
            found.add(
                ("audit", "path"),
                f"cannot open {audit} for writing",
                'choose a writable path, or "" to turn the file off',
            )
    return found


async def _database(found: _Findings, sealer: Sealer | None) -> None:
    url = found.settings.database_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        found.database = "not created yet (serve creates it)"
        return  # (opening it would create it)
    try:
        todo = pending(url)
    except BackendUnavailable as exc:
        found.add(
            _DATABASE,
            f"the database does not answer ({exc.debug or exc.description})",
            "start it, or correct [storage] database",
        )
        return
    if todo:
        found.database = f"{len(todo)} migration(s) pending (serve applies them)"
        return
    found.database = "schema current"
    if sealer is None:
        return
    store = open_store(url, timeout=found.settings.store_timeout)
    try:
        await verify_master_key(store, sealer)  # reads only: check writes nothing
    except MasterKeyError as exc:
        found.master_key(exc)
    except BackendUnavailable as exc:
        found.add(_DATABASE, f"cannot be read ({exc.debug or exc.description})", "check it")
    finally:
        store.close()


async def _redis(found: _Findings) -> None:
    try:
        redis = open_redis_for(found.settings)
    except ConfigError as exc:  # the client is not installed, or the URL is not usable
        found.problems.append(exc)
        return
    if redis is None:
        return
    try:
        await redis.ping()
        found.redis = "answers"
    except BackendUnavailable as exc:
        found.add(
            ("storage", "redis"),
            f"Redis does not answer ({exc.debug or exc.description})",
            "start it, or correct [storage] redis",
        )
    finally:
        await redis.aclose()


def _shown(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _summary(settings: Settings, database: str, redis: str) -> None:
    routes = settings.routes
    public = sum(1 for r in routes if r.public)
    tls = " (TLS)" if settings.server.tls else ""
    success(f"configuration OK: {settings.file}")
    rows = [
        ("routes", f"{len(routes)} ({public} public)"),
        ("upstream", settings.upstream.url),
        ("listeners", f"gateway {settings.server.listen}{tls}, admin {settings.admin_listen}"),
        ("database", f"{_shown(settings.database_url)}{f' ({database})' if database else ''}"),
    ]
    if settings.redis_url:
        rows.append(("redis", f"{_shown(settings.redis_url)} ({redis})"))
    for name, value in rows:
        click.echo(f"  {name:<10} {value}")
    if not routes:
        warn("warning: no [[routes]]: every request gets 404 (default deny)")


@click.command()
@config_option
@json_option
def check(config: str | None, as_json: bool) -> None:
    """Validate the configuration: exit 0, or 1 with every problem listed.

    Checks what 'restguard serve' checks before it listens: every setting and route, the
    master key (present, mode 0600, opening the stored secrets), the database (its URL, and
    that it answers), Redis when [storage] redis is set (that it answers) and the audit file.
    Starts, creates and migrates nothing.

    Each problem is one line, 'FILE:LINE: KEY: problem. Fix: ...'; with --json, one document:
    {"ok": true|false, "problems": [{"file", "key", "problem", "fix", "line"}, ...]}.
    """
    result = validate(config_path(given_config(config)))
    problems = list(result.problems)
    database = redis = ""
    if result.settings is not None:
        found = run(_preflight(result.settings, result.problems))
        problems += found.problems
        database, redis = found.database, found.redis
    if as_json:
        emit_json({"ok": not problems, "problems": [p.as_dict() for p in problems]})
    elif not problems and result.settings is not None:
        _summary(result.settings, database, redis)
    else:
        for problem in problems:
            click.secho(str(problem), fg="red", err=True)
        count = f"{len(problems)} problem{'s' * (len(problems) != 1)}"
        click.echo(f"configuration has {count}", err=True)
    if problems:
        raise SystemExit(1)
