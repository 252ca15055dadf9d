"""Attack review of issue 9's first step: the machine-to-machine OAuth 2.0 token endpoint
(``POST /oauth2/token``, client credentials), the metadata document, and the ``oauth2``
credential method that verifies restguard's own access tokens at the gateway.

Findings are ``xfail(strict=True)`` with ``FINDING:`` reasons; everything else is what held.
Everything goes through the real gateway on raw sockets (tests/attacks/wire.py), except where a
token must be signed with restguard's own keys: those are unsealed from the gateway's data
directory with its master key (as another instance sharing the data directory could).

Closing note (a harness caveat, not a product finding): this module first ran
``restguard signing-key rotate`` as a subprocess next to the in-thread ``GatewayProcess`` after
the test process had itself opened the SQLite store (``open_store`` -> ``engine.own_only``, an
``os.open``/``os.close`` of the database file). Closing any descriptor of that file drops every
POSIX lock the process holds on it (SQLite's documented hazard), so the CLI process believed
it was alone, checkpointed and deleted ``-wal``/``-shm``, and the gateway then refused valid
clients (401) and answered 503. ``restguard serve`` never opens a second engine while running, so
production is not exposed; tests that mix an in-process gateway with a CLI subprocess are.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import jwt as pyjwt
import pytest
from click.testing import CliRunner

from restguard.cli.main import cli
from restguard.clock import SystemClock
from restguard.keys.sealing import open_sealer
from restguard.keys.signing import SigningKeys, load_signing_keys
from restguard.oauth2.clients import new_client
from restguard.store.sql import open_store
from tests.attacks.sockets import connect, read, send_from
from tests.attacks.wire import (
    Response,
    assert_json_error,
    chunked,
    exchange,
    request,
    send,
)
from tests.harness import GatewayProcess, RecordingUpstream
from tests.jwt_support import Signer, b64, bearer, mint_raw, part, wait_until

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["oauth2"]

[[routes]]
path = "/admin/**"
methods = ["GET"]
scopes = ["notes:admin"]
auth = ["oauth2"]

[[routes]]
path = "/jwtonly/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["jwt"]

[[routes]]
path = "/keyonly/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["api_key"]

[[routes]]
path = "/any/**"
methods = ["GET"]
scopes = ["notes:read"]
"""
TOKEN = b"/oauth2/token"
FORM_CT = (b"Content-Type", b"application/x-www-form-urlencoded")


# --- helpers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OClient:
    id: str
    secret: str | None


def make_client(
    gw: GatewayProcess,
    *scopes: str,
    grants: tuple[str, ...] = ("client_credentials",),
    public: bool = False,
    redirect_uris: tuple[str, ...] = (),
) -> OClient:
    record, secret = new_client(
        name="svc",
        scopes=scopes,
        grants=grants,
        redirect_uris=redirect_uris,
        public=public,
        token_format="jwt",
        now=datetime.now(UTC),
    )

    async def insert() -> None:
        store = open_store(gw.settings.database_url)
        try:
            await store.oauth2_clients.insert(record)
        finally:
            store.close()

    asyncio.run(insert())
    return OClient(record.client_id, secret)


def revoke_client(gw: GatewayProcess, client_id: str) -> None:
    async def revoke() -> None:
        store = open_store(gw.settings.database_url)
        try:
            await store.oauth2_clients.revoke(client_id, datetime.now(UTC))
        finally:
            store.close()

    asyncio.run(revoke())


def restguard_keys(gw: GatewayProcess) -> SigningKeys:
    """restguard's live signing keys, unsealed from the gateway's data directory."""

    async def load() -> SigningKeys:
        store = open_store(gw.settings.database_url)
        try:
            return await load_signing_keys(
                store.signing_keys, open_sealer(gw.settings.master_key_path), SystemClock()
            )
        finally:
            store.close()

    return asyncio.run(load())


def basic(client_id: str, secret: str, *, encode: bool = True) -> tuple[bytes, bytes]:
    """``client_secret_basic`` (RFC 6749 §2.3.1: each form-encoded, then Basic)."""
    if encode:
        client_id, secret = quote(client_id, safe=""), quote(secret, safe="")
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return (b"Authorization", b"Basic " + raw.encode())


def token_request(
    body: bytes | str | dict[str, str],
    *headers: tuple[bytes, bytes],
    content_type: bytes | None = b"application/x-www-form-urlencoded",
    target: bytes = TOKEN,
    method: bytes = b"POST",
) -> bytes:
    if isinstance(body, dict):
        body = urlencode(body)
    if isinstance(body, str):
        body = body.encode()
    extra = [(b"Content-Type", content_type)] if content_type is not None else []
    return request(
        target,
        *extra,
        *headers,
        (b"Content-Length", str(len(body)).encode()),
        method=method,
        body=body,
    )


