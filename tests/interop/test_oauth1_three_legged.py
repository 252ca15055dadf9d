"""OAuth 1.0a's three-legged flow (RFC 5849 §2) end to end with a client we did not write:
requests-oauthlib's ``OAuth1Session`` gets temporary credentials, the resource owner signs in
and authorizes on restguard's pages over HTTP (a subset of scopes), the client exchanges the
verifier for token credentials and calls protected routes through the gateway. Then the
single-use rules (verifier, temporary credentials), ``oob``, denial, and the user revoking the
connection on ``/oauth1/tokens``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests
from requests_oauthlib import OAuth1Session
from requests_oauthlib.oauth1_session import TokenRequestDenied

from restguard.client import OAuth1Auth
from restguard.credentials.oauth1_consumers import new_consumer
from restguard.keys.sealing import open_sealer
from tests.harness import GatewayProcess, RecordingUpstream
from tests.jwt_support import wait_until
from tests.oauth2_support import ResourceOwner, _store_call, add_user, forms

CALLBACK = "http://127.0.0.1:9/oauth1/cb"
PASSWORD = "correct horse battery"
ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["oauth1"]

[[routes]]
path = "/notes/**"
methods = ["POST"]
scopes = ["notes:write"]
auth = ["oauth1"]
"""


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("oauth1-flow") / "gw", upstream, routes=ROUTES
    ).start()
    add_user(gateway, "alice", PASSWORD, "notes:read", "notes:write")
    yield gateway
    gateway.stop()


def add_consumer(
    gw: GatewayProcess, *scopes: str, callback: str | None = CALLBACK
) -> tuple[str, str]:
    record, secret = new_consumer(
        name="Notes sync",
        scopes=scopes,
        callback=callback,
        methods=(),
        rsa_public_key_pem=None,
        now=datetime.now(UTC),
        sealer=open_sealer(gw.settings.base_dir / gw.settings.master_key_path),
    )
    _store_call(gw, lambda store: store.oauth1_consumers.insert(record))
    return record.consumer_key, secret


def authorize(
    owner: ResourceOwner, url: str, scopes: list[str] | None = None, decision: str = "allow"
) -> requests.Response:
    """Open the authorization URL, sign in, decide on the consent form."""
    page = owner.go(url)
    if page.status_code == 200 and forms(page.text)[0].action == "/login":
        page = owner.login(page, "alice", PASSWORD)
    assert page.status_code == 200, (page.status_code, page.text[:300])
    (form,) = forms(page.text)
    assert form.action == "/oauth1/authorize", page.text[:300]
    chosen = [v for _, v, checked in form.checkboxes if checked] if scopes is None else scopes
    return owner.submit(form, {"scope": chosen, "decision": decision})


def test_requests_oauthlib_three_legged_then_protected_calls(
    gw: GatewayProcess, upstream: RecordingUpstream
) -> None:
    key, secret = add_consumer(gw, "notes:read", "notes:write")
    oauth = OAuth1Session(key, client_secret=secret, callback_uri=CALLBACK)
    temporary = oauth.fetch_request_token(gw.url + "/oauth1/request_token")
    assert temporary["oauth_token"].startswith("rg_or_")
    assert temporary["oauth_callback_confirmed"] == "true"

    url = oauth.authorization_url(gw.url + "/oauth1/authorize")
    owner = ResourceOwner(gw)
    landed = authorize(owner, url, scopes=["notes:read"])  # a subset: read only
    assert landed.status_code == 303
    location = landed.headers["location"]
    assert location.startswith(CALLBACK + "?")
    oauth.parse_authorization_response(location)
    tokens = oauth.fetch_access_token(gw.url + "/oauth1/access_token")
    assert tokens["oauth_token"].startswith("rg_ot_")

    upstream.clear()
    r = oauth.get(gw.url + "/notes/1")
    assert r.status_code == 200, r.text
    seen = upstream.last()
    assert seen.header("x-restguard-subject") == "alice"
    assert seen.header("x-restguard-client-id") == key
    assert seen.header("x-restguard-auth-method") == "oauth1"
    assert seen.header("x-restguard-scopes") == "notes:read"
    assert seen.header("authorization") is None  # the credential is not forwarded

    # notes:write was not granted
    count = len(upstream.requests)
    r = oauth.post(gw.url + "/notes/1", data={"text": "hi"})
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    assert len(upstream.requests) == count

    # the verifier and the temporary credentials are single-use (RFC 5849 §2.3)
    again = OAuth1Session(
        key,
        client_secret=secret,
        resource_owner_key=temporary["oauth_token"],
        resource_owner_secret=temporary["oauth_token_secret"],
        verifier=parse_qs(urlsplit(location).query)["oauth_verifier"][0],
    )
    with pytest.raises(TokenRequestDenied) as denied:
        again.fetch_access_token(gw.url + "/oauth1/access_token")
    assert denied.value.status_code == 401

    # the temporary credentials never call a protected route
    temp_session = OAuth1Session(
        key,
        client_secret=secret,
        resource_owner_key=temporary["oauth_token"],
        resource_owner_secret=temporary["oauth_token_secret"],
    )
    assert temp_session.get(gw.url + "/notes/1").status_code == 401
    assert len(upstream.requests) == count


