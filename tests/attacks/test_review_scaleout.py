"""Attacker's review of the scale-out feature set: several instances sharing rate limits,
failed-attempt limits, replay caches and revocation fan-out (Redis, or the database).

Every test runs real gateways (``GatewayProcess``) on a fresh PostgreSQL database and, where
named, the machine's Redis under a prefix of their own (or a fake Redis for fault injection).
A test that passes documents a line that held; an ``xfail(strict=True)`` is a finding."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from restguard.cli.context import with_store
from restguard.client import SignatureAuth
from restguard.store.ports import Store
from tests.attacks.fake_redis import FakeRedis
from tests.faults import FreezableProxy, wait_until
from tests.harness import GatewayProcess, RecordingUpstream, raw_request, status_of
from tests.instances import gateway_pair
from tests.jwt_support import JWKSServer, Signer, add_issuer, claims_for, jwks_of, mint_raw
from tests.signature_support import add_app

pytestmark = pytest.mark.postgres

REDIS = ("127.0.0.1", 6379)
REDIS_URL = "redis://127.0.0.1:6379/0"
ISS = "https://idp.scaleout.example/"
AUD = "api"
SIGNER = Signer.generate("ES256", "so-1")

ROUTES = """\
[[routes]]
path = "/limited"
methods = ["GET"]
scopes = ["notes:read"]
rate_limit = "5/hour"

[[routes]]
path = "/open-limited"
methods = ["GET"]
public = true
rate_limit = "4/hour"

[[routes]]
path = "/jwt-limited"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["jwt"]
rate_limit = "3/hour"

[[routes]]
path = "/open/**"
methods = ["GET"]
public = true

[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
"""


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def pg(postgres_url: str) -> str:
    return postgres_url


@pytest.fixture
def up(upstream: RecordingUpstream) -> RecordingUpstream:
    upstream.clear()
    return upstream


@pytest.fixture(scope="module")
def jwks() -> Iterator[JWKSServer]:
    server = JWKSServer()
    yield server
    server.stop()


def pair(
    tmp_path: Path,
    upstream: RecordingUpstream,
    db: str,
    *,
    redis: str = REDIS_URL,
    failed_attempts: str = "1000/minute",
    routes: tuple[str, str] = (ROUTES, ROUTES),
    extra: dict[str, str] | None = None,
) -> tuple[GatewayProcess, GatewayProcess]:
    """Two instances on one database, one master key and (given) one Redis prefix."""
    common = {
        "server.failed_attempts": json.dumps(failed_attempts),
        # one public URL, as behind a load balancer (tokens' audience is the same on both)
        "server.public_url": json.dumps("http://api.scaleout.test"),
        **(extra or {}),
    }
    return gateway_pair(tmp_path, upstream, db, routes, redis=redis, extra=common)


@pytest.fixture
def duo(tmp_path: Path, up: RecordingUpstream, pg: str) -> Iterator[tuple[GatewayProcess, ...]]:
    one, two = pair(tmp_path, up, pg)
    yield one, two
    one.stop()
    two.stop()


def racing(jobs: list[tuple[str, dict[str, str]]]) -> list[int]:
    """Every (url, headers) released at once; their statuses, in order."""
    barrier = threading.Barrier(len(jobs))

    def one(job: tuple[str, dict[str, str]]) -> int:
        url, headers = job
        with httpx.Client(timeout=15) as client:
            barrier.wait()
            return client.request(headers.pop(":method", "GET"), url, headers=headers).status_code

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs))


def raw(port: int, head: str, timeout: float = 8.0) -> bytes:
    return raw_request(port, head.replace("\n", "\r\n").encode("latin-1"), timeout=timeout)


def pipelined(port: int, requests: list[bytes], timeout: float = 10.0) -> list[int]:
    """Send every request at once on one keep-alive connection; the statuses of the answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(requests))
        data = b""
        statuses: list[int] = []
        deadline = time.monotonic() + timeout
        while len(statuses) < len(requests) and time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            while True:
                head, sep, rest = data.partition(b"\r\n\r\n")
                if not sep:
                    break
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    n, _, v = line.partition(b":")
                    if n.strip().lower() == b"content-length":
                        length = int(v)
                if len(rest) < length:
                    break
                statuses.append(int(head.split(b" ", 2)[1]))
                data = rest[length:]
        return statuses


def announce_revocation(gw: GatewayProcess, action) -> None:  # type: ignore[no-untyped-def]
    """A revocation as the CLI makes it (through the announcing store)."""
    asyncio.run(with_store(gw.settings, action))


# --- rate-limit bypass --------------------------------------------------------------------------


