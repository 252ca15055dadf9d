"""``Authorization: Bearer`` (RFC 6750 §2.1), shared by every method that reads it (``jwt``,
``oauth2``; ``credentials/jwt.py`` explains which token goes to which)."""

from __future__ import annotations

import re
from typing import Final

from restguard.errors import InvalidRequest
from restguard.types import RequestView

#: A JWS compact serialisation: three non-empty base64url parts (RFC 7515 §7.1).
COMPACT: Final = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def bearer_token(view: RequestView) -> bytes | None:
    """The token of the request's ``Authorization: Bearer`` header, if it has one (the scheme
    is case-insensitive; RFC 9110 §11.4 separates it with SP, lenient servers take a tab too).
    A repeated Authorization header is ambiguous: ``InvalidRequest``."""
    auth = None
    for name, value in view.headers:  # one pass
        if name == b"authorization":
            if auth is not None:
                raise InvalidRequest("The authorization header must not be repeated.")
            auth = value
    if auth is None:
        return None
    scheme, _, rest = auth.replace(b"\t", b" ").partition(b" ")
    return rest.strip(b" ") if scheme.lower() == b"bearer" else None
