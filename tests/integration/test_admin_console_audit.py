"""The admin console's audit log page (``/audit``): decisions newest first through
``restguard.manage.audit`` (as ``restguard audit`` and ``GET /api/audit`` read them), the GET
filter form (outcome, status, method, auth method, credential id, path prefix, admin changes
only), the next page's link following the service's cursor, refused filters as an alert naming
the field, and a clear message when no audit log is kept."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from restguard.admin.app import AdminApp
from restguard.admin.console.app import Console as ConsoleApp
from restguard.admin.console.auditlog import PAGE_SIZE
from restguard.types import RequestView
from tests.integration.console_support import alert_of, open_console, row_form
from tests.integration.test_admin_console import Console


@pytest.fixture
async def signed_in(tmp_path: Path) -> AsyncIterator[tuple[Console, AdminApp]]:
    async with open_console(tmp_path) as pair:
        yield pair


@pytest.fixture
def console(signed_in: tuple[Console, AdminApp]) -> Console:
    return signed_in[0]


def decide(console: Console, method: str, path: str, status: int, **extra: str) -> None:
    """An audit line as the gateway writes one."""
    guard = console.runtime.guard
    guard.record(
        RequestView(method, path, client="192.0.2.7"),
        status=status,
        started=console.runtime.clock.monotonic(),
        error=None if status < 400 else "denied",
        **extra,  # type: ignore[arg-type]
    )


def rows(page: str) -> list[list[str]]:
    """The audit table's rows as cell texts."""
    table = re.search(r'<table id="audit">.*?<tbody>(.*?)</tbody>', page, re.DOTALL)
    assert table, "no audit table"
    out = []
    for row in re.findall(r"<tr>(.*?)</tr>", table.group(1)):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        out.append([html.unescape(re.sub(r"<[^>]+>", "", c)) for c in cells])
    return [r for r in out if r != ["none"]]


async def audit(console: Console, query: str = "") -> tuple[int, str]:
    console.runtime.audit.flush()  # type: ignore[union-attr]
    r = await console.client.get("/audit" + query)
    return r.status_code, r.text


async def test_newest_first_and_each_filter(console: Console) -> None:
    decide(console, "GET", "/notes/1", 200, auth_method="api_key", credential_id="kid1")
    decide(console, "DELETE", "/notes/2", 403, auth_method="jwt", credential_id="sub9")
    decide(console, "GET", "/photos/3", 401)
    # an admin change through the console (its own audit line)
    made = await console.client.post(
        "/apikeys",
        data={**row_form((await console.client.get("/apikeys")).text, "/apikeys"), "name": "x"},
    )
    assert made.status_code == 200
    status, page = await audit(console)
    assert status == 200
    every = rows(page)
    paths = [r[2] for r in every]
    # newest first: the console's change, then the three decisions in reverse
    assert paths.index("/apikeys") < paths.index("/photos/3") < paths.index("/notes/2")
    assert paths.index("/notes/2") < paths.index("/notes/1")

    async def paths_for(query: str) -> list[str]:
        status, page = await audit(console, query)
        assert status == 200, alert_of(page)
        return [r[2] for r in rows(page)]

    assert "/notes/1" not in await paths_for("?outcome=deny")
    assert set(await paths_for("?outcome=deny&path_prefix=/notes")) == {"/notes/2"}
    assert await paths_for("?status=401&path_prefix=/photos") == ["/photos/3"]
    assert await paths_for("?method=delete") == ["/notes/2"]
    assert await paths_for("?auth_method=jwt") == ["/notes/2"]
    assert await paths_for("?credential_id=kid1") == ["/notes/1"]
    assert await paths_for("?path_prefix=/photos") == ["/photos/3"]
    admin_only = await audit(console, "?admin=true")
    assert [r[2] for r in rows(admin_only[1])] == ["/apikeys"]
    assert "admin apikey.create" in rows(admin_only[1])[0][8]
    # the form keeps what was asked
    assert 'id="admin" name="admin" value="true" checked' in admin_only[1]
    _, kept = await audit(console, "?outcome=deny&path_prefix=/notes")
    assert '<option value="deny" selected>' in kept and 'value="/notes"' in kept


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?status=abc", "status"),
        ("?status=99", "status"),
        ("?method=G%20T", "method"),
        ("?outcome=maybe", "outcome"),
        ("?after=12x", "after"),
    ],
)
async def test_a_bad_filter_is_an_alert_naming_it(console: Console, query: str, field: str) -> None:
    decide(console, "GET", "/notes/1", 200)
    status, page = await audit(console, query)
    assert status == 400
    assert (alert_of(page) or "").startswith(f"{field}:")


async def test_pages_follow_the_cursor_and_keep_the_filters(console: Console) -> None:
    total = PAGE_SIZE + 7
    for i in range(total):
        decide(console, "GET", f"/notes/{i}", 401)
    decide(console, "GET", "/other", 401)
    status, first = await audit(console, "?path_prefix=/notes&outcome=deny")
    assert status == 200
    one = rows(first)
    assert len(one) == PAGE_SIZE and one[0][2] == f"/notes/{total - 1}"
    link = re.search(r'<a id="next-page" href="([^"]+)"', first)
    assert link
    href = html.unescape(link.group(1))
    assert "path_prefix=%2Fnotes" in href and "outcome=deny" in href and "after=" in href
    status, second = await audit(console, href.removeprefix("/audit"))
    assert status == 200
    two = rows(second)
    assert [r[2] for r in two] == [f"/notes/{i}" for i in range(6, -1, -1)]
    assert 'id="next-page"' not in second and '<a href="/audit">Newest</a>' in second
    assert not {r[2] for r in one} & {r[2] for r in two}


async def test_no_audit_log_kept_says_so(signed_in: tuple[Console, AdminApp]) -> None:
    console, app = signed_in
    page_app = cast(ConsoleApp, app.console)
    page_app.services = dataclasses.replace(page_app.services, audit_path=None)
    r = await console.client.get("/audit")
    assert r.status_code == 409
    assert 'id="audit-off"' in r.text and "No audit log is kept: the audit log is off" in r.text
    assert '<table id="audit">' not in r.text


async def test_the_audit_page_needs_a_session(console: Console) -> None:
    console.client.cookies.clear()
    r = await console.client.get("/audit?admin=true")
    assert r.status_code == 303 and r.headers["location"] == "/login"