def test_presentation_variants_over_two_instances_share_one_bucket(duo) -> None:  # type: ignore[no-untyped-def]
    """The same API key as ``ApiKey``, ``Bearer rg_ak_...``, ``X-API-Key``, odd header case and
    whitespace, HEAD as well as GET, on both instances and racing: 5 admitted in all."""
    one, two = duo
    _, key = one.issue_key("notes:read")
    shapes = [
        f"authorization: ApiKey {key}",
        f"Authorization: apikey  {key}  ",
        f"AUTHORIZATION: APIKEY\t{key}",
        f"authorization: Bearer {key}",
        f"x-api-key: {key}",
        f"X-Api-Key: \t{key} ",
    ]
    jobs = []
    for i in range(30):
        gw = (one, two)[i % 2]
        method = "HEAD" if i % 5 == 0 else "GET"
        data = f"{method} /limited HTTP/1.1\r\nHost: a\r\n{shapes[i % len(shapes)]}\r\n"
        jobs.append((gw.port, (data + "Connection: close\r\n\r\n").encode()))
    barrier = threading.Barrier(len(jobs))

    def go(job: tuple[int, bytes]) -> int:
        barrier.wait()
        return status_of(raw_request(*job))

    with ThreadPoolExecutor(len(jobs)) as pool:
        statuses = list(pool.map(go, jobs))
    assert sorted(statuses) == [200] * 5 + [429] * 25, statuses


