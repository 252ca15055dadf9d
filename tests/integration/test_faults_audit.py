"""The audit file on a full device (issue 6, item 6), injected by the test: the audit path is
a symlink to /dev/full (every write fails with ENOSPC), or a file on a tiny tmpfs the test
mounts and fills.

Policy: by default restguard keeps serving, counts the lines it could not write
(``restguard_audit_dropped_total``), reports ``audit`` in ``/readyz`` and logs one line a minute;
with ``[audit] required = true`` a decision that cannot be recorded is refused with 503. Never a
500, never a traceback."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.faults import admin_metric, configured_gateway, metric, wait_until
from tests.harness import GatewayProcess, RecordingUpstream, raw_request, status_of

DROPPED = "restguard_audit_dropped_total"


def _needs_dev_full() -> None:
    try:
        fd = os.open("/dev/full", os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        pytest.skip(f"/dev/full cannot be opened for writing here ({exc.strerror})")
    try:
        os.write(fd, b"x")
    except OSError:
        pass
    else:
        pytest.skip("/dev/full accepts writes here: it is no full device")
    finally:
        os.close(fd)


def _full_disk_gateway(
    tmp_path: Path, upstream: RecordingUpstream, *, required: bool = False, **server: str
) -> GatewayProcess:
    _needs_dev_full()
    upstream.clear()
    keys = {"server": server} if server else {}
    if required:
        keys["audit"] = {"required": "true"}
    gw = configured_gateway(tmp_path / "gw", upstream, keys)
    assert gw.settings.audit_path is not None and gw.settings.audit_required is required
    gw.settings.audit_path.symlink_to("/dev/full")
    return gw.start()


def _errors(caplog: pytest.LogCaptureFixture, *, but: str = "restguard.audit") -> list[str]:
    """Error records (tracebacks included) from anything but the audit's own warning."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name != but]


def _no_500(gw: GatewayProcess) -> None:
    page = httpx.get(gw.admin_url + "/metrics", timeout=5).text
    assert 'status="500"' not in page


