"""Review of the hot path's remembered results (an attacker's view of today's caches).

1. Remembered targets (``edge/view.py``) and route matches (``Policy.match``), on the wire: a
   sequence of requests that differ from each other only in encodings, case, trailing slashes,
   dot segments, HEAD vs GET, queries and the 256-byte boundary gets, with warm caches, exactly
   the answers each gets with cold ones (nothing forwarded that a cold gateway refuses); an
   ambiguous path or a 404 stays one after a neighbour was remembered; a full cache emptied in
   the middle changes nothing; a reload (SIGHUP to ``restguard serve``) leaves no old route
   answering; neither cache grows past its bound (distinct targets, distinct methods).
2. The header screen in ``Guard.decide``: every refusal of ``check_headers``, ``content_type``
   and ``check_encoding`` still happens, on the wire after the target was remembered as
   allowed, and differentially on arbitrary header lists against the three checks themselves.
3. Request ids from the pooled ``os.urandom`` block: unique across threads, and across a fork
   (a forked child handed out the parent's next ids: fixed, ``edge/view.py`` forgets the pool
   in the child).
4. Audit timestamps made once per second: exact across second, minute, day, year boundaries,
   interleaved with non-UTC clocks and with concurrent threads.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard import audit
from restguard.authz.policy import AmbiguousPath, Policy, Route, compile_pattern
from restguard.authz.request_checks import check_headers
from restguard.cli.init import write_data_dir
from restguard.config import load
from restguard.edge import view as view_module
from restguard.edge.view import build_view, clean_headers, request_id
from restguard.errors import AuthError, NotFound
from restguard.guard import Guard
from restguard.types import RequestView
from restguard.wire.forms import check_encoding, content_type
from restguard.wiring import open_runtime
from tests.attacks.conftest import Keys
from tests.attacks.wire import api_key, assert_refused, request, send
from tests.faults import serve_dir, serving
from tests.harness import GatewayProcess

Header = tuple[bytes, bytes]

# --- 1. remembered targets and matches, on the wire ---------------------------------------------


@pytest.fixture
def policies(monkeypatch: pytest.MonkeyPatch) -> list[Policy]:
    """Every Policy asked to match while the test runs (the gateway's, in its thread)."""
    seen: list[Policy] = []
    match = Policy.match

    def spy(self: Policy, method: str, path: str) -> Route:
        if not any(p is self for p in seen):
            seen.append(self)
        return match(self, method, path)

    monkeypatch.setattr(Policy, "match", spy)
    return seen


def _forget_everything(policies: list[Policy]) -> None:
    for seen in view_module._targets:
        seen.clear()
    for policy in policies:
        policy._matched.clear()


A255 = b"a" * (256 - len(b"/public/"))  # a target of exactly 256 bytes
NEAR = [
    b"/public/" + A255,  # 256 bytes: remembered
    b"/public/" + A255 + b"b",  # 257: not remembered
    b"/public/" + A255[:-1] + b"%61",  # 258 bytes, normalises onto the 256-byte one
    b"/public/" + A255[:-3] + b"%61",  # 256 bytes, normalises to 254 characters
    b"/public/" + A255[:-1] + b"/",  # 256 bytes with a trailing slash
    b"/public/" + A255[:-1] + b"?",  # 256 bytes, an empty query
    b"/public/" + A255[:-9] + b"?api_key=",  # 256 bytes, a credential name in the query
    b"/PUBLIC/" + A255,  # 256 bytes, the ambiguous case
]

# (method, target, send a reader key): every pair differs from another only in what the
# caches key on or must not key on.
SEQUENCE: list[tuple[bytes, bytes, bool]] = [
    (b"GET", b"/public/x", False),
    (b"GET", b"/public/x/", False),
    (b"GET", b"/Public/x", False),
    (b"GET", b"/PUBLIC/X", False),
    (b"GET", b"/public/%78", False),
    (b"GET", b"/public/%2578", False),
    (b"GET", b"/public/x%2F", False),
    (b"GET", b"/public/x%2f..", False),
    (b"GET", b"/public/./x", False),
    (b"GET", b"/public/x/.", False),
    (b"GET", b"/public/../notes/1", False),
    (b"GET", b"/public/%2e%2e/notes/1", False),
    (b"GET", b"/public/..%2Fnotes/1", False),
    (b"GET", b"/public//x", False),
    (b"GET", b"/public/x;a", False),
    (b"GET", b"/public/x.json", False),
    (b"GET", b"/public/x?a=1", False),
    (b"GET", b"/public/x?api_key=k", False),
    (b"GET", b"/public/x?_method=DELETE", False),
    (b"GET", b"/public/x?access%5Ftoken=k", False),
    (b"GET", b"/public/x?a=%zz", False),
    (b"GET", b"/public/x#frag", False),
    (b"GET", b"/notes/1", False),
    (b"GET", b"/notes/1", True),
    (b"HEAD", b"/notes/1", False),
    (b"HEAD", b"/notes/1", True),
    (b"POST", b"/notes/1", True),  # a reader may not write
    (b"DELETE", b"/notes/1", True),
    (b"GET", b"/notes/1/", True),
    (b"GET", b"/Notes/1", True),
    (b"GET", b"/notes/1.json", True),
    (b"GET", b"/notes/%31", True),
    (b"GET", b"/notes", True),
    (b"GET", b"/notes/", True),
    (b"PUT", b"/public/x", False),  # public for GET and POST only
    (b"HEAD", b"/public/x", False),  # HEAD is GET's
    (b"POST", b"/public/x", False),
    (b"OPTIONS", b"/public/x", False),
    (b"GET", b"/nowhere", False),
    (b"GET", b"/nowhere/", False),
    (b"GET", b"/fwd/x", False),
    (b"GET", b"http://gateway.test/public/x", False),
    (b"GET", b"*", False),
    *[(b"GET", t, False) for t in NEAR],
    *[(b"HEAD", t, False) for t in NEAR[:3]],
]


def _ask(gw: GatewayProcess, keys: Keys, method: bytes, target: bytes, key: bool) -> tuple:
    headers = [api_key(keys.reader)] if key else []
    before = len(gw.upstream.requests)
    response = send(gw.port, request(target, *headers, method=method), head=method == b"HEAD")
    time.sleep(0.005)  # (anything forwarded has arrived)
    forwarded = [(r.method, r.target) for r in gw.upstream.requests[before:]]
    return response.status, forwarded


def test_warm_caches_answer_what_cold_ones_do(
    gw: GatewayProcess, keys: Keys, policies: list[Policy]
) -> None:
    send(gw.port, request(b"/public/warm"))  # (the gateway's policy is seen)
    assert policies, "no Policy found"
    cold = {}
    for method, target, key in SEQUENCE:
        _forget_everything(policies)
        cold[method, target, key] = _ask(gw, keys, method, target, key)
    # sanity: what must be refused or allowed whatever the caches hold
    assert cold[b"GET", b"/public/x", False][0] == 200
    assert cold[b"GET", b"/public/../notes/1", False] == (401, [])
    assert cold[b"GET", b"/PUBLIC/X", False] == (400, [])
    assert cold[b"GET", b"/public/x?api_key=k", False] == (400, [])
    assert cold[b"GET", b"/notes/1", True][0] == 200
    assert cold[b"POST", b"/notes/1", True] == (403, [])
    assert cold[b"GET", b"/PUBLIC/" + A255, False] == (400, [])
    _forget_everything(policies)
    for round_ in range(2):  # warm: in order, then again from the caches
        for method, target, key in SEQUENCE:
            got = _ask(gw, keys, method, target, key)
            assert got == cold[method, target, key], (round_, method, target, key, got)
    for method, target, key in reversed(SEQUENCE):
        got = _ask(gw, keys, method, target, key)
        assert got == cold[method, target, key], ("reversed", method, target, key, got)


def test_a_full_target_cache_emptied_mid_stream_changes_nothing(
    gw: GatewayProcess, keys: Keys, policies: list[Policy], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(view_module, "_REMEMBERED_TARGETS", 3)  # emptied every few requests
    send(gw.port, request(b"/public/warm"))  # (the gateway's policy is seen)
    assert policies
    _forget_everything(policies)
    expected = {}
    for method, target, key in SEQUENCE[:24]:
        expected[method, target, key] = _ask(gw, keys, method, target, key)
        assert len(view_module._targets[0]) <= 3
    for method, target, key in SEQUENCE[:24]:
        assert _ask(gw, keys, method, target, key) == expected[method, target, key]
    for policy in policies:  # a policy cache full, emptied at the next match: the same answers
        policy._matched.clear()
        policy._matched.update({("GET", f"/filler/{n}"): policy.routes[0] for n in range(4096)})
    for method, target, key in SEQUENCE[:24]:
        assert _ask(gw, keys, method, target, key) == expected[method, target, key]
        assert all(len(p._matched) <= 4096 for p in policies)


# --- the header screen, on the wire -----------------------------------------------------------

SCREENED_REFUSALS: list[tuple[list[Header], int]] = [
    ([(b"X-HTTP-Method-Override", b"DELETE")], 400),
    ([(b"x-http-method", b"DELETE")], 400),
    ([(b"X-METHOD-OVERRIDE", b"DELETE")], 400),
    ([(b"X-Original-URL", b"/notes/1")], 400),
    ([(b"x-rewrite-url", b"/notes/1")], 400),
    ([(b"Accept", b"*/*"), (b"X-Original-Url", b"/notes/1")], 400),  # not the first name
    ([(b"Content-Type", b"text/plain"), (b"content-type", b"text/plain")], 400),  # repeated
    ([(b"Content-Type", b"text/plain"), (b"CONTENT-TYPE", b"application/json")], 400),
    ([(b"Content-Type", b"text/plain; charset=utf-7")], 400),
    ([(b"Content-Type", b"multipart/form-data")], 400),  # no boundary
    ([(b"Content-Type", b"application/x-www-form-urlencoded, text/plain")], 400),
    ([(b"Content-Encoding", b"gzip")], 415),  # no type: read as a form
    ([(b"Content-Type", b"application/json"), (b"Content-Encoding", b"br")], 415),
    ([(b"Content-Encoding", b"identity"), (b"content-encoding", b"deflate")], 415),
]


@pytest.mark.parametrize(("headers", "status"), SCREENED_REFUSALS)
def test_screened_headers_refused_on_a_remembered_allowed_target(
    gw: GatewayProcess, headers: list[Header], status: int
) -> None:
    for _ in range(2):  # the target and its route remembered as allowed
        assert send(gw.port, request(b"/public/screen")).status == 200
    error = "invalid_request" if status == 400 else None
    assert_refused(gw, request(b"/public/screen", *headers), status, error)
    assert_refused(gw, request(b"/public/screen", *headers, method=b"POST"), status, error)


def test_override_spellings_the_name_rule_drops_never_reach_the_upstream(
    gw: GatewayProcess,
) -> None:
    # Underscore and other odd spellings are dropped before the decision (never judged, never
    # forwarded): the screen sees none of them, and neither does the upstream.
    odd = [
        (b"X_HTTP_Method_Override", b"DELETE"),
        (b"X-Original_URL", b"/notes/1"),
        (b"Content_Type", b"text/plain; charset=utf-7"),
        (b"Content-Encoding_", b"gzip"),
    ]
    for header in odd:
        response = send(gw.port, request(b"/public/screen", header))
        assert response.status == 200
        names = gw.upstream.last().header_names()
        squashed = {n.replace("_", "-").strip("-") for n in names}
        assert not squashed & {"x-http-method-override", "x-original-url", "content-encoding"}
        assert "content_type" not in names and gw.upstream.last().header("content-type") is None


# --- the header screen, differentially --------------------------------------------------------


@pytest.fixture(scope="module")
def guard(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Guard, asyncio.AbstractEventLoop]]:
    routes = '[[routes]]\npath = "/public/**"\nmethods = ["GET", "POST"]\npublic = true\n'
    config = write_data_dir(
        tmp_path_factory.mktemp("screen") / "d", upstream="http://127.0.0.1:9", routes=routes
    )
    loop = asyncio.new_event_loop()
    runtime = loop.run_until_complete(open_runtime(load(config)))
    yield runtime.guard, loop
    runtime.close()
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


NAMES = [
    b"accept", b"content-type", b"Content-Type", b"CONTENT-TYPE", b"content_type",
    b"content-encoding", b"Content-Encoding", b"x-http-method-override", b"X-HTTP-Method",
    b"x-method-override", b"x-original-url", b"X-Rewrite-URL", b"x-rewrite_url",
    b"content-typ", b"content-type-", b"xcontent-type", b"x-restguard-subject",
]  # fmt: skip
VALUES = [
    b"", b"text/plain", b"application/json", b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=abc", b"multipart/form-data", b"text/plain; charset=utf-7",
    b"text/plain; charset=UTF-8", b"gzip", b"identity", b" GZIP ", b"text/plain, text/html",
    b"DELETE", b"/notes/1",
]  # fmt: skip


def _three_checks(view: RequestView) -> tuple | None:
    try:
        check_headers(view)
        content_type(view.headers)
        check_encoding(view.headers)
    except AuthError as exc:
        return (type(exc), exc.status, exc.debug)
    return None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=5))
