"""Attack review of the authorization code grant with PKCE, the login and consent pages and
refresh tokens (RFC 6749 §4.1, §6, §10; RFC 7636; RFC 9207; RFC 9700), all through the real
gateway over HTTP, redirects never followed to the client.

One named test per attack, each with its valid twin (the same request done right works).
Findings of this review (they failed before the fix):

* ``test_concurrent_double_exchange_revokes_what_the_winner_got`` (a race: failed about half
  the runs) and ``test_a_replay_between_use_and_family_start_still_revokes`` (the same,
  deterministic): a code replayed while its first exchange was still running left the first
  exchange's refresh token alive (the replay revoked a family that did not exist yet).
* ``test_a_code_issued_before_user_remove_gives_no_tokens``: a code issued just before
  ``user remove`` still gave tokens (a 30-day refresh token) for the removed user.
* ``test_a_consent_post_cannot_carry_another_requests_token``: the consent form's CSRF token
  was bound to the session only, so one form's token approved any other pending request.
* ``test_a_long_state_or_redirect_uri_still_completes``: a request within the documented limits
  (state up to 1024 characters, redirect URI up to 2000) was sealed into a link the pages then
  refused as "expired".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests
from click.testing import CliRunner

from restguard.cli.main import cli
from restguard.clock import SystemClock
from restguard.keys.sealing import open_sealer
from restguard.oauth2.access_tokens import AccessTokens
from restguard.oauth2.errors import OAuthError
from restguard.oauth2.grants.authorization_code import AuthorizationCodeGrant
from restguard.oauth2.refresh_tokens import RefreshTokens
from restguard.oauth2.web_tokens import WebTokens
from tests.attacks.wire import request, send
from tests.harness import GatewayProcess, RecordingUpstream
from tests.jwt_support import wait_until
from tests.oauth2_support import (
    Client,
    ResourceOwner,
    add_client,
    add_user,
    forms,
    pkce,
)
from tests.oauth2_support import _store_call as store_call

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["oauth2"]
"""
PASSWORD = "correct horse battery"
CB = "http://127.0.0.1:9/cb"


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("codeattack") / "gw",
        upstream,
        routes=ROUTES,
        extra={"server.failed_attempts": '"100000/minute"'},
    ).start()
    add_user(gateway, "alice", PASSWORD, "notes:read", "notes:write")
    add_user(gateway, "bob", PASSWORD, "notes:read")
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def app(gw: GatewayProcess) -> Client:
    return add_client(gw, "notes:read", "notes:write", redirect_uris=(CB,))


@pytest.fixture(scope="module")
def other(gw: GatewayProcess) -> Client:
    return add_client(gw, "notes:read", "notes:write", redirect_uris=("http://127.0.0.1:9/other",))


# --- helpers -------------------------------------------------------------------------------------


def query_for(client: Client, challenge: str, **over: str | None) -> dict[str, str]:
    q: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": client.redirect_uri,
        "scope": "notes:read",
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    q.update(over)
    return {k: v for k, v in q.items() if v is not None}


def raw_get(gw: GatewayProcess, target: str, **kw: Any) -> requests.Response:
    return requests.get(gw.url + target, allow_redirects=False, timeout=10, **kw)


def authorize(gw: GatewayProcess, query: str | dict[str, str]) -> requests.Response:
    text = query if isinstance(query, str) else urlencode(query)
    return raw_get(gw, "/oauth2/authorize?" + text)


def assert_error_page(r: requests.Response, status: int = 400) -> None:
    """RFC 6749 §4.1.2.1: shown to the user, never a redirect anywhere."""
    assert r.status_code == status, (r.status_code, r.headers.get("location"), r.text[:200])
    assert "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"


def landing(r: requests.Response, client: Client) -> dict[str, str]:
    """The authorization response at the client's redirect URI, each parameter once."""
    assert r.status_code == 303, (r.status_code, r.text[:300])
    location = r.headers["location"]
    assert location.startswith(client.redirect_uri + "?"), location
    parsed = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in parsed.values()), parsed
    return {k: v[0] for k, v in parsed.items()}


def signed_in(gw: GatewayProcess, username: str = "alice") -> ResourceOwner:
    """A browser with a session: signed in once through a throwaway flow."""
    owner = ResourceOwner(gw)
    helper = add_client(gw, "notes:read", "notes:write", redirect_uris=(CB,))
    _, challenge = pkce()
    owner.authorize(helper, username, PASSWORD, scope="notes:read", challenge=challenge)
    return owner


def front(
    gw: GatewayProcess,
    client: Client,
    *,
    owner: ResourceOwner | None = None,
    username: str = "alice",
    scope: str = "notes:read",
    state: str = "xyz",
) -> tuple[str, str, ResourceOwner]:
    """(code, verifier, owner): the whole front channel done right."""
    owner = owner or ResourceOwner(gw)
    verifier, challenge = pkce()
    got = owner.authorize(client, username, PASSWORD, scope=scope, state=state, challenge=challenge)
    assert got["state"] == [state] and set(got) == {"code", "state", "iss"}, got
    return got["code"][0], verifier, owner


def token(gw: GatewayProcess, client: Client, **form: str) -> requests.Response:
    auth = (client.id, client.secret) if client.secret else None
    if client.secret is None:
        form = {"client_id": client.id, **form}
    return requests.post(gw.url + "/oauth2/token", data=form, auth=auth, timeout=10)


