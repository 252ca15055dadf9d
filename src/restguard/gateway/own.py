"""Answers to restguard's own endpoints on the gateway listener (``authz/endpoints.py``).

CONTRACT "Configuration": restguard's own endpoints are matched before the policy. Every
endpoint marked ``served`` there has its handler here; the request's normalised path selects it,
so ``/.well-known/jwks.json?x`` and ``/.well-known/./jwks.json`` are answered here too and never
reach the upstream, whatever the routes say. A method the endpoint does not serve gets 405.

Handlers are coroutines taking an ``EndpointRequest`` (``oauth2/http.py``): the exchange
(``gateway/exchange.py``) reads the body of an endpoint with a ``body_limit`` first, and discards
any other endpoint's body. ``check_own`` is what is known before a byte of the body is read (the
method, and whether the endpoint can answer at all), so that a refused request is refused before
its body is waited for.

The authorization server's endpoints (``/oauth2/token``, ``/.well-known/oauth-authorization-
server``) are answered by the gateway's ``authorization_server`` (``AuthorizationServer``).
A gateway built without one still owns those paths -- they never fall through to the policy and
the upstream, which would answer under restguard's issuer URL -- and answers them with 503
``temporarily_unavailable`` (a backend needed for the answer is missing: fail closed).

What a handler returns is written as given (status, headers, body), except the framing: the
gateway writes ``Content-Length`` and ``Connection`` itself, so the handler's
``Content-Length``, ``Transfer-Encoding``, ``Connection`` and ``Keep-Alive`` are dropped, and a
header with CR, LF or NUL in it (a response split) is a 500, never sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from restguard.authz.endpoints import OwnEndpoint
from restguard.errors import BackendUnavailable, MethodNotAllowed, ServerError
from restguard.keys.signing import JWKS_MAX_AGE
from restguard.oauth2.http import AuthorizationServer, EndpointRequest, EndpointResponse

if TYPE_CHECKING:
    from restguard.gateway.server import Gateway

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]
Handler = Callable[["Gateway", EndpointRequest], Awaitable[Answer]]


_JWKS_HEADERS: Headers = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"public, max-age=%d" % JWKS_MAX_AGE),
]
# The gateway frames every answer itself (``Exchange._respond``).
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})
_SPLITTING = (b"\r", b"\n", b"\0")


async def _jwks(gw: Gateway, request: EndpointRequest) -> Answer:
    """RFC 7517 §5: the JWK Set restguard's identity tokens verify against. A rotation's new
    key signs at once, so caches keep it briefly (``JWKS_MAX_AGE``); verifiers refetch on an
    unknown ``kid`` (``keys/signing.py``)."""
    return 200, list(_JWKS_HEADERS), gw.jwks_body()


def _server(gw: Gateway) -> AuthorizationServer:
    server = gw.authorization_server
    if server is None:
        raise BackendUnavailable(
            "restguard's authorization server is not available on this gateway.",
            debug="no authorization_server configured",
        )
    return server


def _written(response: EndpointResponse) -> Answer:
    """``response`` as the gateway writes it: its own framing headers dropped."""
    headers: Headers = []
    for name, value in response.headers:
        if any(c in name or c in value for c in _SPLITTING):
            raise ServerError(debug="a response header with CR, LF or NUL from the endpoint")
        if name.lower() not in _FRAMING:
            headers.append((name, value))
    return response.status, headers, response.body


async def _metadata(gw: Gateway, request: EndpointRequest) -> Answer:
    """RFC 8414 §3: the authorization server's metadata."""
    return _written(_server(gw).metadata())


async def _token(gw: Gateway, request: EndpointRequest) -> Answer:
    """RFC 6749 §3.2: the token endpoint (its form body read by the exchange, capped)."""
    return _written(await _server(gw).token(request))


async def _revoke(gw: Gateway, request: EndpointRequest) -> Answer:
    """RFC 7009 §2: token revocation."""
    return _written(await _server(gw).revoke(request))


