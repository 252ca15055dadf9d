"""Method tricks: the upstream only ever acts on the method the policy judged."""

from __future__ import annotations

import contextlib
import socket

import pytest

from tests.attacks.conftest import Keys
from tests.attacks.wire import api_key, assert_forwarded, assert_refused, request
from tests.harness import GatewayProcess


@pytest.mark.parametrize(
    "header", [b"X-HTTP-Method-Override", b"X-HTTP-Method", b"X-Method-Override", b"x-http-method"]
)
def test_method_override_header(gw: GatewayProcess, keys: Keys, header: bytes) -> None:
    # A GET judged with a read key must not become a DELETE at an upstream that honours overrides.
    assert_refused(gw, request(b"/notes/1", api_key(keys.reader), (header, b"DELETE")), 400)
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")
    # The honest way to delete: the real method, with a key that may write.
    assert_forwarded(
        gw,
        request(b"/notes/1", api_key(keys.writer), method=b"DELETE"),
        b"/notes/1",
        method="DELETE",
    )


@pytest.mark.parametrize("method", [b"get", b"Get", b"gEt"])
def test_lower_case_method(gw: GatewayProcess, keys: Keys, method: bytes) -> None:
    # Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET and is never forwarded as GET.
    assert_refused(gw, request(b"/notes/1", api_key(keys.reader), method=method), 400)
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")


def test_unknown_method(gw: GatewayProcess, keys: Keys) -> None:
    assert_refused(gw, request(b"/notes/1", api_key(keys.writer), method=b"FOO"), 400)
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.writer)), b"/notes/1")


@pytest.mark.parametrize(
    ("method", "target"),
    [
        (b"DELETE", b"/fwd/x"),  # /fwd/** is GET-only
        (b"POST", b"/limited"),
        (b"OPTIONS", b"/notes/1"),
        (b"TRACE", b"/notes/1"),  # cross-site tracing would echo the credential back
        (b"CONNECT", b"/notes/1"),
    ],
)
def test_method_not_allowed_on_route(
    gw: GatewayProcess, keys: Keys, method: bytes, target: bytes
) -> None:
    # A method no route allows is default-denied (404), whatever the credential may do.
    data = request(target, api_key(keys.writer), method=method)
    assert_refused(gw, data, 404, "not_found")
    assert_forwarded(gw, request(target, api_key(keys.writer)), target)


def test_head_is_decided_as_get(gw: GatewayProcess, keys: Keys) -> None:
    # Frameworks run the GET handler for HEAD, so HEAD is decided exactly as GET: refused where
    # GET would be (no GET route for /admin; /notes/1 needs a credential) ...
    assert_refused(gw, request(b"/admin", api_key(keys.reader), method=b"HEAD"), 404, head=True)
    assert_refused(gw, request(b"/notes/1", method=b"HEAD"), 401, head=True)
    # ... and allowed where GET is, on a route that does not list HEAD (/fwd/** is GET-only).
    assert_forwarded(
        gw,
        request(b"/fwd/x", api_key(keys.reader), method=b"HEAD"),
        b"/fwd/x",
        head=True,
        method="HEAD",
    )
    # The upstream receives a HEAD (not a GET) and no body comes back.
    response, seen = assert_forwarded(
        gw,
        request(b"/notes/a/b", api_key(keys.reader), method=b"HEAD"),
        b"/notes/a/b",
        head=True,
        method="HEAD",
    )
    assert response.header("content-length") == "12"  # the upstream's GET length, no body
    assert seen.body == b""
    # Byte-exact: nothing follows the HEAD response's header block on the connection.
    with socket.create_connection(("127.0.0.1", gw.port), timeout=0.5) as s:
        s.sendall(request(b"/notes/a/b", api_key(keys.reader), method=b"HEAD"))
        data = b""
        with contextlib.suppress(TimeoutError):
            while chunk := s.recv(65536):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1


@pytest.mark.parametrize("header", [b"X-Original-URL", b"X-Rewrite-URL", b"x-original-url"])
def test_path_override_header(gw: GatewayProcess, keys: Keys, header: bytes) -> None:
    # Upstreams that honour X-Original-URL (IIS rewrite, old Symfony/Zend) would route "/admin"
    # while the policy judged the public "/public/x".
    assert_refused(gw, request(b"/public/x", (header, b"/admin")), 400)
    assert_refused(gw, request(b"/notes/1", api_key(keys.reader), (header, b"/notes/1")), 400)
    assert_forwarded(gw, request(b"/public/x"), b"/public/x")
