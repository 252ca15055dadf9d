"""Fixtures for the integration tests: a raw upstream and gateways in front of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import GatewayProcess, RecordingUpstream
from tests.raw_upstream import RawUpstream


@pytest.fixture
def raw() -> Iterator[RawUpstream]:
    server = RawUpstream()
    yield server
    server.stop()
    assert server.errors == []


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start a gateway in front of an upstream, with ``key = value`` config replacements."""
    started: list[GatewayProcess] = []

    def run(upstream: RawUpstream | RecordingUpstream, **extra: str) -> GatewayProcess:
        gw = GatewayProcess(tmp_path / f"gw{len(started)}", upstream, extra=extra)  # type: ignore[arg-type]
        started.append(gw.start())
        return gw

    yield run
    for gw in started:
        gw.stop()


@pytest.fixture
def via_raw(
    raw: RawUpstream, start: Callable[..., GatewayProcess]
) -> tuple[GatewayProcess, RawUpstream, str]:
    """A gateway in front of the raw upstream, and a key that may read and write."""
    gw = start(raw)
    _, key = gw.issue_key("notes:read", "notes:write")
    return gw, raw, key
