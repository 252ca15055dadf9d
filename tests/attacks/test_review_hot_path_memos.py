"""Attacks on the hot-path memos (results remembered to skip work per request).

1. apikey: a key's plaintext -> the stored digest it matched (``_matched``).
2. oauth2: ``stable_extract`` and ``attributed`` (the audit name of an opaque token).
3. jwt: a remembered token returns its principal while ``keys.held`` its key set.
4. carriers: the per-route plan (``_plans``).
5. oauth1: ``_header``'s answer for the last header tuple.
6. signature: ``_principal`` per app record, ``_authority`` per Host value.
7. redis: ``digest`` and ``hiredis.pack_command``.
8. ``client_head(rate=...)``: the route's RateLimit-* fields in place of the upstream's.
9. the upstream pool's connect and probe under ``asyncio.timeout``: nothing left open.

Each test asserts the secure behaviour: it passes when the memo is safe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ssl
from datetime import timedelta
from types import SimpleNamespace

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection

from restguard import carriers as carriers_module
from restguard.authz.policy import Policy, Route, compile_pattern
from restguard.authz.ratelimit import MemoryRateLimiter
from restguard.clock import FixedClock
from restguard.credentials import signature as signature_module
from restguard.credentials.apikey import ApiKeyAuthenticator, generate_key, new_record
from restguard.credentials.base import AuthContext
from restguard.credentials.jwt import JwtAuthenticator, JwtIssuer, StaticKeys
from restguard.credentials.oauth1 import OAuth1Authenticator
from restguard.credentials.oauth2 import OAuth2Authenticator
from restguard.credentials.opaque_tokens import new_token
from restguard.credentials.signature import SignatureAuthenticator
from restguard.errors import AuthError, BackendUnavailable, InvalidCredential
from restguard.gateway.headers import client_head
from restguard.gateway.upstream_pool import UpstreamPool
from restguard.guard import Guard
from restguard.keys.hashing import token_digest
from restguard.keys.jwk import KeySet
from restguard.keys.jwks import JWKSCache, JWKSSettings
from restguard.oauth2.access_tokens import AccessTokens
from restguard.store.ports.signed import AppRecord
from restguard.store.redis import _link, rate_limit
from restguard.types import RequestView
from tests.unit.credentials.test_jwt import AUD, ISS, Fetcher, T, mint
from tests.unit.credentials.test_oauth2 import OWN, Clients, Ring
from tests.unit.fakes import T0, FakeApiKeyStore
from tests.unit.keys.jwt_helpers import EC, ED

_SEG, _SUB = compile_pattern("/**")
ANY = Route(0, "/**", frozenset({"GET", "POST"}), _segments=_SEG, _subtree=_SUB)


def _bearer(token: str) -> RequestView:
    headers = ((b"authorization", b"Bearer " + token.encode()),)
    return RequestView("GET", "/x", b"", headers, "127.0.0.1", raw_path=b"/x")


def _api_view(key: str) -> RequestView:
    return RequestView("GET", "/x", b"", ((b"x-api-key", key.encode()),), "127.0.0.1")


# --- 1. apikey: the matched-digest memo ---------------------------------------------------------


def _apikey(store: FakeApiKeyStore, clock: FixedClock) -> tuple[ApiKeyAuthenticator, AuthContext]:
    return ApiKeyAuthenticator(store, clock), AuthContext(clock.now(), "127.0.0.1")


async def _key_auth(a: ApiKeyAuthenticator, key: str, clock: FixedClock) -> object:
    credential = a.extract(_api_view(key))
    assert credential is not None
    return await a.authenticate(credential, AuthContext(clock.now(), "127.0.0.1"))


async def test_apikey_a_second_secret_for_a_remembered_key_id_is_refused() -> None:
    """A valid key is remembered; the attacker then presents the same key id with another
    (well-formed, checksummed) secret while the record is still cached: refused."""
    clock, store = FixedClock(T0), FakeApiKeyStore()
    record, key = new_record("svc", ("read",), T0, None)
    await store.insert(record)
    a, _ = _apikey(store, clock)
    assert (await _key_auth(a, key, clock)) is not None
    for _ in range(20):
        _, forged = generate_key(record.id)  # same id, another secret, valid checksum
        with pytest.raises(InvalidCredential):
            await _key_auth(a, forged, clock)


async def test_apikey_a_rotated_digest_refuses_the_old_secret_at_once() -> None:
    """The record of a key id gets a new digest (the secret was rotated): the old, remembered
    secret must not pass against the new record object."""
    clock, store = FixedClock(T0), FakeApiKeyStore()
    record, old_key = new_record("svc", ("read",), T0, None)
    await store.insert(record)
    a, _ = _apikey(store, clock)
    await _key_auth(a, old_key, clock)
    _, new_key = generate_key(record.id)
    store.records[record.id] = dataclasses.replace(record, key_hash=token_digest(new_key))
    a.drop_cached()
    with pytest.raises(InvalidCredential):
        await _key_auth(a, old_key, clock)
    assert (await _key_auth(a, new_key, clock)) is not None
    with pytest.raises(InvalidCredential):  # and the old one stays refused after the new one
        await _key_auth(a, old_key, clock)


async def test_apikey_revocation_and_expiry_refuse_a_remembered_secret() -> None:
    """A remembered secret whose record keeps the same digest object (``replace`` copies the
    reference) but is now revoked, or whose expiry passes on the clock alone: refused."""
    clock, store = FixedClock(T0), FakeApiKeyStore()
    record, key = new_record("svc", ("read",), T0, 60)
    await store.insert(record)
    a, _ = _apikey(store, clock)
    await _key_auth(a, key, clock)
    clock.advance(61)  # expired; the cache may still hold the very record
    with pytest.raises(InvalidCredential):
        await _key_auth(a, key, clock)

    record2, key2 = new_record("svc2", ("read",), clock.now(), None)
    await store.insert(record2)
    await _key_auth(a, key2, clock)
    await store.revoke(record2.id, clock.now())
    assert store.records[record2.id].key_hash is record2.key_hash  # the digest object is kept
    a.drop_cached()
    with pytest.raises(InvalidCredential):
        await _key_auth(a, key2, clock)


async def test_apikey_refused_secrets_are_not_remembered() -> None:
    """Memory: a flood of wrong secrets for a real key id adds nothing to the memo."""
    clock, store = FixedClock(T0), FakeApiKeyStore()
    record, _ = new_record("svc", ("read",), T0, None)
    await store.insert(record)
    a, _ = _apikey(store, clock)
    for _ in range(200):
        _, forged = generate_key(record.id)
        with pytest.raises(InvalidCredential):
            await _key_auth(a, forged, clock)
    assert len(a._matched) == 0


async def test_apikey_memo_is_bounded_by_the_cache_size() -> None:
    """Memory: many valid keys never grow the memo past ``cache_size``."""
    clock, store = FixedClock(T0), FakeApiKeyStore()
    a = ApiKeyAuthenticator(store, clock, cache_size=8)
    for i in range(30):
        record, key = new_record(f"svc{i}", (), T0, None)
        await store.insert(record)
        await _key_auth(a, key, clock)
        assert len(a._matched) <= 8


# --- 2. oauth2: the audit name of a token --------------------------------------------------------


class _Opaque:
    """An opaque-token store: token -> client."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens

    async def find(self, token: str) -> object:
        client = self.tokens.get(token)
        if client is None:
            return None
        return SimpleNamespace(
            client_id=client,
            subject="alice",
            scopes=("a",),
            jti="jti-" + token[-8:],
            created_at=T0,
            expires_at=T0 + timedelta(hours=1),
        )


