"""The admin console's pages of every kind of record but API keys (test_admin_console.py): apps,
OAuth 2.0 clients, OAuth 1.0a consumers and tokens, users, issuers and signing keys. For each:
the list renders, create shows the secret once (where there is one) and its effect is in the
store, revoke / remove works with the record's etag, bad input is an alert naming the field and
changes nothing, and a form without its own CSRF token is 403. Each change writes its audit
line through the same service layer as the API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from restguard.admin.console.pages import NAV
from restguard.manage import apps, issuers, oauth1, oauth2_clients, users
from restguard.store.ports import OAuth1TokenRecord
from tests.integration.console_support import (
    admin_changes,
    alert_of,
    open_console,
    redacted,
    row_form,
    secret_of,
)
from tests.integration.test_admin_console import Console


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with open_console(tmp_path) as (signed_in, _):
        yield signed_in


async def post(console: Console, page: str, action: str, **fields: str) -> tuple[int, str]:
    """Post ``fields`` with the form's own hidden fields (csrf, etag) read off ``page``."""
    text = (await console.client.get(page)).text
    r = await console.client.post(action, data={**row_form(text, action), **fields})
    return r.status_code, r.text


def pem_of(key: ed25519.Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# --- every page ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [href for href, _ in NAV if href != "/"])
async def test_each_page_renders_in_the_navigation_and_needs_a_session(
    console: Console, path: str
) -> None:
    r = await console.client.get(path)
    assert r.status_code == 200, r.text
    assert f'<a href="{path}" aria-current=page>' in r.text
    assert "<script" not in r.text and "'unsafe-inline'" not in r.headers["content-security-policy"]
    assert r.text.count("<style>") == 1
    console.client.cookies.clear()
    gone = await console.client.get(path)
    assert gone.status_code == 303 and gone.headers["location"] == "/login"


FORMS = [
    ("/apps", "/apps", {"name": "x", "scopes": "a", "alg": "hmac-sha256"}),
    ("/oauth2/clients", "/oauth2/clients", {"name": "x", "grant_client_credentials": "on"}),
    ("/oauth1", "/oauth1/consumers", {"name": "x", "scopes": "a"}),
    ("/users", "/users", {"username": "x", "password": "correct horse battery"}),
    ("/issuers", "/issuers", {"issuer": "https://idp.example/", "audience": "a"}),
    ("/signing-keys", "/signing-keys", {"alg": "ES256"}),
]


@pytest.mark.parametrize(("page", "action", "fields"), FORMS)
async def test_a_form_without_its_own_csrf_token_is_403_and_changes_nothing(
    console: Console, page: str, action: str, fields: dict[str, str]
) -> None:
    before = (await console.client.get(page)).text.count("<tr id=")
    assert (await console.client.post(action, data=fields)).status_code == 403
    other = row_form((await console.client.get("/apikeys")).text, "/apikeys")["csrf"]
    r = await console.client.post(action, data={**fields, "csrf": other})  # another form's
    assert r.status_code == 403
    assert (await console.client.get(page)).text.count("<tr id=") == before
    assert admin_changes(console) == []


# --- apps ---------------------------------------------------------------------------------------


async def test_app_create_shows_the_secret_once_rotate_and_revoke(console: Console) -> None:
    status, text = await post(
        console, "/apps", "/apps", name="billing <b>", scopes="notes:read", alg="hmac-sha256"
    )
    assert status == 200, text
    secret = secret_of(text)
    assert secret and "billing &lt;b&gt;" in text and "billing <b>" not in text
    (made,) = (await apps.listing(console.runtime.store, console.runtime.clock.now()))["items"]
    assert made["name"] == "billing <b>" and made["scopes"] == ["notes:read"]
    key_id = made["key_id"]
    listing = (await console.client.get("/apps")).text
    assert secret not in listing and key_id in listing
    status, text = await post(console, "/apps", f"/apps/{key_id}/rotate")
    new_secret = secret_of(text)
    assert status == 200 and new_secret and new_secret != secret
    new_id = re.search(r"the new key_id (app_[0-9a-z]+)", text).group(1)  # type: ignore[union-attr]
    status, text = await post(console, "/apps", f"/apps/{new_id}/revoke")
    assert status == 200 and f"App {new_id} revoked." in text
    rec = await apps.read(console.runtime.store, new_id)
    assert apps.state(rec, console.runtime.clock.now()) == "revoked"
    assert admin_changes(console) == [
        f"admin app.create {key_id} (console)",
        f"admin app.rotate {key_id} -> {new_id} (console)",
        f"admin app.revoke {new_id} (console)",
    ]


async def test_an_ed25519_app_registers_its_public_key_without_a_secret(
    console: Console,
) -> None:
    pem = pem_of(ed25519.Ed25519PrivateKey.generate()).replace("\n", "\r\n")  # as browsers send
    status, text = await post(
        console, "/apps", "/apps", name="signer", scopes="a", alg="ed25519", public_key=pem
    )
    assert status == 200, alert_of(text)
    assert secret_of(text) is None and "public key is registered" in text
    (made,) = (await apps.listing(console.runtime.store, console.runtime.clock.now()))["items"]
    assert made["alg"] == "ed25519" and made["public_key_sha256"] in text


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "x", "scopes": "a", "alg": "rot13"}, "alg"),
        ({"name": "", "scopes": "a", "alg": "hmac-sha256"}, "name"),
        ({"name": "x", "scopes": "a", "alg": "ed25519", "public_key": "not a pem"}, "public_key"),
    ],
)
async def test_bad_app_input_is_an_alert_naming_the_field(
    console: Console, fields: dict[str, str], field: str
) -> None:
    status, text = await post(console, "/apps", "/apps", **fields)
    assert status == 400
    alert = alert_of(text)
    assert alert and alert.startswith(f"{field}:")
    assert (await apps.listing(console.runtime.store, console.runtime.clock.now()))["items"] == []
    assert admin_changes(console) == []


