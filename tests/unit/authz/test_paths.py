"""authz/paths.py: the one normaliser, table-driven, plus an idempotence property loop."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restguard.authz.paths import MAX_TARGET_BYTES, normalise_path, normalise_target, split_target
from restguard.errors import InvalidRequest

# --- accepted paths -------------------------------------------------------------------------------

NORMALISED = [
    # already normal
    (b"/", "/"),
    (b"/notes", "/notes"),
    (b"/notes/", "/notes/"),
    (b"/notes/7", "/notes/7"),
    (b"/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="),
    # RFC 3986 §6.2.2.2: percent-encoded unreserved characters are decoded
    (b"/%41%62%5A%7a", "/AbZz"),
    (b"/%30%39", "/09"),
    (b"/a%2Db%5Fc%7Ed", "/a-b_c~d"),
    (b"/%7e%7E", "/~~"),
    # RFC 3986 §6.2.2.1: kept encodings get upper-case hex
    (b"/caf%c3%a9", "/caf%C3%A9"),
    (b"/caf%C3%A9", "/caf%C3%A9"),
    (b"/a%20b", "/a%20b"),
    (b"/%25", "/%25"),
    (b"/%3f%23%3d", "/%3F%23%3D"),
    (b"/%3a%40", "/%3A%40"),
    # RFC 3986 §5.2.4 remove_dot_segments examples that stay within the root
    (b"/a/b/c/./../../g", "/a/g"),
    (b"/mid/content=5/../6", "/mid/6"),
    # more dot segments
    (b"/a/./b", "/a/b"),
    (b"/a/b/../c", "/a/c"),
    (b"/a/b/..", "/a/"),
    (b"/a/b/.", "/a/b/"),
    (b"/a/..", "/"),
    (b"/a/../b/../c", "/c"),
    (b"/.", "/"),
    (b"/./", "/"),
    (b"/./a", "/a"),
    (b"/a/./", "/a/"),
    (b"/a/b/c/../../..", "/"),
    # dot-like segments that are not dot segments
    (b"/a/.../b", "/a/.../b"),
    (b"/a/..b/c", "/a/..b/c"),
    (b"/a/.b", "/a/.b"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALISED, ids=[r.decode() for r, _ in NORMALISED])
def test_normalise_path(raw: bytes, expected: str) -> None:
    assert normalise_path(raw) == expected


TARGETS = [
    (b"/notes", ("/notes", b"")),
    (b"/notes?", ("/notes", b"")),
    (b"/notes?a=1&b=2", ("/notes", b"a=1&b=2")),
    (b"/n%6ftes/./7?x=%2f", ("/notes/7", b"x=%2f")),  # the query is kept byte for byte
    (b"/a?x=/?;:@", ("/a", b"x=/?;:@")),
    (b"/a?x=%c3%a9", ("/a", b"x=%c3%a9")),
]


@pytest.mark.parametrize(("target", "expected"), TARGETS)
def test_normalise_target(target: bytes, expected: tuple[str, bytes]) -> None:
    assert normalise_target(target) == expected


# --- refusals: every reason -----------------------------------------------------------------------

REFUSED_PATHS = [
    (b"", "path must start with '/'"),
    (b"notes", "path must start with '/'"),
    (b"/a%2fb", "encoded slash, backslash, dot or NUL"),
    (b"/a%2Fb", "encoded slash, backslash, dot or NUL"),
    (b"/a%5cb", "encoded slash, backslash, dot or NUL"),
    (b"/a%5Cb", "encoded slash, backslash, dot or NUL"),
    (b"/a/%2e%2e/b", "encoded slash, backslash, dot or NUL"),
    (b"/a/%2E", "encoded slash, backslash, dot or NUL"),
    (b"/a%00", "encoded slash, backslash, dot or NUL"),
    (b"/a%", "broken percent-encoding"),
    (b"/a%4", "broken percent-encoding"),
    (b"/a%zz", "broken percent-encoding"),
    (b"/a%g1", "broken percent-encoding"),
    (b"/a%%41", "broken percent-encoding"),
    (b"/a\\b", "backslash"),
    (b"/a;b=1", "';' path parameters"),
    (b"/public/..%3B/x", "encoded ';'"),
    (b"/a%3bb", "encoded ';'"),
    (b"/a/b;", "';' path parameters"),
    (b"/a\x00b", "character not allowed in a path"),
    (b"/a\tb", "character not allowed in a path"),
    (b"/a\rb", "character not allowed in a path"),
    (b"/a\x7fb", "character not allowed in a path"),
    (b"/a b", "character not allowed in a path"),
    (b'/a"b', "character not allowed in a path"),
    (b"/a<b>", "character not allowed in a path"),
    (b"/a?b", "character not allowed in a path"),
    (b"/a#b", "character not allowed in a path"),
    (b"/caf\xc3\xa9", "character not allowed in a path"),
    (b"/a//b", "empty path segment"),
    (b"//a", "empty path segment"),
    (b"//", "empty path segment"),
    (b"/..", "dot segment above the root"),
    (b"/../a", "dot segment above the root"),
    (b"/a/../..", "dot segment above the root"),
    (b"/a/../../b", "dot segment above the root"),
    (b"/./..", "dot segment above the root"),
]


@pytest.mark.parametrize(("raw", "reason"), REFUSED_PATHS, ids=[repr(r) for r, _ in REFUSED_PATHS])
def test_normalise_path_refuses(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalise_path(raw)
    err = caught.value
    assert err.debug == reason
    assert err.status == 400
    assert err.error == "invalid_request"
    assert reason in err.description


REFUSED_TARGETS = [
    (b"http://example.com/notes", "only origin-form request targets are accepted"),
    (b"example.com:443", "only origin-form request targets are accepted"),
    (b"*", "only origin-form request targets are accepted"),
    (b"", "only origin-form request targets are accepted"),
    (b"/a#frag", "fragment in request target"),
    (b"/a?b#frag", "fragment in request target"),
    (b"/a?x y", "character not allowed in the query"),
    (b"/a?x=\x00", "character not allowed in the query"),
    (b'/a?x="', "character not allowed in the query"),
    (b"/a?x=\xc3\xa9", "character not allowed in the query"),
    (b"/a?x=%zz", "broken percent-encoding"),
    (b"/a?x=%4", "broken percent-encoding"),
    (b"/" + b"a" * MAX_TARGET_BYTES, "request target too long"),
    (b"/a%2fb?x=1", "encoded slash, backslash, dot or NUL"),
    (b"/a/../..?x=1", "dot segment above the root"),
]


@pytest.mark.parametrize(
    ("target", "reason"), REFUSED_TARGETS, ids=[repr(t[:40]) for t, _ in REFUSED_TARGETS]
)
def test_normalise_target_refuses(target: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalise_target(target)
    assert caught.value.debug == reason


def test_too_long_target_is_414() -> None:
    with pytest.raises(InvalidRequest) as caught:
        split_target(b"/" + b"a" * MAX_TARGET_BYTES)
    assert caught.value.status == 414  # RFC 9112 §3: URI Too Long


def test_target_length_limit_is_inclusive() -> None:
    target = b"/" + b"a" * (MAX_TARGET_BYTES - 1)
    assert split_target(target) == (target, b"")


# --- idempotence ----------------------------------------------------------------------------------

# A safe alphabet: unreserved characters, a few sub-delims, dot segments, kept and decodable
# percent-encodings. Anything the normaliser refuses is skipped; the rest must be a fixed point.
_PIECES = [
    *"abcXYZ019-_~",
    *"!$&'()*+,=:@",
    ".",
    "..",
    "%41",
    "%7e",
    "%7E",
    "%2d",
    "%20",
    "%c3%a9",
    "%3F",
    "%25",
]
_SEGMENTS = ["", ".", "..", "...", "a", "b"]


def _random_path(rng: random.Random) -> bytes:
    segments = []
    for _ in range(rng.randint(0, 6)):
        if rng.random() < 0.3:
            segments.append(rng.choice(_SEGMENTS))
        else:
            segments.append("".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 4))))
    return ("/" + "/".join(segments)).encode("ascii")


def test_normalise_is_idempotent() -> None:
    rng = random.Random(20240501)
    accepted = 0
    for _ in range(600):
        raw = _random_path(rng)
        try:
            once = normalise_path(raw)
        except InvalidRequest:
            continue
        accepted += 1
        twice = normalise_path(once.encode("ascii"))
        assert twice == once, raw
        # The normal form has no dot segments and no empty segment except a trailing one.
        segments = once.split("/")[1:]
        assert "." not in segments and ".." not in segments, raw
        assert "" not in segments[:-1], raw
    assert accepted > 200  # the loop must exercise the accepting path, not only refusals


# --- refuse_dot_segments (embedded mode: the app routes on the path as sent) ---------------------

DOT_SEGMENT_PATHS = [
    b"/.",
    b"/..",
    b"/./",
    b"/a/.",
    b"/a/..",
    b"/a/./b",
    b"/a/b/../c",
    b"/a/%41/../b",
]


@pytest.mark.parametrize("raw", DOT_SEGMENT_PATHS, ids=[r.decode() for r in DOT_SEGMENT_PATHS])
def test_dot_segments_are_refused_when_asked(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalise_path(raw, refuse_dot_segments=True)
    err = caught.value
    assert err.debug == "dot segment"
    assert (err.status, err.error) == (400, "invalid_request")
    assert "dot segment" in err.description


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/a/.../b", "/a/.../b"),
        (b"/a/..b/c", "/a/..b/c"),
        (b"/a/.b", "/a/.b"),
        (b"/a./b.", "/a./b."),
        (b"/%41/b/", "/A/b/"),
        (b"/", "/"),
    ],
)
def test_dot_like_segments_are_not_dot_segments(raw: bytes, expected: str) -> None:
    assert normalise_path(raw, refuse_dot_segments=True) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"/a/%2e%2e/b", "encoded slash, backslash, dot or NUL"),
        (b"/a/%2E", "encoded slash, backslash, dot or NUL"),
        (b"/a//b", "empty path segment"),
        (b"/a;b", "';' path parameters"),
    ],
)
def test_other_refusals_keep_their_reason_when_dots_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalise_path(raw, refuse_dot_segments=True)
    assert caught.value.debug == reason


@given(st.lists(st.sampled_from(_PIECES + _SEGMENTS), max_size=6))
def test_refusing_dot_segments_changes_nothing_else(parts: list[str]) -> None:
    """With ``refuse_dot_segments`` a path is refused exactly when it has a "." or ".."
    segment (and would otherwise be accepted); every other path gets the same answer."""
    raw = ("/" + "/".join(parts)).encode("ascii")
    has_dots = any(s in (".", "..") for s in raw.decode("ascii").split("/")[1:])
    try:
        default: str | None = normalise_path(raw)
        default_reason = ""
    except InvalidRequest as err:
        default, default_reason = None, err.debug
    try:
        strict: str | None = normalise_path(raw, refuse_dot_segments=True)
        strict_reason = ""
    except InvalidRequest as err:
        strict, strict_reason = None, err.debug
    if has_dots:
        assert strict is None
        if default is not None:
            assert strict_reason == "dot segment"
        else:  # refused either way: for the dot segment or for what the default refused
            assert strict_reason in ("dot segment", default_reason)
    else:
        assert (strict, strict_reason) == (default, default_reason)