def _oauth2(
    opaque: dict[str, str], events: list[object]
) -> tuple[Guard, OAuth2Authenticator, Clients, Ring]:
    clock, ring, clients = FixedClock(T0), Ring(), Clients()
    auth = OAuth2Authenticator(
        ring,
        clients,
        clock,
        issuer=OWN,
        audience=OWN,
        opaque=_Opaque(opaque),  # type: ignore[arg-type]
    )
    guard = Guard(
        Policy([ANY]), {"oauth2": auth}, clock, MemoryRateLimiter(), sinks=[events.append]
    )
    return guard, auth, clients, ring


async def _decide(guard: Guard, token: str) -> object:
    try:
        return await guard.decide(_bearer(token))
    except AuthError as exc:
        return exc


def _audit(events: list[object]) -> list[tuple[object, object]]:
    return [(getattr(e, "status", None), getattr(e, "credential_id", None)) for e in events]


async def test_oauth2_forged_jwt_naming_a_real_client_is_refused_after_a_real_one() -> None:
    """An attacker copies a valid own access token's shape, names the same client in
    ``client_id`` and signs with its own key under the same ``kid``: the extract memo (keyed
    by the header) and the claim cache must not let it through."""
    events: list[object] = []
    guard, _, _, ring = _oauth2({}, events)
    tokens = AccessTokens(ring.current, OWN, OWN, FixedClock(T0))
    good = tokens.issue(client_id="rg_ci_abc", subject="rg_ci_abc", scopes=("a",)).access_token
    assert not isinstance(await _decide(guard, good), AuthError)
    header = pyjwt.get_unverified_header(good)
    claims = pyjwt.decode(good, options={"verify_signature": False})
    evil = ed25519.Ed25519PrivateKey.generate()
    forged = pyjwt.encode({**claims, "scope": "a b"}, evil, algorithm="EdDSA", headers=header)
    for _ in range(3):
        result = await _decide(guard, forged)
        assert isinstance(result, AuthError), result
        assert result.status == 401
    assert _audit(events)[0] == (200, "oauth2:rg_ci_abc")


