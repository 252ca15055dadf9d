"""A bounded soak of restguard: mixed valid, invalid and attack requests across two instances.

    python bench/soak.py                      # 60 s, 32 concurrent clients, about 1.5 min in all
    python bench/soak.py --seconds 300        # longer
    python bench/soak.py --redis              # also [storage] redis = "redis://127.0.0.1:6379/0"
    python bench/soak.py --seconds 10 --warmup 3   # smoke

What it sets up: one data directory (``restguard init``) on a fresh PostgreSQL database
(127.0.0.1:5432, user ``postgres``, created here and dropped at the end), routes ``/public/**``
(public, GET and POST), ``/notes/**`` GET (scope ``notes:read``), ``/notes/**`` POST (scope
``notes:write``) and ``/limited/**`` GET (``notes:read``, ``rate_limit``); API keys with read,
read+write and a revoked one; an RFC 9421 hmac-sha256 app (signed with
``restguard.client.SignatureAuth``); an access token from restguard's own ``POST
/oauth2/token`` (client credentials). Two ``restguard serve`` processes run on that database and
master key, each from its own config file (own ports, own audit log; the same ``public_url``,
the issuer of the tokens either may sign), in front of one upstream: this script run again as a
subprocess (``--serve-upstream``, h11 on asyncio) that answers 200 to everything and counts what
it receives per request class (the ``X-Soak-Class`` header every request carries).

What it drives: ``--concurrency`` asyncio clients over raw keep-alive sockets (so that attack
shapes go out byte for byte), the two instances alternately, for ``--seconds``. Each request
belongs to a class with an expected status set (see ``CLASSES``): valid requests (200 from the
upstream), a missing, wrong, revoked or forged credential (401), an insufficient scope (403), no
route (404), encoded slash, encoded dots and ``..`` above the root in the path, a credential in
the query, duplicate
``Content-Length`` and ``Content-Length`` + ``Transfer-Encoding`` with a smuggled request in the
body (400), a ``/public/../notes/N`` without a credential (resolved to ``/notes/N``: 401, never
the public route), and every signed request sent again, alternately to the same and to the other
instance (401: nonces are single-use across instances). ``[server] failed_attempts`` is raised
(``--failed-attempts``) so that the failing classes keep getting their 401s; a 429 still counts
as a right deny for them.

A wrong decision is an answer outside the class's set, or the upstream having received a
request of a class that must be denied (or a smuggled one), or more requests of an allowed class
than were answered 200. Memory: VmRSS of each serve process (its process tree) from
/proc/PID/status at the end of ``--warmup`` and at the end of the load, every 5 s in between.

Prints a table per class (statuses, p50/p95/p99 latency, upstream receipts, wrong decisions) and
per instance (requests, req/s, latency, RSS, growth); writes ``bench/results/soak.json``.
Exit 1 when a decision was wrong or an instance's RSS grew by more than 5 % after the warm-up;
2 when something could not be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from run import (
    BENCH_DIR,
    BenchError,
    free_port,
    process,
    process_tree,
    restguard_cmd,
    run_checked,
    token_for,
    use_tree_under_test,
    wait_ready,
)

RESULTS_FILE = BENCH_DIR / "results" / "soak.json"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/"
PG_ADMIN_DB = "test"
REDIS_URL = "redis://127.0.0.1:6379/0"
HOST = "soak.test"  # every request's Host: the same authority on both instances
MAX_GROWTH = 0.05  # RSS growth after the warm-up
RATE_LIMIT = "600/minute"
MARK = "X-Soak-Class"
SMUGGLED = "smuggled-inner"  # the class of the request hidden in a smuggling attempt's body
REQUEST_TIMEOUT = 10.0

ROUTES = f"""\
[[routes]]
path = "/public/**"
methods = ["GET", "POST"]
public = true

[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]

[[routes]]
path = "/notes/**"
methods = ["POST"]
scopes = ["notes:write"]

