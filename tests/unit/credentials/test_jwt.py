"""credentials/jwt.py: extraction from a shared Bearer header, issuer selection, verification
of tokens minted by PyJWT, scopes from each claim style, key refresh and fail-closed, and the
guard with the API-key and JWT authenticators on one route."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import jwt as pyjwt
import pytest

from restguard.authz.policy import Policy, Route, compile_pattern
from restguard.authz.ratelimit import MemoryRateLimiter
from restguard.clock import FixedClock
from restguard.credentials.apikey import ApiKeyAuthenticator, generate_key
from restguard.credentials.base import AuthContext, Credential
from restguard.credentials.jwt import JwtAuthenticator, JwtIssuer, StaticKeys, issuer_id
from restguard.errors import BackendUnavailable, InvalidCredential, InvalidRequest
from restguard.guard import Guard
from restguard.keys.jwks import JWKSCache
from restguard.keys.jwks_fetch import FetchedJWKS, JWKSFetchError
from restguard.keys.jwt_verify import KeySet
from restguard.types import RequestView
from tests.unit.fakes import T0, FakeApiKeyStore
from tests.unit.keys.jwt_helpers import EC, ED, RSA, Signer

ISS = "https://tenant.example.com/"
AUD = "https://api.example.com"
T = int(T0.timestamp())


def mint(signer: Signer, **over: Any) -> str:
    headers = over.pop("_headers", {})
    body: dict[str, Any] = {"iss": ISS, "aud": AUD, "sub": "user-1", "exp": T + 300, **over}
    body = {k: v for k, v in body.items() if v is not None}
    return pyjwt.encode(
        body, signer.private, algorithm=signer.alg, headers={"kid": signer.kid, **headers}
    )


def view(*headers: tuple[bytes, bytes]) -> RequestView:
    return RequestView("GET", "/", b"", headers, "192.0.2.1")


def bearer(token: str) -> RequestView:
    return view((b"authorization", b"Bearer " + token.encode()))


def authenticator(*issuers: JwtIssuer) -> JwtAuthenticator:
    return JwtAuthenticator(
        issuers
        or [JwtIssuer(ISS, AUD, StaticKeys(KeySet([s.verification_key() for s in (ED, EC, RSA)])))],
        FixedClock(T0),
    )


CTX = AuthContext(T0, "192.0.2.1")


async def auth(a: JwtAuthenticator, token: str, now: datetime = T0) -> Any:
    credential = a.extract(bearer(token))
    assert credential is not None
    return await a.authenticate(credential, AuthContext(now, "192.0.2.1"))


# --- extraction -----------------------------------------------------------------------------------


def test_extracts_a_jwt_from_bearer_and_names_it_by_issuer_only() -> None:
    token = mint(ED)
    credential = authenticator().extract(bearer(token))
    assert credential is not None
    assert credential.method == "jwt"
    assert credential.credential_id == "jwt:" + ISS
    assert credential.headers == (b"authorization",)
    assert token not in repr(credential) and token not in credential.credential_id


@pytest.mark.parametrize("scheme", [b"Bearer ", b"bearer ", b"BEARER\t", b"Bearer\t  "])
def test_scheme_is_case_insensitive_and_a_tab_separates(scheme: bytes) -> None:
    a = authenticator()
    credential = a.extract(view((b"authorization", scheme + mint(ED).encode())))
    assert credential is not None
    assert a.carriers(view((b"authorization", scheme + mint(ED).encode()))) == (b"authorization",)


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer " + generate_key()[1].encode(),  # restguard API key: the api_key method's
        b"Bearer rg_at_aaaa.bbbb.cccc",  # restguard's own opaque tokens, even dotted
        b"Basic dXNlcjpwYXNz",
        b"ApiKey aaaa.bbbb.cccc",
    ],
)
def test_what_is_not_a_jwt_is_left_to_other_authenticators(value: bytes) -> None:
    a = authenticator()
    assert a.extract(view((b"authorization", value))) is None
    assert a.carriers(view((b"authorization", value))) == ()


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer opaque-token",
        b"Bearer aaaa.bbbb",
        b"Bearer aaaa.bbbb.cccc.dddd.eeee",  # JWE, not JWS
        b"Bearer aaaa..cccc",
        b"Bearer aa=a.bbbb.cccc",
        b"Bearer aaaa.bbbb.cccc.",
        b"Bearer",
    ],
)
def test_a_bearer_token_that_is_not_a_jws_is_an_invalid_jwt(value: bytes) -> None:
    """No other method claims it, so it is jwt's, and malformed: 401 invalid_token (RFC 6750
    §3.1), not "no credential". Only JWS-shaped values are stripped as jwt's on public routes."""
    a = authenticator()
    with pytest.raises(InvalidCredential):
        a.extract(view((b"authorization", value)))
    assert a.carriers(view((b"authorization", value))) == ()


