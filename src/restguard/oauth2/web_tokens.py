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

MAX_CHARS: Final = 4096


class SealerLike(Protocol):
    def seal(self, plaintext: bytes, purpose: str) -> bytes: ...

    def open(self, sealed: bytes, purpose: str) -> bytes: ...


class WebTokenInvalid(Exception):
    """Not a token of this purpose, altered, or expired."""


class WebTokens:
    def __init__(self, sealer: SealerLike) -> None:
        self._sealer = sealer

    def make(self, purpose: str, data: dict[str, Any], now: datetime, ttl: int) -> str:
        body = json.dumps({"d": data, "x": int(now.timestamp()) + ttl}, separators=(",", ":"))
        sealed = self._sealer.seal(body.encode(), "restguard web " + purpose)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

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
