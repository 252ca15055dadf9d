"""The gateway's own CPU per request, route by route, without sockets.

    python bench/gateway_cpu.py            # 5 interleaved rounds x 10,000 requests per route
    python bench/gateway_cpu.py --quick    # 1 round x 1,000 (a smoke run)

``bench/run.py`` measures the gateway as a process behind real sockets: its numbers include
the kernel (loopback delivery, wakeups, and the context switches of a proxy that shares its
core with the upstream), and they swing with the machine. This script measures only what
restguard's own code costs. It builds the gateway exactly as ``restguard serve`` does (from a
``restguard init`` directory, with the bench routes: ``open_runtime``, the metrics sink, the
audit log, identity headers, ``make_gateway``, the collector settled) and drives its real
client connections with in-memory transports: 32 connections, each sending its next request
when its answer arrives, and a pool of upstream connections whose transport answers every
request with nginx's ``200 {"ok":true}`` on the loop's next turn. Parsing, the decision, the
header hygiene, the upstream exchange, the audit line and the metrics all run; no byte
touches a socket (Redis and the database still do, where a route needs them).

The number is the process's CPU time (user + system, every thread: the audit writer and the
store's too) per request, the median of the rounds; ratios are to the public route in the
same round. Routes: public, API key, JWT (RS256, keys held), restguard's own OAuth 2.0 access
tokens (a JWT, and an opaque ``rg_at_`` token; issued by the gateway's own ``AccessTokens`` to
the bench's client-credentials clients, as its token endpoint would), API key with a Redis rate
limit, and RFC 9421 signed GETs (hmac-sha256, a fresh nonce each) with the nonces in Redis and,
in a second gateway on the same data without ``[storage] redis``, in the database (batched).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import run as bench

bench.use_tree_under_test()

from restguard.cli.serve import settle_garbage_collector  # noqa: E402
from restguard.config import load  # noqa: E402
from restguard.credentials.opaque_tokens import OpaqueTokens  # noqa: E402
from restguard.gateway.http1 import ClientConnection  # noqa: E402
from restguard.gateway.identity import IdentityHeaders  # noqa: E402
from restguard.gateway.server import Gateway, make_gateway  # noqa: E402
from restguard.gateway.upstream import UpstreamConnection  # noqa: E402
from restguard.oauth2.access_tokens import AccessTokens  # noqa: E402
from restguard.observe import Metrics  # noqa: E402
from restguard.wiring import open_runtime  # noqa: E402

AUTHORITY = "127.0.0.1:8080"
CONNECTIONS = 32
ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 11\r\n"
    b"Connection: keep-alive\r\n\r\n" + bench.UPSTREAM_BODY.encode()
)


@dataclass(frozen=True)
class Route:
    """One measured route: its requests come from ``requests`` (a fresh one per call)."""

    name: str
    label: str
    requests: Callable[[], Callable[[], bytes]]


def request(path: str, *headers: str) -> bytes:
    lines = "".join(h + "\r\n" for h in headers)
    return f"GET {path} HTTP/1.1\r\nHost: {AUTHORITY}\r\nUser-Agent: wrk\r\n{lines}\r\n".encode()


def same(data: bytes) -> Callable[[], Callable[[], bytes]]:
    return lambda: lambda: data


def signed(signer: bench.Signer, count: int) -> Callable[[], Callable[[], bytes]]:
    """``count`` signed GETs made before the clock starts, each with its own nonce."""

    def make() -> Callable[[], bytes]:
        created = int(time.time())
        tag = time.monotonic_ns()
        made = iter(
            [
                request(signer.path, f"Signature-Input: {si}", f"Signature: {sg}")
                for si, sg in (signer.sign(created, f"g{tag}n{n}") for n in range(count))
            ]
        )
        return lambda: next(made)

    return make


class UpstreamTransport:
    """Answers each request written to it on the loop's next turn."""

    def __init__(self, conn: UpstreamConnection) -> None:
        self.conn, self.closing = conn, False

    def write(self, data: bytes) -> None:
        if data.endswith(b"\r\n\r\n"):  # (a GET's head: the whole request)
            asyncio.get_running_loop().call_soon(self.conn.data_received, ANSWER)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Run:
    """``total`` requests over the client connections; ``done`` when all are answered (none is
    left in flight, so no upstream connection is cut when the clients go)."""

    def __init__(self, total: int, next_request: Callable[[], bytes]) -> None:
        self.total, self.sent, self.answered = total, 0, 0
        self.next_request = next_request
        self.done = asyncio.get_running_loop().create_future()


