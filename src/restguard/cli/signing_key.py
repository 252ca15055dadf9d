"""``restguard signing-key list|rotate``: the keys restguard signs its own JWTs with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from restguard.cli.context import (
    config_option,
    friendly,
    json_option,
    run,
    settings_from,
    with_store,
)
from restguard.cli.output import emit_json, success, table
from restguard.keys.jws_sign import DEFAULT_ALG
from restguard.keys.sealing import open_sealer
from restguard.keys.signing import MAX_TOKEN_LIFETIME
from restguard.manage import signing_keys
from restguard.manage.errors import Invalid
from restguard.store.ports import Store


def _alg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return signing_keys.check_alg(value)
    except Invalid as exc:
        raise click.BadParameter(exc.message) from None


def _shown_status(row: dict[str, Any]) -> str:
    if row["status"] == "published" and row["retired_at"]:
        return f"published until {row['retired_at']}"
    return str(row["status"])


@click.group("signing-key")
def signing_key() -> None:
    """restguard's own JWT signing keys (the JWKS at /.well-known/jwks.json)."""


@signing_key.command("list")
@config_option
@json_option
@friendly
def list_(config: str | None, as_json: bool) -> None:
    """List signing keys, newest first (never their private halves).

    Status: 'signing' (signs new tokens), 'published' (in the JWKS until its retirement time,
    so tokens it signed still verify) or 'retired' (gone from the JWKS)."""
    settings = settings_from(config)

    async def act(store: Store) -> list[dict[str, Any]]:
        return await signing_keys.everything(store, datetime.now(UTC))

    rows = run(with_store(settings, act))
    if as_json:
        emit_json(rows)
        return
    table(
        ("kid", "alg", "created", "status"),
        [(r["kid"], r["alg"], r["created_at"], _shown_status(r)) for r in rows],
    )


@signing_key.command("rotate")
@click.option(
    "--alg",
    default=DEFAULT_ALG,
    show_default=True,
    callback=_alg,
    metavar="EdDSA|ES256|RS256",
    help="Algorithm of the new key (also ed25519, es256, rs256; any case).",
)
@config_option
@json_option
@friendly
def rotate(alg: str, config: str | None, as_json: bool) -> None:
    """Add a new signing key that signs from now on (on every running instance within 5 s).

    The other keys stay in the JWKS for up to an hour more (one retiring sooner keeps its
    time), so that every token they signed still verifies until it expires; then they leave it
    by themselves."""
    settings = settings_from(config)
    sealer = open_sealer(settings.master_key_path)

    async def act(store: Store) -> dict[str, Any]:
        return await signing_keys.rotate(store, sealer, datetime.now(UTC), alg)

    data = run(with_store(settings, act))
    if as_json:
        emit_json(data)
        return
    success(f"Signing key rotated: {data['kid']} ({data['alg']}) signs from now on.")
    click.echo("  Running instances publish it and sign with it within 5 s.")
    for r in data["previous"]:
        click.echo(f"  {r['kid']} stays in the JWKS until {r['retired_at']}.")
    if not data["previous"]:
        click.echo(f"  (no earlier key; rotated-out keys stay {MAX_TOKEN_LIFETIME // 60} min)")
