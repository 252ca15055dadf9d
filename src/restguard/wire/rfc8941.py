"""Structured Field Values (RFC 8941): a strict parser for Dictionaries, and the serialization
of bare items and of the Inner Lists it parsed (the serializer of Items, Inner Lists and
Dictionaries in general is :mod:`restguard.wire.rfc8941_serialize`).

What RFC 9421 (``Signature-Input``, ``Signature``) and RFC 9530 (``Content-Digest``) need: a
Dictionary (§3.2) whose members are Items or Inner Lists (§3.1.1), each with Parameters
(§3.1.2), over the bare items sf-string, sf-token, sf-integer, sf-boolean and sf-byte-sequence
(§3.3). Decimals (§3.3.2) are refused: no field read here uses them, and refusing them removes
one source of disagreement between parsers.

Strict where RFC 8941 is lenient, on purpose:

* **Duplicate dictionary keys and duplicate parameters are refused.** §4.2.2 says the last one
  wins, but another parser on the path (a proxy, the upstream, a log pipeline) may keep the
  first one; a signature label or ``alg`` parameter that two parsers read differently is a
  parser differential an attacker can steer. A sender never needs a duplicate.
* **A size cap** (:data:`MAX_FIELD_BYTES`, 8 KiB) before any parsing, and only printable
  ASCII (plus HTAB, which §4.2 allows as OWS around dictionary commas): §4.2 "fail parsing"
  covers every other byte.

Several field lines are combined per §4.2 ("... combine them into one field value ... joined
with a comma"), so that a dictionary may span lines, and a key repeated across lines is a
duplicate like any other.

The scanner is hand-written: one compiled pattern per *token* (a key, a token, an integer),
``str.find`` for strings and byte sequences, never a pattern per character. The shapes every
signed request sends (one ``Signature-Input`` member of plain strings and string or integer
parameters; one byte sequence) are first recognised whole by one pattern each, a strict
subset of what the scanner accepts, producing the same values (a property test holds them
to it).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Final, NamedTuple

MAX_FIELD_BYTES: Final = 8192


class StructuredFieldError(ValueError):
    """The field is not a valid (or not an accepted) structured field value."""


class Token(str):
    """An sf-token (§3.3.4), kept apart from an sf-string (a plain ``str``)."""

    __slots__ = ()


BareItem = str | int | bool | bytes  # str includes Token; bool is tested before int
Params = tuple[tuple[str, BareItem], ...]


class Item(NamedTuple):
    value: BareItem
    params: Params = ()


class InnerList(NamedTuple):
    items: tuple[Item, ...]
    params: Params = ()


def _item(pair: tuple[BareItem, Params]) -> Item:
    return tuple.__new__(Item, pair)  # Item(...) without its Python-level __new__


Member = Item | InnerList

_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")  # §3.1.2 key
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*")  # §3.3.4
_INTEGER = re.compile(r"-?[0-9]+")  # §3.3.1, at most 15 digits (checked)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")  # §4.2.7 alphabet, padding only at the end
_FIELD_BYTES = bytes(range(0x20, 0x7F)) + b"\t"
# Fast paths for the shapes every signed request sends, recognised whole by one pattern each:
# one member, an inner list of plain strings with string or integer parameters (the usual
# Signature-Input), or one byte sequence (Signature, Content-Digest). They accept a subset of
# what the scanner accepts and build the same values (a test holds them to it); anything else,
# duplicates included, goes through the scanner.
_FAST_INNER_LIST_MEMBER = re.compile(
    r'([a-z*][a-z0-9_.*-]*)=\(((?:"[^"\\\t]*"(?: "[^"\\\t]*")*)?)\)'
    r'((?:;[a-z*][a-z0-9_.*-]*=(?:"[^"\\\t]*"|0|-?[1-9][0-9]{0,14}))*)'
)
_FAST_PARAM = re.compile(r';([a-z*][a-z0-9_.*-]*)=(?:"([^"\\\t]*)"|(-?[0-9]+))')
_FAST_BYTES_MEMBER = re.compile(r"([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/]*={0,2}):")
_MAX_INTEGER: Final = 999_999_999_999_999


def combine(values: Sequence[bytes], *, limit: int = MAX_FIELD_BYTES) -> str:
    """The field value of one or more field lines (§4.2), checked for size and bytes first."""
    if len(values) == 1:
        raw = values[0]
        if len(raw) > limit:
            raise StructuredFieldError(f"field value longer than {limit} bytes")
    else:
        if sum(len(v) + 1 for v in values) > limit + 1:
            raise StructuredFieldError(f"field value longer than {limit} bytes")
        raw = b",".join(values)
    if raw.translate(None, _FIELD_BYTES):
        raise StructuredFieldError("a byte that is not printable ASCII")
    return raw.decode("ascii")


def parse_dictionary(values: Sequence[bytes], *, limit: int = MAX_FIELD_BYTES) -> dict[str, Member]:
    """Parse a Dictionary (§4.2.2) from the field's lines; duplicate keys are refused.

    No field lines (the field is absent) and an empty value give an empty dictionary.
    """
    return _dictionary(combine(values, limit=limit))


def parse_inner_list_dictionary(
    values: Sequence[bytes], *, limit: int = MAX_FIELD_BYTES
) -> dict[str, InnerList]:
    """A Dictionary whose every member is an Inner List (``Signature-Input``)."""
    return {
        key: member
        for key, (member, _) in parse_inner_lists_serialized(values, limit=limit).items()
    }


def parse_inner_lists_serialized(
    values: Sequence[bytes], *, limit: int = MAX_FIELD_BYTES
) -> dict[str, tuple[InnerList, str]]:
    """Like :func:`parse_inner_list_dictionary`, each member with its §4.1 serialization.

    RFC 9421 §2.3 signs the serialization of a ``Signature-Input`` member; when the member
    already is in that form (the fast path below proves it), the text is reused as is.
    """
    text = combine(values, limit=limit)
    fast = _FAST_INNER_LIST_MEMBER.fullmatch(text)
    if fast is not None:
        key, strings, params_text = fast.groups()
        params = tuple(
            [
                (k, int(number) if number else string)
                for k, string, number in _FAST_PARAM.findall(params_text)
            ]
        )
        if len(dict(params)) == len(params):  # else: the scanner says "duplicate"
            items = _FAST_ITEMS.get(strings)
            if items is None:
                items = _plain_items(strings)
            # One member; plain strings, one SP apart; string parameters without escapes and
            # integers without leading zeros: the text is its own canonical serialization.
            inner = tuple.__new__(InnerList, (items, params))  # (without its Python __new__)
            return {key: (inner, text[len(key) + 1 :])}
    out: dict[str, tuple[InnerList, str]] = {}
    for key, member in _dictionary(text).items():
        if not isinstance(member, InnerList):
            raise StructuredFieldError(f"member {key!r} is not an inner list")
        out[key] = (member, canonical_inner_list(member))
    return out


#: The items of the fast path's inner lists, by their text: a client signs every request with
#: the same components, so a handful of texts answer nearly every request (the items are
#: immutable, a pure function of the text).
_FAST_ITEMS: dict[str, tuple[Item, ...]] = {}
_FAST_ITEMS_SIZE: Final = 256
_FAST_ITEMS_MAX_CHARS: Final = 512


def _plain_items(strings: str) -> tuple[Item, ...]:
    """The fast path's items: sf-strings without escapes, one SP apart (remembered)."""
    items = tuple([_item((v, ())) for v in strings[1:-1].split('" "')] if strings else ())
    if len(strings) <= _FAST_ITEMS_MAX_CHARS:
        if len(_FAST_ITEMS) >= _FAST_ITEMS_SIZE:
            _FAST_ITEMS.clear()
        _FAST_ITEMS[strings] = items
    return items