def test_the_screen_skips_no_refusal_of_the_three_checks(
    guard: tuple[Guard, asyncio.AbstractEventLoop], headers: list[Header]
) -> None:
    g, loop = guard
    raw = [(b"host", b"gateway.test"), *headers]
    view = build_view("POST", b"/public/x", clean_headers(raw), peer="127.0.0.1")
    expected = _three_checks(view)
    try:
        loop.run_until_complete(g.decide(view))
        got = None
    except AuthError as exc:
        got = (type(exc), exc.status, exc.debug)
    assert got == expected, (headers, got, expected)


# --- Policy.match: refusals after neighbours, reloads, bounds ------------------------------------


def _route(index: int, path: str, *methods: str) -> Route:
    segments, subtree = compile_pattern(path)
    return Route(index, path, frozenset(methods), _segments=segments, _subtree=subtree)  # type: ignore[call-arg]


def test_ambiguous_and_missing_paths_stay_refused_next_to_remembered_ones() -> None:
    policy = Policy(
        [_route(0, "/Admin", "GET"), _route(1, "/notes/{id}", "GET"), _route(2, "/pub/**", "GET")]
    )
    for _ in range(3):
        assert policy.match("GET", "/Admin").path == "/Admin"
        assert policy.match("HEAD", "/Admin").path == "/Admin"
        assert policy.match("GET", "/notes/1").path == "/notes/{id}"
        for ambiguous in ["/admin", "/Admin/", "/ADMIN", "/Admin.json", "/notes/1/", "/Notes/1"]:
            with pytest.raises(AmbiguousPath):
                policy.match("GET", ambiguous)
        for method, missing in [("POST", "/Admin"), ("DELETE", "/notes/1"), ("GET", "/x")]:
            with pytest.raises(NotFound):
                policy.match(method, missing)
        for method in ["get", "Get", "HEAD ", "GET\x00", "PROPFIND"]:
            with pytest.raises(NotFound):
                policy.match(method, "/Admin")
    assert set(policy._matched) == {("GET", "/Admin"), ("GET", "/notes/1")}


