"""``restguard oauth1 consumer create|list|revoke`` and ``restguard oauth1 token list|revoke``:
OAuth 1.0a consumers (RFC 5849) and the admin's view of their token credentials; ``restguard
oauth1 sign`` (a request signed as a consumer, from the shell) is ``cli/oauth1_sign.py``'s.

A consumer's secret is drawn by restguard, printed once and stored sealed by the master key (the
server needs it to verify HMAC signatures), so the master key must belong to the data directory:
``ensure_master_key`` runs before anything is sealed. An RSA public key (for RSA-SHA1) comes
from a PEM file; the private key never comes near restguard. Token listings never show a secret.
The work is ``restguard.manage.oauth1``'s, shared with the admin API (``/api/oauth1/...``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from restguard.cli.context import (
    config_option,
    friendly,
    json_option,
    run,
    settings_from,
    with_store,
)
from restguard.cli.oauth1_sign import oauth1_sign
from restguard.cli.output import emit_json, success, table
from restguard.config import Settings
from restguard.credentials.apps import MAX_PEM_BYTES
from restguard.credentials.oauth1_consumers import SIGNATURE_METHODS
from restguard.keys.sealing import Sealer, open_sealer
from restguard.manage import oauth1 as manage
from restguard.manage.errors import Invalid, ManageError, NotFound
from restguard.store.ports import Store

T = TypeVar("T")


def _read_pem(path: str | None) -> bytes | None:
    """The file's bytes (at most ``MAX_PEM_BYTES``, and one more to notice a larger file)."""
    if path is None:
        return None
    try:
        with Path(path).open("rb") as f:
            return f.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path} ({exc.strerror or exc})", param_hint="--rsa-public-key"
        ) from None


def _usage(exc: Invalid) -> click.UsageError:
    """A refused input as the option it came from (``--callback: problem``), exit 2."""
    option = manage.OPTIONS.get(exc.field or "")
    return click.UsageError(f"{option}: {exc.message}" if option else exc.message)


def _act(settings: Settings, action: Callable[[Store], Awaitable[T]], unknown: str = "") -> T:
    """Run a service call on the store; its refusal becomes the CLI's one-line error (exit 2
    for a refused option, 1 for a refused action; ``unknown`` says where to find ids)."""
    try:
        return run(with_store(settings, action))
    except NotFound as exc:
        raise click.ClickException(exc.message + unknown) from None
    except Invalid as exc:
        raise _usage(exc) from None
    except ManageError as exc:
        raise click.ClickException(exc.message) from None


def _shown(data: dict[str, Any], *hidden: str) -> dict[str, Any]:
    """A record as the CLI prints it: the API's ``etag`` (for ``If-Match``) left out."""
    return {k: v for k, v in data.items() if k not in ("etag", *hidden)}


@click.group("oauth1")
def oauth1() -> None:
    """OAuth 1.0a (RFC 5849): consumers, their token credentials, signed requests."""


@oauth1.group("consumer")
def consumer() -> None:
    """Register and manage OAuth 1.0a consumers (clients that sign every request)."""


@consumer.command("create")
@click.option("--name", required=True, help="Who or what the consumer is (shown at consent).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="A scope the consumer may be granted; repeat for more.",
)
@click.option(
    "--callback",
    default=None,
    metavar="URI",
    help="The callback URI the user returns to after authorizing; a request's oauth_callback "
    "must be exactly it or 'oob'. Without it, only 'oob' (the user copies the verifier).",
)
@click.option(
    "--rsa-public-key",
    type=click.Path(dir_okay=False),
    metavar="PEM_PATH",
    default=None,
    help="Path of the consumer's RSA public key (2048 bits or more) for RSA-SHA1; e.g. "
    "'openssl pkey -in private.pem -pubout -out public.pem'. Never a private key.",
)
@click.option(
    "--signature-method",
    "methods",
    multiple=True,
    metavar="METHOD",
    help=f"Allow only these signature methods ({', '.join(SIGNATURE_METHODS)}); repeat for "
    "more. Default: HMAC-SHA1, HMAC-SHA256, PLAINTEXT (accepted over HTTPS only) and, with "
    "--rsa-public-key, RSA-SHA1.",
)
@config_option
@json_option
@friendly
def create(
    name: str,
    scopes: tuple[str, ...],
    callback: str | None,
    rsa_public_key: str | None,
    methods: tuple[str, ...],
    config: str | None,
    as_json: bool,
) -> None:
    """Register a consumer; its secret is shown once.

    Prints the consumer_key (oauth_consumer_key) and the consumer_secret restguard generated:
    43 characters of base64url, used as they are in the signature key (RFC 5849 §3.4.2)."""
    pem = _read_pem(rsa_public_key)
    try:
        manage.check_consumer_input(name, scopes, callback, pem, methods)
    except Invalid as exc:
        raise _usage(exc) from None
    settings = settings_from(config)
    sealer = open_sealer(settings.master_key_path)

    def opened() -> Sealer:
        return sealer

    async def act(store: Store) -> dict[str, Any]:
        return await manage.create_consumer(
            store, datetime.now(UTC), opened, name, scopes, callback, pem, methods
        )

    data = _act(settings, act)
    if as_json:
        emit_json(_shown(data, "rsa_public_key_sha256"))
        return
    success(f"Consumer created: {data['consumer_key']} ({data['name']})")
    click.echo(f"  consumer_key:      {data['consumer_key']}")
    click.echo(f"  consumer_secret:   {data['consumer_secret']}")
    click.echo(f"  scopes:            {' '.join(data['scopes'])}")
    click.echo(f"  callback:          {data['callback'] or 'none (oob only)'}")
    click.echo(f"  signature methods: {' '.join(data['signature_methods'])}")
    if data["rsa_public_key_sha256"] is not None:
        click.echo(f"  RSA public key:    SHA-256 {data['rsa_public_key_sha256']}")
    click.secho(
        "  Store the secret now: it is shown once. restguard keeps it sealed by the master key "
        "and never prints it again.",
        fg="yellow",
    )


