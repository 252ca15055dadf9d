"""Review attacks on the admin console (``admin/console/``), the admin API's newer resources
(``/api/audit`` and friends), ``X-Request-Id``, JSON logs and tracing.

Each test names one attack and asserts the safe behaviour, so it passes while the defence
holds; a defence that does not hold is marked ``xfail(strict=True, reason="FINDING: ...")``.
The console is driven in process (httpx over ASGI, with a clock the test moves; an exception
in the app is the 500 a real server answers), the request id through a real gateway.
"""

from __future__ import annotations

import html
import io
import json
import logging
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from restguard.admin.app import AdminApp, admin_app
from restguard.cli.init import bootstrap_admin_key, write_data_dir
from restguard.clock import FixedClock
from restguard.config import load
from restguard.edge.view import build_view, request_id
from restguard.logs import JsonFormatter
from restguard.manage import audit
from restguard.manage.errors import Conflict
from restguard.observe import Metrics
from restguard.types import RequestView
from restguard.wiring import Runtime, open_runtime
from tests.harness import GatewayProcess, RecordingUpstream

OWN_ID = re.compile(r"[0-9a-f]{32}")
XSS = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
RAW_MARKUP = re.compile(r"<script|<img|" + re.escape(XSS), re.IGNORECASE)


# --- an in-process console ------------------------------------------------------------------


@dataclass
class Con:
    client: httpx.AsyncClient
    app: AdminApp
    runtime: Runtime
    clock: FixedClock
    key: str
    key_id: str
    audit: Path
    base: str

    @property
    def session_name(self) -> str:
        return "__Host-restguard_admin" if self.base.startswith("https") else "restguard_admin"

    @property
    def session(self) -> str:
        value = self.client.cookies.get(self.session_name)
        assert value, "not signed in"
        return value

    def bare(self) -> httpx.AsyncClient:
        """A second browser (no cookies)."""
        transport = httpx.ASGITransport(
            self.app, client=("127.0.0.1", 5001), raise_app_exceptions=False
        )
        return httpx.AsyncClient(transport=transport, base_url=self.base)

    async def token(self, page: str, action: str | None = None) -> str:
        r = await self.client.get(page)
        assert r.status_code == 200, r.text
        return form_token(r.text, action or page)

    async def post(
        self, action: str, data: dict[str, str], headers: Any = None, page: str | None = None
    ) -> httpx.Response:
        csrf = await self.token(page or action, action)
        return await self.client.post(action, data={"csrf": csrf, **data}, headers=headers)

    def audit_text(self) -> str:
        self.runtime.audit.flush()  # type: ignore[union-attr]
        return self.audit.read_text() if self.audit.exists() else ""

    def append_audit(self, *lines: str) -> None:
        self.runtime.audit.flush()  # type: ignore[union-attr]
        with self.audit.open("a", encoding="utf-8") as f:
            for line in lines:
                f.write(line + "\n")


def form_token(page: str, action: str) -> str:
    m = re.search(
        rf'<form method="post" action="{re.escape(action)}"><input type="hidden" '
        r'name="csrf" value="([^"]+)">',
        page,
    )
    assert m, f"no form to {action}"
    return html.unescape(m.group(1))


@asynccontextmanager
async def open_con(
    tmp_path: Path, name: str = "d", scheme: str = "http", login: bool = True
) -> AsyncIterator[Con]:
    config = write_data_dir(tmp_path / name)
    boot = bootstrap_admin_key(config)
    clock = FixedClock(datetime.now(UTC))
    metrics = Metrics()
    runtime = await open_runtime(load(config), clock=clock, sinks=[metrics.observe_decision])
    app = admin_app(runtime, metrics, {})
    transport = httpx.ASGITransport(app, client=("127.0.0.1", 5000), raise_app_exceptions=False)
    base = f"{scheme}://admin"
    try:
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            con = Con(
                client,
                app,
                runtime,
                clock,
                boot["key"],
                boot["id"],
                tmp_path / name / "audit.log",
                base,
            )
            if login:
                csrf = await con.token("/login")
                r = await client.post("/login", data={"key": con.key, "csrf": csrf})
                assert r.status_code == 303 and r.headers["location"] == "/", r.text
            yield con
    finally:
        await runtime.close()


