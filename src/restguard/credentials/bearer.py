"""``Authorization: Bearer`` (RFC 6750 §2.1), shared by every method that reads it (``jwt``,
``oauth2``; ``credentials/jwt.py`` explains which token goes to which)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from restguard.errors import InvalidRequest
from restguard.types import RequestView

#: A JWS compact serialisation: three non-empty base64url parts (RFC 7515 §7.1).
COMPACT: Final = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def bearer_token(view: RequestView) -> bytes | None:
    """The token of the request's ``Authorization: Bearer`` header, if it has one (the scheme
    is case-insensitive; RFC 9110 §11.4 separates it with SP, lenient servers take a tab too).
    A repeated Authorization header is ambiguous: ``InvalidRequest``.

    Up to six calls ask this of one request (``extract`` and ``carriers`` of ``jwt``,
    ``oauth2``, ...): the answer for the last header tuple seen is kept. A tuple cannot change,
    and the one kept is referenced here, so no other tuple can take its identity."""
    global _last
    headers = view.headers
    last = _last
    if last[0] is headers:
        return last[1]
    token = _bearer_token(headers)
    if type(headers) is tuple:
        _last = (headers, token)
    return token


_last: tuple[object, bytes | None] = (object(), None)


def _bearer_token(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    auth = None
    for name, value in headers:  # one pass
        if name == b"authorization":
            if auth is not None:
                raise InvalidRequest("The authorization header must not be repeated.")
            auth = value
    if auth is None:
        return None
    scheme, _, rest = auth.replace(b"\t", b" ").partition(b" ")
    return rest.strip(b" ") if scheme.lower() == b"bearer" else None
