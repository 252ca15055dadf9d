"""Failures around the gateway: the upstream down or slow (502/504 JSON), and the database gone
(503 JSON, fail closed: the upstream receives nothing)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from psycopg import sql

from tests.attacks.wire import api_key, assert_forwarded, assert_refused, request, send
from tests.fixtures_db import PG_ADMIN_DSN
from tests.harness import GatewayProcess, RecordingUpstream, free_port

# --- the upstream ---------------------------------------------------------------------------------


def test_upstream_down(tmp_path: Path, gw: GatewayProcess) -> None:
    closed = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}", requests=[])
    down = GatewayProcess(tmp_path / "down", closed).start()  # type: ignore[arg-type]
    try:
        _, key = down.issue_key("notes:read")
        assert_refused(down, request(b"/notes/1", api_key(key)), 502, "bad_gateway")
    finally:
        down.stop()
    # Twin: the same request through a gateway whose upstream is up.
    _, key = gw.issue_key("notes:read")
    assert_forwarded(gw, request(b"/notes/1", api_key(key)), b"/notes/1")


@pytest.fixture
def impatient(tmp_path: Path, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    """A gateway that waits at most one second for the upstream."""
    gw = GatewayProcess(tmp_path / "gw", upstream, extra={"upstream.timeout": '"1s"'}).start()
    yield gw
    gw.stop()


def test_upstream_slower_than_timeout(impatient: GatewayProcess) -> None:
    gw = impatient
    _, key = gw.issue_key("notes:read")
    gw.upstream.reply.delay = 2
    started = time.monotonic()
    response = send(gw.port, request(b"/notes/1", api_key(key)))
    assert time.monotonic() - started < 1.9
    assert response.status == 504
    assert response.header("content-type") == "application/json"
    assert response.json()["error"] == "gateway_timeout"
    assert set(response.json()) == {"error", "error_description"}
    gw.upstream.reply.delay = 0.2
    assert_forwarded(gw, request(b"/notes/2", api_key(key)), b"/notes/2")


# --- the database ---------------------------------------------------------------------------------


@pytest.fixture
def own_database() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database this test may drop: (url, name)."""
    name = f"rg_attack_{int(time.time() * 1000)}_{free_port()}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield "postgresql://postgres@127.0.0.1:5432/" + name, name
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def drop_postgres(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def wreck_sqlite(database_url: str) -> None:
    """Overwrite the SQLite files in place (the tests run as root, so a chmod would not stop
    the gateway): every read now fails as on a failed disk."""
    path = Path(database_url.removeprefix("sqlite:///"))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            with file.open("r+b") as f:
                f.write(b"\xffnot a database" * 4096)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def doomed(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: RecordingUpstream
) -> Iterator[tuple[GatewayProcess, Callable[[], None]]]:
    """A gateway on its own database, and a function that takes that database away."""
    if request.param == "sqlite":
        gw = GatewayProcess(tmp_path / "gw", upstream).start()
        kill = lambda: wreck_sqlite(gw.settings.database_url)  # noqa: E731
    else:
        url, name = request.getfixturevalue("own_database")
        gw = GatewayProcess(tmp_path / "gw", upstream, database_url=url).start()
        kill = lambda: drop_postgres(name)  # noqa: E731
    yield gw, kill
    gw.stop()


def test_database_gone_while_serving(doomed: tuple[GatewayProcess, Callable[[], None]]) -> None:
    gw, kill = doomed
    _, seen_key = gw.issue_key("notes:read", name="seen")
    _, unseen_key = gw.issue_key("notes:read", name="unseen")
    # Twin: while the database is up, the key works.
    assert_forwarded(gw, request(b"/notes/1", api_key(seen_key)), b"/notes/1")
    kill()
    # A key the gateway never saw cannot be checked: 503, never forwarded (fail closed).
    response = assert_refused(
        gw, request(b"/notes/1", api_key(unseen_key)), 503, "temporarily_unavailable"
    )
    assert response.header("WWW-Authenticate") is None
    # A cached key too, once its cache entry (at most 1 s) has expired.
    time.sleep(1.1)
    assert_refused(gw, request(b"/notes/1", api_key(seen_key)), 503, "temporarily_unavailable")
    # A public route needs no backend for its decision and still works.
    assert_forwarded(gw, request(b"/public/x"), b"/public/x")
