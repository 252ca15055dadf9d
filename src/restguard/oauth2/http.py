"""What the authorization server's endpoints take and give, free of any HTTP stack.

The gateway (``gateway/own.py``) reads the request (its body capped by the endpoint's
``body_limit`` in ``authz/endpoints.py``), hands an ``EndpointRequest`` to the server and writes
the ``EndpointResponse`` back as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from restguard.types import RequestView

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class EndpointRequest:
    """One request to an endpoint: header names lower-case, as received (``RequestView``)."""

    method: str
    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = b""
    query: bytes = b""
    client: str = ""
    scheme: str = "http"
    # the path as received (OAuth 1.0a signs it, RFC 5849 §3.4.1.2), and whether the peer is
    # a trusted proxy (then ``public_url`` names the scheme and authority the client used)
    raw_path: bytes = b""
    via_trusted_proxy: bool = False

    def view(self) -> RequestView:
        """The request as the credential verifiers see it (its body read)."""
        return RequestView(
            self.method,
            self.path,
            self.query,
            self.headers,
            self.client,
            self.via_trusted_proxy,
            self.scheme,
            self.raw_path,
            self.body,
        )

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]


@dataclass(frozen=True, slots=True)
class EndpointResponse:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""


class AuthorizationServer(Protocol):
    """The endpoints the gateway serves for restguard's OAuth 2.0 authorization server."""

    async def token(self, request: EndpointRequest) -> EndpointResponse:
        """``POST /oauth2/token`` (RFC 6749 §3.2)."""
        ...

    def metadata(self) -> EndpointResponse:
        """``GET /.well-known/oauth-authorization-server`` (RFC 8414 §3)."""
        ...

    async def revoke(self, request: EndpointRequest) -> EndpointResponse:
        """``POST /oauth2/revoke`` (RFC 7009 §2)."""
        ...

    async def introspect(self, request: EndpointRequest) -> EndpointResponse:
        """``POST /oauth2/introspect`` (RFC 7662 §2)."""
        ...

    async def authorize(self, request: EndpointRequest) -> EndpointResponse:
        """``GET /oauth2/authorize`` (RFC 6749 §3.1)."""
        ...

    async def login(self, request: EndpointRequest) -> EndpointResponse:
        """``GET|POST /login``: the resource owner signs in."""
        ...

    async def consent(self, request: EndpointRequest) -> EndpointResponse:
        """``GET|POST /consent``: the resource owner grants scopes to a client."""
        ...

    async def device_authorization(self, request: EndpointRequest) -> EndpointResponse:
        """``POST /oauth2/device_authorization`` (RFC 8628 §3.1)."""
        ...

    async def device(self, request: EndpointRequest) -> EndpointResponse:
        """``GET|POST /device``: the resource owner enters a device's user code (RFC 8628
        §3.3) and approves or denies it."""
        ...

    async def oauth1_request_token(self, request: EndpointRequest) -> EndpointResponse:
        """``POST /oauth1/request_token``: temporary credentials (RFC 5849 §2.1)."""
        ...

    async def oauth1_authorize(self, request: EndpointRequest) -> EndpointResponse:
        """``GET|POST /oauth1/authorize``: the resource owner authorizes (RFC 5849 §2.2)."""
        ...

    async def oauth1_access_token(self, request: EndpointRequest) -> EndpointResponse:
        """``POST /oauth1/access_token``: token credentials (RFC 5849 §2.3)."""
        ...

    async def oauth1_tokens(self, request: EndpointRequest) -> EndpointResponse:
        """``GET|POST /oauth1/tokens``: the resource owner lists and revokes the token
        credentials they granted."""
        ...
