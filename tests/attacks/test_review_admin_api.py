"""Review attacks on the admin REST API (``/api/`` on the admin listener, ``admin/api.py``).

Each test names one attack and asserts the safe behaviour, so it passes while the defence
holds; a defence that does not hold is marked ``xfail(strict=True, reason="FINDING: ...")``.
The attacks go in-process (httpx over ASGI, with a clock the test moves) and against the real
listeners (``run_servers``: uvicorn on the admin listener, raw sockets and httpx), plus one
``restguard init`` + ``restguard serve`` pair of real processes.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from restguard.admin.api import mount
from restguard.admin.app import AdminApp
from restguard.cli.init import bootstrap_admin_key, write_data_dir
from restguard.clock import FixedClock
from restguard.config import load
from restguard.credentials.apikey import new_record
from restguard.observe import Metrics
from restguard.wiring import Runtime, open_runtime
from tests.harness import GatewayProcess, RecordingUpstream, free_port, set_key

ADMIN = "restguard:admin"
WRONG_KEY = "rg_ak_aaaaaaaaaaaa_" + "A" * 49  # well-formed, bad checksum: a failed attempt


def secret_part(key: str) -> str:
    """What must never be logged: the key less its public ``rg_ak_<id>_`` prefix."""
    return key[19:]


# --- in-process: the admin listener app over ASGI, with a clock the test moves ---------------


@dataclass
class Admin:
    client: httpx.AsyncClient
    app: AdminApp
    key: str
    key_id: str
    runtime: Runtime
    clock: FixedClock
    audit: Path

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key or self.key}

    async def get(self, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = {**self.auth(key), **kw.pop("headers", {})}
        return await self.client.get(path, headers=headers, **kw)

    async def post(
        self, path: str, body: Any = None, key: str | None = None, **kw: Any
    ) -> httpx.Response:
        headers = {**self.auth(key), **kw.pop("headers", {})}
        if body is None:
            return await self.client.post(path, headers=headers, **kw)
        return await self.client.post(path, json=body, headers=headers, **kw)

    async def listing(self) -> list[dict[str, Any]]:
        r = await self.get("/api/apikeys", params={"limit": "1000"})
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    async def make(self, **body: Any) -> dict[str, Any]:
        r = await self.post("/api/apikeys", {"name": "svc", **body})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def other_client(self, address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            self.app, client=(address, 5000), raise_app_exceptions=False
        )
        return httpx.AsyncClient(transport=transport, base_url="http://admin")

    def audit_text(self) -> str:
        self.runtime.audit.flush()  # type: ignore[union-attr]
        return self.audit.read_text() if self.audit.exists() else ""

    def audit_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_text().splitlines() if line.strip()]

    def changes(self) -> list[dict[str, Any]]:
        return [x for x in self.audit_lines() if (x["detail"] or "").startswith("admin ")]


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    config = write_data_dir(tmp_path / "d")
    boot = bootstrap_admin_key(config)
    clock = FixedClock(datetime.now(UTC))
    runtime = await open_runtime(load(config), clock=clock)
    app = AdminApp(runtime.store, Metrics(), api=mount(runtime))
    # raise_app_exceptions=False: an exception in the app is the 500 a real server answers
    transport = httpx.ASGITransport(app, client=("127.0.0.1", 5000), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            yield Admin(
                client,
                app,
                boot["key"],
                boot["id"],
                runtime,
                clock,
                tmp_path / "d" / "audit.log",
            )
    finally:
        await runtime.close()


async def insert_key(
    admin: Admin, *scopes: str, name: str = "direct", expires_in: float | None = None
) -> tuple[str, str]:
    record, key = new_record(name, tuple(scopes), admin.clock.now(), expires_in)
    await admin.runtime.store.api_keys.insert(record)
    return record.id, key


# --- authentication ------------------------------------------------------------------------


async def test_openapi_is_public_for_get_only(admin: Admin) -> None:
    assert (await admin.client.get("/api/openapi.json")).status_code == 200
    head = await admin.client.head("/api/openapi.json")
    assert head.status_code == 200 and head.content == b""
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        r = await admin.client.request(method, "/api/openapi.json")
        assert r.status_code == 401, method


@pytest.mark.parametrize(
    "path",
    [
        "/api",
        "/api/",
        "/api/apikeys",
        "/api/apikeys/",
        "/api/apikeys/x/revoke",
        "/api/openapi.json/../apikeys",
        "/api/openapi.json/",
        "/api/openapi.json;/../apikeys",
        "/api/./apikeys",
        "/api/apikeys/.",
    ],
)
async def test_no_credential_never_reaches_a_handler(admin: Admin, path: str) -> None:
    before = await admin.listing()
    for method in ("GET", "POST", "HEAD"):
        r = await admin.client.request(method, path)
        assert r.status_code in (400, 401, 404), (method, path, r.status_code)
        assert b"items" not in r.content and b"rg_ak_" not in r.content
    assert await admin.listing() == before


async def test_other_credential_methods_are_not_admin_credentials(admin: Admin) -> None:
    for headers in (
        {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzY29wZSI6InJlc3RndWFyZDphZG1pbiJ9."},
        {"Authorization": 'OAuth oauth_consumer_key="x", oauth_signature="y"'},
        {"Authorization": "Basic " + "cmdfYWtfOng="},
        {
            "Signature-Input": 'sig=("@method");keyid="k";alg="hmac-sha256"',
            "Signature": "sig=:AA==:",
        },
        {"Cookie": f"session={admin.key}"},
        {"X-Api-Key-Admin": admin.key},
    ):
        r = await admin.client.get("/api/apikeys", headers=headers)
        assert r.status_code in (400, 401), headers
        assert b"items" not in r.content


async def test_two_credentials_at_once_are_refused(admin: Admin) -> None:
    _, plain = await insert_key(admin, "notes:read")
    for headers in (
        [("x-api-key", admin.key), ("authorization", f"Bearer {plain}")],
        [("x-api-key", plain), ("authorization", f"ApiKey {admin.key}")],
        [("x-api-key", plain), ("x-api-key", admin.key)],
        [("authorization", f"Bearer {plain}"), ("authorization", f"Bearer {admin.key}")],
    ):
        r = await admin.client.get("/api/apikeys", headers=headers)
        assert r.status_code == 400, headers


async def test_key_in_query_string_is_refused_and_never_logged(admin: Admin) -> None:
    for query in (
        {"api_key": admin.key},
        {"key": admin.key},
        {"after": admin.key},
        {"name": admin.key},
    ):
        r = await admin.client.get("/api/apikeys", params=query)
        assert r.status_code == 400, query
        r = await admin.get("/api/apikeys", params=query)
        assert r.status_code == 400, query
    assert secret_part(admin.key) not in admin.audit_text()


async def test_key_in_the_path_is_never_logged(admin: Admin) -> None:
    for path in (
        f"/api/apikeys/{admin.key}",
        f"/api/apikeys/{admin.key}/revoke",
        f"/api/{admin.key}",
    ):
        assert (await admin.client.get(path)).status_code in (401, 404)
        assert (await admin.get(path)).status_code in (404, 405)
    assert secret_part(admin.key) not in admin.audit_text()


async def test_non_admin_key_is_403_everywhere_and_escalates_nothing(admin: Admin) -> None:
    plain_id, plain = await insert_key(admin, "notes:read", "restguard:admins", "restguard")
    before = await admin.listing()
    for method, path, body in (
        ("GET", "/api/apikeys", None),
        ("GET", f"/api/apikeys/{plain_id}", None),
        ("POST", "/api/apikeys", {"name": "me", "scopes": [ADMIN]}),
        ("POST", f"/api/apikeys/{plain_id}/rotate", None),  # its own key
        ("POST", f"/api/apikeys/{admin.key_id}/revoke", None),
        ("POST", f"/api/apikeys/{admin.key_id}/rotate", None),
    ):
        r = await admin.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {plain}"}
        )
        assert r.status_code == 403, (method, path)
        assert r.json()["error"] == "insufficient_scope"
    assert await admin.listing() == before
    assert admin.changes() == []


async def test_scope_matching_is_exact(admin: Admin) -> None:
    """A scope that only resembles the admin scope is not it."""
    for scope in ("RESTGUARD:ADMIN", "restguard:admin:x", "restguard:admin*", "restguard:*"):
        record, key = new_record("lookalike", (scope,), admin.clock.now(), None)
        await admin.runtime.store.api_keys.insert(record)
        r = await admin.get("/api/apikeys", key=key)
        assert r.status_code == 403, scope


async def test_expired_admin_key_is_refused(admin: Admin) -> None:
    _, key = await insert_key(admin, ADMIN, name="old ops", expires_in=-60)
    r = await admin.get("/api/apikeys", key=key)
    assert r.status_code == 401
    r = await admin.post("/api/apikeys", {"name": "x", "scopes": [ADMIN]}, key=key)
    assert r.status_code == 401


async def test_admin_key_that_expires_stops_working(admin: Admin) -> None:
    ops = await admin.make(name="ops", scopes=[ADMIN], expires_in="10s")
    assert (await admin.get("/api/apikeys", key=ops["key"])).status_code == 200
    admin.clock.advance(11)
    assert (await admin.get("/api/apikeys", key=ops["key"])).status_code == 401


async def test_revoked_admin_key_is_refused_by_the_api(admin: Admin) -> None:
    ops = await admin.make(name="ops", scopes=[ADMIN])
    assert (await admin.get("/api/apikeys", key=ops["key"])).status_code == 200
    r = await admin.post(f"/api/apikeys/{ops['id']}/revoke")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    admin.clock.advance(1.5)  # past the authenticator's one-second cache
    for method, path in (("GET", "/api/apikeys"), ("POST", f"/api/apikeys/{ops['id']}/rotate")):
        r = await admin.client.request(method, path, headers=admin.auth(ops["key"]))
        assert r.status_code == 401, (method, path)


async def test_rotated_admin_key_works_in_grace_and_not_after(admin: Admin) -> None:
    ops = await admin.make(name="ops", scopes=[ADMIN])
    r = await admin.post(f"/api/apikeys/{ops['id']}/rotate", {"grace": "10s"})
    assert r.status_code == 201
    new = r.json()
    assert (await admin.get("/api/apikeys", key=ops["key"])).status_code == 200
    admin.clock.advance(11)
    assert (await admin.get("/api/apikeys", key=ops["key"])).status_code == 401
    r = await admin.post("/api/apikeys", {"name": "late", "scopes": [ADMIN]}, key=ops["key"])
    assert r.status_code == 401
    assert (await admin.get("/api/apikeys", key=new["key"])).status_code == 200


async def test_rotated_admin_key_without_grace_stops_at_once(admin: Admin) -> None:
    ops = await admin.make(name="ops", scopes=[ADMIN])
    assert (await admin.post(f"/api/apikeys/{ops['id']}/rotate")).status_code == 201
    admin.clock.advance(1.5)
    assert (await admin.get("/api/apikeys", key=ops["key"])).status_code == 401


async def test_revoke_stops_a_key_in_its_grace_period_at_once(admin: Admin) -> None:
    ops = await admin.make(name="ops", scopes=[ADMIN])
    assert (
        await admin.post(f"/api/apikeys/{ops['id']}/rotate", {"grace": "1h"})
    ).status_code == 201
    r = await admin.post(f"/api/apikeys/{ops['id']}/revoke")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    admin.clock.advance(1.5)
    assert (await admin.get("/api/apikeys", key=ops["key"])).status_code == 401


async def test_a_key_in_grace_cannot_extend_its_own_grace(admin: Admin) -> None:
    """The holder of a rotated (leaked) admin key rotates it again with a long grace: the
    earlier end holds."""
    ops = await admin.make(name="ops", scopes=[ADMIN])
    first = await admin.post(f"/api/apikeys/{ops['id']}/rotate", {"grace": "10s"})
    ends = first.json()["grace_ends_at"]
    again = await admin.post(f"/api/apikeys/{ops['id']}/rotate", {"grace": "30d"}, key=ops["key"])
    assert again.status_code == 409 and "rotated already" in again.json()["error_description"]
    assert (await admin.get(f"/api/apikeys/{ops['id']}")).json()["revoked_at"] == ends
    r = await admin.post(f"/api/apikeys/{ops['id']}/revoke", key=ops["key"])
    admin.clock.advance(11)
    assert (await admin.get("/api/apikeys", key=ops["key"])).status_code == 401
    assert (await admin.get(f"/api/apikeys/{ops['id']}")).json()["state"] == "revoked"
    assert r.status_code == 200


async def test_a_wrong_secret_for_a_real_id_looks_like_any_wrong_key(admin: Admin) -> None:
    """No oracle for which key ids exist (the id is public, but not to strangers)."""
    answers = []
    for key_id in (admin.key_id, "zzzzzzzzzzzz"):
        r = await admin.client.get(
            "/api/apikeys", headers={"X-API-Key": f"rg_ak_{key_id}_" + "A" * 49}
        )
        answers.append((r.status_code, r.text, r.headers.get("www-authenticate")))
    assert answers[0] == answers[1]


# --- methods -------------------------------------------------------------------------------


async def test_method_override_is_refused(admin: Admin) -> None:
    target = await admin.make()
    path = f"/api/apikeys/{target['id']}"
    for name in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        r = await admin.get(path, headers={name: "POST"})
        assert r.status_code == 400, name
        r = await admin.post(f"{path}/revoke", headers={name: "GET"})
        assert r.status_code == 400, name
    assert (await admin.post(f"{path}/revoke?_method=GET")).status_code == 400
    r = await admin.post(
        f"{path}/revoke",
        content=b"_method=GET",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400
    r = await admin.post(f"{path}/revoke", {"_method": "GET"})
    assert r.status_code == 400
    assert (await admin.get(path)).json()["state"] == "active"


async def test_head_options_and_other_verbs_change_nothing(admin: Admin) -> None:
    target = await admin.make()
    before = await admin.listing()
    for verb in ("revoke", "rotate"):
        for method in ("HEAD", "GET", "OPTIONS", "PUT", "PATCH", "DELETE"):
            r = await admin.client.request(
                method, f"/api/apikeys/{target['id']}/{verb}", headers=admin.auth()
            )
            assert r.status_code == 405, (method, verb)
            assert r.headers["allow"] == "POST"
    for method in ("PROPFIND", "TRACE", "CONNECT"):  # (lowercase: the raw-socket test)
        r = await admin.client.request(method, "/api/apikeys", headers=admin.auth())
        assert r.status_code in (400, 404, 405), method
    assert await admin.listing() == before
    assert len(admin.changes()) == 1  # the create


# --- privilege and ids -----------------------------------------------------------------------


async def test_revoke_and_rotate_touch_only_the_named_id(admin: Admin) -> None:
    a, b = await admin.make(name="a"), await admin.make(name="b")
    before = {k["id"]: k for k in await admin.listing()}
    assert (await admin.post(f"/api/apikeys/{a['id']}/revoke")).status_code == 200
    after = {k["id"]: k for k in await admin.listing()}
    assert after[b["id"]] == before[b["id"]]
    assert after[admin.key_id] == before[admin.key_id]
    # a's etag does not revoke b
    r = await admin.post(f"/api/apikeys/{b['id']}/revoke", headers={"If-Match": a["etag"]})
    assert r.status_code == 412


@pytest.mark.parametrize(
    "ident",
    [
        "%00",
        "x%00",
        "%2e%2e",
        "..",
        "a%2Fb",
        "a%5Cb",
        "A" * 65,
        "%D9%A1",
        "%EF%BC%A1",
        "rg_ak_x",
        "*",
        "%2A",
        "a%20",
        "a%0d%0aX-Injected:%201",
    ],
)
async def test_odd_ids_touch_nothing(admin: Admin, ident: str) -> None:
    before = await admin.listing()
    for method, suffix in (("GET", ""), ("POST", "/revoke"), ("POST", "/rotate")):
        r = await admin.client.request(
            method, f"/api/apikeys/{ident}{suffix}", headers=admin.auth()
        )
        assert r.status_code in (400, 404), (ident, suffix, r.status_code)
        assert "x-injected" not in r.headers
    assert await admin.listing() == before


async def test_an_id_differing_only_in_case_is_another_id(admin: Admin) -> None:
    target = await admin.make()
    upper = target["id"].upper()
    if upper == target["id"]:  # all digits: nothing to try
        return
    assert (await admin.post(f"/api/apikeys/{upper}/revoke")).status_code == 404
    assert (await admin.get(f"/api/apikeys/{target['id']}")).json()["state"] == "active"


# --- input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a\r\nX-Injected: 1",
        "a\nb",
        "a\rb",
        "a\x00b",
        "a\x1bb",
        "a\u202eb",
        "a\u2066b",
        "a\u200bb",
        "a\u2028b",
        "a\x85b",
        "a\ufeffb",
        "\u00a0",
        " ",
        "a\udc80b",
    ],
)
async def test_names_with_control_bidi_or_blank_characters_are_refused(
    admin: Admin, name: str
) -> None:
    before = await admin.listing()
    content = json.dumps({"name": name}).encode()
    r = await admin.post(
        "/api/apikeys", content=content, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400, repr(name)
    assert r.json()["field"] == "name"
    assert "x-injected" not in r.headers
    assert await admin.listing() == before


async def test_name_filter_cannot_inject_headers_or_audit_lines(admin: Admin) -> None:
    lines = len(admin.audit_lines())
    r = await admin.client.get(
        "/api/apikeys?name=a%0d%0aX-Injected:%201%0a%7b%22detail%22:%22admin%22%7d",
        headers=admin.auth(),
    )
    assert r.status_code == 200 and r.json()["items"] == []
    assert "x-injected" not in r.headers
    new = admin.audit_lines()[lines:]
    assert len(new) == 1 and new[0]["detail"] is None and "X-Injected" not in new[0]["path"]


async def test_deeply_nested_json_is_a_400(admin: Admin) -> None:
    before = await admin.listing()
    for content in (b"[" * 20_000, b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
        r = await admin.post(
            "/api/apikeys", content=content, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, r.status_code
        assert r.json()["field"] == "body"
    assert await admin.listing() == before


async def test_duplicate_and_case_variant_members_are_refused(admin: Admin) -> None:
    before = await admin.listing()
    for content in (
        b'{"name": "a", "scopes": [], "scopes": ["restguard:admin"]}',
        b'{"name": "a", "Scopes": ["restguard:admin"]}',
        b'{"name": "a", "name\\u0000": "b"}',
        b'{"name": "a", "\\u006eame": "b"}',
        b'{"name": "a"} {"name": "b"}',
        b'{"name": "a", "scopes": {"0": "restguard:admin"}}',
        b'{"name": "a", "expires_in": ' + b"9" * 5000 + b"}",
        b'{"name": "a", "expires_in": 1e999999}',
        b'{"name": "a", "scopes": "restguard:admin"}',
        b'{"name": ["restguard:admin"]}',
        b'{"name": null}',
    ):
        r = await admin.post(
            "/api/apikeys", content=content, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, content
    assert await admin.listing() == before


async def test_body_media_types(admin: Admin) -> None:
    before = await admin.listing()
    body = b'{"name": "typed"}'
    for headers, status in (
        ([], 415),
        ([("content-type", "text/json")], 415),
        ([("content-type", "application/json-patch+json")], 415),
        ([("content-type", "application/jsonx")], 415),
        ([("content-type", "application/json"), ("content-type", "text/plain")], 400),
        ([("content-type", "application/json, text/plain")], 400),
    ):
        r = await admin.client.post(
            "/api/apikeys", content=body, headers=[("x-api-key", admin.key), *headers]
        )
        assert r.status_code in (status, 400, 415), (headers, r.status_code)
        assert r.status_code != 201
    assert await admin.listing() == before
    for ctype in ("application/json; charset=utf-8", "Application/JSON"):
        r = await admin.client.post(
            "/api/apikeys", content=body, headers={**admin.auth(), "Content-Type": ctype}
        )
        assert r.status_code == 201, ctype


async def test_oversized_bodies_are_413_and_change_nothing(admin: Admin) -> None:
    before = await admin.listing()
    huge = b'{"name": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    r = await admin.post("/api/apikeys", content=huge, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    many = json.dumps({"name": "n", "scopes": [f"s{i}" for i in range(5000)]}).encode()
    r = await admin.post("/api/apikeys", content=many, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 413)
    assert await admin.listing() == before


async def test_chunked_body_is_read_whole(admin: Admin) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b'{"na', b'me": "chu', b'nked"}'):
            yield part

    r = await admin.client.post(
        "/api/apikeys",
        content=chunks(),
        headers={**admin.auth(), "Content-Type": "application/json"},
    )
    assert r.status_code == 201 and r.json()["name"] == "chunked"


@pytest.mark.parametrize(
    "limit", ["0", "-1", "1001", "99999999999999999999", "1e3", "0x10", " 5", "5 ", "+5", ""]
)
async def test_bad_limits_are_400(admin: Admin, limit: str) -> None:
    r = await admin.get("/api/apikeys", params={"limit": limit})
    assert r.status_code == 400, limit
    assert r.json()["field"] == "limit"


@pytest.mark.parametrize("limit", ["%C2%B2", "%E2%91%A0"])
async def test_non_decimal_unicode_digits_in_limit_are_400(admin: Admin, limit: str) -> None:
    r = await admin.client.get(f"/api/apikeys?limit={limit}", headers=admin.auth())
    assert r.status_code == 400, r.status_code
    assert r.json()["field"] == "limit"


async def test_cursor_tricks(admin: Admin) -> None:
    made = [await admin.make(name=f"k{i}") for i in range(3)]
    for after in ("", "%00", made[0]["id"].upper(), "k0", "../x", "*"):
        r = await admin.client.get(f"/api/apikeys?after={after}", headers=admin.auth())
        assert r.status_code == 400, after
    r = await admin.client.get("/api/apikeys?after=a&after=b", headers=admin.auth())
    assert r.status_code == 400
    # the last id as cursor: an empty last page, no wrap-around
    final = (await admin.listing())[-1]["id"]
    last = await admin.get("/api/apikeys", params={"after": final})
    assert last.status_code == 200 and last.json() == {"items": [], "next": None}


async def test_if_match_variations(admin: Admin) -> None:
    target = await admin.make()
    path = f"/api/apikeys/{target['id']}/revoke"
    tag = target["etag"]
    for value, status in (
        ("W/" + tag, 412),
        ('"' + tag.strip('"').upper() + '"', 412),
        (tag.strip('"'), 400),
        ("", 400),
        (",", 400),
        ('"x" junk', 400),
        ('*, "x"', 400),
        ('"x", "y"', 412),
    ):
        r = await admin.post(path, headers={"If-Match": value})
        assert r.status_code == status, (value, r.status_code)
    for raw in (b'"\xff"', b'"\x80' + tag.strip('"').encode() + b'"'):
        r = await admin.client.post(path, headers=[("x-api-key", admin.key), ("if-match", raw)])
        assert r.status_code == 412, raw
    r = await admin.client.post(
        path, headers=[("x-api-key", admin.key), ("if-match", tag), ("if-match", "*")]
    )
    assert r.status_code == 400
    assert (await admin.get(f"/api/apikeys/{target['id']}")).json()["state"] == "active"
    r = await admin.post("/api/apikeys/nosuchkey1234/revoke", headers={"If-Match": "*"})
    assert r.status_code == 404


async def test_concurrent_rotations_with_one_etag_make_one_successor(admin: Admin) -> None:
    target = await admin.make(name="raced")
    path = f"/api/apikeys/{target['id']}/rotate"
    answers = await asyncio.gather(
        *(admin.post(path, headers={"If-Match": target["etag"]}) for _ in range(8))
    )
    assert sorted(r.status_code for r in answers).count(201) == 1
    live = [k for k in await admin.listing() if k["name"] == "raced" and k["state"] == "active"]
    assert len(live) == 1


# --- secrets -------------------------------------------------------------------------------


async def test_new_keys_appear_once_with_no_store_and_never_again(admin: Admin) -> None:
    created = await admin.post("/api/apikeys", {"name": "svc", "scopes": [ADMIN]})
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    new = created.json()
    rotated = await admin.post(f"/api/apikeys/{new['id']}/rotate", {"grace": "1h"})
    assert rotated.status_code == 201 and rotated.headers["cache-control"] == "no-store"
    secrets = [admin.key, new["key"], rotated.json()["key"]]
    seen = ""
    for path in (
        "/api/apikeys",
        f"/api/apikeys/{new['id']}",
        f"/api/apikeys/{rotated.json()['id']}",
        "/api/apikeys?name=svc&state=grace",
        "/api/openapi.json",
    ):
        r = await admin.get(path)
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "no-store" or path.endswith("openapi.json")
        seen += r.text + json.dumps(dict(r.headers))
    for path in ("/metrics", "/healthz", "/readyz"):
        seen += (await admin.client.get(path)).text
    seen += admin.audit_text()
    for key in secrets:
        assert secret_part(key) not in seen
    assert "key_hash" not in seen


async def test_location_ignores_host_and_forwarded_host(admin: Admin) -> None:
    r = await admin.post(
        "/api/apikeys",
        {"name": "loc"},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert r.status_code == 201
    assert r.headers["location"] == f"/api/apikeys/{r.json()['id']}"


async def test_error_bodies_never_echo_a_key(admin: Admin) -> None:
    target = await admin.make()
    other = "R" if admin.key.endswith("Q") else "Q"
    tries = [
        await admin.post(f"/api/apikeys/{target['id']}/revoke", headers={"If-Match": admin.key}),
        await admin.client.get("/api/apikeys", headers={"X-API-Key": admin.key + "x"}),
        # (a last character changed: to another one, or 1 key in 62 stays itself and passes)
        await admin.client.get("/api/apikeys", headers={"X-API-Key": admin.key[:-1] + other}),
    ]
    for r in tries:
        assert r.status_code in (400, 401), r.text
        assert secret_part(admin.key) not in r.text
        assert secret_part(admin.key) not in json.dumps(dict(r.headers))
    assert secret_part(admin.key) not in admin.audit_text()


@pytest.mark.parametrize("where", ["field-name", "scopes", "expires_in", "grace"])
async def test_error_bodies_never_quote_a_key_sent_as_input(admin: Admin, where: str) -> None:
    target = await admin.make()
    if where == "field-name":
        r = await admin.post("/api/apikeys", {"name": "n", admin.key: 1})
    elif where == "scopes":
        r = await admin.post("/api/apikeys", {"name": "n", "scopes": [admin.key + " x"]})
    elif where == "expires_in":
        r = await admin.post("/api/apikeys", {"name": "n", "expires_in": admin.key})
    else:
        r = await admin.post(f"/api/apikeys/{target['id']}/rotate", {"grace": admin.key})
    assert r.status_code == 400
    assert secret_part(admin.key) not in r.text


async def test_every_change_is_audited_by_id_only(admin: Admin) -> None:
    made = await admin.make(name="Alice's key \u00e9", scopes=[ADMIN, "notes:read"])
    rot = (await admin.post(f"/api/apikeys/{made['id']}/rotate")).json()
    await admin.post(f"/api/apikeys/{rot['id']}/revoke")
    details = [c["detail"] for c in admin.changes()]
    assert details == [
        f"admin apikey.create {made['id']}",
        f"admin apikey.rotate {made['id']} -> {rot['id']}",
        f"admin apikey.revoke {rot['id']}",
    ]
    assert all(c["credential_id"] == admin.key_id for c in admin.changes())
    text = admin.audit_text()
    for key in (admin.key, made["key"], rot["key"]):
        assert secret_part(key) not in text


async def test_audit_status_is_the_status_the_client_received(admin: Admin) -> None:
    lines = len(admin.audit_lines())
    got = [
        (await admin.post("/api/apikeys", {"name": "n"})).status_code,  # 201
        (await admin.get("/api/apikeys/nosuchkey123")).status_code,  # 404
        (await admin.post("/api/apikeys", {"name": ""})).status_code,  # 400
    ]
    assert got == [201, 404, 400]
    statuses = {line["status"] for line in admin.audit_lines()[lines:]}
    assert statuses >= {201, 404, 400}, statuses


# --- a refused request changes nothing -----------------------------------------------------


async def test_refused_requests_change_nothing(admin: Admin) -> None:
    target = await admin.make(name="t", scopes=["a"])
    _, plain = await insert_key(admin, "notes:read", name="plain")
    before = await admin.listing()
    changes = len(admin.changes())
    path = f"/api/apikeys/{target['id']}"
    for r in (
        await admin.post(f"{path}/rotate", {"grace": "forever"}),
        await admin.post(f"{path}/rotate", {"grace": "1h", "scopes": [ADMIN]}),
        await admin.post(f"{path}/rotate", {"grace": "1h"}, headers={"If-Match": '"stale"'}),
        await admin.post(f"{path}/revoke", {"now": True}),
        await admin.post(f"{path}/revoke", headers={"If-Match": '"stale"'}),
        await admin.post(f"{path}/revoke?force=1"),
        await admin.post(f"{path}/revoke", key=plain),
        await admin.post(f"{path}/revoke", key=WRONG_KEY),
        await admin.post("/api/apikeys", {"name": "x", "scopes": ["a b"]}),
        await admin.post("/api/apikeys", {"name": "x", "expires_in": "0s"}),
        await admin.post("/api/apikeys", {"name": "x", "expires_in": "-1d"}),
        await admin.post("/api/apikeys", {"name": "x", "expires_in": "99999d"}),
        await admin.post("/api/apikeys", {"name": "x", "id": admin.key_id}),
        await admin.post("/api/apikeys", {"name": "x", "key": admin.key}),
    ):
        assert r.status_code >= 400, r.text
    assert await admin.listing() == before
    assert len(admin.changes()) == changes


@pytest.mark.xfail(
    strict=True,
    reason="KNOWN LIMIT: with [audit] required = true the request's own line (who, method, "
    "path, pending) is written before the change, but the change's line (which record) after "
    "it; a log that fails between the two leaves the change, answered 201 and reported in the "
    "server's log. Closing it needs the service layer to write the line before its store write",
)
async def test_required_audit_that_cannot_record_a_change_refuses_it(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d")
    config.write_text(set_key(config.read_text(), "audit.required", "true"))
    boot = bootstrap_admin_key(config)
    runtime = await open_runtime(load(config))
    audit = runtime.audit
    assert audit is not None
    flush = audit.flush

    def failing_for_changes() -> bool:  # the disk fills up exactly when the change is logged
        if any("admin apikey." in line for line in audit._pending):
            audit._pending.clear()
            return False
        return flush()

    audit.flush = failing_for_changes  # type: ignore[method-assign]
    transport = httpx.ASGITransport(
        AdminApp(runtime.store, Metrics(), api=mount(runtime)),
        client=("127.0.0.1", 5000),
        raise_app_exceptions=False,
    )
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            auth = {"X-API-Key": boot["key"]}
            r = await client.post("/api/apikeys", json={"name": "unaudited"}, headers=auth)
            assert r.status_code == 503, r.status_code
            names = [
                k["name"] for k in (await client.get("/api/apikeys", headers=auth)).json()["items"]
            ]
            assert names == ["bootstrap admin"]
    finally:
        await runtime.close()


# --- lockout -------------------------------------------------------------------------------


async def test_wrong_admin_keys_hit_the_lockout_per_address(admin: Admin) -> None:
    statuses = []
    for _ in range(35):
        r = await admin.client.get("/api/apikeys", headers={"X-API-Key": WRONG_KEY})
        statuses.append(r.status_code)
    assert statuses[0] == 401 and statuses[-1] == 429
    assert 401 not in statuses[statuses.index(429) :]
    r = await admin.client.get(
        "/api/apikeys", headers={"X-API-Key": WRONG_KEY, "X-Forwarded-For": "203.0.113.9"}
    )
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # the valid admin key still passes (nothing a stranger does locks its owner out)
    assert (await admin.get("/api/apikeys")).status_code == 200
    async with admin.other_client("127.0.0.2") as other:
        r = await other.get("/api/apikeys", headers={"X-API-Key": WRONG_KEY})
        assert r.status_code == 401


# --- the open endpoints --------------------------------------------------------------------


async def test_open_endpoints_stay_open_and_read_only(admin: Admin) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        r = await admin.client.get(path)
        assert r.status_code == 200, path
        assert (await admin.client.post(path)).status_code == 404
    for path in ("/metrics/api/apikeys", "/apikeys", "/API/apikeys", "/healthz/api/apikeys"):
        r = await admin.client.get(path, headers=admin.auth())
        assert r.status_code in (400, 404), path
        assert b"items" not in r.content


# --- real listeners: run_servers with uvicorn on the admin port ----------------------------


@dataclass
class Live:
    gw: GatewayProcess
    key: str
    key_id: str
    plain: str

    @property
    def port(self) -> int:
        return self.gw.admin_port


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream) -> Iterator[Live]:
    gw = GatewayProcess(tmp_path_factory.mktemp("admin-api") / "gw", upstream).start()
    try:
        key_id, key = gw.issue_key(ADMIN, name="ops")
        _, plain = gw.issue_key("notes:read", name="plain")
        yield Live(gw, key, key_id, plain)
    finally:
        gw.stop()


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes; read one response (Content-Length or chunked) or until close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            head, sep, body = out.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
                if re.search(rb"(?i)\r\ntransfer-encoding: *chunked", head) and body.endswith(
                    b"0\r\n\r\n"
                ):
                    break
        return out


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


def request(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *headers, "Connection: close"]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@pytest.mark.slow
@pytest.mark.parametrize(
    "target",
    [
        "/api/apikeys",
        "//api/apikeys",
        "///api/apikeys",
        "/API/apikeys",
        "/Api/apikeys",
        "/api/apikeys/",
        "/api/%61pikeys",
        "/%61pi/apikeys",
        "/api%2Fapikeys",
        "/api%2fapikeys",
        "/api/apikeys%2F",
        "/api/apikeys;x=1",
        "/api;/apikeys",
        "/api/apikeys/.",
        "/api/apikeys/..",
        "/api/./apikeys",
        "/api/../api/apikeys",
        "/healthz/../api/apikeys",
        "/api/openapi.json/../apikeys",
        "/api/openapi.json/%2e%2e/apikeys",
        "/api/openapi.json%2F..%2Fapikeys",
        "/api/openapi.json%00",
        "/api/openapi.json#/../apikeys",
        "/api/openapi.json?/../apikeys",
        "/api\\apikeys",
        "/api/%5capikeys",
        "/api",
        "api/apikeys",
        "*",
        "http://127.0.0.1/api/apikeys",
        "http://127.0.0.1/api/openapi.json/../apikeys",
        "/api/apikeys?_method=GET",
        "/api/apikeys%3Flimit=1",
    ],
)
def test_real_listener_path_tricks_without_a_key(live: Live, target: str) -> None:
    for method in ("GET", "POST", "HEAD"):
        out = exchange(live.port, request(method, target))
        code = status(out)
        if code == 200:  # only ever the public document (a query or fragment after its path)
            assert method in ("GET", "HEAD") and target.startswith("/api/openapi.json")
            assert b'"openapi": "3.1' in out or method == "HEAD"
            continue
        assert code in (0, 400, 401, 404), (method, target, out[:200])
        assert b'"items"' not in out and b"rg_ak_" not in out


@pytest.mark.slow
def test_real_listener_method_tricks(live: Live) -> None:
    before = httpx.get(
        f"{live.gw.admin_url}/api/apikeys", headers={"X-API-Key": live.key}, timeout=5
    ).json()
    for method in ("get", "Get", "OPTIONS", "TRACE", "PROPFIND", "PURGE", "CONNECT", "DELETE"):
        for headers in ((), (f"X-API-Key: {live.plain}",)):
            out = exchange(live.port, request(method, "/api/apikeys", *headers))
            assert status(out) in (0, 400, 401, 403, 404, 405, 501), (method, out[:120])
    for override in ("X-HTTP-Method-Override: POST", "X-HTTP-Method: POST"):
        out = exchange(
            live.port, request("GET", "/api/apikeys", f"X-API-Key: {live.key}", override)
        )
        assert status(out) == 400, override
    # HEAD never creates
    out = exchange(
        live.port,
        request(
            "HEAD",
            "/api/apikeys",
            f"X-API-Key: {live.key}",
            "Content-Type: application/json",
            body=b'{"name": "head"}',
        ),
    )
    assert status(out) in (0, 200, 400)
    after = httpx.get(
        f"{live.gw.admin_url}/api/apikeys", headers={"X-API-Key": live.key}, timeout=5
    ).json()
    assert [k["id"] for k in after["items"]] == [k["id"] for k in before["items"]]


@pytest.mark.slow
def test_real_listener_non_admin_key_and_credentials_in_the_url(live: Live) -> None:
    out = exchange(live.port, request("GET", "/api/apikeys", f"Authorization: Bearer {live.plain}"))
    assert status(out) == 403
    body = b'{"name": "escalate", "scopes": ["restguard:admin"]}'
    out = exchange(
        live.port,
        request(
            "POST",
            "/api/apikeys",
            f"X-API-Key: {live.plain}",
            "Content-Type: application/json",
            body=body,
        ),
    )
    assert status(out) == 403 and b"rg_ak_" not in out
    for target in (f"/api/apikeys?api_key={live.key}", f"/api/apikeys/{live.key}"):
        out = exchange(live.port, request("GET", target))
        assert status(out) in (400, 401), target
    out = exchange(live.port, request("GET", f"http://u:{live.key}@127.0.0.1/api/apikeys"))
    assert status(out) in (0, 400, 401)
    text = live.gw.audit_events()
    assert secret_part(live.key) not in json.dumps(text)


@pytest.mark.slow
def test_real_listener_keep_alive_does_not_carry_authentication(live: Live) -> None:
    """Two pipelined requests on one connection: the first with the admin key, the second
    without; the second is judged on its own."""
    first = f"GET /api/apikeys HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {live.key}\r\n\r\n"
    second = "GET /api/apikeys HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as s:
        s.sendall((first + second).encode())
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
    codes = [int(m) for m in re.findall(rb"HTTP/1.1 (\d{3})", out)]
    assert codes == [200, 401], codes


@pytest.mark.slow
def test_real_listener_refuses_websocket_upgrades(live: Live) -> None:
    out = exchange(
        live.port,
        request(
            "GET",
            "/api/apikeys",
            f"X-API-Key: {live.key}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ).replace(b"Connection: close\r\n", b""),
        timeout=3,
    )
    assert status(out) != 101 and b'"items"' not in out


@pytest.mark.slow
def test_real_listener_audit_client_ignores_forwarded_headers(live: Live) -> None:
    with httpx.Client(base_url=live.gw.admin_url, timeout=5) as client:
        r = client.post(
            "/api/apikeys",
            json={"name": "xff"},
            headers={
                "X-API-Key": live.key,
                "X-Forwarded-For": "203.0.113.50",
                "Forwarded": "for=203.0.113.51",
                "X-Real-IP": "203.0.113.52",
            },
        )
    assert r.status_code == 201
    line = [
        e for e in live.gw.audit_events() if e["detail"] == f"admin apikey.create {r.json()['id']}"
    ]
    assert len(line) == 1 and line[0]["client"] == "127.0.0.1"
    assert line[0]["credential_id"] == live.key_id


@pytest.mark.slow
def test_admin_api_is_not_on_the_gateway_listener(live: Live) -> None:
    with httpx.Client(base_url=live.gw.url, timeout=5) as client:
        for path in ("/api/apikeys", "/api/openapi.json"):
            r = client.get(path, headers={"X-API-Key": live.key})
            assert r.status_code == 404, path
            assert "items" not in r.text


@pytest.mark.slow
def test_real_listener_chunked_create_and_no_secret_in_logs_or_metrics(live: Live) -> None:
    payload = b'{"name": "chunky", "scopes": ["notes:read"]}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (payload[:7], payload[7:])) + (
        b"0\r\n\r\n"
    )
    head = (
        "POST /api/apikeys HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {live.key}\r\nContent-Type: application/json; charset=utf-8\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    out = exchange(live.port, head + chunked)
    assert status(out) == 201, out[:300]
    assert re.search(rb"(?i)\r\ncache-control: no-store\r\n", out)
    new = json.loads(out.partition(b"\r\n\r\n")[2])
    # no content-type: refused
    out = exchange(
        live.port, request("POST", "/api/apikeys", f"X-API-Key: {live.key}", body=payload)
    )
    assert status(out) == 415
    with httpx.Client(base_url=live.gw.admin_url, timeout=5) as client:
        listing = client.get("/api/apikeys", headers={"X-API-Key": live.key})
        metrics = client.get("/metrics")
        health = client.get("/healthz")
        ready = client.get("/readyz")
    assert health.status_code == 200 and ready.status_code == 200, ready.text
    assert metrics.status_code == 200
    logs = json.dumps(live.gw.audit_events())
    for text in (listing.text, metrics.text, health.text, ready.text, logs):
        assert secret_part(new["key"]) not in text
        assert secret_part(live.key) not in text
    assert f"admin apikey.create {new['id']}" in logs


@pytest.mark.slow
def test_real_listener_smuggling_shapes_do_not_run_a_second_request(live: Live) -> None:
    """CL+TE with a keyless POST hidden behind a public GET: the hidden request never reaches a
    handler (it is refused, or judged on its own and answered 401)."""
    hidden = (
        b"POST /api/apikeys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 18\r\n\r\n{"name": "hidden"}'
    )
    for first in (b"GET", b"POST"):
        smuggle = (
            first + b" /api/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s"
            % (5 + len(hidden), hidden)
        )
        out = exchange(live.port, smuggle)
        assert b'"key": "rg_ak_' not in out
    time.sleep(0.2)
    with httpx.Client(base_url=live.gw.admin_url, timeout=5) as client:
        r = client.get("/api/apikeys", params={"name": "hidden"}, headers={"X-API-Key": live.key})
    assert r.status_code == 200 and r.json()["items"] == []


@pytest.mark.slow
def test_real_listener_bad_input_is_a_json_400(live: Live) -> None:
    with httpx.Client(base_url=live.gw.admin_url, timeout=5) as client:
        answers = [
            client.get("/api/apikeys?limit=%C2%B2", headers={"X-API-Key": live.key}),
            client.post(
                "/api/apikeys",
                content=b"[" * 20_000,
                headers={"X-API-Key": live.key, "Content-Type": "application/json"},
            ),
        ]
    for r in answers:
        assert r.status_code == 400, r.status_code
        assert r.json()["error"] == "invalid_request"


@pytest.mark.slow
def test_real_listener_lockout_is_per_address_with_retry_after(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    gw = GatewayProcess(
        tmp_path / "gw", upstream, extra={"server.failed_attempts": '"3/minute"'}
    ).start()
    try:
        _, key = gw.issue_key(ADMIN, name="ops")
        with httpx.Client(base_url=gw.admin_url, timeout=5) as client:
            codes = [
                client.get("/api/apikeys", headers={"X-API-Key": WRONG_KEY}).status_code
                for _ in range(5)
            ]
            assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429], codes
            r = client.get(
                "/api/apikeys",
                headers={"X-API-Key": WRONG_KEY, "X-Forwarded-For": "198.51.100.7"},
            )
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            r = client.post(
                "/api/apikeys",
                json={"name": "x"},
                headers={"Authorization": "Bearer " + WRONG_KEY.replace("A", "B")},
            )
            assert r.status_code == 429
            assert client.get("/api/apikeys", headers={"X-API-Key": key}).status_code == 200
            assert client.get("/healthz").status_code == 200
    finally:
        gw.stop()


# --- real processes: restguard init, then restguard serve --------------------------------


@pytest.mark.slow
def test_real_serve_bootstrap_key_is_the_only_way_in_and_never_printed(tmp_path: Path) -> None:
    init = subprocess.run(
        [sys.executable, "-m", "restguard", "init", "--dir", str(tmp_path / "d"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    boot = json.loads(init.stdout)["admin_key"]
    config = Path(json.loads(init.stdout)["config"])
    port, admin_port = free_port(), free_port()
    text = set_key(config.read_text(), "server.listen", f'"127.0.0.1:{port}"')
    text = set_key(text, "admin.listen", f'"127.0.0.1:{admin_port}"')
    config.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "restguard", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{admin_port}"
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=url, timeout=2) as client:
            while True:
                assert proc.poll() is None, proc.communicate()
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "admin listener did not come up"
                    time.sleep(0.1)
            assert client.get("/api/apikeys").status_code == 401
            r = client.get("/api/apikeys", headers={"Authorization": f"ApiKey {boot['key']}"})
            assert r.status_code == 200
            assert [k["id"] for k in r.json()["items"]] == [boot["id"]]
            assert r.json()["items"][0]["scopes"] == [ADMIN]
            made = client.post(
                "/api/apikeys", json={"name": "svc"}, headers={"X-API-Key": boot["key"]}
            )
            assert made.status_code == 201
            metrics = client.get("/metrics").text
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    audit = (config.parent / "audit.log").read_text()
    for secret in (boot["key"], made.json()["key"]):
        for text in (out, err, metrics, audit):
            assert secret_part(secret) not in text
