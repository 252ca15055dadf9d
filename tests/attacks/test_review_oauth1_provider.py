"""Attack review of the OAuth 1.0a provider (RFC 5849 §2): ``POST /oauth1/request_token``,
``GET|POST /oauth1/authorize`` (the consent form, its CSRF token and sealed decision, the
sign-in continuation ``/login?next=``), ``POST /oauth1/access_token`` and
``GET|POST /oauth1/tokens``, all through the real gateway over HTTP, redirects to the
consumer's callback never followed.

One named test per attack, each with its valid twin (the same request done right works).
Requests are signed by ``tests/oauth1_flow_support.py`` with oauthlib's RFC 5849 functions, so
every parameter's place, the nonce, the timestamp and the raw path are the test's to choose.
The module's gateway has a public catch-all route ``/**`` after the protected ones, so a
request restguard failed to answer itself would reach the recording upstream.

Findings of this review, most severe first, each fixed (its test failed before the fix):

* FINDING 1 -- ``test_oauth1_token_issuance_and_failures_are_in_the_audit_log``: the OAuth
  1.0a endpoints wrote nothing to the decision log: temporary and token credentials issued,
  bad signatures, wrong verifiers left no trace. Now one record per answer, as
  ``/oauth2/token``.
* FINDING 2 -- ``test_consent_page_for_a_registered_callback_with_an_unusual_host``: a
  callback that ``oauth1 consumer create --callback`` accepts (a host with ``_``, a trailing
  dot, an empty port) made the consent page a 500: ``form_source`` turned the callback into a
  CSP ``form-action`` source that ``pages.page_headers`` refuses. Now registration refuses
  what a ``form-action`` source cannot name (``wire/callback_uri.py``).
* FINDING 3 -- ``test_wrong_verifiers_count_toward_the_failed_attempt_limit``: a 401 at
  ``/oauth1/access_token`` for a wrong or spent verifier was not counted toward
  ``[server] failed_attempts``. Now every 401 there counts.
* FINDING 4 -- ``test_a_callback_with_an_empty_query_still_gets_oauth_token``: a registered
  callback ending in ``?`` got ``??oauth_token=...``. Now the parameters follow the ``?``.
* FINDING 5 -- ``test_a_consumer_with_many_scopes_can_be_allowed``: a consent form with more
  than 61 scopes ticked had more fields than ``read_form`` read (64). Now 1024 (the body is
  capped at 16 KiB).

Decided here (passing tests say so): a wrong verifier does not burn the temporary credentials
(only their consumer can sign with them, the verifier has 131 random bits, an oob user may
mistype); a verifier replayed after the exchange is refused without revoking what the
exchange gave (RFC 5849 has no such rule, and only the consumer can sign the replay).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import update

from restguard.cli.main import cli
from restguard.credentials.oauth1_tokens import new_temporary_credentials
from restguard.keys.sealing import open_sealer
from restguard.oauth2.web_tokens import WebTokens
from restguard.store.ports import OAuth1TokenRecord
from restguard.store.sql.tables import oauth1_tokens
from tests.attacks.wire import chunked, exchange, send
from tests.harness import GatewayProcess, RecordingUpstream
from tests.jwt_support import wait_until
from tests.oauth1_flow_support import (
    CALLBACK,
    FORM,
    Consumer,
    Signed,
    TokenCredentials,
    access_signed,
    access_token,
    add_consumer,
    authorized,
    consent_form,
    consent_page,
    decide,
    form_answer,
    host_of,
    protected,
    request_token,
    sign,
    temporary,
    three_legged,
    verifier_from,
)
from tests.oauth2_support import ResourceOwner, add_client, add_user, forms, pkce
from tests.oauth2_support import _store_call as store_call

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

[[routes]]
path = "/**"
methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
public = true
"""


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("oauth1attack") / "gw",
        upstream,
        routes=ROUTES,
        extra={"server.failed_attempts": '"100000/minute"'},
    ).start()
    add_user(gateway, "alice", PASSWORD, "notes:read", "notes:write")
    add_user(gateway, "bob", PASSWORD, "notes:read")
    yield gateway
    gateway.stop()


@pytest.fixture
def app(gw: GatewayProcess) -> Consumer:
    """A fresh consumer (read and write, the usual callback) per test."""
    return add_consumer(gw, "notes:read", "notes:write")


# --- helpers -------------------------------------------------------------------------------------


def signed_in(gw: GatewayProcess, username: str = "alice") -> ResourceOwner:
    """A browser with a session: signed in through ``/oauth1/tokens`` (``/login?next=``)."""
    owner = ResourceOwner(gw)
    page = owner.go("/oauth1/tokens")
    page = owner.login(page, username, PASSWORD)
    assert page.status_code == 200 and "Connected applications" in page.text, page.text[:300]
    return owner


def record(gw: GatewayProcess, token: str) -> OAuth1TokenRecord | None:
    found: OAuth1TokenRecord | None = store_call(gw, lambda store: store.oauth1_tokens.get(token))
    return found


def assert_pending(gw: GatewayProcess, token: str) -> None:
    """The temporary credentials are still waiting: not authorized, not used, not revoked."""
    found = record(gw, token)
    assert found is not None and found.kind == "temporary"
    assert found.user_id is None and found.verifier_hash is None, found
    assert found.used_at is None and found.revoked_at is None, found


def access_tokens_of(gw: GatewayProcess, consumer: Consumer) -> list[OAuth1TokenRecord]:
    found: list[OAuth1TokenRecord] = store_call(
        gw, lambda store: store.oauth1_tokens.list(consumer_key=consumer.key)
    )
    return found


def set_expiry(gw: GatewayProcess, token: str, at: datetime) -> None:
    """Move the temporary credentials' expiry (the provider has no clock hook)."""

    async def work(store: Any) -> None:
        with store.oauth1_tokens._engine.begin() as conn:
            conn.execute(
                update(oauth1_tokens).where(oauth1_tokens.c.token == token).values(expires_at=at)
            )

    store_call(gw, work)


def assert_error_page(r: requests.Response, status: int = 400) -> None:
    """An error shown to the user: no redirect anywhere, never cached."""
    assert r.status_code == status, (r.status_code, r.headers.get("location"), r.text[:300])
    assert "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"