@pytest.fixture
async def con(tmp_path: Path) -> AsyncIterator[Con]:
    async with open_con(tmp_path) as c:
        yield c


async def with_cookie(con: Con, cookie: str, path: str = "/apikeys") -> httpx.Response:
    async with con.bare() as other:
        return await other.get(path, headers={"cookie": cookie})


def audit_line(**fields: Any) -> str:
    line = {
        "time": "2026-12-01T10:00:00.000+00:00",
        "method": "GET",
        "path": "/ok",
        "route": None,
        "outcome": "deny",
        "status": 401,
        "error": None,
        "auth_method": None,
        "credential_id": None,
        "client": "192.0.2.1",
        "detail": None,
        "duration_ms": 1.0,
        "upstream": None,
        "request_id": None,
    }
    return json.dumps(line | fields)


# --- sessions ---------------------------------------------------------------------------------


async def test_session_cookie_from_another_master_key_is_refused(tmp_path: Path) -> None:
    async with open_con(tmp_path, "a") as a, open_con(tmp_path, "b", login=False) as b:
        r = await with_cookie(b, f"restguard_admin={a.session}")
        assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_expired_session_cookie_is_refused(con: Con) -> None:
    con.clock.advance(8 * 3600 + 1)
    r = await con.client.get("/apikeys")
    assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_tampered_session_cookie_is_refused(con: Con) -> None:
    raw = con.session
    for forged in (raw[:-2] + ("AA" if raw[-2:] != "AA" else "BB"), raw + "A", raw[4:], "x"):
        r = await with_cookie(con, f"restguard_admin={forged}")
        assert r.status_code == 303, forged


async def test_login_nonce_cookie_is_not_a_session(con: Con) -> None:
    async with con.bare() as other:
        await other.get("/login")
        nonce = other.cookies.get("restguard_admin_login")
        assert nonce
        r = await other.get("/apikeys", headers={"cookie": f"restguard_admin={nonce}"})
        assert r.status_code == 303


async def test_csrf_token_is_not_a_session_cookie(con: Con) -> None:
    token = await con.token("/apikeys", "/logout")
    r = await with_cookie(con, f"restguard_admin={token}")
    assert r.status_code == 303


async def test_login_issues_a_fresh_session_each_time(tmp_path: Path) -> None:
    # No fixation: sign-in never keeps a session value the browser already held.
    async with open_con(tmp_path) as c:
        first = c.session
        csrf = await c.token("/login")
        r = await c.client.post("/login", data={"key": c.key, "csrf": csrf})
        assert r.status_code == 303
        fresh = [x for x in r.headers.get_list("set-cookie") if x.startswith("restguard_admin=")]
        assert len(fresh) == 1 and first not in fresh[0]


async def test_csrf_token_expires_after_an_hour(con: Con) -> None:
    token = await con.token("/apikeys")
    con.clock.advance(3601)
    r = await con.client.post("/apikeys", data={"csrf": token, "name": "late", "scopes": "a"})
    assert r.status_code == 403
    assert "late" not in [k.name for k in await con.runtime.store.api_keys.list()]


async def test_revoked_admin_key_ends_its_console_session(con: Con) -> None:
    rec = await con.runtime.store.api_keys.get(con.key_id)
    assert rec is not None
    await con.runtime.store.api_keys.revoke(con.key_id, con.clock.now())
    r = await con.client.get("/apikeys")
    assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_session_cookie_is_dead_after_logout(con: Con) -> None:
    old = con.session
    r = await con.post("/logout", {}, page="/apikeys")
    assert r.status_code == 303
    r = await with_cookie(con, f"restguard_admin={old}")
    assert r.status_code == 303