[[routes]]
path = "/limited/**"
methods = ["GET"]
scopes = ["notes:read"]
rate_limit = "{RATE_LIMIT}"
"""


@dataclass(frozen=True)
class Class:
    """A request class: its expected statuses, whether the upstream may see it, its weight."""

    name: str
    expect: frozenset[int]
    allowed: bool  # may reach the upstream (only when answered 200)
    weight: int


def _cls(name: str, expect: set[int], allowed: bool, weight: int) -> Class:
    return Class(name, frozenset(expect), allowed, weight)


DENY_401 = {401, 429}  # a failing credential: 401, or 429 past failed_attempts
CLASSES = {
    c.name: c
    for c in (
        _cls("public", {200}, True, 10),
        _cls("key-read", {200}, True, 12),
        _cls("key-write", {200}, True, 6),
        _cls("oauth2-jwt", {200}, True, 8),
        _cls("signed", {200}, True, 6),
        _cls("rate-limited", {200, 429}, True, 4),
        _cls("missing-credential", DENY_401, False, 4),
        _cls("wrong-key", DENY_401, False, 4),
        _cls("forged-jwt", DENY_401, False, 2),
        _cls("revoked-key", DENY_401, False, 4),
        _cls("insufficient-scope", {403}, False, 4),
        _cls("no-route", {404}, False, 3),
        _cls("encoded-slash", {400}, False, 2),
        _cls("dot-segment", {400}, False, 2),
        _cls("dot-resolved", DENY_401, False, 2),
        _cls("query-credential", {400}, False, 2),
        _cls("duplicate-cl", {400}, False, 1),
        _cls("cl-te", {400}, False, 1),
        # every "signed" request sent again, alternately to the same and the other instance
        # (weight 0: never scheduled on their own)
        _cls("replay-same", DENY_401, False, 0),
        _cls("replay-other", DENY_401, False, 0),
    )
}


# ---------------------------------------------------------------------------------------------
# The upstream: a subprocess counting what it receives per class
# ---------------------------------------------------------------------------------------------


def serve_upstream(port: int) -> None:
    """Answer 200 ``{"ok":true}`` to every request; ``GET /__soak/counts`` (sent directly, not
    through a gateway) answers the counts per ``X-Soak-Class`` (and per smuggled path)."""
    import h11

    counts: Counter[str] = Counter()
    body = b'{"ok":true}'

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data and conn.their_state is not h11.SEND_BODY:
                        return
                    continue
                if isinstance(event, h11.Request):
                    target = event.target.decode("latin-1")
                    marks = [v for k, v in event.headers if k == b"x-soak-class"]
                    reply = body
                    if target == "/__soak/counts":
                        reply = json.dumps(counts).encode()
                    else:
                        counts[b",".join(marks).decode("latin-1") or "unmarked"] += 1
                    continue_with = reply
                elif isinstance(event, h11.EndOfMessage):
                    headers = [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(continue_with))),
                    ]
                    writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
                    writer.write(conn.send(h11.Data(data=continue_with)))
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (h11.RemoteProtocolError, ConnectionError):
            counts["upstream-protocol-error"] += 1
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def upstream_counts(port: int) -> Counter[str]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__soak/counts", timeout=5) as r:
        return Counter(json.loads(r.read()))


# ---------------------------------------------------------------------------------------------
# Setup: database, data directory, two configs, credentials
# ---------------------------------------------------------------------------------------------


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database ``restguard_soak_<pid>``, dropped (WITH FORCE) at the end."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        raise BenchError("psycopg is not installed (pip install -e '.[postgres]')") from None

    def admin() -> Any:
        try:
            return psycopg.connect(PG_SERVER + PG_ADMIN_DB, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            raise BenchError(f"PostgreSQL not reachable: {exc}") from None

    name = f"restguard_soak_{os.getpid()}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with admin() as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PG_SERVER + name
    finally:
        with admin() as conn:
            conn.execute(drop)


def edit_config(text: str, values: dict[tuple[str, str], str]) -> str:
    """``restguard init``'s config with ``values`` ((section, key) -> TOML value) set and its
    routes replaced by ``ROUTES``; every key must already be in the file."""
    head = text.split("\n[[routes]]", 1)[0]
    lines, section, done = [], "", set()
    for line in head.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]")
        else:
            key = stripped.split("=", 1)[0].strip()
            if (section, key) in values and "=" in stripped and not stripped.startswith("#"):
                line = f"{key} = {values[section, key]}"
                done.add((section, key))
        lines.append(line)
    if missing := set(values) - done:
        raise BenchError(f"restguard init's config has no {sorted(missing)}")
    return "\n".join(lines).rstrip() + "\n\n" + ROUTES


@dataclass
class Instance:
    name: str
    config: Path
    port: int
    admin_port: int
    pid: int = 0


@dataclass
class Credentials:
    read_key: str
    write_key: str  # notes:read and notes:write
    revoked_key: str
    wrong_key: str  # well-formed, valid checksum, never issued
    app_key_id: str
    app_secret: str
    client_id: str
    client_secret: str
    token: str = ""  # restguard's own access token (scope notes:read)
    token_expires: float = 0.0


def restguard_json(config: Path, *args: str) -> dict[str, Any]:
    return json.loads(run_checked([*restguard_cmd(), *args, "--config", str(config), "--json"]))


def setup(
    work: Path, database: str, redis: bool, failed_attempts: str, upstream: int
) -> tuple[list[Instance], Credentials]:
    data = work / "restguard"
    upstream_url = f"http://127.0.0.1:{upstream}"
    run_checked([*restguard_cmd(), "init", "--dir", str(data), "--upstream", upstream_url])
    text = (data / "restguard.toml").read_text()
    instances = []
    public_url = ""
    for name in ("A", "B"):
        port, admin_port = free_port(), free_port()
        public_url = public_url or f"http://127.0.0.1:{port}"
        values = {
            ("server", "listen"): json.dumps(f"127.0.0.1:{port}"),
            ("server", "public_url"): json.dumps(public_url),
            ("server", "failed_attempts"): json.dumps(failed_attempts),
            ("admin", "listen"): json.dumps(f"127.0.0.1:{admin_port}"),
            ("storage", "database"): json.dumps(database),
            ("storage", "redis"): json.dumps(REDIS_URL if redis else ""),
            ("audit", "path"): json.dumps(f"audit-{name}.log"),
        }
        config = data / f"restguard-{name}.toml"
        config.write_text(edit_config(text, values))
        instances.append(Instance(name, config, port, admin_port))
    from restguard.config import load

    for inst in instances:
        settings = load(inst.config)
        got = (settings.server.listen.port, settings.database_url, settings.redis_url)
        want = (inst.port, database, REDIS_URL if redis else "")
        if got != want:
            raise BenchError(f"{inst.config}: gives {got}, expected {want}")
    config = instances[0].config
    read = restguard_json(
        config, "apikey", "create", "--name", "soak-read", "--scope", "notes:read"
    )
    write = restguard_json(
        config, "apikey", "create", "--name", "soak-rw", "--scope", "notes:read", "--scope",
        "notes:write",
    )  # fmt: skip
    revoked = restguard_json(config, "apikey", "create", "--name", "soak-revoked", "--scope",
                             "notes:read")  # fmt: skip
    run_checked([*restguard_cmd(), "apikey", "revoke", revoked["id"], "--config", str(config)])
    app = restguard_json(config, "app", "create", "--name", "soak-app", "--scope", "notes:read")
    client = restguard_json(
        config, "oauth2", "client", "create", "--name", "soak", "--scope", "notes:read",
        "--grant", "client_credentials",
    )  # fmt: skip
    from restguard.credentials.apikey import generate_key

    creds = Credentials(
        read_key=read["key"],
        write_key=write["key"],
        revoked_key=revoked["key"],
        wrong_key=generate_key()[1],
        app_key_id=app["key_id"],
        app_secret=app["secret"],
        client_id=client["client_id"],
        client_secret=client["client_secret"],
    )
    return instances, creds


def refresh_token(creds: Credentials, base: str) -> None:
    """A fresh access token when none is held or it expires within a minute."""
    if time.monotonic() < creds.token_expires - 60:
        return
    answer = token_for(base, creds.client_id, creds.client_secret, "notes:read")
    creds.token = answer["access_token"]
    creds.token_expires = time.monotonic() + float(answer.get("expires_in", 300))


# ---------------------------------------------------------------------------------------------
# Requests, byte for byte
# ---------------------------------------------------------------------------------------------


def raw(method: str, target: str, cls: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}", f"{MARK}: {cls}", *headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def smuggled() -> bytes:
    return f"GET /public/smuggled HTTP/1.1\r\nHost: {HOST}\r\n{MARK}: {SMUGGLED}\r\n\r\n".encode()


class Builder:
    """The bytes of one request of each class (fresh ids, nonces and timestamps per call)."""

    def __init__(self, creds: Credentials) -> None:
        from restguard.client import SignatureAuth

        self.creds = creds
        self.signer = SignatureAuth(creds.app_key_id, creds.app_secret)
        self.n = 0

    def signed(self, cls: str) -> bytes:
        import httpx

        request = httpx.Request("GET", f"http://{HOST}/notes/signed/{self.n}", headers={MARK: cls})
        request = next(self.signer.auth_flow(request))
        lines = [f"GET /notes/signed/{self.n} HTTP/1.1"]
        lines += [f"{k.decode()}: {v.decode()}" for k, v in request.headers.raw]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def build(self, cls: str) -> bytes:
        self.n += 1
        n, c = self.n, self.creds
        body = b'{"text":"soak"}'
        match cls:
            case "public":
                return raw("GET", f"/public/item/{n}", cls)
            case "key-read":
                return raw("GET", f"/notes/{n}", cls, f"X-API-Key: {c.read_key}")
            case "key-write":
                return raw(
                    "POST", f"/notes/{n}", cls, f"Authorization: Bearer {c.write_key}",
                    "Content-Type: application/json", body=body,
                )  # fmt: skip
            case "oauth2-jwt":
                return raw("GET", f"/notes/{n}", cls, f"Authorization: Bearer {c.token}")
            case "signed":
                return self.signed(cls)
            case "rate-limited":
                return raw("GET", f"/limited/{n}", cls, f"X-API-Key: {c.read_key}")
            case "missing-credential":
                return raw("GET", f"/notes/{n}", cls)
            case "wrong-key":
                return raw("GET", f"/notes/{n}", cls, f"X-API-Key: {c.wrong_key}")
            case "forged-jwt":
                head, payload, _sig = c.token.split(".")
                forged = f"{head}.{payload}.{'A' * 86}"
                return raw("GET", f"/notes/{n}", cls, f"Authorization: Bearer {forged}")
            case "revoked-key":
                return raw("GET", f"/notes/{n}", cls, f"X-API-Key: {c.revoked_key}")
            case "insufficient-scope":
                return raw(
                    "POST", f"/notes/{n}", cls, f"X-API-Key: {c.read_key}",
                    "Content-Type: application/json", body=body,
                )  # fmt: skip
            case "no-route":
                return raw("GET", f"/admin/{n}", cls, f"X-API-Key: {c.write_key}")
            case "encoded-slash":
                return raw("GET", f"/notes/{n}%2F..%2Fsecret", cls, f"X-API-Key: {c.read_key}")
            case "dot-segment":  # encoded dots, or ".." above the root: 400
                target = f"/public/%2e%2e/notes/{n}" if n % 2 else f"/../notes/{n}"
                return raw("GET", target, cls)
            case "dot-resolved":  # resolved to /notes/N, which needs a credential: 401
                return raw("GET", f"/public/../notes/{n}", cls)
            case "query-credential":
                return raw("GET", f"/public/item/{n}?api_key={c.read_key}", cls)
            case "duplicate-cl":  # which length frames the body? neither: 400
                inner = smuggled()
                head = raw("GET", f"/public/item/{n}", cls, "Content-Length: 0",
                           f"Content-Length: {len(inner)}")  # fmt: skip
                return head.replace(b"GET ", b"POST ", 1) + inner
            case "cl-te":  # Content-Length and chunked: 400, never one of them
                chunked = b"0\r\n\r\n" + smuggled()
                head = raw("GET", f"/public/item/{n}", cls, f"Content-Length: {len(chunked)}",
                           "Transfer-Encoding: chunked")  # fmt: skip
                return head.replace(b"GET ", b"POST ", 1) + chunked
        raise AssertionError(cls)


# ---------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client on asyncio streams
# ---------------------------------------------------------------------------------------------


class Closed(Exception):
    """The connection closed before an answer began."""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, must close) of one response, its body read and dropped."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise Closed from None
        raise
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip().lower()
    close = headers.get("connection") == "close"
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif status >= 200 and status not in (204, 304):
        await reader.read()
        close = True
    return status, close


class Conn:
    """One keep-alive connection to an instance, reopened when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reused = False

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def send(self, data: bytes, fresh: bool = False) -> int:
        """The status of ``data``'s answer; 0 when the connection closed or reset without one.
        A keep-alive connection found closed before any answer is retried once on a new one."""
        if fresh:
            await self.close()
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.reused = False
            assert self.reader is not None
            try:
                self.writer.write(data)
                status, close = await read_response(self.reader)
            except Closed:
                await self.close()
                if attempt == 1 and self.reused:  # an idle connection the server had closed
                    continue
                return 0
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                return 0
            self.reused = True
            if close or fresh:
                await self.close()
            return status
        return 0


