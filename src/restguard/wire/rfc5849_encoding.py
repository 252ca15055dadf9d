"""OAuth 1.0 percent encoding (RFC 5849 §3.6): parameter names and values, the base string's
parts and the ``Authorization`` header's values, as UTF-8 octets with every octet but the
unreserved ones written ``%XX``.

Split from :mod:`restguard.wire.rfc5849` (collecting and checking the parameters, the base
string), which uses it, as do :mod:`restguard.wire.rfc5849_signatures` (the key of the
shared-secret methods) and :mod:`restguard.wire.rfc5849_signer` (the header a client sends).
Standard library only.
"""

from __future__ import annotations

from typing import Final

__all__ = ["percent_encode"]

_UNRESERVED: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
# §3.6 per octet: the unreserved ones as themselves, every other one as %XX (upper-case hex).
_ENCODED_OCTET: Final = tuple(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256))
_OCTET: Final = tuple(bytes((b,)) for b in range(256))
_ESCAPED_OCTET: Final = tuple(f"%{b:02X}".encode("ascii") for b in range(256))


# --- §3.6 percent encoding ---------------------------------------------------------------


def percent_encode(value: str | bytes) -> str:
    """§3.6: UTF-8, then every octet but ALPHA, DIGIT, ``-``, ``.``, ``_`` and ``~`` as
    ``%XX`` with upper-case hex ("Characters in the unreserved character set ... MUST NOT be
    encoded. All other characters MUST be encoded. The two hexadecimal characters used to
    represent encoded characters MUST be uppercase.")."""
    return _encode_octets(value.encode("utf-8") if isinstance(value, str) else value)


def _encode_normalized(text: str) -> str:
    """§3.6 over a string already made of encoded pairs (unreserved, ``%``, ``=``, ``&``)."""
    return text.replace("%", "%25").replace("=", "%3D").replace("&", "%26")


def _encode_octets(raw: bytes) -> str:
    """§3.6 over octets. The usual text has few distinct octets to escape (``:`` and ``/`` in a
    URI, a space and ``+`` in a note): one C-level ``replace`` per distinct octet, ``%`` first;
    otherwise a table lookup per octet."""
    rest = raw.translate(None, _UNRESERVED)
    if not rest:
        return raw.decode("ascii")
    distinct = set(rest)
    if len(distinct) > 8:
        return "".join(map(_ENCODED_OCTET.__getitem__, raw))
    if 0x25 in distinct:
        raw = raw.replace(b"%", b"%25")
        distinct.discard(0x25)
    for octet in distinct:
        raw = raw.replace(_OCTET[octet], _ESCAPED_OCTET[octet])
    return raw.decode("ascii")
