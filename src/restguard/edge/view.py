"""Raw request parts (or an ASGI scope) -> RequestView: the one translation to the core's view.

Header names are the first thing judged. nginx drops names with anything but letters, digits
and ``-`` by default (``ignore_invalid_headers``, ``underscores_in_headers off``); restguard does
the same, before the decision, because CGI/WSGI upstreams fold ``X_Restguard_Subject``,
``X-Restguard_Subject`` and ``X-Restguard-Subject`` into one ``HTTP_X_RESTGUARD_SUBJECT``. Every
rule on names after that sees only ``[0-9a-z-]`` names. Client-sent ``X-Restguard-*`` headers
are removed here too (CONTRACT: removed, not refused): only restguard sets them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote

from restguard.authz.paths import normalise_path, split_target
from restguard.errors import HeadersTooLarge, InvalidRequest
from restguard.types import RequestView

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RAW_TARGET_KEY = "restguard.raw_target"
# RFC 9110 §7.2: Host = uri-host [ ":" port ]; uri-host = IP-literal / IPv4address / reg-name.
_HOST = re.compile(rb"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$")


IDENTITY_PREFIX = b"x-restguard-"
_NAME_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"


def valid_header_name(name: bytes) -> bool:
    """Letters, digits and ``-`` only (nginx's default rule)."""
    return bool(name) and not name.translate(None, _NAME_CHARS)


def clean_headers(headers: Sequence[tuple[bytes, bytes]]) -> Sequence[tuple[bytes, bytes]]:
    """``headers`` with lower-cased names, less invalid names and client-sent identity headers."""
    names = [name for name, _ in headers]
    joined = b"".join(names)
    if (
        not joined.translate(None, _NAME_CHARS)
        and joined.islower()
        and IDENTITY_PREFIX not in joined
        and b"" not in names
    ):
        return headers  # the common case, judged with a few C calls
    out = []
    for name, value in headers:
        if name.translate(None, _NAME_CHARS) or not name:
            continue
        name = name.lower()
        if name.startswith(IDENTITY_PREFIX):
            continue
        out.append((name, value))
    return out


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


def from_trusted_proxy(peer: str, proxies: Sequence[Network]) -> bool:
    """Whether ``peer`` is one of ``[server] trusted_proxies``."""
    return bool(proxies) and _trusted(peer, proxies)


def client_address(
    peer: str, headers: Sequence[tuple[bytes, bytes]], proxies: Sequence[Network]
) -> str:
    """The client address: the peer, or, when the peer is a trusted proxy, the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy."""
    if not proxies or not _trusted(peer, proxies):
        return peer
    return _forwarded_client(peer, headers, proxies)


def _forwarded_client(
    peer: str, headers: Sequence[tuple[bytes, bytes]], proxies: Sequence[Network]
) -> str:
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


#: A request id taken from a trusted proxy: what common proxies and tracers send (UUIDs,
#: hex, W3C trace ids, ``host/counter``), nothing that could split or bloat a log line.
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")


def request_id(headers: Sequence[tuple[bytes, bytes]], trusted: bool) -> str:
    """The request's id: the one ``X-Request-Id`` a trusted proxy sent, when it is well formed;
    else a new one (16 random bytes, hex). A client's own is never taken: ids in the audit log
    and at the upstream must not be a stranger's choice."""
    if trusted:
        sent = [v for k, v in headers if k == b"x-request-id"]
        if len(sent) == 1 and _REQUEST_ID.fullmatch(sent[0]):
            return sent[0].decode("ascii")
    return next(_fresh_ids, None) or _refill_ids()


_fresh_ids: Iterator[str] = iter(())


def _refill_ids() -> str:
    """Another 256 ids from one ``os.urandom`` call (one syscall per request cost ~0.4 us;
    ``next`` on a list's iterator hands each out once, whichever thread asks)."""
    global _fresh_ids
    block = os.urandom(16 * 256)
    _fresh_ids = iter([block[i : i + 16].hex() for i in range(16, len(block), 16)])
    return block[:16].hex()


def _forget_ids() -> None:
    """In a forked child: the pool is the parent's (its next ids, in the same order), so it
    is dropped; the child draws its own from ``os.urandom``."""
    global _fresh_ids
    _fresh_ids = iter(())


if hasattr(os, "register_at_fork"):  # (not on Windows, which does not fork)
    os.register_at_fork(after_in_child=_forget_ids)


#: Targets seen lately -> (raw path, query, path), for ``refuse_dot_segments`` off and on:
#: splitting and normalising cost ~0.7 us per request, a lookup ~0.05. Only targets that
#: passed, of at most ``_REMEMBERED_TARGET_BYTES`` (one entry is at most ~1.2 KB, the cache
#: at most ~5 MB), and it is emptied when full, so a stream of distinct targets costs what it
#: did without it.
_targets: tuple[dict[bytes, tuple[bytes, bytes, str]], dict[bytes, tuple[bytes, bytes, str]]] = (
    {},
    {},
)
_REMEMBERED_TARGETS = 4096
_REMEMBERED_TARGET_BYTES = 256


def _split_and_normalise(target: bytes, refuse_dot_segments: bool) -> tuple[bytes, bytes, str]:
    seen = _targets[refuse_dot_segments]
    known = seen.get(target)
    if known is not None:
        return known
    raw_path, query = split_target(target)
    known = (raw_path, query, normalise_path(raw_path, refuse_dot_segments=refuse_dot_segments))
    if len(target) <= _REMEMBERED_TARGET_BYTES:
        if len(seen) >= _REMEMBERED_TARGETS:
            seen.clear()
        seen[target] = known
    return known


def build_view(
    method: str,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    http_version: str = "1.1",
    peer: str = "",
    trusted_proxies: Sequence[Network] = (),
    max_header_bytes: int | None = 16 * 1024,
    refuse_dot_segments: bool = False,
    scheme: str = "http",
    body: bytes | None = None,
) -> RequestView:
    """The core's view of a request from its raw parts (the raw request target); raise
    InvalidRequest (or a subclass) on anything ambiguous. ``max_header_bytes=None``: the
    server already capped the header block while parsing. ``scheme``: ``https`` when the
    request came over TLS. ``body``: the body when it is known already (None: not read)."""
    if max_header_bytes is not None:
        size = sum(len(name) + len(value) + 4 for name, value in headers)
        if size > max_header_bytes:
            raise HeadersTooLarge(debug=f"{size} header bytes")
    kept = clean_headers(headers)
    check_framing(http_version, kept)
    raw_path, query, path = _split_and_normalise(target, refuse_dot_segments)
    trusted = bool(trusted_proxies) and _trusted(peer, trusted_proxies)
    return RequestView(  # (positional: keyword arguments cost ~0.2 us more)
        method,
        path,
        query,
        tuple(kept),
        _forwarded_client(peer, kept, trusted_proxies) if trusted else peer,
        trusted,
        "https" if scheme == "https" else "http",
        raw_path,
        body,
        request_id(kept, trusted),
    )


def view_from_scope(
    scope: Mapping[str, Any],
    *,
    trusted_proxies: Sequence[Network] = (),
    max_header_bytes: int = 16 * 1024,
) -> RequestView:
    """Build the core's view of an ASGI HTTP request; raise InvalidRequest on ambiguity.

    The app behind routes on ``scope["path"]`` less ``root_path``, as the server decoded it,
    not on a normalised path, so the guard judges exactly that (``route_path``): dot segments
    are refused rather than resolved, and a ``raw_path`` that does not decode to the same path
    is refused. (Whether ``raw_path`` includes ``root_path`` differs between servers: uvicorn
    adds it, hypercorn, daphne and httpx's ASGITransport do not; either is accepted.)"""
    target = scope.get(RAW_TARGET_KEY)
    if target is None:
        path: str = scope["path"]
        route = route_path(path, scope.get("root_path", ""))
        raw_path = scope.get("raw_path")
        if raw_path is not None:
            # The raw form is checked for what decoding hides (encoded slashes, dots, NUL ...)
            # and must say the same as ``path``, with or without ``root_path`` (servers differ).
            if b"?" in raw_path or not _same_path(raw_path, path, route):
                raise InvalidRequest(
                    "The request path is not acceptable.",
                    debug="raw_path does not decode to path",
                )
            normalise_path(raw_path, refuse_dot_segments=True)
        # What the app routes on, re-encoded for the normaliser (which keeps the encodings).
        query = scope.get("query_string", b"")
        target = quote(route, safe="/!$&'()*+,=:@~").encode("ascii")
        target += b"?" + query if query else b""
    client = scope.get("client")
    return build_view(
        scope["method"],
        target,
        scope["headers"],
        http_version=str(scope.get("http_version", "1.1")),
        peer=client[0] if client else "",
        trusted_proxies=trusted_proxies,
        max_header_bytes=max_header_bytes,
        refuse_dot_segments=True,
        scheme="https" if scope.get("scheme") in ("https", "wss") else "http",
    )


def route_path(path: str, root_path: str) -> str:
    """The path an ASGI app routes on: ``path`` less ``root_path`` where it starts with it at a
    segment boundary (Starlette's ``get_route_path``; Django's ``script_name`` likewise)."""
    if root_path and path.startswith(root_path):
        rest = path[len(root_path) :]
        if rest == "":
            return "/"
        if rest.startswith("/"):
            return rest
    return path


def _same_path(raw_path: bytes, path: str, route: str) -> bool:
    try:
        decoded = unquote(raw_path.decode("ascii"), errors="strict")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return False
    return decoded in (path, route)
