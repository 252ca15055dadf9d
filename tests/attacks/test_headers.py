"""Header attacks: forged identity, Connection games, hop-by-hop leakage, spoofed client
addresses, oversized and malformed header blocks, Host confusion."""

from __future__ import annotations

import jwt
import pytest

from tests.attacks.conftest import Keys
from tests.attacks.wire import (
    api_key,
    assert_forwarded,
    assert_json_error,
    assert_refused,
    request,
    send,
)
from tests.harness import GatewayProcess, Received

# --- forged identity headers ----------------------------------------------------------------------


IDENTITY_FORGERIES = [
    (b"X-Restguard-Subject", b"admin"),
    (b"X-Restguard-Identity", b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."),
    (b"x-ReStGuArD-scopes", b"notes:write admin"),
    (b"X-Restguard-Client-Id", b"root"),
    (b"X-Restguard-Auth-Method", b"oauth2"),
]


def assert_identity_is_restguards(seen: Received, keys: Keys) -> None:
    """The identity block the upstream got is restguard's own, once, for the "reader" key."""
    assert seen.header("X-Restguard-Subject") == "reader"
    assert seen.header("X-Restguard-Client-Id") == keys.reader_id
    assert seen.header("X-Restguard-Scopes") == "notes:read"
    assert seen.header("X-Restguard-Auth-Method") == "api_key"
    token = seen.header("X-Restguard-Identity")
    assert token and jwt.get_unverified_header(token)["alg"] == "EdDSA"


@pytest.mark.parametrize(
    "header",
    IDENTITY_FORGERIES,
    ids=["subject", "identity", "mixed-case-scopes", "client-id", "auth-method"],
)
def test_client_sent_identity_header_is_removed(
    gw: GatewayProcess, keys: Keys, header: tuple[bytes, bytes]
) -> None:
    # CONTRACT: a client-sent X-Restguard-* header is removed, not refused: the request is still
    # decided and, if allowed, forwarded without it (chained gateways keep working).
    data = request(b"/notes/1", api_key(keys.reader), header)
    _, seen = assert_forwarded(gw, data, b"/notes/1")
    assert_identity_is_restguards(seen, keys)
    assert header[1] not in [v for _, v in seen.headers]
    # Public route: forwarded, and no X-Restguard-* at all (there is no identity to add).
    _, seen = assert_forwarded(gw, request(b"/public/x", header), b"/public/x")
    assert not {n for n in seen.header_names() if n.startswith("x-restguard-")}
    assert header[1] not in b"".join(v for _, v in seen.headers)
    # Still decided as if it were absent: no credential is 401, a forged scope grants nothing.
    assert_refused(gw, request(b"/notes/1", header), 401, "unauthorized")
    forged_scopes = (b"X-Restguard-Scopes", b"notes:write")
    put = request(
        b"/notes/1",
        api_key(keys.reader),
        header,
        forged_scopes,
        (b"Content-Length", b"2"),
        method=b"PUT",
        body=b"{}",
    )
    assert_refused(gw, put, 403, "insufficient_scope")
    # Twin: the same request without the forged header, the same identity.
    _, seen = assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")
    assert_identity_is_restguards(seen, keys)


def test_public_route_forwards_no_identity(gw: GatewayProcess) -> None:
    _, seen = assert_forwarded(gw, request(b"/public/x"), b"/public/x")
    assert not {n for n in seen.header_names() if n.startswith("x-restguard-")}


# --- Connection games (RFC 9110 §7.6.1) -----------------------------------------------------------


@pytest.mark.parametrize(
    "named",
    [
        b"X-Restguard-Subject",
        b"x-restguard-identity",
        b"authorization",
        b"x-api-key",
        b"X-API-Key",
        b"keep-alive, Authorization",
        b"Host",
        b"Content-Length",
    ],
)
def test_connection_naming_a_protected_header_is_ignored(
    gw: GatewayProcess, keys: Keys, named: bytes
) -> None:
    # CONTRACT: that token is ignored and the request goes on: the credential is still the one
    # decided on, and the identity restguard adds still reaches the upstream.
    data = request(b"/notes/1", api_key(keys.reader), (b"Connection", named))
    _, seen = assert_forwarded(gw, data, b"/notes/1")
    assert_identity_is_restguards(seen, keys)
    assert seen.header("Host")  # restguard's Host for the upstream
    assert seen.header("X-Forwarded-Host") == "gateway.test"
    assert seen.header("X-API-Key") is None  # the used credential is still removed
    assert seen.header("Authorization") is None
    assert (seen.header("Connection") or "keep-alive").lower() in ("keep-alive", "close")
    # Without the credential the same request is decided as unauthenticated.
    assert_refused(gw, request(b"/notes/1", (b"Connection", named)), 401, "unauthorized")
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")


def test_connection_naming_a_protected_header_in_a_second_field(
    gw: GatewayProcess, keys: Keys
) -> None:
    data = request(
        b"/notes/1",
        api_key(keys.reader),
        (b"Connection", b"keep-alive"),
        (b"Connection", b"x-api-key, x-restguard-subject"),
    )
    _, seen = assert_forwarded(gw, data, b"/notes/1")
    assert_identity_is_restguards(seen, keys)
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")


def test_connection_cannot_strip_a_forwarded_credential(gw: GatewayProcess, keys: Keys) -> None:
    # On a forward_credentials route the credential reaches the upstream even when Connection
    # names it: the token is ignored, not obeyed.
    for header, named in (
        (api_key(keys.reader), b"X-API-Key"),
        ((b"Authorization", b"ApiKey " + keys.reader.encode()), b"authorization"),
    ):
        data = request(b"/fwd/x", header, (b"Connection", b"keep-alive, " + named))
        _, seen = assert_forwarded(gw, data, b"/fwd/x")
        assert seen.header(header[0].decode()) == header[1].decode()
        assert seen.header("X-Restguard-Subject") == "reader"
        # Twin: without the Connection header, the same.
        _, seen = assert_forwarded(gw, request(b"/fwd/x", header), b"/fwd/x")
        assert seen.header(header[0].decode()) == header[1].decode()


def test_connection_cannot_strip_body_framing_or_type(gw: GatewayProcess, keys: Keys) -> None:
    body = b'{"text": "kept"}'
    for named in (b"Content-Length", b"content-type", b"Content-Length, Content-Type"):
        data = request(
            b"/notes/1",
            api_key(keys.writer),
            (b"Connection", named),
            (b"Content-Type", b"application/json"),
            (b"Content-Length", b"%d" % len(body)),
            method=b"POST",
            body=body,
        )
        _, seen = assert_forwarded(gw, data, b"/notes/1", method="POST")
        assert seen.body == body
        assert seen.header("Content-Length") == str(len(body))
        assert seen.header("Content-Type") == "application/json"
    # Twin: the same POST without Connection.
    data = request(
        b"/notes/1",
        api_key(keys.writer),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"%d" % len(body)),
        method=b"POST",
        body=body,
    )
    _, seen = assert_forwarded(gw, data, b"/notes/1", method="POST")
    assert seen.body == body


