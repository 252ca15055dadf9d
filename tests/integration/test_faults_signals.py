"""Signals, shutdown and descriptors on a real ``restguard serve`` process (issue 6, item 7).

* SIGHUP (logrotate's rename-then-signal) never kills: the audit log is reopened and the next
  decisions go to a new file;
* SIGTERM lets requests in flight finish within ``[server] shutdown_grace``, answers those that
  cannot finish in it with 503 (never an empty reply), and exits 0;
* the open-files soft limit is raised to the hard one, with a warning when even that is too low,
  and descriptors running out is logged.
"""

from __future__ import annotations

import json
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults import (
    ServeProcess,
    children_of,
    ready_workers,
    serve_dir,
    serving,
    timed,
    wait_until,
    worker_decisions,
)
from tests.harness import RecordingUpstream

pytestmark = pytest.mark.slow

OPEN = '[[routes]]\npath = "/open/**"\nmethods = ["GET", "POST"]\npublic = true\n'


def _paths(audit: Path) -> list[str]:
    if not audit.exists():
        return []
    return [json.loads(line)["path"] for line in audit.read_text().splitlines() if line]


@pytest.fixture
def fresh_upstream(upstream: RecordingUpstream) -> Iterator[RecordingUpstream]:
    upstream.clear()
    yield upstream
    upstream.clear()


# --- SIGHUP ---------------------------------------------------------------------------------------


def test_sighup_reopens_the_audit_log_and_never_kills(
    tmp_path: Path, fresh_upstream: RecordingUpstream
) -> None:
    config = serve_dir(tmp_path / "d", upstream=fresh_upstream.url, routes=OPEN)
    audit = config.parent / "audit.log"
    with serving(config) as serve:
        assert httpx.get(serve.url + "/open/before", timeout=5).status_code == 200
        wait_until(lambda: "/open/before" in _paths(audit), 3, "the first decision logged")
        audit.rename(config.parent / "audit.log.1")  # logrotate: rename, then SIGHUP
        serve.signal(signal.SIGHUP)
        serve.wait_line("SIGHUP", 5)
        time.sleep(0.3)
        assert serve.proc.poll() is None, "SIGHUP killed restguard serve"
        assert httpx.get(serve.url + "/open/after", timeout=5).status_code == 200
        wait_until(lambda: "/open/after" in _paths(audit), 3, "the new decision in a new file")
        assert _paths(config.parent / "audit.log.1") == ["/open/before"]
        assert audit.stat().st_mode & 0o777 == 0o600
        serve.signal(signal.SIGHUP)  # twice, and without a rename: still alive, still logging
        time.sleep(0.3)
        assert httpx.get(serve.url + "/open/again", timeout=5).status_code == 200
        wait_until(lambda: "/open/again" in _paths(audit), 3, "logged after a second SIGHUP")
    assert serve.proc.returncode == 0
    assert "Traceback" not in serve.stderr


def test_sighup_to_serve_with_workers_reopens_every_process_audit_log(
    tmp_path: Path, fresh_upstream: RecordingUpstream
) -> None:
    """logrotate signals the one process it knows (the first): the workers' decisions must
    follow to the new file too, or they go on filling the rotated one."""
    config = serve_dir(tmp_path / "d", upstream=fresh_upstream.url, routes=OPEN)
    audit = config.parent / "audit.log"
    with serving(config, "--workers", "2") as serve:
        (worker,) = ready_workers(serve.pid, 1)
        assert httpx.get(f"{serve.url}/open/before", timeout=5).status_code == 200
        wait_until(lambda: _paths(audit) == ["/open/before"], 3, "the first decision logged")
        audit.rename(config.parent / "audit.log.1")
        serve.signal(signal.SIGHUP)
        serve.wait_line("SIGHUP", 5)
        time.sleep(0.5)
        assert serve.proc.poll() is None and children_of(serve.pid) == [worker]
        # requests on new connections until the worker has taken some (it publishes its
        # numbers every second)
        _, taken_before = worker_decisions(worker)
        after: list[str] = []
        for batch in range(10):
            for i in range(20):
                after.append(f"/open/after{batch}-{i}")
                assert httpx.get(serve.url + after[-1], timeout=5).status_code == 200
            time.sleep(1.2)
            if worker_decisions(worker)[1] > taken_before:
                break
        assert worker_decisions(worker)[1] > taken_before, "the worker took no request"
        stale = [p for p in _paths(config.parent / "audit.log.1") if p.startswith("/open/after")]
        assert stale == [], f"{len(stale)} of {len(after)} decisions went to the rotated file"
        assert sorted(_paths(audit)) == sorted(after)
    assert serve.proc.returncode == 0


