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
from restguard.cli.output import emit_json, iso, success, table, warn
from restguard.credentials.jwt_issuers import new_issuer
from restguard.keys.jwks_fetch import JWKSEndpoint, JWKSFetchError, fetch_jwks
from restguard.store.errors import DuplicateRecord, UnknownRecord
from restguard.store.ports import IssuerRecord, Store


def _public(rec: IssuerRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "issuer": rec.issuer,
        "jwks_uri": rec.jwks_uri,
        "audience": rec.audience,
        "algorithms": list(rec.algorithms),
        "scope_claim": rec.scope_claim,
        "typ": rec.typ,
        "leeway_seconds": rec.leeway,
        "created_at": iso(rec.created_at),
    }


async def _probe(jwks_uri: str) -> tuple[int | None, str | None]:
    """How many usable keys the JWKS URI serves now, or why it could not be read."""
    try:
        fetched = await fetch_jwks(JWKSEndpoint.parse(jwks_uri))
    except JWKSFetchError as exc:
        return None, str(exc)
    return len(fetched.keys.keys), None


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
        record = new_issuer(
            issuer=iss,
            jwks_uri=jwks_uri,
            audience=audience,
            now=datetime.now(UTC),
            algorithms=algs,
            scope_claim=scope_claim,
            typ=typ,
            leeway=leeway or 0,
            own_issuer=settings.server.public_url,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def act(store: Store) -> None:
        await store.issuers.insert(record)

    try:
        run(with_store(settings, act))
    except DuplicateRecord:
        raise click.ClickException(
            f"the issuer {iss} is already trusted; 'restguard issuer remove' it first"
        ) from None
    keys, problem = run(_probe(jwks_uri))
    data = _public(record) | {"jwks_keys": keys, "jwks_problem": problem}
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

    async def act(store: Store) -> list[IssuerRecord]:
        return await store.issuers.list()

    rows = [_public(r) for r in run(with_store(settings, act))]
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

    async def act(store: Store) -> IssuerRecord:
        for rec in await store.issuers.list():
            if issuer_id == rec.issuer:
                issuer_id_ = rec.id
                break
        else:
            issuer_id_ = issuer_id
        return await store.issuers.remove(issuer_id_)

    try:
        rec = run(with_store(settings, act))
    except UnknownRecord:
        raise click.ClickException(
            f"no issuer has the id '{issuer_id}' ('restguard issuer list' shows them)"
        ) from None
    if as_json:
        emit_json(_public(rec))
    else:
        success(f"issuer {rec.id} ({rec.issuer}) removed.")
