"""``restguard issuer add|list|remove``: external identity providers whose JWTs are trusted."""

from __future__ import annotations

from datetime import UTC, datetime
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
from restguard.cli.output import emit_json, success, table, warn
from restguard.manage import issuers
from restguard.manage.errors import Conflict, Invalid, NotFound
from restguard.store.ports import Store


def _shown(data: dict[str, Any]) -> dict[str, Any]:
    """A record as the CLI prints it: the API's ``etag`` (for ``If-Match``) left out."""
    return {k: v for k, v in data.items() if k != "etag"}


@click.group("issuer")
def issuer() -> None:
    """Trust JWTs from external identity providers (Auth0, Keycloak, Okta...)."""


@issuer.command("add")
@click.option("--issuer", "iss", required=True, metavar="URL", help="The tokens' exact 'iss'.")
@click.option(
    "--jwks-uri", required=True, metavar="URL", help="Where the issuer publishes its keys."
)
@click.option("--audience", required=True, help="The 'aud' value your API's tokens carry.")
@click.option(
    "--scope-claim",
    type=click.Choice(["scope", "scp", "permissions"]),
    default="scope",
    show_default=True,
    help="The claim holding the scopes: 'scope' (a space-separated string), "
    "'scp' or 'permissions' (arrays).",
)
@click.option(
    "--alg",
    "algs",
    multiple=True,
    metavar="ALG",
    help="An allowed algorithm: EdDSA, ES256 or RS256; repeat for more (default: all three).",
)
@click.option("--typ", default=None, help="Require this 'typ' header, e.g. at+jwt (RFC 9068).")
@click.option(
    "--leeway",
    callback=duration_option,
    metavar="DURATION",
    help="Clock skew allowed on exp, nbf and iat (default 0s, at most 60s).",
)
@config_option
@json_option
@friendly
def add(
    iss: str,
    jwks_uri: str,
    audience: str,
    scope_claim: str,
    algs: tuple[str, ...],
    typ: str | None,
    leeway: float | None,
    config: str | None,
    as_json: bool,
) -> None:
    """Trust an issuer's tokens (every running instance within a second).

    The JWKS URI is fetched once now to check it; a failure is reported but does not stop
    the issuer from being added (restguard keeps trying; until it has keys, requests with
    this issuer's tokens get 503).
    """
    settings = settings_from(config)
    try:
        record = issuers.check(
            datetime.now(UTC),
            iss,
            jwks_uri,
            audience,
            algs,
            scope_claim,
            typ,
            leeway,
            own_issuer=settings.server.public_url,
        )
    except Invalid as exc:
        raise click.UsageError(f"{issuers.OPTIONS[exc.field or 'issuer']}: {exc.message}") from None

    async def act(store: Store) -> dict[str, Any]:
        return await issuers.add(store, record)

    try:
        data = _shown(run(with_store(settings, act)))
    except Conflict:
        raise click.ClickException(
            f"the issuer {iss} is already trusted; 'restguard issuer remove' it first"
        ) from None
    keys, problem = data["jwks_keys"], data["jwks_problem"]
    if as_json:
        emit_json(data)
        return
    success(f"issuer added: {record.id} ({record.issuer})")
    click.echo(f"  audience:    {record.audience}")
    click.echo(f"  algorithms:  {' '.join(record.algorithms)}")
    click.echo(f"  scopes from: {record.scope_claim}")
    if problem is None:
        click.echo(f"  JWKS:        {keys} usable key(s) at {jwks_uri}")
    else:
        warn(f"  the JWKS could not be read now ({problem}); restguard keeps trying")


@issuer.command("list")
@config_option
@json_option
@friendly
def list_(config: str | None, as_json: bool) -> None:
    """List the trusted issuers."""
    settings = settings_from(config)

    async def act(store: Store) -> list[dict[str, Any]]:
        return await issuers.everything(store)

    rows = [_shown(r) for r in run(with_store(settings, act))]
    if as_json:
        emit_json(rows)
        return
    table(
        ("id", "issuer", "audience", "algorithms", "scope_claim", "jwks_uri"),
        [
            (
                r["id"],
                r["issuer"],
                r["audience"],
                " ".join(r["algorithms"]),
                r["scope_claim"],
                r["jwks_uri"],
            )
            for r in rows
        ],
    )


@issuer.command("remove")
@click.argument("issuer_id", metavar="ID")
@config_option
@json_option
@friendly
def remove(issuer_id: str, config: str | None, as_json: bool) -> None:
    """Stop trusting an issuer (ID as printed by 'add', or the issuer URL itself); its tokens
    are refused on every running instance within a second."""
    settings = settings_from(config)

    async def act(store: Store) -> dict[str, Any]:
        return await issuers.remove(store, issuer_id, by_issuer=True)

    try:
        data = _shown(run(with_store(settings, act)))
    except NotFound:
        raise click.ClickException(
            f"no issuer has the id '{issuer_id}' ('restguard issuer list' shows them)"
        ) from None
    if as_json:
        emit_json(data)
    else:
        success(f"issuer {data['id']} ({data['issuer']}) removed.")
