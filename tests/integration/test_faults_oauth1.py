"""Store faults for OAuth 1.0a (RFC 5849): the ``oauth1`` method and the provider endpoints.

What they wait on is the store: the verifier reads the consumer and the token credentials
through one-second caches and records the nonce in the store, checked last. With PostgreSQL cut
off (behind ``tests.faults.FreezableProxy``: connections refused -- the proxy gone -- or
black-holed -- the proxy frozen), each with a valid twin before the cut:

* a correctly signed request answers 503 ``temporarily_unavailable`` within the store's
  deadline, also while its consumer and token are still cached (its nonce cannot be recorded:
  never admitted without its replay check), and the upstream receives nothing;
* ``POST /oauth1/request_token`` and ``/oauth1/access_token`` answer 503 (never a 500 or a
  hang);
* once the database is back, fresh signed requests are admitted again by themselves, and the
  request signed during the outage, replayed (same nonce) after recovery, is admitted at most
  once: its nonce was either never recorded (then the first replay passes and records it) or
  recorded late, when the black-holed statement reached the server after the thaw (then every
  replay is refused).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from restguard.credentials.oauth1_consumers import OOB
from restguard.credentials.oauth1_tokens import new_temporary_credentials, new_verifier
from restguard.store.ports import Store
from tests.faults import FreezableProxy, timed, wait_until
from tests.harness import GatewayProcess, RecordingUpstream
from tests.oauth1_support import (
    Consumer,
    Pair,
    Token,
    _sealer,
    add_consumer,
    add_token,
    authorization,
    base_string,
    base_uri,
    insert_user,
    oauth_params,
    signature,
    with_store,
)

pytestmark = pytest.mark.postgres

STORE_DEADLINE = 2.0  # [storage] timeout's default
MARGIN = 1.5
FAST = 1.0
ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET", "POST"]
scopes = ["notes:read"]
auth = ["oauth1"]
"""
EXTRA = {"server.failed_attempts": '"100000/minute"'}  # the replays' 401s count there


# --- cutting the database -------------------------------------------------------------------------


class _PinnedProxy(FreezableProxy):
    """A ``FreezableProxy`` on a given port: the one the gateway's database URL names."""

    def __init__(self, target: tuple[str, int], port: int) -> None:
        self._pinned = port
        super().__init__(target)

    @property  # type: ignore[override]
    def port(self) -> int:
        return self._pinned

    @port.setter
    def port(self, _: int) -> None:  # (FreezableProxy.__init__ picks a free port: ignored)
        pass


class Cut:
    """The database link, cut in one of two ways and restored: ``refused`` stops the proxy
    (its listener closes, its connections are aborted: every connection attempt is refused);
    ``blackhole`` freezes it (nothing forwarded, nothing closed)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.proxy = FreezableProxy(("127.0.0.1", 5432))
        self.port = self.proxy.port

    def cut(self) -> None:
        if self.mode == "blackhole":
            self.proxy.freeze()
        else:
            self.proxy.stop()

    def restore(self) -> None:
        if self.mode == "blackhole":
            self.proxy.thaw()
        elif not self.proxy._thread.is_alive():
            self.proxy = _PinnedProxy(("127.0.0.1", 5432), self.port)

    def close(self) -> None:
        if self.proxy._thread.is_alive():
            self.proxy.thaw()
        self.proxy.stop()


@pytest.fixture(params=["refused", "blackhole"])
def cut_gateway(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    upstream: RecordingUpstream,
    postgres_url: str,
) -> Iterator[tuple[GatewayProcess, Cut]]:
    link = Cut(request.param)
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{link.port}")
    upstream.clear()
    gw = GatewayProcess(tmp_path / "gw", upstream, database_url=url, routes=ROUTES, extra=EXTRA)
    try:
        gw.start()
        yield gw, link
    finally:
        link.restore()
        gw.stop()
        link.close()


# --- signing -----------------------------------------------------------------------------------


def signed(
    gw: GatewayProcess,
    consumer: Consumer,
    token: Token | None,
    method: str,
    path: str,
    *,
    extra: Sequence[Pair] = (),
    nonce_value: str | None = None,
) -> dict[str, str]:
    """Headers of a request to ``gw`` signed (HMAC-SHA1, ``Authorization: OAuth``) with
    ``tests.oauth1_support``'s independent signer."""
    params = oauth_params(
        consumer.key,
        "HMAC-SHA1",
        token=None if token is None else token.token,
        nonce_value=nonce_value,
        extra=extra,
    )
    uri = base_uri("http", f"127.0.0.1:{gw.port}", path)
    sig = signature(
        "HMAC-SHA1",
        base_string(method, uri, params),
        consumer.secret,
        (token and token.secret) or "",
    )
    return {"authorization": authorization([*params, ("oauth_signature", sig)])}