def exchange(
    gw: GatewayProcess, client: Client, code: str, verifier: str | None, **extra: str
) -> requests.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri}
    if verifier is not None:
        form["code_verifier"] = verifier
    form.update(extra)
    return token(gw, client, **form)


def refresh(gw: GatewayProcess, client: Client, rt: str, **extra: str) -> requests.Response:
    return token(gw, client, grant_type="refresh_token", refresh_token=rt, **extra)


def assert_grant_error(r: requests.Response, error: str = "invalid_grant") -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["error"] == error, r.text
    assert r.headers["cache-control"] == "no-store"


def notes(gw: GatewayProcess, access_token: str) -> int:
    headers = {"authorization": "Bearer " + access_token}
    return requests.get(gw.url + "/notes/1", headers=headers, timeout=10).status_code


def ok_tokens(r: requests.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()
    return body


def fresh_client(gw: GatewayProcess, uri: str = CB) -> Client:
    """A client no user has consented to yet (remembered consent skips the form)."""
    return add_client(gw, "notes:read", "notes:write", redirect_uris=(uri,))


def consent_form(owner: ResourceOwner, gw: GatewayProcess, client: Client, **over: str) -> Any:
    """The consent page's form for a fresh request by ``client`` (the owner has a session and
    has not consented to ``client`` yet)."""
    _, challenge = pkce()
    page = owner.go("/oauth2/authorize?" + urlencode(query_for(client, challenge, **over)))
    assert page.status_code == 200, (page.status_code, page.headers.get("location"))
    (form,) = forms(page.text)
    assert form.action == "/consent"
    return form


def post_page(
    owner: ResourceOwner, path: str, body: str | dict[str, Any], **headers: str
) -> requests.Response:
    return owner.http.post(
        owner.gw.url + path,
        data=body,
        headers=headers or None,
        allow_redirects=False,
        timeout=10,
    )


# --- the valid twin ------------------------------------------------------------------------------


def test_the_whole_flow_done_right(gw: GatewayProcess, app: Client) -> None:
    owner = ResourceOwner(gw)
    verifier, challenge = pkce()
    page = owner.go("/oauth2/authorize?" + urlencode(query_for(app, challenge)))
    page = owner.login(page, "alice", PASSWORD)
    (form,) = forms(page.text)
    r = owner.submit(form, {"scope": ["notes:read"], "decision": "allow"})
    got = landing(r, app)
    # RFC 9207 §2: iss is exactly the metadata's issuer; nothing but code, state and iss.
    issuer = requests.get(gw.url + "/.well-known/oauth-authorization-server", timeout=5).json()
    assert set(got) == {"code", "state", "iss"} and got["iss"] == issuer["issuer"]
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    body = ok_tokens(exchange(gw, app, got["code"], verifier))
    assert body["scope"] == "notes:read" and body["refresh_token"].startswith("rg_rt_")
    assert notes(gw, body["access_token"]) == 200


# --- redirect URI and client: an error page, never a redirect -----------------------------------

BAD_REDIRECTS = [
    "http://127.0.0.1:9/cbx",  # prefix match
    "http://127.0.0.1:9/c",  # shorter
    "http://127.0.0.1:9/cb/",  # trailing slash
    "http://127.0.0.1:9/cb/../evil",  # path traversal
    "http://127.0.0.1:9/cb/..%2Fevil",
    "http://127.0.0.1:9/cb?x=1",  # extra query
    "http://127.0.0.1:9/cb#frag",  # fragment
    "http://127.0.0.1:19/cb",  # another port
    "http://127.0.0.1/cb",  # default port
    "http://127.0.0.1:09/cb",
    "HTTP://127.0.0.1:9/cb",  # case
    "http://127.0.0.1:9/CB",
    "https://127.0.0.1:9/cb",
    "http://127.0.0.1:9@evil.example/cb",  # userinfo
    "http://evil.example@127.0.0.1:9/cb",
    "http://127.0.0.1:9/%63b",  # percent-encoded unreserved
    "http://127.0.0.1:9/cb%00",
    "http://127.0.0.1:9/cb%20",
    "http://127.0.0.1:9\\@evil.example/cb",
    "http://localhost:9/cb",
    "http://[::1]:9/cb",
    " http://127.0.0.1:9/cb",
    "//127.0.0.1:9/cb",
    "javascript:alert(1)//http://127.0.0.1:9/cb",
]


@pytest.mark.parametrize("uri", BAD_REDIRECTS)
def test_redirect_uri_not_exactly_registered_gets_an_error_page(
    gw: GatewayProcess, app: Client, uri: str
) -> None:
    _, challenge = pkce()
    assert_error_page(authorize(gw, query_for(app, challenge, redirect_uri=uri)))
    # twin: the exact URI goes on to sign in
    r = authorize(gw, query_for(app, challenge))
    assert r.status_code == 303 and r.headers["location"].startswith("/login?request=")


def test_double_encoded_redirect_uri_gets_an_error_page(gw: GatewayProcess, app: Client) -> None:
    _, challenge = pkce()
    q = urlencode(query_for(app, challenge, redirect_uri=None))
    assert_error_page(authorize(gw, q + "&redirect_uri=" + quote(quote(CB, safe=""), safe="")))
    r = authorize(gw, q + "&redirect_uri=" + quote(CB, safe=""))  # twin: encoded once
    assert r.status_code == 303


def test_repeated_redirect_uri_or_client_id_gets_an_error_page(
    gw: GatewayProcess, app: Client, other: Client
) -> None:
    _, challenge = pkce()
    q = urlencode(query_for(app, challenge))
    assert_error_page(authorize(gw, q + "&redirect_uri=" + quote("http://evil.example/cb")))
    assert_error_page(authorize(gw, q + "&redirect_uri=" + quote(CB)))  # even the same one
    assert_error_page(authorize(gw, q + "&client_id=" + other.id))
    assert authorize(gw, q).status_code == 303


def test_another_clients_redirect_uri_gets_an_error_page(
    gw: GatewayProcess, app: Client, other: Client
) -> None:
    _, challenge = pkce()
    assert_error_page(authorize(gw, query_for(app, challenge, redirect_uri=other.redirect_uri)))


def test_unknown_missing_or_revoked_client_gets_an_error_page(
    gw: GatewayProcess,
) -> None:
    doomed = add_client(gw, "notes:read", redirect_uris=(CB,))
    _, challenge = pkce()
    assert authorize(gw, query_for(doomed, challenge)).status_code == 303  # twin
    for client_id in ("rg_ci_0000000000000000", "", "x" * 300, doomed.id.upper()):
        assert_error_page(authorize(gw, query_for(doomed, challenge, client_id=client_id)))
    assert_error_page(authorize(gw, query_for(doomed, challenge, client_id=None)))

    async def revoke(store: Any) -> None:
        await store.oauth2_clients.revoke(doomed.id, datetime.now(UTC))

    store_call(gw, revoke)
    wait_until(lambda: authorize(gw, query_for(doomed, challenge)).status_code == 400, timeout=1.5)
    assert_error_page(authorize(gw, query_for(doomed, challenge)))


def test_malformed_authorization_query_gets_an_error_page(gw: GatewayProcess, app: Client) -> None:
    _, challenge = pkce()
    q = urlencode(query_for(app, challenge))
    for bad in (q + "&x=%ff", q + "&&", q + "&" + "&".join(f"p{i}=1" for i in range(40))):
        assert_error_page(authorize(gw, bad))


# --- errors after the redirect URI is known: redirected with state and iss -----------------------


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),  # absent means plain
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": "s256"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"code_challenge": "a" * 42 + "="}, "invalid_request"),
        ({"code_challenge": "a" * 43 + "!"}, "invalid_request"),
        ({"code_challenge": "a" * 128}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"scope": "admin"}, "invalid_scope"),
        ({"scope": "notes:read\tnotes:write"}, "invalid_scope"),
    ],
)
def test_bad_pkce_or_request_is_redirected_with_state_and_iss(
    gw: GatewayProcess, app: Client, over: dict[str, str | None], error: str
) -> None:
    _, challenge = pkce()
    got = landing(authorize(gw, query_for(app, challenge, state="s t&a=te", **over)), app)
    assert got["error"] == error and got["state"] == "s t&a=te"
    assert got["iss"] == gw.settings.server.public_url and "code" not in got