def test_pipelined_and_path_variants_on_keep_alive_connections_count_each(duo) -> None:  # type: ignore[no-untyped-def]
    """Pipelined requests on one connection to each instance, with path variants the policy
    normalises to /limited (``//limited``, ``/./limited``, ``/limited?x=1``): each one
    counts; 5 admitted across both connections."""
    one, two = duo
    _, key = one.issue_key("notes:read")
    variants = ["/limited", "/limited?x=1", "/limited?", "/%6cimited"]
    reqs = [
        (f"GET {v} HTTP/1.1\r\nHost: api\r\nAuthorization: ApiKey {key}\r\n\r\n").encode()
        for v in variants * 3
    ]
    results: list[list[int]] = []

    def go(port: int) -> None:
        results.append(pipelined(port, reqs))

    threads = [threading.Thread(target=go, args=(gw.port,)) for gw in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = [s for r in results for s in r]
    print("pipelined:", results)
    assert statuses.count(200) == 5, statuses
    assert all(s in (200, 429, 400, 404) for s in statuses), statuses


def test_spoofed_forwarded_for_from_untrusted_peer_does_not_split_public_bucket(duo) -> None:  # type: ignore[no-untyped-def]
    """The peer is not a trusted proxy: X-Forwarded-For is ignored, one bucket per address."""
    one, two = duo
    jobs = [
        ((one, two)[i % 2].url + "/open-limited", {"x-forwarded-for": f"198.51.100.{i}"})
        for i in range(16)
    ]
    statuses = racing(jobs)
    assert sorted(statuses) == [200] * 4 + [429] * 12, statuses


def test_forwarded_for_behind_trusted_proxy_uses_the_appended_address(
    tmp_path: Path, up: RecordingUpstream, pg: str
) -> None:
    """Behind a trusted proxy (127.0.0.1), the attacker's own left-hand XFF entries and their
    spellings do not change the bucket: the right-most untrusted hop is the proxy's."""
    one, two = pair(
        tmp_path, up, pg, extra={"server.trusted_proxies": json.dumps(["127.0.0.1/32"])}
    )
    try:
        jobs = [
            (
                (one, two)[i % 2].url + "/open-limited",
                {"x-forwarded-for": f"10.{i}.0.1, 203.0.113.9"},
            )
            for i in range(12)
        ]
        statuses = racing(jobs)
        assert sorted(statuses) == [200] * 4 + [429] * 8, statuses
        # another real client keeps its own count
        other = httpx.get(one.url + "/open-limited", headers={"x-forwarded-for": "203.0.113.10"})
        assert other.status_code == 200
    finally:
        one.stop()
        two.stop()


def test_remaining_headers_after_racing_are_exact(duo) -> None:  # type: ignore[no-untyped-def]
    """Racing 5 requests over two instances: RateLimit-Remaining values are 4,3,2,1,0 once each."""
    one, two = duo
    _, key = one.issue_key("notes:read")
    barrier = threading.Barrier(5)

    def go(i: int) -> str:
        with httpx.Client(timeout=15) as client:
            barrier.wait()
            r = client.get(
                (one, two)[i % 2].url + "/limited", headers={"authorization": f"ApiKey {key}"}
            )
            assert r.status_code == 200
            assert r.headers["ratelimit-limit"] == "5"
            return r.headers["ratelimit-remaining"]

    with ThreadPoolExecutor(5) as pool:
        remaining = sorted(pool.map(go, range(5)))
    assert remaining == ["0", "1", "2", "3", "4"]


# --- key injection ------------------------------------------------------------------------------


def _jwt_pair(tmp_path: Path, up: RecordingUpstream, pg: str, jwks: JWKSServer):  # type: ignore[no-untyped-def]
    one, two = pair(tmp_path, up, pg)
    uri = jwks.serve(f"/jwks-{secrets.token_hex(4)}", jwks_of(SIGNER))
    add_issuer(one, issuer=ISS, jwks_uri=uri, audience=AUD)
    probe = mint_raw(SIGNER, claims_for(ISS, AUD, sub="probe"))
    for gw in (one, two):
        wait_until(
            lambda gw=gw: (
                httpx.get(
                    gw.url + "/notes/1", headers={"authorization": f"Bearer {probe}"}
                ).status_code
                == 200
            ),
            timeout=10,
            what="the issuer is trusted",
        )
    return one, two


def test_jwt_claims_with_unit_separator_do_not_share_a_bucket(
    tmp_path: Path, up: RecordingUpstream, pg: str, jwks: JWKSServer
) -> None:
    """guard._bucket joins (method, issuer, client_id, subject) with \x1f: client_id='a\x1fb',
    sub='c' and client_id='a', sub='b\x1fc' would share a bucket. Held: types.py refuses any
    identity value with a control character (401), so neither token is ever counted."""
    one, two = _jwt_pair(tmp_path, up, pg, jwks)
    try:
        attacker = mint_raw(SIGNER, claims_for(ISS, AUD, client_id="app\x1fmallory", sub="victim"))
        victim_twin = mint_raw(
            SIGNER, claims_for(ISS, AUD, client_id="app", sub="mallory\x1fvictim")
        )
        for tok in (attacker, victim_twin):
            for gw in (one, two):
                r = httpx.get(gw.url + "/jwt-limited", headers={"authorization": f"Bearer {tok}"})
                assert r.status_code == 401
        # and a plain victim's limit is untouched by the attempts
        victim = mint_raw(SIGNER, claims_for(ISS, AUD, client_id="app", sub="victim"))
        r = httpx.get(two.url + "/jwt-limited", headers={"authorization": f"Bearer {victim}"})
        assert r.status_code == 200 and r.headers["ratelimit-remaining"] == "2"
    finally:
        one.stop()
        two.stop()


def test_jwt_claims_that_are_lone_surrogates_or_huge_fail_closed_not_500(
    tmp_path: Path, up: RecordingUpstream, pg: str, jwks: JWKSServer
) -> None:
    """A valid JWT whose subject is a lone surrogate (JSON ``\\ud800``), contains NUL/newline,
    or is 10 kB long: its Redis key must be usable (hashed) -- never an unhandled error."""
    one, two = _jwt_pair(tmp_path, up, pg, jwks)
    try:
        subjects = ["\ud800x", "a\x00b\nc\r\n", "s" * 10_000, "é" * 150]
        for sub in subjects:
            payload = json.dumps(claims_for(ISS, AUD, sub=sub), ensure_ascii=True).encode()
            tok = mint_raw(SIGNER, payload)
            r = httpx.get(one.url + "/jwt-limited", headers={"authorization": f"Bearer {tok}"})
            assert r.status_code in (200, 401), (repr(sub[:10]), r.status_code, r.text)
        assert httpx.get(two.url + "/open/x").status_code == 200  # still serving
    finally:
        one.stop()
        two.stop()


# --- lockout ------------------------------------------------------------------------------------


def test_failures_of_every_kind_count_and_never_lock_out_a_valid_key(
    tmp_path: Path, up: RecordingUpstream, pg: str
) -> None:
    """Failed attempts of every shape (unknown key, malformed key, bad Bearer, bad signature,
    bad OAuth 1.0a) count toward one per-address limit across both instances; past it 429;
    the owner of a valid key, from the same address, is still served on both."""
    one, two = pair(tmp_path, up, pg, failed_attempts="8/hour")
    try:
        _, key = one.issue_key("notes:read")
        wrongs = [
            {"authorization": "ApiKey rg_ak_nope_" + "x" * 43},
            {"x-api-key": "garbage"},
            {"authorization": "Bearer eyJhbGciOiJub25lIn0.e30."},
            {
                "signature-input": 'sig1=("@method");created=1;keyid="nope";nonce="n"',
                "signature": "sig1=:AAAA:",
            },
            {
                "authorization": 'OAuth oauth_consumer_key="x", '
                'oauth_signature_method="HMAC-SHA1", '
                f'oauth_timestamp="{int(time.time())}", oauth_nonce="n1", oauth_version="1.0", '
                'oauth_signature="y"'
            },
            {},
        ]
        jobs = [
            ((one, two)[i % 2].url + "/notes/1", dict(wrongs[i % len(wrongs)])) for i in range(24)
        ]
        statuses = racing(jobs)
        assert sorted(statuses) == [401] * 8 + [429] * 16, statuses
        for gw in (one, two):
            ok = httpx.get(gw.url + "/notes/1", headers={"authorization": f"ApiKey {key}"})
            assert ok.status_code == 200
    finally:
        one.stop()
        two.stop()


# --- replay -------------------------------------------------------------------------------------


def test_rfc9421_signed_request_replayed_on_the_other_instance_is_refused(duo, up) -> None:  # type: ignore[no-untyped-def]
    one, two = duo
    app_id, secret = add_app(one, "hmac-sha256", scopes=("notes:read",))
    assert secret is not None
    request = httpx.Request("GET", one.url + "/notes/sig")
    signed = next(SignatureAuth(app_id, secret).auth_flow(request))
    head = "GET /notes/sig HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in signed.headers.items()
    )
    data = (head + "\r\n").encode()
    # racing the same signed request on both instances: exactly one admitted
    barrier = threading.Barrier(6)

    def go(i: int) -> int:
        barrier.wait()
        return status_of(raw_request((one, two)[i % 2].port, data))

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(go, range(6)))
    assert sorted(statuses) == [200] + [401] * 5, statuses
    assert sum(1 for r in up.requests if r.target == b"/notes/sig") == 1


