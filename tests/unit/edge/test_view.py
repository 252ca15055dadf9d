"""edge/view.py: ASGI scope -> RequestView; client address behind trusted proxies."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from restguard.edge.view import RAW_TARGET_KEY, client_address, view_from_scope
from restguard.errors import HeadersTooLarge, InvalidRequest

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def xff(*values: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", v.encode()) for v in values]


HOST = (b"host", b"example.com")


def scope(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/notes/7",
        "raw_path": b"/notes/7",
        "query_string": b"",
        "headers": [(b"host", b"example.com")],
        "client": ("192.0.2.1", 51000),
    }
    base.update(fields)
    return base


# --- client address -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # no trusted proxy in the way: the peer, whatever the header says
        ("192.0.2.1", xff("203.0.113.9"), "192.0.2.1"),
        ("192.0.2.1", [], "192.0.2.1"),
        # a trusted peer: the right-most hop that is not a trusted proxy
        ("10.0.0.1", xff("203.0.113.9"), "203.0.113.9"),
        ("10.0.0.1", xff("198.51.100.1, 203.0.113.9"), "203.0.113.9"),
        ("10.0.0.1", xff("198.51.100.1, 203.0.113.9, 10.0.0.2"), "203.0.113.9"),
        ("10.0.0.1", xff("198.51.100.1", "203.0.113.9, 10.9.9.9"), "203.0.113.9"),
        ("10.0.0.1", xff("2001:db8::1, fd00::5"), "2001:db8::1"),
        # every hop trusted: the left-most one
        ("10.0.0.1", xff("10.0.0.3, 10.0.0.2"), "10.0.0.3"),
        # a trusted peer without the header: the peer
        ("10.0.0.1", [], "10.0.0.1"),
        # spoofed left-hand entries are ignored (and never parsed)
        ("10.0.0.1", xff("garbage, 203.0.113.9"), "203.0.113.9"),
        # the peer itself is not an IP address (e.g. a unix socket)
        ("unix", xff("203.0.113.9"), "unix"),
    ],
)
def test_client_address(peer: str, headers: list[tuple[bytes, bytes]], expected: str) -> None:
    assert client_address(peer, headers, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert client_address("10.0.0.1", xff("203.0.113.9"), ()) == "10.0.0.1"


@pytest.mark.parametrize(
    "value",
    ["203.0.113.9:443", "not-an-ip", "203.0.113.9,", ", 203.0.113.9,", "[2001:db8::1]", "1.2.3"],
)
def test_malformed_hop_is_invalid_request(value: str) -> None:
    with pytest.raises(InvalidRequest, match="X-Forwarded-For"):
        client_address("10.0.0.1", xff(value), PROXIES)


def test_malformed_hop_behind_trusted_hops_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        client_address("10.0.0.1", xff("bogus, 10.0.0.7"), PROXIES)


# --- view_from_scope ------------------------------------------------------------------------------


def test_view_from_scope_basics() -> None:
    view = view_from_scope(
        scope(
            method="POST",
            raw_path=b"/n%6ftes/./7",
            query_string=b"a=1&b=%2F",
            headers=[(b"host", b"h"), (b"x-api-key", b"k"), (b"x-api-key", b"k2")],
        )
    )
    assert view.method == "POST"
    assert view.path == "/notes/7"
    assert view.query == b"a=1&b=%2F"
    assert view.headers == ((b"host", b"h"), (b"x-api-key", b"k"), (b"x-api-key", b"k2"))
    assert view.client == "192.0.2.1"


def test_raw_target_wins_over_path_fields() -> None:
    view = view_from_scope(
        scope(**{RAW_TARGET_KEY: b"/a/b/../c?x=1", "path": "/ignored", "raw_path": b"/ignored"})
    )
    assert (view.path, view.query) == ("/a/c", b"x=1")


@pytest.mark.parametrize(
    "target", [b"http://evil.example/notes/7", b"/a%2fb", b"/../x", b"/a//b", b"*"]
)
def test_raw_target_refusals(target: bytes) -> None:
    with pytest.raises(InvalidRequest):
        view_from_scope(scope(**{RAW_TARGET_KEY: target}))


@pytest.mark.parametrize(
    "fields",
    [
        {"raw_path": b"/a?b"},
        {"raw_path": b"/a%2Fb"},
        {"raw_path": b"/a\\b"},
        {"query_string": b"x=%zz"},
        {"query_string": b"x=a b"},
    ],
)
def test_path_field_refusals(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        view_from_scope(scope(**fields))


def test_path_without_raw_path() -> None:
    s = scope(path="/notes/8")
    del s["raw_path"]
    assert view_from_scope(s).path == "/notes/8"


def test_no_client() -> None:
    assert view_from_scope(scope(client=None)).client == ""


def test_trusted_proxies_apply() -> None:
    s = scope(client=("10.1.2.3", 1), headers=[HOST, *xff("203.0.113.9")])
    assert view_from_scope(s).client == "10.1.2.3"
    assert view_from_scope(s, trusted_proxies=PROXIES).client == "203.0.113.9"
    with pytest.raises(InvalidRequest):
        view_from_scope(
            scope(client=("10.1.2.3", 1), headers=[HOST, *xff("x")]), trusted_proxies=PROXIES
        )


def test_header_size_cap() -> None:
    # each header counts name + value + 4 bytes (": " and CRLF)
    headers = [HOST, (b"x-a", b"v" * 82)]  # 19 + 89 = 108 bytes
    assert view_from_scope(scope(headers=headers), max_header_bytes=108)
    with pytest.raises(HeadersTooLarge) as caught:
        view_from_scope(scope(headers=headers), max_header_bytes=107)
    assert caught.value.status == 431
    many = [HOST, *((b"x-%d" % i, b"v") for i in range(2000))]
    with pytest.raises(HeadersTooLarge):
        view_from_scope(scope(headers=many))


@pytest.mark.parametrize(
    "headers",
    [
        [],  # HTTP/1.1 without Host
        [HOST, HOST],  # two Host headers
        [(b"host", b"exa mple.com")],
    ],
)
def test_host_header_is_required_once(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(InvalidRequest, match="Host"):
        view_from_scope(scope(headers=headers))
