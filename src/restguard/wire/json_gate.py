"""The JSON gate: member names of a JSON body, judged as it streams."""

from __future__ import annotations

import codecs
import json
import re

from restguard.errors import InvalidRequest
from restguard.wire.params import (
    MAX_NAME_BYTES,
    _may_become_override,
    _override_refused,
    is_override_name,
)

_JSON_STRING_RUN = re.compile(rb'[^"\\]*')
_JSON_WHITE = re.compile(rb"[ \t\r\n]*")
_JSON_OUTSIDE, _JSON_STRING, _JSON_CUT_ESCAPE, _JSON_SUSPECT = range(4)


class JsonGate:
    """Every member name of a JSON body, at any depth (Laravel merges the top level), is
    checked as the body streams: a string followed by ``:`` (after JSON white space) is a
    member name, refused at the ``:`` when it reads as an override name. A scan rather than a
    parser, because parsers differ (Node reads documents nested deeper than Python can, or with
    invalid UTF-8). Of the string being read only its first ``MAX_NAME_BYTES`` are kept; a
    longer name is judged by them (refused if they are, or may still become, an override
    name). Every byte goes out as it comes but the last one, as in ``UrlencodedGate``."""

    where = "JSON body"

    def __init__(self) -> None:
        self._last = b""
        self._start = b""  # the first four bytes, until the encoding is judged
        self._state = _JSON_OUTSIDE
        self._string = bytearray()  # the first MAX_NAME_BYTES of the string being read
        self._long = False  # ... and there were more

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        if len(self._start) < 4:
            self._start += data[: 4 - len(self._start)]
            if len(self._start) == 4:
                _check_json_encoding(self._start)
        self._scan(data)
        out, self._last = self._last + data[:-1], data[-1:]
        return out

    def _scan(self, data: bytes) -> None:
        pos, n = 0, len(data)
        while pos < n:
            state = self._state
            if state == _JSON_OUTSIDE:
                pos = data.find(b'"', pos)
                if pos < 0:
                    return
                self._state, pos = _JSON_STRING, pos + 1
                self._string.clear()
                self._long = False
            elif state == _JSON_STRING:
                end = _JSON_STRING_RUN.match(data, pos).end()  # type: ignore[union-attr]
                self._keep(data, pos, end)
                if end == n:
                    return
                if data[end] == 0x22:  # the closing quote
                    self._state = _JSON_SUSPECT if self._suspect() else _JSON_OUTSIDE
                    pos = end + 1
                else:  # a backslash: it and the next byte are one escape
                    self._keep(data, end, end + 2)
                    self._state = _JSON_STRING if end + 2 <= n else _JSON_CUT_ESCAPE
                    pos = end + 2
            elif state == _JSON_CUT_ESCAPE:
                self._keep(data, pos, pos + 1)
                self._state, pos = _JSON_STRING, pos + 1
            else:  # _JSON_SUSPECT: a string that would be an override name, if a ":" follows
                pos = _JSON_WHITE.match(data, pos).end()  # type: ignore[union-attr]
                if pos == n:
                    return
                if data[pos] == 0x3A:
                    raise _override_refused(self.where)
                self._state = _JSON_OUTSIDE

    def _keep(self, data: bytes, start: int, end: int) -> None:
        room = MAX_NAME_BYTES - len(self._string)
        end = min(end, len(data))
        if end - start > room:
            end, self._long = start + room, True
        self._string += data[start:end]

    def _suspect(self) -> bool:
        raw = bytes(self._string)
        if not self._long:
            return _json_name_is_override(raw)
        name = _json_prefix(raw)
        return name is None or is_override_name(name) or _may_become_override(name)

    def finish(self) -> bytes:
        if len(self._start) < 4:
            _check_json_encoding(self._start)
        last, self._last = self._last, b""
        return last


def _check_json_encoding(start: bytes) -> None:
    """JSON is UTF-8 (RFC 8259 §8.1), but Python's json.loads(bytes) -- Flask's get_json(),
    Starlette's request.json() -- reads UTF-16 and UTF-32 too, telling them by a BOM or the
    NULs in the first four bytes, whatever the Content-Type says: a scan of ASCII bytes would
    see no member name there. Refused, as json.detect_encoding tells them."""
    if json.detect_encoding(start) not in ("utf-8", "utf-8-sig"):
        raise InvalidRequest(
            "A JSON body must be UTF-8 (RFC 8259).", debug="JSON body not in UTF-8"
        )


def _json_name_is_override(raw: bytes) -> bool:
    """Whether a whole JSON string (without its quotes) reads as an override name."""
    if b"method" not in raw.lower() and b"\\u" not in raw:
        return False  # no member name can spell an override name without either
    try:
        name = json.loads(f'"{raw.decode("utf-8", "replace")}"', strict=False)
    except ValueError:  # escapes no parser agrees on: judge the raw text, conservatively
        return b"method" in raw.lower()
    return isinstance(name, str) and is_override_name(name)


def _json_prefix(raw: bytes) -> str | None:
    """The start of a JSON string (its first bytes, cut anywhere), decoded; None if it cannot
    be (an invalid escape: no parser reads the document)."""
    # An escape cut at the end ("\\", "\\u00") is left out: it is an escape if an odd number
    # of backslashes precedes it (an even number are escaped backslashes).
    cut = len(raw)
    digits = len(raw[-3:]) - len(raw[-3:].rstrip(b"0123456789abcdefABCDEF"))
    if raw[: cut - digits].endswith(b"u"):
        cut -= digits + 1
    elif digits:
        cut = len(raw) + 1  # hex digits without a "u" before them: no escape is cut
    if cut <= len(raw):
        before = raw[:cut]
        if (len(before) - len(before.rstrip(b"\\"))) % 2:
            raw = before[:-1]
    try:
        text = codecs.getincrementaldecoder("utf-8")("replace").decode(raw, final=False)
        name = json.loads(f'"{text}"', strict=False)
    except ValueError:
        return None
    return name if isinstance(name, str) else None