def parse_byte_sequence_dictionary(
    values: Sequence[bytes], *, limit: int = MAX_FIELD_BYTES
) -> dict[str, bytes]:
    """A Dictionary whose every member is a Byte Sequence (``Signature``, ``Content-Digest``).

    Member parameters are parsed (and so must be well formed) but dropped: neither RFC 9421
    nor RFC 9530 defines any.
    """
    text = combine(values, limit=limit)
    fast = _FAST_BYTES_MEMBER.fullmatch(text)
    if fast is not None:
        return {fast.group(1): _base64(fast.group(2))}
    out: dict[str, bytes] = {}
    for key, member in _dictionary(text).items():
        if isinstance(member, InnerList) or type(member.value) is not bytes:
            raise StructuredFieldError(f"member {key!r} is not a byte sequence")
        out[key] = member.value
    return out


# --- scanner -----------------------------------------------------------------------------


def _dictionary(s: str) -> dict[str, Member]:
    n = len(s)
    i = 0
    while i < n and s[i] == " ":  # §4.2: discard leading SP
        i += 1
    out: dict[str, Member] = {}
    if i >= n:
        return out
    while True:
        m = _KEY.match(s, i)
        if m is None:
            raise StructuredFieldError(f"expected a key at offset {i}")
        key = m.group()
        i = m.end()
        member: Member
        if i < n and s[i] == "=":
            i += 1
            if i < n and s[i] == "(":
                member, i = _inner_list(s, i, n)
            else:
                value, i = _bare_item(s, i, n)
                params, i = _params(s, i, n)
                member = Item(value, params)
        else:  # §4.2.2: a key alone is boolean true, possibly with parameters
            params, i = _params(s, i, n)
            member = Item(True, params)
        if key in out:
            raise StructuredFieldError(f"duplicate key {key!r}")
        out[key] = member
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            return out
        if s[i] != ",":
            raise StructuredFieldError(f"expected ',' at offset {i}")
        i += 1
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            raise StructuredFieldError("trailing comma")


