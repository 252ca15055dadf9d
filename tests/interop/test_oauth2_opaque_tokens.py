"""Opaque access tokens (`oauth2 client create --token-format opaque`) end to end: Authlib
fetches one with client credentials and calls a protected route; introspection describes it,
revocation kills it at the gateway within a second; an altered one, or one in a URL, is refused.
The authorization code grant gives opaque tokens too, and they refresh."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from restguard.oauth2.clients import new_client
from tests.harness import GatewayProcess, RecordingUpstream
from tests.oauth2_support import Client, ResourceOwner, _store_call, add_user, pkce

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["oauth2"]
"""


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("oauth2-opaque") / "gw", upstream, routes=ROUTES
    ).start()
    add_user(gateway, "alice", "correct horse battery", "notes:read")
    yield gateway
    gateway.stop()


def opaque_client(gw: GatewayProcess, *grants: str, public: bool = False) -> tuple[str, str | None]:
    record, secret = new_client(
        name="opaque",
        scopes=("notes:read",),
        grants=grants,
        redirect_uris=("http://127.0.0.1:9/cb",) if "authorization_code" in grants else (),
        public=public,
        token_format="opaque",
        now=datetime.now(UTC),
    )
    _store_call(gw, lambda store: store.oauth2_clients.insert(record))
    return record.client_id, secret


def test_client_credentials_opaque_token_verified_introspected_revoked(gw: GatewayProcess) -> None:
    client_id, secret = opaque_client(gw, "client_credentials")
    assert secret is not None
    with OAuth2Client(client_id, secret) as oauth:
        token = oauth.fetch_token(gw.url + "/oauth2/token", grant_type="client_credentials")
        access = token["access_token"]
        assert access.startswith("rg_at_") and "." not in access
        assert oauth.get(gw.url + "/notes/1").status_code == 200
    seen = gw.upstream.last()
    assert seen.header("x-restguard-auth-method") == "oauth2"
    assert seen.header("x-restguard-client-id") == client_id
    assert seen.header("authorization") is None

    about = httpx.post(
        gw.url + "/oauth2/introspect", data={"token": access}, auth=(client_id, secret)
    )
    body = about.json()
    assert body["active"] is True and body["client_id"] == client_id
    assert body["scope"] == "notes:read" and body["exp"] > time.time()

    bearer = {"authorization": "Bearer " + access}
    altered = {"authorization": "Bearer " + access[:-1] + ("A" if access[-1] != "A" else "B")}
    assert httpx.get(gw.url + "/notes/2", headers=altered).status_code == 401
    in_url = httpx.get(gw.url + "/notes/2", params={"access_token": access})
    assert in_url.status_code == 400  # a credential in a URL is refused outright

    assert (
        httpx.post(
            gw.url + "/oauth2/revoke", data={"token": access}, auth=(client_id, secret)
        ).status_code
        == 200
    )
    deadline = time.monotonic() + 1.5
    while httpx.get(gw.url + "/notes/3", headers=bearer).status_code != 401:
        assert time.monotonic() < deadline, "a revoked opaque token still works"
        time.sleep(0.05)
    gone = httpx.post(
        gw.url + "/oauth2/introspect", data={"token": access}, auth=(client_id, secret)
    )
    assert gone.json() == {"active": False}


def test_authorization_code_gives_opaque_tokens_that_refresh(gw: GatewayProcess) -> None:
    client_id, _ = opaque_client(gw, "authorization_code", "refresh_token", public=True)
    verifier, challenge = pkce()
    owner = ResourceOwner(gw)
    client = Client(client_id, None, "http://127.0.0.1:9/cb")
    landed = owner.authorize(
        client, "alice", "correct horse battery", scope="notes:read", challenge=challenge
    )
    token = httpx.post(
        gw.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": landed["code"][0],
            "redirect_uri": client.redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    ).json()
    assert token["access_token"].startswith("rg_at_")
    headers = {"authorization": "Bearer " + token["access_token"]}
    assert httpx.get(gw.url + "/notes/4", headers=headers).status_code == 200
    assert gw.upstream.last().header("x-restguard-subject") == "alice"
    renewed = httpx.post(
        gw.url + "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": client_id,
        },
    ).json()
    assert renewed["access_token"].startswith("rg_at_")
    assert renewed["access_token"] != token["access_token"]
