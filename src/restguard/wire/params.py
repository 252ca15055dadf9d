"""What every parameter gate shares: the names that upstreams read as a method override
(``is_override_name``, read as the most lenient parser decodes them: ``decode_name``), the
refusals, the white space parsers strip, and the HTTP syntax (tokens, quoted strings, charsets)
of media types and part headers. See ``wire/forms.py`` for why ``_method`` is refused."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from restguard.errors import InvalidRequest

OVERRIDE_PARAM = "_method"
OVERRIDE_NAMES = (OVERRIDE_PARAM, "x-http-method-override", "x-http-method", "x-method-override")
MAX_NAME_BYTES = 4096  # a parameter name (or a Content-Disposition line) longer than this: 400
_PHP_MANGLED = str.maketrans({".": "_", " ": "_", "[": "_"})
# Charsets in which every ASCII byte means itself (WHATWG's labels for them).
CHARSETS = frozenset(
    {"utf-8", "utf8", "unicode-1-1-utf-8", "us-ascii", "ascii", "iso-8859-1", "latin1", "l1"}
)
# RFC 9110 §5.6.2 token, §5.6.4 quoted-string, §5.6.6 parameters; §8.3.1 media type.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'  # with obs-text
# RFC 2231 §3 continuations (name*0, name*1*, ...): werkzeug, Django and the email parser put
# them back together; restguard refuses them for the field name instead of guessing alike.
_CONTINUATION = re.compile(r"name\*\d+\*?")
_LINE_END = re.compile(rb"[\r\n]")


def _override_refused(where: str) -> InvalidRequest:
    return InvalidRequest(
        f"A '_method' parameter in the {where} is not accepted; use the real HTTP method.",
        debug=f"_method in {where}",
    )


def _too_long(where: str) -> InvalidRequest:
    return InvalidRequest(
        f"A parameter name in the {where} is too long.", debug=f"name over the cap in {where}"
    )


def _readings(name: str) -> tuple[str, ...]:
    """How parsers read a parameter name: lower-cased, white space stripped, then as PHP
    mangles it (``.``, `` `` and ``[`` become ``_``) and as qs and Rack take its root (brackets
    dropped: ``[_method]`` is ``_method`` to Express's extended parser)."""
    base = name.strip().lower()
    return base.translate(_PHP_MANGLED), base.replace("[", "").replace("]", "").strip()


def is_override_name(name: str) -> bool:
    """True for ``_method`` and what lenient parsers read as it (any case, surrounding white
    space, a suffix such as ``_method[]`` or ``_method\x00...``, PHP's and qs's readings), and
    for the override *headers'* names used as parameters: ASP.NET reads
    ``X-HTTP-Method-Override`` from the form and the query too."""
    return any(r.startswith(OVERRIDE_NAMES) for r in _readings(name))


def _may_become_override(name: str) -> bool:
    """Whether a name seen only in part may still turn out to be an override name."""
    return any(
        r.startswith(OVERRIDE_NAMES) or any(n.startswith(r) for n in OVERRIDE_NAMES)
        for r in _readings(name)
    )


def _may_hold_override(raw: bytes) -> bool:
    """Cheap pre-check: can any name in this (percent- or plus-encoded) text be an override
    name? Only if ``method`` appears once it is decoded and its brackets dropped."""
    if b"%" in raw:
        if b"%u" in raw or b"%U" in raw:  # (IIS escapes: see decode_name)
            return True
        raw = unquote_to_bytes(raw)
    # (brackets out: the qs/Rack reading of is_override_name drops them)
    return b"method" in raw.lower().replace(b"[", b"").replace(b"]", b"")


def _unquoted(value: bytes) -> bytes:
    return value[1:-1] if value[:1] == b'"' else value


def _ambiguous_type(debug: str) -> InvalidRequest:
    return InvalidRequest(
        "The Content-Type is ambiguous; send e.g. 'multipart/form-data; boundary=...'.",
        debug=debug,
    )


# White space that parsers strip around names and header lines: ASCII, Latin-1's NEL and NBSP,
# and their UTF-8 forms with the rest of Unicode's (Django strips str.isspace() characters).
_BLANK = (
    rb"(?:[\t\x0b\x0c \x1c-\x1f\x85\xa0]|\xc2[\x85\xa0]|\xe1\x9a\x80"
    rb"|\xe2\x80[\x80-\x8a\xa8\xa9\xaf]|\xe2\x81\x9f|\xe3\x80\x80)"
)
_LEADING_BLANKS = re.compile(_BLANK + rb"*")
_PARTIAL_BLANK = re.compile(rb"\xc2|\xe1\x9a?|\xe2[\x80\x81]?|\xe3\x80?")


class _NameReading:
    """A parameter name read as it streams in, one decoded character at a time, in each of the
    readings ``is_override_name`` knows (PHP's, and the bracketed root of qs and Rack). Each
    reading keeps at most the length of the longest override name: it stops at the first
    character that no override name continues with, so memory stays constant however long the
    name (a run of white space or brackets keeps a reading open, but adds nothing to it)."""

    __slots__ = ("_php", "_root")

    def __init__(self) -> None:
        self._php: str | None = ""  # None: can no longer become an override name
        self._root: str | None = ""

    @property
    def open(self) -> bool:
        return self._php is not None or self._root is not None

    def push(self, char: str) -> bool:
        """Add one decoded character; True once the name reads as an override name."""
        low = char.lower()
        if self._php is not None and (self._php or not char.isspace()):
            self._php = _extended(self._php, low.translate(_PHP_MANGLED))
        if self._root is not None and char not in "[]" and (self._root or not char.isspace()):
            self._root = _extended(self._root, low)
        return any(r is not None and r.startswith(OVERRIDE_NAMES) for r in (self._php, self._root))


_OVERRIDE_PREFIXES = frozenset(n[:i] for n in OVERRIDE_NAMES for i in range(len(n)))


def _extended(reading: str, more: str) -> str | None:
    """A reading with ``more`` added, or None once no override name can come of it."""
    reading += more
    if reading in _OVERRIDE_PREFIXES or reading.startswith(OVERRIDE_NAMES):
        return reading
    return None


_HEX = frozenset(b"0123456789abcdefABCDEF")
_PERCENT_OR_PLUS = re.compile(rb"[%+]")
_NAME_RUN = re.compile(rb"[^%+&;=]*")
_SEPARATOR = re.compile(rb"[&;]")
_NAME_END = re.compile(rb"[&;=]")


def _escape(raw: bytes, pos: int) -> tuple[str | None, int]:
    """The escape at ``raw[pos]`` (a ``%``): (its character, its length); (None, 0) when it is
    not one (a literal ``%``); (None, -1) when ``raw`` ends before that can be told. Decodes
    ``%HH`` as a Latin-1 byte and IIS's ``%uHHHH`` as a code point (ASP.NET reads it)."""
    rest = raw[pos + 1 : pos + 6]
    if rest[:1] in (b"u", b"U"):
        hexes = len(rest) - 1 - len(rest[1:].lstrip(b"0123456789abcdefABCDEF"))
        if hexes >= 4:
            return chr(int(rest[1:5], 16)), 6
        if hexes == len(rest) - 1 and len(rest) < 5:
            return None, -1  # "%u" and fewer than four hex digits so far
        return None, 0
    if len(rest) < 2:
        return (None, -1) if all(b in _HEX for b in rest) else (None, 0)
    if rest[0] in _HEX and rest[1] in _HEX:
        return chr(int(rest[:2], 16)), 3
    return None, 0


def decode_name(raw: bytes) -> str:
    """A parameter name as the most lenient parser decodes it: ``+`` is a space, ``%HH`` a
    byte (Latin-1), ``%uHHHH`` a code point (IIS/ASP.NET); an escape that is not one stays as
    it is. Every standard decoding reads the same name up to the first ``%u``, and no override
    name holds a ``%``: so this reading finds every override name the others find."""
    out: list[str] = []
    pos, n = 0, len(raw)
    while pos < n:
        m = _PERCENT_OR_PLUS.search(raw, pos)
        end = n if m is None else m.start()
        out.append(raw[pos:end].decode("latin-1"))
        if m is None:
            break
        if raw[end] == 0x2B:  # "+"
            out.append(" ")
            pos = end + 1
            continue
        char, size = _escape(raw, end)
        if char is None:
            out.append("%")
            pos = end + 1
        else:
            out.append(char)
            pos = end + size
    return "".join(out)
