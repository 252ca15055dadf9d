"""Header hygiene and framing decisions, without sockets."""

from __future__ import annotations

import pytest

from restguard.authz.policy import Route
from restguard.gateway.headers import client_head, upstream_head
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
