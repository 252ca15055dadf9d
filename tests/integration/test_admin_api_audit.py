"""``GET /api/audit`` of the admin REST API: the decision log the running server writes, newest
first; pages that cover every line exactly once (also when a page's scan stops at its cap);
each filter against an independent reading of the file; broken lines skipped; bad parameters
400 naming them; an absent file an empty page, the log turned off 409; the file read off the
event loop."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from restguard.admin.api import mount
from restguard.admin.app import AdminApp
from restguard.cli.init import bootstrap_admin_key, write_data_dir
from restguard.config import load
from restguard.errors import BackendUnavailable
from restguard.manage import audit
from restguard.observe import Metrics
from restguard.wiring import Runtime, open_runtime

FIELDS = (
    "time",
    "method",
    "path",
    "route",
    "outcome",
    "status",
    "error",
    "auth_method",
    "credential_id",
    "client",
    "detail",
    "duration_ms",
    "upstream",
    "request_id",
)


@dataclass
class Admin:
    client: httpx.AsyncClient
    key: str
    key_id: str
    runtime: Runtime
    audit: Path

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key or self.key}

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.auth(), **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        headers = {**self.auth(), **kw.pop("headers", {})}
        if body is None:
            return await self.client.post(path, headers=headers, **kw)
        return await self.client.post(path, json=body, headers=headers, **kw)


async def _admin(tmp_path: Path, edit: Callable[[str], str] = lambda t: t) -> Admin:
    config = write_data_dir(tmp_path / "d")
    config.write_text(edit(config.read_text()))
    boot = bootstrap_admin_key(config)
    runtime = await open_runtime(load(config))
    app = AdminApp(runtime.store, Metrics(), api=mount(runtime))
    transport = httpx.ASGITransport(app, client=("127.0.0.1", 5000))
    client = httpx.AsyncClient(transport=transport, base_url="http://admin")
    return Admin(client, boot["key"], boot["id"], runtime, tmp_path / "d" / "audit.log")


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    a = await _admin(tmp_path)
    try:
        yield a
    finally:
        await a.client.aclose()
        await a.runtime.close()


def flush(admin: Admin) -> None:
    admin.runtime.audit.flush()  # type: ignore[union-attr]


def file_lines(admin: Admin) -> list[dict[str, Any]]:
    """The log as the test reads it itself: every line that is a JSON object, oldest first."""
    flush(admin)
    out = []
    for raw in admin.audit.read_bytes().split(b"\n"):
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        # what restguard writes: a string time, an integer status
        if isinstance(line, dict) and isinstance(line.get("time"), str):
            if type(line.get("status")) is not int:
                continue
            out.append({name: line.get(name) for name in FIELDS})
    return out


def is_query(line: dict[str, Any]) -> bool:
    return bool(line["path"] == "/api/audit")


async def activity(admin: Admin) -> list[str]:
    """Allowed and denied calls, and changes; the changes' details, oldest first."""
    made = []
    for n in range(3):
        r = await admin.post("/api/apikeys", {"name": f"k{n}", "scopes": ["notes:read"]})
        made.append(r.json())
    await admin.post(f"/api/apikeys/{made[0]['id']}/revoke")
    await admin.client.get("/api/apikeys")  # 401
    await admin.client.get("/api/apikeys", headers=admin.auth("rg_ak_nosuch_key"))  # 401
    await admin.client.get("/api/signing-keys", headers=admin.auth(made[1]["key"]))  # 403
    await admin.get("/api/apikeys")
    await admin.post("/api/apikeys", {"name": ""})  # 400, no change
    await admin.get("/api/signing-keys")
    return [
        *(f"admin apikey.create {m['id']}" for m in made),
        f"admin apikey.revoke {made[0]['id']}",
    ]


