"""``restguard oauth1 consumer create|list|revoke`` and ``restguard oauth1 token list|revoke``:
OAuth 1.0a consumers (RFC 5849) and the admin's view of their token credentials; ``restguard
oauth1 sign`` (a request signed as a consumer, from the shell) is ``cli/oauth1_sign.py``'s.

A consumer's secret is drawn by restguard, printed once and stored sealed by the master key (the
server needs it to verify HMAC signatures), so the master key must belong to the data directory:
``ensure_master_key`` runs before anything is sealed. An RSA public key (for RSA-SHA1) comes
from a PEM file; the private key never comes near restguard. Token listings never show a secret.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path
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
from restguard.cli.oauth1_sign import oauth1_sign
from restguard.cli.output import emit_json, iso, success, table
from restguard.credentials.apps import MAX_PEM_BYTES
from restguard.credentials.oauth1_consumers import SIGNATURE_METHODS, check_consumer, new_consumer
from restguard.credentials.oauth1_tokens import state as token_state
from restguard.keys.master_check import ensure_master_key
from restguard.keys.sealing import open_sealer
from restguard.oauth2.users import normalize_username
from restguard.store.errors import UnknownRecord
from restguard.store.ports import OAuth1ConsumerRecord, OAuth1TokenRecord, Store


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


def _fingerprint(rec: OAuth1ConsumerRecord) -> str | None:
    """SHA-256 of the DER SubjectPublicKeyInfo, base64url without padding (None without)."""
    if rec.rsa_public_key is None:
        return None
    digest = hashlib.sha256(rec.rsa_public_key).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _consumer_state(rec: OAuth1ConsumerRecord, now: datetime) -> str:
    return "revoked" if rec.revoked_at is not None and rec.revoked_at <= now else "active"


def _public_consumer(rec: OAuth1ConsumerRecord, now: datetime) -> dict[str, Any]:
    """What may be shown of a consumer: never its secret, sealed or not."""
    return {
        "consumer_key": rec.consumer_key,
        "name": rec.name,
        "scopes": list(rec.scopes),
        "callback": rec.callback,
        "signature_methods": list(rec.signature_methods),
        "rsa_public_key_sha256": _fingerprint(rec),
        "state": _consumer_state(rec, now),
        "created_at": iso(rec.created_at),
        "revoked_at": iso(rec.revoked_at),
    }


def _public_token(rec: OAuth1TokenRecord, now: datetime) -> dict[str, Any]:
    """What may be shown of token credentials: the token (public: sent with every request),
    never its secret."""
    return {
        "token": rec.token,
        "consumer_key": rec.consumer_key,
        "user_id": rec.user_id,
        "subject": rec.subject,
        "scopes": list(rec.scopes),
        "state": token_state(rec, now),
        "created_at": iso(rec.created_at),
        "expires_at": iso(rec.expires_at),
        "revoked_at": iso(rec.revoked_at),
    }


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
        check_consumer(name, scopes, callback, pem, methods)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    settings = settings_from(config)
    sealer = open_sealer(settings.master_key_path)
    record, secret = new_consumer(
        name,
        scopes,
        callback=callback,
        rsa_public_key_pem=pem,
        methods=methods,
        now=datetime.now(UTC),
        sealer=sealer,
    )

    async def act(store: Store) -> None:
        await ensure_master_key(store, sealer)  # a wrong master key must seal nothing
        await store.oauth1_consumers.insert(record)

    run(with_store(settings, act))
    if as_json:
        emit_json(
            {
                "consumer_key": record.consumer_key,
                "consumer_secret": secret,
                "name": record.name,
                "scopes": list(record.scopes),
                "callback": record.callback,
                "signature_methods": list(record.signature_methods),
                "created_at": iso(record.created_at),
            }
        )
        return
    success(f"Consumer created: {record.consumer_key} ({record.name})")
    click.echo(f"  consumer_key:      {record.consumer_key}")
    click.echo(f"  consumer_secret:   {secret}")
    click.echo(f"  scopes:            {' '.join(record.scopes)}")
    click.echo(f"  callback:          {record.callback or 'none (oob only)'}")
    click.echo(f"  signature methods: {' '.join(record.signature_methods)}")
    if record.rsa_public_key is not None:
        click.echo(f"  RSA public key:    SHA-256 {_fingerprint(record)}")
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

    async def act(store: Store) -> list[OAuth1ConsumerRecord]:
        return await store.oauth1_consumers.list()

    now = datetime.now(UTC)
    rows = [_public_consumer(r, now) for r in run(with_store(settings, act))]
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

    async def act(store: Store) -> OAuth1ConsumerRecord:
        return await store.oauth1_consumers.revoke(consumer_key, datetime.now(UTC))

    try:
        rec = run(with_store(settings, act))
    except UnknownRecord:
        raise click.ClickException(
            f"no consumer has the consumer_key '{consumer_key}' "
            "('restguard oauth1 consumer list' shows them)"
        ) from None
    if as_json:
        emit_json(_public_consumer(rec, datetime.now(UTC)))
    else:
        success(f"Consumer {rec.consumer_key} ({rec.name}) revoked, with its tokens.")


@oauth1.group("token")
def token() -> None:
    """Token credentials that users granted to consumers (never a secret)."""


async def _user_id(store: Store, user: str) -> str:
    """The user_id of ``user`` (a user_id or a username); ``UnknownRecord`` if neither."""
    found = await store.users.get(user)
    if found is None:
        found = await store.users.by_username(normalize_username(user))
    if found is None:
        raise UnknownRecord(user)
    return found.user_id


@token.command("list")
@click.option("--user", default=None, metavar="USER", help="Only this user's (id or username).")
@click.option("--consumer", default=None, metavar="KEY", help="Only this consumer's.")
@config_option
@json_option
@friendly
def list_tokens(user: str | None, consumer: str | None, config: str | None, as_json: bool) -> None:
    """List token credentials, oldest first: state 'active', 'expired' or 'revoked'."""
    settings = settings_from(config)

    async def act(store: Store) -> list[OAuth1TokenRecord]:
        user_id = None if user is None else await _user_id(store, user)
        return await store.oauth1_tokens.list(user_id=user_id, consumer_key=consumer)

    try:
        records = run(with_store(settings, act))
    except UnknownRecord:
        raise click.ClickException(
            f"no user has the id or username '{user}' ('restguard user list' shows them)"
        ) from None
    now = datetime.now(UTC)
    rows = [_public_token(r, now) for r in records]
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

    async def act(store: Store) -> OAuth1TokenRecord:
        return await store.oauth1_tokens.revoke(token_value, datetime.now(UTC))

    try:
        rec = run(with_store(settings, act))
    except UnknownRecord:
        raise click.ClickException(
            f"no OAuth 1.0a token '{token_value}' ('restguard oauth1 token list' shows them)"
        ) from None
    if as_json:
        emit_json(_public_token(rec, datetime.now(UTC)))
    else:
        success(f"Token {rec.token} ({rec.subject or rec.consumer_key}) revoked.")


oauth1.add_command(oauth1_sign)