# ---------------------------------------------------------------------------------------------
# The load
# ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: int = 0  # timeouts


class Load:
    def __init__(
        self, instances: list[Instance], creds: Credentials, seed: int, only: set[str]
    ) -> None:
        self.instances = instances
        self.creds = creds
        self.tally: dict[tuple[str, str], Tally] = defaultdict(Tally)  # (instance, class)
        schedule = [
            c.name for c in CLASSES.values() if not only or c.name in only for _ in range(c.weight)
        ]
        random.Random(seed).shuffle(schedule)
        self.schedule = schedule
        self.turn = 0

    async def one(self, conn: Conn, inst: Instance, cls: str, data: bytes) -> int:
        fresh = cls in ("duplicate-cl", "cl-te")  # a connection of their own
        start = time.perf_counter()
        tally = self.tally[inst.name, cls]
        try:
            status = await asyncio.wait_for(conn.send(data, fresh), REQUEST_TIMEOUT)
        except TimeoutError:
            await conn.close()
            tally.errors += 1
            return -1
        tally.latencies.append(time.perf_counter() - start)
        tally.statuses[status] += 1
        return status

    async def worker(self, index: int, until: float) -> None:
        builder = Builder(self.creds)
        conns = {i.name: Conn(i.port) for i in self.instances}
        position, replays = index * 7, 0
        try:
            while time.monotonic() < until:
                cls = self.schedule[position % len(self.schedule)]
                position += 1
                inst = self.instances[self.turn % len(self.instances)]
                self.turn += 1
                data = builder.build(cls)
                await self.one(conns[inst.name], inst, cls, data)
                if cls == "signed":
                    # the same bytes again (X-Soak-Class is not signed), alternately to the
                    # same instance and to the other one
                    replays += 1
                    again, name = inst, "replay-same"
                    if replays % 2:
                        again = self.instances[
                            (self.instances.index(inst) + 1) % len(self.instances)
                        ]
                        name = "replay-other"
                    replay = data.replace(b"signed\r\n", name.encode() + b"\r\n", 1)
                    await self.one(conns[again.name], again, name, replay)
        finally:
            for conn in conns.values():
                await conn.close()


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid``'s process tree, KiB."""
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