def test_oob_shows_the_verifier_and_write_scope_works(
    gw: GatewayProcess, upstream: RecordingUpstream
) -> None:
    key, secret = add_consumer(gw, "notes:read", "notes:write", callback=None)
    oauth = OAuth1Session(key, client_secret=secret, callback_uri="oob")
    oauth.fetch_request_token(gw.url + "/oauth1/request_token")
    page = authorize(ResourceOwner(gw), oauth.authorization_url(gw.url + "/oauth1/authorize"))
    assert page.status_code == 200
    verifier = page.text.split('<code id="verifier">')[1].split("</code>")[0]
    tokens = oauth.fetch_access_token(gw.url + "/oauth1/access_token", verifier=verifier)
    assert tokens["oauth_token"].startswith("rg_ot_")
    r = oauth.post(gw.url + "/notes/2", data={"text": "hello"})
    assert r.status_code == 200, r.text
    assert upstream.last().body == b"text=hello"
    assert upstream.last().header("x-restguard-scopes") == "notes:read notes:write"


def test_restguard_client_oauth1auth_with_httpx_and_requests(
    gw: GatewayProcess, upstream: RecordingUpstream
) -> None:
    """The flow's token credentials in ``restguard.client.OAuth1Auth``: a GET, and a form POST
    whose body parameters are signed, with httpx and with requests."""
    key, secret = add_consumer(gw, "notes:read", "notes:write")
    oauth = OAuth1Session(key, client_secret=secret, callback_uri=CALLBACK)
    oauth.fetch_request_token(gw.url + "/oauth1/request_token")
    landed = authorize(ResourceOwner(gw), oauth.authorization_url(gw.url + "/oauth1/authorize"))
    oauth.parse_authorization_response(landed.headers["location"])
    tokens = oauth.fetch_access_token(gw.url + "/oauth1/access_token")
    for method in ("HMAC-SHA1", "HMAC-SHA256"):
        auth = OAuth1Auth(
            key,
            secret,
            token=tokens["oauth_token"],
            token_secret=tokens["oauth_token_secret"],
            signature_method=method,
        )
        r = httpx.get(gw.url + "/notes/4?q=a+b", auth=auth)
        assert r.status_code == 200, r.text
        r = httpx.post(gw.url + "/notes/4", data={"text": "x y"}, auth=auth)
        assert r.status_code == 200, r.text
        assert upstream.last().body == b"text=x+y"
        r = requests.post(gw.url + "/notes/5", data={"text": "z"}, auth=auth, timeout=10)
        assert r.status_code == 200, r.text
        assert upstream.last().header("x-restguard-subject") == "alice"
    wrong = OAuth1Auth(key, secret, token=tokens["oauth_token"], token_secret="nope")
    assert httpx.get(gw.url + "/notes/4", auth=wrong).status_code == 401


def test_callback_must_be_registered_or_oob(gw: GatewayProcess) -> None:
    key, secret = add_consumer(gw, "notes:read")
    oauth = OAuth1Session(key, client_secret=secret, callback_uri="https://evil.example/cb")
    with pytest.raises(TokenRequestDenied) as denied:
        oauth.fetch_request_token(gw.url + "/oauth1/request_token")
    assert denied.value.status_code == 400
    # without oauth_callback at all (RFC 5849 §2.1: REQUIRED)
    bare = OAuth1Session(key, client_secret=secret)
    with pytest.raises(TokenRequestDenied) as denied:
        bare.fetch_request_token(gw.url + "/oauth1/request_token")
    assert denied.value.status_code == 400
    # a wrong consumer secret
    wrong = OAuth1Session(key, client_secret=secret[:-2] + "xx", callback_uri=CALLBACK)
    with pytest.raises(TokenRequestDenied) as denied:
        wrong.fetch_request_token(gw.url + "/oauth1/request_token")
    assert denied.value.status_code == 401