def _inner_list(s: str, i: int, n: int) -> tuple[InnerList, int]:
    i += 1  # "("
    items: list[Item] = []
    while True:
        while i < n and s[i] == " ":
            i += 1
        if i >= n:
            raise StructuredFieldError("unterminated inner list")
        if s[i] == ")":
            params, i = _params(s, i + 1, n)
            return InnerList(tuple(items), params), i
        value: BareItem
        if s[i] == '"':  # the common case (RFC 9421 component names), inlined
            end = s.find('"', i + 1)
            value = s[i + 1 : end]
            if end < 0 or "\\" in value or "\t" in value:
                value, i = _string(s, i, n)
            else:
                i = end + 1
        else:
            value, i = _bare_item(s, i, n)
        if i < n and s[i] == ";":
            params, i = _params(s, i, n)
            items.append(Item(value, params))
        else:
            items.append(Item(value, ()))
        if i >= n or s[i] not in " )":
            raise StructuredFieldError(f"expected ' ' or ')' at offset {i}")


def _params(s: str, i: int, n: int) -> tuple[Params, int]:
    if i >= n or s[i] != ";":
        return (), i
    params: list[tuple[str, BareItem]] = []
    keys: set[str] = set()  # a set, not a scan of the list: 8 KiB of ";a1;a2..." stays linear
    while i < n and s[i] == ";":
        i += 1
        while i < n and s[i] == " ":
            i += 1
        m = _KEY.match(s, i)
        if m is None:
            raise StructuredFieldError(f"expected a parameter key at offset {i}")
        key = m.group()
        i = m.end()
        value: BareItem = True
        if i < n and s[i] == "=":
            i += 1
            if i < n and s[i] == '"':  # inlined: most parameters are plain strings
                end = s.find('"', i + 1)
                value = s[i + 1 : end]
                if end < 0 or "\\" in value or "\t" in value:
                    value, i = _string(s, i, n)
                else:
                    i = end + 1
            else:
                value, i = _bare_item(s, i, n)
        if key in keys:
            raise StructuredFieldError(f"duplicate parameter {key!r}")
        keys.add(key)
        params.append((key, value))
    return tuple(params), i