async def test_a_stale_or_unknown_app_is_refused(console: Console) -> None:
    await post(console, "/apps", "/apps", name="x", scopes="a", alg="hmac-sha256")
    text = (await console.client.get("/apps")).text
    key_id = re.search(r'id="app-(app_[0-9a-z]+)"', text).group(1)  # type: ignore[union-attr]
    old = row_form(text, f"/apps/{key_id}/revoke")
    await post(console, "/apps", f"/apps/{key_id}/rotate")  # the app's version changes
    r = await console.client.post(f"/apps/{key_id}/revoke", data=old)
    assert r.status_code == 412 and alert_of(r.text)
    rec = await apps.read(console.runtime.store, key_id)
    assert apps.state(rec, console.runtime.clock.now()) == "grace" or rec.revoked_at is not None
    csrf = {"csrf": old["csrf"]}
    unknown = await console.client.post("/apps/app_0000000000000000/revoke", data=csrf)
    assert unknown.status_code == 404 and "id:" in (alert_of(unknown.text) or "")


# --- OAuth 2.0 clients --------------------------------------------------------------------------


async def test_client_create_shows_the_secret_once_and_revoke(console: Console) -> None:
    status, text = await post(
        console,
        "/oauth2/clients",
        "/oauth2/clients",
        name="web",
        scopes="notes:read",
        grant_authorization_code="on",
        grant_refresh_token="on",
        redirect_uris="https://app.example/cb\r\nhttps://app.example/cb2\r\n",
        token_format="opaque",
    )
    assert status == 200, alert_of(text)
    secret = secret_of(text)
    assert secret
    store, now = console.runtime.store, console.runtime.clock.now()
    (made,) = (await oauth2_clients.listing(store, now))["items"]
    assert made["grants"] == ["authorization_code", "refresh_token"]
    assert made["redirect_uris"] == ["https://app.example/cb", "https://app.example/cb2"]
    assert made["public"] is False and made["token_format"] == "opaque"
    client_id = made["client_id"]
    assert secret not in (await console.client.get("/oauth2/clients")).text
    status, text = await post(console, "/oauth2/clients", f"/oauth2/clients/{client_id}/revoke")
    assert status == 200 and f"Client {client_id} revoked." in text
    rec = await oauth2_clients.read(store, client_id)
    assert oauth2_clients.state(rec, console.runtime.clock.now()) == "revoked"
    assert admin_changes(console) == redacted(
        [
            f"admin oauth2-client.create {client_id} (console)",
            f"admin oauth2-client.revoke {client_id} (console)",
        ]
    )