# --- the token endpoint: PKCE downgrade, client binding, replay ---------------------------------


def test_pkce_downgrade_at_the_token_endpoint_leaves_the_code_usable(
    gw: GatewayProcess, app: Client
) -> None:
    code, verifier, _ = front(gw, app)
    _, other_verifier, _ = front(gw, app)  # the verifier of another code
    assert_grant_error(exchange(gw, app, code, None))
    assert_grant_error(exchange(gw, app, code, ""))
    assert_grant_error(exchange(gw, app, code, "x" * 43))
    assert_grant_error(exchange(gw, app, code, other_verifier))
    assert_grant_error(exchange(gw, app, code, verifier + "x"))
    ok_tokens(exchange(gw, app, code, verifier))  # the legitimate client still gets it


def test_code_presented_by_another_client_is_refused_and_not_burnt(
    gw: GatewayProcess, app: Client, other: Client
) -> None:
    code, verifier, _ = front(gw, app)
    r = exchange(gw, other, code, verifier, redirect_uri=app.redirect_uri)
    assert_grant_error(r)
    public = add_client(gw, "notes:read", public=True, redirect_uris=(CB,))
    assert_grant_error(exchange(gw, public, code, verifier))
    ok_tokens(exchange(gw, app, code, verifier))


def test_redirect_uri_mismatch_between_authorize_and_token(
    gw: GatewayProcess,
) -> None:
    two = add_client(gw, "notes:read", redirect_uris=(CB, "http://127.0.0.1:9/two"))
    code, verifier, _ = front(gw, two)
    assert_grant_error(exchange(gw, two, code, verifier, redirect_uri="http://127.0.0.1:9/two"))
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    assert_grant_error(token(gw, two, **form))  # named at authorize: required at the token
    ok_tokens(exchange(gw, two, code, verifier))


def test_code_replay_is_refused_and_revokes_what_it_gave(gw: GatewayProcess, app: Client) -> None:
    code, verifier, _ = front(gw, app)
    first = ok_tokens(exchange(gw, app, code, verifier))
    assert notes(gw, first["access_token"]) == 200
    assert_grant_error(exchange(gw, app, code, verifier))
    wait_until(lambda: notes(gw, first["access_token"]) == 401, timeout=1.5)
    assert_grant_error(refresh(gw, app, first["refresh_token"]))