def test_no_authorization_header() -> None:
    assert authenticator().extract(view((b"x-api-key", b"x"))) is None


def test_a_repeated_authorization_header_is_a_bad_request() -> None:
    a = authenticator()
    twice = view((b"authorization", b"Bearer " + mint(ED).encode()), (b"authorization", b"x"))
    with pytest.raises(InvalidRequest):
        a.extract(twice)
    assert a.carriers(twice) == (b"authorization",)


def test_a_jwt_shaped_token_with_an_unreadable_payload_is_invalid() -> None:
    with pytest.raises(InvalidCredential):
        authenticator().extract(bearer("eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.c2ln"))


def test_issuer_id_is_printable_and_truncated() -> None:
    assert issuer_id('https://x/"\n') == "jwt:https://x/??"
    assert len(issuer_id("https://" + "a" * 1000)) == 4 + 120


# --- verification ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signer", [ED, EC, RSA], ids=lambda s: s.alg)
async def test_a_valid_token_gives_a_principal(signer: Signer) -> None:
    principal = await auth(authenticator(), mint(signer, scope="notes:read notes:write", azp="cli"))
    assert principal.subject == "user-1"
    assert principal.client_id == "cli"
    assert principal.scopes == {"notes:read", "notes:write"}
    assert principal.auth_method == "jwt"


@pytest.mark.parametrize(
    ("claim", "value"),
    [("scope", "a b"), ("scp", ["a", "b"]), ("permissions", ["a", "b"])],
)
async def test_scopes_from_each_claim_style(claim: str, value: Any) -> None:
    keys = StaticKeys(ED.keyset())
    a = authenticator(JwtIssuer(ISS, AUD, keys, scope_claim=claim))
    principal = await auth(a, mint(ED, **{claim: value}, client_id="svc"))
    assert principal.scopes == {"a", "b"}
    assert principal.client_id == "svc"


@pytest.mark.parametrize(
    ("claim", "value"), [("scope", ["a"]), ("scp", "a b"), ("permissions", [1]), ("scope", 3)]
)
async def test_scopes_of_the_wrong_type_are_invalid(claim: str, value: Any) -> None:
    a = authenticator(JwtIssuer(ISS, AUD, StaticKeys(ED.keyset()), scope_claim=claim))
    with pytest.raises(InvalidCredential):
        await auth(a, mint(ED, **{claim: value}))


async def test_a_token_without_sub_is_its_client() -> None:
    principal = await auth(authenticator(), mint(ED, sub=None, azp="machine"))
    assert principal.subject == "machine"
    with pytest.raises(InvalidCredential):
        await auth(authenticator(), mint(ED, sub=None))


async def test_unknown_issuer_is_invalid() -> None:
    with pytest.raises(InvalidCredential) as caught:
        await auth(authenticator(), mint(ED, iss="https://evil.example/"))
    assert caught.value.status == 401


async def test_a_look_alike_issuer_with_the_same_id_is_refused_by_the_verifier() -> None:
    long_iss = "https://tenant.example.com/" + "a" * 200
    a = authenticator(JwtIssuer(long_iss, AUD, StaticKeys(ED.keyset())))
    assert (await auth(a, mint(ED, iss=long_iss))).subject == "user-1"
    with pytest.raises(InvalidCredential):
        await auth(a, mint(ED, iss=long_iss + "b"))  # same truncated id, not the issuer


@pytest.mark.parametrize(
    "over",
    [
        {"aud": "https://other.example.com"},
        {"exp": T - 1},
        {"nbf": T + 600},
        {"_headers": {"typ": "JWT"}},
    ],
    ids=["audience", "expired", "not-yet-valid", "typ"],
)
async def test_failures_are_401_invalid_token(over: dict[str, Any]) -> None:
    a = authenticator(JwtIssuer(ISS, AUD, StaticKeys(ED.keyset()), typ="at+jwt"))
    assert (await auth(a, mint(ED, _headers={"typ": "at+jwt"}))).subject == "user-1"
    with pytest.raises(InvalidCredential) as caught:
        await auth(a, mint(ED, **{"_headers": {"typ": "at+jwt"}, **over}))
    err = caught.value
    assert err.status == 401 and err.error == "invalid_token"
    assert a.challenge(err) == 'Bearer realm="restguard", error="invalid_token"'
    assert a.challenge(None) == 'Bearer realm="restguard"'