def test_scope_parameter_narrows_and_cannot_widen(gw: GatewayProcess) -> None:
    key, secret = add_consumer(gw, "notes:read")
    wide = OAuth1Session(key, client_secret=secret, callback_uri=CALLBACK)
    with pytest.raises(TokenRequestDenied) as denied:
        wide.fetch_request_token(gw.url + "/oauth1/request_token?scope=notes%3Awrite")
    assert denied.value.status_code == 400


def test_deny_revokes_the_temporary_credentials(gw: GatewayProcess) -> None:
    key, secret = add_consumer(gw, "notes:read")
    oauth = OAuth1Session(key, client_secret=secret, callback_uri=CALLBACK)
    oauth.fetch_request_token(gw.url + "/oauth1/request_token")
    url = oauth.authorization_url(gw.url + "/oauth1/authorize")
    owner = ResourceOwner(gw)
    page = authorize(owner, url, decision="deny")
    assert page.status_code == 200 and "Request denied" in page.text
    again = owner.go(url)  # the link is spent
    assert again.status_code == 400


def test_user_lists_and_revokes_a_connection(
    gw: GatewayProcess, upstream: RecordingUpstream
) -> None:
    key, secret = add_consumer(gw, "notes:read")
    oauth = OAuth1Session(key, client_secret=secret, callback_uri=CALLBACK)
    oauth.fetch_request_token(gw.url + "/oauth1/request_token")
    owner = ResourceOwner(gw)
    landed = authorize(owner, oauth.authorization_url(gw.url + "/oauth1/authorize"))
    oauth.parse_authorization_response(landed.headers["location"])
    tokens = oauth.fetch_access_token(gw.url + "/oauth1/access_token")
    assert oauth.get(gw.url + "/notes/3").status_code == 200

    page = owner.go("/oauth1/tokens")
    assert page.status_code == 200
    mine = [f for f in forms(page.text) if f.inputs.get("token") == tokens["oauth_token"]]
    assert len(mine) == 1 and "Notes sync" in page.text
    after = owner.submit(mine[0], {})
    assert after.status_code == 200 and "no longer has access" in after.text
    assert tokens["oauth_token"] not in after.text
    wait_until(lambda: oauth.get(gw.url + "/notes/3").status_code == 401, timeout=3)

    # a stranger's browser (no session) is sent to sign in; a forged form is refused
    stranger = ResourceOwner(gw)
    assert (
        "/login?next="
        in stranger.http.get(gw.url + "/oauth1/tokens", allow_redirects=False, timeout=10).headers[
            "location"
        ]
    )
    forged = owner.http.post(
        gw.url + "/oauth1/tokens",
        data={"token": tokens["oauth_token"], "csrf": "x"},
        allow_redirects=False,
        timeout=10,
    )
    assert forged.status_code == 403


def test_signed_endpoint_requests_are_audited_without_secrets(gw: GatewayProcess) -> None:
    key, secret = add_consumer(gw, "notes:read")
    oauth = OAuth1Session(key, client_secret=secret, callback_uri=CALLBACK)
    temporary = oauth.fetch_request_token(gw.url + "/oauth1/request_token")
    wrong = OAuth1Session(key, client_secret="x" * 43, callback_uri=CALLBACK)
    with pytest.raises(TokenRequestDenied):
        wrong.fetch_request_token(gw.url + "/oauth1/request_token")
    events = [
        e
        for e in gw.audit_events()
        if e.get("path") == "/oauth1/request_token" and e.get("credential_id") == "oauth1:" + key
    ]
    assert [(e["status"], e["auth_method"]) for e in events] == [(200, "oauth1"), (401, "oauth1")]
    text = (gw.settings.audit_path or pytest.fail("no audit log")).read_text()
    assert secret not in text and temporary["oauth_token_secret"] not in text
