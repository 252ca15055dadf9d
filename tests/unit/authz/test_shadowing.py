"""authz/shadowing.py: containment is exact, and dead routes are found (CONTRACT: a duplicate
route, or one an earlier route shadows completely, is a configuration error)."""

from __future__ import annotations

import itertools

import pytest

from restguard.authz.policy import AmbiguousPath, Policy, Route, compile_pattern
from restguard.authz.shadowing import covers, find_shadowed, same_path
from restguard.errors import NotFound


def route(index: int, path: str, *methods: str) -> Route:
    segments, subtree = compile_pattern(path)
    return Route(index, path, frozenset(methods or ("GET",)), _segments=segments, _subtree=subtree)


COVERS = [
    ("/notes/**", "/notes/{id}", True),
    ("/notes/**", "/notes", True),
    ("/notes/**", "/notes/", True),
    ("/notes/**", "/notes/a/b/**", True),
    ("/notes/**", "/notes/**", True),
    ("/**", "/", True),
    ("/**", "/{a}/{b}/**", True),
    ("/{x}", "/notes", True),
    ("/{x}", "/{y}", True),
    ("/a/{x}", "/a/b", True),
    ("/{x}/**", "/a/b/c", True),
    ("/notes/{id}", "/notes/**", False),
    ("/notes", "/notes/**", False),
    ("/notes/{id}", "/notes/", False),  # {id} is never empty
    ("/{x}", "/", False),
    ("/a/b", "/a/{x}", False),
    ("/a", "/b", False),
    ("/a/b", "/a", False),
    ("/a/**", "/b/**", False),
    ("/a/b/**", "/a/**", False),
]


@pytest.mark.parametrize(("earlier", "later", "expected"), COVERS)
def test_covers(earlier: str, later: str, expected: bool) -> None:
    assert covers(route(0, earlier), route(1, later)) is expected


# Exhaustive cross-check: on a universe of patterns and paths over a small alphabet, covers()
# is exactly "every path the later pattern matches, the earlier one matches too".
_LITERALS = ("a", "b")
_PATHS = ["/"] + [
    "/" + "/".join(parts) + tail
    for n in range(1, 5)
    for parts in itertools.product(("a", "b", "c"), repeat=n)
    for tail in ("", "/")
]


def _patterns() -> list[str]:
    out = ["/", "/**"]
    for n in range(1, 3):
        for parts in itertools.product((*_LITERALS, "{p}"), repeat=n):
            body = "/" + "/".join(parts)
            out += [body, body + "/", body + "/**"]
    return out


def test_covers_is_exact_on_a_finite_universe() -> None:
    patterns = [route(i, p) for i, p in enumerate(_patterns())]
    matched = {r.path: {p for p in _PATHS if r.matches_path(p)} for r in patterns}
    for a, b in itertools.product(patterns, repeat=2):
        assert covers(a, b) is (matched[b.path] <= matched[a.path]), (a.path, b.path)


def test_same_path_ignores_parameter_names() -> None:
    assert same_path(route(0, "/notes/{id}"), route(1, "/notes/{note}"))
    assert not same_path(route(0, "/notes/{id}"), route(1, "/notes/**"))


def shadowed(*routes: Route) -> list[tuple[int, tuple[int, ...], bool]]:
    return [
        (s.route.index, tuple(r.index for r in s.by), s.duplicate) for s in find_shadowed(routes)
    ]


def test_subtree_before_a_param_route_shadows_it() -> None:
    assert shadowed(route(0, "/notes/**"), route(1, "/notes/{id}")) == [(1, (0,), False)]


def test_route_with_more_methods_shadows_a_narrower_one() -> None:
    routes = (route(0, "/a/{x}", "GET", "POST"), route(1, "/a/b", "GET"))
    assert shadowed(*routes) == [(1, (0,), False)]


def test_duplicates_are_named_as_such() -> None:
    assert shadowed(route(0, "/notes/{id}"), route(1, "/notes/{note}")) == [(1, (0,), True)]
    # HEAD is decided as GET: listing it does not make a route different
    assert shadowed(route(0, "/x", "GET"), route(1, "/x", "GET", "HEAD")) == [(1, (0,), True)]


def test_methods_shadowed_by_different_earlier_routes() -> None:
    routes = (
        route(0, "/a/{x}", "GET"),
        route(1, "/a/**", "POST"),
        route(2, "/a/b", "GET", "POST"),
    )
    assert shadowed(*routes) == [(2, (0, 1), False)]


@pytest.mark.parametrize(
    "routes",
    [
        (("/notes/{id}", "GET"), ("/notes/**", "GET")),  # specific first: both live
        (("/a/{x}", "GET"), ("/a/b", "POST")),  # another method
        (("/a/{x}", "GET"), ("/a/b", "GET", "POST")),  # POST still reaches it
        (("/notes/{id}", "GET"), ("/notes/", "GET")),  # {id} never matches an empty segment
        (("/{x}", "GET"), ("/", "GET")),
        (("/a/b", "GET"), ("/a/{x}", "GET")),
    ],
)
def test_routes_that_still_decide_something_are_fine(routes: tuple[tuple[str, ...], ...]) -> None:
    assert shadowed(*(route(i, path, *m) for i, (path, *m) in enumerate(routes))) == []


def test_a_shadowed_route_never_decides_a_request() -> None:
    routes = [route(0, "/a/{x}", "GET", "POST"), route(1, "/a/**", "DELETE"), route(2, "/a/b")]
    assert shadowed(*routes) == [(2, (0,), False)]
    policy = Policy(routes)
    for path in _PATHS:
        for method in ("GET", "HEAD", "POST", "DELETE"):
            try:
                assert policy.match(method, path).index != 2
            except (NotFound, AmbiguousPath):
                pass
