"""Errors a person must read (issue 6, item 8): a well-formed but wrong master key is one
short message, no traceback; a configuration without routes is warned about at start-up."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from restguard.clock import SystemClock
from restguard.keys.sealing import MASTER_KEY_ENV, Sealer, generate_master_key, load_master_key
from restguard.keys.signing import load_signing_keys
from restguard.store.sql import open_store
from tests.faults import RESTGUARD, ServeProcess, serve_dir, serving, wait_until
from tests.harness import free_port

pytestmark = pytest.mark.slow


def _seal_signing_key(config: Path) -> None:
    """What the first start does: create the signing key, sealed with this master key."""

    async def seed() -> None:
        store = open_store(f"sqlite:///{config.parent / 'restguard.db'}")
        try:
            sealer = Sealer(load_master_key(config.parent / "master.key"))
            await load_signing_keys(store.signing_keys, sealer, SystemClock())
        finally:
            store.close()

    asyncio.run(seed())


def _run_serve(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RESTGUARD, "serve", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_wrong_master_key_file_is_one_short_message(tmp_path: Path, workers: str) -> None:
    config = serve_dir(tmp_path / "d")
    _seal_signing_key(config)
    key = config.parent / "master.key"
    key.unlink()
    generate_master_key(key)  # well-formed, 0600, but not the one the data was sealed with
    done = _run_serve(config, "--workers", workers)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3, done.stderr
    assert "master key" in done.stderr and "does not open" in done.stderr
    assert "SealError" not in done.stderr
    assert "restguard gateway on" not in done.stdout  # it never started serving


def test_a_wrong_master_key_in_the_environment_is_one_short_message(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "d")
    _seal_signing_key(config)
    other = tmp_path / "other.key"
    generate_master_key(other)
    done = _run_serve(config, env={MASTER_KEY_ENV: other.read_text().strip()})
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert 1 <= len(done.stderr.strip().splitlines()) <= 3, done.stderr
    assert MASTER_KEY_ENV in done.stderr


def test_a_config_without_routes_warns_at_start(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "d", routes="")
    with serving(config) as serve:
        line = serve.wait_line(r"no \[\[routes\]\]", 5)
        assert "warning" in line and str(config) in line
        assert httpx.get(serve.url + "/anything", timeout=5).status_code == 404  # deny-all
    assert serve.proc.returncode == 0


def test_an_almost_empty_config_warns_at_start(tmp_path: Path) -> None:
    """Only the listeners (so the test never takes the default ports 8080/8081 that other
    servers on this machine may use), everything else defaulted."""
    directory = tmp_path / "d"
    directory.mkdir(mode=0o700)
    generate_master_key(directory / "master.key")
    config = directory / "restguard.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{free_port()}"\n\n'
        f'[admin]\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    config.chmod(0o600)
    with serving(config) as serve:
        serve.wait_line(r"warning: .*no \[\[routes\]\].*every request gets 404", 5)
    assert serve.proc.returncode == 0


def test_a_config_with_routes_gives_no_such_warning(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "d")
    with serving(config) as serve:
        wait_until(lambda: any("routes from" in line for line in serve.out), 5, "start-up lines")
        assert "no [[routes]]" not in serve.stderr


def test_an_audit_path_that_cannot_be_opened_is_one_clear_line(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "d", keys={"audit": {"path": '"/proc/restguard/audit.log"'}})
    proc = ServeProcess(config)
    code = proc.wait(30)
    assert code != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr
    assert "audit.path" in proc.stderr