async def test_https_cookies_use_host_prefix_and_secure(tmp_path: Path) -> None:
    async with open_con(tmp_path, scheme="https") as c:
        r = await c.client.get("/login")
        cookies = r.headers.get_list("set-cookie")
        assert cookies and all(x.startswith("__Host-") for x in cookies)
        assert all("; Secure" in x and "; Path=/" in x and "Domain" not in x for x in cookies)
        assert c.client.cookies.get("__Host-restguard_admin")


async def test_plain_http_session_cookie_name_is_not_honoured_over_https(
    tmp_path: Path,
) -> None:
    # A cookie a network attacker could plant over http (no __Host- prefix) is not a session
    # of the https console.
    async with open_con(tmp_path, scheme="https") as c:
        r = await with_cookie(c, f"restguard_admin={c.session}")
        assert r.status_code == 303


# --- CSRF -------------------------------------------------------------------------------------


async def test_csrf_token_of_another_purpose_is_refused(con: Con) -> None:
    other = await con.token("/apikeys", "/logout")
    r = await con.client.post("/apikeys", data={"csrf": other, "name": "x", "scopes": "a"})
    assert r.status_code == 403
    assert "x" not in [k.name for k in await con.runtime.store.api_keys.list()]


async def test_csrf_token_of_another_session_is_refused(con: Con) -> None:
    stolen = await con.token("/apikeys")
    async with con.bare() as victim:
        csrf = form_token((await victim.get("/login")).text, "/login")
        r = await victim.post("/login", data={"key": con.key, "csrf": csrf})
        assert r.status_code == 303
        r = await victim.post("/apikeys", data={"csrf": stolen, "name": "x2", "scopes": "a"})
        assert r.status_code == 403


async def test_login_csrf_with_the_attackers_token_is_refused(con: Con) -> None:
    async with con.bare() as attacker, con.bare() as victim:
        token = form_token((await attacker.get("/login")).text, "/login")
        await victim.get("/login")  # the victim's own pre-session cookie
        r = await victim.post("/login", data={"key": con.key, "csrf": token})
        assert r.status_code == 403 and not victim.cookies.get("restguard_admin")
        async with con.bare() as fresh:  # no pre-session cookie at all
            r = await fresh.post("/login", data={"key": con.key, "csrf": token})
            assert r.status_code == 403


async def test_post_without_origin_but_cross_site_fetch_metadata_is_refused(con: Con) -> None:
    for site in ("cross-site", "same-site"):
        r = await con.post("/apikeys", {"name": "csrf-" + site}, {"sec-fetch-site": site})
        assert r.status_code == 403, site
    names = [k.name for k in await con.runtime.store.api_keys.list()]
    assert not any(n.startswith("csrf-") for n in names)


async def test_post_with_null_or_foreign_origin_is_refused(con: Con) -> None:
    for origin in ("null", "http://evil.example", "https://admin", "http://admin:80"):
        r = await con.post("/apikeys", {"name": "o"}, {"origin": origin})
        assert r.status_code == 403, origin


async def test_two_origin_headers_one_foreign_are_refused(con: Con) -> None:
    headers = [("origin", "http://evil.example"), ("origin", "http://admin")]
    r = await con.post("/apikeys", {"name": "dup-origin"}, headers)
    assert r.status_code == 403


async def test_two_sec_fetch_site_headers_one_cross_site_are_refused(con: Con) -> None:
    headers = [("sec-fetch-site", "cross-site"), ("sec-fetch-site", "same-origin")]
    r = await con.post("/apikeys", {"name": "dup-site"}, headers)
    assert r.status_code == 403


# --- redirects, headers on every answer ---------------------------------------------------------


async def test_login_ignores_next_and_redirects_only_home(tmp_path: Path) -> None:
    async with open_con(tmp_path, login=False) as c:
        page = await c.client.get("/login", params={"next": "https://evil.example/"})
        assert "evil.example" not in page.text
        csrf = form_token(page.text, "/login")
        r = await c.client.post(
            "/login?next=https://evil.example/", data={"key": c.key, "csrf": csrf}
        )
        assert r.status_code == 303 and r.headers["location"] == "/"
        for path in ("//evil.example/", "/\\evil.example", "/login/../apikeys"):
            r = await c.client.get(path)
            assert r.headers.get("location") in (None, "/login"), path


