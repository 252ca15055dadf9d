"""The admin REST API (``/api/`` on the admin listener), through HTTP: who gets in, what each
endpoint answers, bad input (400 naming the field, 404, 405, 409, 412, 413, 415) that changes
nothing, pagination and filters, ``ETag``/``If-Match``, and the audit line of every change."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from restguard.admin.api import MAX_BODY_BYTES
from restguard.credentials.apikey import ApiKeyAuthenticator, new_record
from restguard.credentials.base import AuthContext
from restguard.errors import AuthError
from restguard.types import RequestView
from tests.integration.admin_support import AdminClient, open_admin


class Admin(AdminClient):
    async def keys(self) -> list[dict[str, Any]]:
        r = await self.get("/api/apikeys", params={"limit": "1000"})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    async def gateway_accepts(self, key: str) -> bool:
        """Whether the API-key method takes ``key`` now (a fresh one: no cache)."""
        authenticator = ApiKeyAuthenticator(
            self.runtime.store.api_keys, self.runtime.clock, cache_ttl=0
        )
        view = RequestView("GET", "/x", headers=((b"x-api-key", key.encode()),))
        credential = authenticator.extract(view)
        assert credential is not None
        try:
            await authenticator.authenticate(
                credential, AuthContext(self.runtime.clock.now(), "::1", view)
            )
        except AuthError:
            return False
        return True


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    async with open_admin(tmp_path, Admin) as a:
        yield a


async def make(admin: Admin, **body: Any) -> dict[str, Any]:
    r = await admin.post("/api/apikeys", {"name": "svc", **body})
    assert r.status_code == 201, r.text
    return r.json()


def audit_lines(admin: Admin) -> list[dict[str, Any]]:
    admin.runtime.audit.flush()  # type: ignore[union-attr]
    return [json.loads(line) for line in admin.audit.read_text().splitlines()]


# --- who gets in ---------------------------------------------------------------------------


async def test_openapi_document_is_public(admin: Admin) -> None:
    r = await admin.client.get("/api/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert "/api/apikeys" in doc["paths"]


async def test_no_key_is_401_and_names_the_api_key_method(admin: Admin) -> None:
    for method, path in (("GET", "/api/apikeys"), ("POST", "/api/apikeys"), ("GET", "/api/x")):
        r = await admin.client.request(method, path)
        assert r.status_code == 401, (method, path)
        assert r.json()["error"] == "unauthorized"
        assert "ApiKey" in r.headers["www-authenticate"]


async def test_a_key_without_the_admin_scope_is_403(admin: Admin) -> None:
    plain = await make(admin, scopes=["notes:read"])
    r = await admin.client.get("/api/apikeys", headers=admin.auth(plain["key"]))
    assert r.status_code == 403
    assert r.json()["error"] == "insufficient_scope"
    # nor can it make itself an admin
    r = await admin.client.post(
        "/api/apikeys",
        json={"name": "me", "scopes": ["restguard:admin"]},
        headers=admin.auth(plain["key"]),
    )
    assert r.status_code == 403
    assert [k["name"] for k in await admin.keys()] == ["bootstrap admin", "svc"]


async def test_other_credentials_are_not_admin_credentials(admin: Admin) -> None:
    """Only the api_key method is asked: a Bearer JWT or an OAuth header is 401."""
    for header in ("Bearer eyJhbGciOiJub25lIn0.e30.", 'OAuth oauth_consumer_key="x"'):
        r = await admin.client.get("/api/apikeys", headers={"Authorization": header})
        assert r.status_code in (400, 401), header


async def test_a_revoked_admin_key_is_refused(admin: Admin) -> None:
    other = await make(admin, name="ops", scopes=["restguard:admin"])
    r = await admin.post(f"/api/apikeys/{other['id']}/revoke")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert not await admin.gateway_accepts(other["key"])


async def test_bearer_and_apikey_authorization_work_too(admin: Admin) -> None:
    for scheme in ("Bearer", "ApiKey"):
        r = await admin.client.get(
            "/api/apikeys", headers={"Authorization": f"{scheme} {admin.key}"}
        )
        assert r.status_code == 200, scheme


# --- API keys ------------------------------------------------------------------------------


async def test_create_shows_the_key_once_and_it_works(admin: Admin) -> None:
    r = await admin.post("/api/apikeys", {"name": "svc", "scopes": ["a", "b"], "expires_in": "30d"})
    assert r.status_code == 201
    data = r.json()
    assert set(data) == {"id", "name", "key", "scopes", "expires_at", "etag"}
    assert r.headers["location"] == f"/api/apikeys/{data['id']}"
    assert r.headers["etag"] == data["etag"]
    assert data["scopes"] == ["a", "b"] and data["expires_at"]
    assert await admin.gateway_accepts(data["key"])
    one = await admin.get(f"/api/apikeys/{data['id']}")
    assert one.status_code == 200 and one.headers["etag"] == data["etag"]
    assert "key" not in one.json() and "key_hash" not in one.json()
    assert data["key"] not in (await admin.get("/api/apikeys")).text
    assert one.headers["cache-control"] == "no-store"


async def test_head_answers_like_get_without_a_body(admin: Admin) -> None:
    r = await admin.client.head("/api/apikeys", headers=admin.auth())
    assert r.status_code == 200 and r.content == b""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "n", "scopes": "a b"}, "scopes"),
        ({"name": "n", "scopes": ["a b"]}, "scopes"),
        ({"name": "n", "scopes": [1]}, "scopes"),
        ({"name": "n", "scopes": ["a"] * 101}, "scopes"),
        ({"name": "n", "expires_in": "soon"}, "expires_in"),
        ({"name": "n", "expires_in": 30}, "expires_in"),
        ({"name": "n", "secret": "x"}, "secret"),
    ],
)
async def test_bad_fields_are_400_naming_the_field_and_change_nothing(
    admin: Admin, body: dict[str, Any], field: str
) -> None:
    before = await admin.keys()
    r = await admin.post("/api/apikeys", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.json()["field"] == field
    assert r.json()["error_description"].startswith(f"{field}: ")
    assert await admin.keys() == before


@pytest.mark.parametrize(
    ("content", "content_type", "status", "field"),
    [
        (b"{", "application/json", 400, "body"),
        (b"[]", "application/json", 400, "body"),
        (b'{"name": "a", "name": "b"}', "application/json", 400, "name"),
        (b'{"name": "a", "expires_in": NaN}', "application/json", 400, "body"),
        (b'{"name": "\xff"}', "application/json", 400, "body"),
        (b'{"name": "a"}', "text/plain", 415, "Content-Type"),
        (b'{"name": "a"}', "application/x-www-form-urlencoded", 415, "Content-Type"),
        (b'{"name": "' + b"a" * MAX_BODY_BYTES + b'"}', "application/json", 413, "body"),
    ],
)
async def test_bodies_that_are_not_one_json_object_are_refused(
    admin: Admin, content: bytes, content_type: str, status: int, field: str
) -> None:
    before = await admin.keys()
    r = await admin.post("/api/apikeys", content=content, headers={"Content-Type": content_type})
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert await admin.keys() == before


async def test_unknown_ids_paths_and_methods(admin: Admin) -> None:
    assert (await admin.get("/api/apikeys/nosuchkey")).status_code == 404
    assert (await admin.post("/api/apikeys/nosuchkey/revoke")).status_code == 404
    assert (await admin.post("/api/apikeys/nosuchkey/rotate")).status_code == 404
    assert (await admin.get("/api/nothing")).status_code == 404
    assert (await admin.get("/api/apikeys/a_b")).status_code == 404
    r = await admin.client.delete("/api/apikeys", headers=admin.auth())
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    r = await admin.client.get(f"/api/apikeys/{admin.key_id}/revoke", headers=admin.auth())
    assert r.status_code == 405 and r.headers["allow"] == "POST"


async def test_query_parameters_are_strict(admin: Admin) -> None:
    for query, field in (
        ("limit=1&limit=2", "limit"),
        ("bogus=1", "bogus"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("state=dead", "state"),
        ("after=nosuchkey", "after"),
    ):
        r = await admin.get(f"/api/apikeys?{query}")
        assert r.status_code == 400, query
        assert r.json()["field"] == field, query
    r = await admin.post("/api/apikeys?name=x", {"name": "n"})
    assert r.status_code == 400 and r.json()["field"] == "name"


async def test_pages_cover_every_key_once_and_filters_apply(admin: Admin) -> None:
    made = [await make(admin, name=f"k{i}", scopes=["even" if i % 2 else "odd"]) for i in range(7)]
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "3", **({"after": after} if after else {})}
        page = (await admin.get("/api/apikeys", params=params)).json()
        assert len(page["items"]) <= 3
        seen += [k["id"] for k in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [admin.key_id, *(m["id"] for m in made)]
    odd = (await admin.get("/api/apikeys", params={"scope": "odd"})).json()["items"]
    assert [k["name"] for k in odd] == ["k0", "k2", "k4", "k6"]
    await admin.post(f"/api/apikeys/{made[2]['id']}/revoke")
    revoked = (await admin.get("/api/apikeys", params={"state": "revoked"})).json()["items"]
    assert [k["id"] for k in revoked] == [made[2]["id"]]
    named = (await admin.get("/api/apikeys", params={"name": "k3"})).json()["items"]
    assert [k["id"] for k in named] == [made[3]["id"]]
    # a filtered page's cursor still finds its place after the record changed state
    first = (await admin.get("/api/apikeys", params={"state": "active", "limit": "2"})).json()
    await admin.post(f"/api/apikeys/{first['next']}/revoke")
    rest = (
        await admin.get("/api/apikeys", params={"state": "active", "after": first["next"]})
    ).json()
    assert rest["items"] and first["next"] not in [k["id"] for k in rest["items"]]


async def test_if_match_refuses_stale_changes(admin: Admin) -> None:
    data = await make(admin)
    path = f"/api/apikeys/{data['id']}"
    etag = (await admin.get(path)).headers["etag"]
    rotated = await admin.post(f"{path}/rotate", {"grace": "1h"}, headers={"If-Match": etag})
    assert rotated.status_code == 201
    # the rotation changed the old key (its grace period): the tag read before is stale
    for verb in ("revoke", "rotate"):
        r = await admin.post(f"{path}/{verb}", headers={"If-Match": etag})
        assert r.status_code == 412, verb
        assert r.json()["error"] == "precondition_failed"
    assert (await admin.get(path)).json()["state"] == "grace"
    fresh = (await admin.get(path)).headers["etag"]
    assert (
        await admin.post(f"{path}/revoke", headers={"If-Match": "W/" + fresh})
    ).status_code == 412
    assert (await admin.post(f"{path}/revoke", headers={"If-Match": "nonsense"})).status_code == 400
    ok = await admin.post(f"{path}/revoke", headers={"If-Match": f'"x", {fresh}'})
    assert ok.status_code == 200 and ok.json()["state"] == "revoked"
    assert ok.headers["etag"] != fresh
    other = await make(admin)
    star = await admin.post(f"/api/apikeys/{other['id']}/revoke", headers={"If-Match": "*"})
    assert star.status_code == 200


async def test_rotate_gives_a_new_key_and_ends_the_old(admin: Admin) -> None:
    data = await make(admin, scopes=["a"])
    r = await admin.post(f"/api/apikeys/{data['id']}/rotate")
    assert r.status_code == 201
    new = r.json()
    assert new["old_id"] == data["id"] and new["scopes"] == ["a"]
    assert r.headers["location"] == f"/api/apikeys/{new['id']}"
    assert await admin.gateway_accepts(new["key"])
    assert not await admin.gateway_accepts(data["key"])
    again = await admin.post(f"/api/apikeys/{data['id']}/rotate")
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    bad = await admin.post(f"/api/apikeys/{new['id']}/rotate", {"grace": "forever"})
    assert bad.status_code == 400 and bad.json()["field"] == "grace"
    assert await admin.gateway_accepts(new["key"])


async def test_every_change_is_audited_without_a_secret(admin: Admin) -> None:
    data = await make(admin)
    rotated = (await admin.post(f"/api/apikeys/{data['id']}/rotate")).json()
    await admin.post(f"/api/apikeys/{rotated['id']}/revoke")
    await admin.post("/api/apikeys", {"name": ""})  # refused: no change line
    lines = audit_lines(admin)
    changes = [line for line in lines if (line["detail"] or "").startswith("admin ")]
    assert [c["detail"] for c in changes] == [
        f"admin apikey.create {data['id']}",
        f"admin apikey.rotate {data['id']} -> {rotated['id']}",
        f"admin apikey.revoke {rotated['id']}",
    ]
    for change in changes:
        assert change["credential_id"] == admin.key_id
        assert change["auth_method"] == "api_key"
        assert change["time"]
    text = admin.audit.read_text()
    for secret in (admin.key, data["key"], rotated["key"]):
        assert secret[19:] not in text


async def test_the_other_admin_endpoints_stay_open(admin: Admin) -> None:
    """/healthz, /readyz and /metrics need no key (as before the API)."""
    assert (await admin.client.get("/healthz")).status_code == 200
    assert (await admin.client.get("/metrics")).status_code == 200
    assert (await admin.client.get("/nothing")).status_code == 404


async def test_direct_store_records_show_through_the_api(admin: Admin) -> None:
    """What the CLI (or anything else) wrote is what the API lists."""
    record, _ = new_record("from-store", ("s",), admin.runtime.clock.now(), None)
    await admin.runtime.store.api_keys.insert(record)
    assert record.id in [k["id"] for k in await admin.keys()]


# --- signing keys --------------------------------------------------------------------------


async def test_signing_keys_list_and_rotate(admin: Admin) -> None:
    before = (await admin.get("/api/signing-keys")).json()
    assert before["next"] is None
    (first,) = before["items"]
    assert first["status"] == "signing" and set(first) == {
        "kid",
        "alg",
        "status",
        "created_at",
        "retired_at",
    }
    r = await admin.post("/api/signing-keys/rotate", {"alg": "es256"})
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["alg"] == "ES256"
    assert [p["kid"] for p in new["previous"]] == [first["kid"]]
    after = (await admin.get("/api/signing-keys")).json()["items"]
    assert [k["kid"] for k in after] == [new["kid"], first["kid"]]
    assert [k["status"] for k in after] == ["signing", "published"]
    # the running instance publishes it (its keyring reloads within 5 s; here: at once)
    await admin.runtime.keys.refresh()
    assert new["kid"] in {k["kid"] for k in admin.runtime.keys.jwks()["keys"]}
    changes = [x["detail"] for x in audit_lines(admin) if (x["detail"] or "").startswith("admin")]
    assert changes == [f"admin signing-key.rotate {new['kid']}"]
    text = json.dumps(after)
    assert "sealed" not in text and '"d"' not in text


async def test_signing_key_rotation_refuses_bad_input(admin: Admin) -> None:
    for body, field in (({"alg": "HS256"}, "alg"), ({"alg": 1}, "alg"), ({"kid": "x"}, "kid")):
        r = await admin.post("/api/signing-keys/rotate", body)
        assert r.status_code == 400 and r.json()["field"] == field, body
    assert len((await admin.get("/api/signing-keys")).json()["items"]) == 1
    r = await admin.post("/api/signing-keys/rotate")  # no body: the default algorithm
    assert r.status_code == 201 and r.json()["alg"] == "EdDSA"
