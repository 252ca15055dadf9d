"""Review of two changes, by attack:

* 9455dda: the gateway views a request whose head frames no body (no Content-Length or 0, no
  Transfer-Encoding: RFC 9112 §6.3) with body b"" and skips ``body_wanted`` and the body read.
  Attacks: framing that could make restguard see no body while bytes follow (CL 0 plus bytes,
  CL+TE, duplicated or odd Content-Length, obs-fold, HTTP/1.0, pipelining), a signature that
  covers the digest of a body that is not sent, a GET whose digest claims b"" while bytes
  follow, OAuth 1.0a-looking form parameters on a bodiless POST.
* 68f1195: a nonce batch is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired RETURNING``.
  Attacks against the replay cache's specification (the first call that records a nonce gets
  True, every later one False until its record expired by ``CLOCK_SKEW_MARGIN``): the exact
  expiry boundary, a key twice (or more) in one batch, mixed batches, 256-nonce batches, odd
  strings, oauth1's four-column key with an empty token, and copies raced over two engines
  (two instances) with equal and with different clocks, on SQLite and PostgreSQL.

Every attack here held when written (no failing test). Noted, not new with 68f1195 and not
reachable over HTTP (the nonce and timestamp are validated first): one key the database cannot
store (a lone surrogate; NUL on PostgreSQL; an oauth1 timestamp past BIGINT) fails its whole
batch closed, so the callers batched with it get 503 too.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from restguard.errors import BackendUnavailable
from restguard.store.sql import SqlStore, migrate, open_store
from restguard.store.sql.nonce_batches import CLOCK_SKEW_MARGIN
from restguard.store.sql.tables import oauth1_nonces, signature_nonces
from tests.attacks import test_oauth1_attacks as o1
from tests.attacks.test_review_body_first_stock import Stock
from tests.attacks.test_review_signatures import (
    ROUTES,
    App,
    accepted,
    make_app,
    raw,
    refused,
    sign,
)
from tests.attacks.wire import Response, exchange
from tests.fixtures_db import module_backend
from tests.harness import GatewayProcess, RecordingUpstream
from tests.oauth1_support import Consumer, Token, add_consumer, add_token, form
from tests.signature_support import add_app, signed_headers

T0 = datetime(2031, 6, 1, 12, 0, 0, tzinfo=UTC)


def _signed_over_the_empty_body(app: App) -> list[tuple[bytes, bytes]]:
    """A GET /notes/1 whose signature covers ``Content-Digest`` of b"" (RFC 9530)."""
    digest = b"sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    return sign(
        app,
        "GET",
        b"/notes/1",
        headers=[(b"content-digest", digest)],
        components=["@method", "@authority", "@path", "content-digest"],
    )


# === change 2: the nonce batch as one upsert ================================================


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return module_backend(request, tmp_path_factory, "rg_review_upsert")


@pytest.fixture(scope="module")
def migrated(backend: str) -> str:
    migrate(backend)
    return backend


@pytest.fixture
def store(migrated: str) -> Iterator[SqlStore]:
    s = open_store(migrated)
    with s.engine.begin() as conn:
        conn.execute(signature_nonces.delete())
        conn.execute(oauth1_nonces.delete())
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def other(migrated: str, store: SqlStore) -> Iterator[SqlStore]:
    """A second instance on the same database (its own engine, pool and batches)."""
    s = open_store(migrated)
    try:
        yield s
    finally:
        s.close()


def _use(store: SqlStore, key_id: str, nonce: str, expires: datetime, now: datetime) -> bool:
    return asyncio.run(store.signature_nonces.use(key_id, nonce, expires, now))


def test_replay_at_the_exact_expiry_boundary(store: SqlStore) -> None:
    """expires_at + margin == now: the record expired by the margin (``<=``), reusable once;
    a microsecond before it is still a replay."""
    expires = T0 + timedelta(seconds=30)
    assert _use(store, "app", "edge", expires, T0)
    boundary = expires + CLOCK_SKEW_MARGIN
    assert not _use(
        store, "app", "edge", boundary + timedelta(minutes=5), boundary - timedelta(microseconds=1)
    )
    assert _use(store, "app", "edge", boundary + timedelta(minutes=5), boundary)
    # the overwritten record stands: replays of the reuse are refused until it expires in turn
    assert not _use(store, "app", "edge", boundary + timedelta(minutes=5), boundary)
    later = boundary + timedelta(minutes=5) + CLOCK_SKEW_MARGIN - timedelta(microseconds=1)
    assert not _use(store, "app", "edge", later + timedelta(minutes=5), later)


def test_boundary_with_whole_and_fractional_seconds(store: SqlStore) -> None:
    """Microsecond 0 against a stored fraction (a text comparison on SQLite would misorder
    '...:00' and '...:00.5')."""
    expires = T0 + timedelta(microseconds=500_000)
    assert _use(store, "app", "frac", expires, T0)
    at = T0 + CLOCK_SKEW_MARGIN  # whole second, before expires + margin
    assert not _use(store, "app", "frac", at + timedelta(minutes=1), at)
    at = T0 + CLOCK_SKEW_MARGIN + timedelta(seconds=1)
    assert _use(store, "app", "frac", at + timedelta(minutes=1), at)


def test_non_utc_offsets_compare_as_instants(store: SqlStore) -> None:
    """The same instants given in another offset decide the same."""
    from datetime import timezone

    tz = timezone(timedelta(hours=-7))
    expires = (T0 + timedelta(seconds=10)).astimezone(tz)
    assert _use(store, "app", "tz", expires, T0.astimezone(tz))
    just_before = (
        T0 + timedelta(seconds=10) + CLOCK_SKEW_MARGIN - timedelta(seconds=1)
    ).astimezone(timezone(timedelta(hours=9)))
    assert not _use(store, "app", "tz", just_before + timedelta(minutes=1), just_before)
    at = T0 + timedelta(seconds=10) + CLOCK_SKEW_MARGIN
    assert _use(store, "app", "tz", at + timedelta(minutes=1), at.astimezone(tz))


def test_a_batch_mixing_fresh_replayed_expired_and_repeated_nonces(store: SqlStore) -> None:
    nonces = store.signature_nonces
    until = T0 + timedelta(seconds=30)
    assert _use(store, "app", "live", until + timedelta(hours=1), T0)
    assert _use(store, "app", "dead", until, T0)
    now = until + CLOCK_SKEW_MARGIN + timedelta(seconds=1)
    later = now + timedelta(minutes=5)

    async def batch() -> list[bool]:
        calls = [
            nonces.use("app", "fresh", later, now),
            nonces.use("app", "live", later, now),
            nonces.use("app", "dead", later, now),
            nonces.use("app", "fresh", later, now),
            nonces.use("app", "dead", later, now),
            nonces.use("other", "live", later, now),  # same nonce, other key id: its own
            nonces.use("app", "dead", later, now),
        ]
        return list(await asyncio.gather(*calls))

    assert asyncio.run(batch()) == [True, False, True, False, False, True, False]
    # "dead" was overwritten with the new expiry: a replay now is refused
    assert not _use(store, "app", "dead", later, now + timedelta(seconds=1))


def test_a_batch_of_256_with_every_nonce_twice(store: SqlStore) -> None:
    nonces = store.signature_nonces
    until = T0 + timedelta(minutes=5)
    for i in range(0, 256, 2):  # half of them recorded before (alive), a quarter expired
        exp = until if i % 4 == 0 else T0 - CLOCK_SKEW_MARGIN - timedelta(seconds=1)
        assert _use(store, "app", f"n{i:03d}", exp, T0 - timedelta(hours=1))

    async def batch() -> list[bool]:
        calls = [nonces.use("app", f"n{i % 256:03d}", until, T0) for i in range(512)]
        return list(await asyncio.gather(*calls))

    got = asyncio.run(batch())
    for i in range(256):
        alive = i % 2 == 0 and i % 4 == 0
        assert got[i] is (not alive), (i, got[i])
        assert got[256 + i] is False, i


@pytest.mark.parametrize(
    "nonce",
    [
        "x" * 128,
        "é" * 128,  # two bytes each
        "\U0001f600" * 128,  # four bytes each (512 bytes)
        "a b",
        "'; DROP TABLE signature_nonces; --",
        "%00",
        "N",
        "n",  # case matters
        "n ",  # a trailing space matters
    ],
)
def test_odd_nonces_are_keyed_exactly(store: SqlStore, nonce: str) -> None:
    until = T0 + timedelta(minutes=5)
    assert _use(store, "app", nonce, until, T0)
    assert not _use(store, "app", nonce, until, T0)
    for near in {nonce.upper(), nonce.lower(), nonce + " ", nonce.rstrip(), nonce[:-1] or "z"}:
        if near != nonce:
            assert _use(store, "app", near, until, T0), near


def test_near_keys_in_one_batch_do_not_collide(store: SqlStore) -> None:
    """Keys equal in some collation or after trimming, in one statement (PostgreSQL refuses an
    upsert that affects one row twice: a whole batch would fail, 503 for all of it)."""
    nonces = store.signature_nonces
    until = T0 + timedelta(minutes=5)
    keys = ["n", "N", "n ", " n", "ǹ", "n\u0300", "\uff4e", "n\t"]

    async def batch() -> list[bool]:
        return list(await asyncio.gather(*(nonces.use("app", k, until, T0) for k in keys)))

    assert asyncio.run(batch()) == [True] * len(keys)


def test_a_nul_nonce_fails_closed_without_poisoning_later_batches(store: SqlStore) -> None:
    """A NUL byte (PostgreSQL text refuses it): at worst its batch fails closed; the cache keeps
    working afterwards."""
    until = T0 + timedelta(minutes=5)
    try:
        first = _use(store, "app", "a\x00b", until, T0)
    except BackendUnavailable:
        first = None
    if first is not None:
        assert first is True
        assert not _use(store, "app", "a\x00b", until, T0)
        assert _use(store, "app", "a", until, T0)  # not truncated at the NUL
    assert _use(store, "app", "after-nul", until, T0)


def test_oauth1_four_column_key_with_an_empty_token(store: SqlStore) -> None:
    nonces = store.oauth1_nonces
    until = T0 + timedelta(minutes=5)

    async def run() -> list[bool]:
        first = await asyncio.gather(
            nonces.use("ck", "", 1_900_000_000, "n", until, T0),
            nonces.use("ck", "tok", 1_900_000_000, "n", until, T0),
            nonces.use("ck", "", 1_900_000_001, "n", until, T0),
            nonces.use("ck", "", 1_900_000_000, "n", until, T0),
            nonces.use("c", "k", 1_900_000_000, "n", until, T0),  # no concatenation clash
            nonces.use("ck", "", 0, "n", until, T0),
            nonces.use("ck", "", 2**62, "n", until, T0),
        )
        again = await asyncio.gather(
            nonces.use("ck", "", 1_900_000_000, "n", until, T0),
            nonces.use("ck", "", 2**62, "n", until, T0),
        )
        return [*first, *again]

    assert asyncio.run(run()) == [True, True, True, False, True, True, True, False, False]
    late = until + CLOCK_SKEW_MARGIN
    assert asyncio.run(nonces.use("ck", "", 1_900_000_000, "n", late + timedelta(minutes=1), late))


def _race(
    stores: list[SqlStore], calls: int, key: tuple[str, str], exp: datetime, nows: list[datetime]
) -> list[bool]:
    """``calls`` copies per store, each store in its own thread and event loop, released
    together (two instances racing a captured request)."""
    results: list[list[bool]] = [[] for _ in stores]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def run(i: int) -> None:
        async def go() -> list[bool]:
            nonces = stores[i].signature_nonces
            return list(
                await asyncio.gather(*(nonces.use(*key, exp, nows[i]) for _ in range(calls)))
            )

        try:
            barrier.wait()
            results[i] = asyncio.run(go())
        except BaseException as exc:  # (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return [r for rs in results for r in rs]


def test_a_fresh_nonce_raced_over_two_instances_wins_once(store: SqlStore, other: SqlStore) -> None:
    until = T0 + timedelta(minutes=5)
    for round_ in range(10):
        got = _race([store, other], 6, ("app", f"race{round_}"), until, [T0, T0])
        assert sum(got) == 1, (round_, got)


def test_an_expired_nonce_raced_with_skewed_clocks_wins_once(
    store: SqlStore, other: SqlStore
) -> None:
    """The record expired for one instance (its clock ahead) and not yet for the other: only
    the instance that sees it expired may take it, and only once."""
    until = T0 + timedelta(seconds=30)
    for round_ in range(10):
        key = ("app", f"skew{round_}")
        assert _use(store, *key, until, T0)
        ahead = until + CLOCK_SKEW_MARGIN + timedelta(seconds=5)
        behind = until + CLOCK_SKEW_MARGIN - timedelta(seconds=5)
        got = _race([store, other], 6, key, ahead + timedelta(minutes=5), [ahead, behind])
        assert sum(got[:6]) == 1 and sum(got[6:]) == 0, (round_, got)
        assert not _use(other, *key, ahead + timedelta(minutes=5), ahead)


def test_a_behind_clock_never_reuses_a_record_it_sees_alive(
    store: SqlStore, other: SqlStore
) -> None:
    until = T0 + timedelta(seconds=30)
    assert _use(store, "app", "behind", until, T0)
    behind = until + CLOCK_SKEW_MARGIN - timedelta(milliseconds=1)
    assert not _use(other, "app", "behind", behind + timedelta(minutes=5), behind)
    # A batch mixing a behind caller with an ahead one judges by the earliest: refused.
    nonces = other.signature_nonces
    ahead = until + CLOCK_SKEW_MARGIN + timedelta(hours=1)

    async def mixed() -> list[bool]:
        return list(
            await asyncio.gather(
                nonces.use("app", "behind", ahead + timedelta(minutes=5), ahead),
                nonces.use("app", "unrelated", ahead + timedelta(minutes=5), behind),
            )
        )

    assert asyncio.run(mixed()) == [False, True]


def test_overlapping_batches_from_two_instances_never_deadlock(
    store: SqlStore, other: SqlStore
) -> None:
    """Two instances submit the same keys in opposite orders, at once, many times: every
    batch goes through (no deadlock abort, no 503) and each key is won exactly once."""
    until = T0 + timedelta(minutes=5)
    for round_ in range(8):
        keys = [f"dl{round_}-{i:02d}" for i in range(40)]
        results: dict[int, list[bool]] = {}
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def run(i: int, s: SqlStore, order: list[str]) -> None:
            async def go() -> list[bool]:
                nonces = s.signature_nonces
                return list(await asyncio.gather(*(nonces.use("app", k, until, T0) for k in order)))

            try:
                barrier.wait()
                results[i] = asyncio.run(go())
            except BaseException as exc:  # (reported below)
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(0, store, keys)),
            threading.Thread(target=run, args=(1, other, keys[::-1])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        won = dict(zip(keys, results[0], strict=True))
        for k, r in zip(keys[::-1], results[1], strict=True):
            assert won[k] != r, k  # exactly one of the two


# === change 1: a bodiless head is viewed with body b"" =======================================

O1_ROUTES = """
[[routes]]
path = "/o1/**"
methods = ["GET", "POST", "PUT"]
scopes = ["notes:read"]
auth = ["oauth1"]
"""
HOST = b"gateway.test"
BODY = b'{"pay": 10}'
FORM = b"application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def sgw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("bodiless") / "gw",
        upstream,
        routes=ROUTES + O1_ROUTES,
        extra={"server.failed_attempts": '"100000/minute"'},
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def app(sgw: GatewayProcess) -> App:
    return make_app(sgw)


@pytest.fixture(scope="module")
def consumer(sgw: GatewayProcess) -> Consumer:
    return add_consumer(sgw)


@pytest.fixture(scope="module")
def token(sgw: GatewayProcess, consumer: Consumer) -> Token:
    return add_token(sgw, consumer, "alice")


def _all(gw: GatewayProcess, data: bytes, responses: int = 3) -> list[Response]:
    """Every response on one connection (up to ``responses``); the upstream's new requests
    are read by the caller."""
    return exchange(gw.port, data, responses=responses, timeout=3.0)


def _head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], *extra: bytes) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + HOST]
    lines += [k + b": " + v for k, v in headers]
    lines += list(extra)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_valid_twin_signed_get_without_body_and_post_with_body(
    sgw: GatewayProcess, app: App
) -> None:
    accepted(sgw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1")))
    accepted(
        sgw,
        raw("POST", b"/notes/1", sign(app, "POST", b"/notes/1", body=BODY), body=BODY),
        body=BODY,
    )


@pytest.mark.parametrize("framing", [b"", b"Content-Length: 0"])
def test_signed_digest_of_a_body_that_is_not_framed(
    sgw: GatewayProcess, app: App, framing: bytes
) -> None:
    """The signature covers content-digest of BODY; the head frames no body, the bytes follow
    (a pipelined "request"): the decision is on b"", the digest does not match."""
    headers = sign(app, "POST", b"/notes/1", body=BODY)
    data = _head(b"POST", b"/notes/1", headers, *([framing] if framing else [])) + BODY
    before = len(sgw.upstream.requests)
    got = _all(sgw, data)
    assert got and got[0].status == 401, [(r.status, r.body[:200]) for r in got]
    assert all(r.status in (400, 401) for r in got), [(r.status, r.body[:200]) for r in got]
    time.sleep(0.05)
    assert sgw.upstream.requests[before:] == []


def test_signed_digest_claims_the_empty_body_while_bytes_follow(
    sgw: GatewayProcess, app: App
) -> None:
    """A GET signed over content-digest of b"", then an unsigned request pipelined right after
    it (a "body" that is not framed): the GET goes through with b"", the second is judged on
    its own (401) and never reaches the upstream."""
    headers = _signed_over_the_empty_body(app)
    smuggled = b"POST /notes/2 HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 11\r\n\r\n" + BODY
    data = _head(b"GET", b"/notes/1", headers) + smuggled
    before = len(sgw.upstream.requests)
    got = _all(sgw, data)
    assert [r.status for r in got] == [200, 401], [(r.status, r.body[:200]) for r in got]
    time.sleep(0.05)
    new = sgw.upstream.requests[before:]
    assert [(r.method, r.target, r.body) for r in new] == [("GET", b"/notes/1", b"")], new


def test_signed_get_with_a_framed_body_is_read_and_covered(sgw: GatewayProcess, app: App) -> None:
    """A GET that does frame a body is not "bodiless": its body is read before the decision
    and must match the signed digest (here of b"": refused; signed over the body: passes)."""
    headers = _signed_over_the_empty_body(app)
    refused(sgw, raw("GET", b"/notes/1", headers, body=BODY))
    accepted(
        sgw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", body=BODY), body=BODY), body=BODY
    )
    unsigned_body = sign(app, "GET", b"/notes/1")  # no digest covered, body sent
    refused(sgw, raw("GET", b"/notes/1", unsigned_body, body=BODY))


@pytest.mark.parametrize(
    "framing",
    [
        [b"Content-Length: 0", b"Transfer-Encoding: chunked"],
        [b"Transfer-Encoding: chunked", b"Content-Length: 0"],
        [b"Content-Length: 0", b"Content-Length: 11"],
        [b"Content-Length: 11", b"Content-Length: 0"],
        [b"Content-Length: 0, 11"],
        [b"Content-Length: +11"],
        [b"Content-Length: -0"],
        [b"Content-Length: 0x0b"],
        [b"Content-Length: 1_1"],
        [b"Content-Length : 11"],
        [b"Content-Length:\r\n 11"],  # obs-fold
        [b"Content-Length: 0\r\n 11"],  # obs-fold continuing a 0
        [b"X-Pad: a\r\n Content-Length: 11"],  # a folded line that looks like a header
        [b"Transfer-Encoding: identity"],
        [b"Transfer-Encoding: gzip"],
        [b"Transfer-Encoding: chunked, identity"],
        [b"Transfer-Encoding:"],
        [b"Transfer-Encoding : chunked"],
        [b"Transfer-Encoding\t: chunked"],
        [b" Transfer-Encoding: chunked"],
        [b"Content-Length: \x0b11"],
        [b"Content-Length: 11\x00"],
    ],
)
def test_ambiguous_framing_never_reaches_the_upstream_as_a_body(
    sgw: GatewayProcess, app: App, framing: list[bytes]
) -> None:
    """Each head is signed over content-digest of b"" (what restguard would see if it thought
    "no body") and followed by BODY: an ambiguous head is refused; one that is accepted must be
    judged on the bytes forwarded, so the upstream never gets BODY under this signature."""
    headers = sign(
        app,
        "POST",
        b"/notes/1",
        headers=[(b"content-digest", b"sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:")],
        components=["@method", "@authority", "@path", "content-digest"],
    )
    body = b"b\r\n" + BODY + b"\r\n0\r\n\r\n" if any(b"chunked" in f for f in framing) else BODY
    data = _head(b"POST", b"/notes/1", headers, *framing) + body
    before = len(sgw.upstream.requests)
    got = _all(sgw, data)
    time.sleep(0.1)
    new = sgw.upstream.requests[before:]
    statuses = [r.status for r in got]
    assert statuses == [400], (framing, statuses)  # (every one of them: llhttp refuses it)
    assert new == [], (framing, statuses, new)


def test_http10_post_without_content_length_is_judged_bodiless(
    sgw: GatewayProcess, app: App
) -> None:
    """HTTP/1.0: a request body needs Content-Length; bytes after a head without it are not a
    body. Signed over BODY's digest: 401; signed over nothing: forwarded with b""."""
    headers = sign(app, "POST", b"/notes/1", body=BODY)
    lines = [b"POST /notes/1 HTTP/1.0", b"Host: " + HOST] + [k + b": " + v for k, v in headers]
    data = b"\r\n".join(lines) + b"\r\n\r\n" + BODY
    before = len(sgw.upstream.requests)
    got = _all(sgw, data, responses=1)
    assert got and got[0].status in (400, 401), [(r.status, r.body[:200]) for r in got]
    time.sleep(0.05)
    assert sgw.upstream.requests[before:] == []
    good = sign(app, "POST", b"/notes/1")
    lines = [b"POST /notes/1 HTTP/1.0", b"Host: " + HOST] + [k + b": " + v for k, v in good]
    got = _all(sgw, b"\r\n".join(lines) + b"\r\n\r\n" + BODY, responses=1)
    assert got and got[0].status == 200, [(r.status, r.body[:200]) for r in got]
    time.sleep(0.05)
    assert [r.body for r in sgw.upstream.requests[before:]] == [b""]


