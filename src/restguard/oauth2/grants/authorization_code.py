"""The authorization code grant's token request (RFC 6749 §4.1.3), with PKCE (RFC 7636 §4.6).

Checked before the code is used, so that a party holding a stolen code but not the verifier
cannot spend it: the code was issued to this client, has not expired, ``redirect_uri`` is the
one of the authorization request when that request named one, and the verifier matches the S256
challenge. Then the code is used atomically (``AuthorizationCodeStore.consume``: one winner
across processes, and none once the code's user is removed). A code presented again -- replayed,
or raced -- is refused, and what its first exchange produced is revoked (RFC 6749 §4.1.2: "the
authorization server MUST deny the request and SHOULD revoke (when possible) all tokens
previously issued based on that authorization code"). The refresh-token family is written before
the code names it, so a replay racing the first exchange always finds it to revoke.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Final

from restguard.keys.hashing import token_digest
from restguard.oauth2.access_tokens import AccessTokens, IssuedToken, new_jti
from restguard.oauth2.errors import OAuthError, invalid_request
from restguard.oauth2.grants import Revoked
from restguard.oauth2.refresh_tokens import RefreshTokens, new_family_id
from restguard.store.ports import (
    AuthorizationCodeRecord,
    AuthorizationCodeStore,
    OAuthClientRecord,
    RevokedTokenStore,
)
from restguard.tokens import random_base62
from restguard.wire import rfc7636

GRANT_TYPE: Final = "authorization_code"
PREFIX: Final = "rg_ac_"
#: RFC 6749 §4.1.2: "A maximum authorization code lifetime of 10 minutes is RECOMMENDED";
#: a browser redirect takes a second.
LIFETIME: Final = timedelta(seconds=60)
_FORM = re.compile(r"rg_ac_[0-9A-Za-z]{43}")


def new_code() -> str:
    return PREFIX + random_base62(43)


def _invalid_grant(debug: str) -> OAuthError:
    return OAuthError(
        "invalid_grant", "The authorization code is invalid, expired or used.", debug=debug
    )


class AuthorizationCodeGrant:
    def __init__(
        self,
        codes: AuthorizationCodeStore,
        tokens: AccessTokens,
        refresh: RefreshTokens,
        revoked: RevokedTokenStore,
        on_revoked: Revoked | None = None,
    ) -> None:
        self.codes, self.tokens, self.refresh = codes, tokens, refresh
        self.revoked, self.on_revoked = revoked, on_revoked

    async def __call__(
        self, client: OAuthClientRecord, form: dict[str, str], now: datetime
    ) -> IssuedToken:
        code = form.get("code")
        if code is None:
            raise invalid_request("code is missing.")
        verifier = form.get("code_verifier")
        if verifier is None:  # every code has a challenge: no downgrade (RFC 9700 §2.1.1)
            raise OAuthError("invalid_grant", "code_verifier is missing (PKCE is required).")
        record = await self.codes.get(token_digest(code)) if _FORM.fullmatch(code) else None
        if record is None:
            raise _invalid_grant("unknown authorization code")
        if record.client_id != client.client_id:
            raise _invalid_grant("the code was issued to another client")
        if record.used_at is not None:
            await self._revoke_issued(record, now)
            raise _invalid_grant("the code was used before: what it produced is revoked")
        if record.expires_at <= now:
            raise _invalid_grant("the code expired")
        sent_uri = form.get("redirect_uri")
        if (record.redirect_uri_given or sent_uri is not None) and sent_uri != record.redirect_uri:
            raise _invalid_grant("redirect_uri differs from the authorization request's")
        if not rfc7636.verifier_matches(verifier, record.code_challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code challenge.")
        refreshable = "refresh_token" in client.grants
        family_id = new_family_id() if refreshable else None
        jti = new_jti()
        scopes = tuple(s for s in record.scopes if s in client.scopes)
        issued = await self.tokens.issue_for(client, subject=record.subject, scopes=scopes, jti=jti)
        if family_id is not None:
            # The family is written BEFORE the code names it: a replay racing this exchange
            # finds it and revokes it. Written after, a replay in between revoked nothing and
            # the refresh token stayed alive.
            issued = await self.refresh.attach(
                issued,
                family_id,
                client_id=client.client_id,
                user_id=record.user_id,
                subject=record.subject,
                scopes=scopes,
                access_jti=jti,
                now=now,
            )
        won = await self.codes.consume(record.code_hash, now, family_id=family_id, access_jti=jti)
        if not won:
            if family_id is not None:  # ours: never handed out
                await self.refresh.store.revoke_family(family_id, now)
            used = await self.codes.get(record.code_hash)
            if used is None or used.used_at is None:
                # not used, yet not consumable: its user was removed (``consume``)
                raise _invalid_grant("the code's user no longer exists")
            # another exchange of this code came first: both are refused
            await self._revoke_issued(used, now)
            raise _invalid_grant("the code was used by a concurrent request")
        return issued

    async def _revoke_issued(self, record: AuthorizationCodeRecord, now: datetime) -> None:
        if record.family_id is not None:
            await self.refresh.store.revoke_family(record.family_id, now)
        if record.access_jti is not None:
            expires = now + timedelta(seconds=self.tokens.lifetime + 60)
            await self.revoked.revoke(record.access_jti, record.client_id, expires, now)
            if self.on_revoked is not None:
                self.on_revoked(record.access_jti)
