"""``restguard serve``: the gateway and admin listeners in one process (or N workers)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import uvicorn

from restguard.admin.app import admin_app
from restguard.cli.reload import reload_settings
from restguard.config import Listen, Settings
from restguard.gateway.identity import IdentityHeaders
from restguard.gateway.server import Gateway, listener_tls, make_gateway
from restguard.keys.tls import ServerTLS
from restguard.observe import Metrics, read_snapshots, write_snapshot
from restguard.wiring import Runtime, open_runtime

_log = logging.getLogger("restguard.serve")
FD_MARGIN = 64  # descriptors beyond connections: the store, the audit log, listeners ...
FD_WARN_EVERY = 60.0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to ``run_servers``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_config(app: Any) -> uvicorn.Config:
    """uvicorn settings for the admin listener and the demo upstream: quiet, no server header,
    our loop. (The gateway listener is restguard's own: gateway/http1.py.)"""
    return uvicorn.Config(
        app,
        http="httptools",
        log_level="warning",
        log_config=None,  # uvicorn's records go to restguard's handler (restguard.logs)
        access_log=False,
        server_header=False,
        lifespan="on",
        loop="none",
        # The client address comes from edge.view with [server] trusted_proxies only; uvicorn's
        # own X-Forwarded-For handling (which trusts loopback by default) stays off.
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )


def bind(listen: Listen, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket for ``listen`` (IPv4 or IPv6); a clear error if it is taken."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((listen.host, listen.port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def run_servers(
    settings: Settings,
    *,
    gateway_socket: socket.socket | None = None,
    admin: bool = True,
    on_ready: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
    metrics_dir: Path | None = None,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    on_signal: Callable[[int], None] | None = None,
    on_reload: Callable[[Settings], None] | None = None,
    tls: ServerTLS | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set), then close everything cleanly.

    The gateway listener speaks TLS when ``[server] tls_cert``/``tls_key`` are set: ``tls`` is
    its ``ServerTLS`` when the caller already loaded it, else it is loaded here (``ConfigError``
    when the files do not load, before anything listens).

    ``metrics_dir`` joins the workers' metrics: the admin process reads the others' snapshots,
    the others write theirs there every second. ``background`` coroutines (the workers'
    supervisor) run while serving; ``on_signal`` hears every SIGHUP, SIGTERM and SIGINT first
    (the supervisor passes them on to the workers at once); ``on_reload`` gets the settings in
    force after each reload (the supervisor starts new workers with them)."""
    tls = tls or listener_tls(settings)
    metrics = Metrics(
        peers=(lambda: read_snapshots(metrics_dir)) if admin and metrics_dir else None
    )
    runtime = await open_runtime(settings, sinks=[metrics.observe_decision])
    count_losses(metrics, runtime)
    admin_task: asyncio.Task[None] | None = None
    admin_server: _Server | None = None
    publisher: asyncio.Task[None] | None = None
    gateway = None
    loop = asyncio.get_running_loop()
    try:
        sock = gateway_socket or bind(settings.server.listen)
        gateway = make_gateway(
            runtime, IdentityHeaders(runtime.minter), metrics.observe_upstream, tls=tls
        )
        await gateway.start(sock)
        if admin:
            checks = {"upstream": gateway.pool.probe}
            if runtime.audit is not None:
                audit = runtime.audit
                checks["audit"] = lambda: _now(audit.healthy)
            if runtime.redis is not None:
                checks["redis"] = runtime.redis.up
            app = admin_app(runtime, metrics, checks)
            admin_server = _Server(uvicorn_config(app))
            admin_task = asyncio.create_task(
                admin_server.serve(sockets=[bind(settings.admin_listen)])
            )
            while not admin_server.started and not admin_task.done():
                await asyncio.sleep(0.01)
            if admin_task.done():
                raise click.ClickException(f"the admin listener failed: {admin_task.exception()}")
        stop = stop or asyncio.Event()
        stopper = stop

        def on_stop(sig: int) -> None:
            if on_signal is not None:
                on_signal(sig)
            stopper.set()

        def on_hup() -> None:
            if on_signal is not None:
                on_signal(signal.SIGHUP)
            if on_hangup(runtime, gateway) and on_reload is not None:
                on_reload(runtime.settings)

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_stop, sig)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, on_hup)
        settle_garbage_collector()
        if metrics_dir is not None and not admin:
            directory = metrics_dir
            publisher = asyncio.create_task(
                _flush_every(lambda: write_snapshot(metrics, directory), 1.0)
            )
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        watchers = [*background]
        if limit != resource.RLIM_INFINITY:
            watchers.append(lambda: watch_descriptors(limit))
        tasks = [asyncio.create_task(work()) for work in watchers]
        if on_ready:
            on_ready()
        waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(stop.wait())]
        if admin_task is not None:
            waiters.append(admin_task)  # type: ignore[arg-type]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        waiters[0].cancel()
        for task in tasks:
            task.cancel()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)
        if admin_server is not None:
            admin_server.should_exit = True
        if gateway is not None:
            await gateway.stop(settings.server.shutdown_grace)
        if publisher is not None:
            publisher.cancel()
        if admin_task is not None:
            await asyncio.gather(admin_task, return_exceptions=True)
        await runtime.flush()
        await runtime.close()


async def _now(value: bool) -> bool:
    return value


def count_losses(metrics: Metrics, runtime: Runtime) -> None:
    """What restguard had to drop to keep serving, as counters."""
    usage = runtime.usage
    metrics.count_from(
        "restguard_bookkeeping_dropped",
        "Last-used times not recorded because the store was busy or down.",
        lambda: usage.dropped,
    )
    if runtime.audit is not None:
        audit = runtime.audit
        metrics.count_from(
            "restguard_audit_dropped",
            "Decision lines the audit log could not write.",
            lambda: audit.dropped,
        )


def on_hangup(runtime: Runtime, gateway: Gateway | None = None) -> bool:
    """SIGHUP (logrotate, ``restguard reload``): reopen the audit log and reload the
    configuration (``cli/reload.py``); whether the new one is in force. Never fatal."""
    if runtime.audit is not None:
        runtime.audit.reopen()
    _log.warning("SIGHUP: audit log reopened; reloading %s", runtime.settings.file)
    return reload_settings(runtime, gateway)


def raise_file_limit(settings: Settings) -> int:
    """Raise the soft limit on open files to the hard one: every client and upstream connection
    is a descriptor, and the usual soft limit (1024) is far below ``max_connections``. Warn when
    even the hard limit cannot hold them; return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    need = settings.server.max_connections + settings.upstream.pool_size + FD_MARGIN
    if soft != resource.RLIM_INFINITY and soft < need:
        _log.warning(
            "the open-files limit (%d) is below what [server] max_connections = %d needs "
            "(about %d): connections will be refused early; raise 'ulimit -n' or lower "
            "max_connections",
            soft,
            settings.server.max_connections,
            need,
        )
    return int(soft)


async def watch_descriptors(limit: int, every: float = 5.0) -> None:
    """Log (once a minute at most) when open descriptors near the limit: past it, the kernel
    refuses new connections and libuv drops them without a word."""
    warned = -FD_WARN_EVERY
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return
    while True:
        await asyncio.sleep(every)
        try:
            used = len(os.listdir(fds))
        except OSError as exc:  # EMFILE: listing the table needs a descriptor too
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                continue
            used = limit
        if used >= limit * 0.95 and time.monotonic() - warned >= FD_WARN_EVERY:
            warned = time.monotonic()
            _log.error(
                "%d of %d file descriptors in use: new connections are being refused; "
                "raise 'ulimit -n' or lower [server] max_connections",
                used,
                limit,
            )


async def _flush_every(flush: Callable[[], object], seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        flush()


def settle_garbage_collector() -> None:
    """Move everything alive at start-up out of the collector's sight and collect less often.

    Measured (bench/README.md): full collections over ~100k start-up objects that never die
    cost ~20 us per request and caused 30-50 ms p99 pauses; freezing them removes both.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def install_loop() -> None:
    """Use uvloop where available (measured faster; see bench/)."""
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        pass