def test_pipelined_signed_gets_each_judged_on_their_own(sgw: GatewayProcess, app: App) -> None:
    """Three bodiless signed GETs on one connection, the second with a forged signature: each
    decided by itself (200, 401, 200), no state leaks from one view to the next."""
    a = _head(b"GET", b"/notes/a", sign(app, "GET", b"/notes/a"))
    forged = [
        (k, v[:-6] + (b"AAAA=:" if not v.endswith(b"AAAA=:") else b"BBBB=:"))
        if k == b"signature"
        else (k, v)
        for k, v in sign(app, "GET", b"/notes/b")
    ]
    b = _head(b"GET", b"/notes/b", forged)
    c = _head(b"GET", b"/notes/c", sign(app, "GET", b"/notes/c"))
    before = len(sgw.upstream.requests)
    got = _all(sgw, a + b + c)
    assert [r.status for r in got] == [200, 401, 200], [(r.status, r.body[:200]) for r in got]
    time.sleep(0.05)
    assert [r.target for r in sgw.upstream.requests[before:]] == [b"/notes/a", b"/notes/c"]


def test_signature_input_without_signature_on_a_bodiless_get(sgw: GatewayProcess, app: App) -> None:
    """The one-pass extract: one field without the other (or empty) is refused."""
    headers = sign(app, "GET", b"/notes/1")
    only_input = [(k, v) for k, v in headers if k != b"signature"]
    only_sig = [(k, v) for k, v in headers if k != b"signature-input"]
    empty_sig = [(k, b"" if k == b"signature" else v) for k, v in headers]
    for h in (only_input, only_sig, empty_sig):
        refused(sgw, raw("GET", b"/notes/1", h), 400, 401)
    # Mixed case names are lower-cased by the parser: still found
    mixed = [(b"Signature-INPUT" if k == b"signature-input" else k, v) for k, v in headers]
    accepted(sgw, raw("GET", b"/notes/1", mixed))


