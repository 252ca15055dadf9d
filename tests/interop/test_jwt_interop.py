"""Tokens minted by libraries we did not write (PyJWT, joserfc) pass the real gateway.

Keys are served by a JWKS server on 127.0.0.1 (``tests/jwt_support.py``); the issuers live in the
gateway's database. Covered: what the upstream receives per algorithm and library, scope
enforcement (``scope``, ``scp``, ``permissions``), key rotation at the issuer within the
contract's 5 s, a JWKS endpoint that goes down (cached keys keep working), ``curl`` as the client
and a stock upstream (wsgiref) behind the gateway.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.attacks.wire import request, send
from tests.harness import GatewayProcess, RecordingUpstream
from tests.jwt_support import (
    JWKSServer,
    Signer,
    add_issuer,
    bearer,
    claims_for,
    jwks_of,
    mint_joserfc,
    mint_pyjwt,
    mint_raw,
    wait_until,
)
from tests.stock_upstreams import WsgiRefUpstream

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["jwt"]

[[routes]]
path = "/write/**"
methods = ["GET"]
scopes = ["notes:read", "notes:write"]
auth = ["jwt"]
"""

ISS = "https://idp.example/"
SCP_ISS = "https://okta.example/oauth2/default"
PERM_ISS = "https://tenant.auth0.example/"
AUD = "https://api.example"
ED = Signer.generate("EdDSA", "ed-1")
EC = Signer.generate("ES256", "ec-1")
RS = Signer.generate("RS256", "rs-1")
SCP = Signer.generate("RS256", "okta-1")
PERM = Signer.generate("RS256", "auth0-1")
MINTERS: dict[str, Callable[..., str]] = {"pyjwt": mint_pyjwt, "joserfc": mint_joserfc}

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="the curl binary is not installed")


@pytest.fixture(scope="module")
def jwks() -> Iterator[JWKSServer]:
    server = JWKSServer()
    yield server
    server.stop()


def _live(gw: GatewayProcess, token: str, path: bytes = b"/notes/1") -> float:
    """Wait until the gateway accepts ``token`` (the issuer directory reloads every 0.5 s)."""
    return wait_until(lambda: status(gw, token, path) == 200, timeout=8)


def status(gw: GatewayProcess, token: str, path: bytes = b"/notes/1") -> int:
    return send(gw.port, request(path, bearer(token))).status


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream, jwks: JWKSServer
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("jwt-interop") / "gw",
        upstream,
        routes=ROUTES,
        extra={"failed_attempts": '"100000/minute"'},
    ).start()
    setups: Iterable[tuple[str, str, tuple[Signer, ...], str, dict[str, Any]]] = [
        (ISS, "/idp/jwks", (ED, EC, RS), "scope", {"scope": "notes:read"}),
        (SCP_ISS, "/okta/keys", (SCP,), "scp", {"scope": None, "scp": ["notes:read"]}),
        (PERM_ISS, "/auth0/jwks", (PERM,), "permissions", {"permissions": ["notes:read"]}),
    ]
    for iss, path, signers, claim, extra in setups:
        add_issuer(
            gateway,
            issuer=iss,
            jwks_uri=jwks.serve(path, jwks_of(*signers), cache_control="max-age=600"),
            audience=AUD,
            scope_claim=claim,
        )
        for signer in signers:
            _live(gateway, mint_raw(signer, claims_for(iss, AUD, **extra)))
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: RecordingUpstream) -> None:
    upstream.clear()


def claims(iss: str = ISS, **over: Any) -> dict[str, Any]:
    return {k: v for k, v in claims_for(iss, AUD, **over).items() if v is not None}


def forwarded(gw: GatewayProcess, token: str, path: bytes = b"/notes/1") -> Any:
    before = len(gw.upstream.requests)
    response = send(gw.port, request(path, bearer(token)))
    assert response.status == 200, (response.status, response.body)
    got = gw.upstream.requests[before:]
    assert len(got) == 1
    return got[0]


# --- what the upstream receives, per library and algorithm ---


@pytest.mark.parametrize("signer", [ED, EC, RS], ids=lambda s: s.alg)
@pytest.mark.parametrize("library", list(MINTERS))
def test_library_minted_token_passes(gw: GatewayProcess, library: str, signer: Signer) -> None:
    token = MINTERS[library](
        signer, claims(sub=f"{library}-user", client_id="app-7", scope="notes:read notes:extra")
    )
    got = forwarded(gw, token)
    assert got.header("X-Restguard-Subject") == f"{library}-user"
    assert got.header("X-Restguard-Client-Id") == "app-7"
    assert set((got.header("X-Restguard-Scopes") or "").split()) == {"notes:read", "notes:extra"}
    assert got.header("X-Restguard-Auth-Method") == "jwt"
    assert got.header("X-Restguard-Identity") is not None
    assert got.header("Authorization") is None
    assert got.target == b"/notes/1"


