"""The client credentials grant (RFC 6749 §4.4): a confidential client asks for a token for
itself. No refresh token is issued (§4.4.3: it SHOULD NOT be)."""

from __future__ import annotations

from datetime import datetime

from restguard.oauth2.access_tokens import AccessTokens, IssuedToken
from restguard.oauth2.errors import OAuthError
from restguard.oauth2.scopes import granted_scopes
from restguard.store.ports import OAuthClientRecord

GRANT_TYPE = "client_credentials"


class ClientCredentialsGrant:
    def __init__(self, tokens: AccessTokens) -> None:
        self.tokens = tokens

    async def __call__(
        self, client: OAuthClientRecord, form: dict[str, str], now: datetime
    ) -> IssuedToken:
        # RFC 6749 §4.4: "MUST only be used by confidential clients".
        if client.secret_hash is None:
            raise OAuthError(
                "unauthorized_client", "A public client cannot use the client credentials grant."
            )
        scopes = granted_scopes(form.get("scope"), client.scopes)
        return await self.tokens.issue_for(client, subject=client.client_id, scopes=scopes)
