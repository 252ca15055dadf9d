"""Reload (issue 7, item 5) on a real ``restguard serve``: ``restguard reload`` (or SIGHUP)
applies a new policy with no request failing and no connection dropped, refuses a broken file
while the old policy keeps serving, names what needs a restart, and reaches every worker."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from restguard.config import load
from tests.faults import RESTGUARD, serve_dir, serving, set_keys, wait_until
from tests.harness import RecordingUpstream
from tests.pki import Pki, subject_of

pytestmark = pytest.mark.slow

OPEN = '[[routes]]\npath = "/open/**"\nmethods = ["GET"]\npublic = true\n'
REPORTS = '\n[[routes]]\npath = "/reports/**"\nmethods = ["GET"]\npublic = true\n'


@pytest.fixture
def fresh_upstream(upstream: RecordingUpstream) -> Iterator[RecordingUpstream]:
    upstream.clear()
    yield upstream
    upstream.clear()


def reload_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RESTGUARD, "reload", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


class Load:
    """Clients on keep-alive connections asking without pause, counting every outcome."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.statuses: dict[int, int] = {}
        self.errors: list[BaseException] = []
        self.connections: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as c:
            while not self._stop.is_set():
                try:
                    r = c.get("/open/load")
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append(exc)
                    continue
                with self._lock:
                    self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


def test_reload_applies_a_new_policy_under_load_with_nothing_failing(
    tmp_path: Path, fresh_upstream: RecordingUpstream
) -> None:
    config = serve_dir(tmp_path / "d", upstream=fresh_upstream.url, routes=OPEN)
    with serving(config) as serve, Load(serve.url) as load:
        assert httpx.get(serve.url + "/reports/1", timeout=5).status_code == 404
        time.sleep(0.5)
        config.write_text(config.read_text() + REPORTS)
        done = reload_cli(config, "--json")
        assert done.returncode == 0, done.stderr
        assert f'"pid": {serve.pid}' in done.stdout and '"routes": 2' in done.stdout
        wait_until(
            lambda: httpx.get(serve.url + "/reports/1", timeout=5).status_code == 200,
            5,
            "the new route in force",
        )
        time.sleep(0.5)  # the load goes on after the reload too
    assert load.errors == []
    assert set(load.statuses) == {200} and load.statuses[200] > 50, load.statuses
    serve.wait_line("reload: 2 routes", 5)
    assert "Traceback" not in serve.stderr


def test_a_broken_file_is_refused_and_the_old_policy_keeps_serving(
    tmp_path: Path, fresh_upstream: RecordingUpstream
) -> None:
    config = serve_dir(tmp_path / "d", upstream=fresh_upstream.url, routes=OPEN + REPORTS)
    good = config.read_text()
    with serving(config) as serve:
        config.write_text(good + '\n[[routes]]\npath = "/orders/:id"\nmethods = ["GET"]\n')
        refused = reload_cli(config)
        assert refused.returncode == 1
        assert "write '/orders/{id}'" in refused.stderr and "not signalled" in refused.stderr
        config.write_text(good.replace("[server]", "[server\n", 1))  # not even TOML
        serve.signal(signal.SIGHUP)  # (as logrotate would send it, file unchecked)
        serve.wait_line("reload refused", 5)
        for path in ("/open/x", "/reports/x"):
            assert httpx.get(serve.url + path, timeout=5).status_code == 200
        assert serve.proc.poll() is None
        # fixed again, with a route fewer: the policy shrinks at once
        config.write_text(good.replace(REPORTS, ""))
        assert reload_cli(config).returncode == 0
        wait_until(
            lambda: httpx.get(serve.url + "/reports/x", timeout=5).status_code == 404,
            5,
            "the removed route out of force",
        )
    assert "Traceback" not in serve.stderr


def test_settings_that_need_a_restart_are_named_and_the_rest_applies(
    tmp_path: Path, fresh_upstream: RecordingUpstream
) -> None:
    config = serve_dir(tmp_path / "d", upstream=fresh_upstream.url, routes=OPEN)
    with serving(config) as serve:
        text = config.read_text()
        text = re.sub(r'(?m)^url = ".*"$', 'url = "http://127.0.0.1:1"', text, count=1)
        text = re.sub(r"(?m)^max_header_bytes = .*$", "max_header_bytes = 2048", text, count=1)
        config.write_text(text + REPORTS)
        assert reload_cli(config).returncode == 0
        line = serve.wait_line("takes a restart", 5)
        assert "upstream.url" in line and "max_header_bytes" not in line
        wait_until(
            lambda: httpx.get(serve.url + "/reports/x", timeout=5).status_code == 200,
            5,
            "the new route in force (and the old upstream still used)",
        )
        big = httpx.get(serve.url + "/open/x", headers={"X-Big": "a" * 3000}, timeout=5)
        assert big.status_code == 431  # the new header limit is in force


