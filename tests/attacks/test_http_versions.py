"""HTTP versions (finding 6): only HTTP/1.0 and HTTP/1.1 are spoken on the gateway listener.

``HTTP/2.0``, ``HTTP/0.9`` and a version-less request line were forwarded as HTTP/1.1 (and
``HTTP/2.0`` skipped the Host requirement). Anything else than 1.0 and 1.1 gets 505 JSON and the
connection closes: a pipelined request behind it is never read.
"""

from __future__ import annotations

import pytest

from tests.attacks.conftest import Keys
from tests.attacks.wire import api_key, assert_forwarded, assert_json_error, exchange, request
from tests.harness import GatewayProcess

LINES = {
    "HTTP/2.0": b"GET /notes/1 HTTP/2.0",
    "HTTP/0.9": b"GET /notes/1 HTTP/0.9",
    "HTTP/3.0": b"GET /notes/1 HTTP/3.0",
    "HTTP/9.9": b"GET /notes/1 HTTP/9.9",
    "version-less": b"GET /notes/1",
}


def unsupported(line: bytes, key: str, *, host: bool = True) -> bytes:
    head = [line]
    if host:
        head.append(b"Host: gateway.test")
    head.append(b"X-API-Key: " + key.encode())
    return b"\r\n".join(head) + b"\r\n\r\n"


@pytest.mark.parametrize("line", LINES.values(), ids=list(LINES))
@pytest.mark.parametrize("host", [True, False], ids=["with-host", "without-host"])
def test_unsupported_version_gets_505_and_close(
    gw: GatewayProcess, keys: Keys, line: bytes, host: bool
) -> None:
    behind = request(b"/notes/2", api_key(keys.reader))
    got = exchange(gw.port, unsupported(line, keys.reader, host=host) + behind, responses=2)
    assert len(got) == 1, [(r.status, r.body[:80]) for r in got]  # closed: nothing after it
    assert_json_error(got[0], 505)
    assert (got[0].header("Connection") or "").lower() == "close"
    assert gw.upstream.requests == []


def test_version_less_simple_request(gw: GatewayProcess) -> None:
    # The HTTP/0.9 "simple request": the request line alone.
    got = exchange(gw.port, b"GET /public/x\r\n\r\n", responses=1)
    assert len(got) == 1
    assert_json_error(got[0], 505)
    assert gw.upstream.requests == []


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
def test_supported_versions_twin(gw: GatewayProcess, keys: Keys, version: bytes) -> None:
    _, seen = assert_forwarded(
        gw, request(b"/notes/1", api_key(keys.reader), version=version), b"/notes/1"
    )
    assert seen.header("X-Restguard-Subject") == "reader"
    # And keep-alive: two requests on one connection (HTTP/1.0 opts in with Keep-Alive).
    extra = [(b"Connection", b"keep-alive")] if version == b"HTTP/1.0" else []
    one = request(b"/notes/1", api_key(keys.reader), *extra, version=version)
    two = request(b"/notes/2", api_key(keys.reader), version=version)
    got = exchange(gw.port, one + two, responses=2)
    assert [r.status for r in got] == [200, 200]
