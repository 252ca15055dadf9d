"""Opaque access tokens (``oauth2 client create --token-format opaque``): ``rg_at_``, 43 base62
characters from ``secrets`` (256 bits) and a 6-character CRC32 checksum (so secret scanners,
and the gateway before any lookup, can tell a well-formed token from a typo), stored only as
SHA-256 with what a JWT would carry. The gateway looks them up in the store (through a short
cache); revocation is by ``jti``, as for JWTs (``revoked_tokens``), so both kinds leave on every
instance within a second. A client gets opaque tokens when its holders must not read the
token's contents, or when every use must be checked against the store."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Final

from restguard.keys.hashing import token_digest
from restguard.store.ports import AccessTokenRecord, AccessTokenStore
from restguard.tokens import checksum62, random_base62

PREFIX: Final = "rg_at_"
_BODY_LEN, _CHECK_LEN = 43, 6
_FORM = re.compile(r"rg_at_[0-9A-Za-z]{49}")


def new_token() -> str:
    body = PREFIX + random_base62(_BODY_LEN)
    return body + checksum62(body)


def well_formed(token: str) -> bool:
    """The form and the checksum: nothing else is looked up for a token that fails this."""
    return (
        _FORM.fullmatch(token) is not None
        and checksum62(token[:-_CHECK_LEN]) == token[-_CHECK_LEN:]
    )


class OpaqueTokens:
    """Mints opaque access tokens into ``store``."""

    def __init__(self, store: AccessTokenStore) -> None:
        self.store = store

    async def issue(
        self,
        *,
        jti: str,
        client_id: str,
        subject: str,
        scopes: tuple[str, ...],
        now: datetime,
        lifetime: int,
    ) -> str:
        token = new_token()
        await self.store.insert(
            AccessTokenRecord(
                token_hash=token_digest(token),
                jti=jti,
                client_id=client_id,
                subject=subject,
                scopes=scopes,
                created_at=now,
                expires_at=now + timedelta(seconds=lifetime),
            )
        )
        return token

    async def find(self, token: str) -> AccessTokenRecord | None:
        if not well_formed(token):
            return None
        return await self.store.get(token_digest(token))
