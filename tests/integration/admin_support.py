"""The admin API in-process for the tests of ``/api/``: a data directory with its bootstrap
admin key, the runtime, and an httpx client on the admin listener's ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from restguard.admin.api import mount
from restguard.admin.app import AdminApp
from restguard.cli.init import bootstrap_admin_key, write_data_dir
from restguard.config import load
from restguard.keys.master_check import ensure_master_key
from restguard.keys.sealing import open_sealer
from restguard.manage import apikeys
from restguard.observe import Metrics
from restguard.store.sql import migrate, open_store
from restguard.wiring import Runtime, open_runtime


@dataclass
class AdminClient:
    """A client of the admin API signed in with the bootstrap admin key."""

    client: httpx.AsyncClient
    key: str
    key_id: str
    runtime: Runtime
    audit: Path
    config: Path

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key or self.key}

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.auth(), **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        headers = {**self.auth(), **kw.pop("headers", {})}
        if body is None:
            return await self.client.post(path, headers=headers, **kw)
        return await self.client.post(path, json=body, headers=headers, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        headers = {**self.auth(), **kw.pop("headers", {})}
        return await self.client.delete(path, headers=headers, **kw)


A = TypeVar("A", bound=AdminClient)


@asynccontextmanager
async def open_admin(
    tmp_path: Path, kind: type[A], *, database: str | None = None
) -> AsyncIterator[A]:
    """A fresh data directory under ``tmp_path`` and its admin API, as ``kind``; its store on
    ``database`` (an empty database's URL, migrated here) instead of the directory's SQLite."""
    config = write_data_dir(tmp_path / "d")
    if database is None:
        boot = bootstrap_admin_key(config)
    else:
        text = config.read_text()
        config.write_text(text.replace('"sqlite:///restguard.db"', f'"{database}"'))
        migrate(database)
        store = open_store(database)
        try:
            await ensure_master_key(store, open_sealer(config.parent / "master.key"))
            boot = await apikeys.create(
                store, datetime.now(UTC), apikeys.BOOTSTRAP_NAME, [apikeys.ADMIN_SCOPE]
            )
        finally:
            store.close()
    runtime = await open_runtime(load(config))
    app = AdminApp(runtime.store, Metrics(), api=mount(runtime))
    transport = httpx.ASGITransport(app, client=("127.0.0.1", 5000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            yield kind(
                client, boot["key"], boot["id"], runtime, config.parent / "audit.log", config
            )
    finally:
        await runtime.close()
