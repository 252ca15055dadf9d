"""``restguard sign``: sign a request as an app (RFC 9421) and send it, like ``curl -i``. The
signing is ``restguard.client.SignatureAuth``'s (``wire/rfc9421_signer.py``), so what this
command sends is what an application using it sends; it is sent with the standard library
(``urllib``, once, no redirect followed), so the command runs on a base install. Secrets never
appear on the command line: an hmac-sha256 app's secret comes from stdin (``--secret-stdin``), a
private key from a PEM file (``--private-key``).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from restguard.cli.context import config_option, json_option
from restguard.cli.send import (
    header_callback,
    load_private_key,
    read_body,
    send,
    show_request,
    target,
)
from restguard.wire.rfc9421_signer import ALGORITHMS, RequestSigner

_SIGNATURE_FIELDS = ("content-digest", "signature-input", "signature")
_header = header_callback(_SIGNATURE_FIELDS, "the signature")


def _private_key(path: str, alg: str | None) -> tuple[str, Any]:
    """The algorithm and the ``key`` SignatureAuth takes for the PEM private key at ``path``."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from restguard.wire.rfc9421_algorithms import signer

    hint = "--private-key"
    key = load_private_key(path, "SignatureAuth")
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
    body = read_body(data, data_file)
    where = target(url, config, headers)
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
    verb = (method or ("POST" if body is not None else "GET")).upper()
    fields = [(name.lower(), value) for name, value in headers]
    try:
        added = signer.signed(
            verb,
            where.scheme,
            where.authority,
            where.request_target,
            [(n.encode("latin-1"), v.encode("latin-1")) for n, v in fields],
            body or b"",
        )
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    sent = [(n, v) for n, v in headers if n.lower() not in _SIGNATURE_FIELDS] + added
    if dry_run:
        show_request(verb, where.url, where.request_target, sent, as_json)
        return
    send(verb, where.url, sent, body, timeout=timeout, as_json=as_json)