def assert_json_error(r: requests.Response, status: int) -> dict[str, Any]:
    """The contract's JSON error; a 401 challenges ``OAuth`` (RFC 5849 §3.2)."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json"
    body: dict[str, Any] = r.json()
    assert set(body) == {"error", "error_description"}, body
    if status == 401:
        assert r.headers["www-authenticate"] == 'OAuth realm="restguard"'
    assert "oauth_token" not in r.text
    return body


def post_page(
    owner: ResourceOwner | None,
    gw: GatewayProcess,
    path: str,
    body: str | dict[str, Any],
    **kw: Any,
) -> requests.Response:
    http = owner.http if owner is not None else requests
    return http.post(gw.url + path, data=body, allow_redirects=False, timeout=10, **kw)


def decision_fields(form: Any, **over: Any) -> dict[str, Any]:
    fields = {**form.inputs, "scope": ["notes:read"], "decision": "allow"}
    fields.update(over)
    return {k: v for k, v in fields.items() if v is not None}


def race(n: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # reported by the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def cli_ok(gw: GatewayProcess, *args: str) -> Any:
    done = CliRunner().invoke(cli, [*args, "--config", str(gw.config)])
    assert done.exit_code == 0, done.output
    return done


# --- the valid twin ------------------------------------------------------------------------------


def test_the_whole_flow_done_right(
    gw: GatewayProcess, app: Consumer, upstream: RecordingUpstream
) -> None:
    r = request_token(gw, app, scope="notes:read notes:write")
    got = form_answer(r)  # 200, form-encoded, no-store
    assert r.headers["pragma"] == "no-cache"
    assert set(got) == {"oauth_token", "oauth_token_secret", "oauth_callback_confirmed"}
    temp = temporary(gw, app)
    owner = ResourceOwner(gw)
    form = consent_form(owner, temp.token, "alice", PASSWORD)
    assert [v for _, v, checked in form.checkboxes if checked] == ["notes:read", "notes:write"]
    landed = decide(owner, form, ["notes:read"])
    assert landed.headers["cache-control"] == "no-store"
    assert landed.headers["referrer-policy"] == "no-referrer"
    verifier = verifier_from(landed, app, temp.token)
    answer = access_token(gw, app, temp, verifier)
    assert answer.headers["pragma"] == "no-cache"
    creds = form_answer(answer)
    assert set(creds) == {"oauth_token", "oauth_token_secret"}
    assert creds["oauth_token"].startswith("rg_ot_")
    upstream.clear()
    ok = protected(gw, app, TokenCredentials(creds["oauth_token"], creds["oauth_token_secret"]))
    assert ok.status_code == 200, ok.text
    assert upstream.last().header("x-restguard-subject") == "alice"
    assert upstream.last().header("x-restguard-scopes") == "notes:read"
    assert upstream.last().header("authorization") is None


# --- the answers: formats, methods, paths ---------------------------------------------------------


def test_errors_are_json_401s_challenge_oauth(gw: GatewayProcess, app: Consumer) -> None:
    host = host_of(gw)
    wrong = sign(app, "/oauth1/request_token", host=host, oauth={"oauth_callback": CALLBACK})
    wrong.headers["Authorization"] = wrong.headers["Authorization"].replace(
        'oauth_nonce="', 'oauth_nonce="x'
    )  # the signature no longer matches
    assert_json_error(wrong.send(gw), 401)
    missing = sign(app, "/oauth1/request_token", host=host)  # no oauth_callback
    assert_json_error(missing.send(gw), 400)
    temp = temporary(gw, app)  # twin
    no_verifier = access_token(gw, app, temp, None)
    assert_json_error(no_verifier, 400)
    assert_json_error(access_token(gw, app, temp, "A" * 22), 401)
    for r in (wrong.send(gw), no_verifier):
        assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/oauth1/request_token", "/oauth1/access_token"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_post_only_endpoints_refuse_other_methods(
    gw: GatewayProcess, app: Consumer, upstream: RecordingUpstream, path: str, method: str
) -> None:
    signed = sign(app, path, host=host_of(gw), method=method, oauth={"oauth_callback": "oob"})
    r = signed.send(gw)
    assert r.status_code == 405, (r.status_code, r.text)
    assert r.headers["allow"] == "POST"
    assert not upstream.requests
    if path == "/oauth1/request_token":  # twin
        form_answer(request_token(gw, app))


@pytest.mark.parametrize("path", ["/oauth1/authorize", "/oauth1/tokens"])
def test_page_endpoints_refuse_other_methods(
    gw: GatewayProcess, upstream: RecordingUpstream, path: str
) -> None:
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        r = requests.request(method, gw.url + path, allow_redirects=False, timeout=10)
        assert r.status_code == 405 and r.headers["allow"] == "GET, POST, HEAD"
    assert requests.head(gw.url + path, timeout=10).status_code in (303, 400)
    assert not upstream.requests


PATH_SPELLINGS = [
    b"/oauth1/Request_Token",
    b"/OAUTH1/request_token",
    b"/oauth1/request_token/",
    b"/oauth1/access_token/",
    b"/oauth1/Access_Token",
    b"/oauth1/./access_token",
    b"/oauth1/x/../access_token",
    b"/oauth1//access_token",
    b"/oauth1/%61ccess_token",
    b"/oauth1/access%5Ftoken",
    b"/oauth1/access_token%2F",
    b"/oauth1/access_token;v=1",
    b"/oauth1/Authorize",
    b"/oauth1/authorize/",
    b"/oauth1/Tokens",
    b"/oauth1/tokens/",
    b"/oauth1/%2E/tokens",
]


@pytest.mark.parametrize("path", PATH_SPELLINGS)
def test_path_spellings_never_reach_the_upstream(
    gw: GatewayProcess, upstream: RecordingUpstream, path: bytes
) -> None:
    for method in (b"POST", b"GET"):
        r = send(
            gw.port,
            method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )
        assert 300 <= r.status < 500, (path, method, r.status)
    assert not upstream.requests, [q.target for q in upstream.requests]
    # twin: another path under /oauth1 is the catch-all route's (it does reach the upstream)
    assert send(gw.port, b"GET /oauth1/elsewhere HTTP/1.1\r\nHost: x\r\n\r\n").status == 200
    assert upstream.requests


def test_a_dot_segment_spelling_is_answered_by_the_provider(
    gw: GatewayProcess, app: Consumer, upstream: RecordingUpstream
) -> None:
    """``/oauth1/./request_token`` is the endpoint (normalised), signed over the path as sent
    (§3.4.1.2): it works for a client that signed that spelling, never goes upstream."""
    host = f"127.0.0.1:{gw.port}"
    odd = sign(app, "/oauth1/./request_token", host=host, oauth={"oauth_callback": "oob"})
    r = send(gw.port, odd.raw(host))
    assert r.status == 200 and b"oauth_token=rg_or_" in r.body
    # signed over the normalised path but sent with the dot segment: the base string differs
    canon = sign(app, "/oauth1/request_token", host=host, oauth={"oauth_callback": "oob"})
    raw = canon.raw(host).replace(b"POST /oauth1/request_token", b"POST /oauth1/./request_token")
    assert send(gw.port, raw).status == 401
    assert not upstream.requests


# --- CSRF on the consent form ---------------------------------------------------------------------


def _oauth2_consent_csrf(gw: GatewayProcess, owner: ResourceOwner) -> dict[str, str]:
    """The hidden fields of an OAuth 2.0 ``/consent`` form shown to ``owner``'s session."""
    client = add_client(gw, "notes:read", redirect_uris=("http://127.0.0.1:9/cb",))
    query = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": client.redirect_uri,
        "scope": "notes:read",
        "state": "s",
        "code_challenge": pkce()[1],
        "code_challenge_method": "S256",
    }
    page = owner.go("/oauth2/authorize?" + urlencode(query))
    (form,) = forms(page.text)
    assert form.action == "/consent"
    return form.inputs


def test_consent_post_without_its_csrf_token_is_refused(gw: GatewayProcess, app: Consumer) -> None:
    owner = signed_in(gw)
    temp = temporary(gw, app)
    form = consent_form(owner, temp.token, "alice", PASSWORD)
    bob = signed_in(gw, "bob")
    bobs = consent_form(bob, temporary(gw, app).token, "bob", PASSWORD).inputs["csrf"]
    oauth2 = _oauth2_consent_csrf(gw, owner)
    device = forms(owner.go("/device").text)[0].inputs["csrf"]
    login = forms(ResourceOwner(gw).go("/oauth1/tokens").text)[0].inputs
    own = form.inputs["csrf"]
    for csrf in (
        None,
        "",
        "x",
        own[:-2],
        own + "A",
        bobs,  # another session's, for the same kind of form
        oauth2["csrf"],  # the OAuth 2.0 consent form's, same session
        device,  # the device flow's user-code form's, same session
        login["csrf"],  # the login form's
        form.inputs["decision_for"],  # a sealed value of another purpose
        oauth2["request"],
    ):
        for decision in ("allow", "deny"):
            r = post_page(
                owner, gw, "/oauth1/authorize", decision_fields(form, csrf=csrf, decision=decision)
            )
            assert_error_page(r, 403)
    assert_pending(gw, temp.token)
    # a cross-site POST carries no session (SameSite=Lax): refused, never a sign-in redirect
    stranger = post_page(None, gw, "/oauth1/authorize", decision_fields(form))
    assert_error_page(stranger, 403)
    assert_pending(gw, temp.token)
    # twin: the form as shown
    verifier = verifier_from(decide(owner, form), app, temp.token)
    form_answer(access_token(gw, app, temp, verifier))


def test_decision_for_cannot_be_swapped_between_requests_or_users(
    gw: GatewayProcess, app: Consumer
) -> None:
    alice = signed_in(gw)
    bob = signed_in(gw, "bob")
    shown, hidden, bobs = temporary(gw, app), temporary(gw, app), temporary(gw, app)
    shown_form = consent_form(alice, shown.token, "alice", PASSWORD)
    hidden_form = consent_form(alice, hidden.token, "alice", PASSWORD)
    bob_form = consent_form(bob, bobs.token, "bob", PASSWORD)
    attempts = [
        # alice's session: the form she sees, with another pending request's sealed decision
        (
            alice,
            {**decision_fields(shown_form), "decision_for": hidden_form.inputs["decision_for"]},
        ),
        # alice's session: bob's sealed decision with alice's own token / with bob's token
        (alice, {**decision_fields(shown_form), "decision_for": bob_form.inputs["decision_for"]}),
        (alice, decision_fields(bob_form)),
        # bob's session: alice's whole form (her decision and her CSRF token)
        (bob, decision_fields(shown_form)),
        # bob's session: alice's sealed decision with bob's CSRF token
        (bob, {**decision_fields(bob_form), "decision_for": shown_form.inputs["decision_for"]}),
    ]
    for owner, fields in attempts:
        r = post_page(owner, gw, "/oauth1/authorize", fields)
        assert_error_page(r, 403)
    for temp in (shown, hidden, bobs):
        assert_pending(gw, temp.token)
    # twins: each form in its own session
    for owner, form, temp in (
        (alice, shown_form, shown),
        (alice, hidden_form, hidden),
        (bob, bob_form, bobs),
    ):
        verifier = verifier_from(decide(owner, form), app, temp.token)
        assert record(gw, temp.token).subject == ("bob" if owner is bob else "alice")  # type: ignore[union-attr]
        form_answer(access_token(gw, app, temp, verifier))


