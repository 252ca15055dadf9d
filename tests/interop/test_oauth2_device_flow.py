"""The device authorization grant (RFC 8628) end to end with clients we did not write: curl
makes the device authorization request, oauthlib's ``DeviceClient`` (RFC 8628 §3.4, through
requests-oauthlib's ``OAuth2Session``) polls the token endpoint; the resource owner signs in,
enters the user code and approves on restguard's pages over HTTP; the access token then calls a
protected route through the gateway, and the refresh token renews it."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from oauthlib.oauth2 import DeviceClient
from oauthlib.oauth2.rfc6749.errors import CustomOAuth2Error, InvalidGrantError
from requests_oauthlib import OAuth2Session

from tests.harness import GatewayProcess, RecordingUpstream
from tests.oauth2_support import ResourceOwner, add_client, add_user

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
URN = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("oauth2-device") / "gw", upstream, routes=ROUTES
    ).start()
    add_user(gateway, "alice", "correct horse battery", "notes:read", "notes:write")
    yield gateway
    gateway.stop()


def curl_device_authorization(gw: GatewayProcess, *args: str) -> tuple[int, dict[str, object]]:
    out = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args, gw.url + "/oauth2/device_authorization"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body)


def test_metadata_names_the_device_authorization_endpoint(gw: GatewayProcess) -> None:
    doc = httpx.get(gw.url + "/.well-known/oauth-authorization-server").json()
    assert doc["device_authorization_endpoint"] == gw.url + "/oauth2/device_authorization"
    assert URN in doc["grant_types_supported"]


def test_curl_and_oauthlib_device_client(
    gw: GatewayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain HTTP, but on loopback
    tv = add_client(
        gw,
        "notes:read",
        "notes:write",
        public=True,
        grants=("device_code", "refresh_token"),
        redirect_uris=(),
    )
    status, started = curl_device_authorization(
        gw, "-d", f"client_id={tv.id}", "-d", "scope=notes:read notes:write"
    )
    assert status == 200, started
    assert started["verification_uri"] == gw.url + "/device"
    assert started["interval"] == 5 and started["expires_in"] == 600
    device_code, user_code = str(started["device_code"]), str(started["user_code"])

    session = OAuth2Session(client=DeviceClient(tv.id))
    token_url = gw.url + "/oauth2/token"
    polled = time.monotonic()
    with pytest.raises(CustomOAuth2Error) as caught:
        session.fetch_token(token_url, device_code=device_code, include_client_id=True)
    assert caught.value.error == "authorization_pending"

    # The user, on another screen: the complete URI prefills the code; sign in; grant only
    # notes:read of the two asked for.
    owner = ResourceOwner(gw)
    page = owner.go(str(started["verification_uri_complete"]))
    page = owner.login(page, "alice", "correct horse battery")
    assert f'value="{user_code}"' in page.text  # prefilled, not submitted
    page = owner.enter_user_code(page, user_code.lower().replace("-", " "))
    assert "Notes app" in page.text and user_code in page.text  # RFC 8628 §5.4: confirm
    done = owner.decide_device(page, scopes=["notes:read"])
    assert done.status_code == 200 and "return to your device" in done.text

    time.sleep(max(0.0, polled + float(str(started["interval"])) + 0.2 - time.monotonic()))
    token = session.fetch_token(token_url, device_code=device_code, include_client_id=True)
    assert token["scope"] == ["notes:read"]
    assert token["refresh_token"].startswith("rg_rt_")
    r = session.get(gw.url + "/notes/1")
    assert r.status_code == 200, r.text
    seen = gw.upstream.last()
    assert seen.header("x-restguard-subject") == "alice"
    assert seen.header("x-restguard-client-id") == tv.id
    assert session.post(gw.url + "/notes/1").status_code == 403  # notes:write not granted

    # Exactly one token response: the device code is spent.
    time.sleep(5.2)
    with pytest.raises(InvalidGrantError):
        session.fetch_token(token_url, device_code=device_code, include_client_id=True)

    renewed = session.refresh_token(token_url, client_id=tv.id, include_client_id=True)
    assert renewed["refresh_token"] != token["refresh_token"]
    assert session.get(gw.url + "/notes/2").status_code == 200


def test_curl_confidential_client_with_basic(gw: GatewayProcess) -> None:
    tv = add_client(gw, "notes:read", grants=("device_code",), redirect_uris=())
    assert tv.secret is not None
    status, started = curl_device_authorization(gw, "-u", f"{tv.id}:{tv.secret}", "-d", "")
    assert status == 200 and str(started["device_code"]).startswith("rg_dc_")
    status, refused = curl_device_authorization(gw, "-u", f"{tv.id}:wrong", "-d", "")
    assert status == 401 and refused["error"] == "invalid_client"
