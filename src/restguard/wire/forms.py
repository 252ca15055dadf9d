"""Request bodies that upstreams read as parameters, checked only as far as restguard must: to
refuse parameters that make an upstream act on another method than the one the policy judged.

A ``_method`` parameter turns a POST into a DELETE or PUT in Express (method-override), Laravel
and Symfony, Rails (Rack::MethodOverride) and the Django and Flask override middlewares: from the
query string, from urlencoded and multipart form bodies, from a body without a Content-Type
(Rack reads it as a form), from any ``multipart/*`` body (Rack parses mixed and related ones
too) and from a JSON body (Laravel merges JSON members into the request parameters). restguard
refuses it (400) wherever a parameter can come from, like the method-override headers.

Each body type has a *gate*: ``feed`` takes the body as it streams and returns the bytes that
may be forwarded now; a gate holds back only the few bytes it has not judged yet (an unfinished
name), so nothing it would refuse ever reaches the upstream ahead of the refusal. The scans are
deliberately looser than the formats (they may see more names than a strict parser, never
fewer), they do not depend on how the body is split into reads, and they run in linear time:
every regular expression here is checked against adversarial input by the tests.

A JSON body is read whole and parsed (it is not forwarded before its end). The multipart gate
ignores the part structure altogether: it looks at every line of the body,
preamble and epilogue included (Django reads parts there), for a ``Content-Disposition`` header
naming ``_method`` — whatever delimiters, line ends or nesting an upstream's parser believes in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import unquote_plus, unquote_to_bytes

from restguard.errors import InvalidRequest

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
OVERRIDE_PARAM = "_method"
MAX_NAME_BYTES = 4096  # a parameter name (or a Content-Disposition line) longer than this: 400
# RFC 2046 §5.1.1: boundary := 0*69<bchars> bcharsnospace
_BOUNDARY = re.compile(rb"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
_PARAM_SPLIT = re.compile(r"[&;]")
_PHP_MANGLED = str.maketrans({".": "_", " ": "_", "[": "_"})
_FORM_LIKE = re.compile(rb"(?i)form-data|x-www-form-urlencoded")
_SENSITIVE_PARAM = re.compile(rb"(?i)charset|boundary")
# Charsets in which every ASCII byte means itself (WHATWG's labels for them).
CHARSETS = frozenset(
    {"utf-8", "utf8", "unicode-1-1-utf-8", "us-ascii", "ascii", "iso-8859-1", "latin1", "l1"}
)
# RFC 9110 §5.6.2 token, §5.6.4 quoted-string, §5.6.6 parameters; §8.3.1 media type.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_MEDIA_TYPE = re.compile(
    rb"[ \t]*("
    + _TOKEN
    + rb"/"
    + _TOKEN
    + rb")((?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"=(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))*)[ \t]*"
)
_MEDIA_PARAM = re.compile(rb"(" + _TOKEN + rb")=(" + _TOKEN + rb"|" + _QUOTED + rb")")
# RFC 2231 §3 continuations (name*0, name*1*, ...): werkzeug, Django and the email parser put
# them back together; restguard refuses them for the field name instead of guessing alike.
_CONTINUATION = re.compile(r"name\*\d+\*?")
_SEPARATOR = re.compile(rb"[&;]")
_NAME_END = re.compile(rb"[&;=]")
_LINE_END = re.compile(rb"[\r\n]")
_DISPOSITION = re.compile(rb"(?i)[ \t]{0,16}content-disposition[ \t]*:")
_DISPOSITION_WORD = b"content-disposition"


def _override_refused(where: str) -> InvalidRequest:
    return InvalidRequest(
        f"A '_method' parameter in the {where} is not accepted; use the real HTTP method.",
        debug=f"_method in {where}",
    )


def _too_long(where: str) -> InvalidRequest:
    return InvalidRequest(
        f"A parameter name in the {where} is too long.", debug=f"name over the cap in {where}"
    )


def is_override_name(name: str) -> bool:
    """True for ``_method`` and what lenient parsers read as it: any case, surrounding white
    space, a suffix (``_method[]``, ``_method\x00...`` for C-string parsers), and PHP's mangling
    of ``.``, `` `` and ``[`` into ``_`` (``.method`` is ``$_POST['_method']`` in Laravel)."""
    folded = name.strip().lower().translate(_PHP_MANGLED)
    return folded.startswith(OVERRIDE_PARAM)


def _may_become_override(name: str) -> bool:
    """Whether a name seen only in part may still turn out to be an override name."""
    head = name.lstrip().lower().translate(_PHP_MANGLED)
    return head.startswith(OVERRIDE_PARAM) or OVERRIDE_PARAM.startswith(head)


def _may_hold_override(raw: bytes) -> bool:
    """Cheap pre-check: can any name in this (percent- or plus-encoded) text be an override
    name? Only if ``method`` appears once it is decoded."""
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return b"method" in raw.lower()


def check_params(encoded: bytes, where: str) -> None:
    """Refuse a ``_method`` parameter in a query string or urlencoded text. Parameters are split
    on ``&`` and on ``;`` (which some parsers still accept), names percent- and plus-decoded."""
    if not _may_hold_override(encoded):
        return
    text = encoded.decode("latin-1")
    for pair in _PARAM_SPLIT.split(text):
        name = pair.partition("=")[0]
        if is_override_name(unquote_plus(name, encoding="latin-1")):
            raise _override_refused(where)


# --- Content-Type -------------------------------------------------------------------------------


def content_type(headers: Sequence[tuple[bytes, bytes]]) -> tuple[str, bytes]:
    """(media type, multipart boundary or b"") of a request.

    Parsed strictly (RFC 9110 §8.3.1: ``type/subtype *( OWS ";" OWS name=value )``), because
    upstreams parse it loosely: PHP cuts the media type at ``,`` or a space and takes the first
    ``boundary`` substring anywhere; Django decodes the query and form fields in whatever
    ``charset`` the Content-Type names, UTF-7 and UTF-16 included. Refused as ambiguous: a
    repeated Content-Type; one that mentions a form type, a charset or a boundary but does not
    parse strictly; a charset that is not ASCII-compatible (only UTF-8, US-ASCII and ISO-8859-1
    are accepted); a multipart type without exactly one valid ``boundary`` parameter."""
    values = [v for k, v in headers if k == b"content-type"]
    if not values:
        return "", b""
    if len(values) > 1:
        raise InvalidRequest("Send one Content-Type header.", debug="content-type repeated")
    raw = values[0]
    form_like = _FORM_LIKE.search(raw) is not None
    m = _MEDIA_TYPE.fullmatch(raw)
    if m is None:
        if form_like or _SENSITIVE_PARAM.search(raw):
            raise _ambiguous_type("content-type does not parse")
        return "", b""
    kind = m.group(1).lower().decode("latin-1")
    params = [(k.lower(), v) for k, v in _MEDIA_PARAM.findall(m.group(2))]
    for key, value in params:
        if key == b"charset" and _unquoted(value).lower().decode("latin-1") not in CHARSETS:
            raise _ambiguous_type("charset not ASCII-compatible")
    if kind not in (URLENCODED, MULTIPART):
        if form_like:
            raise _ambiguous_type("a form type in the parameters")
        return kind, b""
    if kind == URLENCODED:
        return kind, b""
    boundaries = [v for k, v in params if b"boundary" in k]
    if len(boundaries) != 1 or [k for k, _ in params if b"boundary" in k] != [b"boundary"]:
        raise _ambiguous_type("multipart boundary missing, repeated or misnamed")
    boundary = _unquoted(boundaries[0])
    if not _BOUNDARY.match(boundary):
        raise _ambiguous_type("multipart boundary invalid")
    return kind, boundary


def _unquoted(value: bytes) -> bytes:
    return value[1:-1] if value[:1] == b'"' else value


def _ambiguous_type(debug: str) -> InvalidRequest:
    return InvalidRequest(
        "The Content-Type is ambiguous; send e.g. 'multipart/form-data; boundary=...'.",
        debug=debug,
    )


# --- gates -------------------------------------------------------------------------------------


class Gate(Protocol):
    """Feeds a body through; ``feed`` returns what may be forwarded now, ``finish`` the rest.
    Both raise InvalidRequest for a refused parameter."""

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


def gate_for(headers: Sequence[tuple[bytes, bytes]]) -> Gate | None:
    """The gate for a request body of these headers, or None for bodies no upstream reads as
    parameters. (``content_type`` must have accepted the headers.)"""
    kind, _ = content_type(headers)
    if kind in ("", URLENCODED):  # Rack reads a body without a Content-Type as a form
        return UrlencodedGate()
    if kind.startswith("multipart/"):
        return MultipartGate()
    if kind == "application/json" or kind.endswith("+json"):
        return JsonGate()
    return None


def check_body(headers: Sequence[tuple[bytes, bytes]], body: bytes) -> None:
    """Refuse a complete body that carries a ``_method`` parameter (see ``gate_for``)."""
    gate = gate_for(headers)
    if gate is not None:
        gate.feed(body)
        gate.finish()


# White space that parsers strip around names and header lines: ASCII, Latin-1's NEL and NBSP,
# and their UTF-8 forms with the rest of Unicode's (Django strips str.isspace() characters).
_BLANK = (
    rb"(?:[\t\x0b\x0c \x1c-\x1f\x85\xa0]|\xc2[\x85\xa0]|\xe1\x9a\x80"
    rb"|\xe2\x80[\x80-\x8a\xa8\xa9\xaf]|\xe2\x81\x9f|\xe3\x80\x80)"
)
_LEADING_BLANKS = re.compile(_BLANK + rb"*")
_PARTIAL_BLANK = re.compile(rb"\xc2|\xe1\x9a?|\xe2[\x80\x81]?|\xe3\x80?")
_PARTIAL_ESCAPE = re.compile(rb"%[0-9A-Fa-f]?\Z")


def _name_verdict(raw: bytes) -> str:
    """For the start of a name (still percent- and plus-encoded): "refuse" (an override name),
    "harmless" (it can no longer become one), "blank" (white space so far) or "open"."""
    partial = _PARTIAL_ESCAPE.search(raw)
    core = raw[: partial.start()] if partial else raw
    name = unquote_plus(core.decode("latin-1"), encoding="latin-1")
    head = name.lstrip()
    if not head:
        return "open" if partial else "blank"
    if is_override_name(head):
        return "refuse"
    return "open" if _may_become_override(head) else "harmless"


class UrlencodedGate:
    """``name=value&...`` (split on ``&`` and ``;``): every name is checked. Of an unfinished
    name at the end of what came only what is still undecided is held back: its leading white
    space is released, and so is a name that can no longer become an override name."""

    where = "form body"

    def __init__(self) -> None:
        self._held = b""  # the undecided part of an unfinished name
        self._in_value = False  # where the next byte falls: inside a value (or skipped name)

    def feed(self, data: bytes) -> bytes:
        text = self._held + data
        in_value = self._in_value and not self._held
        if not _may_hold_override(text):  # no name here can be one: only find the end state
            last = _last_separator(text)
            tail = text[last + 1 :]
            if (in_value and last < 0) or b"=" in tail:
                return self._hold(text, len(text), in_value=True)
            return self._unfinished(text, last + 1)
        pos = 0
        while True:
            if in_value:
                m = _SEPARATOR.search(text, pos)
                if m is None:
                    return self._hold(text, len(text), in_value=True)
                in_value, pos = False, m.end()
                continue
            m = _NAME_END.search(text, pos)
            if m is None:
                return self._unfinished(text, pos)
            self._check(text[pos : m.start()])
            in_value, pos = m.group() == b"=", m.end()

    def _unfinished(self, text: bytes, start: int) -> bytes:
        """``text[start:]`` is an unfinished name: judge what can be judged of it."""
        verdict = _name_verdict(text[start:])
        if verdict == "refuse":
            raise _override_refused(self.where)
        if verdict == "harmless":  # the rest of this name (and its value) can be skipped
            return self._hold(text, len(text), in_value=True)
        if verdict == "blank":  # white space only: released; the name goes on after it
            return self._hold(text, len(text), in_value=False)
        start += _blank_prefix(text[start:])
        return self._hold(text, start, in_value=False)

    def _hold(self, text: bytes, cut: int, *, in_value: bool) -> bytes:
        """Release ``text[:cut]``, hold the rest (the undecided part of a name: a few bytes)."""
        self._held, self._in_value = text[cut:], in_value
        return text[:cut]

    def _check(self, name: bytes) -> None:
        if is_override_name(unquote_plus(name.decode("latin-1"), encoding="latin-1")):
            raise _override_refused(self.where)

    def finish(self) -> bytes:
        held, self._held = self._held, b""
        if held:
            self._check(held)
        return held


def _blank_prefix(raw: bytes) -> int:
    """How many bytes of an encoded name are white space once decoded (``+``, ``%20`` ...)."""
    i = 0
    while i < len(raw):
        if raw[i : i + 1] == b"+":
            i += 1
        elif raw[i : i + 1] == b"%" and i + 3 <= len(raw):
            decoded = unquote_to_bytes(raw[i : i + 3])
            if len(decoded) != 1 or not decoded.decode("latin-1").isspace():
                break
            i += 3
        elif raw[i : i + 1].decode("latin-1").isspace():
            i += 1
        else:
            break
    return i


def _last_separator(data: bytes) -> int:
    return max(data.rfind(b"&"), data.rfind(b";"))


def _header_line(line: bytes) -> bytes | None:
    """``line`` with its leading white space removed when it is a Content-Disposition header
    (any case, white space around the name), else None."""
    start = _LEADING_BLANKS.match(line)
    rest = line[start.end() if start else 0 :]
    if rest[: len(_DISPOSITION_WORD)].lower() != _DISPOSITION_WORD:
        return None
    after = _LEADING_BLANKS.match(rest, len(_DISPOSITION_WORD))
    colon = after.end() if after else len(_DISPOSITION_WORD)
    return rest if rest[colon : colon + 1] == b":" else None


def _may_become_header(start: bytes) -> bool:
    """Whether an unfinished line starting so may still become a Content-Disposition header."""
    blanks = _LEADING_BLANKS.match(start)
    word = start[blanks.end() if blanks else 0 :].lower()
    if len(word) < len(_DISPOSITION_WORD):
        return _DISPOSITION_WORD.startswith(word)
    if word[: len(_DISPOSITION_WORD)] != _DISPOSITION_WORD:
        return False
    rest = word[len(_DISPOSITION_WORD) :]
    after = _LEADING_BLANKS.match(rest)
    rest = rest[after.end() if after else 0 :]
    return rest == b"" or rest.startswith(b":")


def _is_continuation(line: bytes) -> bool:
    """A line that lenient parsers append to the header before it: one that starts with white
    space (obs-fold), or, for PHP, any non-empty line without a colon."""
    return bool(line) and (bool(_LEADING_BLANKS.match(line).end()) or b":" not in line)  # type: ignore[union-attr]


class MultipartGate:
    """Every line of the body (split at CR and at LF), whatever the part structure: a line that
    is a ``Content-Disposition`` header (leading white space allowed, as werkzeug and Django
    allow it), together with the lines lenient parsers would append to it, is checked for a
    ``_method`` name; such a header must end with CRLF. Held back: the undecided start of a
    line that may become such a header, and such a header until the line after it shows
    whether it goes on. Leading white space of a line is released (and skipped) as it comes."""

    where = "form body"

    def __init__(self) -> None:
        self._held = b""  # from a line start: an undecided line, or a header and its go-ons
        self._mid_line = False  # (nothing held) the next byte continues a harmless line

    def feed(self, data: bytes) -> bytes:
        text = self._held + data
        pos = 0
        if self._mid_line and not self._held:
            m = _LINE_END.search(text)
            if m is None:
                return text
            self._mid_line, pos = False, m.end()
        while pos < len(text):
            m = _LINE_END.search(text, pos)
            if m is None:  # an unfinished line
                blanks = _LEADING_BLANKS.match(text, pos)
                start = blanks.end() if blanks else pos
                if start == len(text):  # white space so far: release it, the line goes on
                    return self._hold(text, len(text))
                if _PARTIAL_BLANK.fullmatch(text, start):  # the start of a UTF-8 space?
                    return self._hold(text, start)
                if _may_become_header(text[start : start + 64]):
                    if len(text) - start > MAX_NAME_BYTES:  # it could only be refused whole
                        raise _too_long(self.where)
                    return self._hold(text, start)
                self._mid_line = True
                return self._hold(text, len(text))
            line = text[pos : m.start()]
            if _header_line(line) is None:
                pos = m.end()
                continue
            judged = self._header(text, pos, m)
            if judged < 0:
                return self._hold(text, pos)
            pos = judged
        return self._hold(text, len(text))

    def _header(self, text: bytes, pos: int, m: re.Match[bytes]) -> int:
        """A Content-Disposition line starts at ``pos``: judge it with the lines appended to it;
        return where judging goes on, or -1 when more must come first."""
        header = [text[pos : m.start()]]
        while True:
            if text[m.start() : m.start() + 2] != b"\r\n":
                if m.group() == b"\r" and m.end() == len(text):
                    return -1  # CR at the end: an LF may follow
                # Django ends header lines at CRLF only, werkzeug and the email parser at any
                # CR or LF: which bytes belong to this header would be ambiguous.
                raise InvalidRequest(
                    "A multipart Content-Disposition line must end with CRLF.",
                    debug="bare CR/LF after a Content-Disposition line",
                )
            nxt = m.start() + 2
            end = _LINE_END.search(text, nxt)
            if end is None:  # the next line has only begun
                partial = text[nxt:]
                if partial and b":" in partial and not _LEADING_BLANKS.match(partial).end():  # type: ignore[union-attr]
                    _check_disposition(b"; ".join(header))  # another header: this one ended
                    return nxt
                if sum(map(len, header)) + len(partial) > MAX_NAME_BYTES:
                    raise _too_long(self.where)
                return -1  # the next line decides whether this header goes on
            line = text[nxt : end.start()]
            if not _is_continuation(line):  # (go-on lines are read as more parameters)
                _check_disposition(b"; ".join(header))
                return nxt
            header.append(line)
            if sum(map(len, header)) > MAX_NAME_BYTES:
                raise _too_long(self.where)
            m = end

    def _hold(self, text: bytes, cut: int) -> bytes:
        self._held = text[cut:]
        return text[:cut]

    def finish(self) -> bytes:
        held, self._held = self._held, b""
        lines = re.split(rb"\r\n|\r|\n", held)
        for i, line in enumerate(lines):
            if _header_line(line) is not None:
                rest = [x for x in lines[i + 1 :]]
                go_on = []
                for x in rest:
                    if not _is_continuation(x):
                        break
                    go_on.append(x)
                _check_disposition(b"; ".join([line, *go_on]))
        return held


def _parameters(value: str) -> list[tuple[str, str]]:
    """``key=value`` pairs of a header value as any parser might split it: on ``;`` outside
    double quotes, and on every ``;`` (werkzeug and PHP also honour single quotes, and quote
    only at a value's start): the union of both readings, so no reading escapes the check."""
    out: list[tuple[str, str]] = []
    for parts in (_split_unquoted(value), value.split(";")):
        for part in parts:
            key, sep, raw = part.partition("=")
            if sep:
                out.append((key.strip().lower(), raw.strip()))
    return out


def _split_unquoted(value: str) -> list[str]:
    parts: list[str] = []
    start, quoted, escaped = 0, False, False
    for i, c in enumerate(value):
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts


def _check_disposition(header: bytes) -> None:
    if len(header) > MAX_NAME_BYTES:
        raise _too_long("form body")
    value = header.partition(b":")[2]
    # Read as Latin-1 (byte for byte) and as UTF-8 (Django strips Unicode white space).
    for text in {value.decode("latin-1"), value.decode("utf-8", "replace")}:
        for key, field in _parameters(text):
            if _CONTINUATION.fullmatch(key):
                raise InvalidRequest(
                    "A multipart field name in RFC 2231 continuations is not accepted.",
                    debug="name*N in a part header",
                )
            if key not in ("name", "name*"):
                continue
            if len(field) >= 2 and field[0] == field[-1] and field[0] in "\"'":
                field = re.sub(r"\\(.)", r"\1", field[1:-1])  # PHP reads '...' as quotes
            if key == "name*":  # RFC 2231 charset'lang'value
                charset, _, rest = field.partition("'")
                if charset.strip().lower() not in CHARSETS:
                    raise _ambiguous_type("RFC 2231 name in a charset not ASCII-compatible")
                field = rest.partition("'")[2]
            if is_override_name(unquote_plus(field, encoding="latin-1").strip("\"' ")):
                raise _override_refused("form body")


# A JSON string (escapes and any byte inside), or a run of anything else: linear tokenising.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[^"]+', re.DOTALL)
_JSON_COLON = re.compile(rb"[ \t\r\n]*:")


class JsonGate:
    """A JSON body is read whole (it is released only at its end, within ``max_body_bytes``)
    and every member name, at any depth (Laravel merges the top level), is checked: found by a
    linear scan of string tokens followed by ``:`` rather than by a parser, because parsers
    differ (Node reads documents nested deeper than Python can, or with invalid UTF-8)."""

    where = "JSON body"
    buffers = True  # (the exchange reads this body whole before it takes an upstream)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> bytes:
        self._parts.append(data)
        return b""

    def finish(self) -> bytes:
        body, self._parts = b"".join(self._parts), []
        if b"method" not in body.lower() and b"\\u" not in body:
            return body  # no member name can spell an override name
        for token in _JSON_TOKEN.finditer(body):
            string = token.group()
            if string[:1] != b'"' or not _JSON_COLON.match(body, token.end()):
                continue
            if _json_name_is_override(string):
                raise _override_refused(self.where)
        return body


def _json_name_is_override(string: bytes) -> bool:
    try:
        name = json.loads(string.decode("utf-8", "replace"))
    except ValueError:  # escapes no parser agrees on: judge the raw text, conservatively
        return b"method" in string.lower()
    return isinstance(name, str) and is_override_name(name)