def test_full_disk_keeps_serving_counts_drops_and_reports_audit(
    tmp_path: Path, upstream: RecordingUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    gw = _full_disk_gateway(tmp_path, upstream)
    try:
        _, key = gw.issue_key("notes:read")
        with ThreadPoolExecutor(5) as pool:
            statuses = list(
                pool.map(
                    lambda i: httpx.get(f"{gw.url}/public/{i}", timeout=5).status_code, range(25)
                )
            )
        assert statuses == [200] * 25  # was: 18 of 25 answered 500
        assert (
            httpx.get(gw.url + "/notes/1", headers={"x-api-key": key}, timeout=5).status_code == 200
        )
        # nothing admitted that should not be
        assert httpx.get(gw.url + "/notes/1", timeout=5).status_code == 401
        assert len(upstream.requests) == 26

        wait_until(lambda: admin_metric(gw.admin_url, DROPPED) >= 27, 3, "27 dropped lines counted")
        ready = httpx.get(gw.admin_url + "/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["audit"]
        assert httpx.get(gw.admin_url + "/healthz", timeout=5).status_code == 200  # alive
        _no_500(gw)

        # one log line (a minute), however many writes failed
        for i in range(10):
            assert httpx.get(f"{gw.url}/public/again{i}", timeout=5).status_code == 200
        wait_until(lambda: admin_metric(gw.admin_url, DROPPED) >= 37, 3, "37 dropped lines")
        warned = [r for r in caplog.records if r.name == "restguard.audit"]
        assert len(warned) == 1, [r.getMessage() for r in warned]
        assert "cannot be written" in warned[0].getMessage()
        assert _errors(caplog) == []
    finally:
        gw.stop()


def test_full_disk_with_audit_required_refuses_decisions_with_503(
    tmp_path: Path, upstream: RecordingUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    gw = _full_disk_gateway(tmp_path, upstream, required=True)
    try:
        _, key = gw.issue_key("notes:read")
        for target, headers in (
            ("/public/x", {}),
            ("/notes/1", {"x-api-key": key}),
            ("/notes/1", {}),  # a denial must be recorded too
            ("/nowhere", {}),
        ):
            r = httpx.get(gw.url + target, headers=headers, timeout=5)
            assert r.status_code == 503, (target, r.status_code)
            assert r.headers["content-type"].startswith("application/json")
            assert r.json()["error"] == "temporarily_unavailable"
        assert upstream.requests == []  # fail closed: nothing unrecorded reached the upstream
        assert admin_metric(gw.admin_url, DROPPED) == 4
        ready = httpx.get(gw.admin_url + "/readyz", timeout=5)
        assert ready.status_code == 503 and "audit" in ready.json()["failed"]
        _no_500(gw)
        assert _errors(caplog) == []
    finally:
        gw.stop()


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        pytest.param(
            b"POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"c8\r\n"
            + b"a" * 200
            + b"\r\n0\r\n\r\n",
            {413, 503},
            id="body-over-max_body_bytes",
        ),
        pytest.param(
            b"GET /public/x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", {400, 503}, id="bad-head"
        ),
    ],
)
def test_audit_required_refusals_while_reading_answer_cleanly(
    tmp_path: Path,
    upstream: RecordingUpstream,
    caplog: pytest.LogCaptureFixture,
    request_bytes: bytes,
    expected: set[int],
) -> None:
    """Requests refused while they are still being read are decisions too: with a failing
    audit file and ``required`` they must still get their answer, with no traceback."""
    caplog.set_level(logging.WARNING)
    gw = _full_disk_gateway(tmp_path, upstream, required=True, max_body_bytes="100")
    try:
        response = raw_request(gw.port, request_bytes)
        assert response, "no answer at all"
        assert status_of(response) in expected, response[:120]
        assert upstream.requests == []
        assert httpx.get(gw.url + "/public/y", timeout=5).status_code == 503  # still serving
        assert _errors(caplog) == [], "tracebacks in the server log"
    finally:
        gw.stop()


# --- a real filesystem that fills up and gets room again -----------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for the test (skipped where the test may not mount one)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 1024)
    return filler


def _lines(path: Path) -> list[dict[str, object]]:
    """The audit file's decisions; a torn fragment may stand alone on a line, nothing else."""
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            assert line.startswith('{"') and "}{" not in line, f"garbled line {line!r}"
    return found


def _tmpfs_gateway(tmp_path: Path, upstream: RecordingUpstream, mount: Path) -> GatewayProcess:
    upstream.clear()
    return configured_gateway(
        tmp_path / "gw", upstream, {"audit": {"path": json.dumps(str(mount / "audit.log"))}}
    ).start()


def test_full_tmpfs_drops_lines_then_writes_resume_when_there_is_room(
    tmp_path: Path, upstream: RecordingUpstream, tiny_fs: Path
) -> None:
    gw = _tmpfs_gateway(tmp_path, upstream, tiny_fs)
    audit = tiny_fs / "audit.log"
    try:
        assert httpx.get(gw.url + "/public/before", timeout=5).status_code == 200
        wait_until(lambda: "/public/before" in audit.read_text(), 3, "first line written")
        filler = _fill(tiny_fs)
        for i in range(30):
            assert httpx.get(f"{gw.url}/public/full{i}", timeout=5).status_code == 200
        wait_until(lambda: admin_metric(gw.admin_url, DROPPED) >= 1, 3, "drops counted")
        ready = httpx.get(gw.admin_url + "/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["failed"] == ["audit"]

        filler.unlink()  # room again
        assert httpx.get(gw.url + "/public/after", timeout=5).status_code == 200
        wait_until(lambda: "/public/after" in audit.read_text(), 3, "writes resumed")
        wait_until(
            lambda: httpx.get(gw.admin_url + "/readyz", timeout=5).status_code == 200,
            3,
            "/readyz back to 200",
        )
        paths = [line["path"] for line in _lines(audit)]
        assert paths[0] == "/public/before" and paths[-1] == "/public/after"
        dropped = admin_metric(gw.admin_url, DROPPED)
        assert len(paths) + dropped >= 32  # every decision written or counted
    finally:
        gw.stop()


def test_readyz_recovers_without_traffic_once_the_audit_file_has_room(
    tmp_path: Path, upstream: RecordingUpstream, tiny_fs: Path
) -> None:
    """A load balancer takes an instance whose /readyz fails out of rotation: if only a new
    decision could clear the audit check, the instance would never come back."""
    gw = _tmpfs_gateway(tmp_path, upstream, tiny_fs)
    try:
        filler = _fill(tiny_fs)
        assert httpx.get(gw.url + "/public/full", timeout=5).status_code == 200
        wait_until(
            lambda: httpx.get(gw.admin_url + "/readyz", timeout=5).status_code == 503,
            3,
            "/readyz reports the audit file",
        )
        filler.unlink()
        wait_until(
            lambda: httpx.get(gw.admin_url + "/readyz", timeout=5).status_code == 200,
            5,
            "/readyz back to 200 with no decision in between",
        )
    finally:
        gw.stop()


def test_metric_counts_each_dropped_line_once(tmp_path: Path, upstream: RecordingUpstream) -> None:
    gw = _full_disk_gateway(tmp_path, upstream)
    try:
        for i in range(7):
            assert httpx.get(f"{gw.url}/public/{i}", timeout=5).status_code == 200
        wait_until(lambda: admin_metric(gw.admin_url, DROPPED) >= 7, 3, "7 drops")
        page = httpx.get(gw.admin_url + "/metrics", timeout=5).text
        assert metric(page, DROPPED) == 7
        assert "counter" in [
            line.split()[-1]
            for line in page.splitlines()
            if "# TYPE restguard_audit_dropped" in line
        ]
    finally:
        gw.stop()
