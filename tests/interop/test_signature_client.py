"""restguard's own signing client against the gateway: ``SignatureAuth`` with httpx (sync and
async) and requests for hmac-sha256, ed25519 and ecdsa-p256-sha256 apps; the
`http-message-signatures` package verifies what it signs; ``restguard sign`` as a process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from http_message_signatures import HTTPMessageVerifier, MappingKeyResolver
from http_message_signatures import InvalidSignature as PeerInvalidSignature
from http_message_signatures.algorithms import ED25519, HMAC_SHA256

import restguard.client
from restguard.client import SignatureAuth
from restguard.wire.rfc9421 import parse_signature_input
from restguard.wire.rfc9421_algorithms import signer
from tests.harness import GatewayProcess, RecordingUpstream
from tests.signature_support import add_app

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET", "POST"]
scopes = ["notes:write"]
auth = ["signature"]
"""
ROOT = Path(__file__).resolve().parents[2]
BODY = b'{"text": "signed by SignatureAuth"}'


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("sigclient") / "gw", upstream, routes=ROUTES
    ).start()
    yield gateway
    gateway.stop()


def _public_pem(private: Any) -> bytes:
    return bytes(private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))


def app_auth(gw: GatewayProcess, alg: str) -> SignatureAuth:
    """A new app of ``alg`` registered with the gateway, and its SignatureAuth."""
    if alg == "hmac-sha256":
        key_id, secret = add_app(gw, alg)
        assert secret is not None
        return SignatureAuth(key_id, secret)  # the secret exactly as 'app create' prints it
    if alg == "ed25519":
        private = Ed25519PrivateKey.generate()
        key_id, _ = add_app(gw, alg, _public_pem(private))
        return SignatureAuth(key_id, private, alg=alg)
    p256 = ec.generate_private_key(ec.SECP256R1())
    key_id, _ = add_app(gw, alg, _public_pem(p256))
    return SignatureAuth(key_id, signer(alg, p256), alg=alg)


def _nonce(headers: Any) -> str | None:
    (sig,) = parse_signature_input([headers["signature-input"].encode()]).values()
    return sig.nonce


ALGS = ["hmac-sha256", "ed25519", "ecdsa-p256-sha256"]


