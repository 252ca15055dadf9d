"""restguard's OAuth 2.0 authorization server: the endpoints ``oauth2.http`` names."""

from __future__ import annotations

import json
from dataclasses import dataclass

from restguard.authz.ratelimit import MemoryRateLimiter, RateLimiter
from restguard.clock import Clock
from restguard.credentials.oauth1 import OAuth1Verifier, RequestParts
from restguard.errors import BackendUnavailable
from restguard.oauth2.access_tokens import AccessTokens
from restguard.oauth2.browser import AddressThrottle, account_address_throttle
from restguard.oauth2.client_auth import ClientLookup
from restguard.oauth2.device_authorization import DeviceAuthorizationEndpoint
from restguard.oauth2.device_pages import CODE_ATTEMPTS, CODE_WINDOW, DevicePages
from restguard.oauth2.grants import Grant
from restguard.oauth2.grants.authorization_code import AuthorizationCodeGrant
from restguard.oauth2.grants.client_credentials import ClientCredentialsGrant
from restguard.oauth2.grants.device_code import GRANT_TYPE as DEVICE_CODE
from restguard.oauth2.grants.device_code import DeviceCodeGrant
from restguard.oauth2.grants.refresh_token import RefreshTokenGrant
from restguard.oauth2.http import EndpointRequest, EndpointResponse
from restguard.oauth2.oauth1_provider import OAuth1Provider
from restguard.oauth2.refresh_tokens import RefreshTokens
from restguard.oauth2.resource_owner import ResourceOwnerPages
from restguard.oauth2.token_admin import (
    IntrospectionEndpoint,
    RevocationEndpoint,
    TokenInspector,
)
from restguard.oauth2.token_endpoint import Failures, Record, TokenEndpoint
from restguard.oauth2.users import LoginChecker
from restguard.oauth2.web_tokens import WebTokens
from restguard.store.ports import Store
from restguard.wire import rfc7636

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


@dataclass(frozen=True, slots=True)
class ServerParts:
    """What the server is built from (``wiring.py`` makes them)."""

    public_url: str
    clients: ClientLookup
    tokens: AccessTokens
    store: Store
    web: WebTokens
    clock: Clock
    inspector: TokenInspector
    failures: Failures | None = None
    record: Record | None = None
    oauth1: OAuth1Verifier | None = None  # None: the OAuth 1.0a endpoints answer 503
    # the sign-in and device-code throttles' counters (the gateway's, shared like its limits)
    limiter: RateLimiter | None = None


class Server:
    """The authorization, token, revocation, introspection and device authorization endpoints,
    the resource owner's pages (the device flow's too) and the metadata document, for issuer
    ``public_url``."""

    def __init__(self, parts: ServerParts) -> None:
        self.issuer = parts.public_url  # exactly the tokens' "iss" (RFC 8414 §3.3)
        self.clock = clock = parts.clock
        store, inspector = parts.store, parts.inspector
        limiter = parts.limiter or MemoryRateLimiter(clock.monotonic)
        refresh = RefreshTokens(store.refresh_tokens)
        grants: dict[str, Grant] = {
            "authorization_code": AuthorizationCodeGrant(
                store.oauth2_codes, parts.tokens, refresh, store.revoked_tokens, inspector.revoked
            ),
            "client_credentials": ClientCredentialsGrant(parts.tokens),
            "refresh_token": RefreshTokenGrant(parts.tokens, refresh, inspector.revoked),
            DEVICE_CODE: DeviceCodeGrant(store.device_codes, parts.tokens, refresh),
        }
        self._token = TokenEndpoint(parts.clients, grants, parts.failures, parts.record)
        self._revoke = RevocationEndpoint(
            parts.clients, inspector, store.revoked_tokens, refresh, parts.failures, parts.record
        )
        self._introspect = IntrospectionEndpoint(
            parts.clients, inspector, refresh, parts.failures, parts.record
        )
        self._pages = ResourceOwnerPages(
            issuer=self.issuer,
            clients=parts.clients,
            users=store.users,
            checker=LoginChecker(store.users),
            consents=store.consents,
            codes=store.oauth2_codes,
            web=parts.web,
            clock=clock,
            throttle=AddressThrottle(limiter, "login"),
            account_throttle=account_address_throttle(limiter),
            failures=parts.failures,
        )
        self._device_pages = DevicePages(
            owner=self._pages,
            clients=parts.clients,
            codes=store.device_codes,
            clock=clock,
            throttle=AddressThrottle(limiter, "device", CODE_ATTEMPTS, CODE_WINDOW),
        )
        self._oauth1 = (
            None
            if parts.oauth1 is None
            else OAuth1Provider(
                verifier=parts.oauth1,
                parts=RequestParts(self.issuer),
                consumers=store.oauth1_consumers,
                tokens=store.oauth1_tokens,
                owner=self._pages,
                clock=clock,
                failures=parts.failures,
                record=parts.record,
            )
        )
        self._device_authorization = DeviceAuthorizationEndpoint(
            parts.clients, store.device_codes, self.issuer, parts.failures, parts.record
        )
        base = self.issuer.rstrip("/")
        # RFC 8414 §2: what this server does, and only that.
        self._metadata = json.dumps(
            {
                "issuer": self.issuer,
                "authorization_endpoint": base + "/oauth2/authorize",
                "token_endpoint": base + "/oauth2/token",
                "jwks_uri": base + "/.well-known/jwks.json",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": sorted(grants),
                "code_challenge_methods_supported": [rfc7636.METHOD],
                "token_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
                "revocation_endpoint": base + "/oauth2/revoke",
                "revocation_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
                "introspection_endpoint": base + "/oauth2/introspect",
                "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
                "device_authorization_endpoint": base + "/oauth2/device_authorization",
                # RFC 9207 §3: every authorization response carries "iss".
                "authorization_response_iss_parameter_supported": True,
            },
            indent=2,
        ).encode()

    async def token(self, request: EndpointRequest) -> EndpointResponse:
        return await self._token(request, self.clock.now())

    async def revoke(self, request: EndpointRequest) -> EndpointResponse:
        return await self._revoke(request, self.clock.now())

    async def introspect(self, request: EndpointRequest) -> EndpointResponse:
        return await self._introspect(request, self.clock.now())

    async def device_authorization(self, request: EndpointRequest) -> EndpointResponse:
        return await self._device_authorization(request, self.clock.now())

    async def authorize(self, request: EndpointRequest) -> EndpointResponse:
        return await self._pages.authorize(request)

    async def device(self, request: EndpointRequest) -> EndpointResponse:
        return await self._device_pages.device(request)

    async def login(self, request: EndpointRequest) -> EndpointResponse:
        return await self._pages.login(request)

    async def consent(self, request: EndpointRequest) -> EndpointResponse:
        return await self._pages.consent(request)

    def _provider(self) -> OAuth1Provider:
        if self._oauth1 is None:
            raise BackendUnavailable(debug="no OAuth 1.0a verifier configured")
        return self._oauth1

    async def oauth1_request_token(self, request: EndpointRequest) -> EndpointResponse:
        return await self._provider().request_token(request)

    async def oauth1_authorize(self, request: EndpointRequest) -> EndpointResponse:
        return await self._provider().authorize(request)

    async def oauth1_access_token(self, request: EndpointRequest) -> EndpointResponse:
        return await self._provider().access_token(request)

    async def oauth1_tokens(self, request: EndpointRequest) -> EndpointResponse:
        return await self._provider().granted(request)

    def metadata(self) -> EndpointResponse:
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"public, max-age=300"),
        ]
        return EndpointResponse(200, headers, self._metadata)
