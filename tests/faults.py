"""Helpers for the fault-injection tests (tests/integration/test_faults_*.py).

* ``set_keys`` adds or replaces keys in a table of a generated restguard.toml (the starter
  template does not list every key, e.g. ``[storage] timeout`` or ``[audit] required``);
* ``configured_gateway`` is a ``GatewayProcess`` (the real ``run_servers`` in a thread) with such
  keys set;
* ``ServeProcess`` is a real ``restguard serve`` process whose output is collected by reader
  threads (so a test can wait for a log line without blocking on a pipe);
* ``FreezableProxy`` is a TCP proxy that the test freezes: it stops forwarding in both
  directions without closing anything, as a network partition does;
* ``metric`` reads one sample from a Prometheus text page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from restguard.config import load
from tests.harness import GatewayProcess, RecordingUpstream, free_port

RESTGUARD = [sys.executable, "-m", "restguard.cli"]


def set_keys(config: Path, table: str, values: Mapping[str, str]) -> None:
    """Set ``key = value`` (values are TOML text) in ``[table]``: an existing line is replaced,
    a missing key is added right under the table's header."""
    text = config.read_text()
    header = f"[{table}]\n"
    start = text.index(header) + len(header)
    end = text.find("\n[", start)
    end = len(text) if end < 0 else end + 1
    body = text[start:end]
    for key, value in values.items():
        line = f"{key} = {value}"
        body, found = re.subn(rf"(?m)^{re.escape(key)} = .*$", line, body, count=1)
        if not found:
            body = line + "\n" + body
    config.write_text(text[:start] + body + text[end:])


def configured_gateway(
    directory: Path,
    upstream: RecordingUpstream,
    keys: Mapping[str, Mapping[str, str]] | None = None,
    **kwargs: Any,
) -> GatewayProcess:
    """A ``GatewayProcess`` (not started) with ``keys`` ({table: {key: TOML value}}) set."""
    gw = GatewayProcess(directory, upstream, **kwargs)
    for table, values in (keys or {}).items():
        set_keys(gw.config, table, values)
    gw.settings = load(gw.config)
    return gw


def metric(page: str, name: str) -> float | None:
    """The value of the sample ``name`` (with its labels, if any) on a Prometheus text page."""
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def admin_metric(admin_url: str, name: str) -> float:
    value = metric(httpx.get(admin_url + "/metrics", timeout=5).text, name)
    assert value is not None, f"{name} is not on /metrics"
    return value


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> float:
    """Poll ``check`` until it holds; the seconds it took (AssertionError after ``timeout``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(every)
    return time.monotonic() - started


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaped counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return sorted(found)


def worker_decisions(worker: int) -> tuple[Path, float]:
    """A ``serve --workers`` worker's metrics directory (from its command line) and the number
    of decisions it last published there (0 before its first snapshot)."""
    argv = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
    directory = Path(argv[argv.index(b"restguard.cli.workers") + 2].decode())
    try:
        snap = json.loads((directory / f"{worker}.json").read_text())
    except (FileNotFoundError, ValueError):
        return directory, 0.0
    return directory, float(sum(row[-1] for row in snap["decisions"]))


def ready_workers(serve_pid: int, count: int, timeout: float = 15) -> list[int]:
    """The ``count`` workers of ``serve --workers`` once each serves (its first metrics
    snapshot, written every second once it is up, is there)."""
    found: list[int] = []

    def ready() -> bool:
        found[:] = children_of(serve_pid)
        if len(found) != count:
            return False
        for pid in found:
            with contextlib.suppress(OSError, ValueError):
                directory, _ = worker_decisions(pid)
                if (directory / f"{pid}.json").exists():
                    continue
            return False
        return True

    wait_until(ready, timeout, f"{count} worker(s) of {serve_pid} serving")
    return found


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be listened on again (as ``restguard serve`` binds)."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ServeProcess:
    """``restguard serve --config CONFIG [args]`` as a real process, its output collected."""

    def __init__(
        self,
        config: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        settings = load(config)
        self.config = config
        self.url = f"http://{settings.server.listen}"
        self.admin_url = f"http://{settings.admin_listen}"
        self.port = settings.server.listen.port
        self.admin_port = settings.admin_listen.port
        self.proc = subprocess.Popen(
            [*RESTGUARD, "serve", "--config", str(config), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec_fn,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return "\n".join(self.err)

    def wait_up(self, timeout: float = 20) -> ServeProcess:
        """Until the admin listener answers (it starts after the gateway's)."""

        def up() -> bool:
            assert self.proc.poll() is None, f"serve exited early: {self.stderr}"
            try:
                httpx.get(self.admin_url + "/healthz", timeout=0.5)
            except httpx.TransportError:
                return False
            return True

        wait_until(up, timeout, "restguard serve answers")
        return self

    def wait_line(self, pattern: str, timeout: float, *, stream: str = "err") -> str:
        lines = self.err if stream == "err" else self.out
        regex = re.compile(pattern)
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in list(lines) if regex.search(line)]
            return bool(found)

        wait_until(seen, timeout, f"a line matching {pattern!r} on std{stream}: {lines}")
        return found[0]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._close_pipes()
        return code

    def _close_pipes(self) -> None:
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None and not any(r.is_alive() for r in self._readers):
                stream.close()

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 20 s); never fails a test by itself."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_pipes()


def serve_dir(
    directory: Path,
    *,
    upstream: str = "http://127.0.0.1:9",
    routes: str = '[[routes]]\npath = "/open/**"\nmethods = ["GET"]\npublic = true\n',
    keys: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """A data directory for ``restguard serve`` on free ports; returns its restguard.toml."""
    from restguard.cli.init import write_data_dir

    config = write_data_dir(
        directory,
        upstream=upstream,
        listen=f"127.0.0.1:{free_port()}",
        admin_listen=f"127.0.0.1:{free_port()}",
        routes=routes,
    )
    for table, values in (keys or {}).items():
        set_keys(config, table, values)
    return config


class FreezableProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target`` (host, port), in its own thread.

    ``freeze()`` stops forwarding in both directions and stops connecting new clients onward,
    without closing anything: to the gateway the database just goes silent, as in a network
    partition (the proxy's kernel still acknowledges what is sent to it). ``thaw()`` forwards
    again, held data included."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> asyncio.Server:
            self._flowing = asyncio.Event()
            self._flowing.set()
            return await asyncio.start_server(self._client, "127.0.0.1", self.port)

        server = self.loop.run_until_complete(start())
        self._ready.set()
        self.loop.run_forever()
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # (at stop: the streams module
            await self._forward(reader, writer)  # reads a cancelled handler's exception)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self._writers.add(writer)
        try:
            await self._flowing.wait()
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()  # frozen: read nothing, write nothing, close nothing
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    def _set(self, flowing: bool) -> None:
        done = threading.Event()

        def apply() -> None:
            assert self._flowing is not None
            if flowing:
                self._flowing.set()
            else:
                self._flowing.clear()
            done.set()

        self.loop.call_soon_threadsafe(apply)
        done.wait(5)

    def freeze(self) -> None:
        self._set(False)

    def thaw(self) -> None:
        self._set(True)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


@contextlib.contextmanager
def serving(config: Path, *args: str, **kwargs: Any) -> Iterator[ServeProcess]:
    """A started ``ServeProcess``, stopped at the end."""
    proc = ServeProcess(config, *args, **kwargs)
    try:
        yield proc.wait_up()
    finally:
        proc.stop()