def test_connection_named_header_is_stripped(gw: GatewayProcess, keys: Keys) -> None:
    data = request(
        b"/notes/1",
        api_key(keys.reader),
        (b"Connection", b"keep-alive, X-Foo"),
        (b"X-Foo", b"hop"),
        (b"X-Bar", b"end-to-end"),
    )
    _, seen = assert_forwarded(gw, data, b"/notes/1")
    assert seen.header("X-Foo") is None
    assert seen.header("Connection") in (None, "keep-alive")  # the gateway's own, if any
    assert seen.header("X-Bar") == "end-to-end"


@pytest.mark.parametrize(
    "header",
    [
        (b"Keep-Alive", b"timeout=5, max=1000"),
        (b"TE", b"trailers"),
        (b"Upgrade", b"h2c"),
        (b"Proxy-Authorization", b"Basic dXNlcjpwYXNz"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"Trailer", b"X-Late"),
        (b"Proxy-Foo", b"x"),
    ],
    ids=lambda h: h[0].decode(),
)
def test_hop_by_hop_header_never_reaches_upstream(
    gw: GatewayProcess, keys: Keys, header: tuple[bytes, bytes]
) -> None:
    data = request(b"/notes/1", api_key(keys.reader), header, (b"X-End-To-End", b"kept"))
    _, seen = assert_forwarded(gw, data, b"/notes/1")
    assert header[0].decode().lower() not in seen.header_names()
    assert seen.header("X-End-To-End") == "kept"


def test_upgrade_request_is_not_tunnelled(gw: GatewayProcess, keys: Keys) -> None:
    data = request(
        b"/notes/1",
        api_key(keys.reader),
        (b"Connection", b"Upgrade"),
        (b"Upgrade", b"websocket"),
        (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"Sec-WebSocket-Version", b"13"),
    )
    _, seen = assert_forwarded(gw, data, b"/notes/1")
    assert "upgrade" not in seen.header_names()
    assert (seen.header("Connection") or "").lower() != "upgrade"


# --- spoofed client addresses ---------------------------------------------------------------------


