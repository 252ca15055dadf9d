"""``restguard token``: a client credentials access token from the running server, for trying
things out from the shell (RFC 6749 §4.4, ``client_secret_basic``)."""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote_plus, urlencode

import click

from restguard.cli.context import config_option, friendly, json_option, settings_from
from restguard.cli.output import emit_json, success


def _request(token_url: str, client_id: str, secret: str, scopes: tuple[str, ...]) -> Any:
    form = {"grant_type": "client_credentials"}
    if scopes:
        form["scope"] = " ".join(scopes)
    basic = base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 (public_url is http(s), checked by config)
        token_url,
        data=urlencode(form).encode(),
        headers={
            "Authorization": "Basic " + basic,
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (http/https)
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            data = json.loads(exc.read())
        except ValueError:
            data = {}
        raise click.ClickException(
            f"the token endpoint refused: {data.get('error', exc.code)}: "
            f"{data.get('error_description', '')}".rstrip(": ")
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise click.ClickException(f"cannot reach {token_url}: {exc}") from None


@click.command("token")
@click.option("--client-id", required=True, help="The client's id (from 'oauth2 client create').")
@click.option(
    "--client-secret",
    required=True,
    help="The client's secret; '-' reads it from stdin (keeps it out of the process list).",
)
@click.option("--scope", "scopes", multiple=True, help="A scope to ask for; repeat for more.")
@config_option
@json_option
@friendly
def token(
    client_id: str, client_secret: str, scopes: tuple[str, ...], config: str | None, as_json: bool
) -> None:
    """A client credentials access token from the running server (public_url's token
    endpoint), printed once: paste it into 'Authorization: Bearer <token>'."""
    settings = settings_from(config)
    if client_secret == "-":  # noqa: S105 (the stdin marker, not a secret)
        client_secret = sys.stdin.readline().strip()
    url = settings.server.public_url.rstrip("/") + "/oauth2/token"
    data = _request(url, client_id, client_secret, scopes)
    if as_json:
        emit_json(data)
        return
    success(f"access token for {client_id} ({data.get('scope') or 'no scopes'}):")
    click.echo(data.get("access_token", ""))
    click.secho(f"  expires in {data.get('expires_in')} s", dim=True)