async def test_oauth2_opaque_tokens_are_each_attributed_to_their_own_client() -> None:
    """Two opaque tokens of two clients, interleaved: each allowed line names its verified
    client; an unknown opaque token is refused and named by no client at all."""
    t1, t2, unknown = new_token(), new_token(), new_token()
    events: list[object] = []
    guard, _, clients, _ = _oauth2({t1: "rg_ci_abc", t2: "rg_ci_xyz"}, events)
    clients.records["rg_ci_xyz"] = dataclasses.replace(
        clients.records["rg_ci_abc"], client_id="rg_ci_xyz"
    )
    for token in (t1, t2, t1, unknown, t2, unknown):
        await _decide(guard, token)
    assert _audit(events) == [
        (200, "oauth2:rg_ci_abc"),
        (200, "oauth2:rg_ci_xyz"),
        (200, "oauth2:rg_ci_abc"),
        (401, "oauth2:opaque"),
        (200, "oauth2:rg_ci_xyz"),
        (401, "oauth2:opaque"),
    ]


async def test_oauth2_revoked_opaque_token_and_revoked_client_refused_after_the_memo() -> None:
    """A remembered (extract memo + verified memo) opaque token: revoking it, or its client,
    refuses the next request."""
    t1, t2 = new_token(), new_token()
    events: list[object] = []
    guard, auth, clients, _ = _oauth2({t1: "rg_ci_abc", t2: "rg_ci_abc"}, events)
    assert not isinstance(await _decide(guard, t1), AuthError)
    auth.revoked("jti-" + t1[-8:])
    assert isinstance(await _decide(guard, t1), AuthError)
    assert not isinstance(await _decide(guard, t2), AuthError)
    clients.records["rg_ci_abc"] = dataclasses.replace(clients.records["rg_ci_abc"], revoked_at=T0)
    auth.drop_cached()
    assert isinstance(await _decide(guard, t2), AuthError)


async def test_oauth2_a_jwt_whose_client_id_spells_opaque_is_named_by_its_verified_client() -> None:
    """A JWT access token whose ``client_id`` is literally ``opaque`` (so its unverified name
    equals the placeholder): the allowed line still names the verified client, and nothing
    else is renamed."""
    events: list[object] = []
    guard, _, clients, ring = _oauth2({}, events)
    clients.records["opaque"] = dataclasses.replace(
        clients.records["rg_ci_abc"], client_id="opaque"
    )
    tokens = AccessTokens(ring.current, OWN, OWN, FixedClock(T0))
    token = tokens.issue(client_id="opaque", subject="opaque", scopes=()).access_token
    assert not isinstance(await _decide(guard, token), AuthError)
    assert _audit(events) == [(200, "oauth2:opaque")]


# --- 3. jwt: a remembered token while its key set is held ---------------------------------------


