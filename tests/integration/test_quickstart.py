"""``restguard quickstart`` as a user runs it: a real process, and every printed curl command
run with the real ``curl`` binary."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness import free_port

pytestmark = pytest.mark.slow

RESTGUARD = str(Path(sys.executable).with_name("restguard"))
CURL = shutil.which("curl")
PROMISED = [200, 200, 401, 403, 201, 404]
READY = "Ctrl-C stops everything."


class Quickstart:
    """One ``restguard quickstart`` process with its output collected in the background."""

    def __init__(self, directory: Path, port: int, admin: int, upstream: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTGUARD_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [
                RESTGUARD,
                "quickstart",
                "--dir",
                str(directory),
                "--port",
                str(port),
                "--admin-port",
                str(admin),
                "--upstream-port",
                str(upstream),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.ready = threading.Event()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)
            if READY in line:
                self.ready.set()

    def wait_ready(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"quickstart did not start:\n{self.stdout}\n{self.stderr}")
        return self.stdout

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def interrupt(self, timeout: float = 10) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail("quickstart did not stop within 10 s of SIGINT")
        self._close()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        for t in self._threads:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def promised_requests(stdout: str) -> list[tuple[int, str]]:
    """(status the comment promises, the curl command line) for every printed example."""
    found: list[tuple[int, str]] = []
    promise: int | None = None
    for line in stdout.splitlines():
        m = re.match(r"^# (\d{3}): ", line)
        if m:
            promise = int(m.group(1))
        elif line.startswith("curl ") and promise is not None:
            found.append((promise, line))
            promise = None
    return found


def curl_status(command: str) -> int:
    argv = shlex.split(command)
    assert argv[0] == "curl"
    assert CURL is not None
    done = subprocess.run(
        [CURL, *argv[1:], "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return int(done.stdout)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.skipif(CURL is None, reason="the curl binary is not installed")
def test_quickstart_end_to_end(tmp_path: Path) -> None:
    directory = tmp_path / "qs"
    port, admin, upstream = free_port(), free_port(), free_port()

    # --- first run: creates the data dir -----------------------------------------------------
    first = Quickstart(directory, port, admin, upstream)
    try:
        out = first.wait_ready()
        assert f"created {directory}" in out
        requests = promised_requests(out)
        assert [status for status, _ in requests] == PROMISED
        keys = set(re.findall(r"rg_ak_[0-9a-z]{12}_[0-9A-Za-z]{49}", out))
        assert len(keys) == 2  # a read key and a read/write key
        for status, command in requests:
            assert curl_status(command) == status, command

        status, body = get(f"http://127.0.0.1:{admin}/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        status, metrics = get(f"http://127.0.0.1:{admin}/metrics")
        assert status == 200
        assert 'restguard_decisions_total{auth_method="api_key",outcome="allow",status="200"}' in (
            metrics
        )
        assert re.search(r'restguard_decisions_total\{[^}]*status="401"\} 1\.0', metrics)
        assert re.search(r'restguard_decisions_total\{[^}]*status="403"\} 1\.0', metrics)
        assert f"curl http://127.0.0.1:{admin}/metrics" in out
    finally:
        code = first.interrupt()
    assert code == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert first.stdout.rstrip().endswith("stopped.")
    assert (directory / "restguard.toml").is_file()
    audit = (directory / "audit.log").read_text().splitlines()
    assert len(audit) >= len(PROMISED)
    for key in keys:
        assert key[19:] not in "".join(audit)

    # --- second run on the same dir: reuses it, and the old keys are refused ----------------
    second = Quickstart(directory, port, admin, upstream)
    try:
        out2 = second.wait_ready()
        assert f"reusing {directory}" in out2
        assert "created" not in out2
        new_requests = promised_requests(out2)
        assert [status for status, _ in new_requests] == PROMISED
        new_keys = set(re.findall(r"rg_ak_[0-9a-z]{12}_[0-9A-Za-z]{49}", out2))
        assert len(new_keys) == 2 and not new_keys & keys
        # the previous run's keys: 401 wherever a route matches (404 stays 404: no route)
        assert [curl_status(c) for _, c in requests] == [200, 401, 401, 401, 401, 404]
        for status, command in new_requests:
            assert curl_status(command) == status, command
    finally:
        code = second.interrupt()
    assert code == 0, second.stderr
    assert "Traceback" not in second.stderr


def test_quickstart_refuses_a_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        done = subprocess.run(
            [
                RESTGUARD,
                "quickstart",
                "--dir",
                str(tmp_path / "qs"),
                "--port",
                str(taken),
                "--admin-port",
                str(free_port()),
                "--upstream-port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"port {taken} on 127.0.0.1 is in use; pass another --port" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "qs").exists()