def assert_strict(r: httpx.Response) -> None:
    csp = r.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, r.status_code
    assert r.headers.get("x-frame-options") == "DENY", r.status_code
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert r.headers.get("cache-control") == "no-store"
    assert r.headers.get("content-type") == "text/html; charset=utf-8"


async def test_every_error_page_is_unframeable_and_strict(con: Con) -> None:
    c = con.client
    answers = [
        await c.get("/nope"),
        await c.get("/favicon.ico"),
        await c.put("/apikeys"),
        await c.delete("/"),
        await c.post("/nope"),
        await c.post("/apikeys", content=b"a=" + b"x" * 20000, headers={"content-type": "x"}),
        await c.post("/apikeys", json={"name": "x"}),
        await c.post("/apikeys", content=b"a=1&a=2", headers={"content-type": _FORM}),
        await c.post("/apikeys", content=b"\xff=1", headers={"content-type": _FORM}),
        await c.post("/apikeys", data={"csrf": "nope"}),
    ]
    assert [r.status_code for r in answers] == [404, 404, 405, 405, 404, 413, 415, 400, 400, 403]
    for r in answers:
        assert_strict(r)
    async with con.bare() as anon:
        for r in (await anon.get("/apikeys"), await anon.get("/login"), await anon.head("/")):
            assert_strict(r)


_FORM = "application/x-www-form-urlencoded"


# --- HTML injection through every chosen name ---------------------------------------------------


async def test_api_key_name_is_escaped_everywhere(con: Con) -> None:
    r = await con.post("/apikeys", {"name": XSS, "scopes": "a", "expires_in": ""})
    assert r.status_code == 200 and not RAW_MARKUP.search(r.text)
    listing = await con.client.get("/apikeys")
    assert html.escape(XSS, quote=True) in listing.text  # the name is listed, inert
    assert not RAW_MARKUP.search(listing.text)


async def test_app_and_client_names_and_redirect_uris_are_escaped(con: Con) -> None:
    r = await con.post("/apps", {"name": XSS, "scopes": "a", "alg": "hmac-sha256"})
    assert r.status_code == 200 and not RAW_MARKUP.search(r.text)
    assert not RAW_MARKUP.search((await con.client.get("/apps")).text)
    for uris in ('https://ok.example/cb?"><script>alert(3)</script>\n' + XSS, _ODD_URI):
        r = await con.post(
            "/oauth2/clients",
            {
                "name": XSS,
                "scopes": "a",
                "grant_authorization_code": "on",
                "redirect_uris": uris,
                "token_format": "opaque",
            },
        )
        assert not RAW_MARKUP.search(r.text)
    page = (await con.client.get("/oauth2/clients")).text
    assert html.escape(_ODD_URI, quote=True) in page and not RAW_MARKUP.search(page)
    # a name set through the API (JSON: no console validation on the way) renders inert too
    body = {"name": XSS + "\u202e", "scopes": [XSS], "grants": ["client_credentials"]}
    r = await con.client.post("/api/oauth2/clients", json=body, headers={"x-api-key": con.key})
    assert r.status_code in (201, 400)
    assert not RAW_MARKUP.search((await con.client.get("/oauth2/clients")).text)


_ODD_URI = "https://ok.example/cb?q='%22%3E%3Cscript%3E&x=javascript:alert(1)"


async def test_user_consumer_and_issuer_inputs_are_escaped(con: Con) -> None:
    r = await con.post(
        "/users", {"username": XSS, "password": "a-long-pass-phrase-1", "scopes": ""}
    )
    assert r.status_code == 400 and not RAW_MARKUP.search(r.text)
    for callback in ("https://x.example/" + XSS, ""):
        r = await con.post(
            "/oauth1/consumers",
            {"name": XSS, "scopes": "a", "callback": callback},
            page="/oauth1",
        )
        assert not RAW_MARKUP.search(r.text)
    r = await con.post(
        "/issuers",
        {"issuer": XSS, "jwks_uri": XSS, "audience": XSS, "algorithms": "RS256", "typ": XSS},
    )
    assert r.status_code == 400 and not RAW_MARKUP.search(r.text)
    for page in ("/users", "/oauth1", "/issuers"):
        text = (await con.client.get(page)).text
        assert not RAW_MARKUP.search(text), page
    assert html.escape(XSS, quote=True) in (await con.client.get("/oauth1")).text


