"""The authorization code grant with PKCE end to end, with clients we did not write: Authlib and
requests-oauthlib build the authorization URL and redeem the code; the resource owner signs in
and consents on restguard's pages over HTTP; the access token then calls a protected route
through the gateway; the refresh token is rotated, and its reuse revokes the family."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from requests_oauthlib import OAuth2Session

from tests.harness import GatewayProcess, RecordingUpstream
from tests.jwt_support import wait_until
from tests.oauth2_support import ResourceOwner, add_client, add_user, redirect_query

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["oauth2"]

[[routes]]
path = "/notes/**"
methods = ["POST"]
scopes = ["notes:write"]
auth = ["oauth2"]
"""


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("oauth2-code") / "gw", upstream, routes=ROUTES
    ).start()
    add_user(gateway, "alice", "correct horse battery", "notes:read", "notes:write")
    yield gateway
    gateway.stop()


def test_metadata_names_the_authorization_endpoint(gw: GatewayProcess) -> None:
    doc = httpx.get(gw.url + "/.well-known/oauth-authorization-server").json()
    assert doc["authorization_endpoint"] == gw.url + "/oauth2/authorize"
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert {"authorization_code", "refresh_token"} <= set(doc["grant_types_supported"])


def test_authlib_confidential_client_code_pkce_refresh(gw: GatewayProcess) -> None:
    client = add_client(gw, "notes:read", "notes:write")
    owner = ResourceOwner(gw)
    with OAuth2Client(
        client.id,
        client.secret,
        scope="notes:read",
        redirect_uri=client.redirect_uri,
        code_challenge_method="S256",
    ) as oauth:
        verifier = "v" * 20 + "erifier-" + "x" * 30
        url, state = oauth.create_authorization_url(
            gw.url + "/oauth2/authorize", code_verifier=verifier
        )
        page = owner.go(url)
        page = owner.login(page, "alice", "correct horse battery")
        landed = owner.consent(page)
        query = redirect_query(landed, client)
        assert query["state"] == [state]
        assert query["iss"] == [gw.settings.server.public_url]  # RFC 9207
        token = oauth.fetch_token(
            gw.url + "/oauth2/token",
            authorization_response=landed.headers["location"],
            code_verifier=verifier,
        )
        assert token["scope"] == "notes:read" and token["refresh_token"].startswith("rg_rt_")
        r = oauth.get(gw.url + "/notes/1")
        assert r.status_code == 200, r.text
        seen = gw.upstream.last()
        assert seen.header("x-restguard-subject") == "alice"
        assert seen.header("x-restguard-client-id") == client.id
        assert oauth.post(gw.url + "/notes/1").status_code == 403  # notes:write not granted

        first_refresh = token["refresh_token"]
        renewed = oauth.refresh_token(gw.url + "/oauth2/token", refresh_token=first_refresh)
        assert renewed["refresh_token"] != first_refresh
        assert oauth.get(gw.url + "/notes/2").status_code == 200

    # Reuse of the rotated token: refused, and the whole family with it.
    reuse = httpx.post(
        gw.url + "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": first_refresh},
        auth=(client.id, client.secret or ""),
    )
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    latest = httpx.post(
        gw.url + "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"]},
        auth=(client.id, client.secret or ""),
    )
    assert latest.status_code == 400 and latest.json()["error"] == "invalid_grant"
    bearer = {"authorization": f"Bearer {renewed['access_token']}"}
    wait_until(lambda: httpx.get(gw.url + "/notes/3", headers=bearer).status_code == 401)


def test_requests_oauthlib_public_client_with_remembered_consent(
    gw: GatewayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain HTTP, but on loopback
    client = add_client(gw, "notes:read", "notes:write", public=True)
    owner = ResourceOwner(gw)

    def run() -> dict[str, object]:
        session = OAuth2Session(
            client.id,
            redirect_uri=client.redirect_uri,
            scope=["notes:read", "notes:write"],
            pkce="S256",
        )
        url, _ = session.authorization_url(gw.url + "/oauth2/authorize")
        page = owner.go(url)
        if "/login" in page.text and 'name="password"' in page.text:
            page = owner.login(page, "alice", "correct horse battery")
        if 'action="/consent"' in page.text:
            page = owner.consent(page)
        redirect_query(page, client)
        token = session.fetch_token(
            gw.url + "/oauth2/token",
            authorization_response=page.headers["location"],
            include_client_id=True,
        )
        assert session.get(gw.url + "/notes/9").status_code == 200
        assert session.post(gw.url + "/notes/9").status_code == 200
        return dict(token)

    first = run()
    assert first["scope"] == ["notes:read", "notes:write"]
    # The second time the session and the remembered consent skip both pages.
    second = run()
    assert second["access_token"] != first["access_token"]
    refreshed = OAuth2Session(client.id, token=second).refresh_token(
        gw.url + "/oauth2/token", client_id=client.id, include_client_id=True
    )
    assert refreshed["refresh_token"] != second["refresh_token"]
