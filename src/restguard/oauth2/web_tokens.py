"""Values the browser carries between the resource owner's pages: the pending authorization
request, the login session, CSRF tokens.

Each is JSON sealed with the master key (``keys/sealing.Sealer``: AES-256-GCM, the purpose bound
as associated data), so the browser can neither read nor alter it and one kind never passes for
another; it carries its expiry. Being sealed, they work on every worker and instance that shares
the master key, with nothing stored server-side. Base64url without padding.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, Final, Protocol

from restguard.keys.sealing import SealError

#: The longest token ``open`` takes. A sealed authorization request travels in the query of
#: ``/login?request=...`` (the gateway takes request targets up to 8 KiB) and, besides the
#: CSRF token, a username and a password, in a page's form (16 KiB): room for the largest
#: request ``authorization_request`` accepts (a 2000-character redirect URI, a 1024-character
#: state). ``make`` refuses to make a longer one (``WebTokenTooLarge``), so a token is never
#: handed out that ``open`` would then refuse.
MAX_CHARS: Final = 7680


class SealerLike(Protocol):
    def seal(self, plaintext: bytes, purpose: str) -> bytes: ...

    def open(self, sealed: bytes, purpose: str) -> bytes: ...


class WebTokenInvalid(Exception):
    """Not a token of this purpose, altered, or expired."""


class WebTokenTooLarge(ValueError):
    """The data would make a token longer than ``MAX_CHARS``."""


class WebTokens:
    def __init__(self, sealer: SealerLike) -> None:
        self._sealer = sealer

    def make(self, purpose: str, data: dict[str, Any], now: datetime, ttl: int) -> str:
        """``data`` sealed for ``purpose`` until ``now + ttl``; ``WebTokenTooLarge`` past
        ``MAX_CHARS``. (Non-ASCII text as UTF-8, not ``\\u`` escapes: half the size.)"""
        body = json.dumps(
            {"d": data, "x": int(now.timestamp()) + ttl}, separators=(",", ":"), ensure_ascii=False
        )
        sealed = self._sealer.seal(body.encode("utf-8"), "restguard web " + purpose)
        token = base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")
        if len(token) > MAX_CHARS:
            raise WebTokenTooLarge(f"a {purpose} token of {len(token)} characters")
        return token

    def open(self, purpose: str, token: str, now: datetime) -> dict[str, Any]:
        """The data sealed in ``token``; ``WebTokenInvalid`` for anything else."""
        if not token or len(token) > MAX_CHARS or not token.isascii():
            raise WebTokenInvalid("empty, too long or not ASCII")
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body = json.loads(self._sealer.open(sealed, "restguard web " + purpose))
        except (binascii.Error, ValueError, SealError) as exc:  # (JSON and UTF-8: ValueError)
            raise WebTokenInvalid(type(exc).__name__) from None
        if not isinstance(body, dict) or not isinstance(body.get("d"), dict):
            raise WebTokenInvalid("not a web token")
        expiry = body.get("x")
        if not isinstance(expiry, int) or now.timestamp() >= expiry:
            raise WebTokenInvalid("expired")
        data: dict[str, Any] = body["d"]
        return data