async def drive(
    load: Load, seconds: float, warmup: float, concurrency: int, base: str
) -> dict[str, list[tuple[float, int]]]:
    """Run the load; RSS samples per instance: (seconds since start, KiB), the first at the
    end of the warm-up and the last at the end."""
    start = time.monotonic()
    until = start + seconds
    samples: dict[str, list[tuple[float, int]]] = {i.name: [] for i in load.instances}

    async def sampler() -> None:
        await asyncio.sleep(warmup)
        while True:
            for inst in load.instances:
                samples[inst.name].append((time.monotonic() - start, rss_kib(inst.pid)))
            now = time.monotonic()
            done = int(sum(sum(t.statuses.values()) for t in load.tally.values()))
            print(
                f"  t={now - start:5.0f}s  {done:>8} requests  RSS "
                + "  ".join(f"{n} {s[-1][1] / 1024:.1f} MiB" for n, s in samples.items()),
                flush=True,
            )
            # the token outlives most runs; refreshed off the load's path when it must be
            await asyncio.to_thread(refresh_token, load.creds, base)
            await asyncio.sleep(min(5.0, max(0.0, until - time.monotonic())))
            if time.monotonic() >= until:
                return

    sample_task = asyncio.create_task(sampler())
    await asyncio.gather(*(load.worker(i, until) for i in range(concurrency)))
    if not sample_task.done():
        sample_task.cancel()
    for inst in load.instances:
        samples[inst.name].append((time.monotonic() - start, rss_kib(inst.pid)))
    return samples


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def judge(load: Load, received: Counter[str]) -> dict[str, dict[str, Any]]:
    """Per class: statuses, latencies, upstream receipts and wrong decisions."""
    out = {}
    for cls in CLASSES.values():
        tallies = [load.tally[i.name, cls.name] for i in load.instances]
        statuses: Counter[int] = sum((t.statuses for t in tallies), Counter())
        outside = sum(n for s, n in statuses.items() if s not in cls.expect)
        got = received.get(cls.name, 0)
        allowed = statuses.get(200, 0)
        leaked = got if not cls.allowed else max(0, got - allowed)
        lat = [x for t in tallies for x in t.latencies]
        out[cls.name] = {
            "expect": sorted(cls.expect),
            "requests": sum(statuses.values()),
            "statuses": dict(sorted(statuses.items())),
            "timeouts": sum(t.errors for t in tallies),
            "upstream": got,
            "wrong": outside + leaked,
            "wrong_status": outside,
            "reached_upstream_wrongly": leaked,
            "p50_ms": pct(lat, 0.50),
            "p95_ms": pct(lat, 0.95),
            "p99_ms": pct(lat, 0.99),
            "p99_ms_by_instance": {
                i.name: pct(load.tally[i.name, cls.name].latencies, 0.99) for i in load.instances
            },
        }
    return out


