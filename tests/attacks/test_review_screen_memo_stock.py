"""The remembered credential screen (``carriers._Screened``) behind stock upstreams, over raw
sockets: the same credential headers sent again and again (the screen's answer remembered),
in other spellings and beside other credentials, never reach wsgiref (which folds ``X_Api_Key``
into ``HTTP_X_API_KEY``) or uvicorn, and a key that is refused stays refused when repeated."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.attacks.wire import request, send
from tests.harness import GatewayProcess
from tests.stock_upstreams import UvicornUpstream, WsgiRefUpstream

Header = tuple[bytes, bytes]
CREDENTIAL_VARIABLES = ("HTTP_X_API_KEY", "HTTP_AUTHORIZATION", "HTTP_SIGNATURE")


def _wsgi_echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    seen = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


async def _asgi_echo(scope: dict[str, Any], receive: Any, send_: Any) -> None:
    seen = {
        "HTTP_" + k.decode("latin-1").upper().replace("-", "_"): v.decode("latin-1")
        for k, v in scope["headers"]
    }
    body = json.dumps(seen).encode()
    await send_({"type": "http.response.start", "status": 200, "headers": []})
    await send_({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module", params=["wsgiref", "uvicorn"])
def stock(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, str]]:
    server: Any = (
        WsgiRefUpstream(_wsgi_echo) if request.param == "wsgiref" else UvicornUpstream(_asgi_echo)
    )
    directory: Path = tmp_path_factory.mktemp("screen-stock") / "gw"
    gateway = GatewayProcess(directory, server).start()
    _, key = gateway.issue_key("notes:read", name="reader")
    try:
        yield gateway, key
    finally:
        gateway.stop()
        server.stop()


def _seen(port: int, target: bytes, *headers: Header) -> dict[str, str]:
    response = send(port, request(target, *headers))
    assert response.status == 200, (response.status, headers)
    return dict(json.loads(response.body))


def test_remembered_credentials_never_reach_a_stock_upstream(
    stock: tuple[GatewayProcess, str],
) -> None:
    gateway, key = stock
    k = key.encode()
    jws = b"eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"
    header_sets: list[tuple[Header, ...]] = [
        ((b"X-API-Key", k),),
        ((b"Authorization", b"ApiKey " + k),),
        ((b"Authorization", b"Bearer " + jws),),
        ((b"Signature-Input", b'sig1=("@method");keyid="k"'), (b"Signature", b"sig1=:AAAA:")),
        ((b"X-API-Key", b"rg_ak_not_a_key"), (b"X-Other", b"1")),
    ]
    for _ in range(3):  # cold, then remembered, then remembered again
        for headers in header_sets:
            seen = _seen(gateway.port, b"/public/x", *headers)
            leaked = [v for v in CREDENTIAL_VARIABLES if v in seen]
            assert leaked == [], (headers, leaked)
        # the key that is used on a route that authenticates reaches nothing either
        seen = _seen(gateway.port, b"/notes/1", (b"X-API-Key", k))
        assert "HTTP_X_API_KEY" not in seen and seen.get("HTTP_X_RESTGUARD_SUBJECT")


def test_a_refused_key_stays_refused_when_repeated(stock: tuple[GatewayProcess, str]) -> None:
    gateway, key = stock
    wrong = (key[:-1] + ("A" if key[-1] != "A" else "B")).encode()
    for _ in range(3):
        assert send(gateway.port, request(b"/notes/1", (b"X-API-Key", wrong))).status == 401
        assert send(gateway.port, request(b"/notes/1", (b"X-API-Key", key.encode()))).status == 200
        two = request(
            b"/notes/1", (b"X-API-Key", key.encode()), (b"Authorization", b"ApiKey " + key.encode())
        )
        assert send(gateway.port, two).status == 400
