"""Every regular expression and parser that sees attacker input runs in linear time.

Each is timed on adversarial inputs of 16 KiB and of 64 KiB (long runs of spaces, near-matches
repeated, ``%``, ``=;``, quotes, backslashes ...): four times the input may take about four
times as long, never sixteen (quadratic) or worse. A run is repeated until the small input takes
a few milliseconds, the best of three runs counts, and the large one may take up to eight times
the small one plus a little, which a noisy machine stays within and a quadratic scan does not.
"""

from __future__ import annotations

import gc
import ipaddress
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from restguard.authz.paths import normalise_path, split_target
from restguard.authz.policy import Policy, Route, compile_pattern, fold_path
from restguard.authz.request_checks import check_query
from restguard.credentials.apikey import parse_key
from restguard.edge.view import build_view, check_framing, clean_headers, client_address
from restguard.errors import AuthError
from restguard.tokens import carries_credential, contains_credential, redact
from restguard.wire.forms import (
    JsonGate,
    MultipartGate,
    UrlencodedGate,
    check_params,
    content_type,
)

SMALL, LARGE = 16 * 1024, 64 * 1024
MIN_RUN = 0.002  # seconds: repeat a call until the small input takes at least this long
SLACK = 0.003  # seconds added to the allowance (timer noise) ...
CALL_SLACK = 50e-6  # ... and per call (caches: 64 KiB copies fall out of the faster ones).
# (A quadratic scan of 16 KiB takes far longer than CALL_SLACK / 8 per call.)


def _run(fn: Callable[[Any], object], arg: Any, repeat: int) -> float:
    """CPU seconds for ``repeat`` calls (CPU time: a busy machine's other work is not ours)."""
    start = time.thread_time()
    for _ in range(repeat):
        try:
            fn(arg)
        except AuthError:  # a refusal is an outcome too: it must come in linear time as well
            pass
    return time.thread_time() - start


def _timings(
    fn: Callable[[Any], object], small_arg: Any, large_arg: Any, ratio: float
) -> tuple[float, float, float]:
    """(small time, large time, large time allowed): the best of three of each (the large one
    is not run again once it is within the allowance)."""
    repeat = 1
    while _run(fn, small_arg, repeat) < MIN_RUN and repeat < 4096:
        repeat *= 2
    t_small = min(_run(fn, small_arg, repeat) for _ in range(3))
    allowed = 2 * ratio * t_small + SLACK + CALL_SLACK * repeat
    t_large = _run(fn, large_arg, repeat)
    for _ in range(2):
        if t_large < allowed:
            break
        t_large = min(t_large, _run(fn, large_arg, repeat))
    return t_small, t_large, allowed


def assert_linear(
    fn: Callable[[Any], object],
    make: Callable[[int], Any],
    small: int = SMALL,
    large: int = LARGE,
) -> None:
    """Four times the input (by default) takes less than eight times as long, plus a little."""
    small_arg, large_arg = make(small), make(large)
    ratio = large / small
    gc.disable()
    try:
        for _ in range(2):  # a second round before calling it super-linear: machines are noisy
            t_small, t_large, allowed = _timings(fn, small_arg, large_arg, ratio)
            if t_large < allowed:
                return
    finally:
        gc.enable()
    raise AssertionError(
        f"{t_large * 1000:.1f} ms for {large} bytes against {t_small * 1000:.1f} ms for {small} "
        f"({t_large / t_small:.1f}x for {ratio:.0f}x the input): super-linear"
    )


