"""The bounded HTTP client that fetches one external issuer's JWK Set (issue 8, item 2).

Choice of client: the standard library's asyncio streams and ``ssl`` for the connection, and
httptools (llhttp, already a runtime dependency: the gateway's own parser) for the response.
No new dependency: httpx is only a test/client extra, aiohttp is not installed, and a JWKS GET
needs none of their features (pooling, redirects, cookies, proxies) -- every one of which would
be a thing to turn off. llhttp does the framing (Content-Length, chunked) so no hand-written
HTTP parsing is involved; this module only decides what to accept.

The bounds, each refused as ``JWKSFetchError`` (the cache keeps its keys, see ``jwks.py``):

* ``https://`` only, unless the host is loopback (127.0.0.0/8, ::1, ``localhost``): checked
  when the endpoint is built (``JWKSEndpoint.parse``), so a bad URL is a configuration error.
  No userinfo, no fragment. TLS is ``ssl.create_default_context()`` (the system store, or
  ``ca_file`` alone when given), certificate and host name always verified, TLS 1.2 at least.
* One deadline: ``connect_timeout`` for the TCP+TLS handshake, ``timeout`` for the whole GET.
* ``max_bytes`` of body, counted as llhttp hands the body over (after de-chunking), never
  trusting Content-Length; the head is capped at ``MAX_HEAD_BYTES``.
* No redirect is followed (a 3xx is a failure): following none is the simplest way never to be
  sent to another host. Only a 200 is accepted.
* The body must be ``application/json``, ``application/jwk-set+json`` or another
  ``application/*+json``, UTF-8 JSON without duplicate member names, and a JWK Set with at least
  one usable key (``KeySet.from_jwks``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httptools

from restguard.keys.jose import STRICT_JSON, UnusableKey
from restguard.keys.jwk import KeySet

DEFAULT_TIMEOUT: Final = 2.0  # seconds, the whole GET
DEFAULT_MAX_BYTES: Final = 256 * 1024
MAX_HEAD_BYTES: Final = 16 * 1024
MAX_HEADERS: Final = 100
_READ_CHUNK: Final = 16 * 1024

__all__ = [
    "FetchedJWKS",
    "JWKSEndpoint",
    "JWKSFetchError",
    "fetch_jwks",
    "is_loopback",
    "tls_context",
]


class JWKSFetchError(Exception):
    """A fetch that produced no key set: the reason, for the log."""


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class JWKSEndpoint:
    """A checked JWKS URI: where to connect and what to ask for."""

    url: str
    https: bool
    host: str
    port: int
    target: str  # path and query, as sent in the request line

    @classmethod
    def parse(cls, url: str) -> JWKSEndpoint:
        """Raises ``ValueError`` for a URL restguard will not fetch keys from."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise ValueError(f"JWKS URI {url!r} is not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            raise ValueError(f"JWKS URI {url!r}: only https:// (or http:// to loopback)")
        if not host:
            raise ValueError(f"JWKS URI {url!r} has no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"JWKS URI {url!r} must not carry credentials")
        if parts.fragment:
            raise ValueError(f"JWKS URI {url!r} must not have a fragment")
        if scheme == "http" and not is_loopback(host):
            raise ValueError(
                f"JWKS URI {url!r}: keys from a non-loopback host must come over https://"
            )
        if any(c <= " " or c == "\x7f" for c in url):
            raise ValueError(f"JWKS URI {url!r} contains whitespace or control characters")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        https = scheme == "https"
        return cls(url, https, host, port or (443 if https else 80), target)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.https else 80
        return host if self.port == default else f"{host}:{self.port}"


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The client context: verification always on; ``ca_file`` replaces the system store."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@dataclass(frozen=True, slots=True)
class FetchedJWKS:
    keys: KeySet
    cache_control: str | None


def _json_media_type(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def parse_jwks(body: bytes, content_type: str | None) -> KeySet:
    """The usable keys of a 200 answer's body; ``JWKSFetchError`` otherwise."""
    if not _json_media_type(content_type):
        raise JWKSFetchError(f"content type {content_type!r} is not JSON")
    try:
        document = STRICT_JSON.decode(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise JWKSFetchError(f"body is not valid JSON: {exc}") from None
    try:
        keys = KeySet.from_jwks(document)
    except UnusableKey as exc:
        raise JWKSFetchError(f"not a usable JWK Set: {exc}") from None
    if not keys.keys:
        raise JWKSFetchError(f"the JWK Set has no usable key ({'; '.join(keys.skipped)})")
    return keys


class _TooLarge(Exception):
    pass


class _Response:
    """httptools callbacks: one response, bounded."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.header_count = 0
        self.body = bytearray()
        self.head_done = False
        self.complete = False
        self.framed = False  # Content-Length or Transfer-Encoding: not close-delimited

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > MAX_HEADERS:
            raise _TooLarge("too many response header fields")
        key = name.lower()
        self.headers[key] = self.headers[key] + b", " + value if key in self.headers else value

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.framed = b"content-length" in self.headers or b"transfer-encoding" in self.headers

    def on_body(self, body: bytes) -> None:
        if len(self.body) + len(body) > self.max_bytes:
            raise _TooLarge(f"body larger than {self.max_bytes} bytes")
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")


async def _get(
    endpoint: JWKSEndpoint,
    ssl_context: ssl.SSLContext | None,
    connect_timeout: float,
    max_bytes: int,
) -> _Response:
    async with asyncio.timeout(connect_timeout):
        reader, writer = await asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=ssl_context if endpoint.https else None,
            server_hostname=endpoint.host if endpoint.https else None,
        )
    try:
        request = (
            f"GET {endpoint.target} HTTP/1.1\r\nHost: {endpoint.host_header}\r\n"
            "Accept: application/jwk-set+json, application/json\r\n"
            "Accept-Encoding: identity\r\nUser-Agent: restguard\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        response = _Response(max_bytes)
        parser = httptools.HttpResponseParser(response)
        head_bytes = 0
        while not response.complete:
            data = await reader.read(_READ_CHUNK)
            if not data:
                if response.head_done and not response.framed:
                    break  # RFC 9112 §6.3 (8): a close-delimited body ends here
                raise JWKSFetchError("the server closed the connection mid-answer")
            if not response.head_done:
                head_bytes += len(data)
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                raise JWKSFetchError("the server switched protocols") from None
            except httptools.HttpParserCallbackError as exc:
                cause = exc.__context__
                if isinstance(cause, _TooLarge):
                    raise JWKSFetchError(str(cause)) from None
                raise JWKSFetchError(f"malformed response: {exc}") from None
            except httptools.HttpParserError as exc:
                raise JWKSFetchError(f"malformed response: {exc}") from None
            if not response.head_done and head_bytes > MAX_HEAD_BYTES:
                raise JWKSFetchError("response head too large")
        response.status = parser.get_status_code()
        return response
    finally:
        writer.close()


async def fetch_jwks(
    endpoint: JWKSEndpoint,
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> FetchedJWKS:
    """GET the JWK Set once, within the bounds above. Raises ``JWKSFetchError``."""
    if endpoint.https and ssl_context is None:
        ssl_context = tls_context()
    try:
        async with asyncio.timeout(timeout):
            response = await _get(
                endpoint, ssl_context, min(connect_timeout or timeout, timeout), max_bytes
            )
    except TimeoutError:
        raise JWKSFetchError(f"no complete answer within {timeout:g} s") from None
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        raise JWKSFetchError(f"TLS failed: {exc}") from None
    except OSError as exc:
        raise JWKSFetchError(f"connection failed: {exc}") from None
    status = response.status
    if 300 <= status < 400:
        raise JWKSFetchError(f"status {status}: redirects are not followed")
    if status != 200:
        raise JWKSFetchError(f"status {status}, not 200")
    if response.header(b"content-encoding") not in (None, "identity"):
        raise JWKSFetchError("a content-coded body (only identity is accepted)")
    keys = parse_jwks(bytes(response.body), response.header(b"content-type"))
    return FetchedJWKS(keys, response.header(b"cache-control"))