def test_oauth1_request_replayed_on_the_other_instance_is_refused(duo, up) -> None:  # type: ignore[no-untyped-def]
    from tests.oauth1_support import (
        add_consumer,
        add_token,
        add_user,
        authorization,
        base_string,
        base_uri,
        oauth_params,
        signature,
    )

    one, two = duo
    consumer = add_consumer(one)
    add_user(one, "alice")
    token = add_token(one, consumer, "alice")
    authority = f"127.0.0.1:{one.port}"
    params = oauth_params(consumer.key, "HMAC-SHA1", token=token.token)
    base = base_string("GET", base_uri("http", authority, "/notes/o1"), params)
    sig = signature("HMAC-SHA1", base, consumer.secret, token.secret)
    header = authorization([*params, ("oauth_signature", sig)])
    data = f"GET /notes/o1 HTTP/1.1\r\nHost: {authority}\r\nAuthorization: {header}\r\n\r\n"
    barrier = threading.Barrier(6)

    def go(i: int) -> int:
        barrier.wait()
        return status_of(raw_request((one, two)[i % 2].port, data.encode()))

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(go, range(6)))
    assert sorted(statuses) == [200] + [401] * 5, statuses


# --- revocation fan-out -------------------------------------------------------------------------


@pytest.mark.parametrize(("redis", "bound"), [("", 1.6), (REDIS_URL, 0.6)], ids=["db", "redis"])
def test_revoked_app_oauth1_token_and_oauth2_client_refused_on_the_other_instance(
    tmp_path: Path, up: RecordingUpstream, pg: str, redis: str, bound: float
) -> None:
    from tests.oauth1_support import (
        add_consumer,
        add_token,
        add_user,
        authorization,
        base_string,
        base_uri,
        oauth_params,
        signature,
    )
    from tests.oauth2_support import add_client

    one, two = pair(tmp_path, up, pg, redis=redis)
    try:
        app_id, secret = add_app(one, "hmac-sha256", scopes=("notes:read",))
        assert secret is not None
        consumer = add_consumer(one)
        add_user(one, "bob")
        token = add_token(one, consumer, "bob")
        client = add_client(one, "notes:read", grants=("client_credentials",), redirect_uris=())
        got = httpx.post(
            one.url + "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "notes:read"},
            auth=(client.id, client.secret or ""),
        )
        assert got.status_code == 200, got.text
        access = got.json()["access_token"]

        def sig_ok(gw: GatewayProcess) -> int:
            return httpx.get(gw.url + "/notes/s", auth=SignatureAuth(app_id, secret)).status_code

        def oauth1_ok(gw: GatewayProcess) -> int:
            authority = f"127.0.0.1:{gw.port}"
            params = oauth_params(consumer.key, "HMAC-SHA1", token=token.token)
            base = base_string("GET", base_uri("http", authority, "/notes/o"), params)
            s = signature("HMAC-SHA1", base, consumer.secret, token.secret)
            h = authorization([*params, ("oauth_signature", s)])
            return httpx.get(gw.url + "/notes/o", headers={"authorization": h}).status_code

        def oauth2_ok(gw: GatewayProcess) -> int:
            return httpx.get(
                gw.url + "/notes/t", headers={"authorization": f"Bearer {access}"}
            ).status_code

        cases = [
            (sig_ok, lambda s: s.apps.revoke(app_id, datetime.now(UTC))),
            (oauth1_ok, lambda s: s.oauth1_tokens.revoke(token.token, datetime.now(UTC))),
            (oauth2_ok, lambda s: s.oauth2_clients.revoke(client.id, datetime.now(UTC))),
        ]
        took = {}
        for check, revoke in cases:
            for _ in range(3):  # cached on both
                assert check(two) == 200
                assert check(one) == 200

            async def action(store: Store, revoke=revoke) -> None:  # type: ignore[no-untyped-def]
                await revoke(store)

            announce_revocation(one, action)
            took[check.__name__] = wait_until(
                lambda check=check: check(two) == 401,
                timeout=5,
                what=f"{check.__name__}: refused on the other instance",
                every=0.01,
            )
        print("revocation reached the other instance:", took)
        assert all(t < bound for t in took.values()), took
    finally:
        one.stop()
        two.stop()


