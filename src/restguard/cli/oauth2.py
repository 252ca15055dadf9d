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
from restguard.cli.output import emit_json, success, table
from restguard.manage import oauth2_clients
from restguard.manage.errors import Invalid, ManageError, NotFound
from restguard.oauth2.clients import GRANTS, TOKEN_FORMATS
from restguard.store.ports import Store


def _shown(data: dict[str, Any]) -> dict[str, Any]:
    """A client as the CLI prints it: the API's ``etag`` (for ``If-Match``) left out."""
    return {k: v for k, v in data.items() if k != "etag"}


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
        prepared = oauth2_clients.prepare(
            datetime.now(UTC), name, scopes, grants, redirect_uris, public, token_format
        )
    except Invalid as exc:
        raise click.UsageError(f"{oauth2_clients.option_of(exc.field)}: {exc.message}") from None
    settings = settings_from(config)
    record = prepared.record
    secret = prepared.secret

    async def act(store: Store) -> dict[str, Any]:
        return await oauth2_clients.add(store, prepared)

    try:
        data = _shown(run(with_store(settings, act)))
    except ManageError as exc:
        raise click.ClickException(exc.message) from None
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

    async def act(store: Store) -> list[dict[str, Any]]:
        return await oauth2_clients.everything(store, datetime.now(UTC))

    rows = [_shown(r) for r in run(with_store(settings, act))]
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

    async def act(store: Store) -> dict[str, Any]:
        return await oauth2_clients.revoke(store, datetime.now(UTC), client_id)

    try:
        data = _shown(run(with_store(settings, act)))
    except NotFound:
        raise click.ClickException(
            f"no OAuth 2.0 client has the id '{client_id}' ('restguard oauth2 client list' "
            "shows them)"
        ) from None
    except ManageError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        emit_json(data)
    else:
        success(f"OAuth 2.0 client {data['client_id']} ({data['name']}) revoked.")