def test_a_decided_form_cannot_be_posted_again(gw: GatewayProcess, app: Consumer) -> None:
    owner = signed_in(gw)
    temp = temporary(gw, app)
    form = consent_form(owner, temp.token, "alice", PASSWORD)
    verifier = verifier_from(decide(owner, form, ["notes:read"]), app, temp.token)
    # replay the same form: with more scopes, or Deny after Allow
    assert_error_page(
        post_page(
            owner,
            gw,
            "/oauth1/authorize",
            decision_fields(form, scope=["notes:read", "notes:write"]),
        )
    )
    assert_error_page(
        post_page(owner, gw, "/oauth1/authorize", decision_fields(form, decision="deny"))
    )
    assert record(gw, temp.token).scopes == ("notes:read",)  # type: ignore[union-attr]
    form_answer(access_token(gw, app, temp, verifier))  # twin: the first decision stands


# --- CSRF and ownership on /oauth1/tokens ---------------------------------------------------------


def _revoke_form(owner: ResourceOwner, token: str) -> Any:
    page = owner.go("/oauth1/tokens")
    mine = [f for f in forms(page.text) if f.inputs.get("token") == token]
    assert len(mine) == 1, page.text[:500]
    return mine[0]


def test_tokens_revoke_without_its_csrf_token_is_refused(gw: GatewayProcess, app: Consumer) -> None:
    owner = ResourceOwner(gw)
    creds = three_legged(gw, app, owner, "alice", PASSWORD)
    form = _revoke_form(owner, creds.token)
    bob = signed_in(gw, "bob")
    bobs_creds = three_legged(gw, app, bob, "bob", PASSWORD)
    bobs = _revoke_form(bob, bobs_creds.token).inputs["csrf"]
    second_browser = signed_in(gw, "alice")  # alice again, another session
    other_session = _revoke_form(second_browser, creds.token).inputs["csrf"]
    pending = temporary(gw, app)
    consent_csrf = consent_form(owner, pending.token, "alice", PASSWORD).inputs["csrf"]
    oauth2 = _oauth2_consent_csrf(gw, owner)["csrf"]
    own = form.inputs["csrf"]
    for csrf in (None, "", own[:-1], bobs, other_session, consent_csrf, oauth2):
        fields = {"token": creds.token, **({} if csrf is None else {"csrf": csrf})}
        r = post_page(owner, gw, "/oauth1/tokens", fields)
        assert_error_page(r, 403)
    assert protected(gw, app, creds).status_code == 200
    # no session at all (a cross-site POST): sent to sign in, nothing revoked
    r = post_page(None, gw, "/oauth1/tokens", {"token": creds.token, "csrf": own})
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert protected(gw, app, creds).status_code == 200
    # twin
    done = owner.submit(form, {})
    assert done.status_code == 200 and "no longer has access" in done.text
    wait_until(lambda: protected(gw, app, creds).status_code == 401, timeout=3)
    assert protected(gw, app, bobs_creds).status_code == 200


def test_tokens_page_cannot_revoke_another_users_token(gw: GatewayProcess, app: Consumer) -> None:
    alice = ResourceOwner(gw)
    alices = three_legged(gw, app, alice, "alice", PASSWORD)
    bob = ResourceOwner(gw)
    bobs = three_legged(gw, app, bob, "bob", PASSWORD)
    bob_form = _revoke_form(bob, bobs.token)
    assert alices.token not in bob.go("/oauth1/tokens").text  # alice's are not listed to bob
    pending = temporary(gw, app)
    half = authorized(gw, app, ResourceOwner(gw), "bob", PASSWORD)  # bob's, not exchanged
    for token in (alices.token, pending.token, half.temp.token, "rg_ot_" + "A" * 32, ""):
        r = post_page(bob, gw, "/oauth1/tokens", {"token": token, "csrf": bob_form.inputs["csrf"]})
        assert_error_page(r, 404)
        assert "not yours or is gone" in r.text
    assert protected(gw, app, alices).status_code == 200
    assert_pending(gw, pending.token)
    form_answer(access_token(gw, app, half.temp, half.verifier))
    # twin: bob revokes his own
    assert "no longer has access" in bob.submit(bob_form, {}).text


# --- scopes --------------------------------------------------------------------------------------


def test_consent_form_cannot_grant_a_scope_not_offered(gw: GatewayProcess) -> None:
    admin_consumer = add_consumer(gw, "notes:read", "notes:write", "notes:admin")
    add_user(gw, "carol", PASSWORD, "notes:read", "notes:write", "notes:admin", "billing:read")
    owner = signed_in(gw, "carol")
    temp = temporary(gw, admin_consumer, scope="notes:read")
    form = consent_form(owner, temp.token, "carol", PASSWORD)
    assert [v for _, v, _ in form.checkboxes] == ["notes:read"]
    for posted in (
        ["notes:read", "notes:write"],  # the consumer may, but did not ask
        ["notes:admin"],
        ["billing:read"],  # the user may, the consumer may not
        ["restguard:admin"],  # nobody may
        ["notes:read", "notes:read "],
        ["NOTES:READ"],
    ):
        r = owner.submit(form, {"scope": posted, "decision": "allow"})
        assert_error_page(r)
    assert_pending(gw, temp.token)
    verifier = verifier_from(decide(owner, form), admin_consumer, temp.token)  # twin
    form_answer(access_token(gw, admin_consumer, temp, verifier))
    assert [r.scopes for r in access_tokens_of(gw, admin_consumer)] == [("notes:read",)]


def test_a_user_cannot_grant_a_scope_they_lack(
    gw: GatewayProcess, app: Consumer, upstream: RecordingUpstream
) -> None:
    bob = signed_in(gw, "bob")  # bob holds notes:read only
    temp = temporary(gw, app)  # the consumer asks for read and write
    form = consent_form(bob, temp.token, "bob", PASSWORD)
    assert [v for _, v, _ in form.checkboxes] == ["notes:read"]
    for posted in (["notes:write"], ["notes:read", "notes:write"]):
        assert_error_page(bob.submit(form, {"scope": posted, "decision": "allow"}))
    assert_pending(gw, temp.token)
    verifier = verifier_from(decide(bob, form), app, temp.token)  # twin: what he may grant
    got = form_answer(access_token(gw, app, temp, verifier))
    creds = TokenCredentials(got["oauth_token"], got["oauth_token_secret"])
    upstream.clear()
    assert protected(gw, app, creds).status_code == 200
    assert upstream.last().header("x-restguard-scopes") == "notes:read"


def test_nothing_grantable_is_a_refusal_page(gw: GatewayProcess) -> None:
    """A consumer asking only for what the user may not grant: no form at all (and the
    temporary credentials end). Twin: a user who may grant it sees the form."""
    writer = add_consumer(gw, "notes:write")
    temp = temporary(gw, writer)
    r = consent_page(signed_in(gw, "bob"), temp.token, "bob", PASSWORD)
    assert_error_page(r, 403)
    assert not forms(r.text)
    assert record(gw, temp.token).revoked_at is not None  # type: ignore[union-attr]
    other = temporary(gw, writer)
    assert consent_form(signed_in(gw), other.token, "alice", PASSWORD).checkboxes


BAD_SCOPE_VALUES = [
    "notes:admin",  # not the consumer's
    "notes:read notes:admin",
    "restguard:admin",
    "",
    " ",
    "notes:read  notes:write",
    " notes:read",
    "notes:read,notes:write",
    "notes:read\tnotes:write",
    "notes:read\nnotes:write",
    'notes:"read"',
    "notes:r\u00e9ad",
    "NOTES:READ",
]


@pytest.mark.parametrize("value", BAD_SCOPE_VALUES)
def test_request_token_scope_outside_the_consumers_is_refused(
    gw: GatewayProcess, app: Consumer, value: str
) -> None:
    before = len(access_tokens_of(gw, app))
    for where in ("body", "query", "header"):
        kw: dict[str, Any] = {"oauth": {"oauth_callback": CALLBACK}}
        if where == "body":
            kw["body"] = [("scope", value)]
        elif where == "query":
            kw["query"] = [("scope", value)]
        else:
            kw["header_params"] = [("scope", value)]
        r = sign(app, "/oauth1/request_token", host=host_of(gw), **kw).send(gw)
        assert_json_error(r, 400)
    assert len(access_tokens_of(gw, app)) == before
    form_answer(request_token(gw, app, scope="notes:read"))  # twin


