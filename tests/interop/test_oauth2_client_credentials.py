"""The client credentials grant end to end, with clients we did not write: Authlib, requests-
oauthlib and curl fetch a token from the gateway's token endpoint and call a protected route
with it; restguard.client.ClientCredentialsAuth (httpx sync and async, requests) does the same;
`restguard token` prints one. Also: the metadata document, scope enforcement, and a revoked
client refused at the gateway within a second."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import requests
from authlib.integrations.httpx_client import OAuth2Client
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session

from restguard.client import ClientCredentialsAuth
from restguard.oauth2.clients import new_client
from restguard.store.sql import open_store
from tests.harness import GatewayProcess, RecordingUpstream
from tests.jwt_support import wait_until

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
"""
CURL = shutil.which("curl")
RESTGUARD = str(Path(sys.executable).with_name("restguard"))


class Client:
    def __init__(self, gw: GatewayProcess, *scopes: str) -> None:
        record, secret = new_client(
            name="svc",
            scopes=scopes,
            grants=("client_credentials",),
            redirect_uris=(),
            public=False,
            token_format="jwt",
            now=datetime.now(UTC),
        )
        assert secret is not None
        self.id, self.secret = record.client_id, secret

        async def insert() -> None:
            store = open_store(gw.settings.database_url)
            try:
                await store.oauth2_clients.insert(record)
            finally:
                store.close()

        asyncio.run(insert())


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("oauth2-cc") / "gw", upstream, routes=ROUTES
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def client(gw: GatewayProcess) -> Client:
    return Client(gw, "notes:read", "notes:write")


def token_url(gw: GatewayProcess) -> str:
    return gw.url + "/oauth2/token"


def assert_seen_as(gw: GatewayProcess, client: Client, scopes: str) -> None:
    seen = gw.upstream.last()
    assert seen.header("x-restguard-auth-method") == "oauth2"
    assert seen.header("x-restguard-subject") == client.id
    assert seen.header("x-restguard-client-id") == client.id
    assert seen.header("x-restguard-scopes") == scopes
    assert seen.header("authorization") is None


def test_metadata_document(gw: GatewayProcess) -> None:
    doc = httpx.get(gw.url + "/.well-known/oauth-authorization-server").json()
    assert doc["issuer"] == gw.settings.server.public_url
    assert doc["token_endpoint"] == token_url(gw)
    assert "client_credentials" in doc["grant_types_supported"]
    jwks = httpx.get(doc["jwks_uri"]).json()
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])


def test_authlib(gw: GatewayProcess, client: Client) -> None:
    with OAuth2Client(client.id, client.secret, scope="notes:read") as oauth:
        token = oauth.fetch_token(token_url(gw), grant_type="client_credentials")
        assert token["token_type"] == "Bearer" and token["scope"] == "notes:read"
        r = oauth.get(gw.url + "/notes/1")
    assert r.status_code == 200, r.text
    assert_seen_as(gw, client, "notes:read")