async def test_issuer_jwks_uri_cannot_name_a_file_or_another_scheme(con: Con) -> None:
    for uri in ("file:///etc/passwd", "gopher://127.0.0.1:6379/_x", "ftp://x.example/j"):
        r = await con.post(
            "/issuers",
            {
                "issuer": "https://i.example",
                "jwks_uri": uri,
                "audience": "a",
                "algorithms": "RS256",
            },
        )
        assert r.status_code == 400 and "root:" not in r.text, uri


async def test_audit_page_escapes_logged_paths_details_and_filters(con: Con) -> None:
    con.append_audit(
        audit_line(
            path="/x" + XSS,
            detail="admin " + XSS,
            client=XSS,
            credential_id=XSS,
            auth_method=XSS,
            time=XSS,
            method=XSS,
        )
    )
    r = await con.client.get("/audit")
    assert r.status_code == 200 and "/x&quot;&gt;&lt;script&gt;" in r.text
    assert not RAW_MARKUP.search(r.text)
    r = await con.client.get("/audit", params={"path_prefix": XSS, "method": XSS, "status": XSS})
    assert not RAW_MARKUP.search(r.text)
    r = await con.client.get("/audit", params={"credential_id": XSS, "after": XSS})
    assert not RAW_MARKUP.search(r.text)


async def test_audit_next_link_cannot_be_steered_off_site(con: Con) -> None:
    con.append_audit(*[audit_line(path=f"/p{i}") for i in range(60)])
    r = await con.client.get("/audit", params={"path_prefix": "/p", "method": "GET"})
    m = re.search(r'id="next-page" href="([^"]+)"', r.text)
    assert m and html.unescape(m.group(1)).startswith("/audit?")


# --- secrets and passwords ----------------------------------------------------------------------


async def test_new_key_secret_is_shown_exactly_once(con: Con) -> None:
    r = await con.post("/apikeys", {"name": "once", "scopes": "a", "expires_in": ""})
    m = re.search(r'id="new-secret">([^<]+)<', r.text)
    assert m
    secret = html.unescape(m.group(1))
    assert r.text.count(secret) == 1
    for page in ("/apikeys", "/audit", "/"):
        assert secret[19:] not in (await con.client.get(page)).text, page
    assert secret[19:] not in con.audit_text()
    # rotating through the console: the old key's secret is not shown again either
    key_id = secret.split("_")[2]
    r = await con.post(f"/apikeys/{key_id}/rotate", {}, page="/apikeys")
    assert secret[19:] not in r.text


async def test_password_is_never_reflected(con: Con) -> None:
    password = "Pw-never-shown-" + "q" * 12
    for username in ("", "bad name with spaces\x00", "alice"):
        r = await con.post("/users", {"username": username, "password": password, "scopes": ""})
        assert password not in r.text and html.escape(password) not in r.text, username
    r = await con.post("/users", {"username": "bob", "password": "x", "scopes": ""})
    assert 'value="x"' not in r.text
    assert password not in (await con.client.get("/audit")).text
    assert password not in con.audit_text()


async def test_failed_login_does_not_reflect_the_key(tmp_path: Path) -> None:
    async with open_con(tmp_path, login=False) as c:
        typed = "rg_ak_aaaaaaaaaaaa_" + "Z" * 49
        csrf = await c.token("/login")
        r = await c.client.post("/login", data={"key": typed, "csrf": csrf})
        assert r.status_code in (401, 403) and typed[19:] not in r.text
        csrf = await c.token("/login")
        r = await c.client.post("/login", data={"key": XSS, "csrf": csrf})
        assert not RAW_MARKUP.search(r.text)