def _cached(clock: FixedClock, fetcher: Fetcher, **settings_: float) -> JwtAuthenticator:
    source = JWKSCache(
        "https://tenant.example.com/jwks",
        clock=clock,
        fetcher=fetcher,
        settings=JWKSSettings(**settings_) if settings_ else None,
    )
    return JwtAuthenticator([JwtIssuer(ISS, AUD, source)], clock)


async def _jwt(a: JwtAuthenticator, token: str, clock: FixedClock) -> object:
    credential = a.extract(_bearer(token))
    assert credential is not None
    return await a.authenticate(credential, AuthContext(clock.now(), "127.0.0.1"))


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_jwt_key_withdrawn_from_the_jwks_refuses_a_remembered_token() -> None:
    """The issuer withdraws the key a remembered token was signed with; once the refresh has
    landed, the token is refused (the memo is tied to the very key set)."""
    clock, fetcher = FixedClock(T0), Fetcher(ED.keyset())
    a = _cached(clock, fetcher)
    token = mint(ED, exp=T + 3600)
    await _jwt(a, token, clock)
    fetcher.keys = EC.keyset()  # ED withdrawn
    clock.advance(200)  # past the refresh time (max-age=600 less refresh-ahead), < VERIFIED_TTL
    await a._issuers[next(iter(a._issuers))].config.keys.refresh()  # type: ignore[attr-defined]
    await _settle()
    with pytest.raises(InvalidCredential):
        await _jwt(a, token, clock)


async def test_jwt_a_due_refresh_started_by_the_memo_revokes_a_withdrawn_key() -> None:
    """Nobody refreshes explicitly: only remembered-token hits arrive. ``held`` must start the
    due refresh, so a withdrawn key stops working once it lands."""
    clock, fetcher = FixedClock(T0), Fetcher(ED.keyset())
    a = _cached(clock, fetcher, min_ttl=1, default_ttl=10, max_ttl=10, refresh_ahead=0)
    token = mint(ED, exp=T + 3600)
    await _jwt(a, token, clock)
    fetcher.keys = EC.keyset()
    clock.advance(20)  # refresh due (ttl 10 s), still within max-stale
    await _jwt(a, token, clock)  # stale keys within grace: allowed, and the refresh starts
    await _settle()
    assert fetcher.calls == 2
    with pytest.raises(InvalidCredential):
        await _jwt(a, token, clock)


async def test_jwt_jwks_outage_past_max_stale_fails_closed_for_a_remembered_token() -> None:
    """The JWKS endpoint goes down; past max-stale (but well within the memo's 300 s), a
    remembered token must not be accepted from the memo."""
    clock, fetcher = FixedClock(T0), Fetcher(ED.keyset())
    a = _cached(clock, fetcher, min_ttl=1, default_ttl=10, max_ttl=10, max_stale=5)
    token = mint(ED, exp=T + 3600)
    await _jwt(a, token, clock)
    fetcher.down = True
    clock.advance(30)
    with pytest.raises(BackendUnavailable):
        await _jwt(a, token, clock)


async def test_jwt_issuer_removed_or_reconfigured_refuses_a_remembered_token() -> None:
    """Issuer removal refuses; the issuer re-added with the same (shared) key source but
    another audience must re-verify (and refuse the token's audience)."""
    clock = FixedClock(T0)
    keys = StaticKeys(ED.keyset())
    a = JwtAuthenticator([JwtIssuer(ISS, AUD, keys)], clock)
    token = mint(ED, exp=T + 3600)
    await _jwt(a, token, clock)
    credential = a.extract(_bearer(token))
    assert credential is not None
    a.set_issuers([])
    with pytest.raises(InvalidCredential):
        await a.authenticate(credential, AuthContext(clock.now(), "127.0.0.1"))
    a.set_issuers([JwtIssuer(ISS, "https://other.example.com", keys)])
    with pytest.raises(InvalidCredential):
        await _jwt(a, token, clock)


async def test_jwt_static_keys_replaced_and_expiry_refuse_a_remembered_token() -> None:
    """Static keys replaced without the signing key: refused. Past ``exp``: refused."""
    clock = FixedClock(T0)
    keys = StaticKeys(ED.keyset())
    a = JwtAuthenticator([JwtIssuer(ISS, AUD, keys)], clock)
    token = mint(ED, exp=T + 30)
    await _jwt(a, token, clock)
    clock.advance(31)
    with pytest.raises(InvalidCredential):
        await _jwt(a, token, clock)
    clock2 = FixedClock(T0)
    other = mint(ED, exp=T + 3600)
    await _jwt(a, other, clock2)
    keys.keys = KeySet([EC.verification_key()])
    with pytest.raises(InvalidCredential):
        await _jwt(a, other, clock2)


