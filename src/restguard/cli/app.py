"""``restguard app create|list|revoke|rotate``: signing apps (RFC 9421 signed requests).

An hmac-sha256 app's secret is drawn by restguard, printed once and stored sealed by the master
key (so the master key must belong to the data directory: ``ensure_master_key`` runs before
anything is sealed). An ed25519 or ecdsa-p256-sha256 app registers the public key from a PEM
file; its private key never comes near restguard.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
from restguard.credentials.apps import (
    ALGORITHMS,
    HMAC_SHA256,
    MAX_PEM_BYTES,
    check_app,
    new_app,
    rotated_app,
)
from restguard.keys.master_check import ensure_master_key
from restguard.keys.sealing import Sealer, open_sealer
from restguard.store.errors import UnknownRecord
from restguard.store.ports import AppRecord, Store

_PUBLIC_KEY_HELP = (
    "Path of the app's PEM public key ('-----BEGIN PUBLIC KEY-----'), for ed25519 and "
    "ecdsa-p256-sha256; e.g. 'openssl pkey -in private.pem -pubout -out public.pem'. Never a "
    "private key."
)


def _read_pem(path: str | None) -> bytes | None:
    """The file's bytes (at most ``MAX_PEM_BYTES``, and one more to notice a larger file)."""
    if path is None:
        return None
    try:
        with Path(path).open("rb") as f:
            return f.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path} ({exc.strerror or exc})", param_hint="--public-key"
        ) from None


def _fingerprint(rec: AppRecord) -> str | None:
    """SHA-256 of the DER SubjectPublicKeyInfo, base64url without padding (None for hmac)."""
    if rec.public_key is None:
        return None
    digest = hashlib.sha256(rec.public_key).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _state(rec: AppRecord, now: datetime) -> str:
    if rec.revoked_at and rec.revoked_at <= now:
        return "revoked"
    if rec.revoked_at:
        return "grace"
    return "active"


def _public(rec: AppRecord, now: datetime) -> dict[str, Any]:
    """What may be shown of an app: never its secret, sealed or not."""
    return {
        "key_id": rec.key_id,
        "name": rec.name,
        "alg": rec.alg,
        "scopes": list(rec.scopes),
        "state": _state(rec, now),
        "public_key_sha256": _fingerprint(rec),
        "created_at": iso(rec.created_at),
        "revoked_at": iso(rec.revoked_at),
    }


def _print_new(
    as_json: bool,
    rec: AppRecord,
    secret: str | None,
    verb: str,
    old: AppRecord | None = None,
) -> None:
    """The new credential, its secret shown once. After a rotation (``old``): the old key_id
    and when it stops working (``grace_ends_at``: now without --grace)."""
    data: dict[str, Any] = {
        "key_id": rec.key_id,
        "secret": secret,
        "alg": rec.alg,
        "name": rec.name,
        "scopes": list(rec.scopes),
        "created_at": iso(rec.created_at),
    }
    if old is not None:
        data |= {"old_id": old.key_id, "grace_ends_at": iso(old.revoked_at)}
    if as_json:
        emit_json(data)
        return
    success(f"App {verb}: {rec.key_id} ({rec.name}, {rec.alg})")
    click.echo(f"  key_id:     {rec.key_id}   (the signature's keyid parameter)")
    if secret is not None:
        click.echo(f"  secret:     {secret}")
    else:
        click.echo(f"  public key: SHA-256 {_fingerprint(rec)}")
    click.echo(f"  scopes:     {' '.join(rec.scopes)}")
    if old is not None:
        click.echo(f"  old key_id: {old.key_id} works until {iso(old.revoked_at)}")
    if secret is not None:
        click.secho(
            "  Store the secret now: it is shown once. restguard keeps it sealed by the master "
            "key and never prints it again.",
            fg="yellow",
        )
    else:
        click.secho(
            "  The client signs with its private key; restguard holds only the public key.",
            dim=True,
        )


def _unknown(key_id: str) -> click.ClickException:
    return click.ClickException(
        f"no app has the key_id '{key_id}' ('restguard app list' shows them)"
    )


@click.group("app")
def app() -> None:
    """Signing apps: clients that sign each request (RFC 9421 HTTP Message Signatures).

    An hmac-sha256 app gets a secret from restguard (shown once); an ed25519 or
    ecdsa-p256-sha256 app registers its public key and keeps its private key to itself."""