def rep(unit: Any, size: int) -> Any:
    """``unit`` repeated to about ``size`` bytes (or characters)."""
    return unit * max(1, size // len(unit))


def feed_whole(make_gate: Callable[[], Any]) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        gate = make_gate()
        return gate.feed(data) + gate.finish()

    return run


def feed_chunks(make_gate: Callable[[], Any], size: int = 64) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        gate = make_gate()
        out = [gate.feed(data[i : i + size]) for i in range(0, len(data), size)]
        return b"".join(out) + gate.finish()

    return run


Case = tuple[str, Callable[[Any], object], Callable[[int], Any]]

# --- wire/forms.py ------------------------------------------------------------------------------

_QUERY_UNITS = [
    b"%",
    b"=;",
    b"&",
    b";",
    b"=",
    b"+",
    b" ",
    b"a",
    b"%5F",
    b"%5",
    b"_metho&",
    b"method&",
    b"method=",
    b"%5Fmethox;",
    b"_method",
    b"\x00",
    b"%%5F",
    b"[",  # a name of brackets reads as "" to qs and Rack: it may still become _method
    b"%5B",
    b"+[",
    b"][",
    b"%u",
    b"%u005",
    b"%u005F",
]

_CONTENT_TYPES: list[tuple[str, Callable[[int], bytes]]] = [
    ("params then junk", lambda n: b"multipart/form-data" + rep(b"; a=b", n) + b" x"),
    ("spaces then junk", lambda n: b"a/b" + rep(b" ", n) + b"x"),
    ("trailing spaces", lambda n: b"a/b" + rep(b" ", n)),
    ("leading spaces", lambda n: rep(b" ", n) + b"x"),
    ("escaped quotes", lambda n: b'a/b; c="' + rep(b'\\"', n)),
    ("backslashes", lambda n: b'a/b; c="' + rep(b"\\", n) + b'"x'),
    ("quoted pairs", lambda n: b"a/b" + rep(b'; a="\\""', n)),
    ("quotes", lambda n: rep(b'"', n)),
    ("boundary of =", lambda n: b"multipart/form-data; boundary=" + rep(b"=", n)),
    ("semicolons", lambda n: rep(b";", n)),
    ("=; runs", lambda n: rep(b"=;", n)),
    ("percent runs", lambda n: rep(b"%", n)),
    ("form-data then spaces", lambda n: b"form-data" + rep(b" ", n)),
    ("long subtype", lambda n: b"a/" + rep(b"b", n) + b";"),
    ("repeated types", lambda n: rep(b"a/b;", n)),
    ("repeated charsets", lambda n: b"text/plain" + rep(b";charset=utf-8", n)),
    ("repeated boundaries", lambda n: b"multipart/form-data" + rep(b";boundary=a", n)),
    ("boundary words", lambda n: rep(b"boundary", n)),
    ("empty params", lambda n: b"a/b;" + rep(b" ;", n)),
    ("long token value", lambda n: b"a/b; c=" + rep(b"d", n) + b" ;"),
]

_MULTIPART: list[tuple[str, Callable[[int], bytes]]] = [
    ("near-miss headers", lambda n: rep(b"content-disposition" + b" " * 50 + b"\r\n", n)),
    ("near-miss no line end", lambda n: rep(b"content-disposition: ", n)),
    ("disposition + spaces", lambda n: rep(b"content-disposition:" + b" " * 200 + b"\n", n)),
    ("disposition lines", lambda n: rep(b"Content-Disposition: form-data; name=a\r\nX: 1\r\n", n)),
    ("bare disposition lines", lambda n: rep(b"Content-Disposition: x\r\n", n)),
    ("semicolons", lambda n: rep(b"Content-Disposition: " + b";" * 3000 + b"\r\nX\r\n", n)),
    ("quotes", lambda n: rep(b"Content-Disposition: " + b'"' * 3000 + b"\r\nX\r\n", n)),
    ("backslashes", lambda n: rep(b'Content-Disposition: x="' + b"\\" * 3000 + b'"\r\nX\r\n', n)),
    ("=; runs", lambda n: rep(b"Content-Disposition: " + b"=;" * 1500 + b"\r\nX\r\n", n)),
    ("spaces", lambda n: rep(b"Content-Disposition: a" + b" " * 3000 + b"\r\nX\r\n", n)),
    (
        "name*000",
        lambda n: rep(b"Content-Disposition: a; name*" + b"0" * 3000 + b"x=1\r\nX\r\n", n),
    ),
    (
        "quoted escapes",
        lambda n: rep(b'Content-Disposition: name="' + b"\\a" * 1500 + b'"\r\nX\r\n', n),
    ),
    ("percent names", lambda n: rep(b"Content-Disposition: name=" + b"%" * 3000 + b"\r\nX\r\n", n)),
    ("CR runs", lambda n: rep(b"\r", n)),
    ("LF runs", lambda n: rep(b"\n", n)),
    ("CRLF runs", lambda n: rep(b"\r\n", n)),
    ("space run", lambda n: rep(b" ", n)),
    ("indented c lines", lambda n: rep(b" " * 16 + b"c\r", n)),
    ("one long near-miss", lambda n: rep(b"content-disposition", n)),
    ("NUL run", lambda n: rep(b"\x00", n)),
    ("dash run", lambda n: rep(b"-", n)),
    ("c then CR", lambda n: rep(b"c\r", n)),
    ("content- lines", lambda n: rep(b"content-\n", n)),
    ("content-id lines", lambda n: rep(b"x\ncontent-id\r\n", n)),
]

_JSON: list[tuple[str, Callable[[int], bytes]]] = [
    ("open brackets", lambda n: rep(b"[", n)),
    ("open members", lambda n: rep(b'{"a":', n)),
    ("long array", lambda n: b"[" + rep(b"1,", n) + b"1]"),
    ("escaped name", lambda n: b'{"' + rep(b"\\u005f", n) + b'":1}'),
    ("backslashes", lambda n: b'"' + rep(b"\\\\", n) + b'"'),
    ("many members", lambda n: b"{" + b",".join(b'"k%d":1' % i for i in range(n // 8)) + b"}"),
    ("quotes", lambda n: rep(b'"', n)),
    ("nested arrays of objects", lambda n: rep(b'{"_":[', n)),
    ("one long name", lambda n: b'{"' + rep(b"x", n) + b'":1}'),
    ("one long suspect name", lambda n: b'{"' + rep(b" ", n) + b'_method":1}'),
    ("strings that are no names", lambda n: rep(b'"_method" ', n)),
    ("escapes in a long string", lambda n: b'{"a":"' + rep(b"\\u0065", n) + b'"}'),
    ("white space before a colon", lambda n: b'{"_meth"' + rep(b" ", n) + b":1}"),
]
_ONE_BYTE = [b"[", b"%5B", b"+", b"%u005", b"_metho", b"%"]

FORMS: list[Case] = [
    *[
        (f"check_params {u!r}", lambda q: check_params(q, "query"), lambda n, u=u: rep(u, n))
        for u in _QUERY_UNITS
    ],
    *[
        (f"content_type {name}", lambda v: content_type([(b"content-type", v)]), make)
        for name, make in _CONTENT_TYPES
    ],
    *[
        (f"UrlencodedGate whole {u!r}", feed_whole(UrlencodedGate), lambda n, u=u: rep(u, n))
        for u in _QUERY_UNITS
    ],
    *[
        (f"UrlencodedGate chunks {u!r}", feed_chunks(UrlencodedGate), lambda n, u=u: rep(u, n))
        for u in _QUERY_UNITS
    ],
    (
        "UrlencodedGate one long value",
        feed_chunks(UrlencodedGate, 7),
        lambda n: b"a=" + rep(b"%", n),
    ),
    (
        "UrlencodedGate long names",
        feed_chunks(UrlencodedGate, 1000),
        lambda n: rep(b"x" * 5000 + b"&", n),
    ),
    *[
        (f"MultipartGate whole {name}", feed_whole(MultipartGate), make)
        for name, make in _MULTIPART
    ],
    *[
        (f"MultipartGate chunks {name}", feed_chunks(MultipartGate), make)
        for name, make in _MULTIPART
    ],
    (
        "MultipartGate held disposition",
        feed_chunks(MultipartGate, 7),
        lambda n: rep(b"Content-Disposition: " + b"a" * 4000 + b"\r\n", n),
    ),
    *[
        (
            f"UrlencodedGate 1-byte reads {u!r}",
            feed_chunks(UrlencodedGate, 1),
            lambda n, u=u: rep(u, n),
        )
        for u in _ONE_BYTE
    ],
    *[(f"JsonGate {name}", feed_whole(JsonGate), make) for name, make in _JSON],
    *[(f"JsonGate chunks {name}", feed_chunks(JsonGate), make) for name, make in _JSON],
    *[(f"JsonGate 1-byte reads {name}", feed_chunks(JsonGate, 1), make) for name, make in _JSON],
]


@pytest.mark.parametrize(("fn", "make"), [c[1:] for c in FORMS], ids=[c[0] for c in FORMS])
def test_forms_run_in_linear_time(fn: Callable[[Any], object], make: Callable[[int], Any]) -> None:
    assert_linear(fn, make)


# --- tokens.py ----------------------------------------------------------------------------------

TOKENS: list[Case] = [
    *[
        (f"redact {u!r}", redact, lambda n, u=u: rep(u, n))
        for u in [
            "rg_",
            "rg%5F",
            "rg%5f%",
            "%25",
            "%2525",
            "rg_ak_",
            "rg_ak_[redacted] ",
            "r",
            "%",
            "RG%5fAK",
            "rg_a",
            "rg%5Fak%5F%",
            " ",
            "%72g%5F",
        ]
    ],
    ("redact a long token", redact, lambda n: "rg_ak_" + rep("a", n)),
    ("redact a long encoded token", redact, lambda n: "rg%5Fak%5F" + rep("%41", n)),
    ("redact percent after a prefix", redact, lambda n: "rg%5Fak%5F" + rep("%", n)),
    *[
        (f"carries_credential {u!r}", carries_credential, lambda n, u=u: rep(u, n))
        for u in [b"%", b"rg", b"%25", b"rg%5", b" ", b"\t", b"basic ", b"=", b"%2"]
    ],
    (
        "carries_credential basic spaces",
        carries_credential,
        lambda n: b"Basic " + rep(b" ", n) + b"!",
    ),
    ("carries_credential basic tabs", carries_credential, lambda n: b"basic" + rep(b"\t", n)),
    ("carries_credential basic long", carries_credential, lambda n: b"Basic " + rep(b"A", n)),
    ("carries_credential basic rg", carries_credential, lambda n: b"Basic " + rep(b"cmdfYWtf", n)),
    ("carries_credential spaces basic", carries_credential, lambda n: rep(b" ", n) + b"basic x"),
    ("contains_credential rg%5", contains_credential, lambda n: rep("rg%5", n)),
    ("contains_credential rg_a", contains_credential, lambda n: rep("rg_a", n)),
    ("parse_key prefix run", parse_key, lambda n: rep("rg_ak_", n)),
    ("parse_key long id", parse_key, lambda n: "rg_ak_" + rep("a", n)),
]


@pytest.mark.parametrize(("fn", "make"), [c[1:] for c in TOKENS], ids=[c[0] for c in TOKENS])
def test_tokens_run_in_linear_time(fn: Callable[[Any], object], make: Callable[[int], Any]) -> None:
    assert_linear(fn, make)


# --- edge/view.py ---------------------------------------------------------------------------------


def _host(value: bytes) -> None:
    check_framing("1.1", [(b"host", value)])


def _te(value: bytes) -> None:
    check_framing("1.1", [(b"host", b"h"), (b"transfer-encoding", value)])


_PROXIES = [ipaddress.ip_network("10.0.0.0/8")]


def _xff(value: bytes) -> str:
    return client_address("10.0.0.1", [(b"x-forwarded-for", value)], _PROXIES)


def _headers(n: int, name: bytes, value: bytes = b"v") -> list[tuple[bytes, bytes]]:
    return [(name, value)] * max(1, n // (len(name) + len(value)))


VIEW: list[Case] = [
    ("Host unclosed literal", _host, lambda n: b"[" + rep(b"1", n)),
    (
        "Host name then port junk",
        _host,
        lambda n: rep(b"a", n // 2) + b":" + rep(b"1", n // 2) + b"x",
    ),
    ("Host digits then junk", _host, lambda n: rep(b"1", n) + b"x"),
    ("Host colons", _host, lambda n: rep(b":", n)),
    ("Host a:", _host, lambda n: rep(b"a:", n)),
    ("Host percent", _host, lambda n: rep(b"%", n)),
    ("Host literal of colons", _host, lambda n: b"[" + rep(b":", n) + b"]x"),
    ("Host brackets", _host, lambda n: rep(b"[", n)),
    ("Host reg-name chars", _host, lambda n: rep(b"a.-_~!$&'()*+,;=%", n) + b"@"),
    ("Host spaces", _host, lambda n: rep(b" ", n)),
    ("Transfer-Encoding commas", _te, lambda n: rep(b",", n)),
    ("Transfer-Encoding space commas", _te, lambda n: rep(b" ,", n)),
    ("Transfer-Encoding chunked list", _te, lambda n: rep(b"chunked,", n)),
    ("X-Forwarded-For trusted hops", _xff, lambda n: rep(b"10.0.0.1,", n)),
    ("X-Forwarded-For commas", _xff, lambda n: rep(b",", n)),
    ("X-Forwarded-For spaces", _xff, lambda n: rep(b" ", n)),
    ("X-Forwarded-For colons", _xff, lambda n: rep(b":", n)),
    ("clean_headers invalid names", clean_headers, lambda n: _headers(n, b"X_Restguard_Subject")),
    ("clean_headers identity names", clean_headers, lambda n: _headers(n, b"X-Restguard-Subject")),
    ("clean_headers valid names", clean_headers, lambda n: _headers(n, b"x-a")),
    (
        "build_view many headers",
        lambda h: build_view("GET", b"/a", h, max_header_bytes=None),
        lambda n: [(b"host", b"h"), *_headers(n, b"X-A", b"%rg_ak_x")],
    ),
]


@pytest.mark.parametrize(("fn", "make"), [c[1:] for c in VIEW], ids=[c[0] for c in VIEW])
def test_edge_view_runs_in_linear_time(
    fn: Callable[[Any], object], make: Callable[[int], Any]
) -> None:
    assert_linear(fn, make)


# --- authz/paths.py and authz/policy.py ---------------------------------------------------------

PATHS: list[Case] = [
    ("normalise_path unreserved escapes", normalise_path, lambda n: b"/" + rep(b"%41", n)),
    ("normalise_path other escapes", normalise_path, lambda n: b"/" + rep(b"%20", n)),
    ("normalise_path lower-case escapes", normalise_path, lambda n: b"/" + rep(b"%7e", n)),
    ("normalise_path UTF-8 escapes", normalise_path, lambda n: b"/" + rep(b"%C3%A9", n)),
    ("normalise_path non-UTF-8 escapes", normalise_path, lambda n: b"/" + rep(b"%E9", n)),
    ("normalise_path segments", normalise_path, lambda n: rep(b"/a", n)),
    ("normalise_path climbing", normalise_path, lambda n: rep(b"/a/..", n)),
    ("normalise_path dots", normalise_path, lambda n: rep(b"/.", n)),
    (
        "normalise_path deep then up",
        normalise_path,
        lambda n: rep(b"/a", n // 2) + rep(b"/..", n // 2 - 3),
    ),
    ("normalise_path long segment", normalise_path, lambda n: b"/" + rep(b"a", n)),
    ("normalise_path sub-delims", normalise_path, lambda n: b"/" + rep(b"!$&'()*+,=:@", n)),
    ("normalise_path broken percent", normalise_path, lambda n: b"/a" + rep(b"%", n)),
    (
        "normalise_path refusing dots",
        lambda p: normalise_path(p, refuse_dot_segments=True),
        lambda n: rep(b"/a.", n) + b"/..",
    ),
    ("fold_path long s", fold_path, lambda n: rep("\u017f", n)),
    ("fold_path Kelvin", fold_path, lambda n: rep("\u212a", n)),
    ("fold_path dotted I", fold_path, lambda n: rep("\u0130", n)),
    ("fold_path sharp s", fold_path, lambda n: rep("\u00df", n)),
    ("fold_path sigma", fold_path, lambda n: rep("\u03a3/", n)),
    ("fold_path ASCII", fold_path, lambda n: rep("A/", n)),
    ("fold_path slashes", fold_path, lambda n: rep("/", n)),
]


def _route(index: int, path: str, methods: tuple[str, ...] = ("GET",)) -> Route:
    segments, subtree = compile_pattern(path)
    return Route(index, path, frozenset(methods), _segments=segments, _subtree=subtree)


_POLICY = Policy(
    [
        _route(0, "/notes"),
        _route(1, "/notes/{id}", ("GET", "PUT")),
        _route(2, "/notes/{id}/comments/**", ("POST",)),
        _route(3, "/Users/{name}"),
        _route(4, "/admin/**", ("DELETE",)),
        _route(5, "/files/**"),
        _route(6, "/a/b/c/d/e/f"),
    ]
)


def _match(path: str) -> object:
    return _POLICY.match("DELETE", path)


POLICY: list[Case] = [
    ("match a long segment", _match, lambda n: "/notes/" + rep("x", n)),
    ("match many segments", _match, lambda n: rep("/a", n)),
    ("match a subtree", _match, lambda n: "/files/" + rep("a/", n)),
    ("match folding case", _match, lambda n: rep("/NOTES", n)),
    ("match folding non-ASCII", _match, lambda n: rep("/\u017f", n)),
    ("match decoding", _match, lambda n: "/notes/" + rep("%41", n)),
    ("match Kelvin", _match, lambda n: "/users/" + rep("\u212a", n)),
    ("match trailing slash", _match, lambda n: "/notes/" + rep("x", n) + "/"),
    ("match comments subtree", _match, lambda n: "/notes/1/comments/" + rep("c/", n)),
]


@pytest.mark.parametrize(
    ("fn", "make"), [c[1:] for c in PATHS + POLICY], ids=[c[0] for c in PATHS + POLICY]
)
def test_paths_and_policy_run_in_linear_time(
    fn: Callable[[Any], object], make: Callable[[int], Any]
) -> None:
    assert_linear(fn, make)


# split_target refuses targets over MAX_TARGET_BYTES (8 KiB): timed at 2 and 8 KiB.
TARGETS: list[Case] = [
    ("split_target escapes", split_target, lambda n: b"/?" + rep(b"%41", n - 2)),
    ("split_target question marks", split_target, lambda n: b"/" + rep(b"?", n - 1)),
    ("split_target =;", split_target, lambda n: b"/?" + rep(b"=;", n - 2)),
    ("split_target long path", split_target, lambda n: b"/" + rep(b"a", n - 1)),
    ("split_target slashes", split_target, lambda n: rep(b"/", n)),
    ("split_target percent", split_target, lambda n: b"/?a" + rep(b"%", n - 3)),
    ("split_target late fragment", split_target, lambda n: b"/?" + rep(b"a", n - 3) + b"#"),
]

# guard.check_query (credentials and _method in a query) sees the raw query too.
QUERIES: list[Case] = [
    (f"check_query {u!r}", check_query, lambda n, u=u: rep(u, n))
    for u in [b"%", b"=;", b"rg%5", b"+", b"%25", b"a=1&", b"api_ke&", b"%5Fmethox&", b"rg_a"]
]


@pytest.mark.parametrize(("fn", "make"), [c[1:] for c in TARGETS], ids=[c[0] for c in TARGETS])
def test_split_target_runs_in_linear_time(
    fn: Callable[[Any], object], make: Callable[[int], Any]
) -> None:
    assert_linear(fn, make, small=2 * 1024, large=8 * 1024)


@pytest.mark.parametrize(("fn", "make"), [c[1:] for c in QUERIES], ids=[c[0] for c in QUERIES])
def test_check_query_runs_in_linear_time(
    fn: Callable[[Any], object], make: Callable[[int], Any]
) -> None:
    assert_linear(fn, make)


def _size(value: bytes | list[tuple[bytes, bytes]]) -> int:
    return len(value) if isinstance(value, bytes) else sum(len(k) + len(v) for k, v in value)


def test_the_timer_catches_a_quadratic_scan() -> None:
    # re.search tries every start in a run of spaces: the classic quadratic regular expression
    # (eight times the input: 64 times the time against the 16 allowed, a margin that a busy
    # machine's noise on the small run does not eat up)
    quadratic = re.compile(rb" +x")
    with pytest.raises(AssertionError, match="super-linear"):
        assert_linear(quadratic.search, lambda n: rep(b" ", n), small=2 * 1024, large=16 * 1024)


def test_the_adversarial_inputs_are_the_sizes_claimed() -> None:
    # (a case whose input does not grow would pass without proving anything)
    for _, _, make in FORMS + TOKENS + PATHS + POLICY + QUERIES:
        small, large = make(SMALL), make(LARGE)
        assert 3 * len(small) <= len(large) <= 5 * len(small) + 64
    for _, _, make in VIEW:
        assert 3 * _size(make(SMALL)) <= _size(make(LARGE))
    for _, _, make in TARGETS:
        assert len(make(8 * 1024)) <= 8 * 1024