def _race(n: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_double_exchange_revokes_what_the_winner_got(
    gw: GatewayProcess, app: Client
) -> None:
    """FINDING: the loser revoked the winner's refresh-token family before it was written.
    (A race: several rounds, so that the old code failed nearly every run.)"""
    owner = signed_in(gw)
    for _ in range(15):
        code, verifier, _ = front(gw, app, owner=owner)
        results = _race(8, lambda c=code, v=verifier: exchange(gw, app, c, v))
        won = [r for r in results if r.status_code == 200]
        assert len(won) == 1, [(r.status_code, r.text) for r in results]
        for r in results:
            if r.status_code != 200:
                assert_grant_error(r)
        # the code was presented twice: what it gave is revoked (RFC 6749 §4.1.2)
        body = won[0].json()
        assert_grant_error(refresh(gw, app, body["refresh_token"]))
        wait_until(lambda b=body: notes(gw, b["access_token"]) == 401, timeout=1.5)


class _Signer:
    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        return "not-a-jwt"


def test_a_replay_between_use_and_family_start_still_revokes(
    gw: GatewayProcess, app: Client
) -> None:
    """FINDING, deterministically: the replay lands right after the winning exchange used the
    code (in-process grant on the gateway's own store); the refresh token the winner returns
    must then be refused by the gateway."""
    code, verifier, _ = front(gw, app)
    replays: list[BaseException] = []

    async def run(store: Any) -> str:
        record = await store.oauth2_clients.get(app.id)
        tokens = AccessTokens(_Signer(), "iss", "aud", SystemClock())
        codes = store.oauth2_codes
        form = {"code": code, "code_verifier": verifier, "redirect_uri": app.redirect_uri}

        class Interleaved:
            get, insert = codes.get, codes.insert

            async def consume(self, *args: Any, **kwargs: Any) -> bool:
                won: bool = await codes.consume(*args, **kwargs)
                try:  # the replay, between the use and whatever follows it
                    await grant(record, form, datetime.now(UTC))
                except OAuthError as err:
                    replays.append(err)
                return won

        grant = AuthorizationCodeGrant(
            Interleaved(),  # type: ignore[arg-type]
            tokens,
            RefreshTokens(store.refresh_tokens),
            store.revoked_tokens,
        )
        issued = await grant(record, form, datetime.now(UTC))
        assert issued.refresh_token is not None
        return issued.refresh_token

    rt = store_call(gw, run)
    assert len(replays) == 1 and replays[0].error == "invalid_grant"
    assert_grant_error(refresh(gw, app, rt))


def test_a_code_issued_before_user_remove_gives_no_tokens(gw: GatewayProcess, app: Client) -> None:
    """FINDING: the code outlived its user: tokens (30-day refresh) for a removed user."""
    add_user(gw, "carol", PASSWORD, "notes:read")
    code, verifier, _ = front(gw, app, username="carol")
    twin_code, twin_verifier, _ = front(gw, app, username="carol")
    twin = ok_tokens(exchange(gw, app, twin_code, twin_verifier))  # twin, before the removal
    done = CliRunner().invoke(cli, ["user", "remove", "carol", "--config", str(gw.config)])
    assert done.exit_code == 0, done.output
    assert_grant_error(exchange(gw, app, code, verifier))
    assert_grant_error(refresh(gw, app, twin["refresh_token"]))


# --- scopes ------------------------------------------------------------------------------------


def test_consent_form_cannot_grant_a_scope_not_offered(gw: GatewayProcess, app: Client) -> None:
    owner = signed_in(gw)
    app = fresh_client(gw)
    for posted in (["notes:read", "notes:write"], ["admin"], ["notes:read", "restguard:admin"]):
        form = consent_form(owner, gw, app, scope="notes:read")
        r = owner.submit(form, {"scope": posted, "decision": "allow"})
        assert_error_page(r)
    form = consent_form(owner, gw, app, scope="notes:read")
    got = landing(owner.submit(form, {"scope": ["notes:read"], "decision": "allow"}), app)
    assert "code" in got


def test_a_user_cannot_grant_a_scope_they_lack(gw: GatewayProcess) -> None:
    client = add_client(gw, "notes:read", "notes:write", redirect_uris=(CB,))
    owner = signed_in(gw, "bob")  # bob may grant notes:read only
    form = consent_form(owner, gw, client, scope="notes:read notes:write")
    assert [v for _, v, _ in form.checkboxes] == ["notes:read"]
    assert_error_page(owner.submit(form, {"scope": ["notes:write"], "decision": "allow"}))
    form = consent_form(owner, gw, client, scope="notes:read notes:write")
    got = landing(owner.submit(form, {"scope": ["notes:read"], "decision": "allow"}), client)
    verifier_less = exchange(gw, client, got["code"], None)
    assert_grant_error(verifier_less)
    # only what the user could grant: asking for notes:write alone ends in access_denied
    owner2 = signed_in(gw, "bob")
    _, challenge = pkce()
    r = owner2.go(
        "/oauth2/authorize?" + urlencode(query_for(client, challenge, scope="notes:write"))
    )
    assert landing(r, client)["error"] == "access_denied"


def test_refresh_cannot_widen_the_scope(gw: GatewayProcess, app: Client) -> None:
    code, verifier, _ = front(gw, app, scope="notes:read")
    rt = ok_tokens(exchange(gw, app, code, verifier))["refresh_token"]
    for scope in ("notes:read notes:write", "notes:write", "restguard:admin"):
        assert_grant_error(refresh(gw, app, rt, scope=scope), "invalid_scope")
    renewed = ok_tokens(refresh(gw, app, rt, scope="notes:read"))
    assert renewed["scope"] == "notes:read"


# --- refresh tokens ------------------------------------------------------------------------------


def test_refresh_reuse_revokes_the_family(gw: GatewayProcess, app: Client) -> None:
    code, verifier, _ = front(gw, app)
    first = ok_tokens(exchange(gw, app, code, verifier))
    second = ok_tokens(refresh(gw, app, first["refresh_token"]))
    assert notes(gw, second["access_token"]) == 200
    assert_grant_error(refresh(gw, app, first["refresh_token"]))  # the reuse
    assert_grant_error(refresh(gw, app, second["refresh_token"]))  # the family is gone
    wait_until(lambda: notes(gw, second["access_token"]) == 401, timeout=1.5)


def test_concurrent_refreshes_with_one_token_yield_one_success(
    gw: GatewayProcess, app: Client
) -> None:
    code, verifier, _ = front(gw, app)
    rt = ok_tokens(exchange(gw, app, code, verifier))["refresh_token"]
    results = _race(4, lambda: refresh(gw, app, rt))
    assert sorted(r.status_code for r in results) == [200, 400, 400, 400]


def test_refresh_token_of_another_client_is_refused(
    gw: GatewayProcess, app: Client, other: Client
) -> None:
    code, verifier, _ = front(gw, app)
    rt = ok_tokens(exchange(gw, app, code, verifier))["refresh_token"]
    assert_grant_error(refresh(gw, other, rt))
    public = add_client(gw, "notes:read", public=True, redirect_uris=(CB,))
    assert_grant_error(refresh(gw, public, rt))
    ok_tokens(refresh(gw, app, rt))  # not burnt by the others


def test_refresh_tokens_revoked_and_introspected_only_by_their_client(
    gw: GatewayProcess, app: Client, other: Client
) -> None:
    code, verifier, _ = front(gw, app)
    rt = ok_tokens(exchange(gw, app, code, verifier))["refresh_token"]
    auth_other = (other.id, other.secret or "")
    r = requests.post(gw.url + "/oauth2/introspect", data={"token": rt}, auth=auth_other)
    assert r.json() == {"active": False}
    r = requests.post(gw.url + "/oauth2/revoke", data={"token": rt}, auth=auth_other)
    assert r.status_code == 400
    auth_app = (app.id, app.secret or "")
    r = requests.post(gw.url + "/oauth2/introspect", data={"token": rt}, auth=auth_app)
    assert r.json()["active"] is True
    assert requests.post(gw.url + "/oauth2/revoke", data={"token": rt}, auth=auth_app).ok
    assert_grant_error(refresh(gw, app, rt))


# --- state ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        "a b",
        "a+b",
        "x&code=evil&iss=http://evil",
        "k=v",
        "100%",
        "%41",
        "caf\u00e9 \u2603 \U0001f600",
        "#frag",
        "\r\nSet-Cookie: rg_session=evil",
        "<script>alert(1)</script>",
        "'\"`",
    ],
)
def test_state_is_echoed_untouched_and_cannot_inject(
    gw: GatewayProcess, app: Client, state: str
) -> None:
    owner = signed_in(gw)
    code, _, _ = front(gw, app, owner=owner, state=state)  # asserts state == sent
    # and on the error path too
    _, challenge = pkce()
    r = authorize(gw, query_for(app, challenge, state=state, code_challenge_method="plain"))
    assert landing(r, app)["state"] == state
    assert "set-cookie" not in r.headers and code.startswith("rg_ac_")