def get(gw: GatewayProcess, headers: dict[str, str], path: str = "/notes/1") -> httpx.Response:
    return httpx.get(gw.url + path, headers=headers, timeout=15)


def post(gw: GatewayProcess, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gw.url + path, headers=headers, timeout=15)


def authorized_temporary(gw: GatewayProcess, consumer: Consumer) -> tuple[Token, str]:
    """Temporary credentials of ``consumer`` authorized by alice, and their verifier (as
    ``tests.oauth1_support.insert_temporary`` makes them, keeping the verifier)."""
    sealer = _sealer(gw)
    verifier, digest = new_verifier()

    async def go(store: Store) -> Token:
        now = datetime.now(UTC)
        temp, secret = new_temporary_credentials(consumer.record, OOB, now=now, sealer=sealer)
        await store.oauth1_tokens.insert(temp)
        assert await store.oauth1_tokens.authorize(
            temp.token,
            user_id=await insert_user(store, "alice"),
            subject="alice",
            scopes=consumer.record.scopes,
            verifier_hash=digest,
            at=now,
        )
        got = await store.oauth1_tokens.get(temp.token)
        assert got is not None
        return Token(got, secret)

    return with_store(gw, go), verifier


def unavailable(r: httpx.Response, took: float, what: str) -> None:
    assert r.status_code == 503, f"{what}: {r.status_code} {r.text}"
    assert r.json()["error"] == "temporarily_unavailable", r.text
    assert took < STORE_DEADLINE + MARGIN, f"{what}: 503 after {took:.1f} s"


# --- the oauth1 method ----------------------------------------------------------------------------


def test_signed_request_is_503_while_the_store_is_cut_then_admitted_at_most_once(
    cut_gateway: tuple[GatewayProcess, Cut], upstream: RecordingUpstream
) -> None:
    gw, link = cut_gateway
    consumer = add_consumer(gw)
    token = add_token(gw, consumer)
    other = add_token(gw, consumer, "bob")  # never used before the cut: not cached

    # the valid twins: admitted, forwarded; this one's consumer and token are now cached
    r = get(gw, signed(gw, consumer, other, "GET", "/notes/1"))
    assert r.status_code == 200, r.text
    r = get(gw, signed(gw, consumer, token, "GET", "/notes/1"))
    assert r.status_code == 200, r.text
    forwarded = len(upstream.requests)

    link.cut()
    # the consumer and the token still in their one-second caches: only the nonce needs the
    # store, and without it the request is not admitted
    during = signed(gw, consumer, token, "GET", "/notes/1")
    r, took = timed(lambda: get(gw, during))
    unavailable(r, took, "a signed request, consumer and token cached")
    # after the cache second: the token (and the consumer) need the store too
    r, took = timed(lambda: get(gw, signed(gw, consumer, other, "GET", "/notes/1")))
    unavailable(r, took, "a signed request, token not cached")
    r, took = timed(lambda: get(gw, signed(gw, consumer, token, "GET", "/notes/2"), "/notes/2"))
    unavailable(r, took, "a signed request")
    assert len(upstream.requests) == forwarded, "the upstream received a request in the outage"

    link.restore()  # service resumes by itself: a fresh signed request is admitted again
    wait_until(
        lambda: (
            get(gw, signed(gw, consumer, token, "GET", "/notes/3"), "/notes/3").status_code == 200
        ),
        15,
        "a fresh signed request admitted after the database is back",
    )
    r, took = timed(lambda: get(gw, signed(gw, consumer, other, "GET", "/notes/4"), "/notes/4"))
    assert r.status_code == 200 and took < FAST, (r.status_code, took)

    # the request signed in the outage, replayed with its nonce: admitted at most once
    before = len(upstream.requests)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: get(gw, during).status_code, range(4)))
    statuses.append(get(gw, during).status_code)
    assert statuses.count(200) <= 1, statuses
    assert set(statuses) <= {200, 401}, statuses
    assert len(upstream.requests) - before == statuses.count(200)
    assert get(gw, during).status_code == 401  # and its nonce is recorded now, either way


