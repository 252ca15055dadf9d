"""credentials/oauth1.py in-process: what the method claims, what it needs read, the checks in
their RFC 5849 §3.2 order (400 or 401), the nonce last, two-legged requests per route, and the
read-through cache (credentials/read_through.py) that keeps revocation within a second."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta
from typing import Any

import pytest

from restguard.credentials.base import AuthContext
from restguard.credentials.oauth1 import OAuth1Authenticator, OAuth1Verifier
from restguard.credentials.oauth1_consumers import new_consumer
from restguard.credentials.oauth1_tokens import new_temporary_credentials, new_token_credentials
from restguard.credentials.read_through import ReadThrough
from restguard.errors import InvalidCredential, InvalidRequest
from restguard.keys.sealing import Sealer
from restguard.store.ports import OAuth1TokenRecord
from restguard.types import Principal, RequestView
from restguard.wire.rfc5849_algorithms import sign_request
from tests.unit.fakes import T0

SEALER = Sealer(b"o" * 32)
CONSUMER, CONSUMER_SECRET = new_consumer("sync", ("notes:read",), now=T0, sealer=SEALER)
_TEMP, _ = new_temporary_credentials(CONSUMER, "oob", now=T0, sealer=SEALER)
TEMPORARY = dataclasses.replace(_TEMP, user_id="u1", subject="alice")
TOKEN, TOKEN_SECRET = new_token_credentials(TEMPORARY, now=T0, sealer=SEALER)
HOST = "api.example.com"


class Records:
    def __init__(self, *records: Any, key: str) -> None:
        self.records = {getattr(r, key): r for r in records}
        self.reads = 0

    async def get(self, key: str) -> Any:
        self.reads += 1
        return self.records.get(key)


class Nonces:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str, int, str]] = set()
        self.calls = 0

    async def use(self, consumer: str, token: str, ts: int, nonce: str, *_: Any) -> bool:
        self.calls += 1
        if (consumer, token, ts, nonce) in self.seen:
            return False
        self.seen.add((consumer, token, ts, nonce))
        return True


def method(
    consumers: Records | None = None, tokens: Records | None = None, nonces: Nonces | None = None
) -> OAuth1Authenticator:
    verifier = OAuth1Verifier(
        consumers or Records(CONSUMER, key="consumer_key"),  # type: ignore[arg-type]
        tokens or Records(TOKEN, TEMPORARY, key="token"),  # type: ignore[arg-type]
        nonces or Nonces(),  # type: ignore[arg-type]
        SEALER,
        ttl=0,
    )
    return OAuth1Authenticator(verifier, public_url=f"https://{HOST}")


def signed(
    *,
    method_name: str = "HMAC-SHA1",
    token: str | None = TOKEN.token,
    token_secret: str = TOKEN_SECRET,
    at: int | None = None,
    nonce: str = "n1",
    body: bytes | None = None,
    scheme: str = "https",
) -> RequestView:
    header = sign_request(
        "POST" if body is not None else "GET",
        scheme,
        HOST,
        "/notes/1",
        b"a=1",
        body,
        consumer_key=CONSUMER.consumer_key,
        signature_method=method_name,
        nonce=nonce,
        timestamp=int(T0.timestamp()) if at is None else at,
        consumer_secret=CONSUMER_SECRET,
        token=token,
        token_secret=token_secret if token else None,
    )
    headers = [(b"host", HOST.encode()), (b"authorization", header.encode())]
    if body is not None:
        headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    return RequestView(
        "POST" if body is not None else "GET",
        "/notes/1",
        b"a=1",
        tuple(headers),
        "203.0.113.9",
        scheme=scheme,
        raw_path=b"/notes/1",
        body=body,
    )


def run(m: OAuth1Authenticator, view: RequestView, *, two_legged: bool = False) -> Principal:
    credential = m.extract(view)
    assert credential is not None
    ctx = AuthContext(T0, view.client, view, oauth1_two_legged=two_legged)
    return asyncio.run(m.authenticate(credential, ctx))


def test_a_signed_request_is_the_user_of_its_token() -> None:
    principal = run(method(), signed())
    assert (principal.subject, principal.client_id) == ("alice", CONSUMER.consumer_key)
    assert principal.scopes == {"notes:read"} and principal.auth_method == "oauth1"


def test_what_it_claims_strips_and_reads() -> None:
    m = method()
    header_view = signed()
    assert m.carriers(header_view) == (b"authorization",)
    assert m.body_limit(header_view) == 0  # no form body: nothing to read first
    form_view = signed(body=b"text=hi")
    assert m.body_limit(form_view) == 1024 * 1024
    bearer = RequestView("GET", "/", headers=((b"authorization", b"Bearer rg_ak_x"),))
    assert m.extract(bearer) is None and m.carriers(bearer) == ()
    # parameters in the query (also percent-encoded names) or in a form body are a credential
    assert m.extract(RequestView("GET", "/", b"oauth_consumer_key=ck_x")) is not None
    assert m.extract(RequestView("GET", "/", b"oauth%5Fsignature=x")) is not None
    assert m.extract(RequestView("GET", "/", b"oauth_token=x&oauth_verifier=y")) is None
    # a value that only mentions one, or another letter case, is not a credential
    assert m.extract(RequestView("GET", "/", b"q=oauth_signature")) is None
    assert m.extract(RequestView("GET", "/", b"q=%20oauth_consumer_key")) is None
    assert m.extract(RequestView("GET", "/", b"OAUTH_SIGNATURE=x")) is None
    form = RequestView(
        "POST",
        "/",
        headers=((b"content-type", b"application/x-www-form-urlencoded"),),
        body=b"oauth_consumer_key=ck_x",
    )
    assert m.extract(form) is not None


def test_a_form_body_not_read_fails_closed() -> None:
    view = signed(body=b"text=hi")._replace(body=None)
    with pytest.raises(InvalidCredential):
        asyncio.run(
            method().authenticate(
                method().extract(view) or pytest.fail("no credential"), AuthContext(T0, "", view)
            )
        )


def test_without_the_request_it_fails_closed() -> None:
    credential = method().extract(signed())
    assert credential is not None
    with pytest.raises(InvalidCredential):
        asyncio.run(method().authenticate(credential, AuthContext(T0, "")))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"at": int(T0.timestamp()) - 301}, InvalidCredential),  # stale
        ({"at": int(T0.timestamp()) + 301}, InvalidCredential),  # from the future
        ({"token_secret": "wrong"}, InvalidCredential),
        ({"token": TEMPORARY.token}, InvalidCredential),  # temporary as token credentials
        ({"method_name": "PLAINTEXT", "scheme": "http"}, InvalidRequest),  # plain HTTP
    ],
)
def test_refusals(change: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        run(method(), signed(**change))


def test_the_window_edges_are_inside() -> None:
    for at in (int(T0.timestamp()) - 300, int(T0.timestamp()) + 300):
        assert run(method(), signed(at=at, nonce=f"edge{at}")).subject == "alice"


def test_plaintext_over_tls_passes() -> None:
    assert run(method(), signed(method_name="PLAINTEXT")).subject == "alice"


def test_the_nonce_is_used_last_and_once() -> None:
    nonces = Nonces()
    m = method(nonces=nonces)
    with pytest.raises(InvalidCredential):
        run(m, signed(token_secret="wrong"))
    assert nonces.calls == 0  # an invalid request burns no nonce
    run(m, signed())
    with pytest.raises(InvalidCredential):  # the replay
        run(m, signed())
    assert nonces.calls == 2


def test_two_legged_only_where_the_route_allows() -> None:
    view = signed(token=None)
    with pytest.raises(InvalidCredential):
        run(method(), view)
    principal = run(method(), view, two_legged=True)
    assert principal.subject == CONSUMER.consumer_key
    assert principal.scopes == set(CONSUMER.scopes)


def test_revoked_or_expired_or_foreign_tokens_are_refused() -> None:
    later = T0 - timedelta(seconds=1)
    other, _ = new_consumer("other", ("notes:read",), now=T0, sealer=SEALER)
    for record in (
        dataclasses.replace(TOKEN, revoked_at=later),
        dataclasses.replace(TOKEN, expires_at=later),
        dataclasses.replace(TOKEN, consumer_key=other.consumer_key),
        dataclasses.replace(TOKEN, user_id=None),
    ):
        with pytest.raises(InvalidCredential):
            run(method(tokens=Records(record, key="token")), signed())


def test_a_method_the_consumer_may_not_use_is_a_bad_request() -> None:
    narrow = dataclasses.replace(CONSUMER, signature_methods=("HMAC-SHA256",))
    with pytest.raises(InvalidRequest):
        run(method(consumers=Records(narrow, key="consumer_key")), signed())


def test_unknown_and_revoked_consumers_cost_no_more_than_one_read() -> None:
    consumers = Records(key="consumer_key")
    with pytest.raises(InvalidCredential):
        run(method(consumers=consumers), signed())
    assert consumers.reads == 1
    revoked = dataclasses.replace(CONSUMER, revoked_at=T0 - timedelta(seconds=1))
    with pytest.raises(InvalidCredential):
        run(method(consumers=Records(revoked, key="consumer_key")), signed())


# --- read_through.ReadThrough -------------------------------------------------------------


def test_read_through_keeps_derived_values_and_rereads_after_the_ttl() -> None:
    records = {"a": TOKEN}
    reads: list[str] = []
    derived: list[OAuth1TokenRecord] = []

    async def load(key: str) -> OAuth1TokenRecord | None:
        reads.append(key)
        return records.get(key)

    def derive(record: OAuth1TokenRecord) -> str:
        derived.append(record)
        return record.token

    cache = ReadThrough(load, derive, ttl=0.05)

    async def scenario() -> None:
        assert await cache.get("a") == (TOKEN, TOKEN.token)
        assert await cache.get("a") == (TOKEN, TOKEN.token)
        assert reads == ["a"]  # within the ttl: no read
        assert await cache.get("missing") is None
        assert await cache.get("missing") is None
        assert reads == ["a", "missing"]  # an unknown id is remembered too
        time.sleep(0.06)
        assert await cache.get("a") == (TOKEN, TOKEN.token)
        assert len(derived) == 1  # the same record: derived once
        records["a"] = dataclasses.replace(TOKEN, revoked_at=T0)
        time.sleep(0.06)
        record, _ = await cache.get("a") or pytest.fail("gone")
        assert record.revoked_at == T0 and len(derived) == 2
        cache.forget("a")
        await cache.get("a")
        assert reads.count("a") == 4

    asyncio.run(scenario())


def test_read_through_refuses_a_ttl_over_a_second() -> None:
    async def load(key: str) -> None:
        return None

    with pytest.raises(ValueError):
        ReadThrough(load, str, ttl=1.5)
