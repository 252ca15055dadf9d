"""``restguard serve --workers N``: N-1 worker processes beside the first, supervised.

Each worker is a fresh interpreter (``python -m restguard.cli.workers``), not a fork of a server
that already runs threads: it inherits the listening socket's descriptor and reads its settings,
pickled, from stdin, so a respawned worker serves exactly the configuration the others serve.
The first process serves too (gateway and admin listener) and supervises the others, as
gunicorn's arbiter does:

* a worker that exits is logged and started again, after a back-off that doubles (1 s to 30 s)
  while workers keep dying young and resets once one has lived a minute;
* workers die with the first process: each asks the kernel for SIGTERM when its parent dies
  (``PR_SET_PDEATHSIG``) and also exits when it notices it was orphaned, so a ``kill -9`` of the
  first process never leaves a worker holding the port;
* a dead worker's metrics snapshot goes stale and is dropped from ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from restguard.cli.serve import install_loop, run_servers
from restguard.config import ConfigError, Settings
from restguard.logs import configure as configure_logs
from restguard.tracing import configure as configure_tracing

_log = logging.getLogger("restguard.workers")
BACKOFF_FIRST, BACKOFF_MAX, HEALTHY_AFTER = 1.0, 30.0, 60.0
STOP_WAIT = 15.0
_PR_SET_PDEATHSIG = 1


@dataclass
class _Worker:
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = BACKOFF_FIRST
    restart_at: float | None = None
    exits: list[int] = field(default_factory=list)


class Supervisor:
    """Starts ``count`` workers on ``sock`` and keeps them running until ``stop``."""

    def __init__(
        self, settings: Settings, sock: socket.socket, metrics_dir: Path, count: int
    ) -> None:
        self.settings, self.sock, self.metrics_dir = settings, sock, metrics_dir
        self.workers = [_Worker() for _ in range(count)]
        self._stopping = False

    def use_settings(self, settings: Settings) -> None:
        """The settings in force after a reload: a worker started from now on gets them (the
        running ones reload the file themselves on the SIGHUP passed on to them)."""
        self.settings = settings

    def start(self) -> None:
        for worker in self.workers:
            self._spawn(worker)

    def _spawn(self, worker: _Worker) -> None:
        fd = self.sock.fileno()
        cmd = [
            sys.executable,
            "-m",
            "restguard.cli.workers",
            str(fd),
            str(self.metrics_dir),
            str(os.getpid()),
        ]
        # our own interpreter and module, arguments we made: no untrusted input
        process = subprocess.Popen(cmd, stdin=subprocess.PIPE, pass_fds=(fd,))  # noqa: S603
        assert process.stdin is not None
        process.stdin.write(pickle.dumps(self.settings))
        process.stdin.close()
        worker.process, worker.started, worker.restart_at = process, time.monotonic(), None

    def check(self) -> None:
        """Reap and restart: called every half second by ``watch``."""
        now = time.monotonic()
        for worker in self.workers:
            process = worker.process
            if process is not None and process.poll() is not None:
                code = process.returncode
                worker.exits.append(code)
                worker.process = None
                if now - worker.started >= HEALTHY_AFTER:
                    worker.backoff = BACKOFF_FIRST
                worker.restart_at = now + worker.backoff
                how = f"signal {-code}" if code < 0 else f"status {code}"
                _log.error(
                    "worker %d exited (%s); starting a new one in %.0f s",
                    process.pid,
                    how,
                    worker.backoff,
                )
                worker.backoff = min(worker.backoff * 2, BACKOFF_MAX)
            if (
                worker.process is None
                and worker.restart_at is not None
                and now >= worker.restart_at
                and not self._stopping
            ):
                self._spawn(worker)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.check()

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process is not None]

    def signal_all(self, sig: int) -> None:
        """Pass a signal on to every worker (SIGHUP: reopen; SIGTERM, SIGINT: stop now, in
        parallel with the first process, rather than after its grace)."""
        if sig in (signal.SIGTERM, signal.SIGINT):
            self._stopping = True
            sig = signal.SIGTERM
        for process in [w.process for w in self.workers if w.process is not None]:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM every worker (they finish their requests), SIGKILL what is left after
        ``STOP_WAIT`` seconds."""
        self._stopping = True
        running = [w.process for w in self.workers if w.process is not None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        deadline = time.monotonic() + STOP_WAIT
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def die_with_parent(parent: int) -> None:
    """Exit when ``parent`` exits: the kernel's PR_SET_PDEATHSIG where there is one, and a
    watcher thread everywhere (it also covers a parent that died before the prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_WAIT)
        os._exit(1)

    threading.Thread(target=watch, name="restguard-parent-watch", daemon=True).start()


def main(argv: list[str]) -> None:
    """A worker: ``python -m restguard.cli.workers FD METRICS_DIR PARENT_PID``, settings on
    stdin."""

    fd, metrics_dir, parent = int(argv[0]), Path(argv[1]), int(argv[2])
    die_with_parent(parent)
    settings: Settings = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from our parent
    sock = socket.socket(fileno=fd)
    configure_logs(
        settings.log_format, settings.log_level, prefix=f"restguard worker {os.getpid()}"
    )
    if settings.tracing:
        configure_tracing()
    install_loop()
    try:
        asyncio.run(
            run_servers(settings, gateway_socket=sock, admin=False, metrics_dir=metrics_dir)
        )
    except ConfigError as exc:  # a TLS certificate or key that no longer loads: one line
        _log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
