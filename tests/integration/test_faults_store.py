"""Store faults (issue 6, items 3 and 4), each injected by the test itself and bounded in time.

* a locked SQLite (a second connection holding ``BEGIN EXCLUSIVE``): API-key decisions still
  answer at once (reads do not wait behind the lock; last-used times are written off the
  decision path and dropped, counted, when they cannot be);
* a partitioned PostgreSQL (a TCP proxy in front of the real server, frozen by the test): a
  decision that needs the store gets 503 within the store's deadline, ``/healthz`` and
  ``/readyz`` say so, and service resumes by itself when the partition ends.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from restguard.credentials.apikey import generate_key
from tests.faults import FreezableProxy, admin_metric, timed, wait_until
from tests.harness import GatewayProcess, RecordingUpstream

DROPPED = "restguard_bookkeeping_dropped_total"
BUSY_TIMEOUT = 5.0  # SQLite's busy_timeout in the engine: what a request used to wait out
FAST = 1.0  # "answered at once": well under BUSY_TIMEOUT
STORE_DEADLINE = 2.0  # [storage] timeout's default


def _get(gw: GatewayProcess, key: str | None, path: str = "/notes/1") -> httpx.Response:
    headers = {"x-api-key": key} if key else {}
    return httpx.get(gw.url + path, headers=headers, timeout=15)


def _last_used(db: Path, key_id: str) -> str | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0) as conn:
        row = conn.execute("SELECT last_used_at FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return None if row is None else row[0]


@pytest.fixture
def sqlite_gateway(tmp_path: Path, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    upstream.clear()
    gw = GatewayProcess(tmp_path / "gw", upstream).start()
    yield gw
    gw.stop()


def test_locked_sqlite_never_stalls_api_key_decisions(sqlite_gateway: GatewayProcess) -> None:
    gw = sqlite_gateway
    db = gw.config.parent / "restguard.db"
    warm_id, warm = gw.issue_key("notes:read", name="warm")
    fresh = [gw.issue_key("notes:read", name=f"fresh{i}") for i in range(8)]
    later_id, later = gw.issue_key("notes:read", name="later")
    assert _get(gw, warm).status_code == 200
    wait_until(lambda: _last_used(db, warm_id) is not None, 5, "warm key's last-used time")
    dropped_before = admin_metric(gw.admin_url, DROPPED)

    assert _get(gw, warm).status_code == 200  # its record is cached for the next second
    locker = sqlite3.connect(db, isolation_level=None, timeout=0)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        # a cache hit and eight cache misses, in parallel: none waits for the lock
        with ThreadPoolExecutor(9) as pool:
            results = list(
                pool.map(lambda k: timed(lambda: _get(gw, k)), [warm] + [k for _, k in fresh])
            )
        assert [r.status_code for r, _ in results] == [200] * 9
        slowest = max(took for _, took in results)
        assert slowest < FAST, f"a decision waited {slowest:.2f} s on the locked database"

        # the eight first uses could not be recorded: dropped within interval + deadline
        took = wait_until(
            lambda: admin_metric(gw.admin_url, DROPPED) >= dropped_before + 8,
            1.0 + STORE_DEADLINE + 3,
            "the dropped last-used times counted",
        )
        assert all(_last_used(db, key_id) is None for key_id, _ in fresh)

        # while the lock is still held: other clients, health, a second round of decisions
        again, took = timed(lambda: _get(gw, fresh[0][1]))
        assert again.status_code == 200 and took < FAST
        assert httpx.get(gw.admin_url + "/healthz", timeout=5).status_code == 200
        denied, took = timed(lambda: _get(gw, None))
        assert denied.status_code == 401 and took < FAST  # nothing admitted for want of a key
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    # the lock is gone: last-used times are written again
    assert _get(gw, later).status_code == 200
    wait_until(lambda: _last_used(db, later_id) is not None, 5, "last-used written after release")


def test_sqlite_reads_do_not_queue_behind_stuck_writes(sqlite_gateway: GatewayProcess) -> None:
    """Many distinct keys' first uses while the database is locked: the write pool fills with
    waiting bookkeeping writes, the decisions (reads) still all answer at once."""
    gw = sqlite_gateway
    db = gw.config.parent / "restguard.db"
    keys = [gw.issue_key("notes:read", name=f"k{i}")[1] for i in range(24)]
    locker = sqlite3.connect(db, isolation_level=None, timeout=0)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        for batch in range(3):  # three rounds of first uses, ~1.2 s apart: three stuck writes
            chunk = keys[batch * 8 : (batch + 1) * 8]
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda k: timed(lambda: _get(gw, k)), chunk))
            assert [r.status_code for r, _ in results] == [200] * 8
            assert max(t for _, t in results) < FAST
            time.sleep(1.2)
        assert time.monotonic() - started < 3 * (1.2 + FAST) + 1
    finally:
        locker.execute("ROLLBACK")
        locker.close()


# --- PostgreSQL behind a partition ----------------------------------------------------------------


@pytest.fixture
def partitioned(
    tmp_path: Path, upstream: RecordingUpstream, postgres_url: str
) -> Iterator[tuple[GatewayProcess, FreezableProxy]]:
    proxy = FreezableProxy(("127.0.0.1", 5432))
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    upstream.clear()
    gw = GatewayProcess(tmp_path / "gw", upstream, database_url=url)
    try:
        gw.start()
        yield gw, proxy
    finally:
        proxy.thaw()
        gw.stop()
        proxy.stop()


@pytest.mark.postgres
def test_partitioned_postgres_answers_503_in_time_and_recovers(
    partitioned: tuple[GatewayProcess, FreezableProxy], upstream: RecordingUpstream
) -> None:
    gw, proxy = partitioned
    _, used = gw.issue_key("notes:read", name="used")
    _, unseen = gw.issue_key("notes:read", name="unseen")
    wrong_id, _ = gw.issue_key("notes:read", name="wrong")
    _, wrong = generate_key(wrong_id)  # a well-formed key for that id, with another secret
    assert _get(gw, used).status_code == 200
    assert httpx.get(gw.admin_url + "/readyz", timeout=5).status_code == 200
    forwarded = len(upstream.requests)

    proxy.freeze()
    # a decision that needs the store (a key not cached): 503 within the store's deadline
    r, took = timed(lambda: _get(gw, unseen))
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "temporarily_unavailable"
    assert took < STORE_DEADLINE + 1.5, f"503 after {took:.1f} s"
    # nothing is admitted that should not be: a wrong secret, which needs the store to judge
    r, took = timed(lambda: _get(gw, wrong))
    assert r.status_code == 503 and took < STORE_DEADLINE + 1.5
    # the cached key: after its cache second it needs the store too
    time.sleep(1.1)
    r, took = timed(lambda: _get(gw, used))
    assert r.status_code == 503 and took < STORE_DEADLINE + 1.5
    # a public route needs no store: still served at once
    r, took = timed(lambda: _get(gw, None, "/public/x"))
    assert r.status_code == 200 and took < FAST
    assert len(upstream.requests) == forwarded + 1

    health, took = timed(lambda: httpx.get(gw.admin_url + "/healthz", timeout=15))
    assert health.status_code == 503 and took < STORE_DEADLINE + 1.5
    ready, took = timed(lambda: httpx.get(gw.admin_url + "/readyz", timeout=15))
    assert ready.status_code == 503 and took < STORE_DEADLINE + 1.5
    assert "store" in ready.json()["failed"]
    assert "upstream" not in ready.json()["failed"]

    proxy.thaw()  # the partition ends: service resumes without anyone's help
    wait_until(
        lambda: httpx.get(gw.admin_url + "/healthz", timeout=5).status_code == 200,
        10,
        "/healthz back to 200",
    )
    r, took = timed(lambda: _get(gw, unseen))
    assert r.status_code == 200 and took < FAST
    assert _get(gw, used).status_code == 200
    assert _get(gw, wrong).status_code == 401
    assert httpx.get(gw.admin_url + "/readyz", timeout=5).status_code == 200


@pytest.mark.postgres
def test_partition_with_many_requests_in_flight_stays_bounded(
    partitioned: tuple[GatewayProcess, FreezableProxy],
) -> None:
    """More store-bound decisions than the store has threads and pooled connections, all
    during the partition: each still gets its 503 in time, and all recover after."""
    gw, proxy = partitioned
    keys = [gw.issue_key("notes:read", name=f"k{i}")[1] for i in range(24)]
    proxy.freeze()
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda k: timed(lambda: _get(gw, k)), keys))
    assert {r.status_code for r, _ in results} == {503}
    slowest = max(took for _, took in results)
    assert slowest < STORE_DEADLINE + 1.5, f"slowest 503 after {slowest:.1f} s"
    proxy.thaw()
    wait_until(
        lambda: _get(gw, keys[0]).status_code == 200, 15, "store-bound decisions answer again"
    )
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda k: _get(gw, k).status_code, keys))
    assert statuses == [200] * 24


@pytest.mark.postgres
def test_external_jwts_keep_working_while_the_database_is_partitioned(
    partitioned: tuple[GatewayProcess, FreezableProxy], upstream: RecordingUpstream
) -> None:
    """An external issuer's JWT is verified locally (the issuer list and its JWKS are held in
    memory): a database outage does not stop it, while an API key, which the store vouches
    for, is refused (503) once its cache second is over."""
    from tests.jwt_support import JWKSServer, Signer, add_issuer, claims_for, jwks_of, mint_pyjwt

    gw, proxy = partitioned
    jwks = JWKSServer()
    try:
        signer = Signer.generate("ES256", "outage-1")
        iss, aud = "https://idp.outage.example/", "https://api.outage.example"
        add_issuer(gw, issuer=iss, jwks_uri=jwks.serve("/jwks", jwks_of(signer)), audience=aud)
        token = mint_pyjwt(signer, claims_for(iss, aud, scope="notes:read"))
        bearer = {"authorization": f"Bearer {token}"}
        wait_until(
            lambda: httpx.get(gw.url + "/notes/1", headers=bearer, timeout=5).status_code == 200,
            10,
            "the issuer is trusted",
        )
        _, key = gw.issue_key("notes:read")
        assert _get(gw, key).status_code == 200
        proxy.freeze()
        time.sleep(1.1)  # past every cache's second
        forwarded = len(upstream.requests)
        for _ in range(3):
            r, took = timed(lambda: httpx.get(gw.url + "/notes/1", headers=bearer, timeout=15))
            assert r.status_code == 200 and took < FAST, (r.status_code, took)
        assert len(upstream.requests) == forwarded + 3
        # a forged one is still refused, locally
        forged = mint_pyjwt(Signer.generate("ES256", "outage-1"), claims_for(iss, aud))
        r = httpx.get(gw.url + "/notes/1", headers={"authorization": f"Bearer {forged}"})
        # refused: 503, as its failed attempt cannot be counted (the counters are the
        # database's on PostgreSQL, which several instances share)
        assert r.status_code == 503
        assert _get(gw, key).status_code == 503
        assert len(upstream.requests) == forwarded + 3
    finally:
        proxy.thaw()
        jwks.stop()