def test_reload_reaches_every_worker(tmp_path: Path, fresh_upstream: RecordingUpstream) -> None:
    config = serve_dir(tmp_path / "d", upstream=fresh_upstream.url, routes=OPEN)
    with serving(config, "--workers", "2") as serve:
        config.write_text(config.read_text() + REPORTS)
        assert reload_cli(config).returncode == 0
        time.sleep(1.0)
        # new connections land on either process: every one must have the new route
        urls = [serve.url + f"/reports/{i}" for i in range(40)]
        statuses = [httpx.get(url, timeout=5).status_code for url in urls]
        assert set(statuses) == {200}, statuses


def test_reload_without_a_running_server_says_so(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "d", routes=OPEN)
    done = reload_cli(config)
    assert done.returncode == 1
    assert "no running server" in done.stderr and "Traceback" not in done.stderr
    (config.parent / "restguard.pid").write_text("1\n")  # init, not restguard: never signalled
    done = reload_cli(config)
    assert done.returncode == 1 and "is not 'restguard serve'" in done.stderr


def test_reload_serves_a_renewed_certificate(
    tmp_path: Path, fresh_upstream: RecordingUpstream
) -> None:
    # certbot's renewal: new files over the old ones, then `systemctl reload` (SIGHUP)
    pki = Pki(tmp_path / "pki")
    first_cert, first_key = pki.pair("first")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(first_cert.read_bytes())
    key.write_bytes(first_key.read_bytes())
    config = serve_dir(tmp_path / "d", upstream=fresh_upstream.url, routes=OPEN)
    port = load(config).server.listen.port
    set_keys(
        config,
        "server",
        {
            "tls_cert": f'"{cert}"',
            "tls_key": f'"{key}"',
            "public_url": f'"https://127.0.0.1:{port}"',
        },
    )
    context = ssl.create_default_context(cafile=str(pki.ca))

    def served() -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return subject_of(tls.getpeercert(binary_form=True))

    with serving(config):
        assert served() == "first"
        second_cert, second_key = pki.pair("second")
        cert.write_bytes(second_cert.read_bytes())
        key.write_bytes(second_key.read_bytes())
        assert reload_cli(config).returncode == 0
        wait_until(lambda: served() == "second", 5, "the renewed certificate served")
        # a broken renewal (a key that does not match) is refused as a whole
        key.write_bytes(first_key.read_bytes())
        refused = reload_cli(config)
        assert refused.returncode == 1 and "tls_key" in refused.stderr
        assert served() == "second"


def test_json_logs_are_one_object_per_line_with_secrets_redacted(
    tmp_path: Path, fresh_upstream: RecordingUpstream
) -> None:
    """``[log] format = "json"``: restguard's own lines (here a refused reload) are JSON, and a
    credential that lands in a message (here inside the broken file's text) is redacted."""
    import json

    config = serve_dir(tmp_path / "d", upstream=fresh_upstream.url, routes=OPEN)
    set_keys(config, "log", {"format": '"json"'})
    good = config.read_text()
    key = "rg_ak_abcdefghijkl_" + "S" * 49
    with serving(config) as serve:
        assert reload_cli(config).returncode == 0  # (its handlers installed: SIGHUP is safe)
        applied = json.loads(serve.wait_line('"reload: 1 routes', 5))
        assert applied["level"] == "warning"
        config.write_text(good + f'\n[[routes]]\npath = "/{key}/:id"\nmethods = ["GET"]\n')
        serve.signal(signal.SIGHUP)
        line = json.loads(serve.wait_line('"reload refused', 5))
        assert line["level"] == "error" and line["logger"] == "restguard.reload"
        assert "rg_ak_[redacted]" in line["message"]  # the route's text, named in the error
        assert set(line) >= {"time", "level", "logger", "message", "process"}
        assert httpx.get(serve.url + "/open/x", timeout=5).status_code == 200
    assert key[19:] not in serve.stderr
    assert "Traceback" not in serve.stderr
