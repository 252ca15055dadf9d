"""Fixtures for the attack tests: one gateway per module (the attacks do not interfere), keys.

Every test starts with an empty upstream log. Tests that change the gateway's state in a way that
would leak into others (failed-attempt limits, rate limits, a dropped database, other settings)
start their own gateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.harness import GatewayProcess, RecordingUpstream


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    """A real gateway on SQLite with ``TEST_ROUTES``, shared by one module."""
    gateway = GatewayProcess(tmp_path_factory.mktemp("attacks") / "gw", upstream).start()
    yield gateway
    gateway.stop()


@dataclass(frozen=True)
class Keys:
    reader: str
    reader_id: str
    writer: str
    writer_id: str


@pytest.fixture(scope="module")
def keys(gw: GatewayProcess) -> Keys:
    """A ``notes:read`` key named "reader" and a read+write key named "writer"."""
    reader_id, reader = gw.issue_key("notes:read", name="reader")
    writer_id, writer = gw.issue_key("notes:read", "notes:write", name="writer")
    return Keys(reader, reader_id, writer, writer_id)


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: RecordingUpstream) -> None:
    upstream.clear()