@pytest.mark.parametrize("library", list(MINTERS))
def test_azp_is_the_client_id_when_there_is_no_client_id(gw: GatewayProcess, library: str):
    token = MINTERS[library](EC, claims(client_id=None, azp="spa-client", typ=None))
    got = forwarded(gw, token)
    assert got.header("X-Restguard-Client-Id") == "spa-client"
    assert got.header("X-Restguard-Subject") == "alice"


def test_library_typ_header_at_jwt(gw: GatewayProcess) -> None:
    forwarded(gw, mint_pyjwt(RS, claims(), typ="at+jwt"))
    forwarded(gw, mint_joserfc(ED, claims(), typ="at+jwt"))


def test_client_credentials_token_without_sub(gw: GatewayProcess) -> None:
    # a machine token: no sub, the client id stands for the subject
    got = forwarded(gw, mint_pyjwt(EC, claims(sub=None, client_id="svc-1")))
    assert got.header("X-Restguard-Subject") == "svc-1"
    assert got.header("X-Restguard-Client-Id") == "svc-1"


# --- scopes ---


def _insufficient(gw: GatewayProcess, token: str, path: bytes, scope: str) -> None:
    before = len(gw.upstream.requests)
    response = send(gw.port, request(path, bearer(token)))
    assert response.status == 403, (response.status, response.body)
    body = response.json()
    assert body["error"] == "insufficient_scope"
    assert scope in body.get("scope", "") or scope in response.header("WWW-Authenticate") or ""
    time.sleep(0.02)
    assert gw.upstream.requests[before:] == []


def test_scope_enforcement(gw: GatewayProcess) -> None:
    _insufficient(gw, mint_pyjwt(EC, claims(scope="notes:other")), b"/notes/1", "notes:read")
    _insufficient(gw, mint_pyjwt(EC, claims(scope=None)), b"/notes/1", "notes:read")
    _insufficient(gw, mint_pyjwt(EC, claims(scope="notes:read")), b"/write/1", "notes:write")
    _insufficient(gw, mint_pyjwt(EC, claims(scope="notes:readnotes:write")), b"/write/1", "read")
    forwarded(gw, mint_pyjwt(EC, claims(scope="notes:write notes:read")), b"/write/1")


def test_scp_claim_issuer(gw: GatewayProcess) -> None:
    ok = mint_pyjwt(SCP, claims(SCP_ISS, scope=None, scp=["notes:read", "notes:write"]))
    got = forwarded(gw, ok, b"/write/1")
    assert set((got.header("X-Restguard-Scopes") or "").split()) == {"notes:read", "notes:write"}
    # this issuer's scopes are in scp: a scope string grants nothing
    _insufficient(gw, mint_pyjwt(SCP, claims(SCP_ISS, scp=None)), b"/notes/1", "notes:read")
    _insufficient(
        gw, mint_pyjwt(SCP, claims(SCP_ISS, scope=None, scp=["notes:read"])), b"/write/1", "write"
    )


def test_permissions_claim_issuer(gw: GatewayProcess) -> None:
    ok = mint_joserfc(PERM, claims(PERM_ISS, scope=None, permissions=["notes:read"]))
    got = forwarded(gw, ok)
    assert got.header("X-Restguard-Scopes") == "notes:read"
    _insufficient(gw, mint_joserfc(PERM, claims(PERM_ISS)), b"/notes/1", "notes:read")
    # permissions must be an array of strings: a string there is an invalid token
    as_string = mint_joserfc(PERM, claims(PERM_ISS, scope=None, permissions="notes:read"))
    response = send(gw.port, request(b"/notes/1", bearer(as_string)))
    assert response.status == 401 and response.json()["error"] == "invalid_token"


# --- key rotation and an endpoint that goes down ---


def test_issuer_key_rotation_is_accepted_within_5_s(gw: GatewayProcess, jwks: JWKSServer) -> None:
    iss = "https://rotating.example/"
    old = Signer.generate("ES256", "2024-01")
    new = Signer.generate("EdDSA", "2024-02")
    uri = jwks.serve("/rotating/jwks", jwks_of(old), cache_control="max-age=3600")
    add_issuer(gw, issuer=iss, jwks_uri=uri, audience=AUD)
    _live(gw, mint_pyjwt(old, claims(iss)))
    fetched = jwks.count("/rotating/jwks")
    assert status(gw, mint_pyjwt(new, claims(iss))) == 401  # not published yet
    # The IdP publishes the new key (and keeps the old one for a while).
    jwks.serve("/rotating/jwks", jwks_of(old, new), cache_control="max-age=3600")
    published = time.monotonic()
    took = wait_until(lambda: status(gw, mint_joserfc(new, claims(iss))) == 200, timeout=6)
    assert time.monotonic() - published < 5.0, took
    forwarded(gw, mint_pyjwt(old, claims(iss)))
    assert jwks.count("/rotating/jwks") - fetched <= 4  # one refetch per 2 s at most


