"""gateway/own.py: every endpoint marked served has a handler; other methods get 405; the
authorization server's endpoints answer through the gateway's ``authorization_server`` (503
without one), written as given less the framing headers."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from restguard.authz.endpoints import OWN_ENDPOINTS, OwnEndpoint, served_endpoint
from restguard.errors import BackendUnavailable, InvalidCredential, MethodNotAllowed, ServerError
from restguard.gateway.own import HANDLERS, NEEDS_SERVER, answer_own, check_own
from restguard.gateway.server import Gateway
from restguard.oauth2.http import AuthorizationServer, EndpointRequest, EndpointResponse

METADATA = b'{"issuer":"http://127.0.0.1:8080"}'


class FakeServer:
    def __init__(self) -> None:
        self.received: list[EndpointRequest] = []
        self.token_response = EndpointResponse(
            200,
            [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
            b'{"access_token":"t"}',
        )
        self.raise_: Exception | None = None

    async def token(self, request: EndpointRequest) -> EndpointResponse:
        self.received.append(request)
        if self.raise_ is not None:
            raise self.raise_
        return self.token_response

    def metadata(self) -> EndpointResponse:
        return EndpointResponse(200, [(b"content-type", b"application/json")], METADATA)

    async def device_authorization(self, request: EndpointRequest) -> EndpointResponse:
        self.received.append(request)
        return EndpointResponse(200, [(b"content-type", b"application/json")], b'{"d":1}')

    async def device(self, request: EndpointRequest) -> EndpointResponse:
        self.received.append(request)
        return EndpointResponse(200, [(b"content-type", b"text/html")], b"<form>")


class FakeGateway:
    def __init__(self, server: AuthorizationServer | None = None) -> None:
        self.authorization_server = server

    def jwks_body(self) -> bytes:
        return json.dumps({"keys": [{"kid": "k1"}]}).encode()


def gw(server: AuthorizationServer | None = None) -> Gateway:
    return cast(Gateway, cast(Any, FakeGateway(server)))


def endpoint(path: str) -> OwnEndpoint:
    found = served_endpoint(path)
    assert found is not None
    return found


def req(method: str, path: str, body: bytes = b"") -> EndpointRequest:
    return EndpointRequest(method=method, path=path, headers=(), body=body)


def test_the_served_endpoints_and_the_handlers_are_the_same_set() -> None:
    assert set(HANDLERS) == {e.path for e in OWN_ENDPOINTS if e.served}
    assert set(HANDLERS) >= NEEDS_SERVER


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_jwks_answer(method: str) -> None:
    path = "/.well-known/jwks.json"
    status, headers, body = await answer_own(gw(), endpoint(path), req(method, path))
    assert status == 200
    assert (b"content-type", b"application/json") in headers
    assert json.loads(body) == {"keys": [{"kid": "k1"}]}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
async def test_other_methods_get_405_with_allow(method: str) -> None:
    path = "/.well-known/jwks.json"
    with pytest.raises(MethodNotAllowed) as caught:
        await answer_own(gw(), endpoint(path), req(method, path))
    assert caught.value.status == 405
    assert ("allow", "GET, HEAD") in caught.value.headers


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "OPTIONS"])
def test_the_token_endpoint_takes_post_only(method: str) -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        check_own(gw(FakeServer()), endpoint("/oauth2/token"), method)
    assert ("allow", "POST") in caught.value.headers


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/oauth2/token", "POST"),
        ("/.well-known/oauth-authorization-server", "GET"),
        ("/oauth2/device_authorization", "POST"),
        ("/device", "GET"),
    ],
)
async def test_without_an_authorization_server_its_endpoints_get_503(
    path: str, method: str
) -> None:
    with pytest.raises(BackendUnavailable) as caught:
        check_own(gw(None), endpoint(path), method)
    assert (caught.value.status, caught.value.error) == (503, "temporarily_unavailable")
    with pytest.raises(BackendUnavailable):
        await answer_own(gw(None), endpoint(path), req(method, path))
    # the method is judged first: 405 for a wrong one, configured or not
    with pytest.raises(MethodNotAllowed):
        check_own(gw(None), endpoint(path), "DELETE")
    # the JWKS does not need the authorization server
    check_own(gw(None), endpoint("/.well-known/jwks.json"), "GET")


async def test_the_token_request_reaches_the_server_and_its_answer_is_written_as_given() -> None:
    server = FakeServer()
    request = req("POST", "/oauth2/token", b"grant_type=client_credentials")
    status, headers, body = await answer_own(gw(server), endpoint("/oauth2/token"), request)
    assert server.received == [request]
    assert status == 200
    assert headers == [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    assert body == b'{"access_token":"t"}'


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("/oauth2/device_authorization", "POST", b'{"d":1}'),
        ("/device", "GET", b"<form>"),
        ("/device", "POST", b"<form>"),
    ],
)
async def test_the_device_flow_reaches_the_server(path: str, method: str, body: bytes) -> None:
    server = FakeServer()
    request = req(method, path, b"user_code=BCDF-GHJK" if method == "POST" else b"")
    status, _, answered = await answer_own(gw(server), endpoint(path), request)
    assert server.received == [request]
    assert (status, answered) == (200, body)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_metadata(method: str) -> None:
    path = "/.well-known/oauth-authorization-server"
    status, headers, body = await answer_own(gw(FakeServer()), endpoint(path), req(method, path))
    assert (status, headers, body) == (200, [(b"content-type", b"application/json")], METADATA)


async def test_the_handlers_framing_headers_are_dropped() -> None:
    server = FakeServer()
    server.token_response = EndpointResponse(
        400,
        [
            (b"Content-Length", b"999"),
            (b"transfer-encoding", b"chunked"),
            (b"connection", b"close"),
            (b"keep-alive", b"timeout=5"),
            (b"x-kept", b"1"),
        ],
        b"{}",
    )
    answer = await answer_own(gw(server), endpoint("/oauth2/token"), req("POST", "/oauth2/token"))
    assert answer == (400, [(b"x-kept", b"1")], b"{}")


@pytest.mark.parametrize("bad", [b"a\r\nset-cookie: x=1", b"a\nb", b"a\0"])
async def test_a_header_that_would_split_the_response_is_a_500(bad: bytes) -> None:
    server = FakeServer()
    server.token_response = EndpointResponse(302, [(b"location", bad)], b"")
    with pytest.raises(ServerError):
        await answer_own(gw(server), endpoint("/oauth2/token"), req("POST", "/oauth2/token"))


async def test_an_auth_error_of_the_server_passes_through() -> None:
    server = FakeServer()
    server.raise_ = InvalidCredential(debug="bad client secret")
    with pytest.raises(InvalidCredential):
        await answer_own(gw(server), endpoint("/oauth2/token"), req("POST", "/oauth2/token"))
