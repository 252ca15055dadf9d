"""The admin REST API's signing apps (``/api/apps``), through HTTP: create (hmac-sha256 with a
secret shown once; ed25519 and ecdsa-p256-sha256 with a PEM public key in the body), list with
pages and filters, read, revoke and rotate with ``If-Match``; what an app can sign is checked
with the gateway's own signature authenticator. Bad input is 400 naming the field and changes
nothing; every change has its audit line, which never holds a secret; the CLI sees the same."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from restguard.cli.main import cli
from restguard.client import SignatureAuth
from restguard.credentials.apps import decode_secret, verification_key
from restguard.credentials.base import AuthContext
from restguard.errors import AuthError
from restguard.keys.sealing import open_sealer
from restguard.types import RequestView
from tests.integration.admin_support import AdminClient, open_admin
from tests.signature_support import keyed_with


class Admin(AdminClient):
    async def apps(self) -> list[dict[str, Any]]:
        r = await self.get("/api/apps", params={"limit": "1000"})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    async def gateway_accepts(self, auth: httpx.Auth) -> bool:
        """Whether the gateway's signature method takes a request signed with ``auth`` now."""
        authenticator = self.runtime.guard.authenticators["signature"]
        authenticator.drop_cached()  # type: ignore[attr-defined]
        view = await signed_view(auth)
        credential = authenticator.extract(view)
        assert credential is not None
        try:
            await authenticator.authenticate(
                credential, AuthContext(self.runtime.clock.now(), "::1", view)
            )
        except AuthError:
            return False
        return True