async def test_jwks_held_refuses_another_set_and_an_unusable_one() -> None:
    """``held``: only the very set held now, and only while usable."""
    clock, fetcher = FixedClock(T0), Fetcher(ED.keyset())
    cache = JWKSCache(
        "https://tenant.example.com/jwks",
        clock=clock,
        fetcher=fetcher,
        settings=JWKSSettings(min_ttl=1, default_ttl=10, max_ttl=10, max_stale=5),
    )
    await cache.refresh()
    held = cache.keyset()
    assert held is not None
    assert cache.held(held)
    assert not cache.held(ED.keyset())  # equal content, another object
    fetcher.down = True
    clock.advance(16)
    assert not cache.held(held)
    await _settle()


# --- 4. carriers: the per-route plan -------------------------------------------------------------


def test_carriers_plans_are_bounded_and_skip_unknown_methods() -> None:
    """Many distinct auth lists never grow ``_plans`` past its bound; a method the guard does
    not have is never planned (so never asked)."""
    clock, store = FixedClock(T0), FakeApiKeyStore()
    guard = Guard(
        Policy([ANY]), {"apikey": ApiKeyAuthenticator(store, clock)}, clock, MemoryRateLimiter()
    )
    for i in range(1000):
        plan = guard._plan(("apikey", f"m{i}"))
        assert [step[0] for step in plan] == ["apikey"]
    assert len(guard._plans) <= 256


# --- 5. oauth1: the last header tuple's answer ---------------------------------------------------


def test_oauth1_header_answer_follows_the_request_not_the_last_one() -> None:
    """An OAuth header seen once must not be assumed for another request (another tuple, or a
    list, possibly mutated in place)."""
    a = OAuth1Authenticator(None, public_url="http://127.0.0.1")  # type: ignore[arg-type]
    with_oauth = ((b"authorization", b'OAuth oauth_consumer_key="c"'),)
    without = ((b"authorization", b"Bearer x"),)

    def view(headers: object) -> RequestView:
        return RequestView("GET", "/x", b"", headers, "127.0.0.1")  # type: ignore[arg-type]

    assert a._header(view(with_oauth))
    assert not a._header(view(without))
    assert a._header(view(with_oauth))
    assert not a._header(view(tuple(without)))
    listed = list(with_oauth)
    assert a._header(view(listed))
    listed[:] = without
    assert not a._header(view(listed))


# --- 6. signature: principal per record, authority per Host --------------------------------------


def _app(key_id: str, scopes: tuple[str, ...], name: str = "app") -> AppRecord:
    return AppRecord(key_id, name, "ed25519", scopes, None, b"k", T0)


def test_signature_principal_follows_the_record_not_the_key_id() -> None:
    """An app's scopes are narrowed (a new record for the same key id): the new principal has
    the new scopes; two apps never share one principal."""
    a = SignatureAuthenticator(None, None, public_url="http://gw.example")  # type: ignore[arg-type]
    wide = a._principal(_app("app1", ("read", "write")))
    assert wide.scopes == frozenset({"read", "write"})
    narrow = a._principal(_app("app1", ("read",)))
    assert narrow.scopes == frozenset({"read"})
    other = a._principal(_app("app2", ("admin",), name="other"))
    assert other.client_id == "app2"
    assert other.scopes == frozenset({"admin"})
    assert a._principal(_app("app1", ("read",))).scopes == frozenset({"read"})


@settings(max_examples=300, deadline=None)
@given(
    host=st.binary(max_size=300)
    | st.sampled_from([b"GW.example", b"gw.example:80", b"gw.example:443", b"[::1]:8080"]),
    scheme=st.sampled_from(["http", "https"]),
)
def test_signature_authority_memo_equals_the_computation(host: bytes, scheme: str) -> None:
    """The memo answers exactly ``_normal_authority`` for (Host, scheme): the scheme is part
    of the key (``:443`` is dropped for https only)."""
    expected = signature_module._normal_authority(host.decode("latin-1"), scheme)
    assert signature_module._authority(host, scheme) == expected
    other = "https" if scheme == "http" else "http"
    expected_other = signature_module._normal_authority(host.decode("latin-1"), other)
    assert signature_module._authority(host, other) == expected_other
    assert signature_module._authority(host, scheme) == expected


