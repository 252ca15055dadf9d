"""The admin console (every admin-listener path but /api/, /healthz, /readyz, /metrics), through
HTTP: signing in with an admin key, the session cookie, CSRF and cross-site refusals, the
headers every page carries, the API keys page's create / revoke / rotate with the secret shown
once, the dashboard's counts, and the audit line of each change. Chromium drives the same pages
in tests/browser/test_admin_console.py."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from restguard.admin.app import admin_app
from restguard.cli.init import bootstrap_admin_key, write_data_dir
from restguard.config import load
from restguard.observe import Metrics
from restguard.wiring import Runtime, open_runtime


@dataclass
class Console:
    client: httpx.AsyncClient
    key: str
    key_id: str
    runtime: Runtime
    metrics: Metrics
    audit: Path

    async def csrf(self, path: str, form_action: str | None = None) -> str:
        """The CSRF token of the form posting to ``form_action`` on the page at ``path``."""
        page = await self.client.get(path)
        assert page.status_code == 200, page.text
        action = form_action or path
        m = re.search(
            rf'<form method="post" action="{re.escape(action)}"><input type="hidden" '
            r'name="csrf" value="([^"]+)">',
            page.text,
        )
        assert m, f"no form to {action} on {path}"
        return m.group(1)

    async def login(self, key: str | None = None) -> httpx.Response:
        token = await self.csrf("/login")
        return await self.client.post("/login", data={"key": key or self.key, "csrf": token})


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    config = write_data_dir(tmp_path / "d")
    boot = bootstrap_admin_key(config)
    metrics = Metrics()
    runtime = await open_runtime(load(config), sinks=[metrics.observe_decision])
    app = admin_app(runtime, metrics, {})
    transport = httpx.ASGITransport(app, client=("127.0.0.1", 5000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            yield Console(
                client, boot["key"], boot["id"], runtime, metrics, tmp_path / "d" / "audit.log"
            )
    finally:
        await runtime.close()


async def test_pages_need_a_session(console: Console) -> None:
    for path in ("/", "/apikeys"):
        r = await console.client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_every_page_carries_the_strict_headers(console: Console) -> None:
    r = await console.client.get("/login")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    for directive in ("default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"):
        assert directive in csp
    assert "script-src" not in csp and "'unsafe-inline'" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in r.text and "http://" not in r.text.replace("http://admin", "")


async def test_sign_in_with_an_admin_key_sets_a_strict_session_cookie(console: Console) -> None:
    r = await console.login()
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookies = r.headers.get_list("set-cookie")
    (session,) = [c for c in cookies if c.startswith("restguard_admin=")]
    assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/" in session
    assert "Secure" not in session  # plain HTTP here; over TLS: Secure and __Host-
    assert console.key not in session
    page = await console.client.get("/")
    assert page.status_code == 200 and "Dashboard" in page.text


@pytest.mark.parametrize("kind", ["wrong", "plain", "empty"])
async def test_sign_in_refuses_what_is_not_an_admin_key(console: Console, kind: str) -> None:
    key = console.key
    if kind == "wrong":
        key = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    elif kind == "plain":
        r = await console.login()
        token = await console.csrf("/apikeys")
        made = await console.client.post(
            "/apikeys", data={"csrf": token, "name": "plain", "scopes": "notes:read"}
        )
        key = re.search(r'id="new-secret">([^<]+)<', made.text).group(1)  # type: ignore[union-attr]
        console.client.cookies.clear()
    else:
        key = " "
    r = await console.login(key)
    assert r.status_code in (401, 403)
    assert 'role="alert"' in r.text
    assert "restguard_admin=" not in "".join(
        c for c in r.headers.get_list("set-cookie") if not c.startswith("restguard_admin_login")
    )
    assert (await console.client.get("/")).status_code == 303


async def test_repeated_failed_sign_ins_are_locked_out_per_address(console: Console) -> None:
    statuses = []
    for _ in range(35):
        r = await console.login("rg_ak_aaaaaaaaaaaa_" + "A" * 49)
        statuses.append(r.status_code)
    assert 429 in statuses
    assert statuses.index(429) <= 31


async def test_forms_need_their_csrf_token_and_this_origin(console: Console) -> None:
    await console.login()
    before = (await console.client.get("/apikeys")).text.count("<tr id=")
    no_token = await console.client.post("/apikeys", data={"name": "x"})
    assert no_token.status_code == 403
    wrong_form = await console.csrf("/apikeys", "/logout")  # another form's token
    r = await console.client.post("/apikeys", data={"name": "x", "csrf": wrong_form})
    assert r.status_code == 403
    token = await console.csrf("/apikeys")
    cross = await console.client.post(
        "/apikeys",
        data={"name": "x", "csrf": token},
        headers={"Origin": "http://evil.example"},
    )
    assert cross.status_code == 403
    site = await console.client.post(
        "/apikeys", data={"name": "x", "csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert site.status_code == 403
    twice = await console.client.post(
        "/apikeys",
        content=b"name=x&name=y&csrf=" + token.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert twice.status_code == 400
    assert (await console.client.get("/apikeys")).text.count("<tr id=") == before


async def test_a_token_from_another_session_is_refused(console: Console) -> None:
    await console.login()
    token = await console.csrf("/apikeys")
    console.client.cookies.clear()
    await console.login()  # a new session: a new nonce
    r = await console.client.post("/apikeys", data={"name": "x", "csrf": token})
    assert r.status_code == 403


async def test_create_shows_the_key_once_revoke_and_rotate(console: Console) -> None:
    await console.login()
    token = await console.csrf("/apikeys")
    r = await console.client.post(
        "/apikeys", data={"csrf": token, "name": "billing <b>", "scopes": "a b", "expires_in": ""}
    )
    assert r.status_code == 200
    key = re.search(r'id="new-secret">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    assert key.startswith("rg_ak_")
    assert "billing &lt;b&gt;" in r.text and "billing <b>" not in r.text
    again = await console.client.get("/apikeys")
    assert key not in again.text  # shown once
    key_id = key.split("_")[2]
    m = re.search(
        rf'action="/apikeys/{key_id}/rotate"><input type="hidden" name="csrf" value="([^"]+)">'
        r'<input type="hidden" name="etag" value="([^"]+)">',
        again.text,
    )
    assert m
    etag = html.unescape(m.group(2))  # as a browser sends the field
    rotated = await console.client.post(
        f"/apikeys/{key_id}/rotate", data={"csrf": m.group(1), "etag": etag}
    )
    new_key = re.search(r'id="new-secret">([^<]+)<', rotated.text).group(1)  # type: ignore[union-attr]
    assert new_key != key
    # the stale version (read before the rotation) is refused
    stale = await console.client.post(
        f"/apikeys/{key_id}/rotate", data={"csrf": m.group(1), "etag": etag}
    )
    assert stale.status_code in (409, 412)
    new_id = new_key.split("_")[2]
    page = (await console.client.get("/apikeys")).text
    m = re.search(
        rf'action="/apikeys/{new_id}/revoke"><input type="hidden" name="csrf" value="([^"]+)">',
        page,
    )
    assert m
    revoked = await console.client.post(f"/apikeys/{new_id}/revoke", data={"csrf": m.group(1)})
    assert revoked.status_code == 200 and f"Key {new_id} revoked." in revoked.text
    console.runtime.audit.flush()  # type: ignore[union-attr]
    lines = [json.loads(x) for x in console.audit.read_text().splitlines()]
    changes = [x["detail"] for x in lines if (x["detail"] or "").startswith("admin ")]
    assert changes == [
        f"admin apikey.create {key_id} (console)",
        f"admin apikey.rotate {key_id} -> {new_id} (console)",
        f"admin apikey.revoke {new_id} (console)",
    ]
    text = console.audit.read_text()
    for secret in (console.key, key, new_key):
        assert secret[19:] not in text


async def test_bad_input_is_shown_and_changes_nothing(console: Console) -> None:
    await console.login()
    before = (await console.client.get("/apikeys")).text.count("<tr id=")
    token = await console.csrf("/apikeys")
    r = await console.client.post("/apikeys", data={"csrf": token, "name": "", "scopes": "a,b"})
    assert r.status_code == 400 and 'role="alert"' in r.text and "name:" in r.text
    assert r.text.count("<tr id=") == before


async def test_revoking_the_signed_in_key_ends_its_session(console: Console) -> None:
    await console.login()
    assert (await console.client.get("/")).status_code == 200
    await console.runtime.store.api_keys.revoke(console.key_id, console.runtime.clock.now())
    assert (await console.client.get("/")).status_code == 303


async def test_sign_out_ends_the_session(console: Console) -> None:
    await console.login()
    token = await console.csrf("/", "/logout")
    r = await console.client.post("/logout", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert (await console.client.get("/")).status_code == 303


async def test_the_dashboard_counts_decisions(console: Console) -> None:
    await console.login()
    # a denied request to the gateway's guard, as the gateway would record it
    from restguard.errors import AuthError
    from restguard.types import RequestView

    with pytest.raises(AuthError):
        await console.runtime.guard.decide(RequestView("GET", "/notes/1", client="192.0.2.9"))
    page = (await console.client.get("/")).text
    denied = re.search(r'id="denied-total">(\d+)<', page)
    assert denied and int(denied.group(1)) >= 1
    assert "<svg" in page and 'role="img"' in page
    assert re.search(r"<td>none</td><td>deny</td><td>40[14]</td>", page)


async def test_behind_a_trusted_tls_proxy_the_cookie_is_secure_and_origin_is_https(
    tmp_path: Path,
) -> None:
    """A TLS-terminating proxy in [server] trusted_proxies: the browser saw https://its host,
    so the session cookie is Secure with the __Host- prefix and a form's Origin is that one.
    The same claims from an untrusted peer change nothing."""
    from tests.harness import set_key

    config = write_data_dir(tmp_path / "d")
    config.write_text(set_key(config.read_text(), "server.trusted_proxies", '["127.0.0.1/32"]'))
    boot = bootstrap_admin_key(config)
    metrics = Metrics()
    runtime = await open_runtime(load(config), sinks=[metrics.observe_decision])
    claims = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "admin.example"}
    try:
        for peer, secure in (("127.0.0.1", True), ("192.0.2.7", False)):
            transport = httpx.ASGITransport(admin_app(runtime, metrics, {}), client=(peer, 5000))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://admin", headers=claims
            ) as client:
                page = await client.get("/login")
                token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
                # (the browser's jar; httpx keeps a Secure cookie from http://admin to itself)
                (login,) = page.headers.get_list("set-cookie")
                client.cookies.clear()
                r = await client.post(
                    "/login",
                    data={"key": boot["key"], "csrf": token},
                    headers={"Origin": "https://admin.example", "Cookie": login.split(";")[0]},
                )
                if secure:
                    assert r.status_code == 303, r.text
                    (session,) = [
                        c for c in r.headers.get_list("set-cookie") if "restguard_admin=" in c
                    ]
                    assert session.startswith("__Host-restguard_admin=") and "; Secure" in session
                else:  # an untrusted peer's claims: http://admin is its origin, not this one
                    assert r.status_code == 403
    finally:
        await runtime.close()
