"""Header hygiene and framing decisions, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard.authz.policy import Route
from restguard.gateway.headers import _connection_tokens, client_head, upstream_head
from restguard.guard import Decision
from restguard.types import ANONYMOUS, RequestView

CL = (b"content-length", b"5")
TE = (b"transfer-encoding", b"chunked")


@pytest.mark.parametrize(
    ("status", "headers", "no_body", "http_11", "framing", "length"),
    [
        (200, [CL], False, True, "length", True),
        (200, [TE], False, True, "chunked", False),
        (200, [], False, True, "chunked", False),
        (200, [], False, False, "close", False),
        (200, [CL], True, True, "none", True),  # HEAD keeps the length it describes
        (204, [], False, True, "none", False),
        (304, [CL], False, True, "none", True),
    ],
)
def test_client_framing(
    status: int,
    headers: list[tuple[bytes, bytes]],
    no_body: bool,
    http_11: bool,
    framing: str,
    length: bool,
) -> None:
    lines, got = client_head(status, b"OK", headers, no_body=no_body, http_11=http_11)
    assert got == framing
    text = b"".join(lines)
    assert (b"content-length: 5\r\n" in text) is length
    assert text.count(b"transfer-encoding") == (1 if framing == "chunked" else 0)


def test_client_head_drops_hop_by_hop_and_what_connection_names() -> None:
    lines, _ = client_head(
        200,
        b"OK",
        [
            (b"connection", b"x-foo, keep-alive"),
            (b"x-foo", b"1"),
            (b"keep-alive", b"t=5"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            CL,
        ],
        no_body=False,
        http_11=True,
    )
    text = b"".join(lines)
    assert b"x-foo" not in text and b"keep-alive" not in text and b"connection" not in text
    assert text.count(b"set-cookie") == 2


def test_client_head_puts_the_routes_rate_limit_fields_in_place_of_the_upstreams() -> None:
    upstream = [
        (b"ratelimit-limit", b"999"),
        (b"ratelimit-policy", b"999;w=1"),
        (b"ratelimit", b"limit=999"),
        (b"x-ratelimit-limit", b"7"),  # (not a RateLimit field: kept)
        CL,
    ]
    rate = (("ratelimit-limit", "5"), ("ratelimit-remaining", "4"), ("ratelimit-reset", "60"))
    text = b"".join(client_head(200, b"OK", upstream, no_body=False, http_11=True, rate=rate)[0])
    fields = [line.split(b": ", 1) for line in text.split(b"\r\n")[1:] if line]
    assert sorted(n for n, _ in fields if n.startswith(b"ratelimit")) == [
        b"ratelimit-limit",
        b"ratelimit-remaining",
        b"ratelimit-reset",
    ]
    assert [b"ratelimit-limit", b"5"] in fields and [b"x-ratelimit-limit", b"7"] in fields
    plain = b"".join(client_head(200, b"OK", upstream, no_body=False, http_11=True)[0])
    assert plain.count(b"\r\nratelimit") == 3  # (no route limit: the upstream's own pass)


def test_upstream_head_is_the_judged_request_with_hygiene() -> None:
    route = Route(0, "/n/**", frozenset({"GET"}))
    view = RequestView(
        "GET",
        "/n/~1",
        b"q=%2F",
        (
            (b"host", b"gw.example"),
            (b"x-api-key", b"secret"),
            (b"connection", b"x-bar"),
            (b"x-bar", b"1"),
            (b"x-real-ip", b"6.6.6.6"),
            (b"proxy-x", b"1"),
            (b"accept", b"*/*"),
        ),
        client="203.0.113.9",
    )
    head = upstream_head(
        view,
        Decision(route, ANONYMOUS, (b"x-api-key",)),
        upstream_host=b"up:9000",
        identity=b"x-restguard-subject: s\r\n",
        content_length=None,
        chunked=False,
    )
    assert head.startswith(b"GET /n/~1?q=%2F HTTP/1.1\r\nhost: up:9000\r\n")
    for gone in (b"secret", b"x-bar", b"6.6.6.6", b"proxy-x", b"gw.example\r\nx-api"):
        assert gone not in head
    assert b"accept: */*\r\n" in head
    assert b"x-forwarded-for: 203.0.113.9\r\n" in head
    assert b"x-forwarded-host: gw.example\r\n" in head
    assert head.endswith(b"x-restguard-subject: s\r\n\r\n")


# --- what the upstream receives: forwarding family, Connection tokens, credentials ---------------


def head_for(
    *headers: tuple[bytes, bytes],
    trusted: bool = False,
    carriers: tuple[bytes, ...] = (),
    forward_credentials: bool = False,
    client: str = "203.0.113.9",
    scheme: str = "http",
) -> bytes:
    route = Route(0, "/n/**", frozenset({"GET"}), forward_credentials=forward_credentials)
    view = RequestView(
        "GET",
        "/n",
        b"",
        ((b"host", b"gw.example"), *headers),
        client=client,
        via_trusted_proxy=trusted,
        scheme=scheme,
    )
    return upstream_head(
        view,
        Decision(route, ANONYMOUS, carriers),
        upstream_host=b"up:9000",
        identity=b"x-restguard-subject: s\r\n",
        content_length=None,
        chunked=False,
    )


def header_lines(head: bytes) -> list[tuple[bytes, bytes]]:
    lines = head.split(b"\r\n")[1:]
    assert lines[-2:] == [b"", b""]
    return [tuple(line.split(b": ", 1)) for line in lines[:-2]]  # type: ignore[misc]


def values(head: bytes, name: bytes) -> list[bytes]:
    return [v for n, v in header_lines(head) if n == name]


# CONTRACT: removed unless the peer is a trusted proxy.
FORWARDING_FAMILY = [
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
    b"x-forwarded-ssl",
    b"x-forwarded-server",
    b"x-forwarded-anything",
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
]


@pytest.mark.parametrize("name", FORWARDING_FAMILY)
def test_forwarding_family_is_removed_from_untrusted_peers(name: bytes) -> None:
    head = head_for((name, b"6.6.6.6"))
    assert b"6.6.6.6" not in head
    # restguard's own, from what it verified
    assert values(head, b"x-forwarded-for") == [b"203.0.113.9"]
    assert values(head, b"x-forwarded-proto") == [b"http"]
    assert values(head, b"x-forwarded-host") == [b"gw.example"]


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in FORWARDING_FAMILY
        if n not in (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")
    ],
)
def test_forwarding_family_from_a_trusted_proxy_is_kept(name: bytes) -> None:
    head = head_for((name, b"6.6.6.6"), trusted=True)
    assert values(head, name) == [b"6.6.6.6"]


def test_restguard_sets_its_own_forwarded_headers_once_even_behind_a_trusted_proxy() -> None:
    head = head_for(
        (b"x-forwarded-for", b"198.51.100.1, 203.0.113.9"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"public.example"),
        trusted=True,
    )
    # the client address is the one edge.view verified; scheme and host are the proxy's
    assert values(head, b"x-forwarded-for") == [b"203.0.113.9"]
    assert values(head, b"x-forwarded-proto") == [b"https"]
    assert values(head, b"x-forwarded-host") == [b"public.example"]


@pytest.mark.parametrize("proto", [b"ftp", b"", b"https, http", b"javascript"])
def test_a_trusted_proxy_scheme_other_than_http_or_https_is_ignored(proto: bytes) -> None:
    head = head_for((b"x-forwarded-proto", proto), trusted=True)
    assert values(head, b"x-forwarded-proto") == [b"http"]


def test_untrusted_forwarded_scheme_and_host_are_not_believed() -> None:
    head = head_for(
        (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"evil.example"), trusted=False
    )
    assert values(head, b"x-forwarded-proto") == [b"http"]
    assert values(head, b"x-forwarded-host") == [b"gw.example"]


def test_a_request_that_came_over_tls_is_forwarded_as_https() -> None:
    assert values(head_for(scheme="https"), b"x-forwarded-proto") == [b"https"]
    # a client's own claim, over TLS or not, is replaced by the truth
    for scheme in ("http", "https"):
        head = head_for((b"x-forwarded-proto", b"ftp"), (b"x-url-scheme", b"x"), scheme=scheme)
        assert values(head, b"x-forwarded-proto") == [scheme.encode()]
        assert values(head, b"x-url-scheme") == []


def test_a_trusted_proxy_scheme_wins_over_the_connection_one() -> None:
    # the proxy terminated its client's plain HTTP and reached restguard over TLS
    head = head_for((b"x-forwarded-proto", b"http"), trusted=True, scheme="https")
    assert values(head, b"x-forwarded-proto") == [b"http"]
    head = head_for(trusted=True, scheme="https")  # (no claim: the connection's own)
    assert values(head, b"x-forwarded-proto") == [b"https"]


@pytest.mark.parametrize(
    "name",
    [
        b"authorization",
        b"x-api-key",
        b"signature",
        b"signature-input",
        b"content-digest",
        b"content-type",
        b"cookie",
    ],
)
def test_connection_naming_a_protected_header_is_ignored(name: bytes) -> None:
    head = head_for(
        (b"connection", b"keep-alive, " + name.upper()),
        (name, b"v"),
        forward_credentials=True,
    )
    assert values(head, name) == [b"v"]
    assert values(head, b"connection") == []


def test_connection_naming_host_or_content_length_changes_nothing() -> None:
    view_headers = ((b"connection", b"host, content-length"), (b"content-length", b"3"))
    route = Route(0, "/n/**", frozenset({"POST"}))
    view = RequestView("POST", "/n", b"", ((b"host", b"gw.example"), *view_headers), client="c")
    head = upstream_head(
        view,
        Decision(route, ANONYMOUS),
        upstream_host=b"up:9000",
        identity=b"",
        content_length=3,
        chunked=False,
    )
    assert values(head, b"host") == [b"up:9000"]
    assert values(head, b"content-length") == [b"3"]
    assert values(head, b"x-forwarded-host") == [b"gw.example"]


def test_connection_naming_an_ordinary_header_still_drops_it() -> None:
    head = head_for((b"connection", b"x-bar, X-Baz"), (b"x-bar", b"1"), (b"x-baz", b"2"))
    assert values(head, b"x-bar") == values(head, b"x-baz") == []


def test_upgrade_and_connection_are_not_forwarded() -> None:
    head = head_for((b"connection", b"upgrade"), (b"upgrade", b"websocket"))
    assert values(head, b"upgrade") == values(head, b"connection") == []


def test_client_sent_identity_headers_never_pass() -> None:
    head = head_for((b"x-restguard-subject", b"root"), (b"x-restguard-scopes", b"admin"))
    assert values(head, b"x-restguard-subject") == [b"s"]  # restguard's own only
    assert values(head, b"x-restguard-scopes") == []


@pytest.mark.parametrize("forward", [False, True])
def test_credential_carriers_are_removed_unless_the_route_forwards_them(forward: bool) -> None:
    head = head_for(
        (b"authorization", b"Bearer rg_ak_x"),
        (b"x-api-key", b"rg_ak_y"),
        (b"accept", b"*/*"),
        carriers=(b"authorization", b"x-api-key"),
        forward_credentials=forward,
    )
    assert values(head, b"authorization") == ([b"Bearer rg_ak_x"] if forward else [])
    assert values(head, b"x-api-key") == ([b"rg_ak_y"] if forward else [])
    assert values(head, b"accept") == [b"*/*"]


def test_headers_that_carry_no_credential_are_forwarded() -> None:
    head = head_for((b"authorization", b"Basic dXNlcjpwdw=="), carriers=())
    assert values(head, b"authorization") == [b"Basic dXNlcjpwdw=="]


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"connection", b"x-a", b"keep-alive"]),
            st.lists(
                st.sampled_from([b"close", b"Keep-Alive", b" x-a", b"X-A\t", b"", b"upgrade"]),
                min_size=1,
                max_size=3,
            ).map(b",".join),
        ),
        max_size=4,
    )
)
def test_connection_tokens_are_every_comma_separated_name(
    headers: list[tuple[bytes, bytes]],
) -> None:
    """The one-word shortcut in ``_connection_tokens`` gives what splitting on commas gives."""
    expected = {
        t.strip(b" \t") for n, v in headers if n == b"connection" for t in v.lower().split(b",")
    }
    assert _connection_tokens(headers) == expected
