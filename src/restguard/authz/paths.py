"""The one path normaliser. Every decision and every forwarded request uses its output.

Rules (CONTRACT "Configuration"): percent-encoded unreserved characters are decoded (RFC 3986
§6.2.2.2), other percent-encodings are kept with upper-case hex (§6.2.2.1), dot segments are
resolved (§5.2.4). Anything ambiguous is refused instead of being "fixed up": encoded slashes,
backslashes, dots and semicolons, NUL and other control characters, ``;`` path parameters, empty
segments, dot segments that climb above the root, raw non-ASCII bytes, and any request target
that is not in origin-form (RFC 9112 §3.2.1: absolute-form, authority-form and ``*`` are
refused). A target over ``MAX_TARGET_BYTES`` gets 414 (RFC 9112 §3).
"""

from __future__ import annotations

from urllib.parse import unquote

from restguard.errors import InvalidRequest

MAX_TARGET_BYTES = 8192

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# pchar minus ";" (path parameters are read differently by different servers) plus "/".
_PATH_ALLOWED = _UNRESERVED | frozenset(b"!$&'()*+,=:@/%")
# Query characters (RFC 3986 §3.4) minus "#"; the query is forwarded byte for byte.
_QUERY_ALLOWED = _UNRESERVED | frozenset(b"!$&'()*+,;=:@/?%")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# The same sets as ``bytes.translate`` deletion tables: a path of only these bytes (no "%")
# normalises byte for byte to itself, and a query of only these bytes has no character to
# refuse; one C-level scan decides the common case.
_PLAIN_PATH_BYTES = bytes(sorted(_PATH_ALLOWED - {0x25}))
_QUERY_BYTES = bytes(sorted(_QUERY_ALLOWED))
# Percent-encodings that hide a path delimiter or a dot: refused, never decoded.
_REFUSED_ENCODED = frozenset({0x2F, 0x5C, 0x2E, 0x00})
# An encoded ";" too: servers that decode before splitting off path parameters read
# "/public/..%3B/x" as "/public/..;/x" and then as "/x" (RFC 3986 §2.2: "%3B" and ";" differ).
_ENCODED_SEMICOLON = 0x3B


class TargetTooLong(InvalidRequest):
    """414: RFC 9112 §3: a server that receives a request-target longer than any URI it wishes
    to parse MUST respond with a 414 (URI Too Long) status code."""

    status = 414


def _bad(reason: str) -> InvalidRequest:
    return InvalidRequest(f"The request path is not acceptable: {reason}.", debug=reason)


def _check_percent(raw: bytes, i: int) -> int:
    if i + 3 > len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
        raise _bad("broken percent-encoding")
    return int(raw[i + 1 : i + 3], 16)


def _normalise_segment_bytes(raw: bytes) -> str:
    if not raw.translate(None, _PLAIN_PATH_BYTES):  # nothing to decode, check or refuse
        return raw.decode("ascii")
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == 0x25:  # "%"
            value = _check_percent(raw, i)
            if value in _REFUSED_ENCODED:
                raise _bad("encoded slash, backslash, dot or NUL")
            if value < 0x20 or value == 0x7F:
                raise _bad("encoded control character")
            if value == _ENCODED_SEMICOLON:
                raise _bad("encoded ';'")
            if value in _UNRESERVED:
                out.append(value)
            else:
                out += b"%" + raw[i + 1 : i + 3].upper()
            i += 3
            continue
        if c not in _PATH_ALLOWED:
            if c == 0x5C:
                raise _bad("backslash")
            if c == 0x3B:
                raise _bad("';' path parameters")
            raise _bad("character not allowed in a path")
        out.append(c)
        i += 1
    return out.decode("ascii")


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split an origin-form request target into raw path and raw query; refuse other forms."""
    if len(target) > MAX_TARGET_BYTES:
        raise TargetTooLong("The request target is too long.", debug="request target too long")
    if not target.startswith(b"/"):
        raise _bad("only origin-form request targets are accepted")
    path, sep, query = target.partition(b"?")
    if b"#" in target:
        raise _bad("fragment in request target")
    if query.translate(None, _QUERY_BYTES):
        raise _bad("character not allowed in the query")
    # Validate percent-encodings of the query strictly too (no decoding: forwarded as is).
    j = query.find(b"%")
    while j != -1:
        _check_percent(query, j)
        j = query.find(b"%", j + 3)
    return path, query if sep else b""


def normalise_path(raw_path: bytes, *, refuse_dot_segments: bool = False) -> str:
    """Normalise a raw (still percent-encoded) path; raise InvalidRequest when ambiguous.
    ``refuse_dot_segments``: refuse "." and ".." segments instead of resolving them (embedded
    mode, where the app routes on the path as sent, not on the resolved one)."""
    if not raw_path.startswith(b"/"):
        raise _bad("path must start with '/'")
    normalised = _normalise_segment_bytes(raw_path)
    if "/." not in normalised and "//" not in normalised:
        # no dot segment and no empty one but a trailing one: the loop below keeps every
        # segment as it is
        return _utf8_checked(normalised)
    segments = normalised.split("/")[1:]
    out: list[str] = []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if refuse_dot_segments and segment in (".", ".."):
            raise _bad("dot segment")
        if segment == ".":
            if index == last:
                out.append("")
            continue
        if segment == "..":
            if not out or (len(out) == 1 and out[0] == ""):
                raise _bad("dot segment above the root")
            out.pop()
            if index == last:
                out.append("")
            continue
        if segment == "" and index != last:
            raise _bad("empty path segment")
        out.append(segment)
    return _utf8_checked("/" + "/".join(out))


def _utf8_checked(path: str) -> str:
    if "%" in path:
        try:
            unquote(path, errors="strict")
        except UnicodeDecodeError:  # routers would each guess a different text
            raise _bad("percent-encoding that is not UTF-8") from None
    return path


def decode_path(path: str) -> str:
    """A normalised path as routers match it: every percent-encoding decoded (``%3A`` is
    ``:``, ``%40`` is ``@``; Express, Starlette, Flask and Django all decode before they route).
    ``normalise_path`` refused encoded slashes, dots, NUL and non-UTF-8, so decoding adds no
    segment and cannot fail."""
    return unquote(path) if "%" in path else path


def normalise_target(target: bytes) -> tuple[str, bytes]:
    """Normalise a request target: (normalised path, raw query)."""
    raw_path, query = split_target(target)
    return normalise_path(raw_path), query
