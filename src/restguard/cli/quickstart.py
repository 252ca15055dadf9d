"""``restguard quickstart``: a data dir, a demo notes API, a policy, keys, the server; one go."""

from __future__ import annotations

import asyncio
import secrets
import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import click

from restguard.cli.context import friendly, json_option, resolve, settings_from
from restguard.cli.init import write_data_dir
from restguard.cli.output import emit_json
from restguard.cli.serve import _Server, bind, install_loop, run_servers, uvicorn_config
from restguard.config import Listen, Settings
from restguard.credentials.apikey import new_record
from restguard.credentials.apps import HMAC_SHA256, new_app
from restguard.credentials.jwt_issuers import new_issuer
from restguard.credentials.oauth1_consumers import HMAC_SHA1, OOB, new_consumer
from restguard.credentials.oauth1_tokens import (
    new_temporary_credentials,
    new_token_credentials,
    new_verifier,
)
from restguard.demo.app import PATH as APP_PATH
from restguard.demo.app import SCOPES, DemoApp
from restguard.demo.idp import ALG as IDP_ALG
from restguard.demo.idp import PATH as IDP_PATH
from restguard.demo.idp import DemoIdentityProvider
from restguard.demo.notes import NotesApp
from restguard.keys.master_check import ensure_master_key
from restguard.keys.sealing import Sealer, open_sealer
from restguard.oauth2.clients import new_client
from restguard.oauth2.users import new_user
from restguard.store.ports import Store
from restguard.store.sql import open_store

READ_NAME, WRITE_NAME = "quickstart-read", "quickstart-write"
SERVICE_NAME = "quickstart-service"  # the demo OAuth 2.0 client (client credentials)
APP_NAME = "Quickstart notes app"  # the demo OAuth 2.0 application (authorization code)
SIGNER_NAME = "quickstart-signer"  # the demo app that signs its requests (RFC 9421, HMAC)
CONSUMER_NAME = "quickstart-consumer"  # the demo OAuth 1.0a consumer (RFC 5849)
CONSUMER_SCOPES = ("notes:read",)
DEMO_USER = "demo"  # the person who signs in to it
DEMO_PORT = 9000  # the demo notes API, when free
DEMO_AUDIENCE = "restguard-quickstart"  # the demo identity provider's tokens are for this API


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class _OAuth1:
    """The demo consumer and the token credentials the demo user granted it."""

    consumer_key: str
    consumer_secret: str
    token: str
    token_secret: str


@dataclass(frozen=True)
class _Demo:
    read_key: str
    write_key: str
    client_id: str
    client_secret: str
    app: DemoApp
    password: str
    signer_id: str
    signer_secret: str
    oauth1: _OAuth1


async def _fresh_keys(
    settings: Settings, idp: DemoIdentityProvider, gateway: str, upstream: str
) -> _Demo:
    """Revoke the previous run's demo keys (their secrets were only ever printed) and issue
    a read key and a read/write key, an OAuth 2.0 client (client credentials, read only), an
    OAuth 2.0 application (authorization code, public) and the demo user who signs in to it,
    a signing app, an OAuth 1.0a consumer with token credentials of the demo user; trust this
    run's demo identity provider instead of the last one's."""
    store = open_store(settings.database_url)
    try:
        now = datetime.now(UTC)
        for rec in await store.api_keys.list():
            if rec.name in (READ_NAME, WRITE_NAME) and not rec.revoked_at:
                await store.api_keys.revoke(rec.id, now)
        read, read_key = new_record(READ_NAME, ("notes:read",), now, None)
        write, write_key = new_record(WRITE_NAME, ("notes:read", "notes:write"), now, None)
        await store.api_keys.insert(read)
        await store.api_keys.insert(write)
        for issuer in await store.issuers.list():
            if issuer.audience == DEMO_AUDIENCE:
                await store.issuers.remove(issuer.id)
        await store.issuers.insert(
            new_issuer(
                issuer=idp.issuer,
                jwks_uri=idp.jwks_uri,
                audience=DEMO_AUDIENCE,
                now=now,
                algorithms=[IDP_ALG],
                typ="at+jwt",
            )
        )
        for client in await store.oauth2_clients.list():
            if client.name == SERVICE_NAME and client.revoked_at is None:
                await store.oauth2_clients.revoke(client.client_id, now)
        service, secret = new_client(
            name=SERVICE_NAME,
            scopes=("notes:read",),
            grants=("client_credentials",),
            redirect_uris=(),
            public=False,
            now=now,
        )
        assert secret is not None  # a confidential client
        await store.oauth2_clients.insert(service)
        app = await _fresh_app(store, now, gateway, upstream)
        password = secrets.token_urlsafe(12)
        old = await store.users.by_username(DEMO_USER)
        if old is not None:  # its consents and refresh tokens go with it
            await store.refresh_tokens.revoke_user(old.user_id, now)
            await store.oauth1_tokens.revoke_user(old.user_id, now)
            await store.consents.revoke(old.user_id)
            await store.users.remove(old.user_id)
        user = new_user(DEMO_USER, password, SCOPES, now=now)
        await store.users.insert(user)
        sealer = open_sealer(settings.master_key_path)
        await ensure_master_key(store, sealer)  # (a wrong master key seals nothing)
        signer_id, signer_secret = await _fresh_signer(store, sealer, now)
        oauth1 = await _fresh_consumer(store, sealer, now, user.user_id)
        return _Demo(
            read_key,
            write_key,
            service.client_id,
            secret,
            app,
            password,
            signer_id,
            signer_secret,
            oauth1,
        )
    finally:
        store.close()


