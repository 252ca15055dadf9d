"""docs/oauth1.md's curl walk-through, run as written: the whole three-legged flow and a
protected call with PLAINTEXT signatures made by hand in the shell, over HTTPS (PLAINTEXT is
refused over plain HTTP, RFC 5849 §3.4.4)."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests

from restguard.config import load
from restguard.credentials.oauth1_consumers import new_consumer
from restguard.keys.sealing import open_sealer
from tests.harness import GatewayProcess, RecordingUpstream
from tests.oauth2_support import ResourceOwner, _store_call, add_user, forms
from tests.pki import Pki

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")
ROUTES = """\
[[routes]]
path = "/invoices/**"
methods = ["GET"]
scopes = ["invoices:read"]
auth = ["oauth1"]
"""


@pytest.fixture(scope="module")
def tls_gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[tuple[GatewayProcess, Path]]:
    directory = tmp_path_factory.mktemp("oauth1-curl")
    pki = Pki(directory / "pki")
    cert, key = pki.pair()
    gw = GatewayProcess(directory / "gw", upstream, routes=ROUTES)
    text = gw.config.read_text().replace(
        "[server]\n",
        f'[server]\ntls_cert = "{cert}"\ntls_key = "{key}"\n',
        1,
    )
    text = re.sub(r'(?m)^public_url = ".*"$', f'public_url = "https://127.0.0.1:{gw.port}"', text)
    gw.config.write_text(text)
    gw.settings = load(gw.config)
    gw.start()
    add_user(gw, "alice", "correct horse battery", "invoices:read")
    yield gw, pki.ca
    gw.stop()


def header(ck: str, secret: str, **extra: str) -> str:
    """The doc's header: PLAINTEXT, a timestamp and a nonce, as `date` and `openssl` make them."""
    params = {
        "oauth_consumer_key": ck,
        **extra,
        "oauth_signature_method": "PLAINTEXT",
        "oauth_timestamp": str(int(time.time())),
        "oauth_nonce": secrets.token_hex(16),
        "oauth_signature": secret,
    }
    return "Authorization: OAuth " + ", ".join(f'{k}="{v}"' for k, v in params.items())


def curl(url: str, ca: Path, *args: str) -> tuple[int, str]:
    assert CURL is not None
    done = subprocess.run(
        [CURL, "-sS", "--cacert", str(ca), "-w", "\n%{http_code}", url, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def test_the_docs_curl_flow_over_https(
    tls_gw: tuple[GatewayProcess, Path], upstream: RecordingUpstream
) -> None:
    gw, ca = tls_gw
    base = f"https://127.0.0.1:{gw.port}"
    record, cs = new_consumer(
        "curl demo",
        ["invoices:read"],
        now=datetime.now(UTC),
        sealer=open_sealer(gw.settings.base_dir / gw.settings.master_key_path),
    )
    _store_call(gw, lambda store: store.oauth1_consumers.insert(record))
    ck = record.consumer_key

    status, body = curl(
        base + "/oauth1/request_token",
        ca,
        "-X",
        "POST",
        "-H",
        header(ck, cs + "%26", oauth_callback="oob"),
    )
    assert status == 200, body
    temporary = {k: v[0] for k, v in parse_qs(body).items()}
    assert temporary["oauth_callback_confirmed"] == "true"
    rt, rts = temporary["oauth_token"], temporary["oauth_token_secret"]

    owner = ResourceOwner(gw)
    owner.http.trust_env = False  # (REQUESTS_CA_BUNDLE would replace the CA below)
    owner.http.verify = str(ca)
    page = owner.http.get(f"{base}/oauth1/authorize?oauth_token={rt}", timeout=10)
    (form,) = forms(page.text)
    assert form.action == "/login"
    page = owner.http.post(
        base + "/login",
        data={**form.inputs, "username": "alice", "password": "correct horse battery"},
        timeout=10,
    )
    (form,) = forms(page.text)
    assert form.action == "/oauth1/authorize"
    page = owner.http.post(
        base + form.action,
        data={**form.inputs, "scope": ["invoices:read"], "decision": "allow"},
        timeout=10,
    )
    code = page.text.split('<code id="verifier">')[1].split("</code>")[0]

    status, body = curl(
        base + "/oauth1/access_token",
        ca,
        "-X",
        "POST",
        "-H",
        header(ck, f"{cs}%26{rts}", oauth_token=rt, oauth_verifier=code),
    )
    assert status == 200, body
    tokens = {k: v[0] for k, v in parse_qs(body).items()}
    at, ats = tokens["oauth_token"], tokens["oauth_token_secret"]

    upstream.clear()
    status, body = curl(base + "/invoices/7", ca, "-H", header(ck, f"{cs}%26{ats}", oauth_token=at))
    assert status == 200, body
    assert upstream.last().header("x-restguard-subject") == "alice"
    assert upstream.last().header("x-restguard-auth-method") == "oauth1"

    # a wrong token secret: refused, nothing forwarded
    status, body = curl(base + "/invoices/7", ca, "-H", header(ck, f"{cs}%26x", oauth_token=at))
    assert status == 401 and "invalid_token" in body
    assert len(upstream.requests) == 1


def test_plaintext_over_plain_http_is_refused(
    gw_plain: GatewayProcess, upstream: RecordingUpstream
) -> None:
    record, cs = new_consumer(
        "plain",
        ["invoices:read"],
        now=datetime.now(UTC),
        sealer=open_sealer(gw_plain.settings.base_dir / gw_plain.settings.master_key_path),
    )
    _store_call(gw_plain, lambda store: store.oauth1_consumers.insert(record))
    upstream.clear()
    r = requests.post(
        gw_plain.url + "/oauth1/request_token",
        headers={
            "Authorization": header(record.consumer_key, cs + "%26", oauth_callback="oob")[15:]
        },
        timeout=10,
    )
    assert r.status_code == 400
    assert "HTTPS" in r.json()["error_description"]


@pytest.fixture(scope="module")
def gw_plain(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("oauth1-plain") / "gw", upstream, routes=ROUTES)
    gw.start()
    yield gw
    gw.stop()
