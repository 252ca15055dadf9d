"""restguard's token and introspection endpoints under load: client credentials grants/s and
introspections/s on SQLite and PostgreSQL.

    python bench/oauth2_grants.py            # full: 2 s warm-up, 3 rounds x 10 s per endpoint/store
    python bench/oauth2_grants.py --quick    # smoke: 1 round x 1 s per endpoint/store, no warm-up

One ``restguard serve`` (one process, one worker) from ``restguard init``, first on its SQLite
store, then on a fresh PostgreSQL database (127.0.0.1:5432, user ``postgres``, created here and
dropped at the end). A client made with ``restguard oauth2 client create --grant
client_credentials`` is driven by wrk with a Lua script: ``POST /oauth2/token``,
``grant_type=client_credentials``, ``client_secret_basic``. Each answer is a new signed access
token (RFC 9068 JWT) after one client read from the store and one SHA-256 check of the secret.
Then, on the same gateway, the same client introspects one of its own tokens (fetched once from
``/oauth2/token``): ``POST /oauth2/introspect`` (RFC 7662), body ``token=...``,
``client_secret_basic``; the answer is checked to be 200 with ``"active": true`` before the
warm-up and again after the last round (wrk only sees the status).

Reported per endpoint and store: requests/s, p50/p99 latency and the CPU of the ``restguard
serve`` process per request (``bench/run.py``'s accounting: utime+stime from /proc, the serve
process on CPU 1, wrk on CPU 0); the median of the rounds. Against the targets (>= 1,000 grants/s
and >= 3,000 introspections/s on one core) and, as context, Hydra's published 407 grants/s
(bcrypt-hashed secrets) and 8,014 introspections/s, and Keycloak's sizing of 120 grants/s per
vCPU. Results also go to ``bench/results/oauth2.json``. Exit 2 when something could not be
measured.
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
TARGET_INTROSPECTIONS = 3000.0  # introspections/s on one core (issue 9)
ANCHORS = (
    ("Hydra, published (bcrypt-hashed client secrets)", 407.0),
    ("Keycloak sizing, per vCPU", 120.0),
)
INTROSPECTION_ANCHORS = (("Hydra, published", 8014.0),)
WRK_LUA = """\
wrk.method = "POST"
wrk.body = "{body}"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic {basic}"
"""


@dataclass(frozen=True)
class Endpoint:
    """One measured endpoint: its name in the report (a plural: "grants"), its path, its
    target and context anchors (requests/s)."""

    name: str
    path: str
    target: float
    anchors: tuple[tuple[str, float], ...]

    @property
    def unit(self) -> str:
        return self.name[:-1]  # "grant", "introspection"


GRANTS = Endpoint("grants", "/oauth2/token", TARGET_GRANTS, ANCHORS)
INTROSPECTIONS = Endpoint(
    "introspections", "/oauth2/introspect", TARGET_INTROSPECTIONS, INTROSPECTION_ANCHORS
)
ENDPOINTS = (GRANTS, INTROSPECTIONS)
STORES = ("sqlite", "postgresql")


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
    endpoint: str  # "grants" or "introspections"
    store: str
    round: int
    per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_seconds: float
    cpu_us_per_request: float
    # PostgreSQL only: its backends serving this database (not in the serve process's CPU)
    pg_cpu_us_per_request: float | None = None


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


def introspect(base: str, basic: str, token: str) -> dict[str, Any]:
    """``POST {base}/oauth2/introspect`` of ``token`` with ``client_secret_basic``: the answer
    if it is 200 with ``"active": true``, else BenchError."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        base + INTROSPECTIONS.path,
        data=f"token={quote_plus(token)}".encode(),
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except OSError as err:
        raise BenchError(f"POST {request.full_url}: {err}") from None
    try:
        answer = json.loads(body) if status == 200 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("active") is not True:
        raise BenchError(f"POST {request.full_url}: {status} {body[:200]!r}, expected 200 active")
    return answer


def measure(
    endpoint: Endpoint,
    store: str,
    database: str | None,
    target: tuple[str, Path, int],
    profile: Profile,
    pin: bool,
) -> list[Run]:
    """Warm up and run the rounds of ``endpoint`` against the started gateway ``target``
    (url, wrk script, serve pid)."""
    url, script, pid = target
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
            endpoint=endpoint.name,
            store=store,
            round=round_no,
            per_s=result.rps,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            requests=result.requests,
            cpu_seconds=spent,
            cpu_us_per_request=spent * 1e6 / result.requests,
            pg_cpu_us_per_request=pg_spent * 1e6 / result.requests if pg_after else None,
        )
        pg_note = (
            f" (+{run.pg_cpu_us_per_request:.1f} in PostgreSQL)"
            if run.pg_cpu_us_per_request is not None
            else ""
        )
        print(
            f"  {store:<10} {endpoint.name:<14} round {round_no} {run.per_s:>8.0f}/s "
            f"{run.cpu_us_per_request:>8.1f} us CPU/{endpoint.unit}{pg_note}",
            flush=True,
        )
        runs.append(run)
    return runs