# --- OAuth 1.0a on bodiless requests ---------------------------------------------------------


def _o1_refused(gw: GatewayProcess, data: bytes) -> list[Response]:
    before = len(gw.upstream.requests)
    got = _all(gw, data)
    assert got and got[0].status == 401, [(r.status, r.body[:200]) for r in got]
    assert all(r.status in (400, 401) for r in got), [(r.status, r.body[:200]) for r in got]
    time.sleep(0.05)
    assert gw.upstream.requests[before:] == [], "the upstream received a refused request"
    return got


def test_oauth1_valid_twins_bodiless_and_with_form(
    sgw: GatewayProcess, consumer: Consumer, token: Token
) -> None:
    o1.accepted(sgw, o1.req(consumer, token, "POST", b"/o1/1", nonce=o1.unique("a")))
    form = b"a=1&b=2"
    o1.accepted(
        sgw, o1.req(consumer, token, "POST", b"/o1/1", form, nonce=o1.unique("b")), body=form
    )


@pytest.mark.parametrize("where", ["header", "query"])
@pytest.mark.parametrize("framing", [b"", b"Content-Length: 0"])
def test_oauth1_signed_form_params_sent_without_a_body(
    sgw: GatewayProcess, consumer: Consumer, token: Token, where: str, framing: bytes
) -> None:
    """The signature covers form parameters a=1&b=2; the head frames no body and the bytes
    follow: judged on b"" (the signed parameters are missing): 401."""
    signed_form = b"a=1&b=2"
    params = o1.sign(consumer, token, "POST", b"/o1/1", signed_form, nonce=o1.unique("c"))
    target = b"/o1/1"
    headers = [(b"Content-Type", FORM)]
    if where == "header":
        headers.append((b"Authorization", o1.header(params)))
    else:
        target += b"?" + form(params).encode()
    data = _head(b"POST", target, headers, *([framing] if framing else [])) + signed_form
    _o1_refused(sgw, data)


