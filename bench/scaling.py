"""restguard scaling: throughput of ``serve --workers 2`` against ``--workers 1``, in one run.

    python bench/scaling.py            # 3 interleaved rounds x 10 s per setting
    python bench/scaling.py --quick    # 1 round x 3 s

One nginx upstream answering ``{"ok":true}``; one restguard data directory (``restguard init``,
the benchmark routes of ``bench/run.py``, SQLite) served by ``restguard serve --workers 1`` and
then ``--workers 2`` on the same port, alternately per round; wrk drives the API-key route
(``/keyed/**``, ``X-API-Key``) with ``--connections`` connections. Nothing is pinned: the
workers may use every core, and so do wrk and the upstream, which share the machine with them
(on a 2-core VM the ratio is bounded by that, not by restguard: compare it with the cores).

Reports requests/s (median of the rounds), p50/p99 latency and the scaling ratio
rps(2 workers) / rps(1 worker). With 2 workers the rate-limit and failed-attempt counters live
in the database (exact across the processes); the keyed route has no ``rate_limit``, so the
ratio measures the serving, not the counters.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench


@contextmanager
def serving(config: Path, port: int, workers: int) -> Iterator[int]:
    """``restguard serve --workers N``; yields its pid once the gateway answers."""
    cmd = [*bench.restguard_cmd(), "serve", "--config", str(config), "--workers", str(workers)]
    log = config.parent / f"serve-{workers}.log"
    with bench.process(cmd, log) as proc:
        bench.wait_ready(f"http://127.0.0.1:{port}/public/ready", proc, log)
        if workers > 1:  # every worker up: its first metrics snapshot is written at start
            bench.http_get(f"http://127.0.0.1:{port}/public/ready")
        yield proc.pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round x 3 s")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    rounds, seconds = (1, 3) if args.quick else (3, 10)
    bench.use_tree_under_test()
    bench.ensure_tools()
    profile = bench.Profile(
        rounds=rounds,
        seconds=seconds,
        warmup_seconds=1,
        threads=2,
        connections=args.connections,
        micro_ops=0,
    )
    results: dict[int, list[bench.WrkResult]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="restguard-scaling-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        up_port = bench.free_port()
        up_http = bench.UPSTREAM_HTTP.format(port=up_port, body=bench.UPSTREAM_BODY)
        stack.enter_context(bench.nginx(work, "upstream", up_http, up_port, False))
        data = work / "restguard"
        rg = bench.restguard_cmd()
        bench.run_checked(
            [*rg, "init", "--dir", str(data), "--upstream", f"http://127.0.0.1:{up_port}"]
        )
        config = data / "restguard.toml"
        port, admin_port = bench.free_port(), bench.free_port()
        config.write_text(bench.bench_config(config.read_text(), port, admin_port))
        created = bench.run_checked(
            [
                *rg,
                "apikey",
                "create",
                "--config",
                str(config),
                "--name",
                "bench",
                "--json",
                "--scope",
                bench.BENCH_SCOPE,
            ]
        )
        key = json.loads(created)["key"]
        url = f"http://127.0.0.1:{port}/keyed/x"
        target = bench.Target("rg-apikey", "API-key route", url, 0, (f"X-API-Key: {key}",))
        for _ in range(rounds):
            for workers in (1, 2):
                with serving(config, port, workers):
                    bench.run_wrk(target, 1, profile, False)  # warm-up
                    results[workers].append(bench.run_wrk(target, seconds, profile, False))
    print(
        f"restguard serve --workers N, API-key route, {os.cpu_count()} CPUs, "
        f"{args.connections} connections, {rounds} x {seconds} s"
    )
    print(f"{'workers':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    rps = {}
    for workers, runs in results.items():
        rps[workers] = statistics.median(r.rps for r in runs)
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        errors = sum(r.errors for r in runs)
        print(f"{workers:<8} {rps[workers]:>10.0f} {p50:>8.2f} {p99:>8.2f} {errors:>7}")
    print(f"scaling ratio rps(2) / rps(1): {rps[2] / rps[1]:.2f}x")
    return 0 if all(r.errors == 0 for runs in results.values() for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
