"""``restguard sign``: sign a request as an app (RFC 9421) and send it, like ``curl -i``. The
signing is ``restguard.client.SignatureAuth``'s (``wire/rfc9421_signer.py``), so what this
command sends is what an application using it sends; it is sent with the standard library
(``urllib``, once, no redirect followed), so the command runs on a base install. Secrets never
appear on the command line: an hmac-sha256 app's secret comes from stdin (``--secret-stdin``), a
private key from a PEM file (``--private-key``).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click

from restguard.cli.context import config_option, json_option, settings_from
from restguard.cli.output import emit_json
from restguard.credentials.apps import MAX_PEM_BYTES
from restguard.wire.rfc9421_signer import ALGORITHMS, RequestSigner

_SIGNATURE_FIELDS = ("content-digest", "signature-input", "signature")
MAX_DATA_FILE_BYTES = 64 * 1024 * 1024


def _header(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Any]:
    headers = []
    for value in values:
        name, sep, field_value = value.partition(":")
        if not sep or not name.strip() or name != name.strip():
            raise click.BadParameter(f"{value!r} is not 'Name: value'", ctx, param)
        if name.lower() in _SIGNATURE_FIELDS:
            raise click.BadParameter(f"{name} is set by the signature", ctx, param)
        headers.append((name, field_value.strip()))
    return headers


def _private_key(path: str, alg: str | None) -> tuple[str, Any]:
    """The algorithm and the ``key`` SignatureAuth takes for the PEM private key at ``path``."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from restguard.wire.rfc9421_algorithms import signer

    hint = "--private-key"
    try:
        with Path(path).open("rb") as f:
            pem = f.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path} ({exc.strerror or exc})", param_hint=hint
        ) from None
    try:
        key = load_pem_private_key(pem, password=None)
    except TypeError:
        raise click.BadParameter(
            f"{path} is encrypted; write an unencrypted copy for this command "
            "('openssl pkey -in KEY -out plain.pem') or use SignatureAuth",
            param_hint=hint,
        ) from None
    except ValueError:
        raise click.BadParameter(
            f"{path} is not a PEM private key ('-----BEGIN PRIVATE KEY-----')", param_hint=hint
        ) from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        found = "ed25519"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        found = "ecdsa-p256-sha256"
    else:
        raise click.BadParameter(f"{path}: not an Ed25519 or P-256 private key", param_hint=hint)
    if alg is not None and alg != found:
        raise click.BadParameter(f"{path} is an {found} key, not {alg}", param_hint="--alg")
    return found, key if found == "ed25519" else signer(found, key)


def _secret() -> str:
    if sys.stdin.isatty():
        secret: str = click.prompt("App secret", hide_input=True, err=True)
        return secret.strip()
    return sys.stdin.readline().strip()


def _url(url: str, config: str | None) -> str:
    if url.startswith(("http://", "https://")):
        return url
    if not url.startswith("/"):
        raise click.BadParameter("an http(s) URL, or a path sent to public_url", param_hint="URL")
    return settings_from(config).server.public_url.rstrip("/") + url


