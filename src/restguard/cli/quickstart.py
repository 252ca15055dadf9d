"""``restguard quickstart``: a data dir, a demo notes API, a policy, keys, the server; one go.

The command, the guide it prints (or ``--json``) and the processes it runs are here; the demo
credentials it issues each run are made in ``quickstart_demo.py``."""

from __future__ import annotations

import asyncio
import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import click

from restguard.cli.context import friendly, json_option, resolve, settings_from
from restguard.cli.init import write_data_dir
from restguard.cli.output import emit_json
from restguard.cli.quickstart_demo import DEMO_AUDIENCE, DEMO_USER, Demo, fresh_keys
from restguard.cli.serve import _Server, bind, install_loop, run_servers, uvicorn_config
from restguard.config import Listen, Settings
from restguard.credentials.apps import HMAC_SHA256
from restguard.credentials.oauth1_consumers import HMAC_SHA1
from restguard.demo.app import DemoApp
from restguard.demo.idp import PATH as IDP_PATH
from restguard.demo.idp import DemoIdentityProvider
from restguard.demo.notes import NotesApp

DEMO_PORT = 9000  # the demo notes API, when free


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class _Example:
    status: int
    what: str
    curl: str


def _examples(base: str, demo: Demo, token: str) -> list[_Example]:
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


def _sign_command(base: str, config: Path, demo: Demo) -> str:
    q = shlex.quote
    return (
        f"printf '%s\\n' {q(demo.signer_secret)} | restguard sign --config {q(str(config))} "
        f"--key-id {demo.signer_id} --secret-stdin {base}/notes"
    )


def _oauth1_command(base: str, config: Path, demo: Demo) -> str:
    q, o = shlex.quote, demo.oauth1
    return (
        f"printf '%s\\n' {q(o.consumer_secret + '&' + o.token_secret)} | restguard oauth1 sign "
        f"--config {q(str(config))} --consumer-key {o.consumer_key} --token {o.token} "
        f"--secrets-stdin {base}/notes"
    )


def _guide(
    base: str, admin: str, upstream: str, config: Path, examples: list[_Example], demo: Demo
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
        f"Admin API: curl -H {shlex.quote('X-API-Key: ' + demo.admin_key)} {admin}/api/apikeys",
        f"           (a key holding restguard:admin, for a day; the API: {admin}/api/openapi.json)",
        f"Console:   {admin}/ in a browser, signed in with that key",
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
        demo = asyncio.run(fresh_keys(settings, idp, gateway, upstream))
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
                "admin_key": demo.admin_key,
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