# --- CSRF, cookies and sessions -----------------------------------------------------------------


def test_consent_post_without_a_valid_csrf_token_is_refused(
    gw: GatewayProcess, app: Client
) -> None:
    owner = signed_in(gw)
    app = fresh_client(gw)
    form = consent_form(owner, gw, app)
    mallory = signed_in(gw, "bob")
    foreign = consent_form(mallory, gw, app).inputs["csrf"]
    login_page = ResourceOwner(gw).go("/oauth2/authorize?" + urlencode(query_for(app, pkce()[1])))
    login_csrf = forms(login_page.text)[0].inputs["csrf"]
    for csrf in (None, "", foreign, login_csrf, form.inputs["csrf"][:-2], form.inputs["request"]):
        fields = {**form.inputs, "scope": "notes:read", "decision": "allow"}
        if csrf is None:
            del fields["csrf"]
        else:
            fields["csrf"] = csrf
        r = post_page(owner, "/consent", fields)
        assert_error_page(r, 403)
    # deny needs it too
    r = post_page(owner, "/consent", {**form.inputs, "csrf": foreign, "decision": "deny"})
    assert_error_page(r, 403)
    landing(owner.submit(form, {"scope": ["notes:read"], "decision": "allow"}), app)


def test_a_consent_post_cannot_carry_another_requests_token(
    gw: GatewayProcess, app: Client, other: Client
) -> None:
    """FINDING: the consent CSRF token was bound to the session, not to the request shown."""
    owner = signed_in(gw)
    app, other = fresh_client(gw), fresh_client(gw, "http://127.0.0.1:9/other")
    shown = consent_form(owner, gw, app)  # the user sees "Notes app" (app)
    hidden = consent_form(owner, gw, other)  # another pending request in the same session
    fields = {
        "request": hidden.inputs["request"],
        "csrf": shown.inputs["csrf"],
        "scope": "notes:read",
        "decision": "allow",
    }
    r = post_page(owner, "/consent", fields)
    assert "location" not in r.headers, r.headers.get("location")
    assert_error_page(r, 403)
    landing(owner.submit(hidden, {"scope": ["notes:read"], "decision": "allow"}), other)


