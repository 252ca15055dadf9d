"""oauth2/token_endpoint.py and client_auth.py: RFC 6749 §3.2, §2.3, §4.4 and §5 — the client
credentials grant, client authentication, strict parsing and every §5.2 error where it belongs."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote_plus, urlencode

import jwt as pyjwt
import pytest

from restguard.authz.policy import Policy
from restguard.clock import FixedClock
from restguard.credentials.oauth2 import OAuth2Authenticator
from restguard.keys.hashing import token_digest
from restguard.keys.jwk import KeySet
from restguard.keys.jws_sign import PrivateSigningKey
from restguard.keys.jwt_verify import JWTVerifier, Rules
from restguard.keys.signing import LiveKey, SigningKeys
from restguard.oauth2.access_tokens import AccessTokens
from restguard.oauth2.clients import new_client_id, new_client_secret
from restguard.oauth2.http import EndpointRequest
from restguard.oauth2.server import Server
from restguard.store.ports import OAuthClientRecord
from tests.unit.fakes import T0, FakeRevokedTokenStore, server_parts

ISSUER = "http://127.0.0.1:8080"
CLOCK = FixedClock(T0)
KEY = PrivateSigningKey.generate("k1", "ES256")
KEYS = SigningKeys([LiveKey("k1", KEY, KEY.public_jwk(), T0)])


class Clients:
    def __init__(self, *records: OAuthClientRecord) -> None:
        self.records = {r.client_id: r for r in records}

    async def get(self, client_id: str) -> OAuthClientRecord | None:
        return self.records.get(client_id)


def client(public: bool = False, **over: Any) -> tuple[OAuthClientRecord, str]:
    secret = new_client_secret()
    fields: dict[str, Any] = {
        "client_id": new_client_id(),
        "name": "svc",
        "secret_hash": None if public else token_digest(secret),
        "grants": ("client_credentials",),
        "redirect_uris": (),
        "scopes": ("notes:read", "notes:write"),
        "token_format": "jwt",
        "created_at": T0,
    } | over
    return OAuthClientRecord(**fields), secret


CONF, SECRET = client()
PUBLIC, _ = client(public=True, grants=("authorization_code",))
REVOKED, REVOKED_SECRET = client(revoked_at=T0 - timedelta(seconds=1))
NO_CC, NO_CC_SECRET = client(grants=("authorization_code",))


class Ring:
    current = KEYS


def server(clients: Clients, **kwargs: Any) -> Server:
    inspector = OAuth2Authenticator(Ring(), clients, CLOCK, issuer=ISSUER, audience=ISSUER)
    tokens = AccessTokens(KEYS, ISSUER, ISSUER, CLOCK)
    revoked = FakeRevokedTokenStore()
    return Server(server_parts(ISSUER, clients, tokens, CLOCK, inspector, revoked, **kwargs))


SERVER = server(Clients(CONF, PUBLIC, REVOKED, NO_CC))
FORM = (b"content-type", b"application/x-www-form-urlencoded")


def basic(client_id: str, secret: str) -> tuple[bytes, bytes]:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return (b"authorization", b"Basic " + base64.b64encode(raw))


async def post(body: str | bytes, *headers: tuple[bytes, bytes], query: bytes = b"") -> Any:
    data = body.encode() if isinstance(body, str) else body
    request = EndpointRequest("POST", "/oauth2/token", (FORM, *headers), data, query)
    response = await SERVER.token(request)
    headers_ = dict(response.headers)
    assert headers_[b"cache-control"] == b"no-store" and headers_[b"pragma"] == b"no-cache"
    return response.status, json.loads(response.body), headers_


def verify(token: str) -> dict[str, Any]:
    rules = Rules(ISSUER, ISSUER, typ="at+jwt")
    keyset = KeySet.from_jwks({"keys": [KEY.public_jwk()]})
    return dict(JWTVerifier(keyset, rules).verify(token, T0).claims)


async def test_client_credentials_with_basic_gives_an_rfc9068_token() -> None:
    status, body, _ = await post("grant_type=client_credentials", basic(CONF.client_id, SECRET))
    assert status == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["scope"] == "notes:read notes:write"
    claims = verify(body["access_token"])
    assert claims["sub"] == claims["client_id"] == CONF.client_id
    assert claims["iss"] == ISSUER and claims["aud"] == ISSUER
    assert claims["exp"] - claims["iat"] == 900 and claims["jti"]
    assert pyjwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    assert "refresh_token" not in body  # RFC 6749 §4.4.3


async def test_client_secret_post_and_a_scope_subset() -> None:
    form = urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": CONF.client_id,
            "client_secret": SECRET,
            "scope": "notes:read",
        }
    )
    status, body, _ = await post(form)
    assert status == 200 and body["scope"] == "notes:read"
    assert verify(body["access_token"])["scope"] == "notes:read"


CC = "grant_type=client_credentials"
BAD_REQ, BAD_CLIENT, BAD_SCOPE = "invalid_request", "invalid_client", "invalid_scope"
UNSUPPORTED, UNAUTHORIZED = "unsupported_grant_type", "unauthorized_client"


@pytest.mark.parametrize(
    ("form", "headers", "status", "error", "challenge"),
    [
        (CC, (), 401, BAD_CLIENT, False),
        (CC, ("wrong",), 401, BAD_CLIENT, True),  # RFC 6749 §5.2: Basic used, 401 + challenge
        (CC, ("unknown",), 401, BAD_CLIENT, True),
        (CC, ("revoked",), 401, BAD_CLIENT, True),
        (CC + "&client_id=X&client_secret=y", (), 401, BAD_CLIENT, False),
        (CC + "&client_secret=" + SECRET, ("basic",), 400, BAD_REQ, False),  # two methods
        (CC + "&" + CC, ("basic",), 400, BAD_REQ, False),  # §3.2: no parameter twice
        ("client_id=" + CONF.client_id, ("basic",), 400, BAD_REQ, False),
        ("grant_type=password&username=a&password=b", ("basic",), 400, UNSUPPORTED, False),
        ("grant_type=implicit", ("basic",), 400, UNSUPPORTED, False),
        (CC + "&scope=notes:admin", ("basic",), 400, BAD_SCOPE, False),
        (CC + "&scope=notes:read%0Anotes:admin", ("basic",), 400, BAD_SCOPE, False),
        (CC, ("no-cc",), 400, UNAUTHORIZED, False),
        (CC + "&client_id=" + PUBLIC.client_id, (), 400, UNAUTHORIZED, False),  # §4.4
        (CC + "&%zz", ("basic",), 400, BAD_REQ, False),
        (CC + "&x=%ff", ("basic",), 400, BAD_REQ, False),
    ],
)
async def test_errors(
    form: str, headers: tuple[str, ...], status: int, error: str, challenge: bool
) -> None:
    sent = {
        "basic": basic(CONF.client_id, SECRET),
        "wrong": basic(CONF.client_id, SECRET[:-1] + ("A" if SECRET[-1] != "A" else "B")),
        "unknown": basic(new_client_id(), SECRET),
        "revoked": basic(REVOKED.client_id, REVOKED_SECRET),
        "no-cc": basic(NO_CC.client_id, NO_CC_SECRET),
    }
    got_status, body, got_headers = await post(form, *(sent[h] for h in headers))
    assert (got_status, body["error"]) == (status, error), body
    assert set(body) == {"error", "error_description"}
    assert (b"www-authenticate" in got_headers) is challenge
    assert SECRET not in json.dumps(body)


async def test_parameters_only_in_the_body_and_only_as_a_form() -> None:
    status, body, _ = await post(
        "grant_type=client_credentials", basic(CONF.client_id, SECRET), query=b"scope=notes:read"
    )
    assert (status, body["error"]) == (400, "invalid_request")
    request = EndpointRequest(
        "POST",
        "/oauth2/token",
        ((b"content-type", b"application/json"), basic(CONF.client_id, SECRET)),
        b'{"grant_type": "client_credentials"}',
    )
    response = await SERVER.token(request)
    assert response.status == 400 and json.loads(response.body)["error"] == "invalid_request"


async def test_an_empty_value_counts_as_omitted() -> None:
    status, body, _ = await post(
        "grant_type=client_credentials&scope=", basic(CONF.client_id, SECRET)
    )
    assert status == 200 and body["scope"] == "notes:read notes:write"


def test_metadata_names_what_is_served() -> None:
    response = SERVER.metadata()
    doc = json.loads(response.body)
    assert doc["issuer"] == ISSUER
    assert doc["token_endpoint"] == ISSUER + "/oauth2/token"
    assert doc["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert doc["authorization_endpoint"] == ISSUER + "/oauth2/authorize"
    assert doc["grant_types_supported"] == [
        "authorization_code",
        "client_credentials",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    ]
    assert doc["device_authorization_endpoint"] == ISSUER + "/oauth2/device_authorization"
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ]


async def test_failed_client_authentications_count_toward_the_address_limit() -> None:
    """CONTRACT: every 401 counts toward the client address's failed-attempt limit; past it,
    failing attempts get 429, and valid credentials still pass."""
    from restguard.authz.ratelimit import MemoryRateLimiter
    from restguard.errors import RateLimited
    from restguard.guard import Guard

    guard = Guard(Policy([]), {}, CLOCK, MemoryRateLimiter(), failed_attempts=(2, 60.0))
    limited = server(Clients(CONF), failures=guard.failed_attempt)

    async def send(secret: str, client: str = "192.0.2.7") -> int:
        request = EndpointRequest(
            "POST",
            "/oauth2/token",
            (FORM, basic(CONF.client_id, secret)),
            CC.encode(),
            client=client,
        )
        return (await limited.token(request)).status

    assert [await send("wrong"), await send("wrong")] == [401, 401]
    with pytest.raises(RateLimited):
        await send("wrong")
    assert await send(SECRET) == 200  # a valid credential always passes
    assert await send("wrong", client="192.0.2.8") == 401  # per address