async def test_a_public_client_has_no_secret(console: Console) -> None:
    status, text = await post(
        console,
        "/oauth2/clients",
        "/oauth2/clients",
        name="spa",
        scopes="a",
        grant_authorization_code="on",
        redirect_uris="https://spa.example/cb",
        public="on",
    )
    assert status == 200, alert_of(text)
    assert secret_of(text) is None and "a public client, without a secret" in text


async def test_bad_client_input_is_an_alert_naming_the_field(console: Console) -> None:
    status, text = await post(
        console, "/oauth2/clients", "/oauth2/clients", name="x", scopes="a"
    )  # no grant ticked
    assert status == 400 and (alert_of(text) or "").startswith("grants:")
    status, text = await post(
        console,
        "/oauth2/clients",
        "/oauth2/clients",
        name="x",
        scopes="a",
        grant_authorization_code="on",
        redirect_uris="javascript:alert(1)",
    )
    assert status == 400 and (alert_of(text) or "").startswith("redirect_uris:")
    store, now = console.runtime.store, console.runtime.clock.now()
    assert (await oauth2_clients.listing(store, now))["items"] == []


# --- OAuth 1.0a ---------------------------------------------------------------------------------


async def test_consumer_create_shows_the_secret_once_and_revoke_it_and_a_token(
    console: Console,
) -> None:
    status, text = await post(
        console,
        "/oauth1",
        "/oauth1/consumers",
        name="printer",
        scopes="photos:read",
        callback="https://printer.example/cb",
        **{"method_HMAC-SHA256": "on"},
    )
    assert status == 200, alert_of(text)
    secret = secret_of(text)
    assert secret
    store, now = console.runtime.store, console.runtime.clock.now()
    (made,) = await oauth1.consumers(store, now)
    assert made["signature_methods"] == ["HMAC-SHA256"]
    key = made["consumer_key"]
    assert secret not in (await console.client.get("/oauth1")).text
    owner = await users.create(store, now, "carol", "correct horse battery staple")
    token = "rg_ot_" + "a" * 32
    await store.oauth1_tokens.insert(
        OAuth1TokenRecord(
            token,
            "access",
            key,
            b"rg1sealed",
            ("photos:read",),
            now,
            user_id=owner["user_id"],
            subject="carol",
        )
    )
    page = (await console.client.get("/oauth1")).text
    assert f'id="token-{token}"' in page
    status, text = await post(console, "/oauth1", f"/oauth1/tokens/{token}/revoke")
    assert status == 200 and "Token credentials revoked." in text
    assert (await oauth1.read_token(store, token)).revoked_at is not None
    status, text = await post(console, "/oauth1", f"/oauth1/consumers/{key}/revoke")
    assert status == 200 and f"Consumer {key} revoked" in text
    assert (await oauth1.read_consumer(store, key)).revoked_at is not None
    changes = admin_changes(console)
    assert changes[0] == f"admin oauth1-consumer.create {key} (console)"
    assert re.fullmatch(
        rf"admin oauth1-token.revoke {key} token sha256:[0-9a-f]{{16}} \(console\)", changes[1]
    )
    assert changes[2] == f"admin oauth1-consumer.revoke {key} (console)"


async def test_bad_consumer_input_is_an_alert_naming_the_field(console: Console) -> None:
    status, text = await post(
        console, "/oauth1", "/oauth1/consumers", name="x", scopes="a", callback="javascript:x"
    )
    assert status == 400 and (alert_of(text) or "").startswith("callback:")
    status, text = await post(
        console, "/oauth1", "/oauth1/consumers", name="x", scopes="a", **{"method_RSA-SHA1": "on"}
    )
    assert status == 400 and alert_of(text)
    assert await oauth1.consumers(console.runtime.store, console.runtime.clock.now()) == []


# --- users --------------------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


