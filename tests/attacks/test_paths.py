"""Path attacks: every ambiguous request target is refused before the policy or the upstream sees
it, and every legal one reaches the upstream as exactly the path the policy judged.

Each attack has a valid twin: the closest legal request, which succeeds and whose upstream
target is asserted byte for byte.
"""

from __future__ import annotations

import pytest

from tests.attacks.conftest import Keys
from tests.attacks.wire import api_key, assert_forwarded, assert_refused, request
from tests.harness import GatewayProcess


def refused_with_twin(
    gw: GatewayProcess,
    key: str,
    attack: bytes,
    status: int,
    twin: bytes,
    upstream_target: bytes,
    *,
    error: str = "invalid_request",
) -> None:
    assert_refused(gw, request(attack, api_key(key)), status, error)
    assert_forwarded(gw, request(twin, api_key(key)), upstream_target)


# --- default deny ---------------------------------------------------------------------------------


def test_unknown_path_is_default_denied(gw: GatewayProcess, keys: Keys) -> None:
    refused_with_twin(gw, keys.writer, b"/admin", 404, b"/notes/1", b"/notes/1", error="not_found")


def test_unknown_path_without_credential_is_still_404(gw: GatewayProcess, keys: Keys) -> None:
    assert_refused(gw, request(b"/admin/users"), 404, "not_found")
    assert_forwarded(gw, request(b"/public/users"), b"/public/users")


def test_case_variant_of_a_route_is_ambiguous(gw: GatewayProcess, keys: Keys) -> None:
    # Case-insensitive upstream routers (Express, ASP.NET) would run /notes/{id}'s handler.
    refused_with_twin(gw, keys.reader, b"/NOTES/1", 400, b"/notes/1", b"/notes/1")


def test_traversal_into_a_non_route(gw: GatewayProcess, keys: Keys) -> None:
    # "/notes/../admin" is "/admin" once dot segments are resolved: no route, 404.
    refused_with_twin(
        gw, keys.reader, b"/notes/../admin", 404, b"/notes/x/../1", b"/notes/1", error="not_found"
    )


def test_traversal_out_of_a_public_subtree(gw: GatewayProcess, keys: Keys) -> None:
    # "/public/../notes/1" is judged as "/notes/1": it needs a credential.
    assert_refused(gw, request(b"/public/../notes/1"), 401, "unauthorized")
    assert_forwarded(gw, request(b"/public/../notes/1", api_key(keys.reader)), b"/notes/1")


# --- encoded delimiters ---------------------------------------------------------------------------


@pytest.mark.parametrize("slash", [b"%2F", b"%2f"])
def test_encoded_slash(gw: GatewayProcess, keys: Keys, slash: bytes) -> None:
    refused_with_twin(
        gw, keys.reader, b"/notes/a" + slash + b"b", 400, b"/notes/a/b", b"/notes/a/b"
    )


@pytest.mark.parametrize("backslash", [b"%5C", b"%5c"])
def test_encoded_backslash(gw: GatewayProcess, keys: Keys, backslash: bytes) -> None:
    refused_with_twin(
        gw, keys.reader, b"/notes/a" + backslash + b"b", 400, b"/notes/ab", b"/notes/ab"
    )


def test_raw_backslash(gw: GatewayProcess, keys: Keys) -> None:
    refused_with_twin(gw, keys.reader, b"/notes/a\\b", 400, b"/notes/a/b", b"/notes/a/b")


@pytest.mark.parametrize("dots", [b"%2e%2e", b"%2E%2E", b".%2e", b"%2e."])
def test_encoded_dot_segment(gw: GatewayProcess, keys: Keys, dots: bytes) -> None:
    refused_with_twin(
        gw, keys.reader, b"/notes/a/" + dots + b"/b", 400, b"/notes/a/../b", b"/notes/b"
    )