# --- SIGTERM and the shutdown grace ---------------------------------------------------------------


def _in_flight(serve: ServeProcess, upstream: RecordingUpstream, path: str) -> dict[str, object]:
    """Start a request in a thread and return once the upstream holds it."""
    result: dict[str, object] = {}

    def call() -> None:
        started = time.monotonic()
        try:
            result["response"] = httpx.get(serve.url + path, timeout=20)
        except httpx.HTTPError as exc:
            result["error"] = exc
        result["took"] = time.monotonic() - started

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    result["thread"] = thread
    wait_until(lambda: any(r.target == path.encode() for r in upstream.requests), 5, "in flight")
    return result


def test_sigterm_lets_a_request_in_flight_finish_within_the_grace(
    tmp_path: Path, fresh_upstream: RecordingUpstream
) -> None:
    fresh_upstream.reply.delay = 1.5
    config = serve_dir(
        tmp_path / "d",
        upstream=fresh_upstream.url,
        routes=OPEN,
        keys={"server": {"shutdown_grace": '"5s"'}},
    )
    serve = ServeProcess(config).wait_up()
    try:
        flight = _in_flight(serve, fresh_upstream, "/open/slow")
        serve.signal(signal.SIGTERM)
        code, took = timed(lambda: serve.wait(10))
        flight["thread"].join(10)  # type: ignore[attr-defined]
    finally:
        serve.stop()
    response = flight.get("response")
    assert isinstance(response, httpx.Response), flight.get("error")
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert code == 0, serve.stderr
    assert took < 1.5 + 2, f"exit {took:.1f} s after SIGTERM"
    assert "Traceback" not in serve.stderr


def test_sigterm_answers_503_to_what_cannot_finish_within_the_grace(
    tmp_path: Path, fresh_upstream: RecordingUpstream
) -> None:
    fresh_upstream.reply.delay = 8
    config = serve_dir(
        tmp_path / "d",
        upstream=fresh_upstream.url,
        routes=OPEN,
        keys={"server": {"shutdown_grace": '"1s"'}},
    )
    serve = ServeProcess(config).wait_up()
    try:
        flight = _in_flight(serve, fresh_upstream, "/open/too-slow")
        serve.signal(signal.SIGTERM)
        code, took = timed(lambda: serve.wait(10))
        flight["thread"].join(10)  # type: ignore[attr-defined]
    finally:
        serve.stop()
    response = flight.get("response")
    assert isinstance(response, httpx.Response), f"no answer: {flight.get('error')!r}"
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == "temporarily_unavailable"
    assert float(flight["took"]) < 1 + 2  # type: ignore[arg-type]
    assert code == 0, serve.stderr
    assert took < 1 + 3, f"exit {took:.1f} s after SIGTERM"
    assert "Traceback" not in serve.stderr


def test_sigterm_refuses_new_connections_while_finishing(
    tmp_path: Path, fresh_upstream: RecordingUpstream
) -> None:
    fresh_upstream.reply.delay = 2
    config = serve_dir(
        tmp_path / "d",
        upstream=fresh_upstream.url,
        routes=OPEN,
        keys={"server": {"shutdown_grace": '"5s"'}},
    )
    serve = ServeProcess(config).wait_up()
    try:
        flight = _in_flight(serve, fresh_upstream, "/open/slow")
        serve.signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):
            httpx.get(serve.url + "/open/late", timeout=2)
        assert serve.wait(10) == 0
        flight["thread"].join(10)  # type: ignore[attr-defined]
    finally:
        serve.stop()
    assert isinstance(flight.get("response"), httpx.Response)
    assert flight["response"].status_code == 200  # type: ignore[attr-defined]
    assert not any(r.target == b"/open/late" for r in fresh_upstream.requests)


