"""Where the time goes: restguard's per-request pieces timed in-process.

    python bench/parts.py            # about 20 s
    python bench/parts.py --quick    # a few seconds

Builds the gateway exactly as ``restguard serve`` does (``open_runtime`` + ``GatewayApp`` +
``Metrics``) from a ``restguard init`` directory, with an nginx upstream from ``run.py``, and
times each step of one request on its own, as CPU microseconds per call
(``time.process_time_ns``; wall time is close as nothing here waits except the upstream round
trip). Tight loops flatter a step (hot caches), so the last rows drive the whole ASGI app
in-process with 32 requests in flight (no HTTP server in front), once complete and once with each
of the audit sink, the metrics and the identity headers switched off: the differences are those
pieces' costs in place. Results go to stdout and ``bench/results/parts.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import run

RESULTS_FILE = run.BENCH_DIR / "results" / "parts.json"


async def cpu_us(
    step: Callable[[], Awaitable[Any] | Any], ops: int, *, warm_up: bool = True
) -> float:
    """CPU µs per call of ``step`` (awaited when it returns an awaitable), after a warm-up."""
    for _ in range(max(ops // 10, 5) if warm_up else 0):
        result = step()
        if asyncio.iscoroutine(result):
            await result
    started = time.process_time_ns()
    for _ in range(ops):
        result = step()
        if asyncio.iscoroutine(result):
            await result
    return (time.process_time_ns() - started) / ops / 1000


def asgi_scope(path: str, key: str | None, port: int) -> dict[str, Any]:
    """The scope uvicorn (with restguard's strict protocol) builds for wrk's request."""
    from restguard.edge.view import RAW_TARGET_KEY

    headers = [(b"host", f"127.0.0.1:{port}".encode())]
    if key is not None:
        headers.append((b"x-api-key", key.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", port),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        RAW_TARGET_KEY: path.encode(),
    }


async def receive() -> dict[str, Any]:
    """An ASGI receive for a request without a body."""
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    """An ASGI send that drops the response."""


async def upstream_round_trip(app: Any, headers: Any, ops: int) -> float:
    """CPU µs of one aiohttp GET + read to the upstream, with restguard's session and headers."""
    session = app.upstream._session
    url = app.upstream.base_url + "/public/item"

    async def get() -> None:
        async with session.request("GET", url, headers=headers, allow_redirects=False) as resp:
            await resp.read()

    return await cpu_us(get, ops)


async def concurrent_requests(app: Any, scope: dict[str, Any], ops: int, tasks: int) -> None:
    """``ops`` in-process ASGI requests from ``tasks`` concurrent callers (like wrk's -c)."""

    async def caller(count: int) -> None:
        for _ in range(count):
            await app(scope, receive, send)

    await asyncio.gather(*(caller(ops // tasks) for _ in range(tasks)))


async def whole_requests(app: Any, scope: dict[str, Any], ops: int, tasks: int = 32) -> float:
    """CPU µs per in-process ASGI request, ``tasks`` requests in flight."""
    ops -= ops % tasks
    await concurrent_requests(app, scope, max(ops // 10, tasks), tasks)
    started = time.process_time_ns()
    await concurrent_requests(app, scope, ops, tasks)
    return (time.process_time_ns() - started) / ops / 1000


async def guard_parts(app: Any, metrics: Any, scopes: dict, ops: int) -> dict[str, float]:
    """The request view, the decision with and without its event sinks, and each sink."""
    from restguard.edge.view import view_from_scope

    guard, audit, out = app.runtime.guard, app.runtime.audit, {}
    views = {name: view_from_scope(scope) for name, scope in scopes.items()}
    out["view_from_scope"] = await cpu_us(lambda: view_from_scope(scopes["apikey"]), ops)
    for name, view in views.items():
        out[f"decide_{name}_with_sinks"] = await cpu_us(lambda v=view: guard.decide(v), ops)
    sinks, events = list(guard.sinks), []
    guard.sinks[:] = [events.append]
    await guard.decide(views["apikey"])
    guard.sinks[:] = []  # Guard._emit does not even build the event then
    for name, view in views.items():
        out[f"decide_{name}_no_sinks"] = await cpu_us(lambda v=view: guard.decide(v), ops)
    guard.sinks[:] = sinks
    out["audit_event_to_json"] = await cpu_us(events[0].to_json, ops)
    out["audit_sink_total"] = await cpu_us(lambda: audit(events[0]), ops)
    out["metrics_sink"] = await cpu_us(lambda: metrics.observe_decision(events[0]), ops)
    return out


async def forward_parts(app: Any, scopes: dict, ops: int) -> dict[str, float]:
    """Identity headers, header hygiene and the upstream round trip, per route."""
    from restguard.edge.view import view_from_scope

    out = {}
    for name, scope in scopes.items():
        view = view_from_scope(scope)
        decision = await app.runtime.guard.decide(view)
        out[f"identity_headers_{name}"] = await cpu_us(lambda d=decision: app.identity(d), ops)
        headers = app.upstream.upstream_headers(view, decision, scope, app.identity)
        out[f"upstream_headers_{name}"] = await cpu_us(
            lambda v=view, d=decision, s=scope: app.upstream.upstream_headers(
                v, d, s, app.identity
            ),
            ops,
        )
        out[f"aiohttp_round_trip_{name}"] = await upstream_round_trip(app, headers, ops)
    return out


@contextmanager
def switched_off(app: Any, metrics: Any, piece: str) -> Iterator[None]:
    """The gateway with one piece switched off: "audit", "metrics", "identity" or "none"."""
    guard = app.runtime.guard
    saved = (list(guard.sinks), app.identity, app.metrics)
    if piece == "audit":
        guard.sinks.remove(app.runtime.audit)
    elif piece == "metrics":
        guard.sinks.remove(metrics.observe_decision)
        app.metrics = None
    elif piece == "identity":
        app.identity = lambda decision: []
    try:
        yield
    finally:
        guard.sinks[:], app.identity, app.metrics = saved


async def ablations(app: Any, metrics: Any, scopes: dict, ops: int) -> dict[str, float]:
    """Whole in-process requests (32 in flight) with each piece switched off in turn; the
    difference to the full gateway is that piece's cost in place. Median of 3 interleaved."""
    runs: dict[str, list[float]] = {}
    for _ in range(3):
        for route, scope in scopes.items():
            for piece in ("none", "audit", "metrics", "identity"):
                with switched_off(app, metrics, piece):
                    us = await whole_requests(app, scope, ops)
                runs.setdefault(f"asgi_request_{route}_without_{piece}", []).append(us)
    return {name.replace("_without_none", ""): statistics.median(v) for name, v in runs.items()}


async def measure_parts(config: Path, port: int, key: str, ops: int) -> dict[str, float]:
    """Every step timed on its own, then whole in-process requests."""
    from restguard.config import load
    from restguard.gateway.app import GatewayApp
    from restguard.observe import Metrics
    from restguard.wiring import open_runtime

    metrics = Metrics()
    runtime = await open_runtime(load(config), sinks=[metrics.observe_decision])
    app = GatewayApp(runtime, metrics)
    await app.upstream.start()
    scopes = {
        "public": asgi_scope("/public/item", None, port),
        "apikey": asgi_scope("/keyed/item", key, port),
    }
    try:
        out = await guard_parts(app, metrics, scopes, ops)
        out |= await forward_parts(app, scopes, ops)
        out |= await ablations(app, metrics, scopes, ops)
    finally:
        await app.upstream.close()
        runtime.close()
    return out


def run_parts(config: Path, port: int, key: str, ops: int) -> dict[str, float]:
    """``measure_parts`` on uvloop, as the gateway runs."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(measure_parts(config, port, key, ops))


def format_parts(parts: dict[str, float]) -> str:
    """The table printed to stdout."""
    lines = [f"{'step (in-process, CPU us per call)':<44}{'us':>8}"]
    lines += [f"{name:<44}{value:>8.2f}" for name, value in parts.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start an nginx upstream, set up restguard, time the parts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    ops = 500 if parser.parse_args(argv).quick else 5_000
    try:
        run.ensure_tools()
        pin = run.pinning_available()
        with ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rg-parts-")))
            port = run.free_port()
            http = run.UPSTREAM_HTTP.format(port=port, body=run.UPSTREAM_BODY)
            stack.enter_context(run.nginx(work, "upstream", http, port, pin))
            config, rg_port, key = run.setup_restguard(work, port)
            if pin:
                os.sched_setaffinity(0, {run.LOAD_CPU})
            parts = run_parts(config, rg_port, key, ops)
    except run.BenchError as err:
        print(f"parts: could not measure: {err}", file=sys.stderr)
        return 2
    print(format_parts(parts))
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    RESULTS_FILE.write_text(json.dumps({"ops": ops, "cpu_us": parts}, indent=2) + "\n")
    print(f"\nwrote {RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