def test_signature_authority_memo_is_bounded_against_attacker_hosts() -> None:
    """Memory: thousands of distinct and long Host values keep the memo at its bound."""
    for i in range(5000):
        signature_module._authority(b"h%d.example" % i, "http")
        signature_module._authority(b"x" * 10_000 + b"%d" % i, "https")
    assert len(signature_module._AUTHORITIES) <= 256
    assert all(len(h) <= 256 for h, _ in signature_module._AUTHORITIES)


# --- 7. redis: digest and packing ---------------------------------------------------------------


def _reference_digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(b"%d:" % len(data))
        h.update(data)
    return h.hexdigest()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(), max_size=5))
def test_redis_digest_is_unchanged_and_unambiguous(parts: list[str]) -> None:
    """``digest`` gives the old bytes for any parts (lone surrogates included), and moving a
    boundary between parts changes it."""
    assert _link.digest(*parts) == _reference_digest(*parts)
    if len(parts) >= 2 and parts[0]:
        shifted = [parts[0][:-1], parts[0][-1:] + parts[1], *parts[2:]]
        assert _link.digest(*shifted) != _link.digest(*parts)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
        | st.integers(min_value=-(2**63), max_value=2**63)
        | st.sampled_from(["1", "0", "0.5", "k\r\n$3\r\nDEL"]),
        max_size=12,
    )
)
def test_redis_packing_is_byte_identical_to_redis_py(parts: list[str | int]) -> None:
    """A command packed by hiredis is the same bytes as redis-py's (so a key or nonce with
    CR LF stays one bulk string: no command injection)."""
    if _link.hiredis is None:
        pytest.skip("hiredis not installed")
    command = ("EVALSHA", "sha", len(parts), *parts)
    assert _link.hiredis.pack_command(command) == b"".join(Connection().pack_command(*command))


# --- 8. client_head: the route's RateLimit-* fields ---------------------------------------------

RATE = (("ratelimit-limit", "10"), ("ratelimit-remaining", "9"), ("ratelimit-reset", "60"))


def _fields(out: list[bytes]) -> list[tuple[bytes, bytes]]:
    lines = b"".join(out).split(b"\r\n")[1:]
    return [tuple(line.split(b": ", 1)) for line in lines if line]  # type: ignore[misc]


def test_client_head_rate_fields_replace_the_upstreams_exactly_once() -> None:
    """The upstream sends its own ``ratelimit-*`` (and look-alikes) to raise the client's
    apparent quota: only the gateway's values reach the client, each once."""
    upstream = [
        (b"ratelimit-limit", b"100000"),
        (b"ratelimit-remaining", b"99999"),
        (b"ratelimit-policy", b"x"),
        (b"ratelimitx", b"1"),
        (b"x-kept", b"1"),
        (b"content-length", b"0"),
    ]
    out, framing = client_head(200, b"OK", upstream, no_body=False, http_11=True, rate=RATE)
    fields = _fields(out)
    limited = [(n, v) for n, v in fields if n.startswith(b"ratelimit")]
    assert sorted(limited) == sorted((n.encode(), v.encode()) for n, v in RATE)
    assert (b"x-kept", b"1") in fields
    assert framing == "length"


def test_client_head_upstream_connection_tokens_cannot_remove_the_rate_fields() -> None:
    """The upstream names the gateway's fields in ``Connection``: they are still sent."""
    upstream = [(b"connection", b"ratelimit-remaining, ratelimit-limit"), (b"content-length", b"0")]
    out, _ = client_head(200, b"OK", upstream, no_body=False, http_11=True, rate=RATE)
    names = [n for n, _ in _fields(out)]
    for name, _ in RATE:
        assert names.count(name.encode()) == 1


