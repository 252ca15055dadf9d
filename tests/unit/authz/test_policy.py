"""authz/policy.py: first match wins, default deny, patterns, reserved endpoints."""

from __future__ import annotations

import pytest

from restguard.authz.policy import PatternError, Policy, Route, compile_pattern
from restguard.errors import NotFound


def route(index: int, path: str, methods: tuple[str, ...] = ("GET",), **fields: object) -> Route:
    segments, subtree = compile_pattern(path)
    return Route(index, path, frozenset(methods), _segments=segments, _subtree=subtree, **fields)  # type: ignore[arg-type]


def matches(pattern: str, path: str) -> bool:
    return route(0, pattern).matches_path(path)


# --- patterns -------------------------------------------------------------------------------------

MATCHING = [
    ("/", "/", True),
    ("/", "/a", False),
    ("/notes", "/notes", True),
    ("/notes", "/notes/", False),
    ("/notes", "/notesx", False),
    ("/notes", "/Notes", False),
    ("/notes/", "/notes/", True),
    ("/notes/", "/notes", False),
    # {param}: exactly one non-empty segment
    ("/notes/{id}", "/notes/7", True),
    ("/notes/{id}", "/notes/abc%20d", True),
    ("/notes/{id}", "/notes/", False),
    ("/notes/{id}", "/notes", False),
    ("/notes/{id}", "/notes/7/", False),
    ("/notes/{id}", "/notes/7/x", False),
    ("/{a}/{b}", "/x/y", True),
    ("/{a}/{b}", "/x/", False),
    ("/users/{id}/notes", "/users/1/notes", True),
    ("/users/{id}/notes", "/users/1/other", False),
    # /**: the prefix itself and any depth below it
    ("/notes/**", "/notes", True),
    ("/notes/**", "/notes/", True),
    ("/notes/**", "/notes/7", True),
    ("/notes/**", "/notes/7/comments/3/", True),
    ("/notes/**", "/notesx", False),
    ("/notes/**", "/", False),
    ("/notes/**", "/other/notes", False),
    ("/users/{id}/**", "/users/1", True),
    ("/users/{id}/**", "/users/1/a/b", True),
    ("/users/{id}/**", "/users/", False),
    ("/**", "/", True),
    ("/**", "/anything/at/all", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), MATCHING)
def test_matches_path(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


def test_compile_pattern_shapes() -> None:
    assert compile_pattern("/notes/{id}") == (("notes", None), False)
    assert compile_pattern("/notes/**") == (("notes",), True)
    assert compile_pattern("/**") == ((), True)
    assert compile_pattern("/caf%C3%A9") == (("caf%C3%A9",), False)


REFUSED_PATTERNS = [
    "notes",  # no leading slash
    "",
    "/notes/*",
    "/notes/**/x",
    "/notes/a**",
    "/**/**",
    "/notes/{id",
    "/notes/id}",
    "/notes/{}",
    "/notes/{1d}",
    "/notes/{a-b}",
    "/notes/x{id}",
    "/a//b",  # empty segment
    "/a/./b",  # dot segments: no request could ever match them
    "/a/../b",
    "/..",
    "/%7euser",  # not in normal form: requests normalise to /~user
    "/caf%c3%a9",  # lower-case hex is not the normal form
    "/a%2Fb",  # encoded slash
    "/a;b",
    "/a b",
    "/café",
    "/a//**",
    "/a/**/",
]


@pytest.mark.parametrize("pattern", REFUSED_PATTERNS)
def test_compile_pattern_refuses(pattern: str) -> None:
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    assert str(caught.value)  # the message says why


def test_pattern_error_names_the_pattern() -> None:
    with pytest.raises(PatternError, match=r"/notes/\*\*/x"):
        compile_pattern("/notes/**/x")


# --- the policy -----------------------------------------------------------------------------------


def test_first_match_wins() -> None:
    policy = Policy(
        [
            route(0, "/notes/{id}", ("GET",)),
            route(1, "/notes/**", ("GET", "HEAD")),
            route(2, "/notes/**", ("POST",)),
            route(3, "/**", ("GET",)),
        ]
    )
    assert policy.match("GET", "/notes/7").index == 0
    assert policy.match("GET", "/notes").index == 1
    assert policy.match("GET", "/notes/7/x").index == 1
    assert policy.match("HEAD", "/notes/7").index == 1
    assert policy.match("POST", "/notes/7").index == 2
    assert policy.match("GET", "/elsewhere").index == 3


def test_earlier_broad_route_shadows_later_narrow_one() -> None:
    policy = Policy([route(0, "/**", ("GET",)), route(1, "/notes/{id}", ("GET",))])
    assert policy.match("GET", "/notes/7").index == 0


def test_method_filtering() -> None:
    policy = Policy([route(0, "/notes/{id}", ("GET",)), route(1, "/notes/{id}", ("DELETE",))])
    assert policy.match("DELETE", "/notes/7").index == 1
    for method in ("POST", "PUT", "PATCH", "HEAD", "OPTIONS", "get", "TRACE"):
        with pytest.raises(NotFound):
            policy.match(method, "/notes/7")


def test_default_deny() -> None:
    policy = Policy([route(0, "/notes/**", ("GET",))])
    with pytest.raises(NotFound) as caught:
        policy.match("GET", "/admin")
    err = caught.value
    assert err.status == 404
    assert err.error == "not_found"
    assert "GET /admin" in err.debug
    assert "/admin" not in err.description  # the public description stays generic


def test_empty_policy_denies_everything() -> None:
    with pytest.raises(NotFound):
        Policy([]).match("GET", "/")


# --- reserved endpoints ---------------------------------------------------------------------------

OVERLAPPING = [
    "/login",
    "/consent",
    "/{x}",
    "/**",
    "/{a}/{b}",
    "/oauth2/anything",
    "/oauth2/**",
    "/oauth1/request_token",
    "/oauth1/{x}",
    "/.well-known/**",
    "/.well-known/jwks.json",
    "/{x}/jwks.json",
    "/consent/**",
    "/login/**",
]


@pytest.mark.parametrize("pattern", OVERLAPPING)
def test_overlaps_reserved(pattern: str) -> None:
    assert Policy.overlaps_reserved(route(0, pattern)) is not None


@pytest.mark.parametrize(
    "pattern", ["/{x}/authorize", "/{x}/access_token", "/{x}/introspect", "/{x}/revoke"]
)
def test_param_routes_capturing_other_endpoints_overlap(pattern: str) -> None:
    assert Policy.overlaps_reserved(route(0, pattern)) is not None


NOT_OVERLAPPING = [
    "/notes/**",
    "/notes/{id}",
    "/logins",
    "/api/login",
    "/well-known/x",
    "/oauth3/token",
    "/{x}/notes",
    "/",
]


@pytest.mark.parametrize("pattern", NOT_OVERLAPPING)
def test_does_not_overlap_reserved(pattern: str) -> None:
    assert Policy.overlaps_reserved(route(0, pattern)) is None


def test_overlap_names_the_endpoint() -> None:
    assert Policy.overlaps_reserved(route(0, "/login")) == "/login"
    assert Policy.overlaps_reserved(route(0, "/oauth2/anything")) == "/oauth2/**"
    assert (Policy.overlaps_reserved(route(0, "/.well-known/**")) or "").startswith("/.well-known/")