async def _fresh_signer(store: Store, sealer: Sealer, now: datetime) -> tuple[str, str]:
    """The demo app that signs its requests (hmac-sha256); the previous run's is revoked."""
    for old in await store.apps.list():
        if old.name == SIGNER_NAME and old.revoked_at is None:
            await store.apps.revoke(old.key_id, now)
    record, secret = new_app(
        SIGNER_NAME, ("notes:read",), HMAC_SHA256, None, now=now, sealer=sealer
    )
    assert secret is not None  # an hmac app
    await store.apps.insert(record)
    return record.key_id, secret


async def _fresh_consumer(store: Store, sealer: Sealer, now: datetime, user_id: str) -> _OAuth1:
    """The demo OAuth 1.0a consumer and token credentials the demo user granted it, written as
    the provider writes them (temporary credentials, authorized, exchanged: RFC 5849 §2); the
    previous run's consumer is revoked, with its tokens."""
    for old in await store.oauth1_consumers.list():
        if old.name == CONSUMER_NAME and old.revoked_at is None:
            await store.oauth1_consumers.revoke(old.consumer_key, now)
    consumer, consumer_secret = new_consumer(CONSUMER_NAME, CONSUMER_SCOPES, now=now, sealer=sealer)
    await store.oauth1_consumers.insert(consumer)
    temporary, _ = new_temporary_credentials(consumer, OOB, now=now, sealer=sealer)
    await store.oauth1_tokens.insert(temporary)
    _, digest = new_verifier()
    authorized = await store.oauth1_tokens.authorize(
        temporary.token,
        user_id=user_id,
        subject=DEMO_USER,
        scopes=CONSUMER_SCOPES,
        verifier_hash=digest,
        at=now,
    )
    granted = await store.oauth1_tokens.get(temporary.token)
    assert authorized and granted is not None  # just made: nothing else knows the token
    access, token_secret = new_token_credentials(granted, now=now, sealer=sealer)
    exchanged = await store.oauth1_tokens.exchange(temporary.token, digest, access, now)
    assert exchanged == "exchanged", exchanged
    return _OAuth1(consumer.consumer_key, consumer_secret, access.token, token_secret)


async def _fresh_app(store: Store, now: datetime, gateway: str, upstream: str) -> DemoApp:
    for client in await store.oauth2_clients.list():
        if client.name == APP_NAME and client.revoked_at is None:
            await store.oauth2_clients.revoke(client.client_id, now)
    record, _ = new_client(
        name=APP_NAME,
        scopes=SCOPES,
        grants=("authorization_code", "refresh_token"),
        redirect_uris=(upstream + APP_PATH,),
        public=True,
        now=now,
    )
    await store.oauth2_clients.insert(record)
    return DemoApp(record.client_id, gateway, upstream)


@dataclass(frozen=True)
class _Example:
    status: int
    what: str
    curl: str


def _examples(base: str, demo: _Demo, token: str) -> list[_Example]:
    read_key, write_key = demo.read_key, demo.write_key
    q = shlex.quote
    post = "-H 'Content-Type: application/json' -d '{\"text\":\"hi\"}'"
    return [
        _Example(200, "a public route", f"curl -i {base}/health"),
        _Example(
            200, "read with the read key", f"curl -i -H {q('X-API-Key: ' + read_key)} {base}/notes"
        ),
        _Example(401, "no credential", f"curl -i {base}/notes"),
        _Example(
            403,
            "the read key may not write",
            f"curl -i -X POST -H {q('Authorization: ApiKey ' + read_key)} {post} {base}/notes",
        ),
        _Example(
            201,
            "the read/write key may",
            f"curl -i -X POST -H {q('Authorization: ApiKey ' + write_key)} {post} {base}/notes",
        ),
        _Example(
            200,
            "read with a JWT from the demo identity provider (like one from Auth0 or Keycloak)",
            f"curl -i -H {q('Authorization: Bearer ' + token)} {base}/notes",
        ),
        _Example(
            403,
            "that token carries only notes:read",
            f"curl -i -X POST -H {q('Authorization: Bearer ' + token)} {post} {base}/notes",
        ),
        _Example(
            200,
            "an OAuth 2.0 access token for the demo service (client credentials); send its "
            "access_token as 'Authorization: Bearer <token>'",
            f"curl -i -u {q(demo.client_id + ':' + demo.client_secret)} "
            f"-d grant_type=client_credentials {base}/oauth2/token",
        ),
        _Example(
            404,
            "no route matches (default deny)",
            f"curl -i -H {q('X-API-Key: ' + write_key)} {base}/admin",
        ),
    ]


