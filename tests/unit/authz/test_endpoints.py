"""authz/endpoints.py: the one list of restguard's own endpoints, and which routes name one."""

from __future__ import annotations

import pytest

from restguard.authz.endpoints import OWN_ENDPOINTS, named_endpoint, served_endpoint
from restguard.authz.policy import AmbiguousPath, Route, compile_pattern

# CONTRACT "Authorization server endpoints (gateway listener)", written out again on purpose.
CONTRACT = {
    "/.well-known/oauth-authorization-server": {"GET"},
    "/.well-known/jwks.json": {"GET"},
    "/oauth2/authorize": {"GET"},
    "/oauth2/token": {"POST"},
    "/oauth2/introspect": {"POST"},
    "/oauth2/revoke": {"POST"},
    "/oauth2/device_authorization": {"POST"},
    "/login": {"GET", "POST"},
    "/consent": {"GET", "POST"},
    "/device": {"GET", "POST"},  # the device flow's "one user-code form" (RFC 8628 §3.3)
    "/oauth1/request_token": {"POST"},
    "/oauth1/authorize": {"GET", "POST"},
    "/oauth1/access_token": {"POST"},
    # not in the contract's list: the resource owner's OAuth 1.0a connections, to revoke
    "/oauth1/tokens": {"GET", "POST"},
}


def route(path: str) -> Route:
    segments, subtree = compile_pattern(path)
    return Route(0, path, frozenset({"GET"}), _segments=segments, _subtree=subtree)


def test_every_endpoint_the_contract_promises_is_listed_once() -> None:
    listed = {e.path: set(e.methods) for e in OWN_ENDPOINTS}
    assert len(listed) == len(OWN_ENDPOINTS)
    assert listed == CONTRACT


def test_endpoint_paths_are_in_normal_form() -> None:
    for endpoint in OWN_ENDPOINTS:
        assert compile_pattern(endpoint.path) == (tuple(endpoint.path.split("/")[1:]), False)


def test_this_version_serves_the_jwks_the_metadata_and_the_token_endpoints() -> None:
    assert [e.path for e in OWN_ENDPOINTS if e.served] == [
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/oauth2/authorize",
        "/oauth2/token",
        "/oauth2/introspect",
        "/oauth2/revoke",
        "/oauth2/device_authorization",
        "/login",
        "/consent",
        "/device",
        "/oauth1/request_token",
        "/oauth1/authorize",
        "/oauth1/access_token",
        "/oauth1/tokens",
    ]
    assert all(e.served for e in OWN_ENDPOINTS)
    for page in ("/login", "/consent", "/device", "/oauth1/authorize", "/oauth1/tokens"):
        found = served_endpoint(page)
        assert found is not None and found.allow_header == "GET, POST, HEAD"
        assert found.body_limit == 16 * 1024
    jwks = served_endpoint("/.well-known/jwks.json")
    assert jwks is not None and jwks.allows("GET") and jwks.allows("HEAD")
    assert not jwks.allows("POST") and not jwks.allows("OPTIONS")
    assert jwks.allow_header == "GET, HEAD"
    assert jwks.body_limit == 0
    metadata = served_endpoint("/.well-known/oauth-authorization-server")
    assert metadata is not None and metadata.allow_header == "GET, HEAD"
    assert metadata.body_limit == 0
    token = served_endpoint("/oauth2/token")
    assert token is not None and token.allows("POST") and not token.allows("GET")
    assert token.allow_header == "POST"
    assert token.body_limit == 16 * 1024
    device = served_endpoint("/oauth2/device_authorization")
    assert device is not None and device.allow_header == "POST"
    assert device.body_limit == 16 * 1024


def test_only_served_endpoints_read_a_body() -> None:
    assert all(e.served for e in OWN_ENDPOINTS if e.body_limit)


@pytest.mark.parametrize(
    "path",
    ["/oauth1", "/oauth1/token", "/JWKS.json", "/", "/devices", "/device/x"],
)
def test_paths_not_served_are_left_to_the_policy(path: str) -> None:
    assert served_endpoint(path) is None


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/JWKS.json",
        "/.well-known/jwks.json/",
        "/OAuth2/token",
        "/oauth2/token/",
        "/.well-known/OAuth-Authorization-Server",
    ],
)
def test_spellings_of_a_served_path_are_ambiguous(path: str) -> None:
    with pytest.raises(AmbiguousPath):
        served_endpoint(path)
    assert served_endpoint("/.well-known/jwks.json") is not None
    assert served_endpoint("/.well-known/jwks") is None


NAMING = [
    ("/login", "/login"),
    ("/consent", "/consent"),
    ("/device", "/device"),
    ("/Device/", "/device"),
    ("/oauth2/token", "/oauth2/token"),
    ("/oauth1/access_token", "/oauth1/access_token"),
    ("/.well-known/jwks.json", "/.well-known/jwks.json"),
    ("/.well-known/oauth-authorization-server", "/.well-known/oauth-authorization-server"),
    ("/Login", "/login"),  # case-insensitive upstream routers
    ("/OAUTH2/Token", "/oauth2/token"),
    ("/login/", "/login"),  # one trailing slash
    ("/login/**", "/login"),  # a subtree rooted at it
    ("/.well-known/jwks.json/**", "/.well-known/jwks.json"),
]


@pytest.mark.parametrize(("path", "endpoint"), NAMING)
def test_a_route_naming_an_endpoint_literally(path: str, endpoint: str) -> None:
    found = named_endpoint(route(path))
    assert found is not None and found.path == endpoint


NOT_NAMING = [
    "/**",
    "/{tenant}/**",
    "/{page}",
    "/{a}/{b}",
    "/oauth2/**",
    "/oauth2/{action}",
    "/.well-known/**",
    "/{x}/jwks.json",
    "/.well-known/security.txt",
    "/.well-known/acme-challenge/**",
    "/oauth2/token/extra",
    "/logins",
    "/api/login",
    "/notes/**",
    "/",
]


@pytest.mark.parametrize("path", NOT_NAMING)
def test_patterns_and_other_paths_name_no_endpoint(path: str) -> None:
    assert named_endpoint(route(path)) is None
