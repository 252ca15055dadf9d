"""Attacks on the device authorization grant (RFC 8628 §5), each with its valid twin, through
the real gateway: polling too fast, another client's device code, double redemption, an
expired code, guessing user codes (§5.1), a denial, a scope the device did not ask for
smuggled into the confirmation form, CSRF on ``POST /device``, and remembered consent trying
to skip the confirmation (§5.4, remote phishing)."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from restguard.store.ports import DeviceCodeRecord
from tests.harness import GatewayProcess, RecordingUpstream
from tests.oauth2_support import (
    Client,
    ResourceOwner,
    _store_call,
    add_client,
    add_user,
    device_authorization,
    forms,
)

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def users(gw: GatewayProcess) -> None:
    add_user(gw, "alice", PASSWORD, "notes:read", "notes:write")
    add_user(gw, "bob", PASSWORD, "notes:read")


def device_client(gw: GatewayProcess, *, refresh: bool = False) -> Client:
    grants = ("device_code", "refresh_token") if refresh else ("device_code",)
    return add_client(
        gw, "notes:read", "notes:write", public=True, grants=grants, redirect_uris=(), name="TV"
    )


def poll(gw: GatewayProcess, client: Client, device_code: str) -> requests.Response:
    data = {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": device_code,
        "client_id": client.id,
    }
    return requests.post(gw.url + "/oauth2/token", data=data, timeout=10)


def error_of(r: requests.Response) -> str:
    assert r.headers["cache-control"] == "no-store"
    assert r.status_code == 400, r.text
    error: str = r.json()["error"]
    return error


def signed_in(gw: GatewayProcess, username: str = "alice") -> tuple[ResourceOwner, Any]:
    """A resource owner signed in, on the user-code page."""
    owner = ResourceOwner(gw)
    page = owner.go("/device")
    page = owner.login(page, username, PASSWORD)
    assert forms(page.text)[0].action == "/device"
    return owner, page


@pytest.mark.usefixtures("users")
def test_polling_too_fast_is_slow_down(gw: GatewayProcess) -> None:
    tv = device_client(gw)
    started = device_authorization(gw, tv)
    assert error_of(poll(gw, tv, started["device_code"])) == "authorization_pending"
    # attack: poll again at once, and again -- each time the interval grows by 5 s
    assert error_of(poll(gw, tv, started["device_code"])) == "slow_down"
    slowed = poll(gw, tv, started["device_code"])
    assert error_of(slowed) == "slow_down" and "15 seconds" in slowed.json()["error_description"]
    # twin: another device that waits its interval keeps hearing authorization_pending
    other = device_authorization(gw, tv)
    assert error_of(poll(gw, tv, other["device_code"])) == "authorization_pending"
    time.sleep(other["interval"] + 0.1)
    assert error_of(poll(gw, tv, other["device_code"])) == "authorization_pending"


@pytest.mark.usefixtures("users")
def test_device_code_of_another_client_is_refused(gw: GatewayProcess) -> None:
    tv, thief = device_client(gw), device_client(gw)
    started = device_authorization(gw, tv)
    owner, page = signed_in(gw)
    owner.decide_device(owner.enter_user_code(page, started["user_code"]))
    # attack: another registered client redeems the approved code
    assert error_of(poll(gw, thief, started["device_code"])) == "invalid_grant"
    # twin: the client it was issued to gets the token (its poll was not spent by the thief)
    r = poll(gw, tv, started["device_code"])
    assert r.status_code == 200 and r.json()["access_token"]


@pytest.mark.usefixtures("users")
def test_double_redemption_is_refused(gw: GatewayProcess) -> None:
    tv = device_client(gw, refresh=True)
    started = device_authorization(gw, tv, "notes:read")
    owner, page = signed_in(gw)
    owner.decide_device(owner.enter_user_code(page, started["user_code"]))
    first = poll(gw, tv, started["device_code"])  # twin: the first redemption works
    assert first.status_code == 200 and first.json()["refresh_token"].startswith("rg_rt_")
    time.sleep(started["interval"] + 0.1)
    assert error_of(poll(gw, tv, started["device_code"])) == "invalid_grant"


@pytest.mark.usefixtures("users")
def test_an_expired_code_is_expired_token_and_cannot_be_entered(gw: GatewayProcess) -> None:
    tv = device_client(gw)
    device_code = "rg_dc_" + "E" * 43
    past = datetime.now(UTC) - timedelta(minutes=11)
    record = DeviceCodeRecord(
        device_code_hash=hashlib.sha256(device_code.encode()).digest(),
        user_code="XZXZXZXZ",
        client_id=tv.id,
        scopes=("notes:read",),
        created_at=past,
        expires_at=past + timedelta(seconds=600),
        interval=5,
    )
    _store_call(gw, lambda store: store.device_codes.insert(record))
    assert error_of(poll(gw, tv, device_code)) == "expired_token"
    owner, page = signed_in(gw)
    refused = owner.enter_user_code(page, "XZXZ-XZXZ")
    assert refused.status_code == 200 and 'role="alert"' in refused.text
    assert forms(refused.text)[0].inputs.get("user_code") is not None  # still the code form
    # twin: a live code is pending, and can be entered
    started = device_authorization(gw, tv)
    assert error_of(poll(gw, tv, started["device_code"])) == "authorization_pending"
    assert "device" in forms(owner.enter_user_code(page, started["user_code"]).text)[0].inputs


@pytest.mark.usefixtures("users")
def test_denied_is_access_denied(gw: GatewayProcess) -> None:
    tv = device_client(gw)
    denied, approved = device_authorization(gw, tv), device_authorization(gw, tv)
    owner, page = signed_in(gw)
    done = owner.decide_device(owner.enter_user_code(page, denied["user_code"]), decision="deny")
    assert done.status_code == 200 and "return to your device" in done.text
    assert error_of(poll(gw, tv, denied["device_code"])) == "access_denied"
    # the denied code cannot be approved afterwards
    again = owner.enter_user_code(owner.go("/device"), denied["user_code"])
    assert 'role="alert"' in again.text
    # twin
    owner.decide_device(owner.enter_user_code(owner.go("/device"), approved["user_code"]))
    assert poll(gw, tv, approved["device_code"]).status_code == 200


@pytest.mark.usefixtures("users")
def test_approving_a_scope_not_requested_is_refused(gw: GatewayProcess) -> None:
    tv = device_client(gw)
    started = device_authorization(gw, tv, "notes:read")
    owner, page = signed_in(gw)
    confirm = owner.enter_user_code(page, started["user_code"])
    assert [v for _, v, _ in forms(confirm.text)[0].checkboxes] == ["notes:read"]
    # attack: the form is posted with notes:write added
    refused = owner.decide_device(confirm, scopes=["notes:read", "notes:write"])
    assert refused.status_code == 400
    assert error_of(poll(gw, tv, started["device_code"])) == "authorization_pending"
    # a user who may not grant notes:write cannot either (bob holds notes:read only)
    both = device_authorization(gw, tv, "notes:read notes:write")
    bob, bob_page = signed_in(gw, "bob")
    bob_confirm = bob.enter_user_code(bob_page, both["user_code"])
    assert [v for _, v, _ in forms(bob_confirm.text)[0].checkboxes] == ["notes:read"]
    assert bob.decide_device(bob_confirm, scopes=["notes:write"]).status_code == 400
    # twin: the scope asked for is granted
    done = owner.decide_device(confirm, scopes=["notes:read"])
    assert done.status_code == 200
    time.sleep(started["interval"] + 0.1)
    r = poll(gw, tv, started["device_code"])
    assert r.status_code == 200 and r.json()["scope"] == "notes:read"


@pytest.mark.usefixtures("users")
def test_csrf_on_post_device_is_refused(gw: GatewayProcess) -> None:
    tv = device_client(gw)
    started = device_authorization(gw, tv)
    owner, page = signed_in(gw)
    form = forms(page.text)[0]
    post = owner.http.post
    url = gw.url + "/device"
    # attack: a cross-site form with no token, or with the token of another session
    assert post(url, data={"user_code": started["user_code"]}, timeout=10).status_code == 403
    mallory, mallory_page = signed_in(gw, "bob")
    stolen = forms(mallory_page.text)[0].inputs["csrf"]
    data = {"user_code": started["user_code"], "csrf": stolen}
    assert post(url, data=data, timeout=10).status_code == 403
    # ... and on the decision too: the sealed confirmation alone is not enough
    confirm = owner.enter_user_code(page, started["user_code"])
    decision = forms(confirm.text)[0]
    fields = {"device": decision.inputs["device"], "scope": "notes:read", "decision": "allow"}
    assert post(url, data=fields, timeout=10).status_code == 403
    # ... nor another user's session replaying alice's confirmation with a token of its own
    # (its token belongs to another form and another sealed decision: refused as CSRF)
    replay = {**fields, "csrf": stolen}
    assert mallory.http.post(url, data=replay, timeout=10).status_code == 403
    assert error_of(poll(gw, tv, started["device_code"])) == "authorization_pending"
    # twin: the real form, token included, works
    assert owner.submit(form, {"user_code": started["user_code"]}).status_code == 200
    assert owner.decide_device(confirm).status_code == 200


@pytest.mark.usefixtures("users")
def test_remembered_consent_never_skips_the_confirmation(gw: GatewayProcess) -> None:
    tv = device_client(gw)
    first = device_authorization(gw, tv, "notes:read")
    owner, page = signed_in(gw)
    owner.decide_device(owner.enter_user_code(page, first["user_code"]))
    # RFC 8628 §5.4: a code sent by a phisher still needs the user's explicit confirmation
    second = device_authorization(gw, tv, "notes:read")
    confirm = owner.enter_user_code(owner.go("/device"), second["user_code"])
    assert confirm.status_code == 200 and forms(confirm.text)[0].inputs.get("device")
    assert error_of(poll(gw, tv, second["device_code"])) == "authorization_pending"


def test_user_code_guessing_is_limited(tmp_path: Path, upstream: RecordingUpstream) -> None:
    """RFC 8628 §5.1: wrong user codes are limited per address and per user (its own gateway:
    the limit would leak into other tests)."""
    gw = GatewayProcess(tmp_path / "gw", upstream).start()
    try:
        add_user(gw, "alice", PASSWORD, "notes:read")
        tv = device_client(gw)
        started = device_authorization(gw, tv)
        owner, page = signed_in(gw)
        # twin: the right code goes through before any guess
        assert "device" in forms(owner.enter_user_code(page, started["user_code"]).text)[0].inputs
        for guess in range(10):
            wrong = owner.enter_user_code(owner.go("/device"), f"BBBB-BB{'BCDFGHJKLM'[guess]}B")
            assert wrong.status_code == 200 and 'role="alert"' in wrong.text
        # attack: the eleventh try is refused before the code is looked at -- the right one too
        limited = owner.enter_user_code(owner.go("/device"), started["user_code"])
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert error_of(poll(gw, tv, started["device_code"])) == "authorization_pending"
    finally:
        gw.stop()