@app.command("create")
@click.option("--name", required=True, help="Who or what the app is (forwarded as subject).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="A scope the app may use; repeat for more.",
)
@click.option(
    "--alg",
    type=click.Choice(ALGORITHMS),
    default=HMAC_SHA256,
    show_default=True,
    help="The signature algorithm (RFC 9421 §3.3), fixed for the app: hmac-sha256 with a "
    "secret restguard generates, or ed25519 / ecdsa-p256-sha256 with --public-key.",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False),
    metavar="PEM_PATH",
    default=None,
    help=_PUBLIC_KEY_HELP,
)
@config_option
@json_option
@friendly
def create(
    name: str,
    scopes: tuple[str, ...],
    alg: str,
    public_key: str | None,
    config: str | None,
    as_json: bool,
) -> None:
    """Register an app; an hmac-sha256 secret is shown once.

    Prints the app's key_id (the signature's keyid parameter) and, for hmac-sha256, the secret
    restguard generated: base64url of 32 bytes, the HMAC key being the decoded bytes."""
    pem = _read_pem(public_key)
    try:
        check_app(name, scopes, alg, pem)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    settings = settings_from(config)
    sealer = open_sealer(settings.master_key_path) if alg == HMAC_SHA256 else None
    record, secret = new_app(name, scopes, alg, pem, now=datetime.now(UTC), sealer=sealer)

    async def act(store: Store) -> None:
        if sealer is not None:
            await ensure_master_key(store, sealer)  # a wrong master key must seal nothing
        await store.apps.insert(record)

    run(with_store(settings, act))
    _print_new(as_json, record, secret, "created")


@app.command("list")
@config_option
@json_option
@friendly
def list_(config: str | None, as_json: bool) -> None:
    """List apps, oldest first (never a secret).

    State: 'active', 'grace' (rotated, still accepted until its revoked_at) or 'revoked'."""
    settings = settings_from(config)

    async def act(store: Store) -> list[AppRecord]:
        return await store.apps.list()

    now = datetime.now(UTC)
    rows = [_public(r, now) for r in run(with_store(settings, act))]
    if as_json:
        emit_json(rows)
        return
    table(
        ("key_id", "name", "alg", "scopes", "state", "created_at"),
        [
            (
                r["key_id"],
                r["name"],
                r["alg"],
                " ".join(r["scopes"]),
                f"grace until {r['revoked_at']}" if r["state"] == "grace" else r["state"],
                r["created_at"],
            )
            for r in rows
        ],
    )


@app.command("revoke")
@click.argument("key_id")
@config_option
@json_option
@friendly
def revoke(key_id: str, config: str | None, as_json: bool) -> None:
    """Revoke an app at once (on every instance within one second)."""
    settings = settings_from(config)

    async def act(store: Store) -> AppRecord:
        return await store.apps.revoke(key_id, datetime.now(UTC))

    try:
        rec = run(with_store(settings, act))
    except UnknownRecord:
        raise _unknown(key_id) from None
    if as_json:
        emit_json(_public(rec, datetime.now(UTC)))
    else:
        success(f"App {rec.key_id} ({rec.name}) revoked.")


@app.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace",
    callback=duration_option,
    metavar="DURATION",
    help="Keep the old key_id working this long: a number with ms, s, m, h or d (default: it "
    "stops at once).",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False),
    metavar="PEM_PATH",
    default=None,
    help="The new public key, for ed25519 and ecdsa-p256-sha256 apps (required for them). "
    "Never a private key.",
)
@config_option
@json_option
@friendly
def rotate(
    key_id: str, grace: float | None, public_key: str | None, config: str | None, as_json: bool
) -> None:
    """Replace an app's key (a new key_id; same name and scopes).

    The new credential is a new secret (hmac-sha256) or the new public key given with
    --public-key; the name, scopes and algorithm stay. The old key_id stops working at once,
    or after --grace."""
    pem = _read_pem(public_key)
    settings = settings_from(config)
    now = datetime.now(UTC)

    async def act(store: Store) -> tuple[AppRecord, str | None, AppRecord]:
        old = await store.apps.get(key_id)
        if old is None:
            raise UnknownRecord(key_id)
        if old.revoked_at and old.revoked_at <= now:
            raise click.ClickException(f"app '{key_id}' is revoked; create a new one")
        sealer: Sealer | None = None
        if old.alg == HMAC_SHA256 and pem is None:
            sealer = open_sealer(settings.master_key_path)
            await ensure_master_key(store, sealer)  # a wrong master key must seal nothing
        try:
            new, secret = rotated_app(old, pem, now=now, sealer=sealer)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        await store.apps.rotate(old.key_id, new, now + timedelta(seconds=grace or 0))
        # Read back: an app already in its grace period keeps the earlier end.
        after = await store.apps.get(old.key_id)
        return new, secret, after or old

    try:
        new, secret, old = run(with_store(settings, act))
    except UnknownRecord:
        raise _unknown(key_id) from None
    _print_new(as_json, new, secret, f"rotated from {key_id}", old=old)