async def test_admin_api_errors_never_echo_the_password(con: Con) -> None:
    password = "Pw-api-never-echoed-7"
    headers = {"x-api-key": con.key}
    for body in (
        {"username": "bad name", "password": password},
        {"username": "ok", "password": password, "scopes": "not-a-list"},
        {"username": "ok", "password": password, "extra": password},
        {"username": "ok", "password": password[:3]},
    ):
        r = await con.client.post("/api/users", json=body, headers=headers)
        assert r.status_code == 400 and body["password"] not in r.text, body
    assert password not in con.audit_text()


# --- the audit log: API and page ----------------------------------------------------------------


async def test_audit_api_skips_a_line_with_a_huge_integer(con: Con) -> None:
    con.append_audit(audit_line(path="/good"), '{"status": 1' + "0" * 5000 + "}")
    r = await con.client.get("/api/audit", headers={"x-api-key": con.key})
    assert r.status_code == 200 and [i["path"] for i in r.json()["items"]][:1] == ["/good"]


async def test_audit_page_skips_a_deeply_nested_line(con: Con) -> None:
    # (20,000 deep: past Python's recursion limit, within LONGEST_LINE; longer lines: 409)
    con.append_audit(audit_line(path="/good"), "[" * 20000 + "]" * 20000)
    r = await con.client.get("/audit")
    assert r.status_code == 200 and "/good" in r.text
    assert_strict(r)


async def test_audit_api_and_page_skip_malformed_and_mistyped_lines(con: Con) -> None:
    con.append_audit(
        audit_line(path="/good"),
        "not json",
        '"a string"',
        "[1, 2]",
        audit_line(status="200"),
        audit_line(status=True),
        audit_line(outcome="maybe"),
        audit_line(duration_ms=float("nan")).replace("NaN", "1e999"),
        "\xff\xfe garbage",
        '{"time": null}',
    )
    r = await con.client.get("/api/audit", headers={"x-api-key": con.key})
    assert r.status_code == 200
    assert [i["path"] for i in r.json()["items"]][:1] == ["/good"]
    page = await con.client.get("/audit")
    assert page.status_code == 200 and "/good" in page.text


async def test_audit_cursor_cannot_traverse_or_point_mid_line(con: Con) -> None:
    con.append_audit(audit_line(path="/one"), audit_line(path="/two"))
    for after in ("../../etc/passwd", "-1", "1e3", "99999999999999999999", "5", " 1", "0x10"):
        r = await con.client.get(
            "/api/audit", params={"after": after}, headers={"x-api-key": con.key}
        )
        assert r.status_code == 400, after
        page = await con.client.get("/audit", params={"after": after})
        assert page.status_code == 400, after


class _Counting:
    """A path whose file counts the bytes read from it."""

    def __init__(self, path: Path) -> None:
        self.path, self.read = path, 0

    def open(self, mode: str) -> Any:
        outer, f = self, self.path.open(mode)

        class Wrapped(io.BufferedReader):
            def read(self, n: int | None = -1) -> bytes:
                data = f.read(n)
                outer.read += len(data)
                return data

            def seek(self, *a: Any) -> int:
                return f.seek(*a)

            def __exit__(self, *a: Any) -> None:
                f.close()

            def __enter__(self) -> Any:
                return self

        return Wrapped(io.BytesIO())


def test_audit_scan_is_bounded_by_a_huge_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(audit_line(path="/old").encode() + b"\n" + b"x" * 400_000 + b"\n")
    counted = _Counting(log)
    # A line no restguard log holds: refused (409) once it passes LONGEST_LINE, never read
    # whole (and never re-copied per block past that bound).
    with pytest.raises(Conflict, match="not a log restguard wrote"):
        audit.scan(counted, audit.Filters(), 10, max_bytes=16_384, block=4096)  # type: ignore[arg-type]
    assert counted.read <= audit.LONGEST_LINE + 4096


# --- X-Request-Id -------------------------------------------------------------------------------


def test_request_id_from_an_untrusted_client_is_never_taken() -> None:
    for value in (b"forged", b"a" * 10, b"00000000000000000000000000000000"):
        got = request_id([(b"x-request-id", value)], trusted=False)
        assert OWN_ID.fullmatch(got) and got.encode() != value


