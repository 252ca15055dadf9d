"""``restguard serve``: the gateway and admin listeners in one process (or N workers)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import click
import uvicorn

from restguard.admin.app import AdminApp
from restguard.config import Listen, Settings
from restguard.gateway.app import GatewayApp
from restguard.gateway.server import protocol_for
from restguard.observe import Metrics
from restguard.wiring import open_runtime


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to ``run_servers``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_config(app: Any, *, http: Any = "httptools") -> uvicorn.Config:
    """uvicorn settings shared by every listener: quiet, no server header, our loop."""
    return uvicorn.Config(
        app,
        http=http,
        log_level="warning",
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
    """A listening socket for ``listen`` (IPv4 or IPv6)."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((listen.host, listen.port))
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
) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set), then close everything cleanly."""
    metrics = Metrics()
    runtime = await open_runtime(settings, sinks=[metrics.observe_decision])
    try:
        gateway = GatewayApp(runtime, metrics)
        gateway_http = protocol_for(settings.server.max_header_bytes)
        servers = [_Server(uvicorn_config(gateway, http=gateway_http))]
        sockets = [[gateway_socket or bind(settings.server.listen)]]
        if admin:
            servers.append(_Server(uvicorn_config(AdminApp(runtime.store, metrics))))
            sockets.append([bind(settings.admin_listen)])
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        tasks = [
            asyncio.create_task(s.serve(sockets=socks))
            for s, socks in zip(servers, sockets, strict=True)
        ]
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        if all(s.started for s in servers):
            settle_garbage_collector()
            if on_ready:
                on_ready()
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for s in servers:
            s.should_exit = True
        waiter.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in tasks:
            if t.exception() is not None:
                raise click.ClickException(f"a listener failed: {t.exception()}")
    finally:
        runtime.close()


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
