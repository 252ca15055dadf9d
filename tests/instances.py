"""Two real restguard instances (``GatewayProcess``) on one database and one master key, and
(when given) one Redis under a prefix of their own, as behind a load balancer."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path

from tests.harness import GatewayProcess, RecordingUpstream


def gateway_pair(
    tmp_path: Path,
    upstream: RecordingUpstream,
    database_url: str,
    routes: tuple[str, str],
    *,
    redis: str = "",
    extra: Mapping[str, str] | None = None,
) -> tuple[GatewayProcess, GatewayProcess]:
    """Started instances A and B (``routes`` each); the caller stops both. The Redis prefix
    is fresh, so other tests' counters never meet theirs."""
    common = {
        "storage.redis": json.dumps(redis),
        "storage.redis_prefix": json.dumps(f"rg-test-{secrets.token_hex(6)}:"),
        **(extra or {}),
    }
    one = GatewayProcess(
        tmp_path / "a", upstream, routes=routes[0], database_url=database_url, extra=common
    ).start()
    master = json.dumps(str(one.settings.master_key_path))
    try:
        two = GatewayProcess(
            tmp_path / "b",
            upstream,
            routes=routes[1],
            database_url=database_url,
            extra={**common, "keys.master_key": master},
        ).start()
    except BaseException:
        one.stop()
        raise
    return one, two
