"""restguard's token endpoint under load: client credentials grants/s on SQLite and PostgreSQL.

    python bench/oauth2_grants.py            # full: 2 s warm-up, 3 rounds x 10 s per store
    python bench/oauth2_grants.py --quick    # smoke: 1 round x 1 s per store, no warm-up

One ``restguard serve`` (one process, one worker) from ``restguard init``, first on its SQLite
store, then on a fresh PostgreSQL database (127.0.0.1:5432, user ``postgres``, created here and
dropped at the end). A client made with ``restguard oauth2 client create --grant
client_credentials`` is driven by wrk with a Lua script: ``POST /oauth2/token``,
``grant_type=client_credentials``, ``client_secret_basic``. Each answer is a new signed access
token (RFC 9068 JWT) after one client read from the store and one SHA-256 check of the secret.

Reported per store: grants/s, p50/p99 latency and the CPU of the ``restguard serve`` process per
grant (``bench/run.py``'s accounting: utime+stime from /proc, the serve process on CPU 1, wrk on
CPU 0); the median of the rounds. Against the target (>= 1,000 grants/s on one core) and, as
context, Hydra's published 407 grants/s (bcrypt-hashed secrets) and Keycloak's sizing of 120
grants/s per vCPU. Introspection (RFC 7662) is not built yet: not measured. Results also go to
``bench/results/oauth2.json``. Exit 2 when something could not be measured.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from run import (
    BENCH_DIR,
    LOAD_CPU,
    SERVER_CPU,
    BenchError,
    bench_config,
    check_config,
    cpu_seconds,
    find_tool,
    free_port,
    machine_facts,
    oauth2_client_create,
    parse_wrk,
    pinned,
    pinning_available,
    restguard,
    restguard_cmd,
    run_checked,
    token_for,
    use_tree_under_test,
)

RESULTS_FILE = BENCH_DIR / "results" / "oauth2.json"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/"
PG_ADMIN_DB = "test"
TARGET_GRANTS = 1000.0  # grants/s on one core (issue 9)
TARGET_INTROSPECTIONS = 3000.0  # introspections/s (issue 9): not built yet
ANCHORS = (
    ("Hydra, published (bcrypt-hashed client secrets)", 407.0),
    ("Keycloak sizing, per vCPU", 120.0),
)
WRK_LUA = """\
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic {basic}"
"""


@dataclass(frozen=True)
class Profile:
    rounds: int
    seconds: int
    warmup_seconds: int
    threads: int
    connections: int


FULL = Profile(rounds=3, seconds=10, warmup_seconds=2, threads=1, connections=32)
QUICK = Profile(rounds=1, seconds=1, warmup_seconds=0, threads=1, connections=32)


@dataclass(frozen=True)
class Run:
    store: str
    round: int
    grants_per_s: float
    p50_ms: float
    p99_ms: float
    grants: int
    cpu_seconds: float
    cpu_us_per_grant: float
    # PostgreSQL only: its backends serving this database (not in the serve process's CPU)
    pg_cpu_us_per_grant: float | None = None


def pg_backends(database: str) -> list[int]:
    """The pids of the PostgreSQL backends connected to ``database`` (its last path part)."""
    import psycopg

    name = database.rsplit("/", 1)[1]
    try:
        with psycopg.connect(PG_SERVER + PG_ADMIN_DB, autocommit=True, connect_timeout=3) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchall()
    except psycopg.OperationalError as exc:
        raise BenchError(f"PostgreSQL: {exc}") from None
    return [int(pid) for (pid,) in rows]


def backends_cpu(pids: list[int]) -> dict[int, float]:
    """utime+stime per PostgreSQL backend (``/proc/PID/stat``), for those still there (a
    backend closed during a run takes its CPU with it: an undercount)."""
    out = {}
    for pid in pids:
        try:  # only a PostgreSQL process (the server may run in another PID namespace)
            if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            out[pid] = cpu_seconds(pid)
        except OSError:
            continue
    return out


@contextmanager
def postgres_database() -> Iterator[str]:
    """A freshly created, empty PostgreSQL database (as ``tests/fixtures_db.py`` makes them);
    dropped at the end."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        raise BenchError("psycopg is not installed (pip install -e '.[postgres]')") from None

    def admin() -> Any:
        try:
            return psycopg.connect(PG_SERVER + PG_ADMIN_DB, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            raise BenchError(
                f"PostgreSQL not reachable at {PG_SERVER}{PG_ADMIN_DB}: {exc}"
            ) from None

    name = f"rg_bench_{secrets.token_hex(6)}"
    with admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PG_SERVER + name
    finally:
        with admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def set_database(text: str, url: str) -> str:
    """The config with ``[storage] database`` set to ``url``."""
    lines, section, done = [], "", False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        elif section == "[storage]" and stripped.startswith("database ="):
            line, done = f"database = {json.dumps(url)}", True
        lines.append(line)
    if not done:
        raise BenchError("restguard init's config has no [storage] database line")
    return "\n".join(lines) + "\n"


def setup(work: Path, database: str | None) -> tuple[Path, int, str, str]:
    """``restguard init``, ports, routes and (PostgreSQL) the database, then the bench client;
    (config, port, client_id, client_secret)."""
    data = work / "restguard"
    # The token endpoint proxies nothing: the upstream is never called.
    run_checked([*restguard_cmd(), "init", "--dir", str(data), "--upstream", "http://127.0.0.1:9"])
    config = data / "restguard.toml"
    port, admin_port = free_port(), free_port()
    text = bench_config(config.read_text(), port, admin_port)
    if database is not None:
        text = set_database(text, database)
    config.write_text(text)
    check_config(config, port, admin_port)
    from restguard.config import load

    got = load(config).database_url
    if database is not None and got != database:
        raise BenchError(f"{config}: database is {got}, expected {database}")
    client_id, secret = oauth2_client_create(config)
    return config, port, client_id, secret


def run_wrk(url: str, script: Path, seconds: int, profile: Profile, pin: bool) -> Any:
    import subprocess

    cmd = [find_tool("wrk") or "wrk", f"-t{profile.threads}", f"-c{profile.connections}"]
    cmd += [f"-d{seconds}s", "--latency", "--timeout", "5s", "-s", str(script), url]
    done = subprocess.run(pinned(cmd, LOAD_CPU, pin), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed:\n{done.stdout}{done.stderr}")
    result = parse_wrk(done.stdout)
    if result.errors or result.requests == 0:
        raise BenchError(
            f"{url}: {result.requests} requests, {result.errors} errors or non-2xx:\n{done.stdout}"
        )
    return result


def measure_store(store: str, database: str | None, profile: Profile, pin: bool) -> list[Run]:
    """Start one gateway on ``database`` (None: init's SQLite), check one grant, warm up, run
    the rounds."""
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rg-o2bench-")))
        config, port, client_id, secret = setup(work, database)
        pid = stack.enter_context(restguard(config, port, pin))
        base = f"http://127.0.0.1:{port}"
        token = token_for(base, client_id, secret)["access_token"]
        if token.count(".") != 2:
            raise BenchError(f"{store}: the token endpoint gave no JWT: {token[:60]!r}")
        basic = base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode())
        script = work / "grant.lua"
        script.write_text(WRK_LUA.format(basic=basic.decode()))
        url = base + "/oauth2/token"
        if profile.warmup_seconds:
            run_wrk(url, script, profile.warmup_seconds, profile, pin)
        runs = []
        for round_no in range(1, profile.rounds + 1):
            backends = pg_backends(database) if database is not None else []
            pg_before = backends_cpu(backends)
            before = cpu_seconds(pid)
            result = run_wrk(url, script, profile.seconds, profile, pin)
            spent = cpu_seconds(pid) - before
            # The pool may have opened backends during the run: theirs counts from 0.
            backends = pg_backends(database) if database is not None else []
            pg_after = backends_cpu(backends)
            pg_spent = sum(cpu - pg_before.get(b, 0.0) for b, cpu in pg_after.items())
            run = Run(
                store=store,
                round=round_no,
                grants_per_s=result.rps,
                p50_ms=result.p50_ms,
                p99_ms=result.p99_ms,
                grants=result.requests,
                cpu_seconds=spent,
                cpu_us_per_grant=spent * 1e6 / result.requests,
                pg_cpu_us_per_grant=pg_spent * 1e6 / result.requests if pg_after else None,
            )
            pg_note = (
                f" (+{run.pg_cpu_us_per_grant:.1f} in PostgreSQL)"
                if run.pg_cpu_us_per_grant is not None
                else ""
            )
            print(
                f"  {store:<10} round {round_no} {run.grants_per_s:>8.0f} grants/s "
                f"{run.cpu_us_per_grant:>8.1f} us CPU/grant{pg_note}",
                flush=True,
            )
            runs.append(run)
        return runs


def median_of(runs: list[Run]) -> dict[str, float | None]:
    keys = ("grants_per_s", "p50_ms", "p99_ms", "cpu_us_per_grant")
    out: dict[str, float | None] = {k: statistics.median(getattr(r, k) for r in runs) for k in keys}
    pg = [r.pg_cpu_us_per_grant for r in runs if r.pg_cpu_us_per_grant is not None]
    out["pg_cpu_us_per_grant"] = statistics.median(pg) if pg else None
    return out


def format_report(header: str, summary: dict[str, dict[str, Any]]) -> str:
    lines = [header, ""]
    lines.append(
        f"{'store':<12}{'grants/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/grant':>14}"
        f"{'+ PostgreSQL':>14}"
    )
    for store, s in summary.items():
        pg = s["pg_cpu_us_per_grant"]
        lines.append(
            f"{store:<12}{s['grants_per_s']:>10.0f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
            f"{s['cpu_us_per_grant']:>14.1f}{'-' if pg is None else f'{pg:.1f}':>14}"
        )
    lines.append(
        "(CPU us/grant: the restguard serve process; + PostgreSQL: its backends for this "
        "database alive at the end of a round, a lower bound: a backend that closed during the "
        "round took its CPU with it)"
    )
    lines += [
        "",
        f"{'target / anchor (grants/s)':<54}{'':>7}" + "".join(f"{s:>12}" for s in summary),
    ]
    rows = [(f"target: >= {TARGET_GRANTS:,.0f} grants/s, one core", TARGET_GRANTS, True)]
    rows += [(f"context: {name}", value, False) for name, value in ANCHORS]
    for label, value, is_target in rows:
        cells = []
        for s in summary.values():
            got = s["grants_per_s"]
            if is_target:
                cells.append("PASS" if got >= value else "MISS")
            else:
                cells.append(f"{got / value:.1f}x")
        lines.append(f"{label:<54}{value:>7,.0f}" + "".join(f"{c:>12}" for c in cells))
    lines += [
        "",
        f"introspections/s (target >= {TARGET_INTROSPECTIONS:,.0f}; Hydra 8,014): not measured, "
        "token introspection (RFC 7662) is not built yet",
    ]
    return "\n".join(lines)


def facts() -> dict[str, Any]:
    """``run.machine_facts``, or what is known without it (it runs ``nginx -v``)."""
    try:
        return machine_facts()
    except (OSError, IndexError) as exc:
        return {"error": str(exc)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (a few seconds)")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    use_tree_under_test()
    started = datetime.now(UTC)
    try:
        if find_tool("wrk") is None:
            raise BenchError("wrk is missing: apt-get install wrk")
        pin = pinning_available()
        runs = measure_store("sqlite", None, profile, pin)
        with postgres_database() as url:
            runs += measure_store("postgresql", url, profile, pin)
    except BenchError as err:
        print(f"oauth2 bench: could not measure: {err}", file=sys.stderr)
        return 2
    pinning = f"wrk on CPU {LOAD_CPU}, restguard serve on CPU {SERVER_CPU}" if pin else "no pinning"
    summary = {s: median_of([r for r in runs if r.store == s]) for s in ("sqlite", "postgresql")}
    header = (
        f"restguard oauth2 grants {started:%Y-%m-%d %H:%M} UTC: client_credentials, "
        f"client_secret_basic, POST /oauth2/token; {profile.rounds} round(s) x {profile.seconds}s,"
        f" wrk -t{profile.threads} -c{profile.connections}, one process, one worker, {pinning};"
        " medians"
    )
    print("\n" + format_report(header, summary))
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    data = {
        "date": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "profile": asdict(profile),
        "pinning": pinning,
        "machine": facts(),
        "median": summary,
        "target_grants_per_s": TARGET_GRANTS,
        "anchors_grants_per_s": dict(ANCHORS),
        "introspection": "not built yet: not measured",
        "runs": [asdict(r) for r in runs],
    }
    RESULTS_FILE.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