class ClientTransport:
    """One client: checks each answer, then sends its next request (next loop turn)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.conn: ClientConnection | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...

    def write(self, data: bytes) -> None:
        run = self.run
        if not data.startswith(b"HTTP/1.1 200 ") or not data.endswith(ANSWER[-11:]):
            if not run.done.done():
                run.done.set_exception(bench.BenchError(f"not a 200 answer: {data[:400]!r}"))
            return
        run.answered += 1
        if run.answered == run.total and not run.done.done():
            run.done.set_result(None)
        self.send()

    def send(self) -> None:
        run = self.run
        if run.sent < run.total:
            run.sent += 1
            assert self.conn is not None
            asyncio.get_running_loop().call_soon(self.conn.data_received, run.next_request())

    def is_closing(self) -> bool:
        return False

    def close(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_write_buffer_size(self) -> int:
        return 0


async def drive(gw: Gateway, total: int, next_request: Callable[[], bytes]) -> None:
    run = Run(total, next_request)
    clients = []
    for _ in range(CONNECTIONS):
        transport = ClientTransport(run)
        conn = ClientConnection(gw)
        transport.conn = conn
        conn.connection_made(transport)  # type: ignore[arg-type]
        clients.append(transport)
    for transport in clients:
        transport.send()
    try:
        await asyncio.wait_for(run.done, 120)
    finally:
        for transport in clients:
            assert transport.conn is not None
            transport.conn.connection_lost(None)


async def gateway_for(config: Path) -> Gateway:
    settings = load(config)
    metrics = Metrics()
    runtime = await open_runtime(settings, sinks=[metrics.observe_decision])
    gw = make_gateway(runtime, IdentityHeaders(runtime.minter), metrics.observe_upstream)
    for _ in range(CONNECTIONS + 4):  # idle keep-alive connections, as after a warm-up
        conn = UpstreamConnection(gw.pool)
        conn.connection_made(UpstreamTransport(conn))  # type: ignore[arg-type]
        conn._keep_alive = True
        gw.pool._idle.append(conn)
    gw.runtime = runtime  # type: ignore[attr-defined]  # (closed by main)
    return gw


async def measure(
    gateways: dict[str, Gateway], routes: list[tuple[str, Route]], per_round: int, rounds: int
) -> dict[str, list[float]]:
    for gw_name, route in routes:  # warm-up: caches filled, code paths taken
        await drive(gateways[gw_name], min(per_round, 2000), route.requests())
    settle_garbage_collector()
    results: dict[str, list[float]] = {route.name: [] for _, route in routes}
    for _ in range(rounds):
        for gw_name, route in routes:
            next_request = route.requests()
            started = time.process_time()
            await drive(gateways[gw_name], per_round, next_request)
            spent = time.process_time() - started
            results[route.name].append(spent / per_round * 1e6)
    return results


def report(routes: list[tuple[str, Route]], results: dict[str, list[float]], rounds: int) -> None:
    print(f"gateway CPU per request, in-process, no sockets ({rounds} round(s), median)")
    print(f"{'route':48} {'CPU us/req':>10} {'/ public':>9}")
    public = results["public"]
    for _, route in routes:
        values = results[route.name]
        ratio = statistics.median(v / p for v, p in zip(values, public, strict=True))
        shown = "" if route.name == "public" else f"{ratio:8.2f}x"
        print(f"{route.label:48} {statistics.median(values):10.1f} {shown:>9}")


async def own_tokens(gw: Gateway, setup: bench.Setup) -> tuple[str, str]:
    """A JWT and an opaque access token of restguard's own authorization server, for the
    bench's two client-credentials clients (subject: the client, as that grant gives)."""
    runtime: Any = gw.runtime  # type: ignore[attr-defined]
    url = runtime.settings.server.public_url
    store = runtime.store
    tokens = AccessTokens(
        runtime.keys, url, url, runtime.clock, opaque=OpaqueTokens(store.oauth2_access_tokens)
    )
    issued = []
    for client_id in (setup.client_id, setup.opaque[0]):
        client = await store.oauth2_clients.get(client_id)
        assert client is not None, client_id
        token = await tokens.issue_for(client, subject=client_id, scopes=["bench:read"])
        issued.append(token.access_token)
    return issued[0], issued[1]