@consumer.command("list")
@config_option
@json_option
@friendly
def list_consumers(config: str | None, as_json: bool) -> None:
    """List consumers, oldest first (never a secret)."""
    settings = settings_from(config)

    async def act(store: Store) -> list[dict[str, Any]]:
        return await manage.consumers(store, datetime.now(UTC))

    rows = [_shown(r) for r in _act(settings, act)]
    if as_json:
        emit_json(rows)
        return
    table(
        ("consumer_key", "name", "scopes", "methods", "callback", "state", "created_at"),
        [
            (
                r["consumer_key"],
                r["name"],
                " ".join(r["scopes"]),
                " ".join(r["signature_methods"]),
                r["callback"] or "oob",
                r["state"],
                r["created_at"],
            )
            for r in rows
        ],
    )


@consumer.command("revoke")
@click.argument("consumer_key")
@config_option
@json_option
@friendly
def revoke_consumer(consumer_key: str, config: str | None, as_json: bool) -> None:
    """Revoke a consumer and every token issued to it, at once."""
    settings = settings_from(config)

    async def act(store: Store) -> dict[str, Any]:
        return await manage.revoke_consumer(store, datetime.now(UTC), consumer_key)

    data = _shown(_act(settings, act, " ('restguard oauth1 consumer list' shows them)"))
    if as_json:
        emit_json(data)
    else:
        success(f"Consumer {data['consumer_key']} ({data['name']}) revoked, with its tokens.")


@oauth1.group("token")
def token() -> None:
    """Token credentials that users granted to consumers (never a secret)."""


@token.command("list")
@click.option("--user", default=None, metavar="USER", help="Only this user's (id or username).")
@click.option("--consumer", default=None, metavar="KEY", help="Only this consumer's.")
@config_option
@json_option
@friendly
def list_tokens(user: str | None, consumer: str | None, config: str | None, as_json: bool) -> None:
    """List token credentials, oldest first: state 'active', 'expired' or 'revoked'."""
    settings = settings_from(config)

    async def act(store: Store) -> list[dict[str, Any]]:
        return await manage.tokens(store, datetime.now(UTC), user=user, consumer=consumer)

    rows = [_shown(r) for r in _act(settings, act, " ('restguard user list' shows them)")]
    if as_json:
        emit_json(rows)
        return
    table(
        ("token", "consumer_key", "subject", "scopes", "state", "created_at"),
        [
            (
                r["token"],
                r["consumer_key"],
                r["subject"],
                " ".join(r["scopes"]),
                r["state"],
                r["created_at"],
            )
            for r in rows
        ],
    )


@token.command("revoke")
@click.argument("token_value", metavar="TOKEN")
@config_option
@json_option
@friendly
def revoke_token(token_value: str, config: str | None, as_json: bool) -> None:
    """Revoke token credentials (oauth_token) at once."""
    settings = settings_from(config)

    async def act(store: Store) -> dict[str, Any]:
        return await manage.revoke_token(store, datetime.now(UTC), token_value)

    data = _shown(_act(settings, act, " ('restguard oauth1 token list' shows them)"))
    if as_json:
        emit_json(data)
    else:
        success(f"Token {data['token']} ({data['subject'] or data['consumer_key']}) revoked.")


oauth1.add_command(oauth1_sign)