def test_client_head_without_rate_passes_the_upstreams_fields_and_no_extra() -> None:
    """No route limit: the upstream's fields pass as they are, none is invented."""
    upstream = [(b"ratelimit-limit", b"5"), (b"content-length", b"0")]
    out, _ = client_head(200, b"OK", upstream, no_body=False, http_11=True)
    assert [f for f in _fields(out) if f[0].startswith(b"ratelimit")] == [
        (b"ratelimit-limit", b"5")
    ]


def test_client_head_rate_fields_come_after_the_status_line_and_are_well_formed() -> None:
    """Every line the head is made of is one ``name: value`` field (no CR/LF inside)."""
    out, _ = client_head(
        204, b"No Content", [], no_body=False, http_11=True, request_id=b"abc", rate=RATE
    )
    head = b"".join(out)
    assert head.startswith(b"HTTP/1.1 204 No Content\r\n")
    for line in head.split(b"\r\n")[1:-1]:
        name, sep, value = line.partition(b": ")
        assert sep and name and b"\r" not in value and b"\n" not in value


# --- 9. the upstream pool: a TLS upstream that never answers the handshake -----------------------


@pytest.mark.parametrize("probe", [False, True])
def test_upstream_pool_tls_handshake_stall_times_out_and_closes_the_socket(probe: bool) -> None:
    """The upstream accepts TCP but never completes TLS: ``acquire`` (or ``probe``) times out,
    nothing is counted busy, and every socket the pool opened is closed (the upstream sees
    EOF): no connection leaks under ``asyncio.timeout``."""

    async def main() -> tuple[int, int, int]:
        opened = 0
        ended = 0

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal opened, ended
            opened += 1
            while await reader.read(65536):  # the ClientHello, then EOF when closed
                pass
            ended += 1
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        pool = UpstreamPool("127.0.0.1", port, tls=context, connect_timeout=0.3, size=2)
        if probe:
            assert await pool.probe() is False
        else:
            with pytest.raises(TimeoutError):
                await pool.acquire()
        for _ in range(100):
            if opened and ended == opened:
                break
            await asyncio.sleep(0.02)
        server.close()
        return opened, ended, len(pool._busy)

    opened, ended, busy = asyncio.run(main())
    assert opened == 1
    assert ended == opened
    assert busy == 0


# --- extra: oauth2 claim cache under a flood; the rate-limit reply check ------------------------


def test_oauth2_claim_and_screen_memos_stay_bounded_under_forged_tokens() -> None:
    """Memory: thousands of distinct JWT-shaped tokens naming restguard as issuer (each
    remembered by the claim cache and the header screen) keep both at their bounds, and every
    one of them is still refused."""
    events: list[object] = []
    guard, auth, _, _ = _oauth2({}, events)
    evil = ed25519.Ed25519PrivateKey.generate()

    async def flood() -> None:
        for i in range(3000):
            claims = {"iss": OWN, "client_id": f"c{i}", "sub": "x", "exp": T + 60}
            token = pyjwt.encode(claims, evil, algorithm="EdDSA", headers={"kid": "k1"})
            result = await _decide(guard, token)
            assert isinstance(result, AuthError)

    asyncio.run(flood())
    assert len(auth._claims) <= 1024
    assert len(guard._screened) <= carriers_module._SCREENED_SIZE


def _old_verdict(reply: object) -> object:
    if not (
        isinstance(reply, list)
        and len(reply) == 4
        and all(type(v) is int for v in reply)
        and reply[0] in (0, 1)
        and reply[1] >= 0
        and reply[2] >= 0
        and (reply[3] == -1 if reply[0] == 1 else reply[3] >= 1)
    ):
        return "unavailable"
    allowed, remaining, reset, retry = reply
    return (allowed == 1, remaining, reset, None if retry < 0 else retry)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.integers(min_value=-3, max_value=3) | st.booleans() | st.just("1"),
        min_size=3,
        max_size=5,
    )
)
def test_rate_limit_reply_check_is_unchanged(reply: list[object]) -> None:
    """A Redis reply of another shape (a bool, a string, a negative count, an allowed answer
    with a retry time) is still refused (fail closed), exactly as before."""
    try:
        got = rate_limit.verdict(reply)
    except BackendUnavailable:
        assert _old_verdict(reply) == "unavailable"
    else:
        assert _old_verdict(reply) == (got.allowed, got.remaining, got.reset, got.retry_after)