async def _introspect(gw: Gateway, request: EndpointRequest) -> Answer:
    """RFC 7662 §2: token introspection."""
    return _written(await _server(gw).introspect(request))


async def _authorize(gw: Gateway, request: EndpointRequest) -> Answer:
    """RFC 6749 §3.1: the authorization endpoint."""
    return _written(await _server(gw).authorize(request))


async def _login(gw: Gateway, request: EndpointRequest) -> Answer:
    """The resource owner's sign-in page (its form body read by the exchange, capped)."""
    return _written(await _server(gw).login(request))


async def _consent(gw: Gateway, request: EndpointRequest) -> Answer:
    """The resource owner's consent page."""
    return _written(await _server(gw).consent(request))


async def _device_authorization(gw: Gateway, request: EndpointRequest) -> Answer:
    """RFC 8628 §3.1: the device authorization endpoint (its form body read, capped)."""
    return _written(await _server(gw).device_authorization(request))


async def _device(gw: Gateway, request: EndpointRequest) -> Answer:
    """RFC 8628 §3.3: the resource owner's user-code page of the device flow."""
    return _written(await _server(gw).device(request))


async def _oauth1_request_token(gw: Gateway, request: EndpointRequest) -> Answer:
    """RFC 5849 §2.1: temporary credentials (the signed form body read, capped)."""
    return _written(await _server(gw).oauth1_request_token(request))


async def _oauth1_authorize(gw: Gateway, request: EndpointRequest) -> Answer:
    """RFC 5849 §2.2: the resource owner's authorization."""
    return _written(await _server(gw).oauth1_authorize(request))


async def _oauth1_access_token(gw: Gateway, request: EndpointRequest) -> Answer:
    """RFC 5849 §2.3: token credentials."""
    return _written(await _server(gw).oauth1_access_token(request))


async def _oauth1_tokens(gw: Gateway, request: EndpointRequest) -> Answer:
    """A signed-in user's OAuth 1.0a connections, to revoke."""
    return _written(await _server(gw).oauth1_tokens(request))


HANDLERS: dict[str, Handler] = {
    "/.well-known/jwks.json": _jwks,
    "/.well-known/oauth-authorization-server": _metadata,
    "/oauth2/token": _token,
    "/oauth2/revoke": _revoke,
    "/oauth2/introspect": _introspect,
    "/oauth2/authorize": _authorize,
    "/login": _login,
    "/consent": _consent,
    "/oauth2/device_authorization": _device_authorization,
    "/device": _device,
    "/oauth1/request_token": _oauth1_request_token,
    "/oauth1/authorize": _oauth1_authorize,
    "/oauth1/access_token": _oauth1_access_token,
    "/oauth1/tokens": _oauth1_tokens,
}
# The endpoints answered by the gateway's ``authorization_server`` (503 without one).
NEEDS_SERVER = frozenset(HANDLERS) - {"/.well-known/jwks.json"}


def check_own(gw: Gateway, endpoint: OwnEndpoint, method: str) -> None:
    """Refuse what can be refused before the body is read: ``MethodNotAllowed`` (405) for a
    method ``endpoint`` does not serve, ``BackendUnavailable`` (503) for an authorization-server
    endpoint on a gateway without one."""
    if not endpoint.allows(method):
        raise MethodNotAllowed(endpoint.allow_header, debug=f"{method} {endpoint.path}")
    if endpoint.path in NEEDS_SERVER:
        _server(gw)


async def answer_own(gw: Gateway, endpoint: OwnEndpoint, request: EndpointRequest) -> Answer:
    """The answer of ``endpoint`` to ``request`` (``check_own`` first). An ``AuthError`` a
    handler raises is answered as usual (its JSON error); anything else is the caller's 500."""
    check_own(gw, endpoint, request.method)
    return await HANDLERS[endpoint.path](gw, request)
