"""``restguard audit [--follow]``: print the decision log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from restguard.cli.context import config_option, settings_from


def _line(event: dict[str, Any], as_json: bool, raw: str) -> None:
    if as_json:
        click.echo(raw.rstrip("\n"))
        return
    colour = "green" if event.get("outcome") == "allow" else "red"
    parts = [
        event.get("time", ""),
        click.style(f"{event.get('outcome', '?'):5}", fg=colour),
        str(event.get("status", "")),
        f"{event.get('method', '')} {event.get('path', '')}",
        f"route={event.get('route') or '-'}",
        f"auth={event.get('auth_method') or '-'}",
        f"cred={event.get('credential_id') or '-'}",
        f"client={event.get('client') or '-'}",
    ]
    if event.get("error"):
        parts.append(f"error={event['error']}")
    if event.get("detail"):
        parts.append(f"({event['detail']})")
    click.echo(" ".join(parts))


def _emit(raw: str, as_json: bool) -> None:
    try:
        event = json.loads(raw)
    except json.JSONDecodeError:
        return
    if isinstance(event, dict):
        _line(event, as_json, raw)


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new decisions as they happen.")
@click.option("--tail", "-n", type=int, default=None, help="Only the last N decisions.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON lines.")
@config_option
def audit(follow: bool, tail: int | None, as_json: bool, config: str | None) -> None:
    """The decision log: one line per request decided (never a secret)."""
    settings = settings_from(config)
    path: Path | None = settings.audit_path
    if path is None:
        raise click.ClickException(f"{settings.file}: audit.path is empty, so no log is kept")
    if not path.exists():
        if not follow:
            click.echo(f"no decisions logged yet ({path})", err=True)
            return
        path.touch(mode=0o600)
    with path.open("rb") as f:
        lines = f.readlines()
        for raw in lines[-tail:] if tail else lines:
            _emit(raw.decode("utf-8", "replace"), as_json)
        if not follow:
            return
        pending = b""
        try:
            while True:
                pending += f.readline()
                if pending.endswith(b"\n"):
                    _emit(pending.decode("utf-8", "replace"), as_json)
                    pending = b""
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return