def test_request_token_scope_once_wherever_it_is(gw: GatewayProcess, app: Consumer) -> None:
    host, cb = host_of(gw), {"oauth_callback": CALLBACK}
    twice = [
        {"body": [("scope", "notes:read"), ("scope", "notes:write")]},
        {"body": [("scope", "notes:read"), ("scope", "notes:read")]},
        {"query": [("scope", "notes:read")], "body": [("scope", "notes:read")]},
        {"query": [("scope", "notes:read")], "header_params": [("scope", "notes:write")]},
        {"body": [("scope", "notes:read")], "header_params": [("scope", "notes:read")]},
    ]
    for kw in twice:
        assert_json_error(
            sign(app, "/oauth1/request_token", host=host, oauth=cb, **kw).send(gw), 400
        )
    # twins: once, in any of the three places, it narrows what the consent form offers
    owner = signed_in(gw)
    for kw in (
        {"body": [("scope", "notes:write")]},
        {"query": [("scope", "notes:write")]},
        {"header_params": [("scope", "notes:write")]},
    ):
        got = form_answer(sign(app, "/oauth1/request_token", host=host, oauth=cb, **kw).send(gw))
        form = consent_form(owner, got["oauth_token"], "alice", PASSWORD)
        assert [v for _, v, _ in form.checkboxes] == ["notes:write"]


# --- callbacks -----------------------------------------------------------------------------------

BAD_CALLBACKS = [
    CALLBACK + "x",
    CALLBACK + "/",
    CALLBACK + "?x=1",
    CALLBACK + "#f",
    CALLBACK + "%00",
    CALLBACK.replace("/cb", "/CB"),
    CALLBACK.replace("http:", "HTTP:"),
    CALLBACK.replace("127.0.0.1", "127.0.0.01"),
    CALLBACK.replace(":9/", ":09/"),
    CALLBACK.replace("/oauth1/", "/oauth1/./"),
    CALLBACK.replace("/cb", "/%63b"),
    CALLBACK.replace("127.0.0.1", "127.0.0.1@evil.example"),
    "http://evil.example/oauth1/cb",
    "//127.0.0.1:9/oauth1/cb",
    " " + CALLBACK,
    CALLBACK + " ",
    CALLBACK + "\r\nSet-Cookie: x=y",
    CALLBACK + "?" + "a" * 6000,
    "OOB",
    "Oob",
    "oob ",
    " oob",
    "oob\x00",
    "javascript:alert(document.cookie)//" + CALLBACK,
    "data:text/html,<script>alert(1)</script>",
    "about:blank",
]


@pytest.mark.parametrize("callback", BAD_CALLBACKS)
def test_oauth_callback_must_be_exactly_registered_or_oob(
    gw: GatewayProcess, app: Consumer, callback: str
) -> None:
    for where in ("header", "body"):
        r = sign(
            app,
            "/oauth1/request_token",
            host=host_of(gw),
            oauth={"oauth_callback": callback},
            where=where,  # type: ignore[arg-type]
        ).send(gw)
        assert_json_error(r, 400)
    temporary(gw, app, CALLBACK)  # twins
    temporary(gw, app, "oob")


def test_a_consumer_without_a_callback_may_only_say_oob(gw: GatewayProcess) -> None:
    bare = add_consumer(gw, "notes:read", callback=None)
    for callback in (CALLBACK, "https://app.example/cb", "OOB", "com.example.app:/cb"):
        assert_json_error(request_token(gw, bare, callback), 400)
    assert_json_error(sign(bare, "/oauth1/request_token", host=host_of(gw)).send(gw), 400)
    # twin: oob shows the verifier on restguard's page, never redirects
    temp = temporary(gw, bare, "oob")
    owner = signed_in(gw)
    shown = decide(owner, consent_form(owner, temp.token, "alice", PASSWORD))
    assert shown.status_code == 200 and "location" not in shown.headers
    assert shown.headers["cache-control"] == "no-store"
    form_answer(access_token(gw, bare, temp, verifier_from(shown, bare, temp.token)))


def test_oob_with_a_registered_callback_never_redirects(gw: GatewayProcess, app: Consumer) -> None:
    temp = temporary(gw, app, "oob")
    owner = signed_in(gw)
    shown = decide(owner, consent_form(owner, temp.token, "alice", PASSWORD))
    assert shown.status_code == 200 and "location" not in shown.headers
    form_answer(access_token(gw, app, temp, verifier_from(shown, app, temp.token)))


def test_a_callback_with_a_query_keeps_it_and_gets_both_parameters(gw: GatewayProcess) -> None:
    cb = "https://app.example/cb?app=1&next=%2Fhome"
    consumer = add_consumer(gw, "notes:read", callback=cb)
    temp = temporary(gw, consumer)
    owner = signed_in(gw)
    landed = decide(owner, consent_form(owner, temp.token, "alice", PASSWORD))
    assert landed.status_code == 303
    location = landed.headers["location"]
    assert location.startswith(cb + "&oauth_token=")
    got = parse_qs(urlsplit(location).query)
    assert got["app"] == ["1"] and got["next"] == ["/home"] and got["oauth_token"] == [temp.token]
    assert urlsplit(location).netloc == "app.example" and "#" not in location
    form_answer(access_token(gw, consumer, temp, got["oauth_verifier"][0]))
    csp = consent_page(owner, temporary(gw, consumer).token, "alice", PASSWORD).headers[
        "content-security-policy"
    ]
    assert "form-action 'self' https://app.example;" in csp


@pytest.mark.parametrize(
    "callback",
    [
        "https://my_app.example/cb",  # '_' in a host name: common in practice
        "https://app.example./cb",  # the fully qualified spelling
        "https://app.example:/cb",  # an empty port (RFC 3986 §3.2.3 allows it)
    ],
)
def test_consent_page_for_a_registered_callback_with_an_unusual_host(
    gw: GatewayProcess, callback: str
) -> None:
    # registration refuses what the consent page's form-action could not name (it made the
    # page a 500); the twin, an ordinary host, registers and lands
    args = ["oauth1", "consumer", "create", "--config", str(gw.config), "--name", "Odd host"]
    result = CliRunner().invoke(cli, [*args, "--scope", "notes:read", "--callback", callback])
    assert result.exit_code == 2 and "DNS name" in result.stderr, (result.output, result.stderr)
    ordinary = "https://my-app.example/cb"
    consumer = add_consumer(gw, "notes:read", callback=ordinary)
    temp = temporary(gw, consumer)
    owner = signed_in(gw)
    page = consent_page(owner, temp.token, "alice", PASSWORD)
    assert page.status_code == 200, (page.status_code, page.text[:200])
    landed = decide(owner, forms(page.text)[0])
    assert landed.status_code == 303 and landed.headers["location"].startswith(ordinary + "?")


def test_a_callback_with_an_empty_query_still_gets_oauth_token(gw: GatewayProcess) -> None:
    cb = "https://app.example/cb?"  # accepted by registration (RFC 3986: an empty query)
    cli_ok(
        gw, "oauth1", "consumer", "create", "--name", "Q", "--scope", "notes:read", "--callback", cb
    )
    consumer = add_consumer(gw, "notes:read", callback=cb)
    temp = temporary(gw, consumer)
    owner = signed_in(gw)
    landed = decide(owner, consent_form(owner, temp.token, "alice", PASSWORD))
    assert landed.status_code == 303
    got = parse_qs(urlsplit(landed.headers["location"]).query)
    assert got.get("oauth_token") == [temp.token], landed.headers["location"]
    form_answer(access_token(gw, consumer, temp, got["oauth_verifier"][0]))


def test_the_callback_cannot_be_changed_at_authorize(gw: GatewayProcess, app: Consumer) -> None:
    """OAuth 1.0 (before 1.0a) took the callback at the authorization step; 1.0a binds it to
    the temporary credentials (§2.1). An ``oauth_callback`` in the authorization URL or a
    callback field smuggled into the consent form changes nothing."""
    temp = temporary(gw, app)
    owner = signed_in(gw)
    evil = "https://evil.example/cb"
    page = owner.go(
        "/oauth1/authorize?" + urlencode({"oauth_token": temp.token, "oauth_callback": evil})
    )
    (form,) = forms(page.text)
    fields = {**decision_fields(form), "oauth_callback": evil, "callback": evil}
    landed = post_page(owner, gw, "/oauth1/authorize", fields)
    assert landed.status_code == 303
    assert landed.headers["location"].startswith(CALLBACK + "?oauth_token=")
    assert "evil" not in landed.headers["location"]
    # twin: oob chosen at request_token is kept, whatever the authorization URL says
    oob = temporary(gw, app, "oob")
    page = owner.go(
        "/oauth1/authorize?" + urlencode({"oauth_token": oob.token, "oauth_callback": evil})
    )
    shown = decide(owner, forms(page.text)[0])
    assert shown.status_code == 200 and "location" not in shown.headers


# --- the sign-in continuation /login?next= ------------------------------------------------------


def _web(gw: GatewayProcess) -> WebTokens:
    return WebTokens(open_sealer(gw.settings.base_dir / gw.settings.master_key_path))