def routes_for(
    setup: bench.Setup, per_round: int, warm: int, own: tuple[str, str]
) -> list[tuple[str, Route]]:
    key_id, secret = setup.app
    signer = bench.Signer(key_id, secret, AUTHORITY, "/keyed/item", Path("."))
    count = max(per_round, warm)
    return [
        ("redis", Route("public", "public route", same(request("/public/item")))),
        (
            "redis",
            Route("apikey", "API key", same(request("/keyed/item", f"X-API-Key: {setup.key}"))),
        ),
        (
            "redis",
            Route(
                "jwt",
                "JWT (RS256, keys held)",
                same(request("/keyed/item", f"Authorization: Bearer {setup.jwt}")),
            ),
        ),
        (
            "redis",
            Route(
                "oauth2",
                "oauth2 (own JWT, EdDSA)",
                same(request("/keyed/item", f"Authorization: Bearer {own[0]}")),
            ),
        ),
        (
            "redis",
            Route(
                "opaque",
                "oauth2 (opaque token)",
                same(request("/keyed/item", f"Authorization: Bearer {own[1]}")),
            ),
        ),
        (
            "redis",
            Route(
                "ratelimit",
                "API key + rate limit (Redis)",
                same(request("/limited/item", f"X-API-Key: {setup.key}")),
            ),
        ),
        ("redis", Route("signature", "signature GET, nonces in Redis", signed(signer, count))),
        (
            "db",
            Route("signature-db", "signature GET, nonces in the database", signed(signer, count)),
        ),
    ]


def without_redis(config: Path) -> Path:
    """The same configuration without ``[storage] redis``: nonces and limits in the database."""
    other = config.with_name("restguard-no-redis.toml")
    other.write_text(bench.without_redis(config.read_text()))
    return other


def make_setup(work: Path, stack: ExitStack) -> bench.Setup:
    """``restguard init`` and the bench credentials (``bench/run.py``'s), its JWKS served."""
    jwks, mint = bench.bench_issuer()
    jwks_port = stack.enter_context(bench.jwks_server(jwks))
    return bench.setup_restguard(work, bench.free_port(), jwks_port, mint)


async def amain(per_round: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rg-gateway-cpu-") as tmp, ExitStack() as stack:
        setup = make_setup(Path(tmp), stack)
        gateways = {
            "redis": await gateway_for(setup.config),
            "db": await gateway_for(without_redis(setup.config)),
        }
        try:
            own = await own_tokens(gateways["redis"], setup)
            routes = routes_for(setup, per_round, min(per_round, 2000), own)
            results = await measure(gateways, routes, per_round, rounds)
        finally:
            for gw in gateways.values():
                gw.pool.close()
                await gw.runtime.close()  # type: ignore[attr-defined]
        report(routes, results, rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round x 1,000 requests")
    args = parser.parse_args(argv)
    per_round, rounds = (1000, 1) if args.quick else (10_000, 5)
    try:
        uvloop.run(amain(per_round, rounds))
    except bench.BenchError as exc:
        print(f"gateway_cpu: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
