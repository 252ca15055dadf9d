"""Helpers for the admin console's tests of every kind of record and of the audit log
(test_admin_console_kinds.py, test_admin_console_audit.py): a signed-in console in process,
the forms of a page, the one-time secret, the audit log's admin lines."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from restguard.admin.app import AdminApp, admin_app
from restguard.cli.init import bootstrap_admin_key, write_data_dir
from restguard.config import load
from restguard.observe import Metrics
from restguard.tokens import redact_secrets
from restguard.wiring import open_runtime
from tests.integration.test_admin_console import Console


@asynccontextmanager
async def open_console(tmp_path: Path) -> AsyncIterator[tuple[Console, AdminApp]]:
    """A console over a fresh data directory, signed in with the bootstrap admin key."""
    config = write_data_dir(tmp_path / "d")
    boot = bootstrap_admin_key(config)
    metrics = Metrics()
    runtime = await open_runtime(load(config), sinks=[metrics.observe_decision])
    app = admin_app(runtime, metrics, {})
    transport = httpx.ASGITransport(app, client=("127.0.0.1", 5000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            console = Console(
                client, boot["key"], boot["id"], runtime, metrics, tmp_path / "d" / "audit.log"
            )
            r = await console.login()
            assert r.status_code == 303, r.text
            yield console, app
    finally:
        await runtime.close()


def row_form(page: str, action: str) -> dict[str, str]:
    """The hidden fields (csrf, etag) of the form posting to ``action``, as a browser sends
    them."""
    m = re.search(
        rf'<form method="post" action="{re.escape(action)}">((?:<input type="hidden" '
        r"[^>]*>)+)",
        page,
    )
    assert m, f"no form to {action}"
    return {
        k: html.unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', m.group(1))
    }


def secret_of(page: str) -> str | None:
    m = re.search(r'id="new-secret">([^<]+)<', page)
    return html.unescape(m.group(1)) if m else None


def alert_of(page: str) -> str | None:
    m = re.search(r'<p role="alert"[^>]*>([^<]+)<', page)
    return html.unescape(m.group(1)) if m else None


def admin_changes(console: Console) -> list[str]:
    """The audit log's admin-change lines (``detail``), oldest first. (Public ids such as
    ``rg_ci_`` and ``rg_us_`` are written as they are; secret kinds are redacted: compare with
    ``redacted``.)"""
    console.runtime.audit.flush()  # type: ignore[union-attr]
    if not console.audit.exists():
        return []
    lines = [json.loads(x) for x in console.audit.read_text().splitlines() if x.strip()]
    return [x["detail"] for x in lines if (x.get("detail") or "").startswith("admin ")]


def redacted(lines: list[str]) -> list[str]:
    """``lines`` as the audit log writes them (only the kinds that are secrets redacted)."""
    return [redact_secrets(line) for line in lines]
