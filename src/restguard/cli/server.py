"""``restguard serve`` and ``restguard migrate``."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import socket
import tempfile
from pathlib import Path

import click

from restguard.cli.context import config_option, friendly, settings_from
from restguard.cli.output import success
from restguard.cli.serve import bind, install_loop, run_servers
from restguard.config import Settings
from restguard.store.sql import migrate as apply_migrations


def _worker(settings: Settings, sock: socket.socket, metrics_dir: Path) -> None:
    install_loop()
    asyncio.run(run_servers(settings, gateway_socket=sock, admin=False, metrics_dir=metrics_dir))


@click.command()
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Gateway processes sharing the listener (the admin listener runs in the first and "
    "its /metrics covers them all).",
)
@config_option
@friendly
def serve(workers: int, config: str | None) -> None:
    """Run the gateway (policy, credentials, proxy, JWKS) and the admin listener."""
    settings = settings_from(config)
    apply_migrations(settings.database_url)

    def ready() -> None:
        success(f"restguard gateway on http://{settings.server.listen} -> {settings.upstream.url}")
        success(f"admin on http://{settings.admin_listen} (healthz, metrics)")
        click.echo(f"{len(settings.routes)} routes from {settings.file}; Ctrl-C stops.")

    install_loop()
    if workers == 1:
        asyncio.run(run_servers(settings, on_ready=ready))
        return
    sock = bind(settings.server.listen)
    metrics_dir = Path(tempfile.mkdtemp(prefix="restguard-metrics-"))
    ctx = multiprocessing.get_context("fork")
    children = [
        ctx.Process(target=_worker, args=(settings, sock, metrics_dir), daemon=True)
        for _ in range(workers - 1)
    ]
    for child in children:
        child.start()
    try:
        asyncio.run(
            run_servers(settings, gateway_socket=sock, on_ready=ready, metrics_dir=metrics_dir)
        )
    finally:
        for child in children:
            if child.pid:
                os.kill(child.pid, 15)
        for child in children:
            child.join(10)
        shutil.rmtree(metrics_dir, ignore_errors=True)


@click.command()
@config_option
@friendly
def migrate(config: str | None) -> None:
    """Apply pending database migrations (safe while other instances start)."""
    settings = settings_from(config)
    applied = apply_migrations(settings.database_url)
    if applied:
        success(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo("the database schema is up to date")