def rate_budget(allowed: int, elapsed: float) -> dict[str, Any]:
    """The rate-limited class's 200s against what GCRA allows: ``limit`` at once and ``limit``
    per window after that, whatever instance or worker counts it (the counter is shared: the
    database's, or Redis's). Beyond that is a wrong decision."""
    from restguard.config_base import parse_rate

    limit, window = parse_rate(RATE_LIMIT)
    most = int(limit + limit * (elapsed + 5.0) / window)  # + 5 s: the probe before the load
    return {"allowed": allowed, "limit": RATE_LIMIT, "most": most, "wrong": max(0, allowed - most)}


def format_report(
    header: str,
    classes: dict[str, dict[str, Any]],
    instances: dict[str, dict[str, Any]],
    extra: dict[str, int],
    budget: dict[str, Any],
) -> str:
    names = [n for n in instances if n != "total"]
    lines = [header, ""]
    lines.append(
        f"{'class':<20}{'expect':<10}{'requests':>9}  {'statuses':<22}{'p50 ms':>8}{'p95 ms':>8}"
        f"{'p99 ms':>8}" + "".join(f"{'p99 ' + n:>8}" for n in names) + f"{'upstream':>9}"
        f"{'wrong':>7}"
    )
    for name, c in classes.items():
        statuses = " ".join(f"{s}:{n}" for s, n in c["statuses"].items())
        if c["timeouts"]:
            statuses += f" t/o:{c['timeouts']}"
        lines.append(
            f"{name:<20}{'/'.join(map(str, c['expect'])):<10}{c['requests']:>9}  {statuses:<22}"
            f"{c['p50_ms']:>8.2f}{c['p95_ms']:>8.2f}{c['p99_ms']:>8.2f}"
            + "".join(f"{c['p99_ms_by_instance'][n]:>8.2f}" for n in names)
            + f"{c['upstream']:>9}{c['wrong']:>7}"
        )
    for name, n in extra.items():
        lines.append(f"{name:<20}{'-':<10}{'':>9}  {'':<22}{'':>24}{'':>{8 * len(names)}}"
                     f"{n:>9}{n:>7}")  # fmt: skip
    lines.append(
        f"rate-limited: {budget['allowed']} allowed ({budget['limit']} per API key, one count "
        f"across the instances): at most {budget['most']} may be"
        + (f", {budget['wrong']} beyond (wrong)" if budget["wrong"] else "")
    )
    lines += [
        "",
        f"{'instance':<10}{'requests':>10}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
        f"{'wrong':>7}{'RSS warm MiB':>14}{'RSS end MiB':>13}{'RSS max MiB':>13}{'growth':>9}"
        f"{'2nd half':>10}",
    ]
    for name, s in instances.items():
        lines.append(
            f"{name:<10}{s['requests']:>10}{s['rps']:>8.0f}{s['p50_ms']:>8.2f}{s['p95_ms']:>8.2f}"
            f"{s['p99_ms']:>8.2f}{s['wrong']:>7}"
            + (
                f"{s['rss_warm_kib'] / 1024:>14.1f}{s['rss_end_kib'] / 1024:>13.1f}"
                f"{s['rss_max_kib'] / 1024:>13.1f}{s['growth'] * 100:>+8.1f}%"
                f"{s['growth_second_half'] * 100:>+9.1f}%"
                if "growth" in s
                else ""
            )
        )
    return "\n".join(lines)


