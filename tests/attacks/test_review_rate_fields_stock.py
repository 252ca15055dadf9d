"""The route's ``RateLimit-*`` fields, written straight into the client head, behind stock
upstreams over raw sockets: whatever ``ratelimit*`` fields wsgiref or uvicorn send (the draft's
names, look-alikes, and a ``Connection`` header naming them), the client gets exactly one of
each of the gateway's, counting down its own limit, and never the upstream's values."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.attacks.wire import request, send
from tests.harness import GatewayProcess
from tests.stock_upstreams import UvicornUpstream, WsgiRefUpstream

UPSTREAM_FIELDS = [
    ("RateLimit-Limit", "999"),
    ("RateLimit-Remaining", "998"),
    ("RateLimit-Reset", "1"),
    ("RateLimit-Policy", "999;w=1"),
    ("RateLimit", "limit=999"),
    ("X-RateLimit-Limit", "7"),
    ("Connection", "ratelimit-limit"),
]


def _wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    # (wsgiref refuses hop-by-hop fields from an application: Connection is left out there)
    fields = [(n, v) for n, v in UPSTREAM_FIELDS if n != "Connection"]
    start_response("200 OK", [("Content-Type", "text/plain"), *fields])
    return [b"ok"]


async def _asgi(scope: dict[str, Any], receive: Any, send_: Any) -> None:
    headers = [(n.lower().encode(), v.encode()) for n, v in UPSTREAM_FIELDS]
    await send_({"type": "http.response.start", "status": 200, "headers": headers})
    await send_({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module", params=["wsgiref", "uvicorn"])
def stock(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, str]]:
    server: Any = WsgiRefUpstream(_wsgi) if request.param == "wsgiref" else UvicornUpstream(_asgi)
    directory: Path = tmp_path_factory.mktemp("rate-stock") / "gw"
    gateway = GatewayProcess(directory, server).start()
    _, key = gateway.issue_key("notes:read", name="limited")
    try:
        yield gateway, key
    finally:
        gateway.stop()
        server.stop()


def test_the_client_gets_the_gateways_rate_fields_once_never_the_upstreams(
    stock: tuple[GatewayProcess, str],
) -> None:
    gateway, key = stock
    remaining = []
    for _ in range(3):  # the route allows 3 a minute
        response = send(gateway.port, request(b"/limited", (b"X-API-Key", key.encode())))
        assert response.status == 200, response
        fields = [(n.lower(), v) for n, v in response.headers if n.lower().startswith("ratelimit")]
        names = sorted(n for n, _ in fields)
        assert names == ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"], fields
        assert dict(fields)["ratelimit-limit"] == "3"
        assert "999" not in str(fields) and "998" not in str(fields)
        assert response.header("x-ratelimit-limit") == "7"  # (not a RateLimit field: kept)
        remaining.append(int(dict(fields)["ratelimit-remaining"]))
    assert remaining == [2, 1, 0]
    refused = send(gateway.port, request(b"/limited", (b"X-API-Key", key.encode())))
    assert refused.status == 429
    assert refused.header("retry-after") is not None