@pytest.mark.parametrize("framing", [b"", b"Content-Length: 0"])
def test_oauth1_params_in_an_unframed_form_body(
    sgw: GatewayProcess, consumer: Consumer, token: Token, framing: bytes
) -> None:
    """§3.5.2 parameters in a form body the head does not frame: no credential (b"" has no
    oauth_ parameters), 401; the bytes are not a body."""
    params = o1.sign(consumer, token, "POST", b"/o1/1", b"", nonce=o1.unique("d"))
    body = form(params).encode()
    data = _head(b"POST", b"/o1/1", [(b"Content-Type", FORM)], *([framing] if framing else []))
    _o1_refused(sgw, data + body)


def test_oauth1_get_with_query_params_and_an_unsigned_framed_form_body(
    sgw: GatewayProcess, consumer: Consumer, token: Token
) -> None:
    """A GET that does frame a form body: the body is read and its parameters must be signed."""
    params = o1.sign(consumer, token, "GET", b"/o1/1", None, nonce=o1.unique("e"))
    target = b"/o1/1?" + form(params).encode()
    data = _head(b"GET", target, [(b"Content-Type", FORM), (b"Content-Length", b"3")]) + b"x=1"
    _o1_refused(sgw, data)


def test_oauth1_bodiless_post_declaring_a_form_is_judged_on_the_empty_form(
    sgw: GatewayProcess, consumer: Consumer, token: Token
) -> None:
    """Content-Type form, no body: the empty form is signed (no parameters): forwarded with
    b""; signed over a=1 instead: refused."""
    params = o1.sign(consumer, token, "POST", b"/o1/1", b"", nonce=o1.unique("f"))
    headers = [(b"Content-Type", FORM), (b"Authorization", o1.header(params))]
    o1.accepted(sgw, _head(b"POST", b"/o1/1", headers))
    params = o1.sign(consumer, token, "POST", b"/o1/1", b"a=1", nonce=o1.unique("g"))
    headers = [(b"Content-Type", FORM), (b"Authorization", o1.header(params))]
    _o1_refused(sgw, _head(b"POST", b"/o1/1", headers))


