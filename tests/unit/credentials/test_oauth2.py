"""credentials/oauth2.py: restguard's own access tokens — which Bearer tokens it claims, local
verification with the keyring (typ at+jwt, iss, aud, published key), client revocation within a
second, and the guard sending each Bearer token to its method."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from restguard.authz.policy import Policy, Route, compile_pattern
from restguard.authz.ratelimit import MemoryRateLimiter
from restguard.clock import FixedClock
from restguard.credentials.base import AuthContext
from restguard.credentials.jwt import JwtAuthenticator, JwtIssuer, StaticKeys
from restguard.credentials.oauth2 import OAuth2Authenticator
from restguard.errors import InvalidCredential
from restguard.guard import Guard
from restguard.keys.jws_sign import PrivateSigningKey
from restguard.keys.signing import LiveKey, SigningKeys
from restguard.oauth2.access_tokens import AccessTokens
from restguard.store.ports import OAuthClientRecord
from restguard.types import RequestView
from tests.unit.credentials.test_jwt import ISS, mint
from tests.unit.fakes import T0
from tests.unit.keys.jwt_helpers import ED

OWN = "http://127.0.0.1:8080"
KEY = PrivateSigningKey.generate("k1", "EdDSA")
CLIENT = OAuthClientRecord(
    "rg_ci_abc", "svc", b"h", ("client_credentials",), (), ("a", "b"), "jwt", T0
)


class Ring:
    def __init__(self, *keys: LiveKey) -> None:
        self.current = SigningKeys(list(keys) or [LiveKey("k1", KEY, KEY.public_jwk(), T0)])


class Clients:
    def __init__(self) -> None:
        self.records = {CLIENT.client_id: CLIENT}
        self.reads = 0

    async def get(self, client_id: str) -> OAuthClientRecord | None:
        self.reads += 1
        return self.records.get(client_id)


def setup(**over: Any) -> tuple[OAuth2Authenticator, AccessTokens, Clients, Ring]:
    ring, clients, clock = Ring(), Clients(), FixedClock(T0)
    auth = OAuth2Authenticator(ring, clients, clock, issuer=OWN, audience=OWN)
    return auth, AccessTokens(ring.current, OWN, OWN, clock, **over), clients, ring


def bearer(token: str) -> RequestView:
    return RequestView("GET", "/", b"", ((b"authorization", b"Bearer " + token.encode()),), "c")


async def decide(auth: OAuth2Authenticator, token: str, now: Any = T0) -> Any:
    credential = auth.extract(bearer(token))
    assert credential is not None
    return await auth.authenticate(credential, AuthContext(now, "c"))


async def test_a_client_credentials_token_gives_its_client_as_principal() -> None:
    auth, tokens, _, _ = setup()
    token = tokens.issue(client_id="rg_ci_abc", subject="rg_ci_abc", scopes=("a",)).access_token
    credential = auth.extract(bearer(token))
    assert credential is not None and credential.credential_id == "oauth2:rg_ci_abc"
    p = await decide(auth, token)
    assert (p.subject, p.client_id, p.scopes, p.auth_method) == (
        "rg_ci_abc",
        "rg_ci_abc",
        frozenset({"a"}),
        "oauth2",
    )


async def test_other_jwts_restguard_signs_are_not_access_tokens() -> None:
    auth, _, _, ring = setup()
    identity = ring.current.sign({"iss": OWN, "aud": OWN, "sub": "x", "exp": 2**40}, "JWT")
    with pytest.raises(InvalidCredential):  # RFC 9068 §4: typ at+jwt, not JWT
        await decide(auth, identity)


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://other.example"},
        {"exp": int(T0.timestamp()) - 1},
        {"client_id": None},
        {"scope": ["a"]},
        {"scope": "a\u00a0b"},
    ],
)
async def test_claims_out_of_place_are_invalid(claims: dict[str, Any]) -> None:
    auth, _, _, ring = setup()
    body = {
        "iss": OWN,
        "aud": OWN,
        "sub": "rg_ci_abc",
        "client_id": "rg_ci_abc",
        "scope": "a",
        "exp": int(T0.timestamp()) + 60,
    } | claims
    token = ring.current.sign({k: v for k, v in body.items() if v is not None}, "at+jwt")
    with pytest.raises(InvalidCredential):
        await decide(auth, token)


async def test_a_revoked_client_is_refused_within_a_second() -> None:
    auth, tokens, clients, _ = setup()
    token = tokens.issue(client_id="rg_ci_abc", subject="rg_ci_abc", scopes=()).access_token
    await decide(auth, token)
    clients.records["rg_ci_abc"] = dataclasses.replace(CLIENT, revoked_at=T0)
    auth._clients._cache.forget("rg_ci_abc")  # a second later: the record is read again
    with pytest.raises(InvalidCredential):
        await decide(auth, token, T0 + timedelta(seconds=1))


async def test_a_retired_key_verifies_nothing() -> None:
    auth, tokens, _, ring = setup()
    token = tokens.issue(client_id="rg_ci_abc", subject="rg_ci_abc", scopes=()).access_token
    ring.current = SigningKeys([LiveKey("k1", KEY, KEY.public_jwk(), T0, retired_at=T0)])
    with pytest.raises(InvalidCredential):
        await decide(auth, token)


def test_only_own_tokens_are_claimed() -> None:
    auth, _, _, _ = setup()
    assert auth.extract(bearer(mint(ED))) is None  # an external issuer's: jwt's
    assert auth.extract(bearer("not-a-jwt")) is None
    opaque = auth.extract(bearer("rg_at_abc"))  # restguard's opaque form: oauth2's, checked later
    assert opaque is not None and opaque.credential_id == "oauth2:opaque"


async def test_the_guard_sends_each_bearer_token_to_its_method() -> None:
    auth, tokens, _, _ = setup()
    clock = FixedClock(T0)
    jwt = JwtAuthenticator(
        [JwtIssuer(ISS, "https://api.example.com", StaticKeys(ED.keyset()))], clock, own_issuer=OWN
    )
    segments, subtree = compile_pattern("/**")
    route = Route(0, "/**", frozenset({"GET"}), _segments=segments, _subtree=subtree)
    guard = Guard(Policy([route]), {"jwt": jwt, "oauth2": auth}, clock, MemoryRateLimiter())
    own = tokens.issue(client_id="rg_ci_abc", subject="rg_ci_abc", scopes=()).access_token
    assert (await guard.authenticate(bearer(own))).auth_method == "oauth2"
    external = mint(ED, aud="https://api.example.com")
    assert (await guard.authenticate(bearer(external))).auth_method == "jwt"


async def test_a_remembered_token_is_not_verified_again_but_its_client_is_checked() -> None:
    auth, tokens, clients, _ = setup()
    token = tokens.issue(client_id="rg_ci_abc", subject="rg_ci_abc", scopes=("a",)).access_token
    first = await decide(auth, token)
    assert await decide(auth, token) is first  # remembered: the same principal
    clients.records["rg_ci_abc"] = dataclasses.replace(CLIENT, revoked_at=T0)
    auth._clients._cache.forget("rg_ci_abc")
    with pytest.raises(InvalidCredential):  # the client is still checked, within a second
        await decide(auth, token, T0 + timedelta(seconds=1))


async def test_a_remembered_token_follows_its_expiry_and_its_key() -> None:
    auth, tokens, _, ring = setup(lifetime=60)
    token = tokens.issue(client_id="rg_ci_abc", subject="rg_ci_abc", scopes=()).access_token
    await decide(auth, token)
    with pytest.raises(InvalidCredential):  # past exp, as the verifier would say
        await decide(auth, token, T0 + timedelta(seconds=60))
    await decide(auth, token, T0 + timedelta(seconds=59))
    ring.current = SigningKeys([LiveKey("k1", KEY, KEY.public_jwk(), T0, retired_at=T0)])
    with pytest.raises(InvalidCredential):  # a new snapshot: verified again, key retired
        await decide(auth, token)
