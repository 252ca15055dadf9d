"""``X-Request-Id`` and trace headers as stock upstreams read them (wsgiref's CGI environ,
uvicorn's ASGI headers), over raw sockets: whatever spelling a client sends (case, the
underscore form a CGI server folds into ``HTTP_X_REQUEST_ID``, repeats), the upstream sees
exactly one id, restguard's own, and the client's answer carries the same."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.attacks.wire import request, send
from tests.harness import GatewayProcess
from tests.stock_upstreams import UvicornUpstream, WsgiRefUpstream

OWN = re.compile(r"[0-9a-f]{32}")
SPELLINGS = [
    [(b"X-Request-Id", b"forged")],
    [(b"x-request-id", b"forged"), (b"X-REQUEST-ID", b"forged2")],
    [(b"X_Request_Id", b"forged")],  # CGI/WSGI fold '_' into '-': dropped by the name rule
    [(b"X-Request-Id", b"forged"), (b"X_Request_Id", b"forged2")],
]


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Request-Id", "theirs")])
    return [b"ok"]


seen_asgi: list[list[tuple[bytes, bytes]]] = []


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    seen_asgi.append(list(scope["headers"]))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"x-request-id", b"theirs")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def wsgi_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Any]]:
    server = WsgiRefUpstream(wsgi_app)
    gw = GatewayProcess(tmp_path_factory.mktemp("rid-wsgi") / "gw", server).start()  # type: ignore[arg-type]
    yield gw, server
    gw.stop()
    server.stop()


@pytest.fixture(scope="module")
def uvicorn_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    server = UvicornUpstream(asgi_app)
    gw = GatewayProcess(tmp_path_factory.mktemp("rid-uv") / "gw", server).start()  # type: ignore[arg-type]
    yield gw
    gw.stop()
    server.stop()


@pytest.mark.parametrize("headers", SPELLINGS)
def test_wsgiref_sees_one_id_restguards_own(
    wsgi_gw: tuple[GatewayProcess, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    gw, server = wsgi_gw
    before = len(server.environs)
    response = send(gw.port, request(b"/public/x", *headers))
    assert response.status == 200
    (environ,) = server.environs[before:]
    sent = environ["HTTP_X_REQUEST_ID"]
    assert OWN.fullmatch(sent) and "forged" not in sent
    assert response.header("x-request-id") == sent  # the upstream's "theirs" replaced


@pytest.mark.parametrize("headers", SPELLINGS)
def test_uvicorn_sees_one_id_restguards_own(
    uvicorn_gw: GatewayProcess, headers: list[tuple[bytes, bytes]]
) -> None:
    seen_asgi.clear()
    response = send(uvicorn_gw.port, request(b"/public/x", *headers))
    assert response.status == 200
    (got,) = seen_asgi
    ids = [v for k, v in got if k == b"x-request-id"]
    assert len(ids) == 1 and OWN.fullmatch(ids[0].decode())
    assert response.header("x-request-id") == ids[0].decode()


def test_a_refusal_in_front_of_a_stock_upstream_names_its_id(
    wsgi_gw: tuple[GatewayProcess, Any],
) -> None:
    gw, _ = wsgi_gw
    response = send(gw.port, request(b"/notes/1", (b"X-Request-Id", b"forged")))
    assert response.status == 401
    rid = response.header("x-request-id")
    assert rid is not None and OWN.fullmatch(rid)