# --- Redis faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["err", "oom", "loading", "readonly", "drop", "silent"])
def test_redis_answering_errors_fails_closed_and_recovers(
    tmp_path: Path, up: RecordingUpstream, pg: str, mode: str
) -> None:
    """A Redis that answers -ERR/-OOM/-LOADING/-READONLY, drops the connection mid-reply or
    goes silent: limited routes, failed credentials and signed requests are 503 (never
    forwarded, never a 500, never a hang); unaffected routes serve; back to normal by itself."""
    fake = FakeRedis()
    try:
        one, two = pair(
            tmp_path, up, pg, redis=fake.url, extra={"storage.timeout": json.dumps("1s")}
        )
        try:
            _, key = one.issue_key("notes:read")
            app_id, secret = add_app(one, "hmac-sha256", scopes=("notes:read",))
            assert secret is not None
            auth = {"authorization": f"ApiKey {key}"}
            with httpx.Client(timeout=10) as client:
                assert client.get(one.url + "/limited", headers=auth).status_code == 200
                fake.mode = mode
                before = len(up.requests)
                started = time.monotonic()
                for gw in (one, two):
                    r = client.get(gw.url + "/limited", headers=auth)
                    assert r.status_code == 503, (mode, r.status_code, r.text)
                    r = client.get(gw.url + "/open-limited")
                    assert r.status_code == 503, (mode, r.status_code, r.text)
                    bad = client.get(gw.url + "/notes/1", headers={"x-api-key": "nope"})
                    assert bad.status_code == 503, (mode, bad.status_code)
                    signed = client.get(gw.url + "/notes/1", auth=SignatureAuth(app_id, secret))
                    assert signed.status_code == 503, (mode, signed.status_code)
                assert time.monotonic() - started < 20
                assert len(up.requests) == before
                assert client.get(two.url + "/notes/1", headers=auth).status_code == 200
                fake.mode = "ok"
                wait_until(
                    lambda: (
                        client.get(one.url + "/limited", headers=auth).status_code == 200
                        and client.get(two.url + "/limited", headers=auth).status_code == 200
                    ),
                    timeout=10,
                    what="recovered",
                )
            # nothing leaks: a handful of connections, not one per failed call
            assert fake.open_connections <= 12, fake.open_connections
        finally:
            one.stop()
            two.stop()
    finally:
        fake.stop()


@pytest.mark.parametrize("mode", ["string4", "short", "ok_text"])
def test_redis_reply_of_the_wrong_shape_is_never_forwarded(
    tmp_path: Path, up: RecordingUpstream, pg: str, mode: str
) -> None:
    """Held line: a reply that is not the script's array is never an admission."""
    fake = FakeRedis()
    try:
        one, two = pair(
            tmp_path, up, pg, redis=fake.url, extra={"storage.timeout": json.dumps("1s")}
        )
        try:
            _, key = one.issue_key("notes:read")
            fake.mode = mode
            before = len(up.requests)
            r = httpx.get(one.url + "/limited", headers={"authorization": f"ApiKey {key}"})
            assert r.status_code >= 400 and len(up.requests) == before, r.status_code
        finally:
            one.stop()
            two.stop()
    finally:
        fake.stop()


# Finding (fixed): a 2-element or +OK reply was a 500, a 4-byte string a verdict from garbage.
@pytest.mark.parametrize("mode", ["string4", "short", "ok_text"])
def test_redis_reply_of_the_wrong_shape_is_a_503(
    tmp_path: Path, up: RecordingUpstream, pg: str, mode: str
) -> None:
    """A reply that is not the script's 4-integer array (a desynchronised connection, a proxy
    in the way): refused with 503 like any Redis failure; never forwarded, never a 500."""
    fake = FakeRedis()
    try:
        one, two = pair(
            tmp_path, up, pg, redis=fake.url, extra={"storage.timeout": json.dumps("1s")}
        )
        try:
            _, key = one.issue_key("notes:read")
            auth = {"authorization": f"ApiKey {key}"}
            fake.mode = mode
            before = len(up.requests)
            r = httpx.get(one.url + "/limited", headers=auth, timeout=10)
            forwarded = len(up.requests) - before
            assert forwarded == 0 and r.status_code == 503, (mode, r.status_code, r.text)
        finally:
            one.stop()
            two.stop()
    finally:
        fake.stop()


def test_frozen_redis_under_load_neither_hangs_nor_leaks_and_recovers(
    tmp_path: Path, up: RecordingUpstream, pg: str
) -> None:
    proxy = FreezableProxy(REDIS)
    try:
        one, two = pair(
            tmp_path,
            up,
            pg,
            redis=f"redis://127.0.0.1:{proxy.port}/0",
            extra={"storage.timeout": json.dumps("1s")},
        )
        try:
            _, key = one.issue_key("notes:read")
            auth = {"authorization": f"ApiKey {key}"}
            assert httpx.get(one.url + "/limited", headers=auth).status_code == 200
            proxy.freeze()
            before = len(up.requests)
            started = time.monotonic()
            jobs = [((one, two)[i % 2].url + "/open-limited", {}) for i in range(150)]
            statuses = racing(jobs)
            assert set(statuses) == {503}, sorted(set(statuses))
            assert time.monotonic() - started < 30
            assert len(up.requests) == before
            # bounded: at most the pool's size per instance (and the subscribers)
            assert len(proxy._writers) // 2 <= 2 * 101, len(proxy._writers)
            proxy.thaw()
            wait_until(
                lambda: (
                    httpx.get(one.url + "/limited", headers=auth).status_code == 200
                    and httpx.get(two.url + "/limited", headers=auth).status_code == 200
                ),
                timeout=15,
                what="served again",
            )
        finally:
            one.stop()
            two.stop()
    finally:
        proxy.stop()


