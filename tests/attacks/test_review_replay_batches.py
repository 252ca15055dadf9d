"""Review of the database replay caches written in batches (``store/sql/nonce_batches.py``
driven by ``store/batch.py``'s ``Coalescer``), with NO Redis configured: RFC 9421 signature
nonces and OAuth 1.0a nonces, through the real gateway over raw sockets, on SQLite and on the
real PostgreSQL, against the RecordingUpstream and stock upstreams (uvicorn, wsgiref).

What each test holds the gateway to: a signed request's bytes, sent any number of times (at
once over many connections, pipelined on one, across two instances on one database, with the
clients hanging up), reach the upstream at most once; nonces with odd characters (quotes and
backslashes in an sf-string, long and non-ASCII OAuth nonces) are single-use like any other and
cannot fail the batch of other callers; a database that cannot take the batch's write (SQLite
write lock held, PostgreSQL nonce table locked, PostgreSQL database dropped) is a 503 for every
signed request and nothing forwarded, and the gateway recovers once the database does; the
record kept for a nonce lives at least as long as its signature is acceptable.

Finding (fixed), not introduced by the batches (the per-call store swept the same way):
``test_an_instance_with_a_fast_clock_does_not_reopen_another_instances_nonce[1|10]``: an
instance whose clock ran ahead deleted another instance's nonce records early, so a replay to
the other was forwarded again. Records are now deleted only once expired by
``CLOCK_SKEW_MARGIN``. Redis keeps a duration instead (``store/redis/nonces.py``).
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from restguard.asgi import GuardMiddleware
from restguard.cli.init import write_data_dir
from restguard.clock import FixedClock
from restguard.config import load
from restguard.credentials.apps import new_app
from restguard.credentials.signature import MAX_AGE
from restguard.wire import rfc9421, rfc9421_algorithms
from restguard.wiring import open_runtime
from tests.attacks.wire import exchange
from tests.fixtures_db import PG_ADMIN_DSN, PG_SERVER
from tests.harness import GatewayProcess, RecordingUpstream, set_key
from tests.instances import gateway_pair
from tests.oauth1_support import (
    Consumer,
    Token,
    add_consumer,
    add_token,
    authorization,
    base_string,
    base_uri,
    oauth_params,
    signature,
)
from tests.signature_support import add_app, signed_headers
from tests.stock_upstreams import UvicornUpstream, WsgiRefUpstream

HOST = b"gateway.test"
Header = tuple[bytes, bytes]
ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET", "POST"]
scopes = ["notes:write"]
auth = ["signature"]

[[routes]]
path = "/oa/**"
methods = ["GET", "POST"]
scopes = ["notes:read"]
auth = ["oauth1"]
"""
EXTRA = {
    "server.failed_attempts": '"1000000/minute"',
    "storage.redis": '""',
    "storage.timeout": '"1s"',
}


# --- signing --------------------------------------------------------------------------------


