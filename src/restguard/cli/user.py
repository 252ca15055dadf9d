"""``restguard user create|list|remove|consents|revoke-consent``: resource owners who log in
to restguard's authorization server and consent to clients. Passwords never appear on the
command line (shell history, ``ps``): they come from stdin, and only their Argon2id hash is
stored."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
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
from restguard.cli.output import emit_json, success, table
from restguard.config import Settings
from restguard.manage import users
from restguard.manage.errors import Conflict, Invalid, ManageError, NotFound
from restguard.oauth2.users import MAX_PASSWORD_CHARS, MAX_USERNAME_CHARS
from restguard.store.ports import Store

T = TypeVar("T")


def _shown(data: dict[str, Any]) -> dict[str, Any]:
    """A record as the CLI prints it: the API's ``etag`` (for ``If-Match``) left out."""
    return {k: v for k, v in data.items() if k != "etag"}


def _usage(exc: Invalid) -> click.UsageError:
    return click.UsageError(f"{users.option_of(exc.field)}: {exc.message}")


def _act(settings: Settings, user: str, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run a service call on the store; its refusal becomes the CLI's one-line error."""
    try:
        return run(with_store(settings, action))
    except NotFound:
        raise click.ClickException(
            f"no user has the id or username '{user}' ('restguard user list' shows them)"
        ) from None
    except ManageError as exc:
        raise click.ClickException(exc.message) from None


def read_password() -> str:
    """The password from stdin: its first line without the line ending (``\\n`` or ``\\r\\n``;
    nothing else is stripped), decoded as UTF-8. On a terminal, asked twice without echo
    (prompts on stderr, so --json still prints one document on stdout)."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
        return str(password)
    limit = 4 * MAX_PASSWORD_CHARS + 2  # UTF-8 takes at most 4 bytes a character, then CR LF
    line = sys.stdin.buffer.readline(limit)
    if line.endswith(b"\n"):
        line = line[:-1].removesuffix(b"\r")
    elif len(line) >= limit:
        raise click.UsageError(
            f"--password-stdin: the password must be at most {MAX_PASSWORD_CHARS} characters"
        )
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise click.UsageError("--password-stdin: the password is not valid UTF-8") from None


@click.group("user")
def user() -> None:
    """Resource owners: people who log in to the authorization server and consent to clients."""


@user.command("create")
@click.option(
    "--username",
    required=True,
    help=f"The login name: 1-{MAX_USERNAME_CHARS} ASCII letters, digits and . _ @ + - "
    "(stored lower-cased: Alice and alice are one user).",
)
@click.option(
    "--password-stdin",
    "password_stdin",
    is_flag=True,
    help="Read the password from stdin (its first line; 8 to 1024 characters), e.g. "
    "'printf %s \"$PW\" | restguard user create ...'. On a terminal it is asked for twice, "
    "without echo. Required: a password is never taken as an argument.",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="A scope the user may grant to clients; repeat for more. Without any, the user can "
    "sign in but grant nothing (every request for their consent is refused).",
)
@config_option
@json_option
@friendly
def create(
    username: str,
    password_stdin: bool,
    scopes: tuple[str, ...],
    config: str | None,
    as_json: bool,
) -> None:
    """Create a user who can log in and consent. Only an Argon2id hash of the password is
    stored; the password is never printed."""
    try:
        users.check(username, scopes)  # before asking for a password
    except Invalid as exc:
        raise _usage(exc) from None
    if not password_stdin:
        raise click.UsageError(
            "--password-stdin: give it and pipe the password in, e.g. "
            'printf %s "$PW" | restguard user create --username U --password-stdin '
            "(a password is never taken as an argument: it would stay in shell history)"
        )
    settings = settings_from(config)
    try:
        record = users.prepare(datetime.now(UTC), username, read_password(), scopes)
    except Invalid as exc:
        raise _usage(exc) from None

    async def act(store: Store) -> dict[str, Any]:
        return await users.add(store, record)

    try:
        data = _shown(run(with_store(settings, act)))
    except Conflict:
        raise click.ClickException(
            f"a user named '{record.username}' already exists ('restguard user list' shows "
            "them; usernames ignore case)"
        ) from None
    if as_json:
        emit_json(data)
        return
    success(f"user created: {record.user_id} ({record.username})")
    if record.scopes:
        click.echo(f"  scopes: {' '.join(record.scopes)}")
    else:
        click.secho(
            "  no --scope: this user may grant no scope, so every application's request for "
            "their consent is refused",
            fg="yellow",
            err=True,
        )
    click.secho("  Only a hash of the password is stored.", dim=True)


@user.command("list")
@config_option
@json_option
@friendly
def list_(config: str | None, as_json: bool) -> None:
    """List users (never their password hashes)."""
    settings = settings_from(config)

    async def act(store: Store) -> list[dict[str, Any]]:
        return await users.everything(store, datetime.now(UTC))

    rows = [_shown(r) for r in run(with_store(settings, act))]
    if as_json:
        emit_json(rows)
        return
    table(
        ("user_id", "username", "scopes", "created_at", "state"),
        [
            (
                r["user_id"],
                r["username"],
                " ".join(r["scopes"]),
                r["created_at"],
                f"locked until {r['locked_until']}" if r["locked_until"] else r["state"],
            )
            for r in rows
        ],
    )


@user.command("remove")
@click.argument("user", metavar="ID_OR_USERNAME")
@config_option
@json_option
@friendly
def remove(user: str, config: str | None, as_json: bool) -> None:
    """Remove a user (by the user_id 'create' printed, or by username): they can no longer
    log in, their consents are forgotten, and every refresh token they granted is revoked with
    the access tokens issued beside it (refused on every instance within a second), as are
    the OAuth 1.0a token credentials they authorized."""
    settings = settings_from(config)

    async def act(store: Store) -> dict[str, Any]:
        return await users.remove(store, datetime.now(UTC), user)

    rec = _shown(_act(settings, user, act))
    if as_json:
        emit_json(rec)
    else:
        success(f"user {rec['user_id']} ({rec['username']}) removed.")


@user.command("consents")
@click.argument("user", metavar="ID_OR_USERNAME")
@config_option
@json_option
@friendly
def consents(user: str, config: str | None, as_json: bool) -> None:
    """The applications a user has allowed, and the scopes each one was granted."""
    settings = settings_from(config)

    async def act(store: Store) -> list[dict[str, Any]]:
        return await users.consents(store, user)

    found = _act(settings, user, act)
    if as_json:
        emit_json(found)
        return
    table(
        ("client_id", "scopes", "granted_at"),
        [(r["client_id"], " ".join(r["scopes"]), r["granted_at"]) for r in found],
    )


@user.command("revoke-consent")
@click.argument("user", metavar="ID_OR_USERNAME")
@click.option(
    "--client",
    "client_id",
    metavar="CLIENT_ID",
    default=None,
    help="Only this application's consent [default: every application's].",
)
@config_option
@json_option
@friendly
def revoke_consent(user: str, client_id: str | None, config: str | None, as_json: bool) -> None:
    """Take back what a user allowed an application (or every application): the consent is
    forgotten, so the consent page is shown again next time, and the refresh tokens issued
    under it are revoked with their access tokens (on every instance within a second)."""
    settings = settings_from(config)

    async def act(store: Store) -> dict[str, Any]:
        return await users.revoke_consent(store, datetime.now(UTC), user, client_id)

    data = _act(settings, user, act)
    name = data.pop("username")
    if as_json:
        emit_json(data)
    else:
        whom = f"application {client_id}" if client_id else "every application"
        families = data["token_families_revoked"]
        kinds = "family" if families == 1 else "families"
        success(
            f"{name}'s consent to {whom} revoked "
            f"({data['consents_revoked']} consent(s), {families} refresh token {kinds})."
        )