async def test_an_algorithm_the_issuer_does_not_allow_is_refused() -> None:
    keys = StaticKeys(KeySet([ED.verification_key(), RSA.verification_key()]))
    a = authenticator(JwtIssuer(ISS, AUD, keys, algorithms=frozenset({"EdDSA"})))
    assert (await auth(a, mint(ED))).subject == "user-1"
    with pytest.raises(InvalidCredential):
        await auth(a, mint(RSA))


def test_issuer_settings_are_checked() -> None:
    keys = StaticKeys(ED.keyset())
    for bad in (
        {"algorithms": frozenset({"HS256"})},
        {"algorithms": frozenset()},
        {"scope_claim": "roles"},
        {"leeway": 3600},
    ):
        with pytest.raises(ValueError):
            JwtIssuer(ISS, AUD, keys, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        JwtAuthenticator([JwtIssuer(ISS, AUD, keys), JwtIssuer(ISS, "other", keys)], FixedClock())


# --- keys from a JWKS cache -----------------------------------------------------------------------


class Fetcher:
    def __init__(self, keys: KeySet) -> None:
        self.keys, self.calls, self.down = keys, 0, False

    async def __call__(self) -> FetchedJWKS:
        self.calls += 1
        if self.down:
            raise JWKSFetchError("connection refused")
        return FetchedJWKS(self.keys, "max-age=600")


def cached(clock: FixedClock, fetcher: Fetcher) -> JwtAuthenticator:
    source = JWKSCache("https://tenant.example.com/jwks", clock=clock, fetcher=fetcher)
    return JwtAuthenticator([JwtIssuer(ISS, AUD, source)], clock)


async def test_an_unknown_kid_refreshes_the_source_once_then_verifies() -> None:
    clock, fetcher = FixedClock(T0), Fetcher(ED.keyset())
    a = cached(clock, fetcher)
    assert (await auth(a, mint(ED))).subject == "user-1"
    assert fetcher.calls == 1
    fetcher.keys = KeySet([ED.verification_key(), EC.verification_key()])  # the issuer rotates
    clock.advance(5)  # past the kid-miss cooldown
    assert (await auth(a, mint(EC))).subject == "user-1"
    assert fetcher.calls == 2
    assert (await auth(a, mint(EC))).subject == "user-1"
    assert (await auth(a, mint(ED))).subject == "user-1"
    assert fetcher.calls == 2


async def test_a_kid_the_issuer_does_not_have_is_invalid_after_one_fetch() -> None:
    clock, fetcher = FixedClock(T0), Fetcher(ED.keyset())
    a = cached(clock, fetcher)
    await auth(a, mint(ED))
    clock.advance(5)
    for _ in range(3):  # a flood of unknown kids costs one fetch per cooldown
        with pytest.raises(InvalidCredential):
            await auth(a, mint(RSA))
    assert fetcher.calls == 2


async def test_source_down_without_keys_is_backend_unavailable() -> None:
    clock, fetcher = FixedClock(T0), Fetcher(ED.keyset())
    fetcher.down = True
    with pytest.raises(BackendUnavailable) as caught:
        await auth(cached(clock, fetcher), mint(ED))
    assert caught.value.status == 503


async def test_source_down_past_max_stale_fails_closed() -> None:
    clock, fetcher = FixedClock(T0), Fetcher(ED.keyset())
    a = cached(clock, fetcher)
    await auth(a, mint(ED))
    fetcher.down = True
    clock.advance(2 * 86400)
    with pytest.raises(BackendUnavailable):
        await auth(a, mint(ED, exp=T + 3 * 86400), now=clock.now())


async def test_the_verifier_is_rebuilt_only_when_the_key_set_changes() -> None:
    keys = StaticKeys(ED.keyset())
    a = authenticator(JwtIssuer(ISS, AUD, keys))
    await auth(a, mint(ED))
    verifier = a._issuers[issuer_id(ISS)].verifier
    await auth(a, mint(ED))
    assert a._issuers[issuer_id(ISS)].verifier is verifier
    keys.keys = KeySet([ED.verification_key(), EC.verification_key()])
    await auth(a, mint(EC))
    assert a._issuers[issuer_id(ISS)].verifier is not verifier


# --- verified tokens remembered -------------------------------------------------------------------


async def test_a_remembered_token_skips_the_signature_check_but_not_its_expiry() -> None:
    keys = StaticKeys(ED.keyset())
    a = authenticator(JwtIssuer(ISS, AUD, keys, leeway=5))
    token = mint(ED, exp=T + 30)
    first = await auth(a, token)
    assert await auth(a, token) is first  # remembered: the same principal, not verified again
    clock_now = T0 + timedelta(seconds=34)  # exp + leeway - 1: still valid
    assert (await auth(a, token, now=clock_now)).subject == "user-1"
    with pytest.raises(InvalidCredential):  # exp + leeway: expired, as the verifier says
        await auth(a, token, now=T0 + timedelta(seconds=35))


async def test_a_remembered_token_is_verified_again_when_the_keys_change() -> None:
    keys = StaticKeys(KeySet([ED.verification_key(), EC.verification_key()]))
    a = authenticator(JwtIssuer(ISS, AUD, keys))
    token = mint(EC)
    await auth(a, token)
    keys.keys = ED.keyset()  # the issuer withdrew the EC key (say, it leaked)
    with pytest.raises(InvalidCredential):
        await auth(a, token)


async def test_a_remembered_token_is_forgotten_with_its_issuer() -> None:
    a = authenticator()
    token = mint(ED)
    await auth(a, token)
    a.set_issuers([])
    with pytest.raises(InvalidCredential):
        await auth(a, token)


async def test_a_remembered_token_still_asks_its_key_source_so_outages_fail_closed() -> None:
    clock, fetcher = FixedClock(T0), Fetcher(ED.keyset())
    a = cached(clock, fetcher)
    token = mint(ED, exp=T + 3 * 86400)
    await auth(a, token)
    fetcher.down = True
    clock.advance(2 * 86400)  # past max-stale
    with pytest.raises(BackendUnavailable):
        await auth(a, token, now=clock.now())


async def test_a_remembered_token_starts_the_refresh_that_is_due_and_obeys_its_keys() -> None:
    """The remembered path asks no kid lookup, but keeps what it did: a JWKS refresh that has
    come due starts in the background, and once the issuer has withdrawn the key the token
    is verified again (and refused)."""
    clock, fetcher = FixedClock(T0), Fetcher(KeySet([ED.verification_key(), EC.verification_key()]))
    a = cached(clock, fetcher)
    token = mint(EC, exp=T + 3600)
    first = await auth(a, token)
    assert fetcher.calls == 1
    soon = T0 + timedelta(seconds=30)  # (the token is remembered up to VERIFIED_TTL)
    clock.advance(30)
    assert await auth(a, token, now=soon) is first  # fresh keys: no fetch
    assert fetcher.calls == 1
    fetcher.keys = ED.keyset()  # the issuer withdrew the EC key
    clock.advance(900)  # (the JWKS clock) past max-age=600: a refresh is due, keys usable
    assert await auth(a, token, now=soon) is first  # served, and the refresh begins
    for _ in range(5):
        await asyncio.sleep(0)
    assert fetcher.calls == 2
    with pytest.raises(InvalidCredential):
        await auth(a, token, now=soon)


async def test_only_tokens_that_passed_are_remembered() -> None:
    a = authenticator()
    bad = mint(ED, aud="https://other.example")
    for _ in range(2):
        with pytest.raises(InvalidCredential):
            await auth(a, bad)
    assert a._verified == {}


# --- the guard: one Bearer header, two authenticators ---------------------------------------------


def _route(path: str, **fields: object) -> Route:
    segments, subtree = compile_pattern(path)
    return Route(0, path, frozenset({"GET"}), _segments=segments, _subtree=subtree, **fields)  # type: ignore[arg-type]


async def test_guard_sends_each_bearer_token_to_its_authenticator() -> None:
    clock, store = FixedClock(T0), FakeApiKeyStore()
    guard = Guard(
        Policy([_route("/notes/**", scopes=("notes:read",))]),
        {
            "api_key": ApiKeyAuthenticator(store, clock),
            "jwt": JwtAuthenticator([JwtIssuer(ISS, AUD, StaticKeys(ED.keyset()))], clock),
        },
        clock,
        MemoryRateLimiter(),
    )
    record, key = store.add("notes:read", name="svc")

    async def decide(value: str) -> Any:
        headers = ((b"authorization", value.encode()),)
        return await guard.decide(RequestView("GET", "/notes/1", b"", headers, "192.0.2.1"))

    by_key = await decide("Bearer " + key)
    assert by_key.principal.auth_method == "api_key"
    assert by_key.principal.client_id == record.id
    by_jwt = await decide("Bearer " + mint(ED, scope="notes:read"))
    assert by_jwt.principal.auth_method == "jwt"
    assert by_jwt.principal.subject == "user-1"
    assert by_jwt.credential_headers == (b"authorization",)
    with pytest.raises(InvalidCredential) as caught:
        await decide("Bearer " + mint(ED, aud="https://other.example.com", scope="notes:read"))
    assert 'Bearer realm="restguard", error="invalid_token"' in caught.value.challenges


def test_credential_repr_never_shows_the_token() -> None:
    token = mint(ED)
    assert token not in repr(Credential("jwt", token, issuer_id(ISS), (b"authorization",)))