def test_x_forwarded_for_from_untrusted_client(gw: GatewayProcess, keys: Keys) -> None:
    data = request(
        b"/notes/1",
        api_key(keys.reader),
        (b"X-Forwarded-For", b"1.2.3.4"),
        (b"X-Forwarded-For", b"10.0.0.1, 5.6.7.8"),
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Forwarded-Host", b"admin.internal"),
        (b"Forwarded", b"for=1.2.3.4;proto=https"),
    )
    _, seen = assert_forwarded(gw, data, b"/notes/1")
    assert seen.header("X-Forwarded-For") == "127.0.0.1"  # the real peer
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Forwarded-Host") == "gateway.test"  # from Host, not the client's claim
    assert seen.header("Forwarded") is None
    assert gw.audit_events()[-1]["client"] == "127.0.0.1"
    # Twin: without the spoofing headers the upstream sees the same facts.
    _, seen = assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    assert seen.header("X-Forwarded-Proto") == "http"


# --- oversized header blocks ----------------------------------------------------------------------


def test_one_huge_header(gw: GatewayProcess, keys: Keys) -> None:
    huge = (b"X-Big", b"a" * 20_000)
    body = assert_json_error(send(gw.port, request(b"/notes/1", api_key(keys.reader), huge)), 431)
    assert body["error"] == "invalid_request"
    assert gw.upstream.requests == []
    big = (b"X-Big", b"a" * 4_000)
    _, seen = assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader), big), b"/notes/1")
    assert seen.header("X-Big") == "a" * 4_000


def test_many_headers(gw: GatewayProcess, keys: Keys) -> None:
    many = [(b"X-H%d" % i, b"v") for i in range(2_000)]
    assert_refused(gw, request(b"/notes/1", api_key(keys.reader), *many), 431)
    few = many[:50]
    _, seen = assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader), *few), b"/notes/1")
    assert seen.header("X-H49") == "v"


# --- Host confusion (RFC 9112 §3.2) ---------------------------------------------------------------


def test_duplicate_host(gw: GatewayProcess, keys: Keys) -> None:
    data = request(b"/notes/1", api_key(keys.reader), (b"Host", b"admin.internal"))
    assert_refused(gw, data, 400)
    data = request(b"/notes/1", api_key(keys.reader), (b"Host", b"gateway.test"))
    assert_refused(gw, data, 400)
    _, seen = assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")
    assert seen.header("X-Forwarded-Host") == "gateway.test"


def test_missing_host_in_http_1_1(gw: GatewayProcess, keys: Keys) -> None:
    assert_refused(gw, request(b"/notes/1", api_key(keys.reader), host=None), 400)
    # HTTP/1.0 has no Host requirement.
    data = request(b"/notes/1", api_key(keys.reader), host=None, version=b"HTTP/1.0")
    assert_forwarded(gw, data, b"/notes/1")


@pytest.mark.parametrize("host", [b"a b", b"evil/notes", b"a@b", b"x\\y", b'"x"'])
def test_invalid_host_value(gw: GatewayProcess, keys: Keys, host: bytes) -> None:
    assert_refused(gw, request(b"/notes/1", api_key(keys.reader), host=host), 400)
    for good in (b"gateway.test:8080", b"[::1]:80", b"127.0.0.1"):
        _, seen = assert_forwarded(
            gw, request(b"/notes/1", api_key(keys.reader), host=good), b"/notes/1"
        )
        assert seen.header("X-Forwarded-Host") == good.decode()


# --- malformed header fields (RFC 9112 §5) --------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"X-Folded: a\r\n b",  # obs-fold: RFC 9112 §5.2 (reject or unfold; never pass on)
        b"X-Folded: a\r\n\tb",
        b"X-Ba\x01d: a",
        b"X-Bad: a\x01b",
        b"X-Bad: a\x00b",
        b"X-Bad : a",  # whitespace before the colon: RFC 9112 §5.1 MUST reject
        b" X-Leading-Space: a",
        b"X(Bad): a",
        b"X-No-Colon",
    ],
    ids=[
        "obs-fold-space",
        "obs-fold-tab",
        "ctl-in-name",
        "ctl-in-value",
        "nul-in-value",
        "space-before-colon",
        "leading-space",
        "separator-in-name",
        "no-colon",
    ],
)
def test_malformed_header_field(gw: GatewayProcess, keys: Keys, line: bytes) -> None:
    head = b"GET /notes/1 HTTP/1.1\r\nHost: gateway.test\r\nX-API-Key: " + keys.reader.encode()
    assert_refused(gw, head + b"\r\n" + line + b"\r\n\r\n", 400)
    _, seen = assert_forwarded(gw, head + b"\r\nX-Good: a b\r\n\r\n", b"/notes/1")
    assert seen.header("X-Good") == "a b"