def test_a_stream_of_distinct_methods_and_paths_stays_bounded() -> None:
    policy = Policy([_route(0, "/**", "GET")])
    for n in range(5000):  # never matched: never remembered
        with pytest.raises(NotFound):
            policy.match("X" * 200 + str(n), "/a")
    assert policy._matched == {}
    for n in range(3 * 4096):
        policy.match("GET", "/" + "a" * 240 + str(n))
        assert len(policy._matched) <= 4096
    # the target cache: distinct targets of up to 256 bytes, both normaliser modes
    for seen in view_module._targets:
        seen.clear()
    for n in range(2 * 4096 + 7):
        target = b"/%d/" % n + b"b" * 200
        for refuse in (False, True):
            view_module._split_and_normalise(target, refuse)
    assert all(len(seen) <= view_module._REMEMBERED_TARGETS for seen in view_module._targets)
    assert sum(len(k) for seen in view_module._targets for k in seen) <= 2 * 4096 * 256


def test_a_dot_segment_remembered_as_resolved_is_still_refused_where_it_must_be() -> None:
    target = b"/public/../notes/1"
    assert view_module._split_and_normalise(target, False)[2] == "/notes/1"
    for _ in range(2):
        with pytest.raises(AuthError):
            view_module._split_and_normalise(target, True)  # (embedded mode: refused)
    assert view_module._split_and_normalise(target, False)[2] == "/notes/1"