def measure_store(store: str, database: str | None, profile: Profile, pin: bool) -> list[Run]:
    """Start one gateway on ``database`` (None: init's SQLite); check one grant, measure the
    grants; fetch one token, check its introspection, measure the introspections."""
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rg-o2bench-")))
        config, port, client_id, secret = setup(work, database)
        pid = stack.enter_context(restguard(config, port, pin))
        base = f"http://127.0.0.1:{port}"
        token = token_for(base, client_id, secret)["access_token"]
        if token.count(".") != 2:
            raise BenchError(f"{store}: the token endpoint gave no JWT: {token[:60]!r}")
        basic = base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()).decode()
        grant = work / "grant.lua"
        grant.write_text(WRK_LUA.format(body="grant_type=client_credentials", basic=basic))
        runs = measure(GRANTS, store, database, (base + GRANTS.path, grant, pid), profile, pin)

        # A fresh token (900 s lifetime: valid through the rounds), introspected by its client.
        token = token_for(base, client_id, secret)["access_token"]
        answer = introspect(base, basic, token)
        if answer.get("client_id") != client_id:
            raise BenchError(f"{store}: introspection of the client's own token: {answer}")
        script = work / "introspect.lua"
        script.write_text(WRK_LUA.format(body=f"token={quote_plus(token)}", basic=basic))
        target = (base + INTROSPECTIONS.path, script, pid)
        runs += measure(INTROSPECTIONS, store, database, target, profile, pin)
        introspect(base, basic, token)  # still active: wrk measured active answers
        return runs


def median_of(runs: list[Run]) -> dict[str, float | None]:
    keys = ("per_s", "p50_ms", "p99_ms", "cpu_us_per_request")
    out: dict[str, float | None] = {k: statistics.median(getattr(r, k) for r in runs) for k in keys}
    pg = [r.pg_cpu_us_per_request for r in runs if r.pg_cpu_us_per_request is not None]
    out["pg_cpu_us_per_request"] = statistics.median(pg) if pg else None
    return out


def format_report(header: str, summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """``summary``: endpoint name -> store -> medians."""
    lines = [header, ""]
    lines.append(
        f"{'endpoint':<16}{'store':<12}{'per s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU us/req':>12}{'+ PostgreSQL':>14}"
    )
    for endpoint in ENDPOINTS:
        for store, s in summary[endpoint.name].items():
            pg = s["pg_cpu_us_per_request"]
            lines.append(
                f"{endpoint.name:<16}{store:<12}{s['per_s']:>10.0f}{s['p50_ms']:>9.2f}"
                f"{s['p99_ms']:>9.2f}{s['cpu_us_per_request']:>12.1f}"
                f"{'-' if pg is None else f'{pg:.1f}':>14}"
            )
    lines.append(
        "(CPU us/req: the restguard serve process; + PostgreSQL: its backends for this "
        "database alive at the end of a round, a lower bound: a backend that closed during the "
        "round took its CPU with it)"
    )
    for endpoint in ENDPOINTS:
        stores = summary[endpoint.name]
        lines += [
            "",
            f"{f'target / anchor ({endpoint.name}/s)':<54}{'':>7}"
            + "".join(f"{s:>12}" for s in stores),
        ]
        rows = [
            (
                f"target: >= {endpoint.target:,.0f} {endpoint.name}/s, one core",
                endpoint.target,
                True,
            )
        ]
        rows += [(f"context: {name}", value, False) for name, value in endpoint.anchors]
        for label, value, is_target in rows:
            cells = []
            for s in stores.values():
                got = s["per_s"]
                if is_target:
                    cells.append("PASS" if got >= value else "MISS")
                else:
                    cells.append(f"{got / value:.2f}x")
            lines.append(f"{label:<54}{value:>7,.0f}" + "".join(f"{c:>12}" for c in cells))
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
    summary = {
        e.name: {
            s: median_of([r for r in runs if r.endpoint == e.name and r.store == s]) for s in STORES
        }
        for e in ENDPOINTS
    }
    header = (
        f"restguard oauth2 {started:%Y-%m-%d %H:%M} UTC: client_credentials grants (POST "
        "/oauth2/token) and introspections of the client's own token (POST /oauth2/introspect), "
        f"client_secret_basic; {profile.rounds} round(s) x {profile.seconds}s,"
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
        "targets_per_s": {e.name: e.target for e in ENDPOINTS},
        "anchors_per_s": {e.name: dict(e.anchors) for e in ENDPOINTS},
        "runs": [asdict(r) for r in runs],
    }
    RESULTS_FILE.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
