"""``restguard app create|list|revoke|rotate``: signing apps (RFC 9421 signed requests).

An hmac-sha256 app's secret is drawn by restguard, printed once and stored sealed by the master
key (so the master key must belong to the data directory: ``ensure_master_key`` runs before
anything is sealed). An ed25519 or ecdsa-p256-sha256 app registers the public key from a PEM
file; its private key never comes near restguard. The work is ``restguard.manage.apps``'s,
shared with the admin API (``/api/apps``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

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
from restguard.cli.output import emit_json, success, table
from restguard.config import Settings
from restguard.credentials.apps import ALGORITHMS, HMAC_SHA256, MAX_PEM_BYTES
from restguard.keys.sealing import Sealer, open_sealer
from restguard.manage import apps
from restguard.manage.errors import Invalid, ManageError, NotFound
from restguard.store.ports import Store

T = TypeVar("T")

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


def _usage(exc: Invalid) -> click.UsageError:
    """A refused input as the option it came from (``--public-key: problem``), exit 2."""
    option = apps.OPTIONS.get(exc.field or "")
    return click.UsageError(f"{option}: {exc.message}" if option else exc.message)


def _unknown(key_id: str) -> click.ClickException:
    return click.ClickException(
        f"no app has the key_id '{key_id}' ('restguard app list' shows them)"
    )


def _act(
    settings: Settings, action: Callable[[Store], Awaitable[T]], key_id: str | None = None
) -> T:
    """Run a service call on the store; its refusal becomes the CLI's one-line error (exit 2
    for a refused option, 1 for a refused action)."""
    try:
        return run(with_store(settings, action))
    except NotFound as exc:
        raise (_unknown(key_id) if key_id else click.ClickException(exc.message)) from None
    except Invalid as exc:
        raise _usage(exc) from None
    except ManageError as exc:
        raise click.ClickException(exc.message) from None


def _shown(data: dict[str, Any], *hidden: str) -> dict[str, Any]:
    """A record as the CLI prints it: the API's ``etag`` (for ``If-Match``) left out."""
    return {k: v for k, v in data.items() if k not in ("etag", *hidden)}


def _print_new(as_json: bool, data: dict[str, Any], verb: str) -> None:
    """The new credential, its secret shown once. After a rotation: the old key_id and when it
    stops working (``grace_ends_at``: now without --grace)."""
    if as_json:
        emit_json(_shown(data, "public_key_sha256"))
        return
    secret = data["secret"]
    success(f"App {verb}: {data['key_id']} ({data['name']}, {data['alg']})")
    click.echo(f"  key_id:     {data['key_id']}   (the signature's keyid parameter)")
    if secret is not None:
        click.echo(f"  secret:     {secret}")
    else:
        click.echo(f"  public key: SHA-256 {data['public_key_sha256']}")
    click.echo(f"  scopes:     {' '.join(data['scopes'])}")
    if "old_id" in data:
        click.echo(f"  old key_id: {data['old_id']} works until {data['grace_ends_at']}")
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
        apps.check(name, scopes, alg, pem)
    except Invalid as exc:
        raise _usage(exc) from None
    settings = settings_from(config)
    sealer = open_sealer(settings.master_key_path) if alg == HMAC_SHA256 else None

    def opened() -> Sealer:
        if sealer is None:  # (only an hmac-sha256 app's secret is sealed)
            raise TypeError("no master key was opened for a public-key app")
        return sealer

    async def act(store: Store) -> dict[str, Any]:
        return await apps.create(store, datetime.now(UTC), opened, name, scopes, alg, pem)

    _print_new(as_json, _act(settings, act), "created")


@app.command("list")
@config_option
@json_option
@friendly
def list_(config: str | None, as_json: bool) -> None:
    """List apps, oldest first (never a secret).

    State: 'active', 'grace' (rotated, still accepted until its revoked_at) or 'revoked'."""
    settings = settings_from(config)

    async def act(store: Store) -> list[dict[str, Any]]:
        return await apps.everything(store, datetime.now(UTC))

    rows = [_shown(r) for r in run(with_store(settings, act))]
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

    async def act(store: Store) -> dict[str, Any]:
        return await apps.revoke(store, datetime.now(UTC), key_id)

    data = _shown(_act(settings, act, key_id))
    if as_json:
        emit_json(data)
    else:
        success(f"App {data['key_id']} ({data['name']}) revoked.")


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
    or after --grace. An app rotated already (in its grace period) is not rotated again:
    rotate the key_id that replaced it, or revoke this one."""
    pem = _read_pem(public_key)
    settings = settings_from(config)

    def opened() -> Sealer:
        return open_sealer(settings.master_key_path)

    async def act(store: Store) -> dict[str, Any]:
        return await apps.rotate(store, datetime.now(UTC), opened, key_id, pem, grace)

    _print_new(as_json, _act(settings, act, key_id), f"rotated from {key_id}")