OPEN = '[[routes]]\npath = "/open/**"\nmethods = ["GET"]\npublic = true\n'
CLOSED = '[[routes]]\npath = "/open/**"\nmethods = ["GET"]\nscopes = ["admin"]\n'
GONE = '[[routes]]\npath = "/other/**"\nmethods = ["GET"]\npublic = true\n'


def _until(check, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_reload_leaves_no_remembered_route_answering(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "d", routes=OPEN)  # (no upstream: 502 means allowed)
    targets = ["/open/x", "/open/x/", "/open/%78", "/open/./x", "/open/y/../x"]
    with serving(config) as serve, httpx.Client(timeout=5) as client:
        for _ in range(3):
            for t in targets:
                assert client.get(serve.url + t).status_code == 502, t
                assert client.head(serve.url + t).status_code == 502, t
        config.write_text(config.read_text().replace(OPEN, CLOSED))
        os.kill(serve.pid, signal.SIGHUP)
        _until(lambda: client.get(serve.url + "/open/x").status_code == 401)
        for t in targets:
            assert client.get(serve.url + t).status_code == 401, t
            assert client.head(serve.url + t).status_code == 401, t
        config.write_text(config.read_text().replace(CLOSED, GONE))
        os.kill(serve.pid, signal.SIGHUP)
        _until(lambda: client.get(serve.url + "/open/x").status_code == 404)
        for t in targets:
            assert client.get(serve.url + t).status_code == 404, t
        assert client.get(serve.url + "/other/x").status_code == 502


# --- 3. request ids -----------------------------------------------------------------------------


def test_request_ids_are_unique_across_threads() -> None:
    ids: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def take(out: list[str]) -> None:
        start.wait()
        for _ in range(3000):
            out.append(request_id((), False))

    threads = [threading.Thread(target=take, args=(out,)) for out in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in ids for i in out]
    assert len(set(every)) == len(every) == 24_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in every)