def test_request_id_from_a_trusted_proxy_is_checked() -> None:
    assert request_id([(b"x-request-id", b"proxy-1/abc:9")], trusted=True) == "proxy-1/abc:9"
    assert request_id([(b"x-request-id", b"a" * 128)], trusted=True) == "a" * 128
    bad = (
        b"a\r\nx-evil: 1",
        b"a\nb",
        b"a" * 129,
        "caf\u00e9".encode(),
        b"\xff\xfe",
        b"",
        b"a b",
        b'a"b',
        b"a,b",
        b"{}",
        b"a\x00",
    )
    for value in bad:
        assert OWN_ID.fullmatch(request_id([(b"x-request-id", value)], trusted=True)), value
    two = [(b"x-request-id", b"one"), (b"x-request-id", b"two")]
    assert OWN_ID.fullmatch(request_id(two, trusted=True))


def test_request_id_header_name_case_and_spoofed_proxy() -> None:
    view = build_view(
        "GET",
        b"/x",
        [(b"host", b"h"), (b"x-request-id", b"client-chosen"), (b"x-forwarded-for", b"10.0.0.9")],
        peer="198.51.100.7",
        trusted_proxies=(),
    )
    assert OWN_ID.fullmatch(view.request_id) and view.client == "198.51.100.7"


def test_request_id_reaches_upstream_once_and_matches_answer_and_audit(
    gw: GatewayProcess, upstream: RecordingUpstream
) -> None:
    upstream.clear()
    headers = [
        ("x-request-id", "forged-1"),
        ("x-request-id", "forged-2"),
        ("X-Request-ID", "x" * 4000),
    ]
    with httpx.Client() as client:
        r = client.get(gw.url + "/public/rid", headers=headers)
    assert r.status_code == 200
    got = r.headers.get_list("x-request-id")
    assert len(got) == 1 and OWN_ID.fullmatch(got[0])
    received = upstream.last()
    assert received.header("x-request-id") == got[0]
    assert "forged" not in json.dumps(gw.audit_events())


# --- JSON logs and tracing ----------------------------------------------------------------------


def test_json_log_line_cannot_be_split_or_forged() -> None:
    secret = "rg_ak_abcdefghijkl_" + "S" * 49
    record = logging.LogRecord(
        "restguard.admin",
        logging.ERROR,
        __file__,
        1,
        "bad request %s",
        ('x\r\n{"level":"info","message":"forged"}\n' + secret + "\u0000",),
        None,
    )
    try:
        raise ValueError("boom " + secret + "\nnext")
    except ValueError:
        record.exc_info = sys.exc_info()
    out = JsonFormatter().format(record)
    assert "\n" not in out and "\r" not in out
    line = json.loads(out)
    assert line["level"] == "error" and line["logger"] == "restguard.admin"
    assert "S" * 49 not in out and "forged" in line["message"]
    assert set(line) == {"time", "level", "logger", "message", "process", "exception"}


def test_untrusted_traceparent_does_not_choose_the_trace() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider

    from restguard.tracing import Tracing

    provider = TracerProvider()
    tracing = Tracing()
    tracing._tracer = provider.get_tracer("review")
    client_trace = "0af7651916cd43dd8448eb211c80319c"
    headers = (
        (b"traceparent", f"00-{client_trace}-b7ad6b7169203331-01".encode()),
        (b"tracestate", b"evil=1"),
    )
    try:
        untrusted = tracing.start(RequestView("GET", "/x", headers=headers, client="1.2.3.4"))
        ctx = untrusted.get_span_context()
        assert f"{ctx.trace_id:032x}" != client_trace
        sent = Tracing.headers(untrusted)
        assert client_trace.encode() not in sent and b"evil" not in sent
        untrusted.end()
        trusted = tracing.start(
            RequestView("GET", "/x", headers=headers, client="1.2.3.4", via_trusted_proxy=True)
        )
        assert f"{trusted.get_span_context().trace_id:032x}" == client_trace
        trusted.end()
    finally:
        provider.shutdown()
