"""``restguard apikey create|list|revoke|rotate``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

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
from restguard.cli.output import emit_json, iso, success, table
from restguard.config import scope_problem
from restguard.credentials.apikey import check_name, generate_key, new_record
from restguard.keys.hashing import token_digest
from restguard.store.errors import UnknownRecord
from restguard.store.ports import ApiKeyRecord, Store


def _scopes(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for scope in value:
        problem = scope_problem(scope)
        if problem:
            raise click.BadParameter(f"{problem}: repeat --scope for each one")
    return tuple(dict.fromkeys(value))


def _state(rec: ApiKeyRecord, now: datetime) -> str:
    if rec.revoked_at and rec.revoked_at <= now:
        return "revoked"
    if rec.expires_at and rec.expires_at <= now:
        return "expired"
    if rec.revoked_at:
        return "grace"
    return "active"


def _public(rec: ApiKeyRecord, now: datetime) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "scopes": list(rec.scopes),
        "state": _state(rec, now),
        "created_at": iso(rec.created_at),
        "expires_at": iso(rec.expires_at),
        "revoked_at": iso(rec.revoked_at),
        "last_used_at": iso(rec.last_used_at),
    }


def _print_new(
    as_json: bool,
    rec: ApiKeyRecord,
    key: str,
    verb: str,
    old: ApiKeyRecord | None = None,
) -> None:
    """The new key, shown once. After a rotation (``old``): the old key's id and the time it
    stops working (``grace_ends_at``: now without --grace)."""
    data: dict[str, Any] = {
        "id": rec.id,
        "name": rec.name,
        "key": key,
        "scopes": list(rec.scopes),
        "expires_at": iso(rec.expires_at),
    }
    if old is not None:
        data |= {"old_id": old.id, "grace_ends_at": iso(old.revoked_at)}
    if as_json:
        emit_json(data)
        return
    success(f"API key {verb}: {rec.id} ({rec.name})")
    click.echo(f"  key:        {key}")
    click.echo(f"  scopes:     {' '.join(rec.scopes) or '(none)'}")
    click.echo(f"  expires at: {iso(rec.expires_at) or 'never'}")
    if old is not None:
        click.echo(f"  old key:    {old.id} works until {iso(old.revoked_at)}")
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
    record, key = new_record(name, scopes, datetime.now(UTC), expires_in)

    async def act(store: Store) -> None:
        await store.api_keys.insert(record)

    run(with_store(settings, act))
    _print_new(as_json, record, key, "created")


@apikey.command("list")
@config_option
@json_option
@friendly
def list_(config: str | None, as_json: bool) -> None:
    """List keys (never their secrets)."""
    settings = settings_from(config)

    async def act(store: Store) -> list[ApiKeyRecord]:
        return await store.api_keys.list()

    records = run(with_store(settings, act))
    now = datetime.now(UTC)
    rows = [_public(r, now) for r in records]
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

    async def act(store: Store) -> ApiKeyRecord:
        return await store.api_keys.revoke(key_id, datetime.now(UTC))

    try:
        rec = run(with_store(settings, act))
    except UnknownRecord:
        raise click.ClickException(f"no API key has the id '{key_id}'") from None
    if as_json:
        emit_json(_public(rec, datetime.now(UTC)))
    else:
        success(f"API key {rec.id} ({rec.name}) revoked.")


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
    """Replace a key with a new one (same name, scopes and expiry)."""
    settings = settings_from(config)
    now = datetime.now(UTC)

    async def act(store: Store) -> tuple[ApiKeyRecord, str, ApiKeyRecord]:
        old = await store.api_keys.get(key_id)
        if old is None:
            raise UnknownRecord(key_id)
        if old.revoked_at and old.revoked_at <= now:
            raise click.ClickException(f"API key '{key_id}' is revoked; create a new one")
        new_id, key = generate_key()
        new = replace(
            old,
            id=new_id,
            key_hash=token_digest(key),
            created_at=now,
            revoked_at=None,
            last_used_at=None,
        )
        await store.api_keys.rotate(old.id, new, now + timedelta(seconds=grace or 0))
        # Read back: a key already in its grace period keeps the earlier end.
        after = await store.api_keys.get(old.id)
        return new, key, after or old

    try:
        new, key, old = run(with_store(settings, act))
    except UnknownRecord:
        raise click.ClickException(f"no API key has the id '{key_id}'") from None
    _print_new(as_json, new, key, f"rotated from {key_id}", old=old)