# --- RateLimit-* headers ------------------------------------------------------------------------


def test_upstream_ratelimit_headers_are_replaced_on_limited_routes(duo, up) -> None:  # type: ignore[no-untyped-def]
    one, _ = duo
    _, key = one.issue_key("notes:read")
    up.reply.headers = [
        ("Content-Type", "application/json"),
        ("RateLimit-Remaining", "999"),
        ("ratelimit-limit", "999"),
        ("RATELIMIT-RESET", "1"),
        ("RateLimit-Policy", "999;w=1"),
        ("RateLimit", "limit=999, remaining=999, reset=1"),
    ]
    r = raw(one.port, f"GET /limited HTTP/1.1\nHost: a\nAuthorization: ApiKey {key}\n\n")
    head = r.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    lines = [ln for ln in head.split("\r\n") if ln.startswith("ratelimit")]
    names = sorted(ln.partition(":")[0] for ln in lines)
    assert names == ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"], lines
    assert "ratelimit-limit: 5" in lines and "ratelimit-remaining: 4" in lines
    assert "999" not in head


def test_upstream_ratelimit_headers_on_unlimited_routes_pass_unchanged(duo, up) -> None:  # type: ignore[no-untyped-def]
    """Documented behaviour: on a route without rate_limit the gateway adds nothing and the
    upstream's own RateLimit-* reach the client unchanged (the gateway does not count there)."""
    one, _ = duo
    up.reply.headers = [("Content-Type", "application/json"), ("RateLimit-Remaining", "7")]
    r = httpx.get(one.url + "/open/x")
    assert r.status_code == 200
    assert r.headers.get_list("ratelimit-remaining") == ["7"]
    assert "ratelimit-limit" not in r.headers


# --- counters keyed by route position -----------------------------------------------------------


EXTRA_ROUTE = """\
[[routes]]
path = "/new-feature"
methods = ["GET"]
scopes = ["notes:read"]
rate_limit = "1000/hour"

"""


# Finding (fixed): counters were keyed by the route's place in the file (route.index).
def test_rolling_deploy_with_an_added_route_does_not_double_the_limit(
    tmp_path: Path, up: RecordingUpstream, pg: str
) -> None:
    one, two = pair(tmp_path, up, pg, routes=(ROUTES, EXTRA_ROUTE + ROUTES))
    try:
        _, key = one.issue_key("notes:read")
        jobs = [
            ((one, two)[i % 2].url + "/limited", {"authorization": f"ApiKey {key}"})
            for i in range(20)
        ]
        statuses = racing(jobs)
        assert statuses.count(200) == 5, sorted(statuses)
    finally:
        one.stop()
        two.stop()


# --- sign-in throttles across instances (check, then count) -------------------------------------


def _login_forms(gw: GatewayProcess, n: int):  # type: ignore[no-untyped-def]
    import requests

    from tests.oauth2_support import add_client, forms, pkce

    client = add_client(gw, "notes:read")
    _, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": client.redirect_uri,
        "scope": "notes:read",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    out = []
    for _ in range(n):
        session = requests.Session()
        page = session.get(
            gw.url + "/oauth2/authorize?" + requests.compat.urlencode(query), timeout=10
        )
        while page.status_code in (302, 303):
            page = session.get(gw.url + page.headers["location"], timeout=10)
        (form,) = forms(page.text)
        assert form.action == "/login", page.text[:300]
        out.append((session, form))
    return out


def _race_logins(gws, prepared, names, password):  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(len(prepared))

    def go(i: int) -> tuple[int, str]:
        session, form = prepared[i]
        gw = gws[i % len(gws)]
        barrier.wait()
        r = session.post(
            gw.url + "/login",
            data={**form.inputs, "username": names[i], "password": password},
            allow_redirects=False,
            timeout=30,
        )
        return r.status_code, r.text

    with ThreadPoolExecutor(len(prepared)) as pool:
        return list(pool.map(go, range(len(prepared))))


# Finding (fixed): the per-address sign-in throttle was checked, then counted after the password.
def test_racing_sign_ins_from_one_address_are_held_to_the_address_throttle(
    tmp_path: Path, up: RecordingUpstream, pg: str
) -> None:
    one, two = pair(tmp_path, up, pg)
    try:
        prepared = _login_forms(one, 40)
        names = [f"nobody{i}" for i in range(40)]  # unknown users: no per-account lock
        results = _race_logins((one, two), prepared, names, "wrong-password")
        checked = sum(1 for st, text in results if "is not right" in text)
        statuses = sorted(st for st, _ in results)
        print("password checks:", checked, "statuses:", statuses)
        assert checked <= 20, (checked, statuses)
    finally:
        one.stop()
        two.stop()


