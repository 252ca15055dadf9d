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
    here, so no other tuple can take its identity. A refusal (a repeated header) is not kept.

    Across requests, the answer for an ``Authorization`` value is kept too (``_BY_VALUE``, a
    pure function of those bytes): a client sends the same token many times, and the JWS
    pattern's scan of an RS256 token (~700 bytes) costs ~2 us, a dict lookup a tenth of that.
    Bounded: values of at most ``_KEPT_BYTES``, at most ``_KEPT`` of them (cleared when full),
    and only JWS-shaped ones (restguard's API keys and opaque tokens never are; a JWT is kept
    by the ``jwt`` and ``oauth2`` methods' own caches of verified tokens as well)."""
    global _last
    last = _last
    if last[0] is headers:
        return last[1]
    auth = _authorization(headers)
    if auth is None:
        read: tuple[bytes | None, bytes | None] = (None, None)
    else:
        kept = _BY_VALUE.get(auth)
        if kept is not None:
            read = kept
        else:
            token = _scheme_token(auth)
            read = (token, token if token is not None and COMPACT.fullmatch(token) else None)
            if read[1] is not None and len(auth) <= _KEPT_BYTES:
                if len(_BY_VALUE) >= _KEPT:
                    _BY_VALUE.clear()
                _BY_VALUE[auth] = read
    if type(headers) is tuple:
        _last = (headers, read)
    return read


_last: tuple[object, tuple[bytes | None, bytes | None]] = (object(), (None, None))
_BY_VALUE: dict[bytes, tuple[bytes | None, bytes | None]] = {}
_KEPT: Final = 512
_KEPT_BYTES: Final = 4096


def _authorization(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The one ``Authorization`` value, None without one, ``InvalidRequest`` if repeated."""
    auth = None
    for name, value in headers:  # one pass
        if name == b"authorization":
            if auth is not None:
                raise InvalidRequest("The authorization header must not be repeated.")
            auth = value
    return auth


def _scheme_token(auth: bytes) -> bytes | None:
    scheme, _, rest = auth.replace(b"\t", b" ").partition(b" ")
    return rest.strip(b" ") if scheme.lower() == b"bearer" else None
