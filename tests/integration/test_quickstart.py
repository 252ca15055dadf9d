"""``restguard quickstart`` as a user runs it: a real process, and every printed curl command
run with the real ``curl`` binary."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import requests

from restguard.cli.quickstart import DEMO_PORT
from tests.harness import free_port
from tests.oauth2_support import forms

pytestmark = pytest.mark.slow

RESTGUARD = str(Path(sys.executable).with_name("restguard"))
CURL = shutil.which("curl")
PROMISED = [200, 200, 401, 403, 201, 200, 403, 200, 404]
READY = "Keys are shown once; a new run issues new ones. Ctrl-C stops everything."
READY_JSON = "}"  # the last line of the one JSON document
UPSTREAM_LINE = re.compile(r"demo notes API \(the upstream\)  http://127\.0\.0\.1:(\d+) ")


class Quickstart:
    """One ``restguard quickstart`` process with its output collected in the background."""

    def __init__(
        self, directory: Path, port: int, admin: int, upstream: int | None, *extra: str
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTGUARD_")}
        env["PYTHONUNBUFFERED"] = "1"
        ports = ["--port", str(port), "--admin-port", str(admin)]
        if upstream is not None:
            ports += ["--upstream-port", str(upstream)]
        self.ready_marker = READY_JSON if "--json" in extra else READY
        self.proc = subprocess.Popen(
            [RESTGUARD, "quickstart", "--dir", str(directory), *ports, *extra],
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
            if line.startswith(self.ready_marker):
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


def admin_command(guide: str) -> str:
    """The admin API's curl command the guide prints."""
    (line,) = [line for line in guide.splitlines() if line.startswith("Admin API: curl ")]
    return line.removeprefix("Admin API: ")


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
        assert "This is plain HTTP on loopback" in out
        requests = promised_requests(out)
        assert [status for status, _ in requests] == PROMISED
        keys = set(re.findall(r"rg_ak_[0-9a-z]{12}_[0-9A-Za-z]{49}", out))
        assert len(keys) == 3  # a read key, a read/write key and the admin API's key
        for status, command in requests:
            assert curl_status(command) == status, command
        admin_api = admin_command(out)
        assert f"http://127.0.0.1:{admin}/api/apikeys" in admin_api
        assert curl_status(admin_api) == 200

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
    # one decision per request to the gateway's routes (the token endpoint's answers are the
    # authorization server's, not policy decisions)
    assert len(audit) >= len(PROMISED) - 1
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
        assert len(new_keys) == 3 and not new_keys & keys
        assert curl_status(admin_api) == 401  # the previous run's admin key is revoked
        assert curl_status(admin_command(out2)) == 200
        # the previous run's keys and token (its demo issuer's key is gone): 401 wherever a
        # route matches (404 stays 404: no route)
        assert [curl_status(c) for _, c in requests] == [
            *(200, 401, 401, 401, 401, 401, 401),
            401,  # the previous run's OAuth 2.0 client is revoked
            404,
        ]
        for status, command in new_requests:
            assert curl_status(command) == status, command
    finally:
        code = second.interrupt()
    assert code == 0, second.stderr
    assert "Traceback" not in second.stderr


@pytest.mark.skipif(CURL is None, reason="the curl binary is not installed")
def test_quickstart_stays_on_plain_http_with_a_tls_data_dir(tmp_path: Path) -> None:
    from restguard.cli.init import write_data_dir
    from tests.pki import Pki

    directory = tmp_path / "qs"
    port, admin, upstream = free_port(), free_port(), free_port()
    config = write_data_dir(
        directory,
        upstream=f"http://127.0.0.1:{upstream}",
        listen=f"127.0.0.1:{port}",
        admin_listen=f"127.0.0.1:{admin}",
    )
    cert, key = Pki(tmp_path / "pki").pair()
    text = config.read_text().replace('public_url = "http://', 'public_url = "https://')
    text = text.replace('# tls_cert = "cert.pem"', f'tls_cert = "{cert}"')
    config.write_text(text.replace('# tls_key = "key.pem"', f'tls_key = "{key}"'))
    run = Quickstart(directory, port, admin, upstream)
    try:
        out = run.wait_ready()
        assert "the quickstart serves plain HTTP on loopback" in run.stderr
        assert f"gateway  http://127.0.0.1:{port}" in out
        requests = promised_requests(out)
        assert [curl_status(command) for _, command in requests] == PROMISED
    finally:
        code = run.interrupt()
    assert code == 0, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("flag", ["--port", "--admin-port", "--upstream-port"])
