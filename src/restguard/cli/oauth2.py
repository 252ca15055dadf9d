"""``restguard oauth2 client create|list|revoke``: clients of restguard's OAuth 2.0 server."""

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
from restguard.oauth2.clients import GRANTS, TOKEN_FORMATS, is_active, new_client
from restguard.store.errors import UnknownRecord
from restguard.store.ports import OAuthClientRecord, Store


def _public(rec: OAuthClientRecord, now: datetime) -> dict[str, Any]:
    """What may be shown of a client: everything but its secret (not even the hash)."""
    return {
        "client_id": rec.client_id,
        "name": rec.name,
        "public": rec.secret_hash is None,
        "grants": list(rec.grants),
        "redirect_uris": list(rec.redirect_uris),
        "scopes": list(rec.scopes),
        "token_format": rec.token_format,
        "state": "active" if is_active(rec, now) else "revoked",
        "created_at": iso(rec.created_at),
        "revoked_at": iso(rec.revoked_at),
    }


@click.group("oauth2")
def oauth2() -> None:
    """restguard's own OAuth 2.0 authorization server."""


@oauth2.group("client")
def client() -> None:
    """Register and manage OAuth 2.0 clients."""


@client.command("create")
@click.option("--name", required=True, help="Who or what the client is (shown at consent).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="A scope the client may be granted; repeat for more.",
)
@click.option(
    "--grant",
    "grants",
    multiple=True,
    required=True,
    metavar="GRANT",
    help=f"A grant type it may use: {', '.join(GRANTS)}; repeat for more.",
)
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    metavar="URI",
    help="Where authorization_code redirects (matched exactly): https://, http:// to "
    "127.0.0.1 or [::1], or a private-use scheme such as com.example.app:/cb; repeat for more.",
)
@click.option(
    "--public",
    is_flag=True,
    help="A client that cannot keep a secret (browser or native app): no secret, PKCE instead.",
)
@click.option(
    "--token-format",
    type=click.Choice(TOKEN_FORMATS),
    default="jwt",
    show_default=True,
    help="Access tokens as JWTs (RFC 9068, verified at the gateway without a lookup) or "
    "opaque 'rg_at_' references (stored by hash, looked up by the gateway; their holders "
    "cannot read them).",
)
@config_option
@json_option
@friendly
def create(
    name: str,
    scopes: tuple[str, ...],
    grants: tuple[str, ...],
    redirect_uris: tuple[str, ...],
    public: bool,
    token_format: str,
    config: str | None,
    as_json: bool,
) -> None:
    """Register a client and print its secret once."""
    try:
        record, secret = new_client(
            name, scopes, grants, redirect_uris, public, token_format, now=datetime.now(UTC)
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    settings = settings_from(config)

    async def act(store: Store) -> None:
        await store.oauth2_clients.insert(record)

    run(with_store(settings, act))
    data = {"client_id": record.client_id, "client_secret": secret} | _public(
        record, record.created_at
    )
    del data["state"], data["revoked_at"]
    if as_json:
        emit_json(data)
        return
    kind = "public" if public else "confidential"
    success(f"OAuth 2.0 client created: {record.client_id} ({record.name}, {kind})")
    click.echo(f"  client_id:     {record.client_id}")
    if secret is None:
        click.echo("  client_secret: none (a public client proves itself with PKCE)")
    else:
        click.echo(f"  client_secret: {secret}")
    click.echo(f"  grants:        {' '.join(record.grants)}")
    if record.redirect_uris:
        click.echo(f"  redirect URIs: {' '.join(record.redirect_uris)}")
    click.echo(f"  scopes:        {' '.join(record.scopes)}")
    click.echo(f"  token format:  {record.token_format}")
    if secret is not None:
        click.secho("  The client secret is shown once; only its hash is stored.", dim=True)


@client.command("list")
@config_option
@json_option
@friendly
def list_(config: str | None, as_json: bool) -> None:
    """List clients (never their secrets)."""
    settings = settings_from(config)

    async def act(store: Store) -> list[OAuthClientRecord]:
        return await store.oauth2_clients.list()

    now = datetime.now(UTC)
    rows = [_public(r, now) for r in run(with_store(settings, act))]
    if as_json:
        emit_json(rows)
        return
    table(
        ("client_id", "name", "type", "grants", "scopes", "state"),
        [
            (
                r["client_id"],
                r["name"],
                "public" if r["public"] else "confidential",
                " ".join(r["grants"]),
                " ".join(r["scopes"]),
                r["state"],
            )
            for r in rows
        ],
    )


@client.command("revoke")
@click.argument("client_id")
@config_option
@json_option
@friendly
def revoke(client_id: str, config: str | None, as_json: bool) -> None:
    """Revoke a client at once: its secret and tokens are refused on every instance within one
    second."""
    settings = settings_from(config)

    async def act(store: Store) -> OAuthClientRecord:
        return await store.oauth2_clients.revoke(client_id, datetime.now(UTC))

    try:
        rec = run(with_store(settings, act))
    except UnknownRecord:
        raise click.ClickException(
            f"no OAuth 2.0 client has the id '{client_id}' ('restguard oauth2 client list' "
            "shows them)"
        ) from None
    if as_json:
        emit_json(_public(rec, datetime.now(UTC)))
    else:
        success(f"OAuth 2.0 client {rec.client_id} ({rec.name}) revoked.")