@click.command(context_settings={"max_content_width": 100})
@click.argument("url")
@click.option(
    "--key-id", required=True, help="The app's key_id (app_...), as 'app create' printed it."
)
@click.option(
    "--secret-stdin",
    is_flag=True,
    help="hmac-sha256: read the app's secret from stdin's first line (asked without echo on a "
    "terminal), e.g. 'pass show billing | restguard sign --secret-stdin ...'.",
)
@click.option(
    "--private-key",
    metavar="PEM",
    help="ed25519 or ecdsa-p256-sha256: the path of the app's PEM private key (unencrypted); "
    "the algorithm follows from the key.",
)
@click.option(
    "--alg",
    type=click.Choice(ALGORITHMS),
    default=None,
    help="The app's algorithm: hmac-sha256 with --secret-stdin, the key's with --private-key.",
)
@click.option(
    "-X", "--request", "method", metavar="METHOD", default=None,
    help="The method (default GET, or POST with a body).",
)  # fmt: skip
@click.option(
    "-H", "--header", "headers", multiple=True, callback=_header, metavar="'Name: value'",
    help="A header to send; repeat for more. Not signed unless named with --cover.",
)  # fmt: skip
@click.option(
    "--cover", "cover", multiple=True, metavar="COMPONENT",
    help="Also cover this component: a header's lower-case name ('content-type') or a derived "
    "one ('@scheme'); repeat for more. The gateway's required ones are always covered.",
)  # fmt: skip
@click.option("-d", "--data", help="The body, as text (sent as its UTF-8 bytes).")
@click.option(
    "--data-file",
    type=click.Path(dir_okay=False, exists=True),
    help="The body, read from this file byte for byte.",
)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the request's headers (signature included); send nothing.",
)
@config_option
@json_option
def sign(
    url: str,
    key_id: str,
    secret_stdin: bool,
    private_key: str | None,
    alg: str | None,
    method: str | None,
    headers: list[tuple[str, str]],
    cover: tuple[str, ...],
    data: str | None,
    data_file: str | None,
    timeout: float,
    dry_run: bool,
    config: str | None,
    as_json: bool,
) -> None:
    """Sign a request as an app (RFC 9421) and send it; print the answer like 'curl -i'.

    Covered: @method, @authority, @path, @query (with a query), and Content-Digest (sha-256,
    added) with a body; created is now and the nonce fresh, so each run sends a new signature.
    URL is an http(s) URL, or a path ('/notes/1') sent to the configuration's public_url.

    \b
    Examples:
      restguard sign --key-id app_3k9x0q2m7c1v8b4n --secret-stdin \\
          https://api.example.com/notes?limit=5 < secret.txt
      restguard sign --key-id app_7h2k... --private-key private.pem \\
          -H 'Content-Type: application/json' -d '{"text": "hi"}' https://api.example.com/notes
      restguard sign --key-id ID --secret-stdin --dry-run --json URL < secret.txt

    With --json: {"status", "headers", "body"} (body as text); with --dry-run --json:
    {"method", "url", "headers"}. Exit status 0 whatever the HTTP status; 1 when nothing came
    back.
    """
    if secret_stdin == (private_key is not None):
        raise click.UsageError("give exactly one of --secret-stdin (hmac) or --private-key PEM")
    if data is not None and data_file is not None:
        raise click.UsageError("give one of -d/--data and --data-file")
    body = b""
    if data is not None:
        body = data.encode("utf-8")
    elif data_file is not None:
        with Path(data_file).open("rb") as f:
            body = f.read(MAX_DATA_FILE_BYTES + 1)
        if len(body) > MAX_DATA_FILE_BYTES:
            raise click.BadParameter("over 64 MiB", param_hint="--data-file")
    target = _url(url, config)
    if private_key is not None:
        alg, key = _private_key(private_key, alg)
    else:
        if alg not in (None, "hmac-sha256"):
            raise click.UsageError(f"--alg {alg} signs with --private-key, not a secret")
        alg, key = "hmac-sha256", _secret()
    try:
        signer = RequestSigner(key_id, key, alg=alg, components=cover)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    verb = (method or ("POST" if data is not None or data_file is not None else "GET")).upper()
    parts = urllib.parse.urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{target!r} is not an http(s) URL", param_hint="URL")
    fields = [(name.lower(), value) for name, value in headers]
    authority = next((v for n, v in fields if n == "host"), parts.netloc.rpartition("@")[2])
    path = parts.path or "/"
    request_target = path + (f"?{parts.query}" if parts.query else "")
    try:
        added = signer.signed(
            verb,
            parts.scheme,
            authority,
            request_target,
            [(n.encode("latin-1"), v.encode("latin-1")) for n, v in fields],
            body,
        )
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    sent = [(n, v) for n, v in headers if n.lower() not in _SIGNATURE_FIELDS] + added
    if dry_run:
        _show_request(verb, target, request_target, sent, as_json)
        return
    # (an http(s) URL only: checked above)
    request = urllib.request.Request(target, data=body or None, method=verb)  # noqa: S310
    for name, value in sent:
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            status, reason, version = answer.status, answer.reason, answer.version
            answer_headers, content = answer.headers.items(), answer.read()
    except urllib.error.HTTPError as answer:  # 4xx and 5xx: still the answer
        status, reason, version = answer.code, answer.reason, 11
        answer_headers, content = answer.headers.items(), answer.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise click.ClickException(f"{verb} {target}: {exc}") from None
    _show_response(status, reason, version, answer_headers, content, as_json)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is shown, not followed: its signature would not fit the new request."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _show_request(
    verb: str, url: str, request_target: str, fields: list[tuple[str, str]], as_json: bool
) -> None:
    if as_json:
        emit_json({"method": verb, "url": url, "headers": dict(fields)})
        return
    click.echo(f"{verb} {request_target} HTTP/1.1")
    for name, value in fields:
        click.echo(f"{name}: {value}")


def _show_response(
    status: int,
    reason: str,
    version: int,
    headers: list[tuple[str, str]],
    content: bytes,
    as_json: bool,
) -> None:
    if as_json:
        joined: dict[str, str] = {}
        for name, value in headers:  # a repeated field: its values joined by ", "
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        emit_json({"status": status, "headers": joined, "body": content.decode("utf-8", "replace")})
        return
    click.echo(f"HTTP/{version // 10}.{version % 10} {status} {reason}")
    for name, value in headers:
        click.echo(f"{name}: {value}")
    click.echo("")
    if content:
        click.echo(content, nl=not content.endswith(b"\n"))
