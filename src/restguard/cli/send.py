"""What ``restguard sign`` (RFC 9421) and ``restguard oauth1 sign`` (RFC 5849) share: reading
the request from the command line (headers, the body, the URL) and sending it like ``curl -i``.

The request is sent with the standard library (``urllib``, once, no redirect followed: a
signature would not fit the new request), so both commands run on a base install, without the
client extra's httpx.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, NamedTuple

import click

from restguard.cli.context import settings_from
from restguard.cli.output import emit_json
from restguard.credentials.apps import MAX_PEM_BYTES

MAX_DATA_FILE_BYTES = 64 * 1024 * 1024

HeaderCallback = Callable[[click.Context, click.Parameter, tuple[str, ...]], list[tuple[str, str]]]


def header_callback(reserved: Collection[str], set_by: str) -> HeaderCallback:
    """A click callback for ``-H 'Name: value'`` (repeatable): ``(name, value)`` pairs; a name
    in ``reserved`` (lower case) is refused: it is set ``set_by`` the command."""

    def parse(
        ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
    ) -> list[tuple[str, str]]:
        headers = []
        for value in values:
            name, sep, field_value = value.partition(":")
            if not sep or not name.strip() or name != name.strip():
                raise click.BadParameter(f"{value!r} is not 'Name: value'", ctx, param)
            if name.lower() in reserved:
                raise click.BadParameter(f"{name} is set by {set_by}", ctx, param)
            headers.append((name, field_value.strip()))
        return headers

    return parse


def read_body(data: str | None, data_file: str | None) -> bytes | None:
    """The body of ``-d/--data`` (its UTF-8 bytes) or ``--data-file`` (byte for byte, at most
    64 MiB); ``None`` without either."""
    if data is not None and data_file is not None:
        raise click.UsageError("give one of -d/--data and --data-file")
    if data is not None:
        return data.encode("utf-8")
    if data_file is None:
        return None
    with Path(data_file).open("rb") as f:
        body = f.read(MAX_DATA_FILE_BYTES + 1)
    if len(body) > MAX_DATA_FILE_BYTES:
        raise click.BadParameter("over 64 MiB", param_hint="--data-file")
    return body


class Target(NamedTuple):
    """Where a request goes, split the way a signature covers it."""

    url: str
    scheme: str
    authority: str  # the Host header's value if given, else the URL's host[:port]
    path: str  # as in the URL (still percent-encoded); "/" when empty
    query: str  # as in the URL, without "?"

    @property
    def request_target(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")


def target(url: str, config: str | None, headers: list[tuple[str, str]]) -> Target:
    """``url`` (an http(s) URL, or a path sent to the configuration's public_url), split."""
    if not url.startswith(("http://", "https://")):
        if not url.startswith("/"):
            raise click.BadParameter(
                "an http(s) URL, or a path sent to public_url", param_hint="URL"
            )
        url = settings_from(config).server.public_url.rstrip("/") + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="URL")
    authority = next(
        (v for n, v in headers if n.lower() == "host"), parts.netloc.rpartition("@")[2]
    )
    return Target(url, parts.scheme, authority, parts.path or "/", parts.query)


def show_request(
    verb: str, url: str, request_target: str, fields: list[tuple[str, str]], as_json: bool
) -> None:
    """``--dry-run``: the request line and headers, or ``{"method", "url", "headers"}``."""
    if as_json:
        emit_json({"method": verb, "url": url, "headers": dict(fields)})
        return
    click.echo(f"{verb} {request_target} HTTP/1.1")
    for name, value in fields:
        click.echo(f"{name}: {value}")


def send(
    verb: str,
    url: str,
    fields: list[tuple[str, str]],
    body: bytes | None,
    *,
    timeout: float,
    as_json: bool,
) -> None:
    """Send the request once (no redirect followed) and print the answer like ``curl -i``, or
    as ``{"status", "headers", "body"}``; a 4xx or 5xx is an answer too. Nothing back:
    ``ClickException`` (exit status 1)."""
    # (an http(s) URL only: ``target`` checked it)
    request = urllib.request.Request(url, data=body or None, method=verb)  # noqa: S310
    for name, value in fields:
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            status, reason, version = answer.status, answer.reason, answer.version
            answer_headers, content = answer.headers.items(), answer.read()
    except urllib.error.HTTPError as answer:  # 4xx and 5xx: still the answer
        status, reason, version = answer.code, answer.reason, 11
        answer_headers, content = answer.headers.items(), answer.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise click.ClickException(f"{verb} {url}: {exc}") from None
    _show_response(status, reason, version, answer_headers, content, as_json)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is shown, not followed: its signature would not fit the new request."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


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


def load_private_key(path: str, client: str) -> Any:
    """The unencrypted PEM private key at ``path`` (``--private-key``), read capped; a
    ``click.BadParameter`` that never quotes the file otherwise (``client`` is the Python class
    to use for an encrypted key)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    hint = "--private-key"
    try:
        with Path(path).open("rb") as f:
            pem = f.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path} ({exc.strerror or exc})", param_hint=hint
        ) from None
    try:
        return load_pem_private_key(pem, password=None)
    except TypeError:
        raise click.BadParameter(
            f"{path} is encrypted; write an unencrypted copy for this command "
            f"('openssl pkey -in KEY -out plain.pem') or use {client}",
            param_hint=hint,
        ) from None
    except ValueError:
        raise click.BadParameter(
            f"{path} is not a PEM private key ('-----BEGIN PRIVATE KEY-----')", param_hint=hint
        ) from None
