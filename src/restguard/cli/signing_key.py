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
from restguard.cli.output import emit_json, iso, success, table
from restguard.keys.jws_sign import DEFAULT_ALG, canonical_alg
from restguard.keys.master_check import ensure_master_key
from restguard.keys.sealing import open_sealer
from restguard.keys.signing import (
    MAX_TOKEN_LIFETIME,
    open_keys,
    rotation_plan,
    signer_of,
    status,
)
from restguard.store.ports import SigningKeyRecord, Store


def _alg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return canonical_alg(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _public(rec: SigningKeyRecord, signer_kid: str | None, now: datetime) -> dict[str, Any]:
    return {
        "kid": rec.kid,
        "alg": rec.alg,
        "status": status(rec, signer_kid, now),
        "created_at": iso(rec.created_at),
        "retired_at": iso(rec.retired_at),
    }


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

    async def act(store: Store) -> list[SigningKeyRecord]:
        return await store.signing_keys.list()

    records = run(with_store(settings, act))
    now = datetime.now(UTC)
    signer = signer_of(records, now)
    rows = [_public(r, signer.kid if signer else None, now) for r in records]
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
    now = datetime.now(UTC)

    async def act(store: Store) -> tuple[SigningKeyRecord, list[SigningKeyRecord]]:
        await ensure_master_key(store, sealer)  # a wrong master key must seal nothing
        before = await store.signing_keys.list()
        live = [r for r in before if r.retired_at is None or r.retired_at > now]
        if live:
            open_keys(live, sealer, now)  # the wrong master key must not seal the new key
        new, retire_at = rotation_plan(sealer, now, alg)
        await store.signing_keys.rotate(new, retire_at)
        after = await store.signing_keys.list()
        return new, [r for r in after if r.kid != new.kid and r.kid in {x.kid for x in live}]

    new, previous = run(with_store(settings, act))
    data = {
        "kid": new.kid,
        "alg": new.alg,
        "created_at": iso(new.created_at),
        "previous": [{"kid": r.kid, "retired_at": iso(r.retired_at)} for r in previous],
    }
    if as_json:
        emit_json(data)
        return
    success(f"Signing key rotated: {new.kid} ({new.alg}) signs from now on.")
    click.echo("  Running instances publish it and sign with it within 5 s.")
    for r in previous:
        click.echo(f"  {r.kid} stays in the JWKS until {iso(r.retired_at)}.")
    if not previous:
        click.echo(f"  (no earlier key; rotated-out keys stay {MAX_TOKEN_LIFETIME // 60} min)")