@pytest.mark.parametrize("alg", ALGS)
def test_httpx_sync_get_with_query_and_post_with_body(gw: GatewayProcess, alg: str) -> None:
    auth = app_auth(gw, alg)
    with httpx.Client(base_url=gw.url, auth=auth) as client:
        r = client.get("/notes/1", params={"limit": "5", "q": "a b"})
        assert r.status_code == 200, r.text
        seen = gw.upstream.last()
        assert seen.header("x-restguard-client-id") == auth.key_id
        assert seen.header("x-restguard-auth-method") == "signature"
        r = client.post("/notes", content=BODY, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        assert gw.upstream.last().body == BODY
        assert "sha-256=:" in r.request.headers["content-digest"]


@pytest.mark.parametrize("alg", ALGS)
async def test_httpx_async_get_and_post(gw: GatewayProcess, alg: str) -> None:
    auth = await asyncio.to_thread(app_auth, gw, alg)  # (add_app runs its own event loop)
    async with httpx.AsyncClient(base_url=gw.url, auth=auth) as client:
        r = await client.get("/notes/2?x=1")
        assert r.status_code == 200, r.text
        r = await client.post("/notes", content=BODY)
        assert r.status_code == 200, r.text
    assert gw.upstream.last().body == BODY


@pytest.mark.parametrize("alg", ALGS)
def test_requests_get_and_post(gw: GatewayProcess, alg: str) -> None:
    auth = app_auth(gw, alg)
    with requests.Session() as session:
        r = session.get(gw.url + "/notes/3", params={"page": "2"}, auth=auth, timeout=10)
        assert r.status_code == 200, r.text
        r = session.post(gw.url + "/notes", data=BODY, auth=auth, timeout=10)
        assert r.status_code == 200, r.text
        assert gw.upstream.last().body == BODY
        # a str body is sent as its UTF-8 bytes, which is what the digest covers
        r = session.post(gw.url + "/notes", data="café", auth=auth, timeout=10)
        assert r.status_code == 200, r.text
        assert gw.upstream.last().body == "café".encode()
        r = session.post(gw.url + "/notes", json={"a": 1}, auth=auth, timeout=10)
        assert r.status_code == 200, r.text


def test_each_request_gets_a_new_nonce(gw: GatewayProcess) -> None:
    auth = app_auth(gw, "hmac-sha256")
    with httpx.Client(base_url=gw.url, auth=auth) as client:
        first = client.post("/notes", content=BODY)
        second = client.post("/notes", content=BODY)
    assert (first.status_code, second.status_code) == (200, 200)
    assert _nonce(first.request.headers) != _nonce(second.request.headers)
    # the same signed request sent again is a replay: refused
    again = httpx.post(gw.url + "/notes", content=BODY, headers=dict(second.request.headers))
    assert again.status_code == 401


def test_a_wrong_secret_is_refused(gw: GatewayProcess) -> None:
    key_id, _ = add_app(gw, "hmac-sha256")
    gw.upstream.clear()
    r = httpx.get(gw.url + "/notes/4", auth=SignatureAuth(key_id, b"k" * 32))
    assert r.status_code == 401
    assert gw.upstream.requests == []


def test_extra_covered_components(gw: GatewayProcess) -> None:
    key_id, secret = add_app(gw, "hmac-sha256")
    assert secret is not None
    covering = SignatureAuth(key_id, secret, components=("content-type", "@scheme"))
    r = httpx.post(
        gw.url + "/notes", content=BODY, headers={"Content-Type": "text/plain"}, auth=covering
    )
    assert r.status_code == 200, r.text
    (sig,) = parse_signature_input([r.request.headers["signature-input"].encode()]).values()
    assert [name for name, _ in sig.components] == [
        "@method",
        "@authority",
        "@path",
        "content-digest",
        "content-type",
        "@scheme",
    ]


# --- the http-message-signatures package verifies what SignatureAuth signed -------------------


@pytest.mark.parametrize("alg", ["hmac-sha256", "ed25519"])
def test_the_package_verifies_a_request_signature_auth_signed(alg: str) -> None:
    if alg == "hmac-sha256":
        key: Any = os.urandom(32)
        auth, peer, public = SignatureAuth("k1", key), HMAC_SHA256, key
    else:
        key = Ed25519PrivateKey.generate()
        auth, peer, public = SignatureAuth("k1", key, alg=alg), ED25519, key.public_key()
    prepared = requests.Request(
        "POST", "https://api.example.com/v1/items?limit=10&sort=name", data=BODY
    ).prepare()
    auth(prepared)
    resolver = MappingKeyResolver(public_keys={"k1": public}, private_keys={})
    verifier = HTTPMessageVerifier(signature_algorithm=peer, key_resolver=resolver)
    (result,) = verifier.verify(prepared, max_age=timedelta(minutes=5), body=BODY)
    assert result.label == "sig1"
    assert result.parameters["keyid"] == "k1" and result.parameters["alg"] == alg
    covered = set(result.covered_components)
    assert covered >= {'"@method"', '"@authority"', '"@path"', '"@query"', '"content-digest"'}
    assert '"content-digest"' in prepared.headers["Signature-Input"]
    prepared.body = BODY + b"!"  # the package checks the digest against the body too
    with pytest.raises(PeerInvalidSignature):
        verifier.verify(prepared, max_age=timedelta(minutes=5), body=prepared.body)


# --- the client's contract -------------------------------------------------------------------


def test_restguard_client_exports_signature_auth() -> None:
    assert restguard.client.__all__ == [
        "ApiKeyAuth",
        "ClientCredentialsAuth",
        "OAuth1Auth",
        "SignatureAuth",
        "TokenError",
    ]


def test_keys_and_parameters_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="app secret"):
        SignatureAuth("app_x", "not base64url!")
    with pytest.raises(ValueError, match="app secret"):
        SignatureAuth("app_x", "c2hvcnQ")  # too short to be a secret restguard made
    with pytest.raises(TypeError, match="signer callable"):
        SignatureAuth("app_x", ec.generate_private_key(ec.SECP256R1()), alg="ecdsa-p256-sha256")
    with pytest.raises(TypeError, match="Ed25519PrivateKey"):
        SignatureAuth("app_x", b"secret", alg="ed25519")
    with pytest.raises(ValueError, match="unsupported algorithm"):
        SignatureAuth("app_x", b"secret", alg="rsa-pss-sha512")
    with pytest.raises(ValueError):
        SignatureAuth("app_x", b"secret", label="Not A Label")
    with pytest.raises(ValueError, match="covered whenever"):
        SignatureAuth("app_x", b"secret", components=("@query",))


def test_an_ecdsa_signer_returning_der_is_refused() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import hashes

    auth = SignatureAuth(
        "app_x", lambda base: p256.sign(base, ec.ECDSA(hashes.SHA256())), alg="ecdsa-p256-sha256"
    )
    with pytest.raises(ValueError, match="r \\|\\| s"):
        auth(requests.Request("GET", "https://api.example.com/").prepare())


def test_a_streamed_requests_body_cannot_be_signed() -> None:
    prepared = requests.Request("POST", "https://api.example.com/", data=iter([b"a"])).prepare()
    with pytest.raises(TypeError, match="bytes"):
        SignatureAuth("app_x", b"secret")(prepared)