def post_token(gw: GatewayProcess, data: bytes) -> Response:
    return send(gw.port, data)


def fetch_token(gw: GatewayProcess, client: OClient, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    assert client.secret is not None
    r = post_token(gw, token_request(form, basic(client.id, client.secret)))
    assert r.status == 200, r.body
    return str(r.json()["access_token"])


def get(gw: GatewayProcess, path: bytes, *headers: tuple[bytes, bytes]) -> Response:
    return send(gw.port, request(path, *headers))


def claims(issuer: str, audience: str | list[str], client_id: str, **over: Any) -> dict[str, Any]:
    t = int(time.time())
    base = {
        "iss": issuer,
        "aud": audience,
        "sub": client_id,
        "client_id": client_id,
        "scope": "notes:read notes:admin",
        "iat": t,
        "exp": t + 300,
        "jti": "x",
    }
    base.update(over)
    return base


def assert_token_error(r: Response, status: int, error: str) -> dict[str, Any]:
    body = assert_json_error(r, status, error)
    assert r.header("cache-control") == "no-store", r.headers
    return body


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("o2attack") / "gw",
        upstream,
        routes=ROUTES,
        extra={
            "server.failed_attempts": '"100000/minute"',
            "server.client_body_timeout": '"1s"',
        },
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def svc(gw: GatewayProcess) -> OClient:
    return make_client(gw, "notes:read", "notes:write")


@pytest.fixture(scope="module")
def token(gw: GatewayProcess, svc: OClient) -> str:
    return fetch_token(gw, svc)


# === token confusion at the gateway ==============================================================


def test_a_genuine_token_works_and_identifies_the_client(
    gw: GatewayProcess, svc: OClient, token: str
) -> None:
    r = get(gw, b"/notes/1", bearer(token))
    assert r.status == 200, r.body
    seen = gw.upstream.last()
    assert seen.header("x-restguard-client-id") == svc.id
    assert seen.header("authorization") is None


def test_the_identity_token_is_not_an_access_token(gw: GatewayProcess, token: str) -> None:
    """The X-Restguard-Identity the upstream receives (same keys, same iss) replayed as a
    Bearer token: typ JWT and no aud, refused by the oauth2 method."""
    assert get(gw, b"/notes/1", bearer(token)).status == 200
    identity = gw.upstream.last().header("x-restguard-identity")
    assert identity
    assert pyjwt.get_unverified_header(identity)["typ"] == "JWT"
    for path in (b"/notes/1", b"/any/1", b"/jwtonly/1"):
        r = get(gw, path, bearer(identity))
        assert_json_error(r, 401)


def test_an_access_token_fails_the_documented_identity_check(
    gw: GatewayProcess, token: str
) -> None:
    """Reverse confusion: an access token sent straight to the upstream as X-Restguard-Identity.
    The README's PyJWT recipe (issuer checked, no audience) refuses it because of its ``aud``."""
    jwks = json.loads(get(gw, b"/.well-known/jwks.json").body)
    kid = pyjwt.get_unverified_header(token)["kid"]
    key = pyjwt.PyJWK({k: v for k, v in next(k for k in jwks["keys"] if k["kid"] == kid).items()})
    with pytest.raises(pyjwt.InvalidAudienceError):
        pyjwt.decode(
            token,
            key.key,
            algorithms=["EdDSA", "ES256", "RS256"],
            issuer=gw.settings.server.public_url,
        )


def test_restguard_signed_tokens_for_another_audience_or_type_are_refused(
    gw: GatewayProcess, svc: OClient
) -> None:
    """Tokens signed with restguard's real key (another instance sharing the data directory
    with a different public_url, or any other JWT restguard might sign)."""
    keys = restguard_keys(gw)
    own = gw.settings.server.public_url
    bad = {
        "other aud": keys.sign(claims(own, "http://other.example", svc.id), "at+jwt"),
        "aud list without us": keys.sign(claims(own, ["http://other.example"], svc.id), "at+jwt"),
        "other iss, our aud": keys.sign(claims("http://other.example", own, svc.id), "at+jwt"),
        "typ JWT": keys.sign(claims(own, own, svc.id), "JWT"),
        "typ missing-ish": keys.sign(claims(own, own, svc.id), "jwt"),
        "expired": keys.sign(claims(own, own, svc.id, exp=int(time.time()) - 1), "at+jwt"),
        "unknown client": keys.sign(claims(own, own, "rg_ci_nobodynobodynob"), "at+jwt"),
        "no client_id": keys.sign(
            {k: v for k, v in claims(own, own, svc.id).items() if k != "client_id"}, "at+jwt"
        ),
        "no aud": keys.sign(
            {k: v for k, v in claims(own, own, svc.id).items() if k != "aud"}, "at+jwt"
        ),
    }
    for name, forged in bad.items():
        for path in (b"/notes/1", b"/any/1"):
            r = get(gw, path, bearer(forged))
            assert r.status == 401, (name, path, r.status, r.body)
    # and the control: the same key, right type and audience, is accepted
    good = keys.sign(claims(own, own, svc.id, scope="notes:read"), "application/at+jwt")
    assert get(gw, b"/notes/1", bearer(good)).status == 200


def test_alg_and_kid_games_on_own_tokens(gw: GatewayProcess, svc: OClient, token: str) -> None:
    own = gw.settings.server.public_url
    real = pyjwt.get_unverified_header(token)
    attacker = Signer.generate("EdDSA", real["kid"])
    body = claims(own, own, svc.id)
    jwks = json.loads(get(gw, b"/.well-known/jwks.json").body)
    pub_x = next(k for k in jwks["keys"] if k["kid"] == real["kid"]).get("x", "").encode()
    head_hs = part({"alg": "HS256", "typ": "at+jwt", "kid": real["kid"]}) + "." + part(body)
    hs = head_hs + "." + b64(hmac.new(pub_x, head_hs.encode(), hashlib.sha256).digest())
    forged = {
        "attacker key, real kid": mint_raw(attacker, body, typ="at+jwt"),
        "alg none": part({"alg": "none", "typ": "at+jwt", "kid": real["kid"]})
        + "."
        + part(body)
        + ".AA",
        "HS256 with the public key": hs,
        "embedded jwk": mint_raw(attacker, body, typ="at+jwt", jwk=attacker.jwk()),
        "jku": mint_raw(attacker, body, typ="at+jwt", jku="http://127.0.0.1:1/jwks"),
        "no kid": mint_raw(attacker, body, {"alg": "EdDSA", "typ": "at+jwt"}),
        "payload swapped under a real signature": token.split(".")[0]
        + "."
        + part(body)
        + "."
        + token.split(".")[2],
        "header swapped (ES256) under a real signature": part({**real, "alg": "ES256"})
        + "."
        + ".".join(token.split(".")[1:]),
    }
    for name, bad in forged.items():
        r = get(gw, b"/admin/1", bearer(bad))
        assert r.status == 401, (name, r.status, r.body)
        r = get(gw, b"/notes/1", bearer(bad))
        assert r.status == 401, (name, r.status, r.body)


def test_method_separation(gw: GatewayProcess, token: str) -> None:
    """An access token on routes that accept only jwt or only api_key; its scope limits."""
    for path in (b"/jwtonly/1", b"/keyonly/1"):
        r = get(gw, path, bearer(token))
        assert_json_error(r, 401)
    assert_json_error(get(gw, b"/admin/1", bearer(token)), 403, "insufficient_scope")
    # an rg_at_ opaque-looking token is refused, not passed to another method
    assert_json_error(get(gw, b"/any/1", bearer("rg_at_" + "a" * 40)), 401)
    assert gw.upstream.requests == []


def test_a_revoked_clients_tokens_die_and_fresh_ones_are_refused(gw: GatewayProcess) -> None:
    victim = make_client(gw, "notes:read")
    tok = fetch_token(gw, victim)
    assert get(gw, b"/notes/1", bearer(tok)).status == 200
    revoke_client(gw, victim.id)
    took = wait_until(lambda: get(gw, b"/notes/1", bearer(tok)).status == 401, timeout=3)
    assert took <= 1.5
    assert victim.secret is not None
    r = post_token(
        gw, token_request({"grant_type": "client_credentials"}, basic(victim.id, victim.secret))
    )
    assert_token_error(r, 401, "invalid_client")


# === the token endpoint: client authentication ===================================================


def test_basic_with_form_encoded_id_and_secret(gw: GatewayProcess, svc: OClient) -> None:
    """RFC 6749 §2.3.1: the id and secret are form-encoded before Basic; every character
    percent-encoded still authenticates, and '+' is a space (so a literal id does not)."""
    assert svc.secret is not None
    every = "".join(f"%{b:02X}" for b in svc.id.encode())
    r = post_token(
        gw,
        token_request({"grant_type": "client_credentials"}, basic(every, svc.secret, encode=False)),
    )
    assert r.status == 200, r.body
    # a '+' in an id is a space after decoding: no such client
    r = post_token(
        gw,
        token_request(
            {"grant_type": "client_credentials"},
            basic(svc.id.replace("_", "+"), svc.secret, encode=False),
        ),
    )
    assert_token_error(r, 401, "invalid_client")
    assert r.header("www-authenticate") is not None


@pytest.mark.parametrize(
    "value",
    [
        b"Basic {b}garbage",
        b"Basic {b} garbage",
        b"Basic {b}\tx",
        b"Basic\t{b}",
        b"Bearer {b}",
        b"Basic {b}, Basic {b}",
    ],
)
def test_basic_with_trailing_garbage_is_never_a_token(
    gw: GatewayProcess, svc: OClient, value: bytes
) -> None:
    assert svc.secret is not None
    good = basic(svc.id, svc.secret)[1].split(b" ", 1)[1]
    r = post_token(
        gw,
        token_request(
            {"grant_type": "client_credentials"}, (b"Authorization", value.replace(b"{b}", good))
        ),
    )
    assert r.status in (400, 401), (value, r.status, r.body)
    assert "access_token" not in r.body.decode()


def test_secret_with_extra_colon_unicode_or_long_values(gw: GatewayProcess, svc: OClient) -> None:
    assert svc.secret is not None
    cases = [
        basic(svc.id, svc.secret + ":x", encode=False),
        basic(svc.id, svc.secret + "é"),
        basic(svc.id, svc.secret[:-1] + "\u0130"),
        basic(svc.id + "\u0000", svc.secret),
        basic(svc.id, svc.secret + "a" * 5000),
        basic("a" * 5000, svc.secret),
        basic(svc.id, ""),
        basic("", svc.secret),
        basic(svc.id.upper(), svc.secret),
        basic(svc.id, svc.secret.swapcase()),
    ]
    for header in cases:
        r = post_token(gw, token_request({"grant_type": "client_credentials"}, header))
        assert r.status in (400, 401), (header, r.status, r.body)
        assert "access_token" not in r.body.decode()
    # unicode in Basic that does not decode as UTF-8
    raw = base64.b64encode(svc.id.encode() + b":\xff\xfe")
    r = post_token(
        gw,
        token_request({"grant_type": "client_credentials"}, (b"Authorization", b"Basic " + raw)),
    )
    assert r.status in (400, 401)


def test_two_authentication_methods_and_repeated_parameters(
    gw: GatewayProcess, svc: OClient
) -> None:
    assert svc.secret is not None
    b = basic(svc.id, svc.secret)
    cc = "grant_type=client_credentials"
    cases = [
        (f"{cc}&client_id={svc.id}&client_secret={svc.secret}", (b,)),  # Basic and body
        (f"{cc}&client_id=rg_ci_someoneelse00000", (b,)),  # a different id in the body
        (f"{cc}&{cc}&client_id={svc.id}&client_secret={svc.secret}", ()),
        (f"{cc}&client_id={svc.id}&client_id={svc.id}&client_secret={svc.secret}", ()),
        (f"{cc}&client_id={svc.id}&client_secret={svc.secret}&client_secret=x", ()),
        (f"{cc}&client_id={svc.id}&client_secret=x&client_secret={svc.secret}", ()),
        (
            f"grant_type=password&grant%5Ftype=client_credentials&client_id={svc.id}"
            f"&client_secret={svc.secret}",
            (),
        ),
        (f"{cc}&scope=notes:read&scope=notes:write", (b,)),
        (f"{cc}&client_secret={svc.secret}", ()),  # secret without an id
        (cc, (b, b)),  # Authorization repeated
    ]
    for body, headers in cases:
        r = post_token(gw, token_request(body, *headers))
        assert r.status in (400, 401), (body, r.status, r.body)
        assert "access_token" not in r.body.decode()


def test_empty_parameters_are_omitted_not_wildcards(gw: GatewayProcess, svc: OClient) -> None:
    assert svc.secret is not None
    # an empty client_secret is no secret: a confidential client is refused
    r = post_token(
        gw,
        token_request(f"grant_type=client_credentials&client_id={svc.id}&client_secret="),
    )
    assert_token_error(r, 401, "invalid_client")
    r = post_token(gw, token_request(f"grant_type=&client_id={svc.id}&client_secret={svc.secret}"))
    assert_token_error(r, 400, "invalid_request")


def test_public_and_non_cc_clients_get_no_token(gw: GatewayProcess) -> None:
    public = make_client(
        gw,
        "notes:read",
        grants=("authorization_code",),
        public=True,
        redirect_uris=("https://app.example/cb",),
    )
    r = post_token(gw, token_request({"grant_type": "client_credentials", "client_id": public.id}))
    assert r.status in (400, 401) and r.json()["error"] in ("unauthorized_client", "invalid_client")
    r = post_token(
        gw,
        token_request(
            {"grant_type": "client_credentials", "client_id": public.id, "client_secret": "x"}
        ),
    )
    assert_token_error(r, 401, "invalid_client")
    authcode = make_client(
        gw, "notes:read", grants=("authorization_code",), redirect_uris=("https://a.example/cb",)
    )
    assert authcode.secret is not None
    r = post_token(
        gw,
        token_request({"grant_type": "client_credentials"}, basic(authcode.id, authcode.secret)),
    )
    assert_token_error(r, 400, "unauthorized_client")


@pytest.mark.parametrize(
    "grant_type",
    [
        "password",
        "implicit",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "Client_Credentials",
        "client_credentials ",
        "client_credentials\x00",
    ],
)
def test_other_grant_types_are_unsupported(
    gw: GatewayProcess, svc: OClient, grant_type: str
) -> None:
    assert svc.secret is not None
    form = {"grant_type": grant_type, "username": "a", "password": "b", "refresh_token": "x"}
    r = post_token(gw, token_request(form, basic(svc.id, svc.secret)))
    assert_token_error(r, 400, "unsupported_grant_type")


@pytest.mark.parametrize(
    "grant_type",
    ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
)
def test_grants_a_client_is_not_registered_for_are_unauthorized(
    gw: GatewayProcess, svc: OClient, grant_type: str
) -> None:
    # served, but this client was created with client_credentials only (RFC 6749 §5.2)
    assert svc.secret is not None
    form = {"grant_type": grant_type, "code": "x", "refresh_token": "x", "code_verifier": "y"}
    r = post_token(gw, token_request(form, basic(svc.id, svc.secret)))
    assert_token_error(r, 400, "unauthorized_client")


# === scopes =======================================================================================


def test_scope_escalation_and_whitespace_tricks(gw: GatewayProcess, svc: OClient) -> None:
    assert svc.secret is not None
    b = basic(svc.id, svc.secret)
    refused = [
        "notes:admin",
        "notes:read notes:admin",
        "notes:read\tnotes:admin",
        "notes:read\nnotes:admin",
        "notes:read\u00a0notes:admin",
        "notes:read\u3000notes:admin",
        "notes:*",
        "*",
        "notes:read,notes:admin",
        "NOTES:READ",
        "notes:read\x00",
        '"notes:read"',
        " ",
    ]
    for scope in refused:
        r = post_token(gw, token_request({"grant_type": "client_credentials", "scope": scope}, b))
        assert_token_error(r, 400, "invalid_scope")
    r = post_token(
        gw,
        token_request(
            {"grant_type": "client_credentials", "scope": "  notes:read  notes:read "}, b
        ),
    )
    assert r.status == 200 and r.json()["scope"] == "notes:read"
    granted = pyjwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert granted["scope"] == "notes:read"


# === the request itself: content types, bodies, framing, methods =================================


@pytest.mark.parametrize(
    "ct",
    [
        b"application/x-www-form-urlencoded; charset=UTF-8",
        b"APPLICATION/X-WWW-FORM-URLENCODED",
        b"application/x-www-form-urlencoded;charset=utf-8",
    ],
)
def test_content_type_variants_accepted(gw: GatewayProcess, svc: OClient, ct: bytes) -> None:
    assert svc.secret is not None
    r = post_token(
        gw,
        token_request(
            {"grant_type": "client_credentials"}, basic(svc.id, svc.secret), content_type=ct
        ),
    )
    assert r.status == 200, r.body
    assert r.header("cache-control") == "no-store" and r.header("pragma") == "no-cache"


@pytest.mark.parametrize(
    "ct",
    [
        None,
        b"",
        b"application/json",
        b"text/plain",
        b"multipart/form-data; boundary=x",
        b"application/x-www-form-urlencoded-x",
        b"application/x-www-form-urlencoded, application/json",
    ],
)
def test_content_type_variants_refused(gw: GatewayProcess, svc: OClient, ct: bytes | None) -> None:
    assert svc.secret is not None
    body = "grant_type=client_credentials"
    if ct is not None and ct.startswith(b"multipart"):
        body = (
            '--x\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\n'
            "client_credentials\r\n--x--\r\n"
        )
    r = post_token(gw, token_request(body, basic(svc.id, svc.secret), content_type=ct))
    assert r.status == 400, (ct, r.status, r.body)
    assert "access_token" not in r.body.decode()


def test_two_content_type_headers_refused(gw: GatewayProcess, svc: OClient) -> None:
    assert svc.secret is not None
    r = post_token(
        gw,
        token_request(
            "grant_type=client_credentials",
            (b"Content-Type", b"application/json"),
            basic(svc.id, svc.secret),
        ),
    )
    assert r.status == 400


def test_malformed_form_bodies(gw: GatewayProcess, svc: OClient) -> None:
    assert svc.secret is not None
    b = basic(svc.id, svc.secret)
    for body in (
        b"grant_type=client_credentials&&",
        b"grant_type=client_credentials&x",
        b"grant_type=client_credentials&scope=%ff",
        b"grant_type=client_credentials&scope=%zz",
        b"grant_type=client_credentials\xff",
        b"grant_type=client_credentials;scope=notes:admin",
        b"&".join(b"p%d=1" % i for i in range(40)) + b"&grant_type=client_credentials",
    ):
        r = post_token(gw, token_request(body, b))
        assert r.status == 400, (body[:60], r.status, r.body)


def test_chunked_body(gw: GatewayProcess, svc: OClient) -> None:
    assert svc.secret is not None
    body = b"grant_type=client_credentials&scope=notes:read"
    data = request(
        TOKEN,
        FORM_CT,
        basic(svc.id, svc.secret),
        (b"Transfer-Encoding", b"chunked"),
        method=b"POST",
        body=chunked(body, size=5),
    )
    r = post_token(gw, data)
    assert r.status == 200, r.body


def test_body_at_and_over_16_kib(gw: GatewayProcess, svc: OClient) -> None:
    assert svc.secret is not None
    b = basic(svc.id, svc.secret)
    head = b"grant_type=client_credentials&pad="
    at = head + b"a" * (16384 - len(head))
    assert len(at) == 16384
    assert post_token(gw, token_request(at, b)).status == 200
    over = at + b"a"
    assert post_token(gw, token_request(over, b)).status == 413
    # the same over the limit, chunked: 413 at the first byte over, no token
    data = request(
        TOKEN,
        FORM_CT,
        b,
        (b"Transfer-Encoding", b"chunked"),
        method=b"POST",
        body=chunked(over, 4096),
    )
    r = post_token(gw, data)
    assert r.status == 413
    # a declared huge length is refused before any body is sent
    data = request(TOKEN, FORM_CT, b, (b"Content-Length", b"99999999999"), method=b"POST")
    assert send(gw.port, data, timeout=3).status == 413


def test_slowloris_on_the_body_is_cut(gw: GatewayProcess, svc: OClient) -> None:
    """A token request whose body never comes: answered 408 / closed within the body timeout
    (1 s here), never held open."""
    assert svc.secret is not None
    with connect(gw.port, timeout=10) as s:
        s.sendall(
            request(
                TOKEN,
                FORM_CT,
                basic(svc.id, svc.secret),
                (b"Content-Length", b"100"),
                method=b"POST",
            )
            + b"grant_type="
        )
        started = time.monotonic()
        got = read(s, count=1, timeout=8)
        took = time.monotonic() - started
    assert took < 6, took
    assert got.closed or (got.responses and got.responses[0].status == 408), got


def test_pipelining_after_a_token_request(gw: GatewayProcess, svc: OClient) -> None:
    assert svc.secret is not None
    body = b"grant_type=client_credentials"
    first = token_request(body, basic(svc.id, svc.secret))
    second = request(b"/.well-known/jwks.json")
    third = token_request(b"grant_type=client_credentials", basic(svc.id, "wrong"))
    got = exchange(gw.port, first + second + third, responses=3)
    assert [r.status for r in got] == [200, 200, 401]
    assert "keys" in got[1].json()
    # a body longer than Content-Length: the rest is the next request, parsed as such
    smuggle = token_request(b"grant_type=client_credentials", basic(svc.id, svc.secret))
    smuggle = smuggle.replace(b"Content-Length: 29", b"Content-Length: 10")
    got = exchange(gw.port, smuggle + b"\r\n\r\n", responses=2)
    assert got and got[0].status in (400, 401)
    assert all("access_token" not in r.body.decode() for r in got)


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"])
def test_other_methods_are_405(gw: GatewayProcess, svc: OClient, method: bytes) -> None:
    assert svc.secret is not None
    data = token_request(
        {"grant_type": "client_credentials"}, basic(svc.id, svc.secret), method=method
    )
    got = exchange(gw.port, data, head=method == b"HEAD")
    assert got and got[0].status == 405, got
    assert got[0].header("allow") == "POST"
    assert gw.upstream.requests == []


def test_credentials_in_the_query_are_refused_and_never_logged(
    gw: GatewayProcess, svc: OClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert svc.secret is not None
    caplog.set_level(logging.DEBUG)
    q = urlencode(
        {"grant_type": "client_credentials", "client_id": svc.id, "client_secret": svc.secret}
    ).encode()
    for data in (
        token_request(b"", target=TOKEN + b"?" + q),
        token_request(b"grant_type=client_credentials", target=TOKEN + b"?" + q),
        token_request(
            b"grant_type=client_credentials",
            basic(svc.id, svc.secret),
            target=TOKEN + b"?client_secret=" + svc.secret.encode(),
        ),
        request(TOKEN + b"?" + q, method=b"GET"),
    ):
        r = post_token(gw, data)
        assert r.status in (400, 405), r.status
        assert "access_token" not in r.body.decode()
        assert svc.secret not in r.body.decode()
    audit = gw.settings.audit_path
    assert audit is not None
    time.sleep(0.5)
    assert svc.secret not in audit.read_text()
    assert svc.secret not in caplog.text


def test_error_bodies_never_echo_a_secret_or_token(
    gw: GatewayProcess, svc: OClient, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert svc.secret is not None
    caplog.set_level(logging.DEBUG)
    wrong = "rg_cs_" + "Z" * 43
    # the wrong secret as a credential (Basic, body), the real one beside other mistakes
    as_credential = [
        token_request({"grant_type": "client_credentials"}, basic(svc.id, wrong)),
        token_request(
            {"grant_type": "client_credentials", "client_id": svc.id, "client_secret": wrong}
        ),
        token_request(
            {"grant_type": "client_credentials", "client_id": "rg_ci_x", "client_secret": wrong}
        ),
    ]
    beside = [
        token_request({"grant_type": "password"}, basic(svc.id, svc.secret)),
        token_request(
            {"grant_type": "client_credentials", "scope": "notes:admin"}, basic(svc.id, svc.secret)
        ),
        token_request(
            {"grant_type": "client_credentials", "client_id": svc.id, "client_secret": svc.secret},
            basic(svc.id, svc.secret),
        ),
        token_request(
            {"grant_type": "client_credentials"},
            (b"Authorization", b"Bearer " + token.encode()),
        ),
    ]
    for data in as_credential + beside:
        r = post_token(gw, data)
        assert r.status in (400, 401), r.status
        text = r.body.decode() + "".join(v for _, v in r.headers)
        assert svc.secret not in text and token not in text and wrong not in text, text
    r = get(gw, b"/notes/1", bearer(token[:-3] + "AAA"))
    assert r.status == 401 and token[:-3] not in r.body.decode()
    time.sleep(0.5)
    audit = gw.settings.audit_path
    assert audit is not None
    text = audit.read_text()
    assert svc.secret not in text and wrong not in text and token.split(".")[2] not in text
    assert svc.secret not in caplog.text and wrong not in caplog.text
    assert token.split(".")[2] not in caplog.text


def test_missing_client_authentication(gw: GatewayProcess) -> None:
    r = post_token(gw, token_request({"grant_type": "client_credentials"}))
    assert_token_error(r, 401, "invalid_client")
    r = post_token(gw, token_request(b""))
    assert r.status in (400, 401)


def test_response_shape_and_token_claims(gw: GatewayProcess, svc: OClient) -> None:
    assert svc.secret is not None
    r = post_token(
        gw,
        token_request(
            {"grant_type": "client_credentials", "scope": "notes:read"}, basic(svc.id, svc.secret)
        ),
    )
    assert r.status == 200
    assert r.header("cache-control") == "no-store"
    assert r.header("content-type") == "application/json"
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}  # no refresh token
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 3600
    header = pyjwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] in ("EdDSA", "ES256", "RS256")
    c = pyjwt.decode(body["access_token"], options={"verify_signature": False})
    own = gw.settings.server.public_url
    assert c["iss"] == own and c["aud"] == own and c["client_id"] == svc.id
    assert c["exp"] - c["iat"] == body["expires_in"]


def test_metadata_is_accurate(gw: GatewayProcess) -> None:
    r = get(gw, b"/.well-known/oauth-authorization-server")
    assert r.status == 200
    doc = r.json()
    own = gw.settings.server.public_url
    assert doc["issuer"] == own
    assert doc["token_endpoint"] == own + "/oauth2/token"
    assert doc["jwks_uri"] == own + "/.well-known/jwks.json"
    assert doc["grant_types_supported"] == [
        "authorization_code",
        "client_credentials",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    ]
    assert doc["authorization_endpoint"] == own + "/oauth2/authorize"
    assert doc["device_authorization_endpoint"] == own + "/oauth2/device_authorization"
    assert set(doc["token_endpoint_auth_methods_supported"]) <= {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert doc["introspection_endpoint"] == own + "/oauth2/introspect"
    assert doc["revocation_endpoint"] == own + "/oauth2/revoke"
    # nothing advertised that this version does not serve
    for unserved in ("registration_endpoint",):
        assert unserved not in doc
    assert "response_types_supported" in doc  # RFC 8414 §2: REQUIRED
    # the advertised endpoints answer
    assert get(gw, b"/.well-known/jwks.json").status == 200
    assert send(gw.port, request(TOKEN, method=b"GET")).status == 405
    # and metadata is not a POST target
    assert (
        send(gw.port, request(b"/.well-known/oauth-authorization-server", method=b"POST")).status
        == 405
    )


# === brute force and auditing ====================================================================


@pytest.fixture(scope="module")
def locking_gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("o2lock") / "gw",
        upstream,
        routes=ROUTES,
        extra={"server.failed_attempts": '"3/minute"'},
    ).start()
    yield gateway
    gateway.stop()


def test_the_gateways_own_401s_do_lock_out(locking_gw: GatewayProcess) -> None:
    """Control: a bad Bearer token on a protected route counts (429 after 3)."""
    statuses = [
        send_from(locking_gw.port, request(b"/notes/1", bearer("a.b.c")), "127.0.0.5").status
        for _ in range(6)
    ]
    assert 429 in statuses, statuses


def test_failed_client_authentications_count_toward_the_lockout(
    locking_gw: GatewayProcess,
) -> None:
    victim = make_client(locking_gw, "notes:read")
    statuses = []
    for i in range(10):
        data = token_request(
            {"grant_type": "client_credentials"}, basic(victim.id, f"rg_cs_guess{i}")
        )
        statuses.append(send_from(locking_gw.port, data, "127.0.0.6").status)
    assert 429 in statuses, statuses


def test_token_endpoint_failures_share_the_address_counter(locking_gw: GatewayProcess) -> None:
    victim = make_client(locking_gw, "notes:read")
    statuses = []
    for i in range(5):
        data = token_request(
            {"grant_type": "client_credentials"}, basic(victim.id, f"rg_cs_guess{i}")
        )
        statuses.append(send_from(locking_gw.port, data, "127.0.0.7").status)
    assert statuses == [401, 401, 401, 429, 429]  # the limit is 3/minute
    r = send_from(locking_gw.port, request(b"/notes/1", bearer("a.b.c")), "127.0.0.7")
    assert r.status == 429, r.status


def test_a_locked_out_address_does_not_stop_a_valid_client_elsewhere(
    locking_gw: GatewayProcess,
) -> None:
    """The lockout is per address: another address's valid client still gets its token."""
    good = make_client(locking_gw, "notes:read")
    assert good.secret is not None
    for _ in range(6):
        send_from(locking_gw.port, request(b"/notes/1", bearer("a.b.c")), "127.0.0.8")
    data = token_request({"grant_type": "client_credentials"}, basic(good.id, good.secret))
    assert send_from(locking_gw.port, data, "127.0.0.9").status == 200


def test_token_endpoint_decisions_are_audited(gw: GatewayProcess, svc: OClient) -> None:
    assert svc.secret is not None
    before = len(gw.audit_events())
    post_token(gw, token_request({"grant_type": "client_credentials"}, basic(svc.id, "nope")))
    post_token(gw, token_request({"grant_type": "client_credentials"}, basic(svc.id, svc.secret)))
    events = gw.audit_events()[before:]
    paths = [e.get("path") for e in events]
    assert paths.count("/oauth2/token") >= 2, events
    statuses = sorted(int(e["status"]) for e in events if e.get("path") == "/oauth2/token")
    assert statuses == [200, 401], events


def test_secret_check_cost_does_not_depend_on_the_prefix(gw: GatewayProcess, svc: OClient) -> None:
    """Timing, coarse: a secret wrong in its first character and one wrong only in its last
    cost the same (SHA-256 then compare_digest); an unknown client is not dramatically faster
    or slower than a known one (ids are public anyway). Medians of interleaved samples."""
    assert svc.secret is not None
    first = "X" + svc.secret[1:]
    last = svc.secret[:-1] + ("A" if svc.secret[-1] != "A" else "B")
    kinds = {
        "first": basic(svc.id, first),
        "last": basic(svc.id, last),
        "unknown": basic("rg_ci_0000000000000000", last),
    }
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    with connect(gw.port, timeout=5) as s:
        for _ in range(60):
            for name, header in kinds.items():
                data = token_request({"grant_type": "client_credentials"}, header)
                t = time.perf_counter()
                s.sendall(data)
                got = read(s, count=1, timeout=5)
                samples[name].append(time.perf_counter() - t)
                assert got.responses and got.responses[0].status == 401
    med = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
    assert abs(med["first"] - med["last"]) < 0.5 * max(med["first"], med["last"]), med
    assert 0.33 < med["unknown"] / med["last"] < 3, med


def test_a_token_survives_signing_key_rotation(
    gw: GatewayProcess, svc: OClient, token: str
) -> None:
    """The old key stays published (1 h): tokens it signed keep working; new ones use the new
    key. Last in this module."""
    old_kid = pyjwt.get_unverified_header(token)["kid"]
    # In-process, as tests/interop/test_identity_jwks.py does: a `restguard` subprocess next to
    # this in-process gateway loses SQLite's locks (see the module's closing note).
    done = CliRunner().invoke(cli, ["signing-key", "rotate", "--config", str(gw.config), "--json"])
    assert done.exit_code == 0, done.output
    wait_until(lambda: pyjwt.get_unverified_header(fetch_token(gw, svc))["kid"] != old_kid, 6)
    assert get(gw, b"/notes/1", bearer(token)).status == 200
    assert get(gw, b"/notes/1", bearer(fetch_token(gw, svc))).status == 200