# --- the provider endpoints -----------------------------------------------------------------------


def test_provider_endpoints_answer_503_while_the_store_is_cut(
    cut_gateway: tuple[GatewayProcess, Cut], upstream: RecordingUpstream
) -> None:
    gw, link = cut_gateway
    consumer = add_consumer(gw)
    oob = [("oauth_callback", OOB)]

    # the valid twins
    r = post(
        gw,
        "/oauth1/request_token",
        signed(gw, consumer, None, "POST", "/oauth1/request_token", extra=oob),
    )
    assert r.status_code == 200, r.text
    assert "oauth_callback_confirmed=true" in r.text
    twin, verifier = authorized_temporary(gw, consumer)
    r = post(
        gw,
        "/oauth1/access_token",
        signed(
            gw, consumer, twin, "POST", "/oauth1/access_token", extra=[("oauth_verifier", verifier)]
        ),
    )
    assert r.status_code == 200, r.text
    assert "oauth_token=rg_ot_" in r.text
    pending, pending_verifier = authorized_temporary(gw, consumer)
    exchange = [("oauth_verifier", pending_verifier)]

    link.cut()
    r, took = timed(
        lambda: post(
            gw,
            "/oauth1/request_token",
            signed(gw, consumer, None, "POST", "/oauth1/request_token", extra=oob),
        )
    )
    unavailable(r, took, "POST /oauth1/request_token")
    during = signed(gw, consumer, pending, "POST", "/oauth1/access_token", extra=exchange)
    r, took = timed(lambda: post(gw, "/oauth1/access_token", during))
    unavailable(r, took, "POST /oauth1/access_token")
    assert len(upstream.requests) == 0

    link.restore()
    wait_until(
        lambda: (
            post(
                gw,
                "/oauth1/request_token",
                signed(gw, consumer, None, "POST", "/oauth1/request_token", extra=oob),
            ).status_code
            == 200
        ),
        15,
        "POST /oauth1/request_token answers again",
    )
    # the exchange attempted in the outage did not happen: the temporary credentials are
    # exchanged now, once (the replay of the outage's request, or a fresh one)
    statuses = [post(gw, "/oauth1/access_token", during).status_code]
    fresh = signed(gw, consumer, pending, "POST", "/oauth1/access_token", extra=exchange)
    statuses.append(post(gw, "/oauth1/access_token", fresh).status_code)
    assert statuses in ([200, 401], [401, 200]), statuses
    if statuses[0] == 401:  # the outage request's nonce was recorded late, at the thaw
        assert link.mode == "blackhole", statuses
    again = signed(gw, consumer, pending, "POST", "/oauth1/access_token", extra=exchange)
    assert post(gw, "/oauth1/access_token", again).status_code == 401  # used up