def test_a_trusted_proxys_id_or_a_clients_never_takes_from_or_reveals_the_pool() -> None:
    sent = [(b"x-request-id", b"abc")]
    assert request_id(sent, True) == "abc"
    assert request_id(sent, False) != "abc"
    assert request_id(sent + sent, True) not in ("abc", request_id(sent + sent, True))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_hands_out_no_id_of_its_parent() -> None:
    # The pool of 255 ids is module state: a process forked after one request (a pre-forking
    # server that warmed up its app, a multiprocessing worker) handed out the same ids as its
    # parent, in the same order -- request ids that collide in the shared audit log and at
    # the upstream. (os.urandom(16) per request had no such state.)
    request_id((), False)  # the pool is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.write(write, ",".join(request_id((), False) for _ in range(5)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = set(os.read(read, 4096).decode().split(","))
    os.close(read)
    parent = {request_id((), False) for _ in range(300)}
    assert len(child) == 5
    assert not child & parent, "a forked child repeats its parent's request ids"


# --- 4. audit timestamps --------------------------------------------------------------------------

INSTANTS = [
    datetime(2030, 1, 1, 0, 0, 0, 0, tzinfo=UTC),
    datetime(2030, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2032, 2, 28, 23, 59, 59, 500_000, tzinfo=UTC),
    datetime(2032, 2, 29, 23, 59, 59, 999_000, tzinfo=UTC),
    datetime(2030, 6, 30, 23, 59, 59, 1, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
]


def _steps() -> Iterator[datetime]:
    for start in INSTANTS:
        for ms in (0, 1, 499, 999, 1000, 1001, 59_999, 60_000, 3_600_000, 86_400_000):
            try:
                yield start + timedelta(milliseconds=ms)
                yield start - timedelta(milliseconds=ms)
            except OverflowError:
                continue


ZONES = [
    UTC,
    timezone(timedelta(0)),
    timezone(timedelta(hours=2)),
    timezone(timedelta(hours=-5, minutes=-30)),
    ZoneInfo("UTC"),
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("America/St_Johns"),
    ZoneInfo("Pacific/Kiritimati"),
]


def test_timestamps_across_boundaries_and_clocks() -> None:
    for now in _steps():
        for zone in ZONES:
            try:
                local = now.astimezone(zone)
            except (OverflowError, ValueError):
                continue
            # the same instant in two clocks, alternately, and a naive one between
            for t in (now, local, now.replace(tzinfo=None), local, now):
                assert audit.timestamp(t) == t.isoformat(timespec="milliseconds"), t


@settings(max_examples=500, deadline=None)
@given(st.lists(st.datetimes(timezones=st.sampled_from([UTC, *ZONES])), max_size=10))
def test_timestamps_are_isoformat_for_any_sequence(times: list[datetime]) -> None:
    for t in times + times[::-1]:
        assert audit.timestamp(t) == t.isoformat(timespec="milliseconds")


def test_timestamps_from_concurrent_threads_are_each_their_own() -> None:
    base = datetime(2031, 3, 31, 23, 59, 58, tzinfo=UTC)
    wrong: list[tuple[datetime, str]] = []

    def run(offset: int) -> None:
        for i in range(4000):
            t = base + timedelta(milliseconds=(i * 7 + offset * 997) % 5000)
            got = audit.timestamp(t)
            if got != t.isoformat(timespec="milliseconds"):
                wrong.append((t, got))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_audit_lines_on_the_wire_carry_the_time_of_their_request(gw: GatewayProcess) -> None:
    before = datetime.now(UTC)
    for _ in range(3):
        send(gw.port, request(b"/public/when"))
        time.sleep(0.35)
    after = datetime.now(UTC)
    times = [
        datetime.fromisoformat(e["time"]) for e in gw.audit_events() if e["path"] == "/public/when"
    ]
    assert len(times) >= 3
    for t in times[-3:]:
        assert t.utcoffset() == timedelta(0)
        assert before - timedelta(milliseconds=1) <= t <= after, (before, t, after)
    assert times[-3] < times[-2] < times[-1]


texts = st.text(st.characters(codec="utf-8") | st.sampled_from(['"', "\\", "\n", "\x00"]))
maybe = st.none() | texts


@settings(max_examples=300, deadline=None)
@given(
    st.tuples(
        texts,
        texts,
        texts,
        maybe,
        texts,
        st.integers(100, 599),
        maybe,
        maybe,
        maybe,
        texts,
        maybe,
        st.floats(0, 1e9, allow_nan=False),
        maybe,
        maybe,
    )
)
def test_the_inlined_to_json_is_json_dumps(fields: tuple) -> None:  # type: ignore[type-arg]
    event = audit.DecisionEvent(*fields)
    assert event.to_json() == json.dumps(event._asdict(), separators=(",", ":"))
