"""Refresh tokens (RFC 6749 §1.5, §6): always opaque, ``rg_rt_`` and 43 base62 characters
(256 bits) from ``secrets``, stored only as SHA-256 (``keys/hashing``), rotated on every use.

Rotation with reuse detection (RFC 9700 §4.14.2): each use replaces the token by a new one of
the same family; presenting a replaced token again means two parties hold it, so the whole
family is revoked -- every refresh token of the grant and the access tokens issued beside them.
Of two refreshes racing with one token exactly one rotates; the other is a reuse.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

from restguard.keys.hashing import token_digest
from restguard.oauth2.access_tokens import IssuedToken
from restguard.store.ports import RefreshTokenRecord, RefreshTokenStore
from restguard.tokens import random_base62

PREFIX: Final = "rg_rt_"
LIFETIME: Final = timedelta(days=30)
_FORM = re.compile(r"rg_rt_[0-9A-Za-z]{43}")


def new_token() -> str:
    return PREFIX + random_base62(43)


def is_refresh_token(text: str) -> bool:
    return _FORM.fullmatch(text) is not None


def new_family_id() -> str:
    return secrets.token_urlsafe(16)


class RefreshTokens:
    """Issues and rotates refresh tokens in ``store``."""

    def __init__(self, store: RefreshTokenStore, lifetime: timedelta = LIFETIME) -> None:
        self.store, self.lifetime = store, lifetime

    async def start(
        self,
        family_id: str,
        *,
        client_id: str,
        user_id: str,
        subject: str,
        scopes: tuple[str, ...],
        access_jti: str,
        access_expires_at: datetime,
        now: datetime,
    ) -> str:
        """The first refresh token of a new family."""
        token = new_token()
        await self.store.start_family(
            RefreshTokenRecord(
                token_hash=token_digest(token),
                family_id=family_id,
                client_id=client_id,
                user_id=user_id,
                subject=subject,
                scopes=scopes,
                created_at=now,
                expires_at=now + self.lifetime,
                access_jti=access_jti,
                access_expires_at=access_expires_at,
            )
        )
        return token

    async def attach(
        self,
        issued: IssuedToken,
        family_id: str,
        *,
        client_id: str,
        user_id: str,
        subject: str,
        scopes: tuple[str, ...],
        access_jti: str,
        now: datetime,
    ) -> IssuedToken:
        """``issued`` (whose ``jti`` is ``access_jti``) with the first refresh token of the new
        family ``family_id``, which also records that access token for its revocation."""
        token = await self.start(
            family_id,
            client_id=client_id,
            user_id=user_id,
            subject=subject,
            scopes=scopes,
            access_jti=access_jti,
            access_expires_at=now + timedelta(seconds=issued.expires_in + 60),
            now=now,
        )
        return IssuedToken(issued.access_token, issued.expires_in, issued.scope, token)

    async def find(self, token: str) -> RefreshTokenRecord | None:
        if not is_refresh_token(token):
            return None
        return await self.store.get(token_digest(token))

    async def rotate(
        self,
        used: RefreshTokenRecord,
        *,
        access_jti: str,
        access_expires_at: datetime,
        now: datetime,
    ) -> tuple[str, str]:
        """``(outcome, new token)``: outcome ``rotated``, ``reused`` or ``revoked`` (only
        ``rotated`` gives a token that works)."""
        token = new_token()
        new = replace(
            used,
            token_hash=token_digest(token),
            created_at=now,
            expires_at=now + self.lifetime,
            access_jti=access_jti,
            access_expires_at=access_expires_at,
            used_at=None,
            family_revoked_at=None,
        )
        outcome = await self.store.rotate(used.token_hash, new, now)
        return outcome, token