async def test_user_create_never_shows_the_password_and_remove(console: Console) -> None:
    status, text = await post(
        console, "/users", "/users", username="Alice", password=PASSWORD, scopes="notes:read"
    )
    assert status == 200, alert_of(text)
    assert PASSWORD not in text and "User alice created" in text
    store = console.runtime.store
    found = await users.find(store, "alice")
    assert found.scopes == ("notes:read",) and PASSWORD not in str(found.password_hash)
    assert PASSWORD not in (await console.client.get("/users")).text
    status, text = await post(console, "/users", f"/users/{found.user_id}/remove")
    assert status == 200 and "User alice removed" in text
    assert await store.users.get(found.user_id) is None
    assert admin_changes(console) == redacted(
        [
            f"admin user.create {found.user_id} (console)",
            f"admin user.remove {found.user_id} (console)",
        ]
    )
    assert PASSWORD not in console.audit.read_text()


async def test_bad_user_input_is_refused_without_echoing_the_password(console: Console) -> None:
    status, text = await post(console, "/users", "/users", username="bob", password="short")
    assert status == 400 and (alert_of(text) or "").startswith("password:")
    assert 'value="short"' not in text
    status, text = await post(console, "/users", "/users", username="", password=PASSWORD)
    assert status == 400 and (alert_of(text) or "").startswith("username:")
    assert PASSWORD not in text
    assert await users.everything(console.runtime.store, console.runtime.clock.now()) == []
    await post(console, "/users", "/users", username="bob", password=PASSWORD)
    status, text = await post(console, "/users", "/users", username="BOB", password=PASSWORD)
    assert status == 409 and (alert_of(text) or "").startswith("username:")
    assert PASSWORD not in text


# --- issuers ------------------------------------------------------------------------------------

ISS = "https://idp.example/"


async def test_issuer_add_and_remove(console: Console) -> None:
    status, text = await post(
        console,
        "/issuers",
        "/issuers",
        issuer=ISS,
        jwks_uri="http://127.0.0.1:9/jwks",  # unreachable: reported, added anyway
        audience="https://api.example",
        algorithms="EdDSA ES256",
        scope_claim="scp",
        leeway="30s",
    )
    assert status == 200, alert_of(text)
    assert "could not be read yet" in text
    store = console.runtime.store
    (made,) = await issuers.everything(store)
    assert made["algorithms"] == ["EdDSA", "ES256"] and made["leeway_seconds"] == 30
    assert made["scope_claim"] == "scp"
    status, text = await post(console, "/issuers", f"/issuers/{made['id']}/remove")
    assert status == 200 and "no longer trusted" in text
    assert await issuers.everything(store) == []
    assert admin_changes(console) == [
        f"admin issuer.add {made['id']} (console)",
        f"admin issuer.remove {made['id']} (console)",
    ]


async def test_bad_issuer_input_is_an_alert_naming_the_field(console: Console) -> None:
    status, text = await post(
        console,
        "/issuers",
        "/issuers",
        issuer=ISS,
        jwks_uri="http://idp.example/jwks",
        audience="https://api.example",
    )
    assert status == 400 and (alert_of(text) or "").startswith("jwks_uri:")
    status, text = await post(
        console,
        "/issuers",
        "/issuers",
        issuer=ISS,
        jwks_uri="https://idp.example/jwks",
        audience="https://api.example",
        leeway="soon",
    )
    assert status == 400 and (alert_of(text) or "").startswith("leeway:")
    assert await issuers.everything(console.runtime.store) == []


# --- signing keys -------------------------------------------------------------------------------


async def test_signing_key_rotate(console: Console) -> None:
    before = (await console.client.get("/signing-keys")).text.count("<tr id=")
    status, text = await post(console, "/signing-keys", "/signing-keys", alg="ES256")
    assert status == 200, alert_of(text)
    kid = re.search(r"Signing key (\S+) \(ES256\) signs from now on", text).group(1)  # type: ignore[union-attr]
    assert re.search(
        rf'<tr id="signing-{re.escape(kid)}"><td><code>[^<]+</code></td>'
        r"<td>ES256</td><td>signing</td>",
        text,
    )
    assert text.count("<tr id=") == before + 1
    assert admin_changes(console) == [f"admin signing-key.rotate {kid} (console)"]
    status, text = await post(console, "/signing-keys", "/signing-keys", alg="HS256")
    assert status == 400 and (alert_of(text) or "").startswith("alg:")
    assert text.count("<tr id=") == before + 1