def test_requests_oauthlib(
    gw: GatewayProcess, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain HTTP, but on loopback
    session = OAuth2Session(client=BackendApplicationClient(client_id=client.id))
    token = session.fetch_token(
        token_url=token_url(gw), client_id=client.id, client_secret=client.secret
    )
    assert token["scope"] == ["notes:read", "notes:write"]
    r = session.get(gw.url + "/notes/2")
    assert r.status_code == 200, r.text
    assert_seen_as(gw, client, "notes:read notes:write")
    assert session.get(gw.url + "/admin/x").status_code == 403  # a scope it was not granted


def test_restguard_client_with_httpx_and_requests(gw: GatewayProcess, client: Client) -> None:
    auth = ClientCredentialsAuth(token_url(gw), client.id, client.secret, scopes=["notes:read"])
    with httpx.Client(auth=auth) as http:
        assert http.get(gw.url + "/notes/3").status_code == 200
        assert http.get(gw.url + "/notes/4").status_code == 200  # the cached token
    assert_seen_as(gw, client, "notes:read")

    async def run() -> int:
        async with httpx.AsyncClient(auth=auth) as http:
            return (await http.get(gw.url + "/notes/5")).status_code

    assert asyncio.run(run()) == 200
    assert requests.get(gw.url + "/notes/6", auth=auth, timeout=10).status_code == 200
    assert_seen_as(gw, client, "notes:read")


@pytest.mark.skipif(CURL is None, reason="the curl binary is not installed")
def test_curl(gw: GatewayProcess, client: Client) -> None:
    assert CURL is not None
    got = subprocess.run(
        [
            CURL,
            "-s",
            "-u",
            f"{client.id}:{client.secret}",
            "-d",
            "grant_type=client_credentials",
            token_url(gw),
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    token = json.loads(got.stdout)["access_token"]
    code = subprocess.run(
        [
            CURL,
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            f"Authorization: Bearer {token}",
            gw.url + "/notes/7",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert code == b"200"


def test_restguard_token_command(gw: GatewayProcess, client: Client) -> None:
    done = subprocess.run(
        [
            RESTGUARD,
            "token",
            "--config",
            str(gw.config),
            "--client-id",
            client.id,
            "--client-secret",
            "-",
            "--scope",
            "notes:read",
            "--json",
        ],
        input=client.secret + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    token = json.loads(done.stdout)["access_token"]
    r = httpx.get(gw.url + "/notes/8", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    wrong = subprocess.run(
        [
            RESTGUARD,
            "token",
            "--config",
            str(gw.config),
            "--client-id",
            client.id,
            "--client-secret",
            "nope",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 1 and "invalid_client" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_a_revoked_client_is_refused_within_a_second(gw: GatewayProcess) -> None:
    victim = Client(gw, "notes:read")
    auth = ClientCredentialsAuth(token_url(gw), victim.id, victim.secret)
    with httpx.Client(auth=auth) as http:
        assert http.get(gw.url + "/notes/9").status_code == 200

        async def revoke() -> None:
            store = open_store(gw.settings.database_url)
            try:
                await store.oauth2_clients.revoke(victim.id, datetime.now(UTC))
            finally:
                store.close()

        asyncio.run(revoke())
        token = auth._token
        took = wait_until(
            lambda: (
                httpx.get(
                    gw.url + "/notes/9", headers={"Authorization": f"Bearer {token}"}
                ).status_code
                == 401
            ),
            timeout=3,
        )
        assert took <= 1.5
        # and no new token for it either
        r = httpx.post(
            token_url(gw),
            data={"grant_type": "client_credentials"},
            auth=(victim.id, victim.secret),
        )
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_authlib_introspects_and_revokes(gw: GatewayProcess, client: Client) -> None:
    """RFC 7662 and RFC 7009 with Authlib's client: active, revoked, refused at the gateway."""
    base = gw.url + "/oauth2/"
    with OAuth2Client(client.id, client.secret) as oauth:
        token = oauth.fetch_token(base + "token", grant_type="client_credentials")
        access = token["access_token"]
        seen = oauth.introspect_token(base + "introspect", token=access).json()
        assert seen["active"] is True and seen["client_id"] == client.id
        assert oauth.get(gw.url + "/notes/10").status_code == 200
        assert oauth.revoke_token(base + "revoke", token=access).status_code == 200
        assert oauth.introspect_token(base + "introspect", token=access).json() == {"active": False}
    # refused at the gateway (this instance: at once)
    r = httpx.get(gw.url + "/notes/10", headers={"Authorization": f"Bearer {access}"})
    assert r.status_code == 401
    doc = httpx.get(gw.url + "/.well-known/oauth-authorization-server").json()
    assert doc["revocation_endpoint"] == base + "revoke"
    assert doc["introspection_endpoint"] == base + "introspect"
