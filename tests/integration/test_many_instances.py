"""Two real restguard instances on one PostgreSQL, with and without one Redis (the machine's
real servers): exact rate limits and failed-attempt limits across instances, revocation fan-out,
and Redis outages injected by a proxy the test cuts (never by stopping the shared servers)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from restguard.cli.context import with_store
from restguard.client import SignatureAuth
from restguard.store.ports import Store
from tests.faults import FreezableProxy, wait_until
from tests.harness import GatewayProcess, RecordingUpstream
from tests.instances import gateway_pair
from tests.signature_support import add_app

pytestmark = pytest.mark.postgres

REDIS = ("127.0.0.1", 6379)
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
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
"""


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    up = RecordingUpstream()
    yield up
    up.stop()


def pair(
    tmp_path: Path,
    upstream: RecordingUpstream,
    postgres_url: str,
    *,
    redis: str = "",
    failed_attempts: str = "1000/minute",
) -> tuple[GatewayProcess, GatewayProcess]:
    """Two started instances sharing the database, the master key and (when given) Redis."""
    extra = {"server.failed_attempts": json.dumps(failed_attempts)}
    return gateway_pair(
        tmp_path, upstream, postgres_url, (ROUTES, ROUTES), redis=redis, extra=extra
    )


def racing(
    gateways: tuple[GatewayProcess, ...], path: str, count: int, **headers: str
) -> list[int]:
    """``count`` requests released at once, spread over ``gateways``; their statuses."""
    barrier = threading.Barrier(count)

    def one(i: int) -> int:
        gw = gateways[i % len(gateways)]
        with httpx.Client(timeout=10) as client:
            barrier.wait()
            return client.get(gw.url + path, headers=headers).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize("redis", ["", "redis://127.0.0.1:6379/0"], ids=["database", "redis"])
def test_racing_requests_over_two_instances_admit_exactly_the_limit(
    tmp_path: Path, upstream: RecordingUpstream, postgres_url: str, redis: str
) -> None:
    one, two = pair(tmp_path, upstream, postgres_url, redis=redis)
    try:
        _, key = one.issue_key("notes:read")
        statuses = racing((one, two), "/limited", 30, authorization=f"ApiKey {key}")
        assert sorted(statuses) == [200] * 5 + [429] * 25
        # per client address on a public route, the same
        statuses = racing((one, two), "/open-limited", 24)
        assert sorted(statuses) == [200] * 4 + [429] * 20
        # the headers: the count is the shared one, whichever instance answers
        answer = httpx.get(two.url + "/limited", headers={"authorization": f"ApiKey {key}"})
        assert answer.status_code == 429
        assert answer.headers["ratelimit-limit"] == "5"
        assert answer.headers["ratelimit-remaining"] == "0"
        assert 700 <= int(answer.headers["retry-after"]) <= 720  # one per 12 minutes
        assert 3500 <= int(answer.headers["ratelimit-reset"]) <= 3600
        # another credential has its own count
        _, other = one.issue_key("notes:read")
        fresh = httpx.get(one.url + "/limited", headers={"authorization": f"ApiKey {other}"})
        assert fresh.status_code == 200
        assert fresh.headers["ratelimit-remaining"] == "4"
    finally:
        one.stop()
        two.stop()


@pytest.mark.parametrize("redis", ["", "redis://127.0.0.1:6379/0"], ids=["database", "redis"])
def test_the_failed_attempt_limit_is_one_count_across_instances(
    tmp_path: Path, upstream: RecordingUpstream, postgres_url: str, redis: str
) -> None:
    one, two = pair(tmp_path, upstream, postgres_url, redis=redis, failed_attempts="6/hour")
    try:
        _, key = one.issue_key("notes:read")
        wrong = {"authorization": "ApiKey rg_ak_nope_" + "x" * 43}
        statuses = racing((one, two), "/notes/1", 20, **wrong)
        assert sorted(statuses) == [401] * 6 + [429] * 14
        # a valid credential from the same address still passes on both (never a lockout)
        for gw in (one, two):
            ok = httpx.get(gw.url + "/notes/1", headers={"authorization": f"ApiKey {key}"})
            assert ok.status_code == 200
    finally:
        one.stop()
        two.stop()