def test_upgrade_on_a_bodiless_signed_get_tunnels_nothing(sgw: GatewayProcess, app: App) -> None:
    """An Upgrade request without a body, then bytes: they are the next request (refused), not
    a tunnel, and the upstream sees one bodiless GET without Upgrade."""
    headers = _signed_over_the_empty_body(app)
    head = _head(b"GET", b"/notes/1", headers, b"Connection: Upgrade", b"Upgrade: websocket")
    smuggled = b"POST /notes/2 HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 11\r\n\r\n" + BODY
    before = len(sgw.upstream.requests)
    got = _all(sgw, head + smuggled)
    statuses = [r.status for r in got]
    time.sleep(0.05)
    new = sgw.upstream.requests[before:]
    assert statuses[:1] == [200] and all(s in (400, 401) for s in statuses[1:]), statuses
    assert [(r.target, r.body) for r in new] == [(b"/notes/1", b"")], new
    assert new[0].header("upgrade") is None


def test_expect_continue_on_a_bodiless_head_is_decided_at_once(
    sgw: GatewayProcess, app: App
) -> None:
    """Expect: 100-continue without framing: no body is coming, the decision is on b"" (a
    signature over BODY's digest: 401, no 100 Continue, nothing upstream)."""
    headers = sign(app, "POST", b"/notes/1", body=BODY)
    data = _head(b"POST", b"/notes/1", headers, b"Expect: 100-continue")
    before = len(sgw.upstream.requests)
    with socket.create_connection(("127.0.0.1", sgw.port), timeout=3) as s:
        s.sendall(data)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    time.sleep(0.05)
    assert sgw.upstream.requests[before:] == []
    good = sign(app, "POST", b"/notes/1")
    accepted(sgw, _head(b"POST", b"/notes/1", good, b"Expect: 100-continue", b"Content-Length: 0"))


