"""``restguard serve`` as a real process: start-up errors, workers, clean shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from restguard.cli.init import write_data_dir
from tests.harness import GatewayProcess, free_port

RESTGUARD = [sys.executable, "-m", "restguard.cli"]


def _serve(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*RESTGUARD, "serve", "--config", str(config), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_up(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not come up")


@pytest.mark.parametrize(
    ("broken", "key"),
    [
        ('methods = ["GET"]\npublic = true', None),
        ('[[routes]]\npath = "/login"\nmethods = ["GET"]\npublic = true\n', "routes[1].path"),
        ('[[routes]]\npath = "/x"\nmethods = ["FETCH"]\n', "routes[1].methods"),
        ('[[routes]]\npath = "/x"\nmethods = ["GET"]\nauth = ["saml"]\n', "routes[1].auth"),
        ('[[routes]]\npath = "/x"\nmethods = ["GET"]\ncolour = "blue"\n', "routes[1].colour"),
    ],
)
def test_bad_config_stops_startup_with_one_clear_line(
    tmp_path: Path, broken: str, key: str | None
) -> None:
    config = write_data_dir(tmp_path / "d", routes=broken if key else "")
    if key is None:  # a TOML syntax error: keys outside any table after a table
        config.write_text(config.read_text() + "\n[server\n")
    proc = subprocess.run(
        [*RESTGUARD, "serve", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip()
    assert message.startswith("Error: ") and str(config) in message and "Fix:" in message
    if key:
        assert re.search(rf"{re.escape(str(config))}:\d+: {re.escape(key)}: ", message)


def test_workers_share_the_listener_and_stop_on_sigint(tmp_path: Path) -> None:
    port, admin = free_port(), free_port()
    config = write_data_dir(
        tmp_path / "d",
        listen=f"127.0.0.1:{port}",
        admin_listen=f"127.0.0.1:{admin}",
        routes='[[routes]]\npath = "/open"\nmethods = ["GET"]\npublic = true\n',
    )
    proc = _serve(config, "--workers", "2")
    try:
        _wait_up(f"http://127.0.0.1:{port}/nothing", proc)
        statuses = {httpx.get(f"http://127.0.0.1:{port}/nothing").status_code for _ in range(20)}
        assert statuses == {404}
        assert httpx.get(f"http://127.0.0.1:{admin}/healthz").json() == {"status": "ok"}
        # /metrics counts every worker's decisions (the others publish every second):
        # the 20 above plus the one that found the server up
        line = 'restguard_decisions_total{auth_method="none",outcome="deny",status="404"} '
        deadline = time.monotonic() + 5
        while True:
            text = httpx.get(f"http://127.0.0.1:{admin}/metrics").text
            counted = [float(x.split()[-1]) for x in text.splitlines() if x.startswith(line)]
            if counted == [21.0] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert counted == [21.0]
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        assert len(children.stdout.split()) >= 1
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_database_outage_makes_healthz_503(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    name = f"rg_outage_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    gw = GatewayProcess(
        tmp_path / "gw", upstream, database_url=f"postgresql://postgres@127.0.0.1:5432/{name}"
    ).start()
    try:
        assert httpx.get(gw.admin_url + "/healthz").status_code == 200
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        r = httpx.get(gw.admin_url + "/healthz")
        assert r.status_code == 503
        assert r.json()["status"] == "unavailable"
    finally:
        gw.stop()
