"""``/api/oauth2/clients`` on the admin listener, through HTTP: a client created here gets
tokens from the authorization server and a revoked one does not; the secret is shown once
(never listed, never audited); every bad input is 400 naming the field and changes nothing;
404, 412, the audit line of every change, and the same records as ``restguard oauth2 client``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from click.testing import CliRunner

from restguard.cli.main import cli
from restguard.keys.hashing import token_digest
from restguard.oauth2.clients import DEVICE_CODE_URN
from restguard.oauth2.http import EndpointRequest
from restguard.tokens import redact
from tests.integration.admin_support import AdminClient, open_admin

WEB = "https://app.example/cb"
BASE = "/api/oauth2/clients"


class Admin(AdminClient):
    async def clients(self) -> list[dict[str, Any]]:
        r = await self.get(BASE, params={"limit": "1000"})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    async def token(self, client_id: str, secret: str, scope: str | None = None) -> Any:
        """``POST /oauth2/token`` (client credentials, client_secret_basic) on the runtime's
        authorization server: (status, JSON body)."""
        server = self.runtime.authorization_server
        assert server is not None
        raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
        form = b"grant_type=client_credentials" + (
            b"&scope=" + quote_plus(scope).encode() if scope else b""
        )
        request = EndpointRequest(
            "POST",
            "/oauth2/token",
            (
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"authorization", b"Basic " + base64.b64encode(raw)),
            ),
            form,
            client="127.0.0.1",
        )
        response = await server.token(request)
        return response.status, json.loads(response.body)


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    async with open_admin(tmp_path, Admin) as a:
        yield a


SERVICE = {"name": "svc", "scopes": ["notes:read", "notes:write"], "grants": ["client_credentials"]}
WEB_APP = {
    "name": "notes web app",
    "scopes": ["notes:read"],
    "grants": ["authorization_code", "refresh_token"],
    "redirect_uris": [WEB, "http://127.0.0.1:8400/cb"],
}


async def make(admin: Admin, **body: Any) -> dict[str, Any]:
    r = await admin.post(BASE, {**SERVICE, **body})
    assert r.status_code == 201, r.text
    return r.json()


def audit_lines(admin: Admin) -> list[dict[str, Any]]:
    admin.runtime.audit.flush()  # type: ignore[union-attr]
    return [json.loads(line) for line in admin.audit.read_text().splitlines()]


def changes(admin: Admin) -> list[str]:
    return [x["detail"] for x in audit_lines(admin) if (x["detail"] or "").startswith("admin ")]


def same_changes(seen: list[str], expected: list[str]) -> bool:
    """The audit log redacts every ``rg_xx_`` token in a line's detail, public ids
    (``rg_ci_``) included: each expected line, as written or as redacted."""
    return len(seen) == len(expected) and all(
        s in (e, redact(e)) for s, e in zip(seen, expected, strict=True)
    )


# --- create --------------------------------------------------------------------------------


async def test_a_created_client_gets_a_token_and_its_secret_is_shown_once(admin: Admin) -> None:
    r = await admin.post(BASE, SERVICE)
    assert r.status_code == 201, r.text
    data = r.json()
    assert list(data) == [
        "client_id",
        "client_secret",
        "name",
        "public",
        "grants",
        "redirect_uris",
        "scopes",
        "token_format",
        "created_at",
        "etag",
    ]
    assert data["client_secret"].startswith("rg_cs_") and data["public"] is False
    assert data["grants"] == ["client_credentials"] and data["token_format"] == "jwt"
    assert r.headers["location"] == f"{BASE}/{data['client_id']}"
    assert r.headers["etag"] == data["etag"]
    record = await admin.runtime.store.oauth2_clients.get(data["client_id"])
    assert record is not None and record.secret_hash == token_digest(data["client_secret"])
    # the real effect: the authorization server issues it a token
    status, body = await admin.token(data["client_id"], data["client_secret"], "notes:read")
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["scope"] == "notes:read"
    status, body = await admin.token(data["client_id"], "rg_cs_" + "x" * 43)
    assert status == 401 and body["error"] == "invalid_client"
    # never shown again
    one = await admin.get(f"{BASE}/{data['client_id']}")
    assert one.status_code == 200 and one.headers["etag"] == data["etag"]
    assert "client_secret" not in one.json() and "secret_hash" not in one.json()
    assert one.json()["state"] == "active"
    assert data["client_secret"] not in (await admin.get(BASE)).text


async def test_create_a_web_app_and_a_public_client(admin: Admin) -> None:
    web = await make(admin, **WEB_APP, token_format="opaque")
    assert web["redirect_uris"] == WEB_APP["redirect_uris"]
    assert web["grants"] == ["authorization_code", "refresh_token"]
    assert web["token_format"] == "opaque"
    native = await make(
        admin,
        name="cli app",
        grants=["authorization_code", DEVICE_CODE_URN],
        redirect_uris=["com.example.app:/cb"],
        public=True,
    )
    assert native["client_secret"] is None and native["public"] is True
    assert native["grants"] == ["authorization_code", "device_code"]
    record = await admin.runtime.store.oauth2_clients.get(native["client_id"])
    assert record is not None and record.secret_hash is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["a"], "grants": ["client_credentials"]}, "name"),
        ({"name": "n", "grants": ["client_credentials"]}, "scopes"),
        ({"name": "n", "scopes": ["a"]}, "grants"),
        ({**SERVICE, "name": ""}, "name"),
        ({**SERVICE, "name": " "}, "name"),
        ({**SERVICE, "name": 5}, "name"),
        ({**SERVICE, "name": "a\nb"}, "name"),
        ({**SERVICE, "name": "x" * 201}, "name"),
        ({**SERVICE, "scopes": []}, "scopes"),
        ({**SERVICE, "scopes": "a b"}, "scopes"),
        ({**SERVICE, "scopes": ["a b"]}, "scopes"),
        ({**SERVICE, "scopes": ["a,b"]}, "scopes"),
        ({**SERVICE, "scopes": [1]}, "scopes"),
        ({**SERVICE, "grants": []}, "grants"),
        ({**SERVICE, "grants": "client_credentials"}, "grants"),
        ({**SERVICE, "grants": ["password"]}, "grants"),
        ({**SERVICE, "grants": ["implicit"]}, "grants"),
        ({**SERVICE, "grants": ["client_credentials", "refresh_token"]}, "grants"),
        ({**SERVICE, "public": True}, "grants"),  # client_credentials needs a secret
        ({**SERVICE, "public": "yes"}, "public"),
        ({**SERVICE, "redirect_uris": [WEB]}, "redirect_uris"),  # without authorization_code
        ({**WEB_APP, "redirect_uris": []}, "redirect_uris"),
        ({**WEB_APP, "redirect_uris": WEB}, "redirect_uris"),
        ({**WEB_APP, "redirect_uris": ["http://app.example/cb"]}, "redirect_uris"),
        ({**WEB_APP, "redirect_uris": ["https://app.example/cb#x"]}, "redirect_uris"),
        ({**WEB_APP, "redirect_uris": ["/cb"]}, "redirect_uris"),
        ({**WEB_APP, "redirect_uris": [7]}, "redirect_uris"),
        ({**SERVICE, "token_format": "paseto"}, "token_format"),
        ({**SERVICE, "token_format": 1}, "token_format"),
        ({**SERVICE, "client_secret": "rg_cs_mine"}, "client_secret"),
        ({**SERVICE, "client_id": "rg_ci_mine"}, "client_id"),
    ],
)
async def test_bad_fields_are_400_naming_the_field_and_change_nothing(
    admin: Admin, body: dict[str, Any], field: str
) -> None:
    before = await admin.clients()
    r = await admin.post(BASE, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.json()["field"] == field
    assert r.json()["error_description"].startswith(f"{field}: ")
    assert await admin.clients() == before
    assert changes(admin) == []


async def test_no_secret_in_an_error_nor_the_audit_log(admin: Admin) -> None:
    r = await admin.post(BASE, {**SERVICE, "client_secret": "rg_cs_" + "s" * 43})
    assert r.status_code == 400 and "s" * 43 not in r.text
    made = await make(admin)
    await admin.post(f"{BASE}/{made['client_id']}/revoke")
    audit_lines(admin)
    text = admin.audit.read_text()
    assert made["client_secret"] not in text and made["client_secret"][6:] not in text
    assert "s" * 43 not in text


# --- who gets in ---------------------------------------------------------------------------


async def test_no_key_is_401_and_a_non_admin_key_is_403(admin: Admin) -> None:
    made = await make(admin)
    for method, path in (
        ("GET", BASE),
        ("POST", BASE),
        ("GET", f"{BASE}/{made['client_id']}"),
        ("POST", f"{BASE}/{made['client_id']}/revoke"),
    ):
        r = await admin.client.request(method, path)
        assert r.status_code == 401, (method, path)
        assert "ApiKey" in r.headers["www-authenticate"]
    plain = await admin.post("/api/apikeys", {"name": "reader", "scopes": ["notes:read"]})
    key = plain.json()["key"]
    for method, path, body in (
        ("GET", BASE, None),
        ("POST", BASE, SERVICE),
        ("GET", f"{BASE}/{made['client_id']}", None),
        ("POST", f"{BASE}/{made['client_id']}/revoke", None),
    ):
        r = await admin.client.request(method, path, json=body, headers=admin.auth(key))
        assert r.status_code == 403, (method, path)
        assert r.json()["error"] == "insufficient_scope"
    assert [c["client_id"] for c in await admin.clients()] == [made["client_id"]]
    assert (await admin.get(f"{BASE}/{made['client_id']}")).json()["state"] == "active"


# --- read, list ----------------------------------------------------------------------------


async def test_unknown_ids_paths_and_methods(admin: Admin) -> None:
    r = await admin.get(f"{BASE}/rg_ci_0000000000000000")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert r.json()["field"] == "id"
    r = await admin.post(f"{BASE}/rg_ci_0000000000000000/revoke")
    assert r.status_code == 404
    assert (await admin.get(f"{BASE}/a.b")).status_code == 404
    r = await admin.client.delete(BASE, headers=admin.auth())
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    r = await admin.client.get(f"{BASE}/rg_ci_0000000000000000/revoke", headers=admin.auth())
    assert r.status_code == 405 and r.headers["allow"] == "POST"


async def test_pages_and_filters(admin: Admin) -> None:
    made = [await make(admin, name=f"c{i}", scopes=["even" if i % 2 else "odd"]) for i in range(5)]
    web = await make(admin, **WEB_APP)
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await admin.get(BASE, params=params)).json()
        assert len(page["items"]) <= 2
        seen += [c["client_id"] for c in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [*(m["client_id"] for m in made), web["client_id"]]
    odd = (await admin.get(BASE, params={"scope": "odd"})).json()["items"]
    assert [c["name"] for c in odd] == ["c0", "c2", "c4"]
    coded = (await admin.get(BASE, params={"grant": "authorization_code"})).json()["items"]
    assert [c["client_id"] for c in coded] == [web["client_id"]]
    await admin.post(f"{BASE}/{made[1]['client_id']}/revoke")
    revoked = (await admin.get(BASE, params={"state": "revoked"})).json()["items"]
    assert [c["client_id"] for c in revoked] == [made[1]["client_id"]]
    named = (await admin.get(BASE, params={"name": "c3"})).json()["items"]
    assert [c["client_id"] for c in named] == [made[3]["client_id"]]
    for query, field in (
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("state=dead", "state"),
        ("grant=password", "grant"),
        ("after=rg_ci_nobody", "after"),
        ("bogus=1", "bogus"),
        ("name=a&name=b", "name"),
    ):
        r = await admin.get(f"{BASE}?{query}")
        assert r.status_code == 400 and r.json()["field"] == field, query


# --- revoke --------------------------------------------------------------------------------


async def test_a_revoked_client_gets_no_token(admin: Admin) -> None:
    made = await make(admin)
    kept = await make(admin, name="kept")
    assert (await admin.token(made["client_id"], made["client_secret"]))[0] == 200
    r = await admin.post(f"{BASE}/{made['client_id']}/revoke")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["state"] == "revoked" and data["revoked_at"]
    assert "client_secret" not in data
    assert r.headers["etag"] == data["etag"] != made["etag"]
    await asyncio.sleep(1.1)  # the authorization server's client cache: at most one second
    status, body = await admin.token(made["client_id"], made["client_secret"])
    assert status == 401 and body["error"] == "invalid_client"
    assert (await admin.token(kept["client_id"], kept["client_secret"]))[0] == 200
    # again: nothing changes (the first revocation keeps its time)
    again = await admin.post(f"{BASE}/{made['client_id']}/revoke")
    assert again.status_code == 200 and again.json()["revoked_at"] == data["revoked_at"]
    assert same_changes(
        changes(admin),
        [
            f"admin oauth2-client.create {made['client_id']}",
            f"admin oauth2-client.create {kept['client_id']}",
            f"admin oauth2-client.revoke {made['client_id']}",
            f"admin oauth2-client.revoke {made['client_id']}",
        ],
    )
    for line in audit_lines(admin):
        if (line["detail"] or "").startswith("admin "):
            assert line["credential_id"] == admin.key_id and line["auth_method"] == "api_key"


async def test_revoke_honours_if_match(admin: Admin) -> None:
    made = await make(admin)
    path = f"{BASE}/{made['client_id']}"
    etag = (await admin.get(path)).headers["etag"]
    assert etag == made["etag"]
    r = await admin.post(f"{path}/revoke", headers={"If-Match": '"stale"'})
    assert r.status_code == 412 and r.json()["error"] == "precondition_failed"
    assert (await admin.get(path)).json()["state"] == "active"
    assert (await admin.post(f"{path}/revoke", headers={"If-Match": "nonsense"})).status_code == 400
    assert (await admin.get(path)).json()["state"] == "active"
    ok = await admin.post(f"{path}/revoke", headers={"If-Match": etag})
    assert ok.status_code == 200 and ok.json()["state"] == "revoked"
    # the tag read before the revocation is stale now
    r = await admin.post(f"{path}/revoke", headers={"If-Match": etag})
    assert r.status_code == 412
    assert same_changes(
        changes(admin),
        [
            f"admin oauth2-client.create {made['client_id']}",
            f"admin oauth2-client.revoke {made['client_id']}",
        ],
    )


async def test_revoke_takes_no_body_fields(admin: Admin) -> None:
    made = await make(admin)
    r = await admin.post(f"{BASE}/{made['client_id']}/revoke", {"reason": "x"})
    assert r.status_code == 400 and r.json()["field"] == "reason"
    assert (await admin.get(f"{BASE}/{made['client_id']}")).json()["state"] == "active"


# --- the CLI and the API -------------------------------------------------------------------


async def test_cli_and_api_show_the_same_clients(
    admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv("RESTGUARD_MASTER_KEY", raising=False)
    api_made = await make(admin, **WEB_APP)

    def invoke(*args: str) -> Any:
        result = CliRunner().invoke(cli, [*args, "--config", str(admin.config), "--json"])
        assert result.exit_code == 0, (result.output, result.stderr)
        return json.loads(result.stdout)

    cli_made = await asyncio.to_thread(
        invoke,
        "oauth2",
        "client",
        "create",
        "--name",
        "svc",
        "--scope",
        "notes:read",
        "--scope",
        "notes:write",
        "--grant",
        "client_credentials",
    )
    # the CLI's answer is the API's without the etag
    assert list(cli_made) == [k for k in api_made if k != "etag"]
    cli_rows = await asyncio.to_thread(invoke, "oauth2", "client", "list")
    api_rows = await admin.clients()
    assert cli_rows == [{k: v for k, v in row.items() if k != "etag"} for row in api_rows]
    assert [r["client_id"] for r in api_rows] == [api_made["client_id"], cli_made["client_id"]]
    # a CLI-made client gets its token from the same server as an API-made one
    assert (await admin.token(cli_made["client_id"], cli_made["client_secret"]))[0] == 200


async def test_the_openapi_document_describes_every_endpoint(admin: Admin) -> None:
    doc = (await admin.client.get("/api/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths[BASE]) == {"get", "post"}
    assert set(paths[f"{BASE}/{{id}}"]) == {"get"}
    assert set(paths[f"{BASE}/{{id}}/revoke"]) == {"post"}
    assert {"404", "412", "401", "403"} <= set(paths[f"{BASE}/{{id}}/revoke"]["post"]["responses"])
    schemas = doc["components"]["schemas"]
    for name in ("OAuth2Client", "NewOAuth2Client", "CreateOAuth2Client"):
        assert schemas[name]["additionalProperties"] is False
    made = await make(admin)
    assert set(made) == set(schemas["NewOAuth2Client"]["properties"])
    one = (await admin.get(f"{BASE}/{made['client_id']}")).json()
    assert set(one) == set(schemas["OAuth2Client"]["properties"])
    assert set(schemas["OAuth2Client"]["required"]) == set(one)
