"""``restguard serve`` and ``restguard migrate``."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from restguard.cli.context import config_option, friendly, json_option, settings_from
from restguard.cli.output import emit_json, success
from restguard.cli.reload import remove_pid_file, write_pid_file
from restguard.cli.serve import bind, install_loop, raise_file_limit, run_servers
from restguard.cli.workers import Supervisor
from restguard.config import Settings
from restguard.gateway.server import listener_tls
from restguard.keys.tls import ServerTLS
from restguard.logs import configure as configure_logs
from restguard.store.sql import migrate as apply_migrations
from restguard.tracing import configure as configure_tracing


@click.command()
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Gateway processes sharing the listener (the first also runs the admin listener, "
    "supervises the others and its /metrics covers them all).",
)
@config_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Once listening, print one JSON document (listeners, upstream, routes) on stdout.",
)
@friendly
def serve(workers: int, config: str | None, as_json: bool) -> None:
    """Run the gateway (policy, credentials, proxy, JWKS) and the admin listener."""
    settings = settings_from(config)
    tls = listener_tls(settings)  # (checked at load too: the files may have changed since)
    configure_logs(settings.log_format, settings.log_level)
    if settings.tracing:
        configure_tracing()  # (an SDK the process set up itself is kept)
    apply_migrations(settings.database_url)
    raise_file_limit(settings)
    gateway = f"{'https' if tls else 'http'}://{settings.server.listen}"

    def ready() -> None:
        if as_json:
            emit_json(
                {
                    "gateway": gateway,
                    "admin": f"http://{settings.admin_listen}",
                    "upstream": settings.upstream.url,
                    "config": str(settings.file),
                    "routes": len(settings.routes),
                    "workers": workers,
                    "pid": os.getpid(),
                }
            )
        else:
            success(f"restguard gateway on {gateway} -> {settings.upstream.url}")
            success(f"admin on http://{settings.admin_listen} (healthz, readyz, metrics)")
            click.echo(f"{len(settings.routes)} routes from {settings.file}; Ctrl-C stops.")
        if not settings.routes:
            click.secho(
                f"warning: {settings.file} has no [[routes]]: every request gets 404 (default "
                "deny). Add routes (see the README's Configuration section).",
                fg="yellow",
                err=True,
            )

    install_loop()
    pid_file = write_pid_file(settings)  # for 'restguard reload'
    try:
        _serve(dataclasses.replace(settings, processes=workers), workers, ready, tls)
    finally:
        remove_pid_file(pid_file)


def _serve(
    settings: Settings, workers: int, ready: Callable[[], None], tls: ServerTLS | None
) -> None:
    if workers == 1:
        asyncio.run(run_servers(settings, on_ready=ready, tls=tls))
        return
    sock = bind(settings.server.listen)
    metrics_dir = Path(tempfile.mkdtemp(prefix="restguard-metrics-"))
    supervisor = Supervisor(settings, sock, metrics_dir, workers - 1)
    supervisor.start()
    try:
        asyncio.run(
            run_servers(
                settings,
                gateway_socket=sock,
                on_ready=ready,
                metrics_dir=metrics_dir,
                background=(supervisor.watch,),
                on_signal=supervisor.signal_all,
                on_reload=supervisor.use_settings,
                tls=tls,
            )
        )
    finally:
        supervisor.stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)


@click.command()
@config_option
@json_option
@friendly
def migrate(config: str | None, as_json: bool) -> None:
    """Apply pending database migrations (safe while other instances start)."""
    settings = settings_from(config)
    applied = apply_migrations(settings.database_url)
    if as_json:
        emit_json({"applied": list(applied)})
    elif applied:
        success(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo("the database schema is up to date")