def revoke(gw: GatewayProcess, key_id: str) -> None:
    """Revoke as ``restguard apikey revoke`` does: through the CLI's store (which announces)."""
    import asyncio
    from datetime import UTC, datetime

    async def action(store: Store) -> None:
        await store.api_keys.revoke(key_id, datetime.now(UTC))

    asyncio.run(with_store(gw.settings, action))


@pytest.mark.parametrize(
    ("redis", "bound"),
    [("", 1.5), ("redis://127.0.0.1:6379/0", 0.5)],
    ids=["database", "redis"],
)
def test_a_revocation_on_one_instance_denies_on_the_other_at_once(
    tmp_path: Path, upstream: RecordingUpstream, postgres_url: str, redis: str, bound: float
) -> None:
    """Within one second without Redis (the caches' lifetime); with Redis, as soon as the
    announcement arrives (measured ~ms; the bound here is loose for a shared machine but
    well under the one second a cache would otherwise keep the key)."""
    one, two = pair(tmp_path, upstream, postgres_url, redis=redis)
    try:
        key_id, key = one.issue_key("notes:read")
        auth = {"authorization": f"ApiKey {key}"}
        with httpx.Client(timeout=5) as client:
            for _ in range(3):  # cached on both
                assert client.get(two.url + "/notes/1", headers=auth).status_code == 200
                assert client.get(one.url + "/notes/1", headers=auth).status_code == 200
            revoke(one, key_id)
            took = wait_until(
                lambda: client.get(two.url + "/notes/1", headers=auth).status_code == 401,
                timeout=3,
                what="the revoked key is refused on the other instance",
                every=0.005,
            )
        print(f"revocation reached the other instance in {took * 1000:.0f} ms")
        assert took < bound
    finally:
        one.stop()
        two.stop()


def test_redis_outage_fails_closed_and_recovers_by_itself(
    tmp_path: Path, upstream: RecordingUpstream, postgres_url: str
) -> None:
    proxy = FreezableProxy(REDIS)
    try:
        one, two = pair(tmp_path, upstream, postgres_url, redis=f"redis://127.0.0.1:{proxy.port}/0")
        try:
            _, key = one.issue_key("notes:read")
            auth = {"authorization": f"ApiKey {key}"}
            app_id, secret = add_app(one, "hmac-sha256", scopes=("notes:read",))
            assert secret is not None
            signed = SignatureAuth(app_id, secret)
            with httpx.Client(timeout=10) as client:
                assert client.get(one.url + "/limited", headers=auth).status_code == 200
                assert client.get(two.url + "/notes/1", auth=signed).status_code == 200
                proxy.freeze()
                before = len(upstream.requests)
                # a shared limit cannot be counted: 503, never forwarded
                started = time.monotonic()
                down = client.get(one.url + "/limited", headers=auth)
                assert down.status_code == 503, down.text
                assert time.monotonic() - started < 5  # the store deadline, not a hang
                assert down.json()["error"] == "temporarily_unavailable"
                # a failed credential cannot be counted either: refused (503), not admitted
                wrong = client.get(
                    two.url + "/notes/1", headers={"authorization": "ApiKey rg_ak_x_" + "y" * 43}
                )
                assert wrong.status_code == 503
                # a signed request cannot have its nonce checked: refused, never admitted
                assert client.get(two.url + "/notes/1", auth=signed).status_code == 503
                assert len(upstream.requests) == before
                # what needs no shared state keeps working
                assert client.get(two.url + "/notes/1", headers=auth).status_code == 200
                ready = client.get(one.admin_url + "/readyz")
                assert ready.status_code == 503 and "redis" in ready.json()["failed"]
                proxy.thaw()
                wait_until(
                    lambda: client.get(one.url + "/limited", headers=auth).status_code == 200,
                    timeout=10,
                    what="the limited route is served again",
                )
                assert client.get(one.admin_url + "/readyz").status_code == 200
                assert client.get(two.url + "/notes/1", auth=signed).status_code == 200
        finally:
            one.stop()
            two.stop()
    finally:
        proxy.stop()
