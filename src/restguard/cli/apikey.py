"""``restguard apikey create|list|revoke|rotate``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from restguard.cli.context import (
    config_option,
    duration_option,
    friendly,
    json_option,
    run,
    settings_from,
    with_store,
)
from restguard.cli.output import emit_json, success, table
from restguard.config import Settings
from restguard.credentials.apikey import check_name
from restguard.manage import apikeys
from restguard.manage.errors import Invalid, ManageError
from restguard.manage.values import check_scopes
from restguard.store.ports import Store

T = TypeVar("T")


def _scopes(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return check_scopes(value, hint="repeat --scope for each one")
    except Invalid as exc:
        raise click.BadParameter(exc.message) from None


def _act(settings: Settings, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run a service call on the store; its refusal becomes the CLI's one-line error."""
    try:
        return run(with_store(settings, action))
    except ManageError as exc:
        raise click.ClickException(exc.message) from None


def _shown(data: dict[str, Any]) -> dict[str, Any]:
    """A record as the CLI prints it: the API's ``etag`` (for ``If-Match``) left out."""
    return {k: v for k, v in data.items() if k != "etag"}


def _print_new(as_json: bool, data: dict[str, Any], verb: str) -> None:
    """The new key, shown once. After a rotation: the old key's id and the time it stops
    working (``grace_ends_at``: now without --grace)."""
    if as_json:
        emit_json(_shown(data))
        return
    success(f"API key {verb}: {data['id']} ({data['name']})")
    click.echo(f"  key:        {data['key']}")
    click.echo(f"  scopes:     {' '.join(data['scopes']) or '(none)'}")
    click.echo(f"  expires at: {data['expires_at'] or 'never'}")
    if "old_id" in data:
        click.echo(f"  old key:    {data['old_id']} works until {data['grace_ends_at']}")
    click.secho("  The key is shown once; only its hash is stored.", dim=True)


@click.group("apikey")
def apikey() -> None:
    """Issue and manage API keys."""


@apikey.command("create")
@click.option("--name", required=True, help="Who or what the key is for (forwarded as subject).")
@click.option(
    "--scope", "scopes", multiple=True, callback=_scopes, help="A scope; repeat for more."
)
@click.option(
    "--expires-in",
    callback=duration_option,
    metavar="DURATION",
    help="Lifetime: a number with ms, s, m, h or d (default: no expiry).",
)
@config_option
@json_option
@friendly
def create(
    name: str, scopes: tuple[str, ...], expires_in: float | None, config: str | None, as_json: bool
) -> None:
    """Create a key and print it once."""
    try:
        check_name(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None
    settings = settings_from(config)

    async def act(store: Store) -> dict[str, Any]:
        return await apikeys.create(store, datetime.now(UTC), name, list(scopes), expires_in)

    _print_new(as_json, _act(settings, act), "created")


@apikey.command("list")
@config_option
@json_option
@friendly
def list_(config: str | None, as_json: bool) -> None:
    """List keys (never their secrets)."""
    settings = settings_from(config)

    async def act(store: Store) -> list[dict[str, Any]]:
        return await apikeys.everything(store, datetime.now(UTC))

    rows = [_shown(r) for r in _act(settings, act)]
    if as_json:
        emit_json(rows)
        return
    table(
        ("id", "name", "scopes", "state", "expires_at", "last_used_at"),
        [
            (
                r["id"],
                r["name"],
                " ".join(r["scopes"]),
                r["state"],
                r["expires_at"] or "never",
                r["last_used_at"] or "never",
            )
            for r in rows
        ],
    )


@apikey.command("revoke")
@click.argument("key_id")
@config_option
@json_option
@friendly
def revoke(key_id: str, config: str | None, as_json: bool) -> None:
    """Revoke a key at once (on every instance within one second)."""
    settings = settings_from(config)

    async def act(store: Store) -> dict[str, Any]:
        return await apikeys.revoke(store, datetime.now(UTC), key_id)

    data = _shown(_act(settings, act))
    if as_json:
        emit_json(data)
    else:
        success(f"API key {data['id']} ({data['name']}) revoked.")


@apikey.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace",
    callback=duration_option,
    metavar="DURATION",
    help="Keep the old key working this long (default: it stops at once).",
)
@config_option
@json_option
@friendly
def rotate(key_id: str, grace: float | None, config: str | None, as_json: bool) -> None:
    """Replace a key with a new one (same name, scopes and expiry).

    A key rotated already (in its grace period) is not rotated again: rotate the key that
    replaced it, or revoke this one."""
    settings = settings_from(config)

    async def act(store: Store) -> dict[str, Any]:
        return await apikeys.rotate(store, datetime.now(UTC), key_id, grace)

    _print_new(as_json, _act(settings, act), f"rotated from {key_id}")
