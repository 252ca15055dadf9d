"""``restguard oauth1 sign``: sign a request as an OAuth 1.0a consumer (RFC 5849) and send it,
like ``curl -i``; ``restguard sign``'s twin for RFC 9421 apps (same options, same output, the
same sending: ``cli/send.py``).

The ``Authorization: OAuth`` header is built by ``wire/rfc5849_signer.py``, as
``restguard.client.OAuth1Auth`` builds it, so what this command sends is what a consumer using
it sends. Secrets never appear on the command line: they come from stdin's first line
(``--secrets-stdin``), an RSA private key from a PEM file (``--private-key``).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import unquote

import click

from restguard.cli.context import config_option, json_option
from restguard.cli.send import (
    Target,
    header_callback,
    load_private_key,
    read_body,
    send,
    show_request,
    target,
)
from restguard.tokens import random_base62
from restguard.wire.rfc5849 import OAuthError
from restguard.wire.rfc5849_signatures import plaintext_signature, sign_hmac
from restguard.wire.rfc5849_signer import sign_request_with

HMAC_SHA1, HMAC_SHA256, PLAINTEXT, RSA_SHA1 = "HMAC-SHA1", "HMAC-SHA256", "PLAINTEXT", "RSA-SHA1"
SIGNATURE_METHODS: Final = (HMAC_SHA1, HMAC_SHA256, PLAINTEXT, RSA_SHA1)
FORM: Final = "application/x-www-form-urlencoded"
NONCE_CHARS: Final = 22  # as OAuth1Auth's: 130 random bits, alphanumeric
REDACTED: Final = "(PLAINTEXT: the secrets themselves, not shown)"
_SIGNATURE = re.compile(r'oauth_signature="[^"]*"')

_header = header_callback(("authorization",), "the OAuth 1.0a signature")


def _is_form(content_type: str | None) -> bool:
    """The media type (case-insensitive, parameters ignored) is urlencoded (§3.4.1.3.1)."""
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip(" \t").lower() == FORM


def _secrets(token: str | None) -> tuple[str, str]:
    """The consumer secret and the token secret ("" without a token) from stdin's first line,
    ``CONSUMER_SECRET&TOKEN_SECRET`` with each secret percent-encoded (RFC 5849 §3.4.2's key).
    No message quotes the line."""
    if sys.stdin.isatty():
        line: str = click.prompt(
            "Secrets (CONSUMER_SECRET&TOKEN_SECRET)", hide_input=True, err=True
        )
    else:
        line = sys.stdin.readline()
    hint = "--secrets-stdin"
    consumer, _, token_secret = line.strip().partition("&")
    try:
        consumer = unquote(consumer, errors="strict")
        token_secret = unquote(token_secret, errors="strict")
    except UnicodeDecodeError:
        raise click.BadParameter(
            "a secret's percent-encoding is not UTF-8 (RFC 5849 §3.6)", param_hint=hint
        ) from None
    if not consumer:
        raise click.BadParameter(
            "stdin's first line is CONSUMER_SECRET&TOKEN_SECRET (the consumer secret first)",
            param_hint=hint,
        )
    if token is not None and not token_secret:
        raise click.BadParameter(
            "with --token, stdin's first line is CONSUMER_SECRET&TOKEN_SECRET "
            "(the token secret after the '&')",
            param_hint=hint,
        )
    if token is None and token_secret:
        raise click.BadParameter(
            "a token secret without --token: give the token, or only 'CONSUMER_SECRET&' for a "
            "two-legged request",
            param_hint=hint,
        )
    return consumer, token_secret


def _rsa_signer(path: str) -> Callable[[str], str]:
    """RSA-SHA1: base string -> ``oauth_signature`` with the PEM private key at ``path``."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from restguard.wire.rfc5849_algorithms import signer

    hint = "--private-key"
    key = load_private_key(path, "OAuth1Auth")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise click.BadParameter(f"{path}: not an RSA private key", param_hint=hint)
    return signer(RSA_SHA1, rsa_private_key=key)


def _shown(fields: list[tuple[str, str]], signature_method: str) -> list[tuple[str, str]]:
    """The headers as ``--dry-run`` prints them: a PLAINTEXT signature is the secrets."""
    if signature_method != PLAINTEXT:
        return fields
    return [
        (n, _SIGNATURE.sub(f'oauth_signature="{REDACTED}"', v) if n == "Authorization" else v)
        for n, v in fields
    ]


@click.command("sign", context_settings={"max_content_width": 100})
@click.argument("url")
@click.option(
    "--consumer-key",
    required=True,
    metavar="ck_...",
    help="The consumer's key, as 'oauth1 consumer create' printed it.",
)
@click.option(
    "--token",
    default=None,
    metavar="rg_ot_...",
    help="The token credentials (oauth_token) a user granted the consumer; without it, a "
    "two-legged request (the consumer alone: routes with oauth1_two_legged = true).",
)
@click.option(
    "--secrets-stdin",
    is_flag=True,
    help="HMAC-SHA1, HMAC-SHA256, PLAINTEXT: read the secrets from stdin's first line, "
    "'CONSUMER_SECRET&TOKEN_SECRET' ('CONSUMER_SECRET&' or 'CONSUMER_SECRET' without --token; "
    "asked without echo on a terminal). That line is exactly RFC 5849's HMAC key (§3.4.2) and "
    "PLAINTEXT signature (§3.4.4): each secret percent-encoded, which leaves restguard's "
    "secrets as printed.",
)
@click.option(
    "--private-key",
    metavar="PEM",
    help="RSA-SHA1: the path of the consumer's PEM RSA private key (unencrypted); the "
    "method follows from it.",
)
@click.option(
    "--signature-method",
    type=click.Choice(SIGNATURE_METHODS),
    default=None,
    help="HMAC-SHA1 (default with --secrets-stdin), HMAC-SHA256, PLAINTEXT (https:// URLs "
    "only: it sends the secrets themselves), or RSA-SHA1 (with --private-key).",
)
@click.option(
    "-X", "--request", "method", metavar="METHOD", default=None,
    help="The method (default GET, or POST with a body).",
)  # fmt: skip
@click.option(
    "-H", "--header", "headers", multiple=True, callback=_header, metavar="'Name: value'",
    help="A header to send; repeat for more. Headers are not signed (RFC 5849 §3.4.1).",
)  # fmt: skip
@click.option(
    "-d",
    "--data",
    help="The body, as text (sent as its UTF-8 bytes). Without a Content-Type header it is "
    "sent as application/x-www-form-urlencoded, like curl's, and its parameters are signed; "
    "with another Content-Type (-H) it is sent as it is, not signed.",
)
@click.option(
    "--data-file",
    type=click.Path(dir_okay=False, exists=True),
    help="The body, read from this file byte for byte; signed or not as with -d.",
)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the request's headers (signature included, but a PLAINTEXT one hidden); send "
    "nothing.",
)
@config_option
@json_option
def oauth1_sign(
    url: str,
    consumer_key: str,
    token: str | None,
    secrets_stdin: bool,
    private_key: str | None,
    signature_method: str | None,
    method: str | None,
    headers: list[tuple[str, str]],
    data: str | None,
    data_file: str | None,
    timeout: float,
    dry_run: bool,
    config: str | None,
    as_json: bool,
) -> None:
    """Sign a request as an OAuth 1.0a consumer (RFC 5849) and send it; print the answer like
    'curl -i'.

    Sent in an 'Authorization: OAuth' header (§3.5.1) with a fresh nonce and the current
    timestamp, so each run sends a new signature. Signed (§3.4.1): the method, the URL (scheme,
    host, a non-default port, path), the query parameters and, for a form body, its parameters.
    URL is an http(s) URL, or a path ('/notes/1') sent to the configuration's public_url.

    \b
    Examples:
      printf '%s\\n' "$CONSUMER_SECRET&$TOKEN_SECRET" | restguard oauth1 sign \\
          --consumer-key ck_4f0c9n2k7q1m8x3v5b6z --token rg_ot_... --secrets-stdin \\
          https://api.example.com/notes?limit=5
      restguard oauth1 sign --consumer-key ck_... --token rg_ot_... --secrets-stdin \\
          -d 'text=hi' https://api.example.com/notes < secrets.txt
      restguard oauth1 sign --consumer-key ck_... --private-key private.pem URL  # two-legged

    With --json: {"status", "headers", "body"} (body as text); with --dry-run --json:
    {"method", "url", "headers"}. Exit status 0 whatever the HTTP status; 1 when nothing came
    back; 2 for a usage error (PLAINTEXT to an http:// URL among them).
    """
    if secrets_stdin == (private_key is not None):
        raise click.UsageError(
            "give exactly one of --secrets-stdin (HMAC, PLAINTEXT) or --private-key PEM (RSA-SHA1)"
        )
    if private_key is not None and signature_method not in (None, RSA_SHA1):
        raise click.UsageError(f"--signature-method {signature_method} signs with --secrets-stdin")
    if secrets_stdin and signature_method == RSA_SHA1:
        raise click.UsageError("--signature-method RSA-SHA1 signs with --private-key PEM")
    signature_method = signature_method or (RSA_SHA1 if private_key is not None else HMAC_SHA1)
    if token == "":
        raise click.BadParameter(
            "empty: leave it out for a two-legged request", param_hint="--token"
        )
    body = read_body(data, data_file)
    where = target(url, config, headers)
    if signature_method == PLAINTEXT and where.scheme != "https":
        raise click.UsageError(
            "PLAINTEXT sends the secrets themselves: https:// URLs only (RFC 5849 §3.4.4); "
            "over http use HMAC-SHA1 or HMAC-SHA256"
        )
    content_type = next((v for n, v in headers if n.lower() == "content-type"), None)
    if body is not None and content_type is None:  # curl's default for -d
        headers = [*headers, ("Content-Type", FORM)]
        content_type = FORM
    form = body if body is not None and _is_form(content_type) else None
    if private_key is not None:
        sign = _rsa_signer(private_key)
    else:
        consumer_secret, token_secret = _secrets(token)
        if signature_method == PLAINTEXT:
            signature = plaintext_signature(consumer_secret, token_secret)

            def sign(base_string: str) -> str:
                return signature

        else:

            def sign(base_string: str) -> str:
                return sign_hmac(signature_method, base_string, consumer_secret, token_secret)

    verb = (method or ("POST" if body is not None else "GET")).upper()
    value = _authorization(where, verb, form, sign, consumer_key, signature_method, token)
    sent = [*headers, ("Authorization", value)]
    if dry_run:
        show_request(verb, where.url, where.request_target, _shown(sent, signature_method), as_json)
        return
    send(verb, where.url, sent, body, timeout=timeout, as_json=as_json)


def _authorization(
    where: Target,
    verb: str,
    form: bytes | None,
    sign: Callable[[str], str],
    consumer_key: str,
    signature_method: str,
    token: str | None,
) -> str:
    try:
        return sign_request_with(
            verb,
            where.scheme,
            where.authority,
            where.path,
            where.query.encode("utf-8"),
            form,
            signer=sign,
            consumer_key=consumer_key,
            signature_method=signature_method,
            nonce=random_base62(NONCE_CHARS),
            timestamp=int(time.time()),
            token=token,
        )
    except (OAuthError, ValueError) as exc:  # e.g. an oauth_ parameter already in the query
        raise click.UsageError(f"cannot sign this request with OAuth 1.0a: {exc}") from None
