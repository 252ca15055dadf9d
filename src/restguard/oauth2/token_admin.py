"""The endpoints that take a token back: revocation (RFC 7009) and introspection (RFC 7662).

Both authenticate the client as the token endpoint does (``client_auth``) and read the token
through the ``oauth2`` authenticator's verification (``TokenInspector``: signature, claims,
published key, client and token not revoked), so they cannot disagree with the gateway.

* Revocation: a client revokes its own access and refresh tokens (a refresh token with its whole
  family: every refresh token of the grant and the access tokens issued with them); an invalid,
  expired or unknown token is answered 200 as if revoked (RFC 7009 §2.2), a token of another
  client is refused (§2.1). The revocation is stored (``revoked_tokens``) and applies on every
  instance within a second; in this process at once.
* Introspection (access and refresh tokens): confidential clients only (RFC 7662 §2.1: the
  endpoint MUST be protected). A client may introspect its own tokens, and any token when
  ``restguard:introspect`` is among its registered scopes (a resource server); for any other
  token, and every token that is not active, the answer is ``{"active": false}`` (§2.2), so
  introspection cannot be used to scan for other clients' tokens (§4).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from restguard.errors import AuthError
from restguard.oauth2 import client_auth
from restguard.oauth2.errors import NO_STORE, OAuthError, invalid_request
from restguard.oauth2.http import EndpointRequest, EndpointResponse
from restguard.oauth2.refresh_tokens import RefreshTokens, is_refresh_token
from restguard.oauth2.token_endpoint import Failures, Record, parse_form
from restguard.store.ports import OAuthClientRecord, RefreshTokenRecord, RevokedTokenStore
from restguard.types import Principal

INTROSPECT_SCOPE: Final = "restguard:introspect"


class Facts(Protocol):
    @property
    def principal(self) -> Principal: ...

    @property
    def jti(self) -> str: ...

    @property
    def claims(self) -> Mapping[str, Any]: ...


class TokenInspector(Protocol):
    async def verified(self, token: str, now: datetime) -> Facts: ...

    def revoked(self, jti: str) -> None: ...


class _Endpoint:
    def __init__(
        self,
        clients: client_auth.ClientLookup,
        inspector: TokenInspector,
        refresh: RefreshTokens,
        failures: Failures | None,
        record: Record | None,
    ) -> None:
        self.clients, self.inspector, self.refresh = clients, inspector, refresh
        self.failures, self.record = failures, record

    async def _refresh_token(self, token: str, now: datetime) -> RefreshTokenRecord | None:
        """The refresh token ``token`` if it still works (not rotated, family not revoked,
        not expired)."""
        found = await self.refresh.find(token)
        if (
            found is None
            or found.used_at is not None
            or found.family_revoked_at is not None
            or found.expires_at <= now
        ):
            return None
        return found

    async def _client(
        self, request: EndpointRequest, now: datetime, *, confidential: bool
    ) -> tuple[OAuthClientRecord, dict[str, str], client_auth.Presented]:
        if request.query:
            raise invalid_request("Send the parameters in the body, not the URL.")
        form = parse_form(request)
        found = client_auth.presented(request, form)
        client = await client_auth.authenticate(found, self.clients, now)
        if confidential and client.secret_hash is None:
            raise OAuthError(
                "invalid_client", "This endpoint is for confidential clients.", status=401
            )
        if "token" not in form:
            raise invalid_request("token is missing.")
        return client, form, found

    async def _facts(self, token: str, now: datetime) -> Facts | None:
        try:
            return await self.inspector.verified(token, now)
        except AuthError as err:
            if err.status == 503:
                raise
            return None  # invalid, expired, revoked, unknown: not active

    async def _failed(self, request: EndpointRequest, err: OAuthError) -> EndpointResponse:
        if self.record is not None:
            self.record(request, err.status, err.error, None, None, err.debug)
        if err.error == "invalid_client" and self.failures is not None:
            await self.failures(request.client)
        return err.response()


class RevocationEndpoint(_Endpoint):
    """``POST /oauth2/revoke`` (RFC 7009 §2)."""

    def __init__(
        self,
        clients: client_auth.ClientLookup,
        inspector: TokenInspector,
        revoked: RevokedTokenStore,
        refresh: RefreshTokens,
        failures: Failures | None = None,
        record: Record | None = None,
    ) -> None:
        super().__init__(clients, inspector, refresh, failures, record)
        self.revoked_tokens = revoked

    async def __call__(self, request: EndpointRequest, now: datetime) -> EndpointResponse:
        try:
            client, form, found = await self._client(request, now, confidential=False)
            token = form["token"]
            if is_refresh_token(token):
                # RFC 7009 §2.1: revoking a refresh token also invalidates the access tokens
                # of the same grant: the whole family.
                refresh = await self.refresh.find(token)
                if refresh is not None:
                    if refresh.client_id != client.client_id:
                        raise OAuthError(
                            "unauthorized_client", "The token was not issued to this client."
                        )
                    await self.refresh.store.revoke_family(refresh.family_id, now)
                    self.inspector.revoked(refresh.access_jti)
                facts = None
            else:
                facts = await self._facts(token, now)
            if facts is not None:
                if facts.principal.client_id != client.client_id:  # RFC 7009 §2.1
                    raise OAuthError(
                        "unauthorized_client", "The token was not issued to this client."
                    )
                expires = _expiry(facts.claims.get("exp"), now)
                await self.revoked_tokens.revoke(facts.jti, client.client_id, expires, now)
                self.inspector.revoked(facts.jti)
        except OAuthError as err:
            return await self._failed(request, err)
        if self.record is not None:
            self.record(request, 200, None, found.method, client.client_id, None)
        return EndpointResponse(200, list(NO_STORE), b"")


class IntrospectionEndpoint(_Endpoint):
    """``POST /oauth2/introspect`` (RFC 7662 §2)."""

    async def __call__(self, request: EndpointRequest, now: datetime) -> EndpointResponse:
        try:
            client, form, found = await self._client(request, now, confidential=True)
            token = form["token"]
            refresh = await self._refresh_token(token, now) if is_refresh_token(token) else None
            facts = None if is_refresh_token(token) else await self._facts(token, now)
        except OAuthError as err:
            return await self._failed(request, err)
        body: dict[str, Any] = {"active": False}
        if refresh is not None and (
            refresh.client_id == client.client_id or INTROSPECT_SCOPE in client.scopes
        ):
            body = {
                "active": True,
                "token_type": "refresh_token",
                "scope": " ".join(refresh.scopes),
                "client_id": refresh.client_id,
                "sub": refresh.subject,
                "exp": int(refresh.expires_at.timestamp()),
                "iat": int(refresh.created_at.timestamp()),
            }
        elif facts is not None and (
            facts.principal.client_id == client.client_id or INTROSPECT_SCOPE in client.scopes
        ):
            claims = facts.claims
            body = {"active": True, "token_type": "Bearer"} | {
                name: claims[name]
                for name in ("scope", "client_id", "sub", "exp", "iat", "iss", "aud", "jti")
                if name in claims
            }
        if self.record is not None:
            self.record(request, 200, None, found.method, client.client_id, None)
        return EndpointResponse(200, list(NO_STORE), json.dumps(body).encode())


#: How long a revocation is kept at most: past any token restguard issues (an hour at most).
KEEP_AT_MOST = timedelta(days=30)


def _expiry(exp: object, now: datetime) -> datetime:
    """Until when a revocation must be kept: the token's ``exp``, capped (a token signed with
    an ``exp`` past year 9999 must still be revocable, not a 500)."""
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return now + KEEP_AT_MOST
    try:
        expires = datetime.fromtimestamp(float(exp), UTC)
    except (OverflowError, ValueError, OSError):
        return now + KEEP_AT_MOST
    return min(expires, now + KEEP_AT_MOST)