async def query(admin: Admin, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every page of a query, newest first (``limit`` as given)."""
    seen: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(10_000):
        r = await admin.get("/api/audit", params={**params, **({"after": after} if after else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) == {"items", "next"}
        assert len(page["items"]) <= int(params.get("limit", "100"))
        for item in page["items"]:
            assert tuple(item) == FIELDS
        seen += page["items"]
        after = page["next"]
        if after is None:
            return seen
    raise AssertionError("no end")


async def check(
    admin: Admin, keep: Callable[[dict[str, Any]], bool], params: dict[str, str]
) -> int:
    """The query's lines are the file's lines ``keep`` admits, newest first (only the
    query's own lines, written meanwhile, may come first). How many matched."""
    before = [x for x in reversed(file_lines(admin)) if keep(x)]
    got = await query(admin, params)
    fresh = len(got) - len(before)
    assert fresh >= 0 and all(is_query(x) for x in got[:fresh]), params
    assert got[fresh:] == before, params
    return len(before)


# --- what the admin API's own changes wrote ------------------------------------------------


async def test_the_admin_changes_newest_first(admin: Admin) -> None:
    details = await activity(admin)
    flush(admin)
    r = await admin.get("/api/audit", params={"admin": "true"})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [x["detail"] for x in page["items"]] == details[::-1]
    assert page["next"] is None
    for x in page["items"]:
        assert x["credential_id"] == admin.key_id and x["auth_method"] == "api_key"
        assert x["outcome"] == "allow"
    assert admin.key[19:] not in r.text


async def test_pages_cover_every_line_exactly_once_newest_first(admin: Admin) -> None:
    await activity(admin)
    total = len(file_lines(admin))
    assert total > 10
    for limit in ("1", "3", "7", "1000"):
        assert await check(admin, lambda _: True, {"limit": limit}) >= total


async def test_a_page_stops_where_it_is_full(admin: Admin) -> None:
    await activity(admin)
    flush(admin)
    first = (await admin.get("/api/audit", params={"limit": "2"})).json()
    assert len(first["items"]) == 2 and first["next"]
    second = (await admin.get("/api/audit", params={"limit": "2", "after": first["next"]})).json()
    assert second["items"] and second["items"][0] != first["items"][-1]
    # the cursor is the byte offset of the last line shown: the next page starts before it
    offset = int(first["next"])
    raw = admin.audit.read_bytes()
    assert raw[offset - 1 : offset] == b"\n"
    assert json.loads(raw[offset:].split(b"\n")[0]) == first["items"][-1]


FILTERS: list[tuple[dict[str, str], Callable[[dict[str, Any]], bool]]] = [
    ({"outcome": "deny"}, lambda x: x["outcome"] == "deny"),
    ({"outcome": "allow"}, lambda x: x["outcome"] == "allow"),
    ({"status": "401"}, lambda x: x["status"] == 401),
    ({"status": "200"}, lambda x: x["status"] == 200),
    ({"method": "post"}, lambda x: x["method"] == "POST"),
    ({"auth_method": "api_key"}, lambda x: x["auth_method"] == "api_key"),
    ({"route": "/api/**"}, lambda x: x["route"] == "/api/**"),
    ({"path_prefix": "/api/signing"}, lambda x: x["path"].startswith("/api/signing")),
    ({"admin": "true"}, lambda x: (x["detail"] or "").startswith("admin ")),
    ({"admin": "false"}, lambda x: not (x["detail"] or "").startswith("admin ")),
    (
        {"outcome": "deny", "status": "403", "limit": "1"},
        lambda x: x["outcome"] == "deny" and x["status"] == 403,
    ),
]


@pytest.mark.parametrize(("params", "keep"), FILTERS, ids=lambda v: repr(v)[:40])
async def test_each_filter(
    admin: Admin, params: dict[str, str], keep: Callable[[dict[str, Any]], bool]
) -> None:
    await activity(admin)
    assert await check(admin, keep, params) > 0


async def test_credential_and_time_filters(admin: Admin) -> None:
    await activity(admin)
    lines = file_lines(admin)
    assert await check(
        admin, lambda x: x["credential_id"] == admin.key_id, {"credential_id": admin.key_id}
    )
    middle = datetime.fromisoformat(lines[len(lines) // 2]["time"])
    since = middle.isoformat().replace("+00:00", "Z")
    assert await check(
        admin, lambda x: datetime.fromisoformat(x["time"]) >= middle, {"since": since}
    )
    first = datetime.fromisoformat(lines[0]["time"])
    n = await check(
        admin,
        lambda x: first <= datetime.fromisoformat(x["time"]) < middle,
        {"since": first.isoformat(), "until": since},
    )
    assert 0 < n < len(lines)


async def test_broken_lines_are_skipped(admin: Admin) -> None:
    await activity(admin)
    flush(admin)
    old = {
        name: v
        for name, v in file_lines(admin)[0].items()
        if name not in ("upstream", "request_id")
    }
    with admin.audit.open("ab") as f:
        f.write(b"not json\n\n[1, 2]\n")
        f.write(b'{"time": 5, "outcome": "allow"}\n')  # not what restguard writes
        f.write(b'{"time": "x", "status": NaN}\n')
        f.write(json.dumps(old).encode() + b"\n")  # an older version's line: no upstream, id
        f.write(b"\xff\xfe\n")
    got = await query(admin, {"limit": "2"})
    assert got[0] == {**old, "upstream": None, "request_id": None} or is_query(got[0])
    assert await check(admin, lambda _: True, {"limit": "3"})


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query_string", "field"),
    [
        ("outcome=maybe", "outcome"),
        ("status=99", "status"),
        ("status=600", "status"),
        ("status=abc", "status"),
        ("method=G%20ET", "method"),
        ("since=yesterday", "since"),
        ("since=2026-12-01T00:00:00", "since"),  # no offset
        ("since=2026-12-01", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z", "until"),
        ("admin=yes", "admin"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=abc", "after"),
        ("after=1", "after"),  # not at a line's start
        ("after=999999999", "after"),  # past the end
        ("outcome=deny&outcome=allow", "outcome"),
        ("bogus=1", "bogus"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    admin: Admin, query_string: str, field: str
) -> None:
    await admin.get("/api/apikeys")
    flush(admin)
    r = await admin.get(f"/api/audit?{query_string}")
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
    assert r.json()["error_description"].startswith(f"{field}: ")


async def test_no_key_is_401_and_a_plain_key_403(admin: Admin) -> None:
    assert (await admin.client.get("/api/audit")).status_code == 401
    plain = (await admin.post("/api/apikeys", {"name": "p", "scopes": ["notes:read"]})).json()
    r = await admin.client.get("/api/audit", headers=admin.auth(plain["key"]))
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    assert (await admin.post("/api/audit")).status_code == 405


async def test_an_absent_file_is_an_empty_page(admin: Admin) -> None:
    flush(admin)
    admin.audit.unlink()
    r = await admin.get("/api/audit")
    assert r.status_code == 200 and r.json() == {"items": [], "next": None}
    assert (await admin.get("/api/audit", params={"after": "10"})).status_code == 400


async def test_an_unreadable_log_is_503(admin: Admin) -> None:
    flush(admin)
    admin.audit.unlink()
    admin.audit.mkdir()
    r = await admin.get("/api/audit")
    assert r.status_code == 503, r.text
    assert "Traceback" not in r.text


async def test_a_log_turned_off_is_409(tmp_path: Path) -> None:
    off = await _admin(tmp_path, lambda t: t.replace('path = "audit.log"', 'path = ""'))
    try:
        r = await off.get("/api/audit")
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "conflict"
        assert "audit log is off" in r.json()["error_description"]
    finally:
        await off.client.aclose()
        await off.runtime.close()


async def test_openapi_describes_the_endpoint(admin: Admin) -> None:
    doc = (await admin.client.get("/api/openapi.json")).json()
    op = doc["paths"]["/api/audit"]["get"]
    assert {"200", "400", "401", "403", "409"} <= set(op["responses"])
    names = {p["name"] for p in op["parameters"]}
    assert names == {
        "outcome",
        "status",
        "method",
        "auth_method",
        "credential_id",
        "route",
        "path_prefix",
        "since",
        "until",
        "admin",
        "limit",
        "after",
    }
    decision = doc["components"]["schemas"]["Decision"]
    assert decision["additionalProperties"] is False
    assert tuple(decision["required"]) == FIELDS


# --- the scan itself: bounded, backwards in blocks, off the event loop --------------------


def _write_log(path: Path) -> list[dict[str, Any]]:
    """A log with long and short lines, broken ones and a partial last line; the lines an
    API page shows, oldest first."""
    shown = []
    with path.open("wb") as f:
        for n in range(40):
            line = {
                "time": f"2026-12-01T14:{n:02d}:00.000+00:00",
                "method": "GET",
                "path": "/x/" + "y" * (n * 37 % 300),
                "route": None,
                "outcome": "deny" if n % 3 else "allow",
                "status": 401 if n % 3 else 200,
                "error": None,
                "auth_method": None,
                "credential_id": None,
                "client": "::1",
                "detail": None,
                "duration_ms": 0.5,
                "upstream": None,
                "request_id": None,
            }
            f.write(json.dumps(line).encode() + b"\n")
            shown.append(line)
            if n % 11 == 5:
                f.write(b"{broken\n\n")
        f.write(b'{"time": "2026-12-01T15:00:00.000+00:00", "meth')  # being written
    return shown


@pytest.mark.parametrize("block", [1, 7, 100, 64 * 1024])
@pytest.mark.parametrize("max_bytes", [1, 500, 10**9])
@pytest.mark.parametrize("limit", [1, 4, 1000])
def test_scan_pages_cover_every_line_once_whatever_the_cap(
    tmp_path: Path, block: int, max_bytes: int, limit: int
) -> None:
    path = tmp_path / "audit.log"
    shown = _write_log(path)
    for filters, keep in (
        (audit.Filters(), lambda x: True),
        (audit.check_filters(outcome="allow"), lambda x: x["outcome"] == "allow"),
    ):
        seen: list[dict[str, Any]] = []
        after: str | None = None
        pages = 0
        while True:
            page = audit.scan(path, filters, limit, after, max_bytes=max_bytes, block=block)
            pages += 1
            assert len(page["items"]) <= limit
            seen += page["items"]
            after = page["next"]
            if after is None:
                break
        assert seen == [x for x in reversed(shown) if keep(x)]
        if max_bytes == 10**9 and limit == 1000:
            assert pages == 1


def test_a_capped_page_may_be_short_but_its_cursor_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write_log(path)
    page = audit.scan(path, audit.check_filters(status=200), 100, None, max_bytes=300, block=100)
    assert len(page["items"]) < 14 and page["next"] is not None


async def test_the_file_is_read_in_a_worker_thread(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write_log(path)
    threads: list[threading.Thread] = []

    def scanner(*args: Any) -> dict[str, Any]:
        threads.append(threading.current_thread())
        return audit.scan(*args)

    page = await audit.listing(path, audit.Filters(), limit=5, scanner=scanner)
    assert len(page["items"]) == 5
    assert threads and threads[0] is not threading.main_thread()


async def test_a_hung_disk_is_a_503_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that never returns (a dead network mount): 503 at the deadline, not a wait."""
    path = tmp_path / "audit.log"
    _write_log(path)
    release = threading.Event()

    def stuck(*args: Any) -> dict[str, Any]:
        release.wait(10)
        return {"items": [], "next": None}

    monkeypatch.setattr(audit, "READ_TIMEOUT", 0.3)
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable):
            await audit.listing(path, audit.Filters(), limit=5, scanner=stuck)
        assert time.monotonic() - started < 3
    finally:
        release.set()
