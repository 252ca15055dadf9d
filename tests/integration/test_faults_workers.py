"""``restguard serve --workers N`` under process faults (issue 6, item 5): the first process
supervises the others. A killed worker is logged and replaced while requests keep being
answered; a killed first process takes its workers with it, so the port is free for the next
start; a dead worker's metrics leave ``/metrics``."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.faults import (
    ServeProcess,
    children_of,
    metric,
    port_free,
    process_gone,
    ready_workers,
    serve_dir,
    serving,
    wait_until,
    worker_decisions,
)

pytestmark = pytest.mark.slow

DECIDED = 'restguard_decisions_total{auth_method="none",outcome="deny",status="404"}'


def _workers(serve: ServeProcess, count: int) -> list[int]:
    return ready_workers(serve.pid, count)


def _fresh_request(serve: ServeProcess) -> int:
    """One request on a new connection (so any process may accept it): its status."""
    with httpx.Client(timeout=5) as client:
        return client.get(serve.url + "/nothing").status_code


def _decided(serve: ServeProcess) -> float:
    return metric(httpx.get(serve.admin_url + "/metrics", timeout=5).text, DECIDED) or 0.0


def test_a_killed_worker_is_replaced_and_requests_keep_being_answered(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "d")
    with serving(config, "--workers", "2") as serve:
        (worker,) = _workers(serve, 1)
        assert _fresh_request(serve) == 404
        os.kill(worker, signal.SIGKILL)
        started = time.monotonic()
        # every client is still answered, each on a new connection, from the moment of the kill
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: _fresh_request(serve), range(80)))
        assert statuses == [404] * 80
        line = serve.wait_line(rf"worker {worker} exited \(signal 9\)", 5)
        assert "starting a new one" in line
        replaced: list[int] = []

        def respawned() -> bool:
            replaced[:] = [pid for pid in children_of(serve.pid) if pid != worker]
            return len(replaced) == 1

        wait_until(respawned, 5, "a new worker process")
        assert time.monotonic() - started < 5
        assert not Path(f"/proc/{worker}").exists(), "the killed worker was left a zombie"
        # the new worker lives (it is not dying in a loop) and the service goes on
        time.sleep(2)
        assert not process_gone(replaced[0])
        assert children_of(serve.pid) == replaced
        assert [_fresh_request(serve) for _ in range(20)] == [404] * 20
        assert serve.stderr.count("exited (") == 1
        assert "Traceback" not in serve.stderr
        assert httpx.get(serve.admin_url + "/healthz", timeout=5).status_code == 200
    assert serve.proc.returncode == 0


def test_a_killed_parent_takes_its_workers_and_frees_the_port(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "d")
    serve = ServeProcess(config, "--workers", "3").wait_up()
    try:
        workers = _workers(serve, 2)
        serve.proc.kill()
        serve.proc.wait(5)
        took = wait_until(
            lambda: all(process_gone(pid) for pid in workers), 5, "the orphaned workers exit"
        )
        wait_until(
            lambda: port_free(serve.port) and port_free(serve.admin_port),
            2,
            "the listeners' ports are free",
        )
    finally:
        serve.stop()
        for pid in workers:
            if not process_gone(pid):
                os.kill(pid, signal.SIGKILL)
    assert took < 5
    # the next start binds the same ports and serves
    with serving(config) as again:
        assert _fresh_request(again) == 404
        assert "Address already in use" not in again.stderr
    assert again.proc.returncode == 0


def test_a_dead_workers_metrics_leave_metrics(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "d")
    with serving(config, "--workers", "2") as serve:
        (worker,) = _workers(serve, 1)
        # enough requests, each on a new connection, for the worker to have taken some
        for _ in range(20):
            for _ in range(20):
                assert _fresh_request(serve) == 404
            time.sleep(1.2)  # workers publish every second
            directory, own = worker_decisions(worker)
            if own:
                break
        assert own > 0, "the worker took none of 400 connections"
        time.sleep(1.2)
        _, own = worker_decisions(worker)
        total = _decided(serve)
        assert total > own  # the worker's numbers are added to the first process's

        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        took = wait_until(lambda: _decided(serve) == total - own, 8, "the dead worker's share gone")
        assert took <= 7
        assert not (directory / f"{worker}.json").exists()
        # and it stays gone (the new worker publishes its own, empty, numbers)
        time.sleep(max(0.0, killed + 8 - time.monotonic()))
        assert _decided(serve) == total - own
    assert serve.proc.returncode == 0
