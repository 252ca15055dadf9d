"""``restguard init --dir DIR``: a commented starter config, the SQLite database, a master key."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from restguard.cli.context import json_option, resolve
from restguard.cli.output import emit_json, success
from restguard.config import upstream_url_problem
from restguard.keys.master_check import ensure_master_key
from restguard.keys.sealing import (
    MASTER_KEY_ENV,
    MasterKeyError,
    generate_master_key,
    load_master_key,
    open_sealer,
)
from restguard.manage import apikeys
from restguard.store.sql import migrate, open_store

TEMPLATE = """\
# restguard configuration. Every key is optional unless marked; unknown keys are refused.
# Reference: the README's "Configuration" section.

[server]
# The gateway listener: restguard's own endpoints, and every other path is matched
# against [[routes]] below and, if allowed, proxied to [upstream].
listen = "{listen}"
# The issuer of the tokens restguard signs, and the base of its redirect URLs.
public_url = "http://{listen}"
# TLS: with both set the listener speaks HTTPS (TLS 1.2+; PEM files, relative to this file; the
# certificate file may hold the chain, server certificate first; make public_url https://).
# Without them it speaks plain HTTP: keep it on loopback or behind a TLS-terminating proxy.
# tls_cert = "cert.pem"
# tls_key = "key.pem"
# Proxies whose X-Forwarded-For is believed (addresses or CIDR networks). Empty: nobody's.
trusted_proxies = []
# Size caps, checked before anything is parsed.
max_body_bytes = 10485760
max_header_bytes = 16384
# Failed credential checks (every 401) allowed per client address before it gets 429.
failed_attempts = "30/minute"
# Slow clients: the request head must arrive within client_header_timeout; an idle keep-alive
# connection is closed after keepalive_timeout; a request body may pause at most
# client_body_timeout and must average client_body_min_rate bytes/s after that (else 408).
client_header_timeout = "10s"
keepalive_timeout = "75s"
client_body_timeout = "15s"
client_body_min_rate = 1024
# A client that stops reading its answer this long is cut off (the upstream is not timed out
# meanwhile: a slow reader is not the upstream's fault).
client_send_timeout = "60s"
# An answer up to this size is taken from the upstream whole even when its client reads slowly,
# so the pooled upstream connection is free at once (larger ones stream at the client's pace).
send_buffer_bytes = 262144
# Concurrent client connections (503 beyond), and the request body read before an upstream
# connection is taken (so slow senders of small bodies hold none).
max_connections = 4096
body_buffer_bytes = 65536
# On SIGTERM: requests in flight get this long to finish; what cannot gets 503.
shutdown_grace = "10s"

[admin]
# /healthz and /metrics. Keep it on loopback.
listen = "{admin_listen}"

[storage]
# SQLite by default (relative paths are relative to this file); or postgresql://user@host/db
database = "sqlite:///restguard.db"
# e.g. redis://127.0.0.1:6379/0 when several instances share the work (pip install
# 'restguard[redis]'): rate limits, failed-attempt counts and replay caches live there, and
# revocations reach every instance within 100 ms. Its maxmemory-policy must be noeviction.
redis = ""
# Prefix of every Redis key and channel: deployments sharing one Redis need different ones.
redis_prefix = "restguard:"
# Every store operation's deadline: past it, a decision that needs the store answers 503.
timeout = "2s"

[keys]
# Encrypts every stored secret that must be recoverable. Mode 0600; or set RESTGUARD_MASTER_KEY.
master_key = "master.key"

[audit]
# One JSON line per decision (never a secret). "" turns the file off.
path = "audit.log"
# false: when the file cannot be written (a full disk), keep serving and count the lost lines
# (metric restguard_audit_dropped_total, /readyz). true: refuse (503) what cannot be recorded.
required = false

[log]
# restguard's own messages (reloads, lost audit lines, restarted workers) on stderr: "text", or
# "json" (one object per line: time, level, logger, message; credentials redacted).
format = "text"
level = "warning"

[tracing]
# OpenTelemetry spans of the gateway's requests, exported over OTLP/HTTP (OTEL_* variables);
# the upstream gets each span's traceparent. Needs: pip install 'restguard[otel]'.
enabled = false

[upstream]
# The REST API restguard protects. It receives exactly the path the policy judged.
url = "{upstream}"
connect_timeout = "5s"
timeout = "30s"
pool_size = 100
# Waiting this long for a free pooled connection gives 503 with Retry-After.
queue_timeout = "5s"
# For an https upstream: certificates are verified against the system store, or this PEM file.
# ca_file = "upstream-ca.pem"

# Routes are tried in file order; the first whose path and method match decides.
# A request that matches no route gets 404 and never reaches the upstream (default deny).
# path: literal segments, {{param}} for one segment, a trailing /** for a subtree ("/**" is
# every path: restguard's own endpoints, such as /.well-known/jwks.json, are answered first).
# auth: which credential kinds the route accepts (default: all of them).
{routes}"""

DEFAULT_ROUTES = """\
[[routes]]
path = "/health"
methods = ["GET"]
public = true