async def signed_view(auth: httpx.Auth) -> RequestView:
    """The request ``auth`` signs, as the gateway sees it."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
        await client.get("http://gw.example/notes")
    (request,) = seen
    headers = tuple((name.lower(), value) for name, value in request.headers.raw)
    return RequestView("GET", "/notes", headers=headers, raw_path=b"/notes", body=b"")


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    async with open_admin(tmp_path, Admin) as a:
        yield a


def audit_changes(admin: Admin) -> list[dict[str, Any]]:
    admin.runtime.audit.flush()  # type: ignore[union-attr]
    lines = [json.loads(line) for line in admin.audit.read_text().splitlines()]
    return [line for line in lines if (line["detail"] or "").startswith("admin ")]


def pem(private: Any) -> str:
    return str(
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def private_pem(private: Any) -> str:
    return str(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
    )


async def make(admin: Admin, **body: Any) -> dict[str, Any]:
    r = await admin.post("/api/apps", {"name": "billing", "scopes": ["notes:read"], **body})
    assert r.status_code == 201, r.text
    return r.json()


# --- create --------------------------------------------------------------------------------


async def test_create_hmac_shows_the_secret_once_and_it_signs(admin: Admin) -> None:
    r = await admin.post("/api/apps", {"name": "billing", "scopes": ["notes:read", "notes:read"]})
    assert r.status_code == 201, r.text
    data = r.json()
    assert set(data) == {
        "key_id",
        "secret",
        "alg",
        "name",
        "scopes",
        "created_at",
        "public_key_sha256",
        "etag",
    }
    assert data["alg"] == "hmac-sha256" and data["scopes"] == ["notes:read"]
    assert data["public_key_sha256"] is None
    assert r.headers["location"] == f"/api/apps/{data['key_id']}"
    assert r.headers["etag"] == data["etag"]
    record = await admin.runtime.store.apps.get(data["key_id"])
    assert record is not None
    sealer = open_sealer(admin.runtime.settings.master_key_path)
    assert keyed_with(verification_key(record, sealer), decode_secret(data["secret"]))
    assert await admin.gateway_accepts(SignatureAuth(data["key_id"], data["secret"]))
    one = await admin.get(f"/api/apps/{data['key_id']}")
    assert one.status_code == 200 and one.headers["etag"] == data["etag"]
    assert one.json()["state"] == "active" and "secret" not in one.json()
    assert data["secret"] not in (await admin.get("/api/apps")).text
    assert data["secret"] not in one.text


async def test_create_ed25519_from_pem_text_and_it_signs(admin: Admin) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    data = await make(admin, alg="ed25519", public_key=pem(private))
    assert data["secret"] is None and data["alg"] == "ed25519"
    assert data["public_key_sha256"]
    listed = {a["key_id"]: a for a in await admin.apps()}
    assert listed[data["key_id"]]["public_key_sha256"] == data["public_key_sha256"]
    assert await admin.gateway_accepts(SignatureAuth(data["key_id"], private, alg="ed25519"))
    other = ed25519.Ed25519PrivateKey.generate()
    assert not await admin.gateway_accepts(SignatureAuth(data["key_id"], other, alg="ed25519"))


async def test_create_ecdsa_p256(admin: Admin) -> None:
    data = await make(
        admin, alg="ecdsa-p256-sha256", public_key=pem(ec.generate_private_key(ec.SECP256R1()))
    )
    assert data["alg"] == "ecdsa-p256-sha256" and data["secret"] is None


ED_PEM = pem(ed25519.Ed25519PrivateKey.generate())
P384_PEM = pem(ec.generate_private_key(ec.SECP384R1()))
PRIVATE_PEM = private_pem(ed25519.Ed25519PrivateKey.generate())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["a"]}, "name"),
        ({"name": "n"}, "scopes"),
        ({"name": "", "scopes": ["a"]}, "name"),
        ({"name": 5, "scopes": ["a"]}, "name"),
        ({"name": "a\nb", "scopes": ["a"]}, "name"),
        ({"name": "x" * 201, "scopes": ["a"]}, "name"),
        ({"name": "n", "scopes": []}, "scopes"),
        ({"name": "n", "scopes": "a b"}, "scopes"),
        ({"name": "n", "scopes": ["a,b"]}, "scopes"),
        ({"name": "n", "scopes": [1]}, "scopes"),
        ({"name": "n", "scopes": ["a"] * 101}, "scopes"),
        ({"name": "n", "scopes": ["a"], "alg": "rsa-pss-sha512"}, "alg"),
        ({"name": "n", "scopes": ["a"], "alg": 1}, "alg"),
        ({"name": "n", "scopes": ["a"], "alg": "ed25519"}, "public_key"),
        ({"name": "n", "scopes": ["a"], "public_key": ED_PEM}, "public_key"),
        ({"name": "n", "scopes": ["a"], "alg": "ed25519", "public_key": 5}, "public_key"),
        ({"name": "n", "scopes": ["a"], "alg": "ed25519", "public_key": "nope"}, "public_key"),
        (
            {"name": "n", "scopes": ["a"], "alg": "ecdsa-p256-sha256", "public_key": ED_PEM},
            "public_key",
        ),
        (
            {"name": "n", "scopes": ["a"], "alg": "ecdsa-p256-sha256", "public_key": P384_PEM},
            "public_key",
        ),
        ({"name": "n", "scopes": ["a"], "alg": "ed25519", "public_key": "x" * 20000}, "public_key"),
        ({"name": "n", "scopes": ["a"], "secret": "x"}, "secret"),
    ],
)
async def test_bad_create_input_is_400_naming_the_field_and_changes_nothing(
    admin: Admin, body: dict[str, Any], field: str
) -> None:
    before = await admin.apps()
    r = await admin.post("/api/apps", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.json()["field"] == field
    assert r.json()["error_description"].startswith(f"{field}: ")
    assert await admin.apps() == before


async def test_a_private_key_is_refused_and_never_echoed_or_stored(admin: Admin) -> None:
    r = await admin.post(
        "/api/apps",
        {"name": "n", "scopes": ["a"], "alg": "ed25519", "public_key": PRIVATE_PEM},
    )
    assert r.status_code == 400 and r.json()["field"] == "public_key"
    assert "private key" in r.json()["error_description"]
    body_line = PRIVATE_PEM.splitlines()[1]
    assert body_line not in r.text
    assert await admin.apps() == []
    admin.runtime.audit.flush()  # type: ignore[union-attr]
    assert body_line not in admin.audit.read_text()


# --- list, read --------------------------------------------------------------------------------


async def test_pages_and_filters(admin: Admin) -> None:
    made = [await make(admin, name=f"a{i}") for i in range(5)]
    ed = await make(admin, name="ed", alg="ed25519", public_key=ED_PEM)
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await admin.get("/api/apps", params=params)).json()
        assert len(page["items"]) <= 2
        seen += [a["key_id"] for a in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [*(m["key_id"] for m in made), ed["key_id"]]
    by_alg = (await admin.get("/api/apps", params={"alg": "ed25519"})).json()["items"]
    assert [a["key_id"] for a in by_alg] == [ed["key_id"]]
    named = (await admin.get("/api/apps", params={"name": "a3"})).json()["items"]
    assert [a["key_id"] for a in named] == [made[3]["key_id"]]
    await admin.post(f"/api/apps/{made[1]['key_id']}/revoke")
    revoked = (await admin.get("/api/apps", params={"state": "revoked"})).json()["items"]
    assert [a["key_id"] for a in revoked] == [made[1]["key_id"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=dead", "state"),
        ("alg=rsa", "alg"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("after=app_nosuch", "after"),
        ("bogus=1", "bogus"),
        ("name=a&name=b", "name"),
    ],
)
async def test_bad_queries_are_400_naming_the_parameter(
    admin: Admin, query: str, field: str
) -> None:
    r = await admin.get(f"/api/apps?{query}")
    assert r.status_code == 400 and r.json()["field"] == field, r.text


async def test_unknown_ids_are_404(admin: Admin) -> None:
    assert (await admin.get("/api/apps/app_nosuch0000000000")).status_code == 404
    assert (await admin.post("/api/apps/app_nosuch0000000000/revoke")).status_code == 404
    r = await admin.post("/api/apps/app_nosuch0000000000/rotate")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert (await admin.get("/api/apps/a.b")).status_code == 404


# --- who gets in ---------------------------------------------------------------------------------


async def test_no_key_is_401_and_a_key_without_the_admin_scope_is_403(admin: Admin) -> None:
    app = await make(admin)
    calls = [
        ("GET", "/api/apps", None),
        ("POST", "/api/apps", {"name": "x", "scopes": ["a"]}),
        ("GET", f"/api/apps/{app['key_id']}", None),
        ("POST", f"/api/apps/{app['key_id']}/revoke", None),
        ("POST", f"/api/apps/{app['key_id']}/rotate", None),
    ]
    for method, path, body in calls:
        r = await admin.client.request(method, path, json=body)
        assert r.status_code == 401, (method, path)
    plain = await admin.post("/api/apikeys", {"name": "plain", "scopes": ["notes:read"]})
    key = plain.json()["key"]
    for method, path, body in calls:
        r = await admin.client.request(method, path, json=body, headers=admin.auth(key))
        assert r.status_code == 403, (method, path)
    [only] = await admin.apps()
    assert only["state"] == "active" and only["key_id"] == app["key_id"]


# --- revoke, rotate ------------------------------------------------------------------------------


async def test_revoke_stops_the_app_at_once(admin: Admin) -> None:
    data = await make(admin)
    signer = SignatureAuth(data["key_id"], data["secret"])
    assert await admin.gateway_accepts(signer)
    r = await admin.post(f"/api/apps/{data['key_id']}/revoke")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "revoked" and r.json()["revoked_at"]
    assert r.headers["etag"] == r.json()["etag"] != data["etag"]
    assert not await admin.gateway_accepts(signer)
    again = await admin.post(f"/api/apps/{data['key_id']}/revoke")  # idempotent
    assert again.status_code == 200 and again.json()["revoked_at"] == r.json()["revoked_at"]
    bad = await admin.post(f"/api/apps/{data['key_id']}/revoke", {"now": True})
    assert bad.status_code == 400 and bad.json()["field"] == "now"


async def test_rotate_hmac_gives_a_new_secret_and_ends_the_old(admin: Admin) -> None:
    data = await make(admin, scopes=["notes:write"])
    r = await admin.post(f"/api/apps/{data['key_id']}/rotate")
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["old_id"] == data["key_id"] and new["key_id"] != data["key_id"]
    assert new["scopes"] == ["notes:write"] and new["secret"] != data["secret"]
    assert r.headers["location"] == f"/api/apps/{new['key_id']}"
    assert await admin.gateway_accepts(SignatureAuth(new["key_id"], new["secret"]))
    assert not await admin.gateway_accepts(SignatureAuth(data["key_id"], data["secret"]))
    # a revoked app cannot be rotated (409), and nothing changes
    before = await admin.apps()
    again = await admin.post(f"/api/apps/{data['key_id']}/rotate")
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert again.json()["field"] == "id"
    assert await admin.apps() == before


async def test_rotate_with_grace_keeps_both_working(admin: Admin) -> None:
    data = await make(admin)
    new = (await admin.post(f"/api/apps/{data['key_id']}/rotate", {"grace": "1h"})).json()
    assert new["grace_ends_at"]
    old = (await admin.get(f"/api/apps/{data['key_id']}")).json()
    assert old["state"] == "grace" and old["revoked_at"] == new["grace_ends_at"]
    assert await admin.gateway_accepts(SignatureAuth(data["key_id"], data["secret"]))
    assert await admin.gateway_accepts(SignatureAuth(new["key_id"], new["secret"]))


async def test_rotate_public_key_app_needs_a_new_key(admin: Admin) -> None:
    first = ec.generate_private_key(ec.SECP256R1())
    data = await make(admin, alg="ecdsa-p256-sha256", public_key=pem(first))
    path = f"/api/apps/{data['key_id']}/rotate"
    before = await admin.apps()
    for body, field in (
        ({}, "public_key"),
        ({"public_key": pem(first)}, "public_key"),
        ({"public_key": ED_PEM}, "public_key"),
        ({"public_key": PRIVATE_PEM}, "public_key"),
        ({"grace": "forever"}, "grace"),
        ({"grace": 5}, "grace"),
        ({"alg": "ed25519"}, "alg"),
    ):
        r = await admin.post(path, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["field"] == field, body
        assert r.json()["error_description"].startswith(f"{field}: ")
    assert await admin.apps() == before
    second = ed25519.Ed25519PrivateKey.generate()
    hmac_app = await make(admin, name="h")
    r = await admin.post(f"/api/apps/{hmac_app['key_id']}/rotate", {"public_key": pem(second)})
    assert r.status_code == 400 and r.json()["field"] == "public_key"
    new_key = ec.generate_private_key(ec.SECP256R1())
    r = await admin.post(path, {"public_key": pem(new_key), "grace": "5m"})
    assert r.status_code == 201, r.text
    assert r.json()["secret"] is None and r.json()["old_id"] == data["key_id"]
    assert r.json()["public_key_sha256"] != data["public_key_sha256"]


async def test_if_match_refuses_stale_changes(admin: Admin) -> None:
    data = await make(admin)
    path = f"/api/apps/{data['key_id']}"
    etag = (await admin.get(path)).headers["etag"]
    assert etag == data["etag"]
    rotated = await admin.post(f"{path}/rotate", {"grace": "1h"}, headers={"If-Match": etag})
    assert rotated.status_code == 201
    before = await admin.apps()
    for verb in ("revoke", "rotate"):
        r = await admin.post(f"{path}/{verb}", headers={"If-Match": etag})
        assert r.status_code == 412, verb
        assert r.json()["error"] == "precondition_failed" and r.json()["field"] == "If-Match"
    assert await admin.apps() == before
    bad = await admin.post(f"{path}/revoke", headers={"If-Match": "nonsense"})
    assert bad.status_code == 400 and bad.json()["field"] == "If-Match"
    fresh = (await admin.get(path)).headers["etag"]
    ok = await admin.post(f"{path}/revoke", headers={"If-Match": fresh})
    assert ok.status_code == 200 and ok.json()["state"] == "revoked"


async def test_concurrent_rotations_with_one_etag_make_one_successor(admin: Admin) -> None:
    """Eight rotations sent at once with the same ETag: one wins, seven are 412 and make no
    app (before the version check was part of the write, all eight made a live app)."""
    data = await make(admin, name="raced")
    path = f"/api/apps/{data['key_id']}/rotate"
    answers = await asyncio.gather(
        *(admin.post(path, headers={"If-Match": data["etag"]}) for _ in range(8))
    )
    assert sorted(r.status_code for r in answers) == [201] + [412] * 7
    live = [a for a in await admin.apps() if a["name"] == "raced" and a["state"] == "active"]
    assert len(live) == 1


# --- audit, CLI parity, the document -------------------------------------------------------------


async def test_every_change_is_audited_without_a_secret(admin: Admin) -> None:
    data = await make(admin)
    rotated = (await admin.post(f"/api/apps/{data['key_id']}/rotate")).json()
    await admin.post(f"/api/apps/{rotated['key_id']}/revoke")
    await admin.post("/api/apps", {"name": "", "scopes": ["a"]})  # refused: no line
    changes = audit_changes(admin)
    assert [c["detail"] for c in changes] == [
        f"admin app.create {data['key_id']}",
        f"admin app.rotate {data['key_id']} -> {rotated['key_id']}",
        f"admin app.revoke {rotated['key_id']}",
    ]
    for change in changes:
        assert change["credential_id"] == admin.key_id and change["auth_method"] == "api_key"
    text = admin.audit.read_text()
    for secret in (data["secret"], rotated["secret"]):
        assert secret not in text


async def test_cli_and_api_agree(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    """An app the CLI makes is what the API lists, and the other way round (the CLI runs its
    own event loop: in a thread)."""
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    config = str(admin.config)

    def invoke(*args: str) -> Any:
        result = CliRunner().invoke(cli, [*args, "--config", config, "--json"])
        assert result.exit_code == 0, (result.output, result.stderr)
        return json.loads(result.stdout)

    cli_app = await asyncio.to_thread(invoke, "app", "create", "--name", "from-cli", "--scope", "a")
    api_app = await make(admin, name="from-api")
    cli_list = await asyncio.to_thread(invoke, "app", "list")
    api_list = await admin.apps()
    assert [a["key_id"] for a in api_list] == [cli_app["key_id"], api_app["key_id"]]
    assert cli_list == [{k: v for k, v in a.items() if k != "etag"} for a in api_list]
    assert await admin.gateway_accepts(SignatureAuth(cli_app["key_id"], cli_app["secret"]))


async def test_the_openapi_document_describes_every_endpoint(admin: Admin) -> None:
    doc = (await admin.client.get("/api/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths["/api/apps"]) == {"get", "post"}
    for path, verb in (
        ("/api/apps/{id}", "get"),
        ("/api/apps/{id}/revoke", "post"),
        ("/api/apps/{id}/rotate", "post"),
    ):
        assert set(paths[path]) == {verb}
        assert "404" in paths[path][verb]["responses"]
    schemas = doc["components"]["schemas"]
    for name in ("App", "NewApp", "CreateApp", "RotateApp"):
        assert schemas[name]["additionalProperties"] is False
