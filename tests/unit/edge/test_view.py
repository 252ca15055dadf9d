"""edge/view.py: raw parts or an ASGI scope -> RequestView; header-name hygiene; client address
behind trusted proxies."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restguard.edge.view import (
    RAW_TARGET_KEY,
    build_view,
    clean_headers,
    client_address,
    valid_header_name,
    view_from_scope,
)
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
            raw_path=b"/n%6ftes/7",  # decodes to scope["path"]
            query_string=b"a=1&b=%2F",
            headers=[(b"host", b"h"), (b"x-api-key", b"k"), (b"x-api-key", b"k2")],
        )
    )
    assert view.method == "POST"
    assert view.path == "/notes/7"
    assert view.query == b"a=1&b=%2F"
    assert view.headers == ((b"host", b"h"), (b"x-api-key", b"k"), (b"x-api-key", b"k2"))
    assert view.client == "192.0.2.1"
    assert view.via_trusted_proxy is False


def test_raw_target_wins_over_path_fields() -> None:
    view = view_from_scope(
        scope(**{RAW_TARGET_KEY: b"/a/%63?x=1", "path": "/ignored", "raw_path": b"/ignored"})
    )
    assert (view.path, view.query) == ("/a/c", b"x=1")


@pytest.mark.parametrize(
    "target",
    [b"http://evil.example/notes/7", b"/a%2fb", b"/../x", b"/a//b", b"*", b"/a/b/../c?x=1"],
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


# --- header names: invalid ones and client-sent X-Restguard-* never reach the decision ----------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        (b"x-api-key", True),
        (b"X-API-Key", True),
        (b"Content-Length", True),
        (b"x1-2", True),
        (b"-", True),
        (b"", False),
        (b"x_api_key", False),
        (b"X-Restguard_Subject", False),
        (b"x-api-key ", False),
        (b" host", False),
        (b"host:", False),
        (b"a.b", False),
        (b"a\tb", False),
        (b"caf\xc3\xa9", False),
        (b"x-\x00", False),
    ],
)
def test_valid_header_name(name: bytes, ok: bool) -> None:
    assert valid_header_name(name) is ok


def test_clean_headers_lowercases_and_drops() -> None:
    headers = [
        (b"Host", b"example.com"),
        (b"X_Restguard_Subject", b"root"),  # invalid name (CGI would fold it onto the real one)
        (b"X-Restguard-Subject", b"root"),  # client-sent identity header
        (b"x-restguard-identity", b"forged"),
        (b"X-RESTGUARD-", b""),
        (b"x-restguard", b"kept: not the prefix"),
        (b"x-restguardsubject", b"kept"),
        (b"Accept", b"X-Restguard-Subject"),  # values are not names
        (b"user_agent", b"x"),
        (b"", b"empty name"),
        (b"Accept", b"text/html"),
    ]
    assert clean_headers(headers) == [
        (b"host", b"example.com"),
        (b"x-restguard", b"kept: not the prefix"),
        (b"x-restguardsubject", b"kept"),
        (b"accept", b"X-Restguard-Subject"),
        (b"accept", b"text/html"),
    ]


_NAME_BYTES = st.binary(max_size=12) | st.sampled_from(
    [b"Host", b"X-Restguard-Subject", b"x-restguard-", b"X_Forwarded_For", b"x-a", b"A-B"]
)


@given(st.lists(st.tuples(_NAME_BYTES, st.binary(max_size=8)), max_size=8))
def test_clean_headers_keeps_exactly_the_valid_non_identity_names(
    headers: list[tuple[bytes, bytes]],
) -> None:
    expected = [
        (name.lower(), value)
        for name, value in headers
        if re.fullmatch(rb"[0-9A-Za-z-]+", name) and not name.lower().startswith(b"x-restguard-")
    ]
    assert clean_headers(headers) == expected


def test_build_view_judges_clean_headers_only() -> None:
    view = build_view(
        "GET",
        b"/notes/7",
        [
            (b"Host", b"example.com"),
            (b"Host_", b"evil.example"),  # not a second Host
            (b"Content_Length", b"5"),  # not Content-Length next to Transfer-Encoding
            (b"Transfer-Encoding", b"chunked"),
            (b"X-Restguard-Subject", b"root"),
            (b"X-API-Key", b"k"),
        ],
    )
    assert view.headers == (
        (b"host", b"example.com"),
        (b"transfer-encoding", b"chunked"),
        (b"x-api-key", b"k"),
    )


def test_build_view_still_refuses_two_valid_host_headers() -> None:
    with pytest.raises(InvalidRequest, match="Host"):
        build_view("GET", b"/", [(b"Host", b"a"), (b"host", b"b")])


def test_build_view_resolves_dot_segments_unless_asked_not_to() -> None:
    assert build_view("GET", b"/a/./b/../c", [HOST]).path == "/a/c"
    with pytest.raises(InvalidRequest) as caught:
        build_view("GET", b"/a/./b", [HOST], refuse_dot_segments=True)
    assert caught.value.debug == "dot segment"


@pytest.mark.parametrize(
    ("peer", "proxies", "headers", "client", "trusted"),
    [
        ("192.0.2.1", (), xff("203.0.113.9"), "192.0.2.1", False),
        ("192.0.2.1", PROXIES, xff("203.0.113.9"), "192.0.2.1", False),
        ("10.0.0.1", (), xff("203.0.113.9"), "10.0.0.1", False),
        ("10.0.0.1", PROXIES, xff("203.0.113.9"), "203.0.113.9", True),
        ("10.0.0.1", PROXIES, [], "10.0.0.1", True),
        # an X-Forwarded-For look-alike with an invalid name is never read
        ("10.0.0.1", PROXIES, [(b"x_forwarded_for", b"203.0.113.9")], "10.0.0.1", True),
        ("unix", PROXIES, xff("203.0.113.9"), "unix", False),
    ],
)
def test_build_view_client_and_via_trusted_proxy(
    peer: str,
    proxies: tuple[Any, ...],
    headers: list[tuple[bytes, bytes]],
    client: str,
    trusted: bool,
) -> None:
    view = build_view("GET", b"/", [HOST, *headers], peer=peer, trusted_proxies=proxies)
    assert view.client == client
    assert view.via_trusted_proxy is trusted


@pytest.mark.parametrize(
    ("given", "scheme"), [("https", "https"), ("http", "http"), ("HTTPS", "http"), ("ftp", "http")]
)
def test_build_view_scheme_is_http_or_https(given: str, scheme: str) -> None:
    assert build_view("GET", b"/", [HOST]).scheme == "http"
    assert build_view("GET", b"/", [HOST], scheme=given).scheme == scheme


@pytest.mark.parametrize(
    ("given", "scheme"), [("https", "https"), ("wss", "https"), ("http", "http"), (None, "http")]
)
def test_view_from_scope_takes_the_servers_scheme(given: str | None, scheme: str) -> None:
    fields = {} if given is None else {"scheme": given}
    assert view_from_scope(scope(**fields)).scheme == scheme


# --- view_from_scope: judge what the app routes on ------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"path": "/a/./b", "raw_path": b"/a/./b"},
        {"path": "/a/../admin", "raw_path": b"/a/../admin"},
        {"path": "/a/..", "raw_path": b"/a/.."},
        {"path": "/.", "raw_path": b"/."},
        {"path": "/a/./b"},  # no raw_path: the path itself
        {RAW_TARGET_KEY: b"/a/./b"},
    ],
)
def test_dot_segments_are_refused_not_resolved(fields: dict[str, Any]) -> None:
    s = scope(**fields)
    if "raw_path" not in fields and RAW_TARGET_KEY not in fields:
        del s["raw_path"]
    with pytest.raises(InvalidRequest) as caught:
        view_from_scope(s)
    assert caught.value.debug == "dot segment"


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/public/x", b"/admin"),
        ("/notes/7", b"/notes/8"),
        ("/notes/7", b"/Notes/7"),
        ("/a/b", b"/a%2Fb"),  # decodes to path, but an encoded slash is refused anyway
        ("/caf\u00e9", b"/caf%FF"),  # not UTF-8
        ("/a", b"/a\xff"),  # not ASCII
    ],
)
def test_raw_path_refusals(path: str, raw_path: bytes) -> None:
    with pytest.raises(InvalidRequest):
        view_from_scope(scope(path=path, raw_path=raw_path))


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [("/public/x", b"/admin"), ("/notes/7", b"/notes/8"), ("/caf\u00e9", b"/caf%FF")],
)
def test_a_raw_path_mismatch_says_so(path: str, raw_path: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        view_from_scope(scope(path=path, raw_path=raw_path))
    assert caught.value.debug == "raw_path does not decode to path"


@pytest.mark.parametrize(
    ("fields", "judged"),
    [
        ({"path": "/notes/7", "raw_path": b"/notes/%37"}, "/notes/7"),
        ({"path": "/caf\u00e9", "raw_path": b"/caf%C3%A9"}, "/caf%C3%A9"),
        ({"path": "/caf\u00e9", "raw_path": b"/caf%c3%a9"}, "/caf%C3%A9"),
        ({"path": "/a b", "raw_path": b"/a%20b"}, "/a%20b"),
        # root_path: raw_path may or may not carry it; the app routes on path less root_path
        (
            {"path": "/api/notes/7", "root_path": "/api", "raw_path": b"/api/notes/7"},
            "/notes/7",
        ),
        ({"path": "/api/notes/7", "root_path": "/api", "raw_path": b"/notes/7"}, "/notes/7"),
        ({"path": "/api", "root_path": "/api", "raw_path": b"/api"}, "/"),
        ({"path": "/apix/y", "root_path": "/api", "raw_path": b"/apix/y"}, "/apix/y"),
    ],
)
def test_raw_path_consistent_with_path(fields: dict[str, Any], judged: str) -> None:
    assert view_from_scope(scope(**fields)).path == judged


@pytest.mark.parametrize(
    ("path", "judged"),
    [("/caf\u00e9", "/caf%C3%A9"), ("/a b", "/a%20b"), ("/a?b", "/a%3Fb"), ("/~u/x:y", "/~u/x:y")],
)
def test_without_raw_path_the_decoded_path_is_judged(path: str, judged: str) -> None:
    s = scope(path=path)
    del s["raw_path"]
    assert view_from_scope(s).path == judged


def test_view_from_scope_cleans_header_names() -> None:
    view = view_from_scope(
        scope(
            headers=[
                HOST,
                (b"x-restguard-subject", b"root"),
                (b"x_api_key", b"k"),
                (b"X-API-Key", b"k2"),
            ]
        )
    )
    assert view.headers == (HOST, (b"x-api-key", b"k2"))
