"""restguard's credentials never reach the upstream, on public routes too (finding 3).

A public route checks no credential, but clients send one anyway (``restguard.client.ApiKeyAuth``
attaches the key to every request): ``X-API-Key``, ``Authorization: ApiKey`` and
``Authorization: Bearer rg_ak_...`` are removed unless the route sets ``forward_credentials``.
A key in the query string is refused (400) on every route, public and unmatched ones included,
since a URL leaks into logs everywhere it goes.
"""

from __future__ import annotations

import httpx
import pytest

from restguard.client import ApiKeyAuth
from restguard.credentials.apikey import generate_key
from tests.attacks.conftest import Keys
from tests.attacks.wire import api_key, assert_forwarded, assert_refused, request, send
from tests.harness import GatewayProcess, Received

Header = tuple[bytes, bytes]

FORMS = {
    "x-api-key": lambda key: (b"X-API-Key", key.encode()),
    "authorization-apikey": lambda key: (b"Authorization", b"ApiKey " + key.encode()),
    "authorization-bearer": lambda key: (b"Authorization", b"Bearer " + key.encode()),
    "lower-case-apikey": lambda key: (b"authorization", b"apikey " + key.encode()),
}


def assert_no_key(seen: Received, key: str) -> None:
    assert seen.header("X-API-Key") is None
    assert seen.header("Authorization") is None
    wire = b"".join(name + value for name, value in seen.headers) + seen.target + seen.body
    assert key.encode() not in wire
    assert key.split("_", 3)[3].encode() not in wire  # not even the secret part


@pytest.mark.parametrize("form", FORMS)
def test_key_on_public_get_is_not_forwarded(gw: GatewayProcess, keys: Keys, form: str) -> None:
    header = FORMS[form](keys.reader)
    data = request(b"/public/x", header, (b"X-Kept", b"yes"))
    _, seen = assert_forwarded(gw, data, b"/public/x")
    assert_no_key(seen, keys.reader)
    assert seen.header("X-Kept") == "yes"
    assert not {n for n in seen.header_names() if n.startswith("x-restguard-")}
    # Twin: on the forward_credentials route the same header does reach the upstream.
    _, seen = assert_forwarded(gw, request(b"/fwd/x", header), b"/fwd/x")
    assert seen.header(header[0].decode()) == header[1].decode()


@pytest.mark.parametrize("form", FORMS)
def test_key_on_public_post_is_not_forwarded(gw: GatewayProcess, keys: Keys, form: str) -> None:
    body = b'{"hello": "world"}'
    data = request(
        b"/public/form",
        FORMS[form](keys.writer),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"%d" % len(body)),
        method=b"POST",
        body=body,
    )
    _, seen = assert_forwarded(gw, data, b"/public/form", method="POST")
    assert_no_key(seen, keys.writer)
    assert seen.body == body


def test_unknown_or_malformed_key_on_public_route_is_not_forwarded(
    gw: GatewayProcess, keys: Keys
) -> None:
    # Whatever the gateway makes of a credential it need not check, it never hands it on.
    _, stranger = generate_key()
    garbage = [
        api_key(stranger),
        FORMS["authorization-bearer"](stranger),
        (b"X-API-Key", b"garbage"),
        (b"X-API-Key", b""),
        (b"Authorization", b"ApiKey garbage"),
        (b"Authorization", b"apikey"),
        (b"Authorization", b"Bearer rg_ak_garbage"),
        (b"Authorization", b"Bearer  " + keys.reader.encode()),
        (b"Authorization", b"ApiKey " + keys.reader.encode() + b" trailing"),
    ]
    for header in garbage:
        before = len(gw.upstream.requests)
        response = send(gw.port, request(b"/public/x", header))
        assert response.status in (200, 400, 401), (header, response.status)
        for seen in gw.upstream.requests[before:]:
            assert seen.header("X-API-Key") is None, header
            assert seen.header("Authorization") is None, header


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_restguard_client_on_public_route(gw: GatewayProcess, keys: Keys, header: str) -> None:
    # The realistic case: restguard's own client attaches the key to every request.
    auth = ApiKeyAuth(keys.reader, header=header)  # type: ignore[arg-type]
    with httpx.Client(base_url=gw.url, auth=auth) as client:
        assert client.get("/public/status").status_code == 200
        assert_no_key(gw.upstream.last(), keys.reader)
        # Twin: on a protected route the same client is authenticated, key removed too.
        assert client.get("/notes/1").status_code == 200
        seen = gw.upstream.last()
        assert seen.header("X-Restguard-Subject") == "reader"
        assert_no_key(seen, keys.reader)


# --- keys in the query string: 400 on every route -----------------------------------------------


QUERIES = {
    "api_key": b"api_key={k}",
    "apikey": b"apikey=anything",
    "api-key": b"api-key=anything",
    "x-api-key": b"X-API-Key={k}",
    "upper-name": b"API_KEY=anything",
    "encoded-name": b"api%5Fkey=anything",
    "any-name": b"q=1&token={k}",
    "prefix-only": b"x=rg_ak_whatever",
    "encoded-prefix": b"x=rg%5Fak%5F{id}",
    "in-name": b"{k}=1",
    "glued-in-value": b"q=X{k}",  # contains: a letter before the prefix hides nothing
    "glued-in-name": b"x{k}=1",
    "empty-value-name": b"api_key=",
}


@pytest.mark.parametrize("path", [b"/public/x", b"/nowhere/at/all", b"/notes/1", b"/fwd/x"])
@pytest.mark.parametrize("query", QUERIES.values(), ids=list(QUERIES))
def test_key_in_query_refused_on_every_route(
    gw: GatewayProcess, keys: Keys, path: bytes, query: bytes
) -> None:
    query = query.replace(b"{k}", keys.reader.encode()).replace(b"{id}", keys.reader_id.encode())
    assert_refused(gw, request(path + b"?" + query), 400, "invalid_request")
    assert_refused(gw, request(path + b"?" + query, api_key(keys.reader)), 400, "invalid_request")


def test_query_twins_are_forwarded(gw: GatewayProcess, keys: Keys) -> None:
    # Twins: ordinary query strings pass, exactly, on public and protected routes; an
    # unmatched route is still 404.
    for target in (b"/public/x?a=1&b=2", b"/public/x?key=value&api=1", b"/public/x?q=rg_ak"):
        assert_forwarded(gw, request(target), target)
    assert_forwarded(gw, request(b"/notes/1?a=1", api_key(keys.reader)), b"/notes/1?a=1")
    assert_refused(gw, request(b"/nowhere/at/all?a=1"), 404, None)
