"""restguard's OAuth 2.0 authorization server: the endpoints ``oauth2.http`` names."""

from __future__ import annotations

import json

from restguard.clock import Clock
from restguard.oauth2.access_tokens import AccessTokens
from restguard.oauth2.client_auth import ClientLookup
from restguard.oauth2.http import EndpointRequest, EndpointResponse
from restguard.oauth2.token_admin import (
    IntrospectionEndpoint,
    RevocationEndpoint,
    TokenInspector,
)
from restguard.oauth2.token_endpoint import GRANTS, Failures, Record, TokenEndpoint
from restguard.store.ports import RevokedTokenStore

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class Server:
    """The token, revocation and introspection endpoints and the metadata document, for
    issuer ``public_url``."""

    def __init__(
        self,
        public_url: str,
        clients: ClientLookup,
        tokens: AccessTokens,
        clock: Clock,
        *,
        inspector: TokenInspector,
        revoked: RevokedTokenStore,
        failures: Failures | None = None,
        record: Record | None = None,
    ) -> None:
        self.issuer = public_url  # exactly the tokens' "iss" (RFC 8414 §3.3)
        self.clock = clock
        self._token = TokenEndpoint(clients, tokens, failures, record)
        self._revoke = RevocationEndpoint(clients, inspector, revoked, failures, record)
        self._introspect = IntrospectionEndpoint(clients, inspector, failures, record)
        base = public_url.rstrip("/")
        # RFC 8414 §2: what this server does, and only that.
        self._metadata = json.dumps(
            {
                "issuer": self.issuer,
                "token_endpoint": base + "/oauth2/token",
                "jwks_uri": base + "/.well-known/jwks.json",
                "grant_types_supported": sorted(GRANTS),
                "token_endpoint_auth_methods_supported": AUTH_METHODS,
                "revocation_endpoint": base + "/oauth2/revoke",
                "revocation_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
                "introspection_endpoint": base + "/oauth2/introspect",
                "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
                "response_types_supported": [],
            },
            indent=2,
        ).encode()

    async def token(self, request: EndpointRequest) -> EndpointResponse:
        return await self._token(request, self.clock.now())

    async def revoke(self, request: EndpointRequest) -> EndpointResponse:
        return await self._revoke(request, self.clock.now())

    async def introspect(self, request: EndpointRequest) -> EndpointResponse:
        return await self._introspect(request, self.clock.now())

    def metadata(self) -> EndpointResponse:
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"public, max-age=300"),
        ]
        return EndpointResponse(200, headers, self._metadata)