def test_login_next_accepts_only_its_own_sealed_continuations(
    gw: GatewayProcess, app: Consumer
) -> None:
    temp = temporary(gw, app)
    r = requests.get(
        gw.url + "/oauth1/authorize?oauth_token=" + temp.token, allow_redirects=False, timeout=10
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    sealed = r.headers["location"].split("next=", 1)[1]
    web, now = _web(gw), datetime.now(UTC)
    data = web.open("next", requests.utils.unquote(sealed), now)
    assert data["to"] == "/oauth1/authorize?oauth_token=" + temp.token
    owner = ResourceOwner(gw)
    device_sealed = owner.http.get(gw.url + "/device", allow_redirects=False, timeout=10)
    device_value = device_sealed.headers["location"].split("device=", 1)[1]
    request_value = (
        requests.get(
            gw.url
            + "/oauth2/authorize?"
            + urlencode(
                {
                    "response_type": "code",
                    "client_id": add_client(gw, "notes:read").id,
                    "redirect_uri": "http://127.0.0.1:9/cb",
                    "scope": "notes:read",
                    "code_challenge": pkce()[1],
                    "code_challenge_method": "S256",
                }
            ),
            allow_redirects=False,
            timeout=10,
        )
        .headers["location"]
        .split("request=", 1)[1]
    )
    plain = requests.utils.unquote(sealed)
    bads = [
        # (a middle character: the last one's low bits may be unused base64 padding bits)
        plain[: len(plain) // 2]
        + ("A" if plain[len(plain) // 2] != "A" else "B")
        + plain[len(plain) // 2 + 1 :],
        plain[:30],
        plain + "AA",
        "",
        "x" * 5000,
        web.make("next", data, now - timedelta(hours=1), 60),  # expired
        web.make("next", {"to": "https://evil.example/", "n": "x"}, now, 600),
        web.make("next", {"to": "//evil.example/oauth1/tokens", "n": "x"}, now, 600),
        web.make("next", {"to": "/oauth2/authorize?x", "n": "x"}, now, 600),
        web.make("next", {"to": "/consent?request=x", "n": "x"}, now, 600),
        web.make("next", {"to": 7, "n": "x"}, now, 600),
        web.make("request", data, now, 600),  # the same data, another purpose
        web.make("device", data, now, 600),
        web.make("session", data, now, 600),
        web.make("oauth1 decision", data, now, 600),
        requests.utils.unquote(device_value),
        requests.utils.unquote(request_value),
    ]
    for bad in bads:
        r = requests.get(
            gw.url + "/login?next=" + quote(bad, safe=""), allow_redirects=False, timeout=10
        )
        assert_error_page(r)
    # the sealed value may not travel with another continuation, nor twice
    for query in (
        f"next={sealed}&request={request_value}",
        f"next={sealed}&device={device_value}",
        f"next={sealed}&next={sealed}",
        f"request={sealed}",
        f"device={sealed}",
    ):
        assert_error_page(
            requests.get(gw.url + "/login?" + query, allow_redirects=False, timeout=10)
        )
    # ... nor in a posted sign-in form
    page = owner.go("/login?next=" + sealed)
    (form,) = forms(page.text)
    for bad in bads[:4] + bads[6:8]:
        fields = {**form.inputs, "next": bad, "username": "alice", "password": PASSWORD}
        r = post_page(owner, gw, "/login", fields)
        assert r.status_code == 400 and "location" not in r.headers
        assert "rg_session=" not in r.headers.get("set-cookie", "")
    for extra in ({"request": request_value}, {"device": device_value}):
        fields = {**form.inputs, **extra, "username": "alice", "password": PASSWORD}
        r = post_page(owner, gw, "/login", fields)
        assert r.status_code == 400 and "rg_session=" not in r.headers.get("set-cookie", "")
    # twin: the real continuation signs in and comes back to the consent page (relative)
    done = post_page(
        owner, gw, "/login", {**form.inputs, "username": "alice", "password": PASSWORD}
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/oauth1/authorize?oauth_token=" + temp.token
    # already signed in: /login?next= goes straight on, to the same relative target
    again = owner.http.get(gw.url + "/login?next=" + sealed, allow_redirects=False, timeout=10)
    assert again.status_code == 303 and again.headers["location"] == done.headers["location"]


def test_authorize_without_a_live_token_never_offers_sign_in(
    gw: GatewayProcess, app: Consumer
) -> None:
    """Only live temporary credentials make a sign-in continuation: nothing else gets a
    sealed ``next`` (whose target would carry the attacker's text)."""
    owner = ResourceOwner(gw)
    creds = three_legged(gw, app, owner, "alice", PASSWORD)
    denied = temporary(gw, app)
    decide(owner, consent_form(owner, denied.token, "alice", PASSWORD), decision="deny")
    for query in (
        "",
        "oauth_token=",
        "oauth_token=rg_or_" + "A" * 32,
        "oauth_token=" + creds.token,  # token credentials are not temporary ones
        "oauth_token=" + denied.token,
        "oauth_token=https://evil.example/",
        "oauth_token=%2F%2Fevil.example",
        "oauth_token=" + temporary(gw, app).token + "&oauth_token=" + temporary(gw, app).token,
        "oauth_token=%ff",
    ):
        for browser in (requests, owner.http):
            r = browser.get(
                gw.url + "/oauth1/authorize?" + query, allow_redirects=False, timeout=10
            )  # type: ignore[attr-defined]
            assert_error_page(r)
    live = temporary(gw, app)  # twin
    r = requests.get(
        gw.url + "/oauth1/authorize?oauth_token=" + live.token, allow_redirects=False, timeout=10
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def test_session_fixation_a_planted_session_is_replaced_at_sign_in(
    gw: GatewayProcess, app: Consumer
) -> None:
    mallory = signed_in(gw, "bob")
    planted = mallory.http.cookies["rg_session"]
    temp = temporary(gw, app)
    victim = ResourceOwner(gw)
    page = victim.go("/oauth1/authorize?oauth_token=" + temp.token)
    (form,) = forms(page.text)
    assert form.action == "/login"
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
        assert issued and issued != fixed
        consent = requests.get(
            gw.url + r.headers["location"], cookies={"rg_session": issued}, timeout=10
        )
        assert "alice" in consent.text and "bob" not in consent.text
    # the planted session is still bob's own, and sees nothing of alice's
    assert "bob" in mallory.go("/oauth1/tokens").text


# --- XSS through names and scopes ---------------------------------------------------------------

EVIL_NAME = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>&amp;"
EVIL_SCOPE = "x:<img/src=x/onerror=alert(3)>"


def test_consumer_names_and_scopes_are_escaped_on_every_page(gw: GatewayProcess) -> None:
    for refused in ("\u202eevil", "a\nb", "a\x00b", "", "   ", "x" * 201):
        done = CliRunner().invoke(
            cli,
            [
                "oauth1",
                "consumer",
                "create",
                "--name",
                refused,
                "--scope",
                "notes:read",
                "--config",
                str(gw.config),
            ],
        )
        assert done.exit_code != 0, refused
    made = cli_ok(
        gw,
        "oauth1",
        "consumer",
        "create",
        "--name",
        EVIL_NAME,
        "--scope",
        "notes:read",
        "--scope",
        EVIL_SCOPE,
        "--json",
    )
    body = json.loads(made.output)
    consumer = Consumer(body["consumer_key"], body["consumer_secret"], None, EVIL_NAME, ())
    add_user(gw, "mallet", PASSWORD, "notes:read", EVIL_SCOPE)
    temp = temporary(gw, consumer, "oob")
    owner = ResourceOwner(gw)
    pages_seen = [owner.go("/oauth1/authorize?oauth_token=" + temp.token)]  # the login page
    consent = owner.login(pages_seen[0], "mallet", PASSWORD)
    pages_seen.append(consent)
    form = forms(consent.text)[0]
    assert [v for _, v, _ in form.checkboxes] == ["notes:read", EVIL_SCOPE]  # parsed back intact
    shown = decide(owner, form)  # the oob verifier page
    pages_seen.append(shown)
    form_answer(access_token(gw, consumer, temp, verifier_from(shown, consumer, temp.token)))
    listing = owner.go("/oauth1/tokens")
    pages_seen.append(listing)
    pages_seen.append(owner.submit(forms(listing.text)[0], {}))  # "Revoked: <name> ..."
    for page in pages_seen:
        assert page.status_code == 200, page.text[:300]
        text = page.text
        assert "<script" not in text and "<img" not in text, text
        assert "&lt;script&gt;" in text or "&lt;img" in text
        assert "default-src 'none'" in page.headers["content-security-policy"]


# --- the verifier ---------------------------------------------------------------------------------


def test_a_wrong_verifier_is_refused_and_does_not_burn_the_credentials(
    gw: GatewayProcess, app: Consumer
) -> None:
    """Decided: a wrong verifier leaves the temporary credentials usable. Burning them would let
    nobody but the consumer itself (it alone can sign with their secret) end its own flow, and
    131 random bits are not guessed; an oob user who mistypes can try again."""
    owner = signed_in(gw)
    done = authorized(gw, app, owner, "alice", PASSWORD)
    other = authorized(gw, app, owner, "alice", PASSWORD)
    for wrong in (
        other.verifier,  # another authorization's
        done.verifier[:-1],
        done.verifier + "A",
        done.verifier.lower(),
        done.verifier.upper(),
        " " + done.verifier,
        "\u00e9" * 22,
        "A" * 5000,
    ):
        assert_json_error(access_token(gw, app, done.temp, wrong), 401)
    assert_json_error(access_token(gw, app, done.temp, None), 400)
    assert not access_tokens_of(gw, app)
    form_answer(access_token(gw, app, done.temp, done.verifier))  # twin
    form_answer(access_token(gw, app, other.temp, other.verifier))


def test_verifier_and_temporary_credentials_are_single_use(
    gw: GatewayProcess, app: Consumer
) -> None:
    done = authorized(gw, app, signed_in(gw), "alice", PASSWORD)
    got = form_answer(access_token(gw, app, done.temp, done.verifier))
    creds = TokenCredentials(got["oauth_token"], got["oauth_token_secret"])
    for _ in range(3):
        assert_json_error(access_token(gw, app, done.temp, done.verifier), 401)
    assert len(access_tokens_of(gw, app)) == 1
    # the spent temporary credentials are no page's either, and sign nothing else
    assert_error_page(
        signed_in(gw).http.get(
            gw.url + "/oauth1/authorize?oauth_token=" + done.temp.token, timeout=10
        )
    )
    temp_as_token = TokenCredentials(done.temp.token, done.temp.secret)
    assert protected(gw, app, temp_as_token).status_code == 401
    assert protected(gw, app, creds).status_code == 200  # twin


@pytest.fixture
def strict_gw(tmp_path: Path, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    """Its own gateway: 3 failed attempts a minute per address, addresses from a trusted
    proxy's X-Forwarded-For (so each part of a test counts on its own)."""
    gateway = GatewayProcess(
        tmp_path / "gw",
        upstream,
        routes=ROUTES,
        extra={
            "server.failed_attempts": '"3/minute"',
            "server.trusted_proxies": '["127.0.0.1/32"]',
        },
    ).start()
    add_user(gateway, "alice", PASSWORD, "notes:read", "notes:write")
    yield gateway
    gateway.stop()


def test_wrong_verifiers_count_toward_the_failed_attempt_limit(strict_gw: GatewayProcess) -> None:
    gw = strict_gw
    app = add_consumer(gw, "notes:read")
    owner = ResourceOwner(gw)
    done = authorized(gw, app, owner, "alice", PASSWORD)

    def at(address: str, signed: Signed) -> requests.Response:
        signed.headers["X-Forwarded-For"] = address
        return signed.send(gw)

    host = host_of(gw)
    # twin: bad signatures from 10.0.0.1 are counted: the fourth is 429
    for i in range(4):
        bad = sign(
            app,
            "/oauth1/request_token",
            host=host,
            oauth={"oauth_callback": "oob"},
            consumer_secret="B" * 43,
        )
        r = at("10.0.0.1", bad)
        assert r.status_code == (429 if i == 3 else 401), (i, r.status_code)
    # attack: wrong verifiers from 10.0.0.2, each a 401 -- the fourth should be 429 too
    statuses = [
        at(
            "10.0.0.2",
            access_signed(app, done.temp, {"oauth_verifier": f"WRONG{i}" + "A" * 17}, host),
        ).status_code
        for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429], statuses


# --- races ----------------------------------------------------------------------------------------


@pytest.fixture
def db_gw(
    tmp_path: Path, upstream: RecordingUpstream, database_url: str
) -> Iterator[GatewayProcess]:
    """A gateway on each database backend (SQLite and the real PostgreSQL)."""
    gateway = GatewayProcess(
        tmp_path / "gw",
        upstream,
        database_url=database_url,
        routes=ROUTES,
        extra={"server.failed_attempts": '"100000/minute"'},
    ).start()
    add_user(gateway, "alice", PASSWORD, "notes:read", "notes:write")
    add_user(gateway, "bob", PASSWORD, "notes:read")
    yield gateway
    gateway.stop()


def test_racing_exchanges_of_one_verifier_yield_one_token(db_gw: GatewayProcess) -> None:
    gw = db_gw
    app = add_consumer(gw, "notes:read")
    owner = signed_in(gw)
    for _ in range(4):
        done = authorized(gw, app, owner, "alice", PASSWORD)
        # signed beforehand (each with its own nonce), sent at once
        requests_ = [
            access_signed(app, done.temp, {"oauth_verifier": done.verifier}, host_of(gw))
            for _ in range(8)
        ]
        results = race(8, lambda i, rs=requests_: rs[i].send(gw))
        statuses = sorted(getattr(r, "status_code", repr(r)) for r in results)
        assert statuses == [200] + [401] * 7, statuses
        won = next(r for r in results if r.status_code == 200)
        got = form_answer(won)
        assert (
            protected(
                gw, app, TokenCredentials(got["oauth_token"], got["oauth_token_secret"])
            ).status_code
            == 200
        )
    assert len(access_tokens_of(gw, app)) == 4


def test_racing_decisions_on_one_request_authorize_it_once(db_gw: GatewayProcess) -> None:
    gw = db_gw
    app = add_consumer(gw, "notes:read", callback=None)
    alice, bob = signed_in(gw), signed_in(gw, "bob")
    for _ in range(3):
        temp = temporary(gw, app, "oob")
        # alice in two tabs, and bob (who was sent the same link) -- all submit at once
        forms_ = [
            (alice, consent_form(alice, temp.token, "alice", PASSWORD)),
            (alice, consent_form(alice, temp.token, "alice", PASSWORD)),
            (bob, consent_form(bob, temp.token, "bob", PASSWORD)),
        ]
        results = race(
            3,
            lambda i, fs=forms_: post_page(
                fs[i][0], gw, "/oauth1/authorize", decision_fields(fs[i][1])
            ),
        )
        won = [r for r in results if r.status_code == 200]
        assert len(won) == 1, [(r.status_code, r.text[:100]) for r in results]
        for r in results:
            if r is not won[0]:
                assert_error_page(r)
        verifier = verifier_from(won[0], app, temp.token)
        subject = record(gw, temp.token).subject  # type: ignore[union-attr]
        assert subject in ("alice", "bob")
        form_answer(access_token(gw, app, temp, verifier))
        assert access_tokens_of(gw, app)[-1].subject == subject


# --- temporary credentials that are no longer live -----------------------------------------------


def test_expired_temporary_credentials_are_dead_at_every_step(
    gw: GatewayProcess, app: Consumer
) -> None:
    owner = signed_in(gw)
    past = datetime.now(UTC) - timedelta(seconds=1)
    # expired before the user came
    early = temporary(gw, app)
    set_expiry(gw, early.token, past)
    assert_error_page(
        owner.http.get(gw.url + "/oauth1/authorize?oauth_token=" + early.token, timeout=10)
    )
    # expired while the consent form was open
    during = temporary(gw, app)
    form = consent_form(owner, during.token, "alice", PASSWORD)
    set_expiry(gw, during.token, past)
    assert_error_page(post_page(owner, gw, "/oauth1/authorize", decision_fields(form)))
    # expired between the authorization and the exchange
    late = authorized(gw, app, owner, "alice", PASSWORD)
    set_expiry(gw, late.temp.token, past)
    assert_json_error(access_token(gw, app, late.temp, late.verifier), 401)
    # made 11 minutes ago (TEMPORARY_TTL is 10): never shown
    record_, _ = new_temporary_credentials(
        store_call(gw, lambda store: store.oauth1_consumers.get(app.key)),
        CALLBACK,
        now=datetime.now(UTC) - timedelta(minutes=11),
        sealer=open_sealer(gw.settings.base_dir / gw.settings.master_key_path),
    )
    store_call(gw, lambda store: store.oauth1_tokens.insert(record_))
    assert_error_page(
        owner.http.get(gw.url + "/oauth1/authorize?oauth_token=" + record_.token, timeout=10)
    )
    assert not access_tokens_of(gw, app)
    three_legged(gw, app, owner, "alice", PASSWORD)  # twin


def test_denied_temporary_credentials_cannot_be_authorized_or_exchanged(
    gw: GatewayProcess, app: Consumer
) -> None:
    owner = signed_in(gw)
    temp = temporary(gw, app)
    form = consent_form(owner, temp.token, "alice", PASSWORD)
    other_tab = consent_form(owner, temp.token, "alice", PASSWORD)
    denied = decide(owner, form, decision="deny")
    assert denied.status_code == 200 and "Request denied" in denied.text
    assert "location" not in denied.headers
    assert_error_page(post_page(owner, gw, "/oauth1/authorize", decision_fields(other_tab)))
    assert_error_page(
        owner.http.get(gw.url + "/oauth1/authorize?oauth_token=" + temp.token, timeout=10)
    )
    for verifier in ("A" * 22, ""):
        assert access_token(gw, app, temp, verifier).status_code in (400, 401)
    # allow with nothing ticked is a denial too
    empty = temporary(gw, app)
    r = decide(owner, consent_form(owner, empty.token, "alice", PASSWORD), [])
    assert "Request denied" in r.text and record(gw, empty.token).revoked_at is not None  # type: ignore[union-attr]
    three_legged(gw, app, owner, "alice", PASSWORD)  # twin


def test_a_revoked_consumer_gets_nothing_more(gw: GatewayProcess) -> None:
    doomed = add_consumer(gw, "notes:read")
    owner = signed_in(gw)
    creds = three_legged(gw, doomed, owner, "alice", PASSWORD)
    waiting = temporary(gw, doomed)
    form = consent_form(owner, waiting.token, "alice", PASSWORD)
    half = authorized(gw, doomed, owner, "alice", PASSWORD)
    assert protected(gw, doomed, creds).status_code == 200  # twin, before
    cli_ok(gw, "oauth1", "consumer", "revoke", doomed.key)
    time.sleep(1.1)  # the verifier reads consumers through a cache of at most a second
    assert_json_error(access_token(gw, doomed, half.temp, half.verifier), 401)
    assert_error_page(post_page(owner, gw, "/oauth1/authorize", decision_fields(form)))
    assert_error_page(
        owner.http.get(gw.url + "/oauth1/authorize?oauth_token=" + waiting.token, timeout=10)
    )
    assert_json_error(request_token(gw, doomed), 401)
    assert protected(gw, doomed, creds).status_code == 401
    assert [r.token for r in access_tokens_of(gw, doomed)] == [creds.token]


def test_a_user_removed_mid_flow_yields_no_token_credentials(
    gw: GatewayProcess, app: Consumer
) -> None:
    add_user(gw, "dora", PASSWORD, "notes:read")
    owner = signed_in(gw, "dora")
    creds = three_legged(gw, app, owner, "dora", PASSWORD)  # twin, before the removal
    half = authorized(gw, app, owner, "dora", PASSWORD)  # authorized, not exchanged
    waiting = temporary(gw, app)
    form = consent_form(owner, waiting.token, "dora", PASSWORD)  # the form is open
    cli_ok(gw, "user", "remove", "dora")
    assert_json_error(access_token(gw, app, half.temp, half.verifier), 401)
    assert_error_page(post_page(owner, gw, "/oauth1/authorize", decision_fields(form)), 403)
    wait_until(lambda: protected(gw, app, creds).status_code == 401, timeout=3)
    # a new "dora" is someone else: nothing of the old one's completes for her
    add_user(gw, "dora", PASSWORD, "notes:read")
    assert_json_error(access_token(gw, app, half.temp, half.verifier), 401)
    assert_error_page(post_page(owner, gw, "/oauth1/authorize", decision_fields(form)), 403)
    assert [r.token for r in access_tokens_of(gw, app)] == [creds.token]
    assert_pending(gw, waiting.token)


# --- the signed endpoints: which token, where, how ------------------------------------------------


def test_request_token_signed_with_a_token_is_refused(gw: GatewayProcess, app: Consumer) -> None:
    owner = signed_in(gw)
    creds = three_legged(gw, app, owner, "alice", PASSWORD)
    temp = temporary(gw, app)
    for token, secret in (
        (creds.token, creds.secret),
        (temp.token, temp.secret),
        ("rg_or_" + "A" * 32, ""),
    ):
        r = request_token(gw, app, token=token, token_secret=secret)
        assert_json_error(r, 401)
    # twin: an empty oauth_token is no token (§2.1: "MAY omit the empty")
    form_answer(request_token(gw, app, token=""))


def test_access_token_needs_this_consumers_authorized_temporary_credentials(
    gw: GatewayProcess, app: Consumer
) -> None:
    owner = signed_in(gw)
    other = add_consumer(gw, "notes:read", "notes:write")
    done = authorized(gw, app, owner, "alice", PASSWORD)
    creds = three_legged(gw, app, owner, "alice", PASSWORD)
    pending = temporary(gw, app)
    host = host_of(gw)
    attempts = [
        # no token at all
        sign(app, "/oauth1/access_token", host=host, oauth={"oauth_verifier": done.verifier}),
        # token credentials instead of temporary ones
        access_signed(
            app,
            done.temp,
            {"oauth_verifier": done.verifier},
            host,
            token=creds.token,
            token_secret=creds.secret,
        ),
        # another consumer presenting app's temporary credentials (it knows their secret)
        access_signed(other, done.temp, {"oauth_verifier": done.verifier}, host),
        # the right token with the wrong token secret
        access_signed(
            app, done.temp, {"oauth_verifier": done.verifier}, host, token_secret="S" * 43
        ),
        # pending temporary credentials (not authorized) with the verifier of others
        access_signed(app, pending, {"oauth_verifier": done.verifier}, host),
    ]
    for signed in attempts:
        assert_json_error(signed.send(gw), 401)
    assert len(access_tokens_of(gw, app)) == 1 and not access_tokens_of(gw, other)
    form_answer(access_token(gw, app, done.temp, done.verifier))  # twin


def test_nonce_replay_is_refused_at_each_signed_endpoint(
    gw: GatewayProcess, app: Consumer, upstream: RecordingUpstream
) -> None:
    host = host_of(gw)
    # request_token: the same request twice
    first = sign(app, "/oauth1/request_token", host=host, oauth={"oauth_callback": CALLBACK})
    form_answer(first.send(gw))
    assert_json_error(first.send(gw), 401)
    # ... or the same nonce and timestamp in another request (another callback)
    same = sign(
        app,
        "/oauth1/request_token",
        host=host,
        oauth={"oauth_callback": "oob"},
        nonce=first.oauth["oauth_nonce"],
        timestamp=int(first.oauth["oauth_timestamp"]),
    )
    assert_json_error(same.send(gw), 401)
    # access_token: a request refused after its nonce was used (wrong verifier) ...
    done = authorized(gw, app, signed_in(gw), "alice", PASSWORD)
    wrong = access_signed(app, done.temp, {"oauth_verifier": "W" * 22}, host)
    assert_json_error(wrong.send(gw), 401)
    # ... its nonce and timestamp again with the right verifier: a replay
    reused = access_signed(
        app,
        done.temp,
        {"oauth_verifier": done.verifier},
        host,
        nonce=wrong.oauth["oauth_nonce"],
        timestamp=int(wrong.oauth["oauth_timestamp"]),
    )
    assert_json_error(reused.send(gw), 401)
    ok = access_signed(app, done.temp, {"oauth_verifier": done.verifier}, host)  # twin
    got = form_answer(ok.send(gw))
    assert_json_error(ok.send(gw), 401)
    # a protected resource
    creds = TokenCredentials(got["oauth_token"], got["oauth_token_secret"])
    call = sign(
        app,
        "/notes/1",
        host=host,
        method="GET",
        token=creds.token,
        token_secret=creds.secret,
        content_type=None,
    )
    upstream.clear()
    assert call.send(gw).status_code == 200
    assert_json_error(call.send(gw), 401)
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("skew", [-301, 301, -100000])
def test_a_timestamp_outside_the_window_is_refused(
    gw: GatewayProcess, app: Consumer, skew: int
) -> None:
    stale = request_token(gw, app, timestamp=int(time.time()) + skew)
    assert_json_error(stale, 401)
    form_answer(request_token(gw, app, timestamp=int(time.time()) - 200))  # twin


@pytest.mark.parametrize("where", ["header", "body", "query"])
def test_plaintext_over_http_is_refused(gw: GatewayProcess, app: Consumer, where: str) -> None:
    r = request_token(gw, app, signature_method="PLAINTEXT", where=where)
    body = assert_json_error(r, 400)
    assert "HTTPS" in body["error_description"]
    done = authorized(gw, app, signed_in(gw), "alice", PASSWORD)
    r = access_token(gw, app, done.temp, done.verifier, signature_method="PLAINTEXT", where=where)
    assert_json_error(r, 400)
    assert not access_tokens_of(gw, app)
    # twins: the HMAC methods
    form_answer(
        access_token(gw, app, done.temp, done.verifier, signature_method="HMAC-SHA256", where=where)
    )
    form_answer(request_token(gw, app, signature_method="HMAC-SHA1", where=where))


@pytest.fixture
def tls_proxy_gw(tmp_path: Path, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    """Behind a trusted TLS-terminating proxy: public_url is https."""
    gateway = GatewayProcess(
        tmp_path / "gw",
        upstream,
        routes=ROUTES,
        extra={
            "server.public_url": '"https://gw.example"',
            "server.trusted_proxies": '["127.0.0.1/32"]',
        },
    ).start()
    yield gateway
    gateway.stop()


def test_plaintext_behind_a_tls_proxy_never_in_the_url(tls_proxy_gw: GatewayProcess) -> None:
    gw = tls_proxy_gw
    app = add_consumer(gw, "notes:read")
    kw: dict[str, Any] = {
        "host": "gw.example",
        "scheme": "https",
        "oauth": {"oauth_callback": "oob"},
    }
    in_query = sign(app, "/oauth1/request_token", signature_method="PLAINTEXT", where="query", **kw)
    body = assert_json_error(in_query.send(gw), 400)
    assert "URL" in body["error_description"]
    # twins: the header and the body, over the proxy's TLS
    for where in ("header", "body"):
        form_answer(
            sign(
                app, "/oauth1/request_token", signature_method="PLAINTEXT", where=where, **kw
            ).send(gw)
        )  # type: ignore[arg-type]


def test_query_parameters_of_a_post_are_signed(gw: GatewayProcess, app: Consumer) -> None:
    host = host_of(gw)
    signed = sign(
        app,
        "/oauth1/request_token",
        host=host,
        oauth={"oauth_callback": CALLBACK},
        query=[("x", "1")],
    )
    tampered = Signed(signed.method, signed.target + "&y=2", signed.headers, signed.body)
    assert_json_error(tampered.send(gw), 401)
    changed = Signed(
        signed.method, signed.target.replace("x=1", "x=2"), signed.headers, signed.body
    )
    assert_json_error(changed.send(gw), 401)
    form_answer(signed.send(gw))  # twin


def test_oauth_parameters_in_two_places_are_refused(gw: GatewayProcess, app: Consumer) -> None:
    host = host_of(gw)
    for kw in (
        {"body": [("oauth_callback", CALLBACK)]},  # header + body
        {"query": [("oauth_callback", CALLBACK)]},  # header + query
        {"query": [("oauth_verifier", "x")], "oauth": {"oauth_callback": CALLBACK}},
    ):
        assert_json_error(sign(app, "/oauth1/request_token", host=host, **kw).send(gw), 400)  # type: ignore[arg-type]
    form_answer(request_token(gw, app))  # twin


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/json",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
    ],
)
def test_a_form_body_sent_as_another_type_is_not_signed_parameters(
    gw: GatewayProcess, app: Consumer, content_type: str
) -> None:
    """The client signed its body as a form; sent with another Content-Type the body is not
    parameters (§3.4.1.3.1), so the signature does not verify -- and oauth_ parameters in such
    a body are none."""
    host = host_of(gw)
    signed = sign(
        app,
        "/oauth1/request_token",
        host=host,
        oauth={"oauth_callback": CALLBACK},
        body=[("scope", "notes:read")],
        content_type=content_type,
    )
    assert_json_error(signed.send(gw), 401)
    in_body = sign(
        app,
        "/oauth1/request_token",
        host=host,
        oauth={"oauth_callback": CALLBACK},
        where="body",
        content_type=content_type,
    )
    assert_json_error(in_body.send(gw), 400)  # no OAuth parameters at all
    # the reverse: a body the client did not sign, sent as a form
    unsigned = sign(
        app,
        "/oauth1/request_token",
        host=host,
        oauth={"oauth_callback": CALLBACK},
        body=[("scope", "notes:read")],
        sign_body=False,
    )
    assert_json_error(unsigned.send(gw), 401)
    # twin: the form signed and sent as one (a charset parameter is fine)
    ok = sign(
        app,
        "/oauth1/request_token",
        host=host,
        oauth={"oauth_callback": CALLBACK},
        body=[("scope", "notes:read")],
        content_type=FORM + "; charset=utf-8",
    )
    form_answer(ok.send(gw))


# --- bodies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/oauth1/request_token", "/oauth1/access_token", "/oauth1/authorize", "/oauth1/tokens"]
)
def test_an_oversized_body_is_413_before_it_is_read(
    gw: GatewayProcess, upstream: RecordingUpstream, path: str
) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n"
        f"Content-Length: {16 * 1024 + 1}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    (r,) = exchange(gw.port, head, timeout=5)  # not a byte of the body sent
    assert r.status == 413 and time.monotonic() - started < 3
    # with Expect: 100-continue: 413, never 100
    expect = head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
    (r,) = exchange(gw.port, expect, timeout=5)
    assert r.status == 413
    # chunked: refused at the first byte over the limit
    body = b"scope=" + b"a" * (16 * 1024)
    raw = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode() + chunked(body, 4096)
    assert send(gw.port, raw).status == 413
    assert not upstream.requests


def test_a_signed_chunked_form_body_works(gw: GatewayProcess, app: Consumer) -> None:
    host = f"127.0.0.1:{gw.port}"
    signed = sign(
        app,
        "/oauth1/request_token",
        host=host,
        oauth={"oauth_callback": "oob"},
        where="body",
        body=[("scope", "notes:read"), ("pad", "p" * 8000)],
    )
    head = (
        f"POST /oauth1/request_token HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: {FORM}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    r = send(gw.port, head.encode() + chunked(signed.body, 1000))
    assert r.status == 200 and b"oauth_callback_confirmed=true" in r.body
    # twin of the limit: the same body just over 16 KiB is refused
    big = sign(
        app,
        "/oauth1/request_token",
        host=host,
        oauth={"oauth_callback": "oob"},
        where="body",
        body=[("pad", "p" * 16400)],
    )
    assert send(gw.port, head.encode() + chunked(big.body, 1000)).status == 413


# --- the decision log ---------------------------------------------------------------------------


def test_oauth1_token_issuance_and_failures_are_in_the_audit_log(
    gw: GatewayProcess, app: Consumer
) -> None:
    client = add_client(gw, "notes:read", grants=("client_credentials",), redirect_uris=())
    r = requests.post(
        gw.url + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client.id, "wrong"),
        timeout=10,
    )
    assert r.status_code == 401
    done = authorized(gw, app, signed_in(gw), "alice", PASSWORD)
    assert_json_error(request_token(gw, app, consumer_secret="B" * 43), 401)
    assert_json_error(access_token(gw, app, done.temp, "W" * 22), 401)
    got = form_answer(access_token(gw, app, done.temp, done.verifier))
    events = gw.audit_events()
    # twin: the OAuth 2.0 token endpoint's refusal is there
    assert any(
        e["path"] == "/oauth2/token" and e["credential_id"] == f"oauth2:{client.id}" for e in events
    )
    text = gw.settings.audit_path.read_text()  # type: ignore[union-attr]
    for secret in (app.secret, done.temp.secret, done.verifier, got["oauth_token_secret"]):
        assert secret not in text  # never a secret
    seen = {(e["path"], e["status"]) for e in events if e["path"].startswith("/oauth1/")}
    assert {
        ("/oauth1/request_token", 200),
        ("/oauth1/request_token", 401),
        ("/oauth1/access_token", 401),
        ("/oauth1/access_token", 200),
    } <= seen, seen


def test_oauth1_token_credentials_are_no_bearer_tokens(
    gw: GatewayProcess, app: Consumer, upstream: RecordingUpstream
) -> None:
    creds = three_legged(gw, app, ResourceOwner(gw), "alice", PASSWORD)
    for value in (creds.token, creds.secret, f"{creds.token}:{creds.secret}"):
        for scheme in ("Bearer", "OAuth"):
            r = requests.get(
                gw.url + "/notes/1", headers={"authorization": f"{scheme} {value}"}, timeout=10
            )
            assert r.status_code in (400, 401), (scheme, r.status_code)
    assert not upstream.requests
    assert protected(gw, app, creds).status_code == 200  # twin


# --- the pages' headers ---------------------------------------------------------------------------


def test_every_page_of_the_flow_is_unframeable_and_uncached(gw: GatewayProcess) -> None:
    consumer = add_consumer(gw, "notes:read", callback=None)
    temp = temporary(gw, consumer, "oob")
    owner = ResourceOwner(gw)
    login = owner.go("/oauth1/authorize?oauth_token=" + temp.token)
    consent = owner.login(login, "alice", PASSWORD)
    shown = decide(owner, forms(consent.text)[0])
    listing = owner.go("/oauth1/tokens")
    error = owner.http.get(gw.url + "/oauth1/authorize?oauth_token=nope", timeout=10)
    for page in (login, consent, shown, listing, error):
        h = page.headers
        assert h["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert "script-src" not in h["content-security-policy"]
        assert h["cache-control"] == "no-store" and h["referrer-policy"] == "no-referrer"
    assert "form-action 'self';" in consent.headers["content-security-policy"]  # oob: no origin
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_consumer_with_many_scopes_can_be_allowed(gw: GatewayProcess) -> None:
    many = [f"s{i}:read" for i in range(70)]
    consumer = add_consumer(gw, *many)
    add_user(gw, "wide", PASSWORD, *many)
    temp = temporary(gw, consumer)
    owner = signed_in(gw, "wide")
    form = consent_form(owner, temp.token, "wide", PASSWORD)
    assert len(form.checkboxes) == 70
    assert decide(owner, form, many[:60]).status_code == 303  # twin: 60 ticked work
    again = temporary(gw, consumer)
    landed = decide(owner, consent_form(owner, again.token, "wide", PASSWORD))  # all ticked
    assert landed.status_code == 303, (landed.status_code, landed.text[:200])
