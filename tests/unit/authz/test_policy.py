"""authz/policy.py: first match wins, default deny, patterns."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restguard.authz.policy import (
    AmbiguousPath,
    PatternError,
    Policy,
    Route,
    compile_pattern,
    fold_path,
)
from restguard.errors import InvalidRequest, NotFound


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
    assert compile_pattern("/caf%C3%A9") == (("café",), False)  # matched decoded


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
    assert policy.match("HEAD", "/notes/7").index == 0  # HEAD is decided as GET
    assert policy.match("POST", "/notes/7").index == 2
    assert policy.match("GET", "/elsewhere").index == 3


def test_earlier_broad_route_shadows_later_narrow_one() -> None:
    policy = Policy([route(0, "/**", ("GET",)), route(1, "/notes/{id}", ("GET",))])
    assert policy.match("GET", "/notes/7").index == 0


def test_method_filtering() -> None:
    policy = Policy([route(0, "/notes/{id}", ("GET",)), route(1, "/notes/{id}", ("DELETE",))])
    assert policy.match("DELETE", "/notes/7").index == 1
    for method in ("POST", "PUT", "PATCH", "OPTIONS", "get", "head", "TRACE"):
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


# --- HEAD is decided as GET ----------------------------------------------------------------------


def test_head_is_decided_exactly_as_get() -> None:
    policy = Policy([route(0, "/notes/{id}", ("GET",)), route(1, "/notes/**", ("POST",))])
    assert policy.match("HEAD", "/notes/7") is policy.match("GET", "/notes/7")
    with pytest.raises(NotFound) as caught:
        policy.match("HEAD", "/notes")  # only POST is allowed there, so HEAD is not either
    assert "GET /notes" in caught.value.debug


def test_a_route_listing_only_head_never_matches() -> None:
    # The config refuses such a route; the policy alone must not let HEAD reach a GET handler
    # that no route allowed.
    policy = Policy([route(0, "/notes", ("HEAD",))])
    with pytest.raises(NotFound):
        policy.match("HEAD", "/notes")
    with pytest.raises(NotFound):
        policy.match("GET", "/notes")


# --- lenient routers: letter case and one trailing slash -----------------------------------------


@pytest.mark.parametrize(
    ("path", "folded"),
    [
        ("/", "/"),
        ("/Notes", "/notes"),
        ("/notes/", "/notes"),
        ("/NOTES/7/", "/notes/7"),
        ("/a/b//", "/a/b/"),  # one slash only
        ("/caf%C3%A9", "/caf%c3%a9"),
        ("/x", "/x"),
    ],
)
def test_fold_path(path: str, folded: str) -> None:
    assert fold_path(path) == folded


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("/admin", "/Admin"),
        ("/admin", "/ADMIN"),
        ("/admin", "/admin/"),
        ("/admin", "/Admin/"),
        ("/notes/{id}", "/Notes/7"),
        ("/notes/{id}", "/notes/7/"),
        ("/notes/**", "/NOTES"),
        ("/notes/**", "/Notes/7/x"),
        ("/users/{id}/keys", "/users/1/KEYS/"),
        ("/Mixed/Case", "/mixed/case"),
        ("/caf%C3%A9", "/CAF%C3%A9"),
        ("/notes/export", "/notes/export.json"),  # Rails, Spring MVC, DRF format suffixes
        ("/notes/export", "/notes/export.tar.gz"),
        ("/notes/export", "/Notes/Export.JSON/"),
        ("/notes/export", "/notes/export."),
        ("/notes/{id}/export", "/notes/7/export.csv"),
        ("/report.v2", "/report.v2.json"),
        ("/api/admin/**", "/api/admin.json"),  # a subtree covers its prefix itself
        ("/api/admin/**", "/API/Admin.csv/"),
    ],
)
def test_path_folding_onto_an_earlier_route_is_ambiguous(pattern: str, path: str) -> None:
    policy = Policy([route(0, pattern, ("GET",)), route(1, "/**", ("GET", "POST"), public=True)])
    for method in ("GET", "POST", "HEAD"):
        with pytest.raises(AmbiguousPath) as caught:
            policy.match(method, path)
        err = caught.value
        assert isinstance(err, InvalidRequest)
        assert (err.status, err.error) == (400, "invalid_request")
        assert pattern in err.debug and unquote(path) in err.debug  # (judged decoded)
        assert path not in err.description  # the public description stays generic


def test_exact_paths_are_not_ambiguous() -> None:
    policy = Policy([route(0, "/admin", ("GET",)), route(1, "/notes/{id}", ("GET",))])
    assert policy.match("GET", "/admin").index == 0
    assert policy.match("GET", "/notes/ABC").index == 1  # a parameter's case is its own
    assert policy.match("GET", "/notes/7.json").index == 1  # ... and so is its extension
    with pytest.raises(NotFound):
        policy.match("GET", "/adminx")  # an extension starts with "."
    with pytest.raises(NotFound):
        policy.match("GET", "/admin.json/x")  # in the last segment only
    with pytest.raises(NotFound):
        policy.match("GET", "/other/")  # folds onto nothing


def test_an_earlier_route_for_another_method_still_counts() -> None:
    # The upstream's handler for DELETE /admin would serve DELETE /ADMIN too.
    policy = Policy([route(0, "/admin", ("DELETE",)), route(1, "/{x}", ("GET", "DELETE"))])
    with pytest.raises(AmbiguousPath):
        policy.match("DELETE", "/ADMIN")
    with pytest.raises(AmbiguousPath):
        policy.match("GET", "/ADMIN")
    # An exact match of the earlier route for another method is no ambiguity: the later route
    # decides the method it allows.
    assert policy.match("GET", "/admin").index == 1


def test_an_exact_match_on_a_later_route_does_not_hide_an_earlier_fold() -> None:
    policy = Policy([route(0, "/admin/**", ("GET",)), route(1, "/Admin/**", ("GET",))])
    assert policy.match("GET", "/admin/x").index == 0
    with pytest.raises(AmbiguousPath):
        policy.match("GET", "/Admin/x")


def test_later_routes_do_not_make_an_earlier_match_ambiguous() -> None:
    policy = Policy([route(0, "/**", ("GET",)), route(1, "/admin", ("GET",))])
    assert policy.match("GET", "/ADMIN/").index == 0


def test_matches_folded_compares_literals_case_insensitively() -> None:
    r = route(0, "/Notes/{id}/Items")
    assert r.matches_folded("/notes/7/items")
    assert not r.matches_folded("/notes/7")
    assert not r.matches_path("/notes/7/items")


# A lenient router, written independently of the policy: a pattern as the regular expression
# Express (path-to-regexp, ``sensitive: false``, ``strict: false``) builds for it, with the
# format suffix Rails adds to every route ("(.:format)") and Spring MVC's "export.*".
def _regex(pattern: str, *, lenient: bool) -> re.Pattern[str]:
    body, subtree = (pattern[:-3], True) if pattern.endswith("/**") else (pattern, False)
    parts = [r"[^/]+" if s.startswith("{") else re.escape(s) for s in body.split("/")[1:]]
    text = "".join("/" + p for p in parts)
    suffix = bool(parts) and not parts[-1].startswith("[^/]")
    if subtree:
        text += r"(?:\.[^/]*/?|/.*)?" if lenient and suffix else r"(?:/.*)?"
    elif lenient:
        text += r"(?:\.[^/]*)?/?" if suffix else "/?"
    text = text or "/"
    return re.compile(f"^{text}$", re.IGNORECASE if lenient else 0)


_SEGMENT = st.sampled_from(["a", "A", "b", "B", "ab", "aB", "{id}"])
_PATTERN = st.builds(
    lambda segs, subtree: ("/" + "/".join(segs) + ("/**" if subtree else "")).replace("//", "/"),
    st.lists(_SEGMENT, max_size=3),
    st.booleans(),
)
_ROUTES = st.lists(
    st.tuples(_PATTERN, st.sets(st.sampled_from(["GET", "POST"]), min_size=1)), max_size=5
)
_PATH = st.builds(
    lambda segs, slash: "/" + "/".join(segs) + ("/" if slash and segs else ""),
    st.lists(
        st.sampled_from(["a", "A", "b", "B", "ab", "Ab", "c", "a.json", "A.b", "ab.x.y", "a."]),
        max_size=4,
    ),
    st.booleans(),
)


@given(_ROUTES, _PATH, st.sampled_from(["GET", "POST", "HEAD"]))
def test_policy_never_picks_a_route_a_lenient_router_would_not(
    specs: list[tuple[str, set[str]]], path: str, method: str
) -> None:
    """The route the policy decides by is the one a case-insensitive, trailing-slash- and
    format-suffix-lenient router dispatches to (the first whose lenient regex matches);
    anything else is refused."""
    routes = [route(i, p, tuple(sorted(m))) for i, (p, m) in enumerate(specs)]
    policy = Policy(routes)
    want = "GET" if method == "HEAD" else method
    expected: object = NotFound
    for r in routes:
        if _regex(r.path, lenient=False).match(path):
            if want in r.methods:
                expected = r.index
                break
            continue
        if _regex(r.path, lenient=True).match(path):
            expected = AmbiguousPath
            break
    if isinstance(expected, int):
        assert policy.match(method, path).index == expected
    else:
        with pytest.raises(expected):  # type: ignore[call-overload]
            policy.match(method, path)


@given(_PATH)
def test_fold_path_is_lower_case_without_a_trailing_slash_and_idempotent(path: str) -> None:
    folded = fold_path(path)
    assert folded == folded.lower()
    assert folded == "/" or not folded.endswith("/")
    assert fold_path(folded) == folded
    assert folded in (path.lower(), path.lower()[:-1])


# --- covers: does the policy decide every path of an app's endpoint? -----------------------------


@pytest.mark.parametrize(
    ("route_path", "endpoint", "covered"),
    [
        ("/notes/{id}", "/notes/{note_id}", True),
        ("/notes/{id}", "/notes/7", True),  # a parameter covers a literal
        ("/notes/7", "/notes/{id}", False),  # ... not the other way round
        ("/notes/**", "/notes/{id}", True),
        ("/notes/**", "/notes", True),  # a subtree covers its prefix
        ("/notes/**", "/notes/{id}/comments/{c}", True),
        ("/notes/**", "/notes/**", True),
        ("/notes/{id}", "/notes/**", False),  # one segment does not cover a whole subtree
        ("/notes/{id}", "/notes/{id}/x", False),
        ("/notes/{id}/x", "/notes/{id}", False),
        ("/**", "/anything/{at}/all", True),
        ("/**", "/", True),
        ("/", "/", True),
        ("/Notes/{id}", "/notes/{id}", False),  # literals compare exactly
        ("/notes/{id}", "not a pattern", False),
    ],
)
def test_covers(route_path: str, endpoint: str, covered: bool) -> None:
    policy = Policy([route(0, route_path, ("GET", "POST"))])
    assert policy.covers(endpoint, "GET") is covered
    assert policy.covers(endpoint, "HEAD") is covered  # decided as GET
    assert policy.covers(endpoint, "DELETE") is False


def test_covers_by_any_route_for_the_method() -> None:
    policy = Policy([route(0, "/a/{x}", ("GET",)), route(1, "/a/**", ("POST",))])
    assert policy.covers("/a/{x}", "GET") and policy.covers("/a/{x}", "POST")
    assert not policy.covers("/a/{x}/b", "GET") and policy.covers("/a/{x}/b", "POST")
