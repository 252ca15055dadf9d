"""The refresh token grant (RFC 6749 §6), with rotation and reuse detection
(``oauth2/refresh_tokens.py``).

RFC 6749 §6: the client must be the one the token was issued to; a ``scope`` parameter may
narrow but "MUST NOT include any scope not originally granted" (the refresh token keeps the
original grant). A token that was rotated already is a reuse: the family is revoked and the
request refused; so is a token of a revoked family and an expired one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from restguard.oauth2.access_tokens import AccessTokens, IssuedToken, new_jti
from restguard.oauth2.errors import OAuthError, invalid_request
from restguard.oauth2.grants import Revoked
from restguard.oauth2.refresh_tokens import RefreshTokens
from restguard.oauth2.scopes import granted_scopes
from restguard.store.ports import OAuthClientRecord

GRANT_TYPE: Final = "refresh_token"


def _invalid_grant(debug: str) -> OAuthError:
    return OAuthError(
        "invalid_grant", "The refresh token is invalid, expired or revoked.", debug=debug
    )


class RefreshTokenGrant:
    def __init__(
        self, tokens: AccessTokens, refresh: RefreshTokens, on_revoked: Revoked | None = None
    ) -> None:
        self.tokens, self.refresh, self.on_revoked = tokens, refresh, on_revoked

    async def _revoke(self, family_id: str, access_jti: str, now: datetime) -> None:
        await self.refresh.store.revoke_family(family_id, now)
        if self.on_revoked is not None:
            self.on_revoked(access_jti)

    async def __call__(
        self, client: OAuthClientRecord, form: dict[str, str], now: datetime
    ) -> IssuedToken:
        token = form.get("refresh_token")
        if token is None:
            raise invalid_request("refresh_token is missing.")
        record = await self.refresh.find(token)
        if record is None:
            raise _invalid_grant("unknown refresh token")
        if record.client_id != client.client_id:
            raise _invalid_grant("the refresh token was issued to another client")
        if record.family_revoked_at is not None:
            raise _invalid_grant("the token's family is revoked")
        if record.used_at is not None:
            await self._revoke(record.family_id, record.access_jti, now)
            raise _invalid_grant("reuse of a rotated refresh token: its family is revoked")
        if record.expires_at <= now:
            raise _invalid_grant("the refresh token expired")
        allowed = tuple(s for s in record.scopes if s in client.scopes)
        scopes = granted_scopes(form.get("scope"), allowed)
        jti = new_jti()
        access_expires = now + timedelta(seconds=self.tokens.lifetime + 60)
        outcome, new_token = await self.refresh.rotate(
            record, access_jti=jti, access_expires_at=access_expires, now=now
        )
        if outcome == "reused":  # a concurrent refresh came first: a reuse all the same
            await self._revoke(record.family_id, record.access_jti, now)
            raise _invalid_grant("concurrent reuse of a refresh token: its family is revoked")
        if outcome != "rotated":
            raise _invalid_grant("the token's family is revoked")
        issued = await self.tokens.issue_for(client, subject=record.subject, scopes=scopes, jti=jti)
        return IssuedToken(issued.access_token, issued.expires_in, issued.scope, new_token)