def test_encoded_single_dot(gw: GatewayProcess, keys: Keys) -> None:
    refused_with_twin(gw, keys.reader, b"/notes/a/%2e/b", 400, b"/notes/a/./b", b"/notes/a/b")


def test_encoded_semicolon_path_parameter(gw: GatewayProcess, keys: Keys) -> None:
    # Servers that decode before splitting off path parameters would read "/public/..;/notes/1"
    # and then "/notes/1": a public-route bypass. Refused, never decoded.
    assert_refused(gw, request(b"/public/..%3B/notes/1"), 400)
    assert_refused(gw, request(b"/public/..%3b/notes/1"), 400)
    assert_forwarded(gw, request(b"/public/..a/notes/1"), b"/public/..a/notes/1")


# --- dot segments and empty segments --------------------------------------------------------------


@pytest.mark.parametrize("target", [b"/..", b"/../notes/1", b"/notes/../../notes/1", b"/./../x"])
def test_dot_segments_climbing_above_root(gw: GatewayProcess, keys: Keys, target: bytes) -> None:
    refused_with_twin(gw, keys.reader, target, 400, b"/notes/a/../1", b"/notes/1")


@pytest.mark.parametrize("target", [b"/notes//1", b"//notes/1", b"/notes/a//b", b"/public//x"])
def test_double_slash(gw: GatewayProcess, keys: Keys, target: bytes) -> None:
    refused_with_twin(gw, keys.reader, target, 400, b"/notes/a/b", b"/notes/a/b")


def test_normalised_dot_segment_twin(gw: GatewayProcess, keys: Keys) -> None:
    # The upstream receives the resolved path, the one the policy judged.
    assert_forwarded(gw, request(b"/notes/a/./b", api_key(keys.reader)), b"/notes/a/b")
    assert_forwarded(gw, request(b"/notes/a/b/c/..", api_key(keys.reader)), b"/notes/a/b/")
    # (/notes/a/ would be ambiguous: lenient routers give it to /notes/{id}, an earlier route.)
    assert_refused(gw, request(b"/notes/a/b/..", api_key(keys.reader)), 400)


# --- path parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [b"/notes/1;x", b"/notes/..;/x", b"/notes/1;jsessionid=a"])
def test_semicolon_path_parameters(gw: GatewayProcess, keys: Keys, target: bytes) -> None:
    refused_with_twin(gw, keys.reader, target, 400, b"/notes/1", b"/notes/1")


def test_semicolon_in_query_is_data(gw: GatewayProcess, keys: Keys) -> None:
    # A ";" in the query is ordinary data and is forwarded byte for byte.
    assert_forwarded(gw, request(b"/notes/1?a=1;b=2", api_key(keys.reader)), b"/notes/1?a=1;b=2")


# --- NUL, control characters, bad encodings -------------------------------------------------------


def test_raw_nul_in_path(gw: GatewayProcess, keys: Keys) -> None:
    refused_with_twin(
        gw, keys.reader, b"/notes/1\x00.json", 400, b"/notes/1.json", b"/notes/1.json"
    )


def test_encoded_nul_in_path(gw: GatewayProcess, keys: Keys) -> None:
    refused_with_twin(gw, keys.reader, b"/notes/1%00.json", 400, b"/notes/1.json", b"/notes/1.json")


@pytest.mark.parametrize("target", [b"/notes/1%", b"/notes/1%4", b"/notes/%zz", b"/notes/%%41"])
def test_broken_percent_encoding_in_path(gw: GatewayProcess, keys: Keys, target: bytes) -> None:
    refused_with_twin(gw, keys.reader, target, 400, b"/notes/%41", b"/notes/A")


@pytest.mark.parametrize("query", [b"?q=%zz", b"?q=%4", b"?q=<x>", b"?q=\xc3\xa9"])
def test_broken_query(gw: GatewayProcess, keys: Keys, query: bytes) -> None:
    refused_with_twin(
        gw, keys.reader, b"/notes/1" + query, 400, b"/notes/1?q=%C3%A9", b"/notes/1?q=%C3%A9"
    )