@pytest.mark.parametrize("kind", ["uvicorn", "wsgiref"])
def test_stock_upstreams_get_only_the_bodiless_requests_judged(
    tmp_path_factory: pytest.TempPathFactory, kind: str
) -> None:
    """Through stock servers (keep-alive to the upstream): bodiless signed requests, each
    followed on the client connection by bytes that are not their body, one of them an unsigned
    POST with a body: the stock app receives exactly the judged requests, each with b""."""
    import base64

    stock = Stock(kind)
    gateway = GatewayProcess(
        tmp_path_factory.mktemp(f"bodiless-{kind}") / "gw",
        stock,  # type: ignore[arg-type]  # (only .url is used)
        routes=ROUTES,
        extra={"server.failed_attempts": '"100000/minute"'},
    ).start()
    try:
        keyid, secret = add_app(gateway, "hmac-sha256")
        assert secret is not None
        key = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))

        def signed(method: str, path: str, body: bytes = b"") -> list[tuple[bytes, bytes]]:
            return signed_headers(method, path, keyid=keyid, key=key, authority=HOST, body=body)

        smuggled = b"POST /notes/9 HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 11\r\n\r\n"
        data = (
            _head(b"GET", b"/notes/1", signed("GET", "/notes/1"))
            + _head(b"POST", b"/notes/2", signed("POST", "/notes/2"), b"Content-Length: 0")
            + smuggled
            + BODY
            + _head(b"POST", b"/notes/3", signed("POST", "/notes/3", BODY))  # digest, no body
            + BODY
        )
        got = exchange(gateway.port, data, responses=5, timeout=5.0)
        statuses = [r.status for r in got]
        assert statuses[:4] == [200, 200, 401, 401], statuses
        assert all(st in (400, 401) for st in statuses[4:]), statuses
        time.sleep(0.1)
        assert stock.bodies == [b"", b""], stock.bodies
    finally:
        gateway.stop()
        stock.stop()


