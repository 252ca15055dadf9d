"""Shared fixtures. Database fixtures (SQLite and the real PostgreSQL) live in fixtures_db.py."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import GatewayProcess, RecordingUpstream

pytest_plugins = ["tests.fixtures_db"]


@pytest.fixture(scope="session")
def upstream() -> Iterator[RecordingUpstream]:
    """One recording upstream for the session; cleared before each gateway test."""
    server = RecordingUpstream()
    yield server
    server.stop()


@pytest.fixture
def gateway(tmp_path: Path, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    """A real gateway on SQLite in front of the recording upstream."""
    upstream.clear()
    gw = GatewayProcess(tmp_path / "gw", upstream).start()
    yield gw
    gw.stop()


@pytest.fixture
def gateway_on(
    tmp_path: Path, upstream: RecordingUpstream, database_url: str
) -> Iterator[GatewayProcess]:
    """A real gateway on each database backend (SQLite and the real PostgreSQL)."""
    upstream.clear()
    gw = GatewayProcess(tmp_path / "gw", upstream, database_url=database_url).start()
    yield gw
    gw.stop()
