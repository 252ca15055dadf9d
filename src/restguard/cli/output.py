"""Output for people (aligned tables, colour on a terminal) and for scripts (--json)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from restguard.manage.values import iso

__all__ = ["emit_json", "iso", "success", "table", "warn"]


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print an aligned table; header in bold on a terminal."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
    click.secho(line.rstrip(), bold=True)
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        click.secho("(none)", dim=True)


def success(message: str) -> None:
    click.secho(message, fg="green")


def warn(message: str) -> None:
    click.secho(message, fg="yellow", err=True)