def summarize(
    load: Load,
    classes: dict[str, dict[str, Any]],
    samples: dict[str, list[tuple[float, int]]],
    elapsed: float,
    extra_wrong: int,
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    all_lat: list[float] = []
    total_wrong = extra_wrong
    for inst in load.instances:
        tallies = {c: load.tally[inst.name, c] for c in CLASSES}
        lat = [x for t in tallies.values() for x in t.latencies]
        all_lat += lat
        wrong = sum(
            n
            for c, t in tallies.items()
            for s, n in t.statuses.items()
            if s not in CLASSES[c].expect
        )
        requests = sum(sum(t.statuses.values()) for t in tallies.values())
        rss = [kib for _, kib in samples[inst.name]]
        # the second half of the measured window alone: a cache filling up flattens there, a
        # leak keeps its slope
        t_mid = (samples[inst.name][0][0] + samples[inst.name][-1][0]) / 2
        mid = next(kib for t, kib in samples[inst.name] if t >= t_mid)
        out[inst.name] = {
            "requests": requests,
            "rps": requests / elapsed,
            "p50_ms": pct(lat, 0.5),
            "p95_ms": pct(lat, 0.95),
            "p99_ms": pct(lat, 0.99),
            "wrong": wrong,
            "rss_warm_kib": rss[0],
            "rss_end_kib": rss[-1],
            "rss_max_kib": max(rss),
            "growth": (rss[-1] - rss[0]) / rss[0],
            "growth_second_half": (rss[-1] - mid) / mid,
            "rss_samples": samples[inst.name],
        }
    total_wrong += sum(c["wrong"] for c in classes.values())
    requests = sum(s["requests"] for s in out.values())
    out["total"] = {
        "requests": requests,
        "rps": requests / elapsed,
        "p50_ms": pct(all_lat, 0.5),
        "p95_ms": pct(all_lat, 0.95),
        "p99_ms": pct(all_lat, 0.99),
        "wrong": total_wrong,  # also counts requests that reached the upstream wrongly
    }
    return out


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def check_classes(instances: list[Instance], creds: Credentials) -> None:
    """One request of each class to each instance before the load: fail fast when the setup
    is wrong (these are counted in the upstream's totals, which the load subtracts)."""

    async def probe() -> list[str]:
        problems = []
        builder = Builder(creds)
        for inst in instances:
            conn = Conn(inst.port)
            for cls in CLASSES.values():
                if cls.weight == 0:
                    continue
                fresh = cls.name in ("duplicate-cl", "cl-te")
                data = builder.build(cls.name)
                status = await asyncio.wait_for(conn.send(data, fresh), REQUEST_TIMEOUT)
                if status not in cls.expect:
                    problems.append(f"{inst.name} {cls.name}: {status}, expected {set(cls.expect)}")
            await conn.close()
        return problems

    problems = asyncio.run(probe())
    if problems:
        raise BenchError("the classes do not answer as expected before the load:\n  "
                         + "\n  ".join(problems))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration (60)")
    parser.add_argument("--warmup", type=float, default=15.0, help="before the first RSS sample")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers per instance")
    parser.add_argument("--redis", action="store_true", help=f"[storage] redis = {REDIS_URL}")
    parser.add_argument("--failed-attempts", default="1000000/minute",
                        help="[server] failed_attempts (default 1000000/minute)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only", default="", help="comma-separated classes to send (default: all; to isolate one)"
    )
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    only = {c for c in args.only.split(",") if c}
    if unknown := only - {c.name for c in CLASSES.values() if c.weight}:
        parser.error(f"--only: unknown classes {sorted(unknown)}")
    if args.warmup >= args.seconds:
        parser.error("--warmup must be shorter than --seconds")
    use_tree_under_test()
    started = datetime.now(UTC)
    try:
        with ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rg-soak-")))
            up_port = free_port()
            up_cmd = [sys.executable, __file__, "--serve-upstream", str(up_port)]
            up = stack.enter_context(process(up_cmd, work / "upstream.log"))
            wait_ready(f"http://127.0.0.1:{up_port}/__soak/counts", up, work / "upstream.log")
            database = stack.enter_context(postgres_database())
            instances, creds = setup(work, database, args.redis, args.failed_attempts, up_port)
            for inst in instances:
                cmd = [*restguard_cmd(), "serve", "--config", str(inst.config)]
                cmd += ["--workers", str(args.workers)]
                log = work / f"serve-{inst.name}.log"
                proc = stack.enter_context(process(cmd, log))
                wait_ready(f"http://127.0.0.1:{inst.port}/public/ready", proc, log)
                inst.pid = proc.pid
            base = f"http://127.0.0.1:{instances[0].port}"
            refresh_token(creds, base)
            check_classes(instances, creds)
            before = upstream_counts(up_port)
            load = Load(instances, creds, args.seed, only)
            print(
                f"soak: {args.seconds:.0f} s, {args.concurrency} clients, instances "
                + ", ".join(f"{i.name} :{i.port} (pid {i.pid})" for i in instances)
                + f", redis {'on' if args.redis else 'off'}",
                flush=True,
            )
            t0 = time.monotonic()
            samples = asyncio.run(drive(load, args.seconds, args.warmup, args.concurrency, base))
            elapsed = time.monotonic() - t0
            time.sleep(0.5)  # anything still in flight to the upstream lands
            received = upstream_counts(up_port) - before
            for inst in instances:
                log = work / f"serve-{inst.name}.log"
                errors = [
                    line for line in log.read_text(errors="replace").splitlines()
                    if "Traceback" in line or " ERROR " in line or '"level": "error"' in line
                ]  # fmt: skip
                if errors:
                    print(f"serve {inst.name}: {len(errors)} error line(s), first: {errors[0]}")
    except BenchError as err:
        print(f"soak: could not measure: {err}", file=sys.stderr)
        return 2
    classes = judge(load, received)
    known = set(CLASSES)
    extra = {k: n for k, n in received.items() if k not in known and n}
    allowed = classes["rate-limited"]["statuses"].get(200, 0)
    budget = rate_budget(allowed, elapsed)
    summary = summarize(load, classes, samples, elapsed, sum(extra.values()) + budget["wrong"])
    header = (
        f"restguard soak {started:%Y-%m-%d %H:%M} UTC: {elapsed:.0f} s, {args.concurrency} "
        f"clients, 2 instances x {args.workers} worker(s) on PostgreSQL, redis "
        f"{'on' if args.redis else 'off'}, failed_attempts {args.failed_attempts}; latency over "
        f"the whole run, RSS from t={args.warmup:.0f}s"
    )
    print("\n" + format_report(header, classes, summary, extra, budget))
    total = summary["total"]
    grown = [n for n, s in summary.items() if s.get("growth", 0) > MAX_GROWTH]
    print(
        f"\ntotal: {total['requests']} requests, {total['rps']:.0f} req/s, p99 "
        f"{total['p99_ms']:.2f} ms, wrong decisions {total['wrong']}"
        f" ({'PASS' if total['wrong'] == 0 else 'FAIL'}), RSS growth after warm-up "
        + ", ".join(f"{n} {s['growth'] * 100:+.1f}%" for n, s in summary.items() if "growth" in s)
        + f" ({'FAIL: ' + ', '.join(grown) if grown else 'PASS'}, limit {MAX_GROWTH:.0%}); in "
        "the window's second half "
        + ", ".join(
            f"{n} {s['growth_second_half'] * 100:+.1f}%"
            for n, s in summary.items()
            if "growth" in s
        )
    )
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    data = {
        "date": started.isoformat(timespec="seconds"),
        "args": vars(args),
        "classes": classes,
        "instances": summary,
        "unexpected_upstream": extra,
        "rate_limit": budget,
    }
    RESULTS_FILE.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {RESULTS_FILE}")
    return 1 if total["wrong"] or grown else 0


if __name__ == "__main__":
    sys.exit(main())
