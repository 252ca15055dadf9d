"""Header hygiene: what crosses the gateway (CONTRACT "What the upstream receives").

``upstream_head`` builds the request head the upstream gets: exactly the judged path, hop-by-hop
fields and what ``Connection`` names removed (except headers restguard relies on: naming those
is ignored), the client-address and scheme family removed unless a trusted proxy sent it,
restguard credentials removed (unless the route forwards them), ``X-Forwarded-*`` and the
identity block added (``X-Forwarded-Proto``: ``https`` for a request that came over TLS).
Names arrive clean (``edge.view``: ``[0-9a-z-]`` only, no client-sent
``X-Restguard-*``). ``client_head`` builds the answer's head for the client with its own framing.
"""

from __future__ import annotations

from restguard.guard import Decision
from restguard.types import RequestView

# RFC 9110 §7.6.1 hop-by-hop fields and the proxy-* ones (§11.7): never forwarded either way.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)
# Request fields restguard sets itself for the upstream connection (framing, Host, Expect).
_REQUEST_DROP = HOP_BY_HOP | {b"expect", b"host", b"content-length"}
# Claims about the client's address, scheme, host or original URL that frameworks believe
# (Rack reads X-Forwarded-Ssl: on as HTTPS, Spring builds URLs from X-Forwarded-Prefix ...):
# every X-Forwarded-* plus these, removed unless the peer is a trusted proxy. restguard sets
# X-Forwarded-For, -Proto and -Host itself.
FORWARDED_PREFIX = b"x-forwarded-"
FORWARDED_FAMILY = frozenset(
    {
        b"forwarded",
        b"x-real-ip",
        b"true-client-ip",
        b"x-client-ip",
        b"client-ip",
        b"cf-connecting-ip",
        b"x-cluster-client-ip",
        b"fastly-client-ip",
        b"x-url-scheme",
        b"x-scheme",
        b"x-original-uri",
        b"x-original-host",
        b"x-host",
        b"front-end-https",
        b"x-original-forwarded-for",
        b"x-proxyuser-ip",
        # path-prefix claims: apps strip or prepend them to the path they route (Flask's
        # ReverseProxied snippet, Werkzeug/WSGI SCRIPT_NAME, Envoy, Traefik, IIS ARR)
        b"x-script-name",
        b"script-name",
        b"x-original-path",
        b"x-envoy-original-path",
        b"x-replaced-path",
        b"x-ingress-path",
        b"x-request-uri",
    }
)
_SET_BY_RESTGUARD = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})
# Headers restguard relies on: a client's ``Connection`` naming one is ignored for it, so the
# upstream sees what was judged (RFC 9110 §7.6.1 lets a proxy drop what Connection names).
PROTECTED_HEADERS = frozenset(
    {
        b"authorization",
        b"x-api-key",
        b"signature",
        b"signature-input",
        b"content-digest",
        b"host",
        b"content-length",
        b"content-type",
        b"cookie",
    }
)
_RESPONSE_DROP = HOP_BY_HOP | {b"content-length"}
# ... and the upstream's own X-Request-Id where restguard sends the request's (client_head)
_RESPONSE_DROP_AND_ID = _RESPONSE_DROP | {b"x-request-id"}
# RFC 9110 §6.4.1: 204 and 304 answers never carry content.
_NO_BODY_STATUS = frozenset({204, 304})


def _connection_tokens(
    headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]],
) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            value = value.lower()
            if b"," in value:
                tokens.update(t.strip(b" \t") for t in value.split(b","))
            else:  # (most say one word: no generator)
                tokens.add(value.strip(b" \t"))
    return tokens


def upstream_head(
    view: RequestView,
    decision: Decision,
    *,
    upstream_host: bytes,
    identity: bytes,
    content_length: int | None,
    chunked: bool,
    trace: bytes = b"",
) -> bytes:
    """The request line and header block sent to the upstream. ``trace``: the request span's
    ``traceparent`` lines (``restguard.tracing``), in place of the client's."""
    tokens = _connection_tokens(view.headers)
    if tokens:
        tokens -= PROTECTED_HEADERS
    drop = () if decision.route.forward_credentials else decision.credential_headers
    trusted = view.via_trusted_proxy
    target = view.path.encode("ascii") + (b"?" + view.query if view.query else b"")
    lines = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (view.method.encode(), target, upstream_host)]
    host = b""
    # RFC 9110 §4.2: the scheme the client used; a trusted proxy's claim for its own client wins.
    proto = b"https" if view.scheme == "https" else b"http"
    for name, value in view.headers:
        if name == b"host":
            host = value
        if (
            name in _REQUEST_DROP
            or name in tokens
            or name.startswith((b"x-restguard-", b"proxy-"))
            or name in drop
            or name == b"x-request-id"  # (restguard's own follows: a trusted proxy's kept)
            or (trace and name in (b"traceparent", b"tracestate"))
        ):
            continue
        if (name.startswith(FORWARDED_PREFIX) or name in FORWARDED_FAMILY) and (
            not trusted or name in _SET_BY_RESTGUARD
        ):
            # restguard's own X-Forwarded-* take a trusted proxy's scheme and host into account
            if trusted and name == b"x-forwarded-proto" and value in (b"http", b"https"):
                proto = value
            elif trusted and name == b"x-forwarded-host" and value:
                host = value
            continue
        lines.append(b"%s: %s\r\n" % (name, value))
    client = view.client.encode()
    lines.append(b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\n" % (client, proto))
    if host:
        lines.append(b"x-forwarded-host: %s\r\n" % host)
    if view.request_id:
        lines.append(b"x-request-id: %s\r\n" % view.request_id.encode("ascii"))
    if trace:
        lines.append(trace)
    lines.append(identity)
    if chunked:
        lines.append(b"transfer-encoding: chunked\r\n")
    elif content_length is not None:
        lines.append(b"content-length: %d\r\n" % content_length)
    lines.append(b"\r\n")
    return b"".join(lines)


def client_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    no_body: bool,
    http_11: bool,
    request_id: bytes = b"",
    rate: tuple[tuple[str, str], ...] = (),
) -> tuple[list[bytes], str]:
    """The status line and header lines for the client (without ``Connection`` and the blank
    line), and how the body is framed: "length", "chunked", "close" or "none". With
    ``request_id``, the answer carries it as ``X-Request-Id`` (in place of any the upstream
    sent); with ``rate``, the route's ``RateLimit-*`` fields in place of any ``ratelimit*``
    field the upstream sent (the client is limited by the gateway's count)."""
    tokens = _connection_tokens(headers)
    out = [b"HTTP/1.1 %d %s\r\n" % (status, reason or b"-")]
    drop = _RESPONSE_DROP
    if request_id:
        out.append(b"x-request-id: %s\r\n" % request_id)
        drop = _RESPONSE_DROP_AND_ID
    if rate:
        out.append("".join([f"{name}: {value}\r\n" for name, value in rate]).encode("ascii"))
    length: bytes | None = None
    upstream_chunked = False
    for name, value in headers:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            upstream_chunked = True
        elif name not in drop and name not in tokens:
            if rate and name.startswith(b"ratelimit"):
                continue
            out.append(b"%s: %s\r\n" % (name, value))
    no_body = no_body or status in _NO_BODY_STATUS
    if length is not None and (no_body or not upstream_chunked):
        out.append(b"content-length: %s\r\n" % length)
        return out, "none" if no_body else "length"
    if no_body:
        return out, "none"
    if http_11:
        out.append(b"transfer-encoding: chunked\r\n")
        return out, "chunked"
    return out, "close"
