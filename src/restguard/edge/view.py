"""ASGI scope -> RequestView: the one translation from a server's request to the core's view."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from restguard.authz.paths import normalise_path, split_target
from restguard.errors import HeadersTooLarge, InvalidRequest
from restguard.types import RequestView

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RAW_TARGET_KEY = "restguard.raw_target"


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


def view_from_scope(
    scope: Mapping[str, Any],
    *,
    trusted_proxies: Sequence[Network] = (),
    max_header_bytes: int = 16 * 1024,
) -> RequestView:
    """Build the core's view of an ASGI HTTP request; raise InvalidRequest on ambiguity."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    size = 0
    for name, value in headers:
        size += len(name) + len(value) + 4
    if size > max_header_bytes:
        raise HeadersTooLarge(debug=f"{size} header bytes")
    target = scope.get(RAW_TARGET_KEY)
    if target is not None:
        raw_path, query = split_target(target)
    else:
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        query = scope.get("query_string", b"")
        if b"?" in raw_path:
            raise InvalidRequest("The request path is not acceptable.", debug="? in raw_path")
        raw_path, _ = split_target(raw_path)
        _, query = split_target(b"/?" + query) if query else (b"", b"")
    client = scope.get("client")
    peer = client[0] if client else ""
    return RequestView(
        method=scope["method"],
        path=normalise_path(raw_path),
        query=query,
        headers=tuple(headers),
        client=client_address(peer, headers, trusted_proxies),
    )
