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
    A repeated Authorization header is ambiguous: ``InvalidRequest``."""
    return _read(view.headers)[0]


def jws_bearer_token(view: RequestView) -> bytes | None:
    """``bearer_token`` if it is shaped like a JWS compact serialisation (``COMPACT``), else
    None."""
    return _read(view.headers)[1]


def _read(headers: Sequence[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None]:
    """(Bearer token, the same if JWS-shaped) of ``headers``.

    Up to eight calls ask this of one request (``extract`` and ``carriers`` of ``jwt`` and
    ``oauth2``, the JWS shape of a token several hundred bytes long each time): the answer for
    the last header tuple seen is kept. A tuple cannot change, and the one kept is referenced
    here, so no other tuple can take its identity. A refusal (a repeated header) is not kept."""
    global _last
    last = _last
    if last[0] is headers:
        return last[1]
    token = _bearer_token(headers)
    read = (token, token if token is not None and COMPACT.fullmatch(token) else None)
    if type(headers) is tuple:
        _last = (headers, read)
    return read


_last: tuple[object, tuple[bytes | None, bytes | None]] = (object(), (None, None))


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