# Finding (fixed): the account's lock was read before the Argon2 queue and counted after it.
def test_racing_password_guesses_against_one_account_stop_at_the_lock(
    tmp_path: Path, up: RecordingUpstream, pg: str
) -> None:
    from tests.oauth2_support import add_user

    one, two = pair(tmp_path, up, pg)
    try:
        add_user(one, "carol", "correct horse battery", "notes:read")
        prepared = _login_forms(one, 16)
        results = _race_logins((one, two), prepared, ["carol"] * 16, "guess")
        checked = sum(1 for _, text in results if "is not right" in text)
        print("password checks:", checked, sorted(st for st, _ in results))
        assert checked <= 5, checked
    finally:
        one.stop()
        two.stop()


# --- fan-out vs a read in flight ----------------------------------------------------------------


# Finding (fixed): a read in flight when the announcement came was cached afterwards.
def test_a_revocation_announced_during_a_read_is_not_lost() -> None:
    from restguard.credentials.read_through import ReadThrough

    async def main() -> None:
        release = asyncio.Event()
        started = asyncio.Event()
        state = {"record": "valid"}

        async def load(key: str) -> str | None:
            value = state["record"]  # the read happens (before the revocation commits)
            started.set()
            await release.wait()  # ... its answer is still on the way
            return value

        cache: ReadThrough[str, str, str] = ReadThrough(load, lambda r: r, ttl=1.0)
        reading = asyncio.ensure_future(cache.get("k"))
        await started.wait()
        state["record"] = "revoked"  # committed
        cache.drop_cached()  # ... and announced: every cache forgets
        release.set()
        await reading
        got = await cache.get("k")  # a request right after the announcement
        assert got is not None and got[0] == "revoked", got

    asyncio.run(main())


# Finding (fixed): user codes were checked against the throttle, then counted after the lookup.
def test_racing_user_code_guesses_are_held_to_the_device_throttle(
    tmp_path: Path, up: RecordingUpstream, pg: str
) -> None:
    import requests

    from tests.oauth2_support import ResourceOwner, add_user, forms

    one, two = pair(tmp_path, up, pg)
    try:
        add_user(one, "dave", "correct horse battery", "notes:read")
        owner = ResourceOwner(one)
        page = owner.go("/device")
        if forms(page.text)[0].action == "/login":
            page = owner.login(page, "dave", "correct horse battery")
        (form,) = forms(page.text)
        assert form.action == "/device" and "user_code" in form.inputs, page.text[:300]
        cookies = owner.http.cookies.get_dict()
        n = 80
        codes = [
            "".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(4))
            + "-"
            + "".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(4))
            for _ in range(n)
        ]
        barrier = threading.Barrier(n)

        def go(i: int) -> tuple[int, str]:
            s = requests.Session()
            s.cookies.update(cookies)
            gw = (one, two)[i % 2]
            barrier.wait()
            r = s.post(
                gw.url + "/device",
                data={**form.inputs, "user_code": codes[i]},
                allow_redirects=False,
                timeout=30,
            )
            return r.status_code, r.text

        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(go, range(n)))
        looked_up = sum(1 for _, text in results if "That code is not right" in text)
        print("user codes looked up:", looked_up, sorted(st for st, _ in results))
        assert looked_up <= 10, looked_up
    finally:
        one.stop()
        two.stop()


# --- serve --workers 2 ----------------------------------------------------------------------------


@pytest.mark.parametrize("redis", ["", REDIS_URL], ids=["sqlite", "redis"])
def test_workers_two_racing_connections_admit_exactly_the_limit(
    tmp_path: Path, up: RecordingUpstream, redis: str
) -> None:
    """``restguard serve --workers 2`` (SQLite: the database's limiter; or Redis): racing
    requests on fresh connections land on either worker; exactly 4 admitted."""
    from tests.faults import ready_workers, serve_dir, serving

    keys = {"server": {"failed_attempts": '"1000/minute"'}}
    if redis:
        keys["storage"] = {
            "redis": json.dumps(redis),
            "redis_prefix": json.dumps(f"rg-attack-{secrets.token_hex(6)}:"),
        }
    routes = (
        '[[routes]]\npath = "/open-limited"\nmethods = ["GET"]\npublic = true\n'
        'rate_limit = "4/hour"\n'
    )
    config = serve_dir(tmp_path / "w", upstream=up.url, routes=routes, keys=keys)
    with serving(config, "--workers", "2") as serve:
        ready_workers(serve.pid, 1)  # (the serving process itself is the other worker)
        jobs = [(serve.url + "/open-limited", {"connection": "close"}) for _ in range(24)]
        statuses = racing(jobs)
        assert sorted(statuses) == [200] * 4 + [429] * 20, statuses


