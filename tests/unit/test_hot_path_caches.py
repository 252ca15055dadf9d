"""The hot path's remembered results (``edge/view.py``'s targets, ``Policy.match``'s routes)
are exactly what is computed without them: for any request, in any order, also the refusals
(never remembered), and the caches stay bounded whatever stream of requests arrives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard.authz import endpoints
from restguard.authz.endpoints import OWN_ENDPOINTS
from restguard.authz.paths import normalise_path, split_target
from restguard.authz.policy import Policy, Route, compile_pattern
from restguard.edge import view as view_module
from restguard.errors import AuthError

# Bytes that reach the path rules from every side: encodings (of "/", ".", "%", NUL),
# dot segments, empty segments, case, a query, a fragment, non-ASCII.
PIECES = [b"/", b"a", b"A", b"b", b".", b"..", b"%2e", b"%2F", b"%25", b"%00", b"%7e", b"?"]
PIECES += [b"x=1", b"#", b"\xc3\xa9", b"%C3%A9", b";", b"\\", b"~", b"notes", b"1.json", b"*"]
targets = st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map(
    lambda p: b"/" + b"".join(p)
)


def outcome(fn, *args, **kw):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(*args, **kw))
    except AuthError as exc:
        return ("refused", type(exc), exc.debug)


def uncached(target: bytes, refuse: bool) -> tuple[bytes, bytes, str]:
    raw_path, query = split_target(target)
    return raw_path, query, normalise_path(raw_path, refuse_dot_segments=refuse)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(targets, st.booleans()), min_size=1, max_size=12))
def test_remembered_targets_are_what_is_computed(requests: list[tuple[bytes, bool]]) -> None:
    for target, refuse in requests + requests:  # (the second time from the cache)
        got = outcome(view_module._split_and_normalise, target, refuse)
        assert got == outcome(uncached, target, refuse)


def test_remembered_targets_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(view_module, "_targets", ({}, {}))
    for n in range(3 * view_module._REMEMBERED_TARGETS):
        view_module._split_and_normalise(b"/n/%d" % n, False)
        assert len(view_module._targets[0]) <= view_module._REMEMBERED_TARGETS
    long = b"/" + b"a" * view_module._REMEMBERED_TARGET_BYTES
    view_module._split_and_normalise(long, False)
    assert long not in view_module._targets[0]


def route(index: int, path: str, methods: tuple[str, ...]) -> Route:
    segments, subtree = compile_pattern(path)
    return Route(index, path, frozenset(methods), _segments=segments, _subtree=subtree)  # type: ignore[call-arg]


PATTERNS = ["/notes/{id}", "/notes/**", "/Admin", "/a/b", "/a/**", "/**"]
paths = st.lists(st.sampled_from(["notes", "Notes", "a", "b", "1", "1.json", "admin", ""]),
                 max_size=4).map(lambda p: "/" + "/".join(p))  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(PATTERNS), st.sampled_from(["GET", "POST"])), max_size=5),
    st.lists(st.tuples(st.sampled_from(["GET", "HEAD", "POST", "PUT"]), paths), max_size=12),
)
def test_remembered_matches_are_what_is_computed(
    table: list[tuple[str, str]], requests: list[tuple[str, str]]
) -> None:
    policy = Policy([route(i, p, (m,)) for i, (p, m) in enumerate(table)])
    fresh = Policy(list(policy.routes))
    for method, path in requests + requests:
        expected = outcome(fresh._match, "GET" if method == "HEAD" else method, path)
        assert outcome(policy.match, method, path) == expected


def test_remembered_matches_stay_bounded() -> None:
    policy = Policy([route(0, "/**", ("GET",))])
    for n in range(10_000):
        assert policy.match("GET", f"/n/{n}").path == "/**"
        assert len(policy._matched) <= 4096
    assert policy.match("GET", "/" + "a" * 300).path == "/**"
    assert ("GET", "/" + "a" * 300) not in policy._matched


@settings(max_examples=600, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [e.path for e in OWN_ENDPOINTS]
            + [e.path.upper() for e in OWN_ENDPOINTS]
            + [e.path + "/" for e in OWN_ENDPOINTS]
            + ["/", "/public/x", "/OAUTH2", "/oauth2/token/x", "/.well-known/x"]
        ),
        max_size=12,
    )
)
def test_remembered_own_endpoints_are_what_is_computed(requested: list[str]) -> None:
    """``served_endpoint`` remembers only paths that are no endpoint and fold onto none."""
    for path in requested + requested:
        remembered = outcome(endpoints.served_endpoint, path)  # (from the cache, once seen)
        kept = set(endpoints._NOT_SERVED)
        endpoints._NOT_SERVED.clear()
        assert remembered == outcome(endpoints.served_endpoint, path)
        endpoints._NOT_SERVED.update(kept)