def test_consent_post_without_a_session_goes_to_login(gw: GatewayProcess, app: Client) -> None:
    owner = signed_in(gw)
    app = fresh_client(gw)
    form = consent_form(owner, gw, app)
    stranger = requests.post(
        gw.url + "/consent",
        data={**form.inputs, "scope": "notes:read", "decision": "allow"},
        allow_redirects=False,
        timeout=10,
    )
    assert stranger.status_code == 303
    assert stranger.headers["location"].startswith("/login?request=")


def test_login_post_without_the_login_cookie_is_refused(gw: GatewayProcess, app: Client) -> None:
    owner = ResourceOwner(gw)
    page = owner.go("/oauth2/authorize?" + urlencode(query_for(app, pkce()[1])))
    (form,) = forms(page.text)
    fields = {**form.inputs, "username": "alice", "password": PASSWORD}
    bare = requests.post(gw.url + "/login", data=fields, allow_redirects=False, timeout=10)
    assert bare.status_code == 400 and "set-cookie" in bare.headers
    assert "rg_session=" not in bare.headers["set-cookie"]
    other_browser = ResourceOwner(gw)
    other_browser.go("/oauth2/authorize?" + urlencode(query_for(app, pkce()[1])))
    r = post_page(other_browser, "/login", fields)  # a login cookie, but not the form's
    assert r.status_code == 400 and "rg_session=" not in r.headers.get("set-cookie", "")
    r = post_page(owner, "/login", fields)  # twin
    assert r.status_code == 303 and "rg_session=" in r.headers["set-cookie"]


def test_tampered_or_foreign_session_cookies_are_not_sessions(
    gw: GatewayProcess, app: Client
) -> None:
    owner = signed_in(gw)
    session = owner.http.cookies["rg_session"]
    _, challenge = pkce()
    url = "/oauth2/authorize?" + urlencode(query_for(app, challenge))
    assert (
        raw_get(gw, url, cookies={"rg_session": session}).headers["location"].startswith("/consent")
    )  # twin
    web = WebTokens(open_sealer(gw.settings.master_key_path))
    login_csrf = web.make("csrf", {"u": "rg_us_x", "s": "y"}, datetime.now(UTC), 600)
    for bad in (
        session[:-1] + ("A" if session[-1] != "A" else "B"),
        session[:-4],
        session + "A",
        login_csrf,  # a sealed token of another purpose
        "",
    ):
        r = raw_get(gw, url, cookies={"rg_session": bad})
        assert r.headers["location"].startswith("/login?"), bad
    # the same cookie twice (cookie tossing): ambiguous, so no session
    r = raw_get(gw, url, headers={"cookie": f"rg_session={session}; rg_session={session}"})
    assert r.headers["location"].startswith("/login?")


def test_a_session_from_before_user_remove_ends(gw: GatewayProcess, app: Client) -> None:
    add_user(gw, "dave", PASSWORD, "notes:read")
    owner = signed_in(gw, "dave")
    url = "/oauth2/authorize?" + urlencode(query_for(app, pkce()[1]))
    assert raw_get(gw, url, cookies=owner.http.cookies).headers["location"].startswith("/consent")
    done = CliRunner().invoke(cli, ["user", "remove", "dave", "--config", str(gw.config)])
    assert done.exit_code == 0, done.output
    r = raw_get(gw, url, cookies=owner.http.cookies)
    assert r.headers["location"].startswith("/login?")
    add_user(gw, "dave", PASSWORD, "notes:read")  # a new dave is someone else
    r = raw_get(gw, url, cookies=owner.http.cookies)
    assert r.headers["location"].startswith("/login?")


def test_session_fixation_the_session_cookie_is_replaced_at_login(
    gw: GatewayProcess, app: Client
) -> None:
    mallory = signed_in(gw, "bob")
    planted = mallory.http.cookies["rg_session"]
    victim = ResourceOwner(gw)
    page = victim.go("/oauth2/authorize?" + urlencode(query_for(app, pkce()[1])))
    (form,) = forms(page.text)
    login_cookie = victim.http.cookies["rg_login"]
    for fixed in (planted, "planted-garbage"):
        r = requests.post(
            gw.url + "/login",
            data={**form.inputs, "username": "alice", "password": PASSWORD},
            headers={"cookie": f"rg_login={login_cookie}; rg_session={fixed}"},
            allow_redirects=False,
            timeout=10,
        )
        assert r.status_code == 303
        issued = r.cookies.get("rg_session")
        assert issued and issued not in (planted, fixed)
        after = raw_get(gw, r.headers["location"], cookies={"rg_session": issued})
        assert "alice" in after.text or after.status_code == 303


# --- sealed request tokens -----------------------------------------------------------------------


def test_forged_altered_expired_or_swapped_sealed_requests_get_an_error_page(
    gw: GatewayProcess, app: Client
) -> None:
    owner = signed_in(gw)
    app = fresh_client(gw)
    form = consent_form(owner, gw, app)
    sealed = form.inputs["request"]
    web = WebTokens(open_sealer(gw.settings.master_key_path))
    now = datetime.now(UTC)
    data = web.open("request", sealed, now)
    expired = web.make("request", data, now - timedelta(hours=1), 60)
    as_session = web.make("session", data, now, 600)
    evil = web.make("request", {**data, "r": "http://evil.example/cb"}, now - timedelta(hours=1), 1)
    bads = [
        sealed[:-1] + ("A" if sealed[-1] != "A" else "B"),
        sealed[:20],
        expired,
        evil,
        as_session,
        form.inputs["csrf"],
        "x" * 5000,
        "%00",
        "",
    ]
    for bad in bads:
        for path in ("/login", "/consent"):
            assert_error_page(
                raw_get(gw, f"{path}?request={quote(bad)}", cookies=owner.http.cookies)
            )
        r = post_page(owner, "/consent", {**form.inputs, "request": bad, "decision": "allow"})
        assert_error_page(r)
    r = raw_get(gw, f"/login?request={quote(sealed)}&request={quote(sealed)}")
    assert_error_page(r)
    assert raw_get(gw, f"/consent?request={quote(sealed)}", cookies=owner.http.cookies).ok


