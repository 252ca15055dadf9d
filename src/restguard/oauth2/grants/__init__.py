"""One module per grant type (RFC 6749 §4, §6); each exposes ``GRANT_TYPE`` and a grant object
the token endpoint calls with the authenticated client, the form and the time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from restguard.oauth2.access_tokens import IssuedToken
from restguard.store.ports import OAuthClientRecord

#: Told the ``jti`` of every access token a grant revokes, so this process refuses it at once
#: (the other processes read the store within a second).
Revoked = Callable[[str], None]


class Grant(Protocol):
    async def __call__(
        self, client: OAuthClientRecord, form: dict[str, str], now: datetime
    ) -> IssuedToken: ...