@pytest.mark.parametrize("odd", ["lone\ud800surrogate", "nul\x00byte"])
def test_an_unstorable_nonce_fails_its_batch_closed_and_nothing_after(
    store: SqlStore, odd: str
) -> None:
    """A nonce the database cannot store (a lone surrogate is not UTF-8; PostgreSQL text has
    no NUL) may fail its batch, closed (every caller refused, nothing recorded), never admit
    it unchecked; the next batch decides normally."""
    nonces = store.signature_nonces
    until = T0 + timedelta(minutes=5)

    async def batch() -> list[bool | BaseException]:
        return list(
            await asyncio.gather(
                nonces.use("app", odd, until, T0),
                nonces.use("app", "neighbour-" + odd[:3], until, T0),
                return_exceptions=True,
            )
        )

    first = asyncio.run(batch())
    if any(isinstance(r, BaseException) for r in first):
        assert all(isinstance(r, BackendUnavailable) for r in first), first
        # nothing was recorded: both are fresh on the retry... unless the odd one fails again
        assert _use(store, "app", "neighbour-" + odd[:3], until, T0)
    else:
        assert first == [True, True]
        assert not _use(store, "app", odd, until, T0)
    assert _use(store, "app", "after-" + odd[:3], until, T0)


def test_an_oauth1_timestamp_past_bigint_fails_closed(store: SqlStore) -> None:
    nonces = store.oauth1_nonces
    until = T0 + timedelta(minutes=5)

    async def batch() -> list[bool | BaseException]:
        return list(
            await asyncio.gather(
                nonces.use("ck", "", 2**63, "n", until, T0),
                nonces.use("ck", "", 1, "n", until, T0),
                return_exceptions=True,
            )
        )

    first = asyncio.run(batch())
    assert first[0] is not True, first
    assert all(isinstance(r, (BackendUnavailable, ValueError)) or r is False for r in first[:1])
    assert asyncio.run(nonces.use("ck", "", 2, "n", until, T0))