def _sign_command(base: str, config: Path, demo: _Demo) -> str:
    q = shlex.quote
    return (
        f"printf '%s\\n' {q(demo.signer_secret)} | restguard sign --config {q(str(config))} "
        f"--key-id {demo.signer_id} --secret-stdin {base}/notes"
    )


def _oauth1_command(base: str, config: Path, demo: _Demo) -> str:
    q, o = shlex.quote, demo.oauth1
    return (
        f"printf '%s\\n' {q(o.consumer_secret + '&' + o.token_secret)} | restguard oauth1 sign "
        f"--config {q(str(config))} --consumer-key {o.consumer_key} --token {o.token} "
        f"--secrets-stdin {base}/notes"
    )


def _guide(
    base: str, admin: str, upstream: str, config: Path, examples: list[_Example], demo: _Demo
) -> str:
    lines = [
        "",
        click.style("restguard is protecting the demo notes API.", fg="green", bold=True),
        f"  gateway  {base}   admin {admin}   config {config}",
        f"  demo notes API (the upstream)  {upstream}  (plain HTTP on loopback)",
        "",
        click.style("Try it (paste into another terminal):", bold=True),
        "",
    ]
    for example in examples:
        lines += [f"# {example.status}: {example.what}", example.curl]
    lines += [
        "",
        click.style(
            "Sign every request as an app (RFC 9421, HMAC; a new signature each run):", bold=True
        ),
        "# 200: the demo signer app reads the notes",
        _sign_command(base, config, demo),
        "",
        click.style(
            "Sign every request as an OAuth 1.0a consumer (RFC 5849; a new signature each run):",
            bold=True,
        ),
        f"# 200: the demo consumer reads the notes as {DEMO_USER} (OAuth 1.0a, HMAC-SHA1)",
        _oauth1_command(base, config, demo),
        "# how a consumer gets such token credentials (the three-legged flow): docs/oauth1.md",
        "",
        click.style("Sign in as a person (OAuth 2.0 authorization code + PKCE):", bold=True),
        f"# open in a browser, sign in as '{DEMO_USER}' with password {demo.password!r},",
        "# allow the demo app; its callback page shows the curl that redeems the code",
        demo.app.authorize_url(),
    ]
    lines += [
        "",
        "This is plain HTTP on loopback, for trying things out: API keys sent over a network",
        "need TLS ([server] tls_cert/tls_key, see the README) or a TLS-terminating proxy.",
        f"Decisions: restguard audit --follow --config {config}",
        f"Metrics:   curl {admin}/metrics",
        "Keys are shown once; a new run issues new ones. Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _demo_socket(host: str, requested: int | None) -> socket.socket:
    """The demo upstream's listening socket: ``--upstream-port`` if given (an error when it is
    taken), else DEMO_PORT, else any free port (the guide prints which)."""
    try:
        return bind(Listen(host, requested or DEMO_PORT))
    except click.ClickException:
        if requested is not None:
            raise click.ClickException(
                f"port {requested} on {host} is in use; pass another --upstream-port"
            ) from None
    return bind(Listen(host, 0))


@click.command()
@click.option(
    "--dir",
    "directory",
    default="restguard-data",
    show_default=True,
    metavar="DIR",
    help="Data dir (created on the first run, reused after).",
)
@click.option("--port", default=8080, show_default=True, help="Gateway port.")
@click.option("--admin-port", default=8081, show_default=True, help="Admin port.")
@click.option(
    "--upstream-port",
    type=int,
    default=None,
    help=f"Demo notes API port [default: {DEMO_PORT}, or a free one when it is taken].",
)
@json_option
@friendly
def quickstart(
    directory: str, port: int, admin_port: int, upstream_port: int | None, as_json: bool
) -> None:
    """Everything in one go: data dir, demo API, policy, keys, server, ready-to-paste requests.

    With --json, what the guide shows (listeners, keys, requests) is one JSON document on
    stdout once everything listens; progress goes to stderr."""
    data = resolve(directory)
    config = data / "restguard.toml"
    host = "127.0.0.1"
    for name, p in (("--port", port), ("--admin-port", admin_port)):
        if not _free(host, p):
            raise click.ClickException(f"port {p} on {host} is in use; pass another {name}")
    demo_sock = _demo_socket(host, upstream_port)
    try:
        demo_port = demo_sock.getsockname()[1]
        upstream = f"http://{host}:{demo_port}"
        if upstream_port is None and demo_port != DEMO_PORT:
            click.secho(
                f"port {DEMO_PORT} is in use, so the demo notes API listens on {upstream}",
                fg="yellow",
                err=True,
            )
        if config.exists():
            click.echo(f"reusing {data}", err=as_json)
        else:
            write_data_dir(
                data,
                upstream=upstream,
                listen=f"{host}:{port}",
                admin_listen=f"{host}:{admin_port}",
            )
            click.echo(f"created {data}", err=as_json)
        settings = settings_from(str(config))
        if (settings.server.listen.port, settings.admin_listen.port) != (port, admin_port):
            raise click.ClickException(
                f"{config} listens on {settings.server.listen} and {settings.admin_listen}; "
                "pass matching --port/--admin-port or use another --dir"
            )
        if settings.server.tls:
            # The quickstart is for trying restguard out on this machine: loopback, plain HTTP,
            # URLs that paste as they are. 'restguard serve' uses the reused file's TLS.
            click.secho(
                f"the quickstart serves plain HTTP on loopback: tls_cert/tls_key in {config} "
                "are used by 'restguard serve', not here",
                fg="yellow",
                err=True,
            )
            server = replace(settings.server, tls_cert=None, tls_key=None)
            settings = replace(settings, server=server)
        if settings.upstream.url != upstream:
            # A reused data dir written when another port was free: this run forwards to the
            # demo where it listens now (the file is left as it is).
            settings = replace(settings, upstream=replace(settings.upstream, url=upstream))
        idp = DemoIdentityProvider(upstream + IDP_PATH, DEMO_AUDIENCE)
        gateway = f"http://{settings.server.listen}"
        demo = asyncio.run(_fresh_keys(settings, idp, gateway, upstream))
    except BaseException:
        demo_sock.close()
        raise
    base = f"http://{settings.server.listen}"
    admin = f"http://{settings.admin_listen}"
    token = idp.token("alice", ("notes:read",))
    examples = _examples(base, demo, token)

    def ready() -> None:
        if not as_json:
            click.echo(_guide(base, admin, upstream, config, examples, demo))
            return
        emit_json(
            {
                "data_dir": str(data),
                "config": str(config),
                "gateway": base,
                "admin": admin,
                "upstream": upstream,
                "keys": {"read": demo.read_key, "write": demo.write_key},
                "oauth2": {
                    "client_id": demo.client_id,
                    "client_secret": demo.client_secret,
                    "token_url": base + "/oauth2/token",
                },
                "jwt": {"token": token, "issuer": idp.issuer, "jwks_uri": idp.jwks_uri},
                "signature": {
                    "key_id": demo.signer_id,
                    "secret": demo.signer_secret,
                    "alg": HMAC_SHA256,
                    "command": _sign_command(base, config, demo),
                },
                "oauth1": {
                    "consumer_key": demo.oauth1.consumer_key,
                    "consumer_secret": demo.oauth1.consumer_secret,
                    "token": demo.oauth1.token,
                    "token_secret": demo.oauth1.token_secret,
                    "signature_method": HMAC_SHA1,
                    "username": DEMO_USER,
                    "command": _oauth1_command(base, config, demo),
                },
                "authorization_code": {
                    "authorize_url": demo.app.authorize_url(),
                    "client_id": demo.app.client_id,
                    "redirect_uri": demo.app.redirect_uri,
                    "username": DEMO_USER,
                    "password": demo.password,
                },
                "requests": [
                    {"expect": e.status, "what": e.what, "curl": e.curl} for e in examples
                ],
            }
        )

    install_loop()
    asyncio.run(_serve(settings, demo_sock, ready, idp, demo.app))
    click.echo("stopped.", err=as_json)


async def _serve(
    settings: Settings,
    demo_sock: socket.socket,
    ready: Callable[[], None],
    idp: DemoIdentityProvider,
    app: DemoApp,
) -> None:
    demo = _Server(uvicorn_config(NotesApp(idp, app)))
    demo_task = asyncio.create_task(demo.serve(sockets=[demo_sock]))
    try:
        await run_servers(settings, on_ready=ready)
    finally:
        demo.should_exit = True
        await demo_task
