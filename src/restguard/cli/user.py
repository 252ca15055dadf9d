"""``restguard user create|list|remove|consents|revoke-consent``: resource owners who log in
to restguard's authorization server and consent to clients. Passwords never appear on the
command line (shell history, ``ps``): they come from stdin, and only their Argon2id hash is
stored."""

from __future__ import annotations

import sys
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
from restguard.oauth2.users import (
    MAX_PASSWORD_CHARS,
    MAX_USERNAME_CHARS,
    check_user,
    is_user_id,
    new_user,
)
from restguard.store.errors import DuplicateRecord, UnknownRecord
from restguard.store.ports import Store, UserRecord


def _created(rec: UserRecord) -> dict[str, Any]:
    return {
        "user_id": rec.user_id,
        "username": rec.username,
        "scopes": list(rec.scopes),
        "created_at": iso(rec.created_at),
    }


def _public(rec: UserRecord, now: datetime) -> dict[str, Any]:
    """What may be shown of a user: everything but the password hash."""
    locked = rec.locked_until is not None and rec.locked_until > now
    return _created(rec) | {
        "state": "locked" if locked else "active",
        "failed_logins": rec.failed_logins,
        "locked_until": iso(rec.locked_until) if locked else None,
    }


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
        check_user(username, scopes)  # before asking for a password
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not password_stdin:
        raise click.UsageError(
            "--password-stdin: give it and pipe the password in, e.g. "
            'printf %s "$PW" | restguard user create --username U --password-stdin '
            "(a password is never taken as an argument: it would stay in shell history)"
        )
    settings = settings_from(config)
    try:
        record = new_user(username, read_password(), scopes, now=datetime.now(UTC))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def act(store: Store) -> None:
        await store.users.insert(record)

    try:
        run(with_store(settings, act))
    except DuplicateRecord:
        raise click.ClickException(
            f"a user named '{record.username}' already exists ('restguard user list' shows "
            "them; usernames ignore case)"
        ) from None
    if as_json:
        emit_json(_created(record))
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

    async def act(store: Store) -> list[UserRecord]:
        return await store.users.list()

    now = datetime.now(UTC)
    rows = [_public(r, now) for r in run(with_store(settings, act))]
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
    key = user if is_user_id(user) else user.lower()

    async def revoke_grants(user_id: str, store: Store) -> None:
        now = datetime.now(UTC)
        await store.refresh_tokens.revoke_user(user_id, now)
        await store.oauth1_tokens.revoke_user(user_id, now)

    async def act(store: Store) -> UserRecord:
        found = await store.users.get(key) or await store.users.by_username(key)
        if found is not None:  # what they granted goes first: a failure leaves them revoked
            await revoke_grants(found.user_id, store)
            await store.consents.revoke(found.user_id)
        removed = await store.users.remove(key)
        # and again: a grant that completed in between (its code or refresh token used, its
        # OAuth 1.0a verifier exchanged, before the user row went) is revoked too; from now on
        # none can complete (the store checks that the user exists when it would)
        await revoke_grants(removed.user_id, store)
        return removed

    try:
        rec = run(with_store(settings, act))
    except UnknownRecord:
        raise click.ClickException(
            f"no user has the id or username '{user}' ('restguard user list' shows them)"
        ) from None
    if as_json:
        emit_json(_public(rec, datetime.now(UTC)))
    else:
        success(f"user {rec.user_id} ({rec.username}) removed.")


async def _find(store: Store, user: str) -> UserRecord:
    key = user if is_user_id(user) else user.lower()
    found = await store.users.get(key) or await store.users.by_username(key)
    if found is None:
        raise click.ClickException(
            f"no user has the id or username '{user}' ('restguard user list' shows them)"
        )
    return found


@user.command("consents")
@click.argument("user", metavar="ID_OR_USERNAME")
@config_option
@json_option
@friendly
def consents(user: str, config: str | None, as_json: bool) -> None:
    """The applications a user has allowed, and the scopes each one was granted."""
    settings = settings_from(config)

    async def act(store: Store) -> list[tuple[str, tuple[str, ...], datetime]]:
        return await store.consents.list((await _find(store, user)).user_id)

    found = run(with_store(settings, act))
    if as_json:
        emit_json(
            [
                {"client_id": client, "scopes": list(scopes), "granted_at": iso(at)}
                for client, scopes, at in found
            ]
        )
        return
    table(
        ("client_id", "scopes", "granted_at"),
        [(client, " ".join(scopes), iso(at)) for client, scopes, at in found],
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

    async def act(store: Store) -> tuple[UserRecord, int, int]:
        found = await _find(store, user)
        families = await store.refresh_tokens.revoke_user(
            found.user_id, datetime.now(UTC), client_id
        )
        forgotten = await store.consents.revoke(found.user_id, client_id)
        return found, forgotten, families

    found, forgotten, families = run(with_store(settings, act))
    if as_json:
        emit_json(
            {
                "user_id": found.user_id,
                "client_id": client_id,
                "consents_revoked": forgotten,
                "token_families_revoked": families,
            }
        )
    else:
        whom = f"application {client_id}" if client_id else "every application"
        kinds = "family" if families == 1 else "families"
        success(
            f"{found.username}'s consent to {whom} revoked "
            f"({forgotten} consent(s), {families} refresh token {kinds})."
        )
