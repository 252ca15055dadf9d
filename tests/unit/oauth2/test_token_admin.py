"""oauth2/token_admin.py: revocation (RFC 7009) and introspection (RFC 7662) with the oauth2
authenticator as the one reader of tokens, and the revocation list it checks."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from restguard.clock import FixedClock
from restguard.credentials.base import AuthContext, Credential
from restguard.credentials.oauth2 import OAuth2Authenticator, RevocationList
from restguard.errors import BackendUnavailable, InvalidCredential
from restguard.keys.hashing import token_digest
from restguard.keys.jws_sign import PrivateSigningKey
from restguard.keys.signing import LiveKey, SigningKeys
from restguard.oauth2.access_tokens import AccessTokens
from restguard.oauth2.clients import new_client_id, new_client_secret
from restguard.oauth2.http import EndpointRequest
from restguard.oauth2.server import Server
from restguard.store.ports import OAuthClientRecord
from tests.unit.fakes import T0, FakeRevokedTokenStore, server_parts
from tests.unit.oauth2.test_token_endpoint import basic

ISSUER = "http://127.0.0.1:8080"
CLOCK = FixedClock(T0)
KEY = PrivateSigningKey.generate("k1", "EdDSA")
FORM = (b"content-type", b"application/x-www-form-urlencoded")


class Ring:
    current = SigningKeys([LiveKey("k1", KEY, KEY.public_jwk(), T0)])


class Clients:
    def __init__(self) -> None:
        self.records: dict[str, OAuthClientRecord] = {}

    async def get(self, client_id: str) -> OAuthClientRecord | None:
        return self.records.get(client_id)

    def add(self, *scopes: str, public: bool = False) -> tuple[OAuthClientRecord, str]:
        secret = new_client_secret()
        record = OAuthClientRecord(
            new_client_id(),
            "svc",
            None if public else token_digest(secret),
            ("client_credentials",),
            (),
            scopes or ("a",),
            "jwt",
            T0,
        )
        self.records[record.client_id] = record
        return record, secret


Revoked = FakeRevokedTokenStore


class Env:
    def __init__(self) -> None:
        self.clients, self.revoked = Clients(), Revoked()
        self.revocations = RevocationList(self.revoked, CLOCK)
        self.auth = OAuth2Authenticator(
            Ring(),
            self.clients,
            CLOCK,
            issuer=ISSUER,
            audience=ISSUER,
            revocations=self.revocations,
        )
        self.tokens = AccessTokens(Ring.current, ISSUER, ISSUER, CLOCK)
        self.server = Server(
            server_parts(ISSUER, self.clients, self.tokens, CLOCK, self.auth, self.revoked)
        )

    def token(self, client: OAuthClientRecord) -> str:
        return self.tokens.issue(
            client_id=client.client_id, subject=client.client_id, scopes=client.scopes
        ).access_token

    async def accepted(self, token: str) -> bool:
        try:
            await self.auth.authenticate(Credential("oauth2", token, "x", ()), AuthContext(T0, "c"))
        except InvalidCredential:
            return False
        return True


def post(form: dict[str, str], *headers: tuple[bytes, bytes]) -> EndpointRequest:
    return EndpointRequest("POST", "/", (FORM, *headers), urlencode(form).encode(), client="c")


@pytest.fixture
async def env() -> Env:
    e = Env()
    await e.revocations.refresh()
    return e


async def test_a_client_revokes_its_token_everywhere_at_once(env: Env) -> None:
    client, secret = env.clients.add()
    token = env.token(client)
    assert await env.accepted(token)
    response = await env.server.revoke(post({"token": token}, basic(client.client_id, secret)))
    assert (response.status, response.body) == (200, b"")
    assert dict(response.headers)[b"cache-control"] == b"no-store"
    assert not await env.accepted(token)  # this process: at once
    other = Env()  # another instance on the same store: at its next read
    other.revoked = env.revoked
    other.revocations = RevocationList(env.revoked, CLOCK)
    other.auth._revocations = other.revocations
    await other.revocations.refresh()
    assert not await other.accepted(token)
    again = await env.server.revoke(post({"token": token}, basic(client.client_id, secret)))
    assert again.status == 200  # RFC 7009 §2.2: an invalid token is no error


async def test_revocation_refuses_another_clients_token_and_ignores_junk(env: Env) -> None:
    a, a_secret = env.clients.add()
    b, _ = env.clients.add()
    token_b = env.token(b)
    refused = await env.server.revoke(post({"token": token_b}, basic(a.client_id, a_secret)))
    assert refused.status == 400 and json.loads(refused.body)["error"] == "unauthorized_client"
    assert await env.accepted(token_b)
    junk = await env.server.revoke(post({"token": "x.y.z"}, basic(a.client_id, a_secret)))
    assert junk.status == 200
    missing = await env.server.revoke(post({}, basic(a.client_id, a_secret)))
    assert json.loads(missing.body)["error"] == "invalid_request"
    anonymous = await env.server.revoke(post({"token": token_b}))
    assert anonymous.status == 401


async def test_introspection_of_own_tokens_and_with_the_introspect_scope(env: Env) -> None:
    a, a_secret = env.clients.add("a", "b")
    b, b_secret = env.clients.add("x")
    rs, rs_secret = env.clients.add("restguard:introspect")
    token = env.token(a)

    async def introspect(client: OAuthClientRecord, secret: str, tok: str) -> dict[str, Any]:
        response = await env.server.introspect(
            post({"token": tok, "token_type_hint": "access_token"}, basic(client.client_id, secret))
        )
        assert response.status == 200
        assert dict(response.headers)[b"cache-control"] == b"no-store"
        return dict(json.loads(response.body))

    own = await introspect(a, a_secret, token)
    assert own["active"] is True and own["client_id"] == a.client_id
    assert own["scope"] == "a b" and own["token_type"] == "Bearer" and own["iss"] == ISSUER
    assert own["exp"] - own["iat"] == 900 and own["jti"]
    assert await introspect(b, b_secret, token) == {"active": False}  # RFC 7662 §4
    assert (await introspect(rs, rs_secret, token))["active"] is True
    assert await introspect(a, a_secret, "x.y.z") == {"active": False}
    await env.server.revoke(post({"token": token}, basic(a.client_id, a_secret)))
    assert await introspect(rs, rs_secret, token) == {"active": False}


async def test_introspection_is_for_confidential_clients(env: Env) -> None:
    public, _ = env.clients.add(public=True)
    response = await env.server.introspect(post({"token": "x", "client_id": public.client_id}))
    assert response.status == 401 and json.loads(response.body)["error"] == "invalid_client"


async def test_revocations_unknown_until_read_then_kept_through_an_outage() -> None:
    env = Env()
    client, _ = env.clients.add()
    token = env.token(client)
    with pytest.raises(BackendUnavailable):  # nothing read yet: fail closed
        await env.accepted(token)
    await env.revocations.refresh()
    assert await env.accepted(token)
    env.revoked.rows["gone"] = T0 + timedelta(hours=1)
    env.revoked.down = True
    with pytest.raises(BackendUnavailable):
        await env.revocations.refresh()
    assert await env.accepted(token)  # the last list stays in force
