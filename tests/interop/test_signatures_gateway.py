"""RFC 9421 signed requests through the gateway: an hmac-sha256 app and an ed25519 app sign with
restguard's signer and with the `http-message-signatures` package; the gateway verifies before
any byte reaches the upstream (a signed body is read whole, its Content-Digest checked, and
exactly those bytes forwarded); replays, changed bodies, stale or unsigned parts are 401."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from restguard.wire import rfc9421, rfc9421_algorithms, rfc9530
from tests.harness import GatewayProcess, RecordingUpstream
from tests.signature_support import add_app

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET", "POST"]
scopes = ["notes:write"]
auth = ["signature"]
"""


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("signatures") / "gw", upstream, routes=ROUTES
    ).start()
    yield gateway
    gateway.stop()


def signed(
    gw: GatewayProcess,
    method: str,
    path: str,
    *,
    keyid: str,
    alg: str,
    key: object,
    body: bytes = b"",
    components: tuple[str, ...] | None = None,
    created: int | None = None,
    nonce: str | None = "fresh",
) -> dict[str, str]:
    parts = urlsplit(gw.url + path)
    headers: list[tuple[bytes, bytes]] = [(b"host", parts.netloc.encode())]
    if body:
        headers.append((b"content-digest", rfc9530.content_digest(body).encode()))
    message = rfc9421.Message(
        method=method,
        scheme="http",
        authority=parts.netloc,
        path=parts.path,
        query=parts.query.encode(),
        headers=headers,
    )
    if components is None:
        components = ("@method", "@authority", "@path")
        components += ("@query",) if parts.query else ()
        components += ("content-digest",) if body else ()
    sig_input, signature = rfc9421_algorithms.sign_request(
        message,
        keyid=keyid,
        alg=alg,
        key=key,
        components=components,
        created=int(time.time()) if created is None else created,
        nonce=secrets.token_urlsafe(12) if nonce == "fresh" else nonce,
    )
    out = {"signature-input": sig_input.decode(), "signature": signature.decode()}
    if body:
        out["content-digest"] = rfc9530.content_digest(body)
    return out


def hmac_key(secret: str | None) -> bytes:
    assert secret is not None
    return base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))


def test_hmac_app_get_and_post(gw: GatewayProcess) -> None:
    keyid, secret = add_app(gw, "hmac-sha256")
    key = hmac_key(secret)
    r = httpx.get(
        gw.url + "/notes/1?x=1",
        headers=signed(gw, "GET", "/notes/1?x=1", keyid=keyid, alg="hmac-sha256", key=key),
    )
    assert r.status_code == 200, r.text
    seen = gw.upstream.last()
    assert seen.header("x-restguard-subject") == "billing"
    assert seen.header("x-restguard-client-id") == keyid
    assert seen.header("x-restguard-auth-method") == "signature"
    assert seen.header("signature") is None and seen.header("signature-input") is None
    body = b'{"text": "hello"}'
    headers = signed(gw, "POST", "/notes", keyid=keyid, alg="hmac-sha256", key=key, body=body)
    r = httpx.post(gw.url + "/notes", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert gw.upstream.last().body == body


def test_ed25519_app(gw: GatewayProcess) -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    keyid, secret = add_app(gw, "ed25519", pem)
    assert secret is None
    headers = signed(gw, "GET", "/notes/2", keyid=keyid, alg="ed25519", key=private)
    assert httpx.get(gw.url + "/notes/2", headers=headers).status_code == 200


def test_refusals_never_reach_the_upstream(gw: GatewayProcess) -> None:
    keyid, secret = add_app(gw, "hmac-sha256")
    key = hmac_key(secret)
    gw.upstream.clear()
    body = b'{"text": "pay 10"}'
    good = signed(gw, "POST", "/notes", keyid=keyid, alg="hmac-sha256", key=key, body=body)
    # a changed body under the same signature and digest
    assert (
        httpx.post(gw.url + "/notes", content=b'{"text": "pay 99"}', headers=good).status_code
        == 401
    )
    # a body not covered by the signature
    uncovered = signed(
        gw,
        "POST",
        "/notes",
        keyid=keyid,
        alg="hmac-sha256",
        key=key,
        body=body,
        components=("@method", "@authority", "@path"),
    )
    assert httpx.post(gw.url + "/notes", content=body, headers=uncovered).status_code == 401
    # stale, missing nonce, unknown key, wrong key
    stale = signed(
        gw,
        "GET",
        "/notes/3",
        keyid=keyid,
        alg="hmac-sha256",
        key=key,
        created=int(time.time()) - 3600,
    )
    assert httpx.get(gw.url + "/notes/3", headers=stale).status_code == 401
    no_nonce = signed(gw, "GET", "/notes/3", keyid=keyid, alg="hmac-sha256", key=key, nonce=None)
    assert httpx.get(gw.url + "/notes/3", headers=no_nonce).status_code == 401
    unknown = signed(
        gw, "GET", "/notes/3", keyid="app_0000000000000000", alg="hmac-sha256", key=key
    )
    assert httpx.get(gw.url + "/notes/3", headers=unknown).status_code == 401
    wrong = signed(gw, "GET", "/notes/3", keyid=keyid, alg="hmac-sha256", key=b"k" * 32)
    assert httpx.get(gw.url + "/notes/3", headers=wrong).status_code == 401
    assert gw.upstream.requests == []
    # the twin, then its replay
    assert httpx.post(gw.url + "/notes", content=body, headers=good).status_code == 200
    assert httpx.post(gw.url + "/notes", content=body, headers=good).status_code == 401
    assert len(gw.upstream.requests) == 1


def test_http_message_signatures_package_signs_and_restguard_verifies(gw: GatewayProcess) -> None:
    import requests
    from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

    keyid, secret = add_app(gw, "hmac-sha256")
    key = hmac_key(secret)

    class Keys(HTTPSignatureKeyResolver):
        def resolve_private_key(self, key_id: str) -> bytes:
            return key

        def resolve_public_key(self, key_id: str) -> bytes:
            return key

    body = b'{"text": "from the package"}'
    request = requests.Request("POST", gw.url + "/notes", data=body).prepare()
    signer = HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=Keys())
    signer.sign(
        request,
        key_id=keyid,
        covered_component_ids=("@method", "@authority", "@path", "content-digest"),
        nonce=secrets.token_urlsafe(12),
        label="pyhms",
        body=body,  # the package computes Content-Digest itself
    )
    with requests.Session() as session:
        r = session.send(request, timeout=10)
    assert r.status_code == 200, r.text
    assert gw.upstream.last().body == body