# --- restguard sign ------------------------------------------------------------------------------


def sign_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTGUARD_")}
    return subprocess.run(
        [sys.executable, "-m", "restguard", "sign", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def test_sign_command_hmac_from_stdin(gw: GatewayProcess) -> None:
    key_id, secret = add_app(gw, "hmac-sha256")
    assert secret is not None
    done = sign_cli(
        "--key-id", key_id, "--secret-stdin", "--json", gw.url + "/notes/5?a=1", stdin=secret + "\n"
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == 200 and set(answer) == {"status", "headers", "body"}
    assert secret not in done.stdout + done.stderr
    done = sign_cli(
        "--key-id",
        key_id,
        "--secret-stdin",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"text": "from the shell"}',
        gw.url + "/notes",
        stdin=secret + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 200 ")
    assert gw.upstream.last().method == "POST"
    assert gw.upstream.last().body == b'{"text": "from the shell"}'


def test_sign_command_with_a_private_key(gw: GatewayProcess, tmp_path: Path) -> None:
    for private in (Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())):
        alg = "ed25519" if isinstance(private, Ed25519PrivateKey) else "ecdsa-p256-sha256"
        key_id, _ = add_app(gw, alg, _public_pem(private))
        pem = tmp_path / f"{alg}.pem"
        pem.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        body = tmp_path / "body.json"
        body.write_bytes(BODY)
        done = sign_cli(
            "--key-id",
            key_id,
            "--private-key",
            str(pem),
            "--data-file",
            str(body),
            gw.url + "/notes",
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("HTTP/1.1 200 "), done.stdout
        assert gw.upstream.last().body == BODY


def test_sign_command_dry_run_sends_nothing(gw: GatewayProcess) -> None:
    gw.upstream.clear()
    done = sign_cli(
        "--key-id",
        "app_0000000000000000",
        "--secret-stdin",
        "--dry-run",
        "--json",
        "-d",
        "hello",
        gw.url + "/notes?x=1",
        stdin="A" * 43 + "\n",
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["method"] == "POST" and shown["url"] == gw.url + "/notes?x=1"
    headers = {k.lower(): v for k, v in shown["headers"].items()}
    assert headers["content-digest"].startswith("sha-256=:")
    assert headers["signature"].startswith("sig1=:")
    (sig,) = parse_signature_input([headers["signature-input"].encode()]).values()
    assert sig.keyid == "app_0000000000000000" and sig.alg == "hmac-sha256" and sig.nonce
    assert [name for name, _ in sig.components] == [
        "@method",
        "@authority",
        "@path",
        "@query",
        "content-digest",
    ]
    assert gw.upstream.requests == []
    plain = sign_cli(
        "--key-id", "app_x", "--secret-stdin", "--dry-run", gw.url + "/n", stdin="A" * 43
    )
    assert plain.returncode == 0, plain.stderr
    assert (
        plain.stdout.startswith("GET /n HTTP/1.1\n") and "\nSignature-Input: sig1=(" in plain.stdout
    )


def test_sign_command_refuses_a_secret_on_the_command_line() -> None:
    done = sign_cli("--key-id", "app_x", "https://api.example.com/")
    assert done.returncode == 2 and "--secret-stdin" in done.stderr
    done = sign_cli("--key-id", "app_x", "--secret", "s", "https://api.example.com/")
    assert done.returncode == 2


# --- docs/signatures.md's JavaScript, run by Node.js against the gateway -------------------------


def _docs_javascript() -> str:
    text = (ROOT / "docs" / "signatures.md").read_text()
    (block,) = re.findall(r"```js\n(.*?)```", text, flags=re.S)
    return str(block)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js 18+ (WebCrypto, fetch)")
def test_the_documented_javascript_signs_for_the_gateway(gw: GatewayProcess) -> None:
    key_id, secret = add_app(gw, "hmac-sha256")
    assert secret is not None
    script = _docs_javascript() + textwrap.dedent(
        """
        const [url, keyId] = process.argv.slice(-2);
        const secret = process.env.APP_SECRET;
        (async () => {
          const get = await signedFetch(url + "/notes/7?limit=5&q=a%20b", {}, keyId, secret);
          const post = await signedFetch(url + "/notes", {
            method: "POST", body: '{"text": "from js"}',
            headers: { "Content-Type": "application/json" } }, keyId, secret);
          console.log(JSON.stringify([get.status, post.status]));
        })();
        """
    )
    done = subprocess.run(
        ["node", "-e", script, "--", gw.url, key_id],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "APP_SECRET": secret},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [200, 200]
    assert gw.upstream.last().body == b'{"text": "from js"}'