[[routes]]
path = "/notes/**"
methods = ["GET", "HEAD"]
scopes = ["notes:read"]

[[routes]]
path = "/notes/**"
methods = ["POST", "PUT", "PATCH", "DELETE"]
scopes = ["notes:write"]
"""


def write_data_dir(
    directory: Path,
    *,
    upstream: str = "http://127.0.0.1:9000",
    listen: str = "127.0.0.1:8080",
    admin_listen: str = "127.0.0.1:8081",
    routes: str = DEFAULT_ROUTES,
) -> Path:
    """Create ``directory`` with restguard.toml, master.key and a migrated SQLite database.
    Refuses to overwrite an existing config or key."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = directory / "restguard.toml"
    key = directory / "master.key"
    for existing in (config, key):
        if existing.exists():
            raise click.ClickException(f"{existing} already exists; choose another --dir")
    if os.environ.get(MASTER_KEY_ENV):
        try:
            load_master_key(key)  # the key the database will be bound to: well-formed first
        except MasterKeyError as exc:
            raise click.ClickException(str(exc)) from None
    # CONTRACT: every file in the data directory is readable by its owner only.
    text = TEMPLATE.format(
        listen=listen, admin_listen=admin_listen, upstream=upstream, routes=routes
    )
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    generate_master_key(key)
    database = "sqlite:///" + str(directory / "restguard.db")
    migrate(database)
    _bind(database, key)
    return config


def _bind(database: str, key: Path) -> None:
    """Bind the new database to its master key (``keys/master_check.py``) -- the one every
    command will use: ``$RESTGUARD_MASTER_KEY`` if set, else the key file -- so that no other key
    can ever seal a secret into it. In a thread of its own: callers may run an event loop."""

    async def bind() -> None:
        store = open_store(database)
        try:
            await ensure_master_key(store, open_sealer(key))
        finally:
            store.close()

    with ThreadPoolExecutor(1, thread_name_prefix="restguard-init") as pool:
        try:
            pool.submit(asyncio.run, bind()).result()
        except MasterKeyError as exc:  # (a database left by an earlier data directory)
            raise click.ClickException(f"{database}: {exc}") from None


def bootstrap_admin_key(config: Path) -> dict[str, Any]:
    """Issue the first admin key (scope ``restguard:admin``, no expiry) of a new data
    directory and return it as ``apikey create --json`` prints it: the admin API's way in.
    In a thread of its own, like ``_bind``."""

    async def issue() -> dict[str, Any]:
        store = open_store("sqlite:///" + str(config.parent / "restguard.db"))
        try:
            return await apikeys.create(
                store, datetime.now(UTC), apikeys.BOOTSTRAP_NAME, [apikeys.ADMIN_SCOPE]
            )
        finally:
            store.close()

    with ThreadPoolExecutor(1, thread_name_prefix="restguard-init") as pool:
        data: dict[str, Any] = pool.submit(asyncio.run, issue()).result()
    data.pop("etag", None)
    return data


def _upstream(ctx: click.Context, param: click.Parameter, value: str) -> str:
    problem = upstream_url_problem(value)
    if problem is not None:
        raise click.BadParameter(f"{problem[0]}; {problem[1]}")
    return value.rstrip("/")


@click.command()
@click.option(
    "--dir",
    "directory",
    required=True,
    metavar="DIR",
    help="Where to write restguard.toml, master.key and restguard.db.",
)
@click.option(
    "--upstream",
    default="http://127.0.0.1:9000",
    show_default=True,
    callback=_upstream,
    help="The URL of the REST API to protect (scheme, host and port).",
)
@json_option
def init(directory: str, upstream: str, as_json: bool) -> None:
    """Write a starter config, database and master key."""
    config = write_data_dir(resolve(directory), upstream=upstream)
    admin = bootstrap_admin_key(config)
    if as_json:
        emit_json(
            {
                "config": str(config),
                "master_key": str(config.parent / "master.key"),
                "database": str(config.parent / "restguard.db"),
                "upstream": upstream,
                "admin_key": admin,
            }
        )
        return
    success(f"wrote {config}")
    if os.environ.get(MASTER_KEY_ENV):
        click.echo(f"  master key: {MASTER_KEY_ENV} (it is set: the data directory is bound to it")
        click.echo(f"              and {config.parent / 'master.key'} is not used)")
    else:
        click.echo(f"  master key: {config.parent / 'master.key'} (mode 0600; back it up)")
    click.echo(f"  database:   {config.parent / 'restguard.db'}")
    click.echo(f"  admin key:  {admin['key']}")
    click.secho(
        f"              (id {admin['id']}, scope {apikeys.ADMIN_SCOPE}: the admin API's key, "
        "shown once; only its hash is stored)",
        dim=True,
    )
    click.echo("next:")
    click.echo(f"  restguard apikey create --config {config} --name me --scope notes:read")
    click.echo(f"  restguard serve --config {config}")
