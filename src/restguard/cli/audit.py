"""``restguard audit [--follow] [--tail N] [--json]``: print the decision log (its lines read
by ``restguard.manage.audit.parse``, as ``GET /api/audit`` reads them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from restguard.cli.context import config_option, settings_from
from restguard.cli.output import emit_json
from restguard.manage.audit import parse


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
    event = parse(raw)
    if event is not None:
        _line(event, as_json, raw)


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new decisions as they happen.")
@click.option(
    "--tail",
    "-n",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Only the last N decisions (0: none, with --follow only new ones).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON array of decisions; with --follow, one JSON object per line (a stream).",
)
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
            if as_json:
                emit_json([])
            return
        path.touch(mode=0o600)
    with path.open("rb") as f:
        lines = f.readlines()
        # A line still being written is finished by --follow, not skipped as broken.
        pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        found = [(raw, e) for raw in lines if (e := parse(raw.decode("utf-8", "replace")))]
        if tail is not None:
            found = found[len(found) - tail :]
        if as_json and not follow:
            emit_json([event for _, event in found])
            return
        for raw, event in found:
            _line(event, as_json, raw.decode("utf-8", "replace"))
        if not follow:
            return
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
