"""Helpers for the RFC 9421 tests: a signing app written to a gateway's store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from restguard.credentials.apps import new_app
from restguard.keys.sealing import open_sealer
from restguard.store.sql import open_store
from tests.harness import GatewayProcess


def add_app(
    gw: GatewayProcess,
    alg: str,
    public_pem: bytes | None = None,
    *,
    name: str = "billing",
    scopes: tuple[str, ...] = ("notes:write",),
) -> tuple[str, str | None]:
    """Register an app on ``gw``'s store: ``(key_id, secret)`` (secret None for a public key)."""
    sealer = open_sealer(gw.settings.master_key_path)
    record, secret = new_app(name, scopes, alg, public_pem, now=datetime.now(UTC), sealer=sealer)

    async def insert() -> None:
        store = open_store(gw.settings.database_url)
        try:
            await store.apps.insert(record)
        finally:
            store.close()

    asyncio.run(insert())
    return record.key_id, secret
