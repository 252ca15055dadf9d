"""ASGI scope -> RequestView: the one translation from a server's request to the core's view."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from restguard.authz.paths import normalise_path, split_target
from restguard.errors import HeadersTooLarge, InvalidRequest
from restguard.types import RequestView

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RAW_TARGET_KEY = "restguard.raw_target"
# RFC 9110 §7.2: Host = uri-host [ ":" port ]; uri-host = IP-literal / IPv4address / reg-name.
_HOST = re.compile(rb"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$")


def check_framing(http_version: str, headers: Sequence[tuple[bytes, bytes]]) -> None:
    """Refuse the Host and message-framing forms RFC 9112 requires a server to refuse, so the
    upstream never has to guess which host or which body was meant."""
    hosts = [v for k, v in headers if k == b"host"]
    # RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
    # request message that lacks a Host header field and to any that contains more than one Host
    # header line or a Host header field with an invalid field value."
    if len(hosts) > 1 or (http_version == "1.1" and not hosts):
        raise InvalidRequest("Send exactly one Host header.", debug=f"{len(hosts)} Host headers")
    if hosts and not _HOST.match(hosts[0]):
        raise InvalidRequest("The Host header is not valid.", debug="invalid Host value")
    codings = [
        c.strip(b" \t").lower()
        for k, v in headers
        if k == b"transfer-encoding"
        for c in v.split(b",")
    ]
    if not codings:
        return
    close = (("connection", "close"),)
    # RFC 9112 §6.1: a server that receives an HTTP/1.0 message with Transfer-Encoding "MUST
    # treat the message as if the framing is faulty ... and close the connection" (and HTTP/2
    # and HTTP/3 forbid the field: RFC 9113 §8.2.2, RFC 9114 §4.2).
    if http_version != "1.1":
        raise InvalidRequest(
            "Transfer-Encoding is accepted in HTTP/1.1 only.",
            debug=f"TE in HTTP/{http_version}",
            headers=close,
        )
    # RFC 9112 §6.3: with Transfer-Encoding and Content-Length together the server MAY reject,
    # and MUST close the connection afterwards; chunked must be the final coding, or "the server
    # MUST respond with the 400 (Bad Request) status code and then close the connection". Any
    # other coding (gzip, identity ...) would reach the upstream undecoded under a plain
    # "chunked": only exactly "chunked" is accepted (§6.1: unknown codings are refused).
    if codings != [b"chunked"] or any(k == b"content-length" for k, _ in headers):
        raise InvalidRequest(
            "Only 'Transfer-Encoding: chunked' is accepted, without Content-Length.",
            debug=f"transfer codings {codings!r}",
            headers=close,
        )


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(
    peer: str, headers: Sequence[tuple[bytes, bytes]], proxies: Sequence[Network]
) -> str:
    """The client address: the peer, or, when the peer is a trusted proxy, the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy."""
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops: list[str] = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            hops += [h.strip() for h in value.decode("latin-1").split(",")]
    for hop in reversed(hops):
        if not hop:
            raise InvalidRequest("X-Forwarded-For is malformed.", debug="empty XFF hop")
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            raise InvalidRequest("X-Forwarded-For is malformed.", debug="bad XFF hop") from None
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def build_view(
    method: str,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    http_version: str = "1.1",
    peer: str = "",
    trusted_proxies: Sequence[Network] = (),
    max_header_bytes: int | None = 16 * 1024,
) -> RequestView:
    """The core's view of a request from its raw parts (lower-cased header names, the raw
    request target); raise InvalidRequest (or a subclass) on anything ambiguous.
    ``max_header_bytes=None``: the server already capped the header block while parsing."""
    if max_header_bytes is not None:
        size = sum(len(name) + len(value) + 4 for name, value in headers)
        if size > max_header_bytes:
            raise HeadersTooLarge(debug=f"{size} header bytes")
    check_framing(http_version, headers)
    raw_path, query = split_target(target)
    return RequestView(
        method=method,
        path=normalise_path(raw_path),
        query=query,
        headers=tuple(headers),
        client=client_address(peer, headers, trusted_proxies),
    )


def view_from_scope(
    scope: Mapping[str, Any],
    *,
    trusted_proxies: Sequence[Network] = (),
    max_header_bytes: int = 16 * 1024,
) -> RequestView:
    """Build the core's view of an ASGI HTTP request; raise InvalidRequest on ambiguity."""
    target = scope.get(RAW_TARGET_KEY)
    if target is None:
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        if b"?" in raw_path:
            raise InvalidRequest("The request path is not acceptable.", debug="? in raw_path")
        query = scope.get("query_string", b"")
        target = raw_path + (b"?" + query if query else b"")
    client = scope.get("client")
    return build_view(
        scope["method"],
        target,
        scope["headers"],
        http_version=str(scope.get("http_version", "1.1")),
        peer=client[0] if client else "",
        trusted_proxies=trusted_proxies,
        max_header_bytes=max_header_bytes,
    )