def test_a_stranger_cannot_lock_an_account_owner_out_of_sign_in(
    tmp_path: Path, up: RecordingUpstream, pg: str
) -> None:
    from tests.oauth2_support import add_user

    one, two = pair(
        tmp_path, up, pg, extra={"server.trusted_proxies": json.dumps(["127.0.0.1/32"])}
    )
    try:
        add_user(one, "erin", "correct horse battery", "notes:read")
        prepared = _login_forms(one, 7)
        for i, (session, form) in enumerate(prepared[:6]):  # the stranger, at 198.51.100.7
            session.post(
                (one, two)[i % 2].url + "/login",
                data={**form.inputs, "username": "erin", "password": f"guess{i}"},
                headers={"x-forwarded-for": "198.51.100.7"},
                allow_redirects=False,
                timeout=30,
            )
        session, form = prepared[6]  # the owner, at 203.0.113.20, on the other instance
        r = session.post(
            two.url + "/login",
            data={**form.inputs, "username": "erin", "password": "correct horse battery"},
            headers={"x-forwarded-for": "203.0.113.20"},
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code in (302, 303), (r.status_code, r.text[:200])
    finally:
        one.stop()
        two.stop()


@pytest.mark.parametrize(("redis", "bound"), [("", 1.6), (REDIS_URL, 0.6)], ids=["db", "redis"])
def test_token_revoked_at_one_instances_revocation_endpoint_is_refused_on_the_other(
    tmp_path: Path, up: RecordingUpstream, pg: str, redis: str, bound: float
) -> None:
    """RFC 7009 at instance A (the runtime's announcing store); the access token is refused at
    instance B within the bound."""
    from tests.oauth2_support import add_client

    one, two = pair(tmp_path, up, pg, redis=redis)
    try:
        client = add_client(one, "notes:read", grants=("client_credentials",), redirect_uris=())
        creds = (client.id, client.secret or "")
        got = httpx.post(
            one.url + "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "notes:read"},
            auth=creds,
        )
        access = got.json()["access_token"]
        auth = {"authorization": f"Bearer {access}"}
        with httpx.Client(timeout=5) as c:
            for _ in range(3):
                assert c.get(two.url + "/notes/t", headers=auth).status_code == 200
            r = c.post(one.url + "/oauth2/revoke", data={"token": access}, auth=creds)
            assert r.status_code == 200, r.text
            took = wait_until(
                lambda: c.get(two.url + "/notes/t", headers=auth).status_code == 401,
                timeout=5,
                what="revoked token refused on B",
                every=0.01,
            )
        assert took < bound, took
    finally:
        one.stop()
        two.stop()


@pytest.mark.parametrize(("redis", "bound"), [("", 1.6), (REDIS_URL, 0.6)], ids=["db", "redis"])
def test_removed_issuer_is_distrusted_on_the_other_instance(
    tmp_path: Path, up: RecordingUpstream, pg: str, jwks: JWKSServer, redis: str, bound: float
) -> None:
    one, two = pair(tmp_path, up, pg, redis=redis)
    try:
        uri = jwks.serve(f"/jwks-{secrets.token_hex(4)}", jwks_of(SIGNER))
        record = add_issuer(one, issuer=ISS, jwks_uri=uri, audience=AUD)
        tok = mint_raw(SIGNER, claims_for(ISS, AUD, sub="zed"))
        auth = {"authorization": f"Bearer {tok}"}
        with httpx.Client(timeout=5) as c:
            wait_until(
                lambda: c.get(two.url + "/notes/j", headers=auth).status_code == 200,
                timeout=10,
                what="trusted on B",
            )

            async def action(store: Store) -> None:
                await store.issuers.remove(record.id)

            announce_revocation(one, action)
            took = wait_until(
                lambda: c.get(two.url + "/notes/j", headers=auth).status_code == 401,
                timeout=5,
                what="distrusted on B",
                every=0.01,
            )
        print("issuer removal reached B in", took)
        assert took < bound, took
    finally:
        one.stop()
        two.stop()


def test_redis_password_never_appears_in_answers_or_readiness(
    tmp_path: Path, up: RecordingUpstream, pg: str
) -> None:
    """A Redis failing with the password in ``[storage] redis``: the 503 body, /readyz and
    /metrics never repeat the URL or the password."""
    fake = FakeRedis()
    try:
        url = f"redis://:s3cr3t-pw-XYZ@127.0.0.1:{fake.port}/0"
        one, two = pair(tmp_path, up, pg, redis=url, extra={"storage.timeout": json.dumps("1s")})
        try:
            _, key = one.issue_key("notes:read")
            fake.mode = "err"
            with httpx.Client(timeout=10) as c:
                pages = [
                    c.get(one.url + "/limited", headers={"authorization": f"ApiKey {key}"}),
                    c.get(one.admin_url + "/readyz"),
                    c.get(one.admin_url + "/metrics"),
                ]
            assert pages[0].status_code == 503
            for page in pages:
                assert "s3cr3t" not in page.text and "redis://" not in page.text
        finally:
            one.stop()
            two.stop()
    finally:
        fake.stop()