def test_quickstart_refuses_a_busy_port_it_was_given(tmp_path: Path, flag: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        ports = {"--port": free_port(), "--admin-port": free_port(), "--upstream-port": free_port()}
        ports[flag] = taken
        done = subprocess.run(
            [
                RESTGUARD,
                "quickstart",
                "--dir",
                str(tmp_path / "qs"),
                *(part for item in ports.items() for part in (item[0], str(item[1]))),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"port {taken} on 127.0.0.1 is in use; pass another {flag}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "qs").exists()


def _hold(port: int) -> socket.socket | None:
    """Listen on 127.0.0.1:port; None when something else already does (taken either way)."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    sock.listen(1)
    return sock


@pytest.mark.skipif(CURL is None, reason="the curl binary is not installed")
def test_quickstart_moves_the_demo_off_a_busy_9000(tmp_path: Path) -> None:
    directory = tmp_path / "qs"
    port, admin = free_port(), free_port()
    holder = _hold(DEMO_PORT)
    try:
        for run in ("created", "reusing"):  # a reused data dir follows the demo too
            qs = Quickstart(directory, port, admin, None)
            try:
                out = qs.wait_ready()
                assert f"{run} {directory}" in out
                found = UPSTREAM_LINE.search(out)
                assert found, out
                demo = int(found.group(1))
                assert demo != DEMO_PORT
                assert (
                    f"port {DEMO_PORT} is in use, so the demo notes API listens on "
                    f"http://127.0.0.1:{demo}" in qs.stderr
                )
                requests = promised_requests(out)
                assert [status for status, _ in requests] == PROMISED
                for status, command in requests:  # 200/201 prove the gateway reaches the demo
                    assert curl_status(command) == status, command
            finally:
                assert qs.interrupt() == 0, qs.stderr
    finally:
        if holder is not None:
            holder.close()


def test_quickstart_prints_the_demo_port_it_was_given(tmp_path: Path) -> None:
    upstream = free_port()
    qs = Quickstart(tmp_path / "qs", free_port(), free_port(), upstream)
    try:
        out = qs.wait_ready()
    finally:
        assert qs.interrupt() == 0, qs.stderr
    found = UPSTREAM_LINE.search(out)
    assert found and int(found.group(1)) == upstream
    assert "is in use" not in qs.stderr


@pytest.mark.skipif(CURL is None, reason="the curl binary is not installed")
def test_quickstart_json_is_one_document(tmp_path: Path) -> None:
    directory = tmp_path / "qs"
    port, admin, upstream = free_port(), free_port(), free_port()
    qs = Quickstart(directory, port, admin, upstream, "--json")
    try:
        document = json.loads(qs.wait_ready())
        assert document["gateway"] == f"http://127.0.0.1:{port}"
        assert document["admin"] == f"http://127.0.0.1:{admin}"
        assert document["upstream"] == f"http://127.0.0.1:{upstream}"
        assert document["config"] == str(directory / "restguard.toml")
        assert set(document["keys"]) == {"read", "write"}
        assert [r["expect"] for r in document["requests"]] == PROMISED
        for request in document["requests"]:
            assert curl_status(request["curl"]) == request["expect"], request
    finally:
        code = qs.interrupt()
    assert code == 0, qs.stderr
    assert json.loads(qs.stdout) == document  # nothing else on stdout, "stopped." included
    assert f"created {directory}" in qs.stderr and "stopped." in qs.stderr


@pytest.mark.skipif(CURL is None, reason="the curl binary is not installed")
def test_quickstart_authorization_code_flow_as_printed(tmp_path: Path) -> None:
    """The printed browser line, followed as a person would (sign in as the printed user,
    allow), lands on the demo app's callback, whose curl redeems the code; the token reads."""
    port, admin, upstream = free_port(), free_port(), free_port()
    qs = Quickstart(tmp_path / "qs", port, admin, upstream)
    try:
        out = qs.wait_ready()
        lines = out.splitlines()
        (at,) = [i for i, line in enumerate(lines) if line.startswith("# open in a browser")]
        password = re.search(r"password '([^']+)'", lines[at]).group(1)  # type: ignore[union-attr]
        url = lines[at + 2]
        gateway = f"http://127.0.0.1:{port}"
        assert url.startswith(gateway + "/oauth2/authorize?")
        browser = requests.Session()
        page = browser.get(url, timeout=10)  # -> the sign-in page
        (form,) = forms(page.text)
        page = browser.post(
            gateway + form.action,
            data={**form.inputs, "username": "demo", "password": password},
            timeout=10,
        )  # -> the consent page
        (form,) = forms(page.text)
        scopes = [value for _, value, checked in form.checkboxes if checked]
        assert scopes == ["notes:read", "notes:write"]
        landed = browser.post(
            gateway + form.action,
            data={**form.inputs, "scope": scopes, "decision": "allow"},
            timeout=10,
        )  # -> the demo app's callback on the upstream
        assert landed.url.startswith(f"http://127.0.0.1:{upstream}/app/callback?")
        command = landed.json()["curl"]
        redeemed = subprocess.run(
            shlex.split(command.replace("curl -i ", "curl -s ")),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        token = json.loads(redeemed.stdout)
        assert token["scope"] == "notes:read notes:write"
        notes = requests.get(
            gateway + "/notes",
            headers={"authorization": "Bearer " + token["access_token"]},
            timeout=10,
        )
        assert notes.status_code == 200
        assert notes.json()["seen_by_upstream"] == {"subject": "demo", "auth_method": "oauth2"}
    finally:
        assert qs.interrupt() == 0, qs.stderr


def test_quickstart_signed_request_as_printed(tmp_path: Path) -> None:
    """The printed `restguard sign` line, run as printed in a shell, reads the notes (200),
    signed anew each run; a second run works too (a fresh nonce)."""
    port, admin, upstream = free_port(), free_port(), free_port()
    qs = Quickstart(tmp_path / "qs", port, admin, upstream)
    try:
        lines = qs.wait_ready().splitlines()
        (at,) = [i for i, line in enumerate(lines) if line.startswith("# 200: the demo signer")]
        command = lines[at + 1]
        assert "restguard sign" in command and "--secret-stdin" in command
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        for _ in range(2):
            done = subprocess.run(
                ["bash", "-c", command], capture_output=True, text=True, timeout=30, env=env
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith("HTTP/1.1 200"), done.stdout[:300]
            assert '"auth_method": "signature"' in done.stdout
    finally:
        assert qs.interrupt() == 0, qs.stderr


def test_quickstart_oauth1_request_as_printed(tmp_path: Path) -> None:
    """The printed `restguard oauth1 sign` line, run as printed in a shell, reads the notes as
    the demo user (200), twice (a fresh nonce each run); on a second quickstart run the first
    run's line is refused (its consumer is revoked) and the new one reads."""
    directory = tmp_path / "qs"
    port, admin, upstream = free_port(), free_port(), free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def run(command: str) -> str:
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=30, env=env
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def printed(out: str) -> str:
        lines = out.splitlines()
        (at,) = [i for i, line in enumerate(lines) if line.startswith("# 200: the demo consumer")]
        assert lines[at] == (
            "# 200: the demo consumer reads the notes as demo (OAuth 1.0a, HMAC-SHA1)"
        )
        command = lines[at + 1]
        assert "restguard oauth1 sign" in command and "--secrets-stdin" in command
        assert "docs/oauth1.md" in lines[at + 2]
        return command

    first = Quickstart(directory, port, admin, upstream)
    try:
        command = printed(first.wait_ready())
        for _ in range(2):
            out = run(command)
            assert out.startswith("HTTP/1.1 200"), out[:300]
            assert '"auth_method": "oauth1"' in out and '"subject": "demo"' in out
    finally:
        assert first.interrupt() == 0, first.stderr
    second = Quickstart(directory, port, admin, upstream)
    try:
        new = printed(second.wait_ready())
        assert new != command
        assert run(command).startswith("HTTP/1.1 401")
        assert run(new).startswith("HTTP/1.1 200")
    finally:
        assert second.interrupt() == 0, second.stderr