def _bare_item(s: str, i: int, n: int) -> tuple[BareItem, int]:
    if i >= n:
        raise StructuredFieldError("expected an item at the end of the value")
    c = s[i]
    if c == '"':
        return _string(s, i, n)
    if c == ":":
        end = s.find(":", i + 1)
        if end < 0:
            raise StructuredFieldError("unterminated byte sequence")
        return _base64(s[i + 1 : end]), end + 1
    if c == "?":
        if i + 1 < n and s[i + 1] in "01":
            return s[i + 1] == "1", i + 2
        raise StructuredFieldError(f"bad boolean at offset {i}")
    if c == "-" or "0" <= c <= "9":
        m = _INTEGER.match(s, i)
        if m is None:
            raise StructuredFieldError(f"bad integer at offset {i}")
        end = m.end()
        if end < n and s[end] == ".":
            raise StructuredFieldError("decimals are not accepted")
        value = int(m.group())
        if not -_MAX_INTEGER <= value <= _MAX_INTEGER:
            raise StructuredFieldError("integer out of range (15 digits at most)")
        return value, end
    m = _TOKEN.match(s, i)
    if m is None:
        raise StructuredFieldError(f"unexpected {c!r} at offset {i}")
    return Token(m.group()), m.end()


def _string(s: str, i: int, n: int) -> tuple[str, int]:
    end = s.find('"', i + 1)
    if end < 0:
        raise StructuredFieldError("unterminated string")
    text = s[i + 1 : end]
    if "\\" not in text:
        if "\t" in text:
            raise StructuredFieldError("a tab inside a string")
        return text, end + 1
    out: list[str] = []  # §4.2.5, with escapes: only \" and \\ exist
    j = i + 1
    while j < n:
        c = s[j]
        if c == "\\":
            if j + 1 >= n or s[j + 1] not in '"\\':
                raise StructuredFieldError("bad escape in a string")
            out.append(s[j + 1])
            j += 2
        elif c == '"':
            return "".join(out), j + 1
        elif c == "\t":
            raise StructuredFieldError("a tab inside a string")
        else:
            out.append(c)
            j += 1
    raise StructuredFieldError("unterminated string")


def _base64(text: str) -> bytes:
    """§4.2.7: the base64 alphabet only; missing "=" padding is synthesised (a SHOULD)."""
    if _BASE64.fullmatch(text) is None:
        raise StructuredFieldError("a byte sequence outside the base64 alphabet")
    if len(text) % 4 and not text.endswith("="):
        text += "=" * (-len(text) % 4)
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error as exc:
        raise StructuredFieldError("a malformed byte sequence") from exc


# --- serializer (§4.1): bare items, and the Inner Lists parsed above -----------------------
# (here, not in rfc8941_serialize: parse_inner_lists_serialized needs canonical_inner_list,
# and rfc8941_serialize imports this module's types)

_STRING_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def canonical_inner_list(inner: InnerList) -> str:
    """§4.1.1.1 serialization of an Inner List *this module parsed*, without re-validation.

    The parser only produces valid keys, tokens, strings and integers, so the checks of
    :func:`serialize_inner_list` are skipped: this is on the path of every signed request.
    """
    parts = []
    for value, params in inner.items:
        if type(value) is str:
            text = '"' + value + '"' if '"' not in value and "\\" not in value else None
            parts.append(text or serialize_bare_item(value))
        else:
            parts.append(serialize_bare_item(value))
        if params:
            parts.append(_trusted_params(params))
        parts.append(" ")
    if inner.items:
        parts.pop()
    return "(" + "".join(parts) + ")" + _trusted_params(inner.params)


def _trusted_params(params: Params) -> str:
    out = []
    for key, value in params:
        if value is True:
            out.append(";" + key)
        elif type(value) is str and '"' not in value and "\\" not in value:
            out.append(";" + key + '="' + value + '"')
        elif type(value) is int:
            out.append(";" + key + "=" + str(value))
        else:
            out.append(";" + key + "=" + serialize_bare_item(value))
    return "".join(out)


def serialize_bare_item(value: BareItem) -> str:
    """§4.1.3: one bare item, exactly as RFC 8941 writes it."""
    if value is True:
        return "?1"
    if value is False:
        return "?0"
    if isinstance(value, int):
        if not -_MAX_INTEGER <= value <= _MAX_INTEGER:
            raise StructuredFieldError("integer out of range (15 digits at most)")
        return str(value)
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    if isinstance(value, Token):
        if _TOKEN.fullmatch(value) is None:
            raise StructuredFieldError(f"not a token: {value!r}")
        return str(value)
    if _STRING_UNSAFE.search(value) is None:
        return '"' + value + '"'
    if not value.isascii() or not value.isprintable():
        raise StructuredFieldError("a string must be printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