def test_the_sealed_request_reveals_nothing(gw: GatewayProcess, app: Client) -> None:
    _, challenge = pkce()
    r = authorize(gw, query_for(app, challenge, state="secret-state-value"))
    sealed = r.headers["location"].split("request=", 1)[1]
    assert app.id not in sealed and "secret" not in sealed and challenge not in sealed


def test_a_long_state_or_redirect_uri_still_completes(gw: GatewayProcess) -> None:
    """FINDING: a request within the documented limits sealed into a link the pages refused."""
    long_uri = "https://app.example/" + "c" * 1900
    client = add_client(gw, "notes:read", redirect_uris=(long_uri,))
    # (the authorization request's URL must fit the gateway's 8 KiB target: 600 euro signs
    # are 5400 bytes percent-encoded)
    for state in ("s" * 1024, "\u20ac" * 600):
        owner = signed_in(gw)
        verifier, challenge = pkce()
        got = owner.authorize(
            client, "alice", PASSWORD, scope="notes:read", state=state, challenge=challenge
        )
        assert got["state"] == [state]
        ok_tokens(exchange(gw, client, got["code"][0], verifier))


# --- the pages: headers, methods, bodies --------------------------------------------------------


def _assert_page_headers(r: requests.Response) -> None:
    h = r.headers
    csp = h["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "script-src" not in csp or "'unsafe-inline'" not in csp
    assert h["x-frame-options"] == "DENY"
    assert h["cache-control"] == "no-store"
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"


def test_pages_carry_the_security_headers(gw: GatewayProcess, app: Client) -> None:
    owner = ResourceOwner(gw)
    page = owner.go("/oauth2/authorize?" + urlencode(query_for(app, pkce()[1])))
    _assert_page_headers(page)
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    consent = owner.login(page, "alice", PASSWORD)
    if consent.status_code == 200:
        _assert_page_headers(consent)
    _assert_page_headers(authorize(gw, "client_id=nobody"))
    _assert_page_headers(raw_get(gw, "/consent?request=nothing"))


@pytest.mark.parametrize("path", ["/login", "/consent", "/oauth2/authorize"])
def test_wrong_methods_are_405_and_head_is_get(gw: GatewayProcess, path: str) -> None:
    for method in (b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE"):
        r = send(gw.port, request(path.encode(), method=method))
        assert r.status == 405, (method, r.status)
        assert r.header("allow")
    if path == "/oauth2/authorize":
        r = send(gw.port, request(b"/oauth2/authorize", method=b"POST"))
        assert r.status == 405
    r = send(gw.port, request(path.encode() + b"?request=x", method=b"HEAD"), head=True)
    assert r.status == 400 and r.header("x-frame-options") == "DENY"


@pytest.mark.parametrize("path", ["/login", "/consent"])
def test_oversize_bodies_are_413(gw: GatewayProcess, path: str) -> None:
    body = b"request=" + b"a" * (17 * 1024)
    r = send(
        gw.port,
        request(
            path.encode(),
            (b"Content-Type", b"application/x-www-form-urlencoded"),
            (b"Content-Length", str(len(body)).encode()),
            method=b"POST",
            body=body,
        ),
    )
    assert r.status == 413


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/json",
        "application/x-www-form-urlencoded, text/plain",
    ],
)
def test_non_form_bodies_are_refused(
    gw: GatewayProcess, app: Client, content_type: str | None
) -> None:
    owner = ResourceOwner(gw)
    page = owner.go("/oauth2/authorize?" + urlencode(query_for(app, pkce()[1])))
    (form,) = forms(page.text)
    body = urlencode({**form.inputs, "username": "alice", "password": PASSWORD})
    headers = {} if content_type is None else {"content-type": content_type}
    r = owner.http.post(
        gw.url + "/login", data=body.encode(), headers=headers, allow_redirects=False, timeout=10
    )
    assert r.status_code == 400 and "rg_session=" not in r.headers.get("set-cookie", "")
    r = post_page(owner, "/login", body, **{"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 303  # twin


def test_repeated_form_parameters_are_refused(gw: GatewayProcess, app: Client) -> None:
    app = fresh_client(gw)
    owner = ResourceOwner(gw)
    page = owner.go("/oauth2/authorize?" + urlencode(query_for(app, pkce()[1])))
    (form,) = forms(page.text)
    base = urlencode({**form.inputs, "username": "alice", "password": PASSWORD})
    ct = {"content-type": "application/x-www-form-urlencoded"}
    for extra in ("&username=bob", "&password=x", "&csrf=x", "&request=x"):
        r = post_page(owner, "/login", base + extra, **ct)
        assert r.status_code == 400 and "rg_session=" not in r.headers.get("set-cookie", "")
    consent = post_page(owner, "/login", base, **ct)
    assert consent.status_code == 303
    page = owner.go(consent.headers["location"])
    (cform,) = forms(page.text)
    cbase = urlencode({**cform.inputs, "scope": "notes:read"})
    for extra in ("&decision=allow&decision=deny", "&decision=deny&decision=allow"):
        r = post_page(owner, "/consent", cbase + extra, **ct)
        assert_error_page(r)
    r = post_page(owner, "/consent", cbase + "&decision=allow", **ct)
    assert landing(r, app)["code"]


@pytest.mark.parametrize("typed", ["ALICE", "Alice"])
def test_usernames_match_in_any_case(gw: GatewayProcess, app: Client, typed: str) -> None:
    owner = ResourceOwner(gw)
    page = owner.go("/oauth2/authorize?" + urlencode(query_for(app, pkce()[1])))
    r = owner.login(page, typed, PASSWORD)
    assert r.status_code in (200, 303) and "rg_session" in owner.http.cookies


@pytest.mark.parametrize("typed", [" alice", "alice ", "al ice", "alice\u200b", "\u0430lice"])
def test_usernames_with_whitespace_or_lookalikes_do_not_sign_in(
    gw: GatewayProcess, app: Client, typed: str
) -> None:
    owner = ResourceOwner(gw)
    page = owner.go("/oauth2/authorize?" + urlencode(query_for(app, pkce()[1])))
    r = owner.login(page, typed, PASSWORD)
    assert r.status_code == 200 and "rg_session" not in owner.http.cookies
    assert "not right" in r.text


def test_client_name_and_values_are_escaped_on_the_pages(gw: GatewayProcess) -> None:
    name = "<img src=x onerror=alert(1)>\"'&"
    with pytest.raises(ValueError):  # bidi overrides are refused at registration
        add_client(gw, "notes:read", redirect_uris=(CB,), name="\u202eevil")
    client = add_client(gw, "notes:read", redirect_uris=(CB,), name=name)
    owner = ResourceOwner(gw)
    page = owner.go("/oauth2/authorize?" + urlencode(query_for(client, pkce()[1])))
    assert "<img" not in page.text and "&lt;img" in page.text
    r = owner.login(page, "alice", PASSWORD + "x")
    assert "<img" not in r.text


def test_no_token_ever_appears_in_a_url(gw: GatewayProcess, app: Client) -> None:
    """The authorization response holds code, state and iss only; nothing in a Location holds
    a session, a token or a password."""
    owner = ResourceOwner(gw)
    seen: list[str] = []
    original = owner._follow

    def spy(response: requests.Response) -> requests.Response:
        if "location" in response.headers:
            seen.append(response.headers["location"])
        return original(response)

    owner._follow = spy  # type: ignore[method-assign]
    verifier, challenge = pkce()
    got = owner.authorize(app, "alice", PASSWORD, scope="notes:read", challenge=challenge)
    assert set(got) == {"code", "state", "iss"}
    tokens = ok_tokens(exchange(gw, app, got["code"][0], verifier))
    for location in seen:
        assert "rg_at_" not in location and "rg_rt_" not in location
        assert PASSWORD.split()[0] not in location and "access_token" not in location
        assert tokens["access_token"] not in location


# --- throttles (their own gateways: they change state) ------------------------------------------


@pytest.fixture
def fresh(tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream) -> Iterator[Any]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("throttle") / "gw",
        upstream,
        routes=ROUTES,
        extra={"server.failed_attempts": '"100000/minute"'},
    ).start()
    yield gateway
    gateway.stop()


def _try_login(gw: GatewayProcess, client: Client, username: str, password: str) -> Any:
    owner = ResourceOwner(gw)
    page = owner.go("/oauth2/authorize?" + urlencode(query_for(client, pkce()[1])))
    return owner.login(page, username, password), owner


def test_login_throttle_per_account_and_address(fresh: GatewayProcess) -> None:
    """5 failures for one account from one address hold that address back for that account
    (a stranger elsewhere cannot: tests/attacks/test_review_scaleout.py)."""
    add_user(fresh, "erin", PASSWORD, "notes:read")
    add_user(fresh, "frank", PASSWORD, "notes:read")
    client = add_client(fresh, "notes:read", redirect_uris=(CB,))
    for _ in range(5):
        r, _ = _try_login(fresh, client, "erin", "wrong password!")
        assert r.status_code == 200
    r, owner = _try_login(fresh, client, "erin", PASSWORD)  # held back: even the right one
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "rg_session" not in owner.http.cookies
    r, owner = _try_login(fresh, client, "frank", PASSWORD)  # others are unaffected
    assert r.status_code in (200, 303) and "rg_session" in owner.http.cookies


def test_login_throttle_per_address(fresh: GatewayProcess) -> None:
    client = add_client(fresh, "notes:read", redirect_uris=(CB,))
    for i in range(20):  # spread over accounts, none of them locked
        r, _ = _try_login(fresh, client, f"nobody{i}", "wrong password!")
        assert r.status_code == 200
    add_user(fresh, "gina", PASSWORD, "notes:read")
    r, owner = _try_login(fresh, client, "gina", PASSWORD)
    assert r.status_code == 429 and "rg_session" not in owner.http.cookies
    assert int(r.headers["retry-after"]) > 0


def test_token_responses_are_never_cached(gw: GatewayProcess, app: Client) -> None:
    code, verifier, _ = front(gw, app)
    r = exchange(gw, app, code, verifier)
    assert r.headers["cache-control"] == "no-store" and r.headers.get("pragma") == "no-cache"
    assert_grant_error(exchange(gw, app, code + "x", verifier))
    assert json.loads(r.text)["token_type"].lower() == "bearer"