# --- descriptors ----------------------------------------------------------------------------------


def _limit(soft: int, hard: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _open_files(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line in /proc/PID/limits")


def _hard_limit_at_least(count: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < count:
        pytest.skip(f"the hard open-files limit here is {hard}, below {count}")


def test_the_soft_open_files_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    _hard_limit_at_least(8192)
    config = serve_dir(tmp_path / "d", keys={"server": {"max_connections": "1000"}})
    with serving(config, preexec_fn=_limit(256, 8192)) as serve:
        assert _open_files(serve.pid) == (8192, 8192)
        time.sleep(0.3)
        assert "open-files limit" not in serve.stderr  # enough for 1000 connections: no word


def test_a_hard_limit_too_low_for_max_connections_is_warned_at_start(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "d")  # max_connections = 4096
    with serving(config, preexec_fn=_limit(256, 512)) as serve:
        assert _open_files(serve.pid) == (512, 512)
        line = serve.wait_line("open-files limit", 5)
        assert "512" in line and "max_connections" in line
        assert serve.stderr.count("open-files limit") == 1


def test_running_out_of_descriptors_is_logged_and_service_resumes(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "d")
    with serving(config, preexec_fn=_limit(160, 160)) as serve:
        held: list[socket.socket] = []
        try:
            for _ in range(220):  # more connections than the process has descriptors
                held.append(socket.create_connection(("127.0.0.1", serve.port), timeout=5))
            line = serve.wait_line("file descriptors in use", 8)
            assert "160" in line
        finally:
            for sock in held:
                sock.close()
        # the flood is gone: the next clients are served again
        wait_until(
            lambda: httpx.get(serve.url + "/nothing", timeout=2).status_code == 404,
            10,
            "served again after the flood",
        )
        assert serve.proc.poll() is None
        assert serve.stderr.count("file descriptors in use") == 1  # once a minute at most


def test_sigterm_to_serve_with_workers_stops_every_listener_at_once(
    tmp_path: Path, fresh_upstream: RecordingUpstream
) -> None:
    """SIGTERM goes to the first process (as systemd and docker send it): from then on no
    process of the group may take a new connection, while every request in flight finishes."""
    fresh_upstream.reply.delay = 2
    config = serve_dir(
        tmp_path / "d",
        upstream=fresh_upstream.url,
        routes=OPEN,
        keys={"server": {"shutdown_grace": '"5s"'}},
    )
    serve = ServeProcess(config, "--workers", "2").wait_up()
    results: list[object] = []

    def call(path: str) -> None:
        try:
            results.append(httpx.get(serve.url + path, timeout=20).status_code)
        except httpx.HTTPError as exc:
            results.append(exc)

    try:
        ready_workers(serve.pid, 1)
        # slow requests on new connections: both processes hold some
        flights = [threading.Thread(target=call, args=(f"/open/slow{i}",)) for i in range(6)]
        for thread in flights:
            thread.start()
        wait_until(lambda: len(fresh_upstream.requests) == 6, 5, "six requests in flight")
        serve.signal(signal.SIGTERM)
        time.sleep(0.3)
        late: list[int | str] = []
        for i in range(5):
            try:
                late.append(httpx.get(f"{serve.url}/open/late{i}", timeout=5).status_code)
            except httpx.TransportError:
                late.append("refused")
        code, took = timed(lambda: serve.wait(20))
        for thread in flights:
            thread.join(10)
    finally:
        serve.stop()
    assert results == [200] * 6
    assert late == ["refused"] * 5, f"taken after SIGTERM: {late}"
    assert not any(r.target.startswith(b"/open/late") for r in fresh_upstream.requests)
    assert code == 0
    assert took < 5 + 2