class Signer:
    """An hmac-sha256 RFC 9421 app on a gateway's database."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.keyid, secret = add_app(gw, "hmac-sha256")
        assert secret is not None
        self.key = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))

    def request(
        self,
        path: str,
        *,
        nonce: str | None = None,
        body: bytes = b"",
        created: int | None = None,
    ) -> bytes:
        method = "POST" if body else "GET"
        headers = signed_headers(
            method,
            path,
            keyid=self.keyid,
            key=self.key,
            authority=HOST,
            body=body,
            created=created,
            nonce=nonce,
        )
        if body:
            headers.append((b"content-length", b"%d" % len(body)))
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + HOST]
        lines += [k + b": " + v for k, v in headers]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


def oauth_request(
    c: Consumer,
    t: Token | None,
    path: str,
    *,
    nonce: str | None = None,
    timestamp: int | str | None = None,
) -> bytes:
    proto = oauth_params(
        c.key,
        "HMAC-SHA1",
        token=t.token if t is not None else None,
        timestamp=timestamp,
        nonce_value=nonce,
    )
    base = base_string("GET", base_uri("http", HOST.decode(), path), proto)
    proto.append(("oauth_signature", signature("HMAC-SHA1", base, c.secret, t.secret if t else "")))
    auth = authorization(proto).encode("utf-8")
    return b"GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\n\r\n" % (
        path.encode(),
        HOST,
        auth,
    )


def unique_path(prefix: str = "/notes/") -> str:
    return prefix + secrets.token_hex(8)


# --- sending --------------------------------------------------------------------------------


def status(port: int, data: bytes, timeout: float = 15.0) -> int:
    """The status of ``data`` sent alone on a fresh connection; 0 for no response."""
    got = exchange(port, data, timeout=timeout)
    return got[0].status if got else 0


def blast(jobs: Sequence[tuple[int, bytes]], timeout: float = 15.0) -> list[int]:
    """Each (port, request) on its own connection, all released at once: their statuses."""
    barrier = threading.Barrier(len(jobs))

    def one(job: tuple[int, bytes]) -> int:
        port, data = job
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            barrier.wait(timeout)
            s.sendall(data)
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return 0
                buf += chunk
            return int(buf.split(b" ", 2)[1])

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs))


def forwarded(upstream: RecordingUpstream, path: str, settle: float = 0.3) -> int:
    """How many requests for ``path`` the RecordingUpstream received."""
    time.sleep(settle)
    return sum(1 for r in upstream.requests if r.target == path.encode())


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


# --- gateways -------------------------------------------------------------------------------


@pytest.fixture
def up(upstream: RecordingUpstream) -> RecordingUpstream:
    upstream.clear()
    return upstream


def _db_url(kind: str, request: pytest.FixtureRequest) -> str | None:
    if kind == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def gw(
    request: pytest.FixtureRequest, tmp_path: Path, up: RecordingUpstream
) -> Iterator[GatewayProcess]:
    url = _db_url(request.param, request)
    gateway = GatewayProcess(
        tmp_path / "gw", up, routes=ROUTES, database_url=url, extra=EXTRA
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def sqlite_gw(tmp_path: Path, up: RecordingUpstream) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path / "gw", up, routes=ROUTES, extra=EXTRA).start()
    yield gateway
    gateway.stop()


# --- (1) one gateway: copies at once, pipelined, with hang-ups -------------------------------


def test_concurrent_copies_of_a_signed_request_are_forwarded_once(
    gw: GatewayProcess, up: RecordingUpstream
) -> None:
    """Per round: 16 copies of one signed request and 8 fresh ones, released together (they
    share batches): the copies give exactly one 200, the fresh ones all 200."""
    signer = Signer(gw)
    for _ in range(3):
        path = unique_path()
        copy = signer.request(path)
        fresh = [unique_path() for _ in range(8)]
        jobs = [(gw.port, copy)] * 16 + [(gw.port, signer.request(p)) for p in fresh]
        got = blast(jobs)
        assert sorted(got[:16]) == [200] + [401] * 15, got
        assert got[16:] == [200] * 8, got
        assert forwarded(up, path) == 1
        assert all(forwarded(up, p, settle=0) == 1 for p in fresh)


def test_a_burst_of_hundreds_keeps_every_fresh_request_and_one_copy(
    gw: GatewayProcess, up: RecordingUpstream
) -> None:
    """300 fresh signed requests and 40 copies of one, at once (batches up to MAX_BATCH and
    more than one of them): every fresh one passes, the copies once."""
    signer = Signer(gw)
    path = unique_path()
    copy = signer.request(path)
    fresh = [unique_path() for _ in range(300)]
    jobs = [(gw.port, copy)] * 40 + [(gw.port, signer.request(p)) for p in fresh]
    got = blast(jobs, timeout=30)
    assert sorted(got[:40]) == [200] + [401] * 39, got[:40]
    assert got[40:] == [200] * 300, {x: got[40:].count(x) for x in set(got[40:])}
    assert forwarded(up, path) == 1


def test_pipelined_copies_on_one_connection_are_forwarded_once(
    sqlite_gw: GatewayProcess, up: RecordingUpstream
) -> None:
    signer = Signer(sqlite_gw)
    path = unique_path()
    copy = signer.request(path, body=b'{"pay": 10}')
    got = exchange(sqlite_gw.port, copy * 6, responses=6, timeout=10)
    assert got and got[0].status == 200, [r.status for r in got]
    assert all(r.status == 401 for r in got[1:]), [r.status for r in got]
    assert forwarded(up, path) == 1


def test_clients_hanging_up_do_not_buy_a_second_admission(
    sqlite_gw: GatewayProcess, up: RecordingUpstream
) -> None:
    """Copies whose clients close right after sending (their callers may be cancelled while
    queued for a batch), then the same request sent normally, twice: at most one forwarded."""
    signer = Signer(sqlite_gw)
    path = unique_path()
    copy = signer.request(path)
    barrier = threading.Barrier(12)

    def hang_up() -> None:
        with socket.create_connection(("127.0.0.1", sqlite_gw.port), timeout=5) as s:
            barrier.wait(5)
            s.sendall(copy)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda _: hang_up(), range(12)))
    time.sleep(0.5)
    statuses = [status(sqlite_gw.port, copy) for _ in range(2)]
    total = forwarded(up, path)
    assert total <= 1, (total, statuses)
    # the gateway still answers, and a fresh request is forwarded
    assert status(sqlite_gw.port, signer.request(unique_path())) == 200


# --- (2) odd nonces ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nonce",
    [
        "n" * 128,  # the longest accepted
        'q"uote\\back\\\\slash',  # escaped in the sf-string
        " spaces  and ~!#$%&'()*+,-./:;<=>?@[]^_`{|} ",
    ],
)
def test_odd_signature_nonces_are_single_use(
    gw: GatewayProcess, up: RecordingUpstream, nonce: str
) -> None:
    signer = Signer(gw)
    path = unique_path()
    copy = signer.request(path, nonce=nonce)
    got = blast([(gw.port, copy)] * 6)
    assert sorted(got) == [200] + [401] * 5, got
    assert status(gw.port, copy) == 401
    assert forwarded(up, path) == 1
    # a nonce differing only in case is another nonce (byte-exact keys)
    other = unique_path()
    assert status(gw.port, signer.request(other, nonce=nonce.upper())) == (
        401 if nonce.upper() == nonce else 200
    )


def test_signature_nonce_over_the_limit_is_refused_without_failing_the_batch(
    sqlite_gw: GatewayProcess, up: RecordingUpstream
) -> None:
    signer = Signer(sqlite_gw)
    bad = unique_path()
    good = [unique_path() for _ in range(10)]
    jobs = [(sqlite_gw.port, signer.request(bad, nonce="x" * 129))] * 4
    jobs += [(sqlite_gw.port, signer.request(p)) for p in good]
    got = blast(jobs)
    assert got[:4] == [401] * 4 and got[4:] == [200] * 10, got
    assert forwarded(up, bad) == 0


@pytest.fixture
def oauth(gw: GatewayProcess) -> tuple[Consumer, Token]:
    c = add_consumer(gw)
    return c, add_token(gw, c, "alice")


@pytest.mark.parametrize(
    "nonce",
    [
        "é" * 255,  # the longest accepted, two UTF-8 octets each
        "🔑" * 100 + "\u00a0\u200b\ufeff",  # four-octet characters, invisible ones
        "\uff21\uff42\uff43" + secrets.token_hex(4),  # fullwidth (NFKC would make it "Abc")
    ],
)
def test_oauth1_copies_racing_with_odd_nonces_are_forwarded_once(
    gw: GatewayProcess, up: RecordingUpstream, oauth: tuple[Consumer, Token], nonce: str
) -> None:
    c, t = oauth
    path = unique_path("/oa/")
    copy = oauth_request(c, t, path, nonce=nonce)
    got = blast([(gw.port, copy)] * 12)
    assert sorted(got) == [200] + [401] * 11, got
    assert forwarded(up, path) == 1
    # the same nonce with another timestamp is another key (RFC 5849 §3.3): accepted once
    other = unique_path("/oa/")
    again = oauth_request(c, t, other, nonce=nonce, timestamp=int(time.time()) - 5)
    assert blast([(gw.port, again)] * 4).count(200) == 1
    assert forwarded(up, other) == 1


def test_oauth1_poison_values_cannot_fail_other_callers_batch(
    gw: GatewayProcess, up: RecordingUpstream, oauth: tuple[Consumer, Token]
) -> None:
    """Correctly signed requests with values a database column might choke on (a NUL, a nonce
    over the cap, a 19-digit timestamp past BIGINT) race fresh requests: the fresh ones all
    pass, the poison ones are refused and forwarded nowhere."""
    c, t = oauth
    poison = [
        oauth_request(c, t, unique_path("/oa/"), nonce="a\x00b"),
        oauth_request(c, t, unique_path("/oa/"), nonce="z" * 256),
        oauth_request(c, t, unique_path("/oa/"), timestamp="9999999999999999999"),
        oauth_request(c, t, unique_path("/oa/"), timestamp="9223372036854775807"),
    ]
    good = [unique_path("/oa/") for _ in range(12)]
    for _ in range(2):
        before = len(up.requests)
        fresh = [oauth_request(c, t, p) for p in good]
        got = blast([(gw.port, p) for p in poison * 2] + [(gw.port, f) for f in fresh])
        assert all(s in (400, 401) for s in got[:8]), got
        assert got[8:] == [200] * 12, got
        time.sleep(0.3)
        assert len(up.requests) - before == 12
        good = [unique_path("/oa/") for _ in range(12)]


# --- (3) two instances on one PostgreSQL database --------------------------------------------


@pytest.mark.postgres
def test_two_instances_on_one_postgresql_race_one_nonce(
    tmp_path: Path, up: RecordingUpstream, postgres_url: str
) -> None:
    one, two = gateway_pair(tmp_path, up, postgres_url, (ROUTES, ROUTES), redis="", extra=EXTRA)
    try:
        signer = Signer(one)
        c = add_consumer(one)
        t = add_token(one, c, "alice")
        for _ in range(3):
            path, opath = unique_path(), unique_path("/oa/")
            copy, ocopy = signer.request(path), oauth_request(c, t, opath)
            jobs = [(gw.port, copy) for gw in (one, two) for _ in range(8)]
            jobs += [(gw.port, ocopy) for gw in (one, two) for _ in range(8)]
            got = blast(jobs)
            assert sorted(got[:16]) == [200] + [401] * 15, got
            assert sorted(got[16:]) == [200] + [401] * 15, got
            assert forwarded(up, path) == 1 and forwarded(up, opath, settle=0) == 1
    finally:
        one.stop()
        two.stop()


# --- (4) the record outlives the signature's window --------------------------------------------


def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return list(conn.execute(query))
    with psycopg.connect(url) as conn:
        return list(conn.execute(query))  # type: ignore[arg-type]


def _when(value: Any) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_the_nonce_record_lives_as_long_as_its_signature_is_acceptable(
    gw: GatewayProcess, up: RecordingUpstream, oauth: tuple[Consumer, Token]
) -> None:
    """A signature created 25 s ahead (accepted until created + MAX_AGE) and an OAuth request
    stamped 250 s ahead: their records expire no earlier than the last accepted second + 1,
    and the copies are refused meanwhile."""
    signer = Signer(gw)
    created = int(time.time()) + 25
    nonce = "edge-" + secrets.token_hex(6)
    path = unique_path()
    copy = signer.request(path, nonce=nonce, created=created)
    assert status(gw.port, copy) == 200
    assert status(gw.port, copy) == 401
    url = gw.settings.database_url
    rows = _rows(url, f"SELECT expires_at FROM signature_nonces WHERE nonce = '{nonce}'")
    assert len(rows) == 1
    assert _when(rows[0][0]).timestamp() >= created + MAX_AGE + 1

    c, t = oauth
    stamp = int(time.time()) + 250
    onon = "edge-" + secrets.token_hex(6)
    opath = unique_path("/oa/")
    ocopy = oauth_request(c, t, opath, nonce=onon, timestamp=stamp)
    assert status(gw.port, ocopy) == 200  # (the default window is 300 s either way)
    assert status(gw.port, ocopy) == 401
    rows = _rows(url, f"SELECT expires_at FROM oauth1_nonces WHERE nonce = '{onon}'")
    assert len(rows) == 1
    assert _when(rows[0][0]).timestamp() >= stamp + 300 + 1
    assert forwarded(up, path) == 1 and forwarded(up, opath, settle=0) == 1


# --- (5) the database down: 503, nothing forwarded, recovery -------------------------------


def _outage(
    gw: GatewayProcess,
    up: RecordingUpstream,
    signer: Signer,
    c: Consumer,
    t: Token,
    lock: Callable[[], Callable[[], None]],
) -> None:
    """With ``lock()`` held, every signed request (RFC 9421 and OAuth 1.0a) is a 503 and is
    forwarded nowhere; after its release, fresh ones pass again, and each of the requests
    refused meanwhile reaches the upstream at most once however often it is sent again."""
    assert status(gw.port, signer.request(unique_path())) == 200  # warm: apps cached
    assert status(gw.port, oauth_request(c, t, unique_path("/oa/"))) == 200
    release = lock()
    try:
        paths = [unique_path() for _ in range(6)] + [unique_path("/oa/") for _ in range(6)]
        held = [signer.request(p) for p in paths[:6]] + [oauth_request(c, t, p) for p in paths[6:]]
        got = blast([(gw.port, h) for h in held] * 2, timeout=30)
        assert got == [503] * 24, got
        assert all(forwarded(up, p, settle=0) == 0 for p in paths)
    finally:
        release()
    assert eventually(lambda: status(gw.port, signer.request(unique_path())) == 200)
    assert status(gw.port, oauth_request(c, t, unique_path("/oa/"))) == 200
    for h in held:
        blast([(gw.port, h)] * 3)
    time.sleep(0.3)
    assert all(forwarded(up, p, settle=0) <= 1 for p in paths), [
        forwarded(up, p, settle=0) for p in paths
    ]


def test_sqlite_write_lock_held_is_503_then_recovers(
    sqlite_gw: GatewayProcess, up: RecordingUpstream
) -> None:
    signer = Signer(sqlite_gw)
    c = add_consumer(sqlite_gw)
    t = add_token(sqlite_gw, c, "alice")
    path = sqlite_gw.settings.database_url.removeprefix("sqlite:///")

    def lock() -> Callable[[], None]:
        conn = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN EXCLUSIVE")

        def release() -> None:
            conn.execute("ROLLBACK")
            conn.close()

        return release

    _outage(sqlite_gw, up, signer, c, t, lock)


@pytest.mark.postgres
def test_postgresql_nonce_tables_locked_is_503_then_recovers(
    tmp_path: Path, up: RecordingUpstream, postgres_url: str
) -> None:
    gw = GatewayProcess(
        tmp_path / "gw", up, routes=ROUTES, database_url=postgres_url, extra=EXTRA
    ).start()
    try:
        signer = Signer(gw)
        c = add_consumer(gw)
        t = add_token(gw, c, "alice")

        def lock() -> Callable[[], None]:
            conn = psycopg.connect(postgres_url)
            conn.execute("LOCK TABLE signature_nonces, oauth1_nonces IN ACCESS EXCLUSIVE MODE")

            def release() -> None:
                conn.rollback()
                conn.close()

            return release

        _outage(gw, up, signer, c, t, lock)
    finally:
        gw.stop()


@pytest.mark.postgres
def test_postgresql_database_dropped_is_503_never_forwarded(
    tmp_path: Path, up: RecordingUpstream
) -> None:
    name = f"rg_test_{secrets.token_hex(8)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    gw = GatewayProcess(
        tmp_path / "gw", up, routes=ROUTES, database_url=PG_SERVER + name, extra=EXTRA
    ).start()
    try:
        signer = Signer(gw)
        c = add_consumer(gw)
        t = add_token(gw, c, "alice")
        assert status(gw.port, signer.request(unique_path())) == 200
        assert status(gw.port, oauth_request(c, t, unique_path("/oa/"))) == 200
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        paths = [unique_path() for _ in range(8)] + [unique_path("/oa/") for _ in range(8)]
        reqs = [signer.request(p) for p in paths[:8]] + [oauth_request(c, t, p) for p in paths[8:]]
        got = blast([(gw.port, r) for r in reqs] * 2, timeout=30)
        assert got == [503] * 32, got
        assert all(forwarded(up, p, settle=0) == 0 for p in paths)
    finally:
        gw.stop()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- (6) stock upstreams -------------------------------------------------------------------


class Counting:
    """A stock server whose app records every (path, body) it runs."""

    def __init__(self, kind: str) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.server: Any
        if kind == "uvicorn":

            async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
                body = b""
                while True:
                    message = await receive()
                    body += message.get("body", b"")
                    if not message.get("more_body"):
                        break
                self.seen.append((scope["path"], body))
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-length", b"2")],
                    }
                )
                await send({"type": "http.response.body", "body": b"ok"})

            self.server = UvicornUpstream(app)
        else:

            def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
                length = environ.get("CONTENT_LENGTH") or ""
                body = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""
                self.seen.append((environ["PATH_INFO"], body))
                start_response("200 OK", [("Content-Length", "2")])
                return [b"ok"]

            self.server = WsgiRefUpstream(wsgi)

    @property
    def url(self) -> str:
        return str(self.server.url)


@pytest.mark.parametrize("kind", ["uvicorn", "wsgiref"])
def test_stock_upstream_runs_a_raced_signed_body_once(tmp_path: Path, kind: str) -> None:
    stock = Counting(kind)
    gw = GatewayProcess(
        tmp_path / "gw",
        stock,  # type: ignore[arg-type]  # (only .url is used)
        routes=ROUTES,
        extra=EXTRA,
    ).start()
    try:
        signer = Signer(gw)
        body = json.dumps({"pay": 10, "pad": "x" * 2000}).encode()
        path = unique_path()
        copy = signer.request(path, body=body)
        got = blast([(gw.port, copy)] * 12)
        got += [r.status for r in exchange(gw.port, copy * 3, responses=3, timeout=10)]
        assert got.count(200) == 1 and got.count(401) == len(got) - 1, got
        time.sleep(0.3)
        assert [b for p, b in stock.seen if p == path] == [body]
    finally:
        gw.stop()
        stock.server.stop()


# --- (7) two instances whose clocks disagree -------------------------------------------------


def _instance_config(directory: Path, database_url: str, master: Path | None) -> Path:
    config = write_data_dir(directory, routes=ROUTES)
    text = set_key(config.read_text(), "storage.database", json.dumps(database_url))
    text = set_key(text, "storage.redis", '""')
    if master is not None:
        text = set_key(text, "keys.master_key", json.dumps(str(master)))
    config.write_text(text)
    return config


async def _asgi_status(middleware: GuardMiddleware, path: str, headers: list[Header]) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", HOST), *headers],
        "client": ("203.0.113.9", 40000),
        "server": ("gateway.test", 80),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await middleware(scope, receive, send)
    return statuses[0]


def _signed(keyid: str, key: bytes, path: str, created: int, nonce: str) -> list[Header]:
    message = rfc9421.Message(
        method="GET",
        scheme="http",
        authority=HOST.decode(),
        path=path,
        query=b"",
        headers=[(b"host", HOST)],
    )
    sig_input, sig = rfc9421_algorithms.sign_request(
        message,
        keyid=keyid,
        alg="hmac-sha256",
        key=key,
        components=["@method", "@authority", "@path"],
        created=created,
        nonce=nonce,
    )
    return [(b"signature-input", sig_input), (b"signature", sig)]


# Finding (fixed; it predated the batches): a nonce record's expires_at is written by the
# instance that accepted the signature, and every instance deletes by its own clock; one whose
# clock ran d seconds ahead deleted records up to d seconds early, and the same signed request
# was admitted a second time on the other. Now records are deleted only once expired by
# nonce_batches.CLOCK_SKEW_MARGIN (60 s).


@pytest.mark.postgres
@pytest.mark.parametrize(
    "skew",
    [0, 1, 10],
)
async def test_an_instance_with_a_fast_clock_does_not_reopen_another_instances_nonce(
    tmp_path: Path, postgres_url: str, skew: int
) -> None:
    start = datetime(2030, 1, 1, 0, 0, 0, 200_000, tzinfo=UTC)
    clock_a, clock_b = FixedClock(start), FixedClock(start + timedelta(seconds=skew))
    config_a = _instance_config(tmp_path / "a", postgres_url, None)
    rt_a = await open_runtime(load(config_a), clock=clock_a)
    config_b = _instance_config(tmp_path / "b", postgres_url, load(config_a).master_key_path)
    rt_b = await open_runtime(load(config_b), clock=clock_b)
    try:
        record, secret = new_app(
            "billing",
            ("notes:write",),
            "hmac-sha256",
            None,
            now=start - timedelta(days=1),
            sealer=rt_a.sealer,
        )
        await rt_a.store.apps.insert(record)
        assert secret is not None
        key = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        upstream_a, upstream_b = _Calls(), _Calls()
        a, b = GuardMiddleware(upstream_a, rt_a), GuardMiddleware(upstream_b, rt_b)
        now = int(start.timestamp())
        # a signature A still accepts (created + MAX_AGE >= now), in the last ``skew`` seconds
        # of its life: its record expires at created + MAX_AGE + 1 <= B's now
        created = now - MAX_AGE + max(0, skew - 1)
        old = _signed(record.key_id, key, "/notes/old", created, "n-old")
        assert await _asgi_status(a, "/notes/old", old) == 200
        assert await _asgi_status(a, "/notes/old", old) == 401  # the replay check works on A
        # B (``skew`` s ahead) serves one ordinary signed request: its batch sweeps
        fresh = _signed(record.key_id, key, "/notes/new", now + skew, "n-new")
        assert await _asgi_status(b, "/notes/new", fresh) == 200
        # ... by B's clock, so A's record of "n-old" is gone while A still accepts it
        assert await _asgi_status(a, "/notes/old", old) == 401, "replay admitted by A"
        assert len(upstream_a.calls) == 1
    finally:
        rt_a.close()
        rt_b.close()


class _Calls:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        self.calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