@pytest.mark.parametrize("target", [b"/notes/caf\xc3\xa9", b"/notes/a\tb", b"/notes/a\x7fb"])
def test_raw_non_ascii_and_control_bytes(gw: GatewayProcess, keys: Keys, target: bytes) -> None:
    refused_with_twin(gw, keys.reader, target, 400, b"/notes/caf%c3%a9", b"/notes/caf%C3%A9")


# --- request-target forms (RFC 9112 §3.2) ---------------------------------------------------------


def test_overlong_request_target(gw: GatewayProcess, keys: Keys) -> None:
    # RFC 9112 §3: a request-target longer than the server wishes to parse MUST get 414.
    for size in (8193, 9000, 20000, 70000):
        target = b"/notes/" + b"a" * (size - len(b"/notes/"))
        assert_refused(gw, request(target, api_key(keys.reader)), 414)
    legal = b"/notes/" + b"a" * (8192 - len(b"/notes/"))
    assert_forwarded(gw, request(legal, api_key(keys.reader)), legal)


def test_absolute_form_target(gw: GatewayProcess, keys: Keys) -> None:
    # The policy must not judge "/notes/1" while the host part points elsewhere.
    refused_with_twin(gw, keys.reader, b"http://evil/notes/1", 400, b"/notes/1", b"/notes/1")
    assert_refused(gw, request(b"http://gateway.test/notes/1", api_key(keys.reader)), 400)


def test_authority_form_target(gw: GatewayProcess, keys: Keys) -> None:
    assert_refused(gw, request(b"evil:443", api_key(keys.reader), method=b"CONNECT"), 400)
    assert_refused(gw, request(b"evil:443", api_key(keys.reader)), 400)
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")


def test_asterisk_form_target(gw: GatewayProcess, keys: Keys) -> None:
    assert_refused(gw, request(b"*", api_key(keys.reader), method=b"OPTIONS"), 400)
    assert_refused(gw, request(b"*", api_key(keys.reader)), 400)
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")


@pytest.mark.parametrize("target", [b"/notes/1#frag", b"/notes/1?x=1#frag", b"/admin#/notes/1"])
def test_fragment_in_target(gw: GatewayProcess, keys: Keys, target: bytes) -> None:
    refused_with_twin(gw, keys.reader, target, 400, b"/notes/1?x=1", b"/notes/1?x=1")


# --- normalised but legal: the upstream receives exactly the judged path --------------------------


@pytest.mark.parametrize(
    ("target", "upstream_target"),
    [
        (b"/notes/%7E1", b"/notes/~1"),
        (b"/notes/%7e1", b"/notes/~1"),
        (b"/n%6Ftes/%41", b"/notes/A"),
        (b"/notes/a/./b", b"/notes/a/b"),
        (b"/notes/x/../1", b"/notes/1"),
        (b"/notes/caf%c3%a9", b"/notes/caf%C3%A9"),
        (b"/notes/%252e%252e", b"/notes/%252e%252e"),  # double encoding stays encoded
        (b"/notes/a%20b", b"/notes/a%20b"),
        (b"/notes/1?", b"/notes/1"),
    ],
)
def test_normalised_path_reaches_upstream_exactly(
    gw: GatewayProcess, keys: Keys, target: bytes, upstream_target: bytes
) -> None:
    assert_forwarded(gw, request(target, api_key(keys.reader)), upstream_target)


def test_query_is_not_reencoded_by_the_upstream_client(gw: GatewayProcess, keys: Keys) -> None:
    # An HTTP client that "requotes" URLs would turn %2F into "/" and %3B into ";" on the way out.
    query = b"?path=%2Fetc%2Fpasswd&sep=%3B&t=%7E&plus=a+b&sp=%20"
    assert_forwarded(gw, request(b"/notes/1" + query, api_key(keys.reader)), b"/notes/1" + query)