def test_jwks_endpoint_down_cached_keys_keep_working(gw: GatewayProcess, jwks: JWKSServer) -> None:
    iss = "https://flaky.example/"
    key = Signer.generate("RS256", "flaky-1")
    uri = jwks.serve("/flaky/jwks", jwks_of(key))
    add_issuer(gw, issuer=iss, jwks_uri=uri, audience=AUD)
    _live(gw, mint_pyjwt(key, claims(iss)))
    jwks.serve("/flaky/jwks", b"down", status=503, content_type="text/plain")
    unknown = Signer.generate("RS256", "flaky-2")
    # an unknown kid causes a (failing) refetch: still 401, and the cached key still works
    assert status(gw, mint_pyjwt(unknown, claims(iss))) == 401
    for _ in range(3):
        forwarded(gw, mint_joserfc(key, claims(iss)))
    time.sleep(2.1)  # past the refetch cooldown: another failing fetch, same answers
    assert status(gw, mint_pyjwt(unknown, claims(iss))) == 401
    forwarded(gw, mint_pyjwt(key, claims(iss)))


def test_fully_specified_ed25519_alg(gw: GatewayProcess, jwks: JWKSServer) -> None:
    iss = "https://ed25519.example/"
    key = Signer.generate("EdDSA", "fs-1")
    uri = jwks.serve("/ed25519/jwks", {"keys": [key.jwk(alg="Ed25519")]})
    add_issuer(gw, issuer=iss, jwks_uri=uri, audience=AUD, algorithms=("ed25519",))
    # joserfc deprecates EdDSA in favour of Ed25519: its tokens carry the new name
    token = mint_joserfc(key, claims(iss), alg="Ed25519")
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["alg"] == "Ed25519"
    _live(gw, token)


# --- curl and a stock upstream ---


def curl(*args: str) -> tuple[int, bytes, str]:
    assert CURL is not None
    done = subprocess.run(
        [CURL, "-s", "-D", "-", "--max-time", "20", "-w", "\n%{http_code}", *args],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    out, _, code = done.stdout.rpartition(b"\n")
    head, _, body = out.partition(b"\r\n\r\n")
    return int(code), body, head.decode("latin-1")


@needs_curl
@pytest.mark.parametrize("signer", [ED, EC, RS], ids=lambda s: s.alg)
def test_curl_with_a_bearer_jwt(gw: GatewayProcess, signer: Signer) -> None:
    token = mint_pyjwt(signer, claims(sub="curl-user"))
    code, body, _ = curl("-H", f"Authorization: Bearer {token}", gw.url + "/notes/9")
    assert code == 200, body
    assert gw.upstream.last().header("X-Restguard-Subject") == "curl-user"
    assert gw.upstream.last().header("Authorization") is None
    # curl's own option sends the same header
    code, _, _ = curl("--oauth2-bearer", token, gw.url + "/notes/9")
    assert code == 200
    expired = mint_pyjwt(signer, claims(exp=int(time.time()) - 60))
    before = len(gw.upstream.requests)
    code, body, head = curl("-H", f"Authorization: Bearer {expired}", gw.url + "/notes/9")
    assert code == 401
    assert json.loads(body)["error"] == "invalid_token"
    assert 'error="invalid_token"' in head
    assert len(gw.upstream.requests) == before


def _echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    seen = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


@pytest.fixture
def wsgi_gw(tmp_path: Path, jwks: JWKSServer) -> Iterator[GatewayProcess]:
    server = WsgiRefUpstream(_echo_app)
    gateway = GatewayProcess(tmp_path / "gw", server, routes=ROUTES).start()  # type: ignore[arg-type]
    try:
        uri = jwks.serve("/wsgi/jwks", jwks_of(EC))
        add_issuer(gateway, issuer=ISS, jwks_uri=uri, audience=AUD)
        yield gateway
    finally:
        gateway.stop()
        server.stop()


def test_stock_wsgiref_upstream_sees_the_identity(wsgi_gw: GatewayProcess) -> None:
    token = mint_joserfc(EC, claims(sub="wsgi-user", client_id="wsgi-app"))
    _live(wsgi_gw, token)
    response = send(
        wsgi_gw.port,
        request(b"/notes/3", bearer(token), (b"X_Restguard_Subject", b"forged")),
    )
    assert response.status == 200, response.body
    seen = response.json()
    assert seen["HTTP_X_RESTGUARD_SUBJECT"] == "wsgi-user"
    assert seen["HTTP_X_RESTGUARD_CLIENT_ID"] == "wsgi-app"
    assert seen["HTTP_X_RESTGUARD_AUTH_METHOD"] == "jwt"
    assert seen["HTTP_X_RESTGUARD_SCOPES"] == "notes:read"
    assert "HTTP_AUTHORIZATION" not in seen
