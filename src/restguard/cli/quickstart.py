"""``restguard quickstart``: a data dir, a demo notes API, a policy, keys, the server; one go."""

from __future__ import annotations

import asyncio
import shlex
import socket
from datetime import UTC, datetime
from pathlib import Path

import click

from restguard.cli.context import friendly, resolve, settings_from
from restguard.cli.init import write_data_dir
from restguard.cli.serve import _Server, bind, install_loop, run_servers, uvicorn_config
from restguard.config import Listen, Settings
from restguard.credentials.apikey import new_record
from restguard.demo.notes import NotesApp
from restguard.store.sql import open_store

READ_NAME, WRITE_NAME = "quickstart-read", "quickstart-write"


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


async def _fresh_keys(database_url: str) -> tuple[str, str]:
    """Revoke the previous run's demo keys (their secrets were only ever printed) and issue
    a read key and a read/write key."""
    store = open_store(database_url)
    try:
        now = datetime.now(UTC)
        for rec in await store.api_keys.list():
            if rec.name in (READ_NAME, WRITE_NAME) and not rec.revoked_at:
                await store.api_keys.revoke(rec.id, now)
        read, read_key = new_record(READ_NAME, ("notes:read",), now, None)
        write, write_key = new_record(WRITE_NAME, ("notes:read", "notes:write"), now, None)
        await store.api_keys.insert(read)
        await store.api_keys.insert(write)
        return read_key, write_key
    finally:
        store.close()


def _guide(base: str, admin: str, config: Path, read_key: str, write_key: str) -> str:
    q = shlex.quote
    lines = [
        "",
        click.style("restguard is protecting the demo notes API.", fg="green", bold=True),
        f"  gateway  {base}   admin {admin}   config {config}",
        "",
        click.style("Try it (paste into another terminal):", bold=True),
        "",
        "# 200: a public route",
        f"curl -i {base}/health",
        "# 200: read with the read key",
        f"curl -i -H {q('X-API-Key: ' + read_key)} {base}/notes",
        "# 401: no credential",
        f"curl -i {base}/notes",
        "# 403: the read key may not write",
        f"curl -i -X POST -H {q('Authorization: ApiKey ' + read_key)} "
        f"-H 'Content-Type: application/json' -d '{{\"text\":\"hi\"}}' {base}/notes",
        "# 201: the read/write key may",
        f"curl -i -X POST -H {q('Authorization: ApiKey ' + write_key)} "
        f"-H 'Content-Type: application/json' -d '{{\"text\":\"hi\"}}' {base}/notes",
        "# 404: no route matches (default deny)",
        f"curl -i -H {q('X-API-Key: ' + write_key)} {base}/admin",
        "",
        f"Decisions: restguard audit --follow --config {config}",
        f"Metrics:   curl {admin}/metrics",
        "Keys are shown once; a new run issues new ones. Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


@click.command()
@click.option(
    "--dir",
    "directory",
    default="restguard-data",
    show_default=True,
    metavar="DIR",
    help="Data dir (created on the first run, reused after).",
)
@click.option("--port", default=8080, show_default=True, help="Gateway port.")
@click.option("--admin-port", default=8081, show_default=True, help="Admin port.")
@click.option("--upstream-port", default=9000, show_default=True, help="Demo notes API port.")
@friendly
def quickstart(directory: str, port: int, admin_port: int, upstream_port: int) -> None:
    """Everything in one go: data dir, demo API, policy, keys, server, ready-to-paste requests."""
    data = resolve(directory)
    config = data / "restguard.toml"
    host = "127.0.0.1"
    for name, p in (
        ("--port", port),
        ("--admin-port", admin_port),
        ("--upstream-port", upstream_port),
    ):
        if not _free(host, p):
            raise click.ClickException(f"port {p} on {host} is in use; pass another {name}")
    if config.exists():
        click.echo(f"reusing {data}")
    else:
        write_data_dir(
            data,
            upstream=f"http://{host}:{upstream_port}",
            listen=f"{host}:{port}",
            admin_listen=f"{host}:{admin_port}",
        )
        click.echo(f"created {data}")
    settings = settings_from(str(config))
    if (settings.server.listen.port, settings.admin_listen.port) != (port, admin_port):
        raise click.ClickException(
            f"{config} listens on {settings.server.listen} and {settings.admin_listen}; "
            "pass matching --port/--admin-port or use another --dir"
        )
    read_key, write_key = asyncio.run(_fresh_keys(settings.database_url))
    install_loop()
    asyncio.run(_serve(settings, config, read_key, write_key, upstream_port))
    click.echo("stopped.")


async def _serve(
    settings: Settings, config: Path, read_key: str, write_key: str, upstream_port: int
) -> None:
    demo = _Server(uvicorn_config(NotesApp()))
    demo_task = asyncio.create_task(demo.serve(sockets=[bind(Listen("127.0.0.1", upstream_port))]))
    base = f"http://{settings.server.listen}"
    admin = f"http://{settings.admin_listen}"
    try:
        await run_servers(
            settings, on_ready=lambda: click.echo(_guide(base, admin, config, read_key, write_key))
        )
    finally:
        demo.should_exit = True
        await demo_task
