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


class UrlencodedGate:
    """``name=value&...`` (split on ``&`` and ``;``): every name is checked; an unfinished name
    at the end of what came is held back until it ends."""

    where = "form body"

    def __init__(self) -> None:
        self._held = b""  # an unfinished name (never anything else)
        self._in_value = False  # where the next byte falls when nothing is held

    def feed(self, data: bytes) -> bytes:
        text = self._held + data
        in_value = self._in_value and not self._held
        if not _may_hold_override(text):  # no name here can be one: only find the end state
            last = _last_separator(text)
            tail = text[last + 1 :]
            if (in_value and last < 0) or b"=" in tail:
                return self._hold(text, len(text), in_value=True)
            return self._hold(text, last + 1, in_value=False)
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
                return self._hold(text, pos, in_value=False)
            self._check(text[pos : m.start()])
            in_value, pos = m.group() == b"=", m.end()

    def _hold(self, text: bytes, cut: int, *, in_value: bool) -> bytes:
        """Release ``text[:cut]``, hold the rest (an unfinished name). A long unfinished name
        that can no longer become an override name (any binary body without a Content-Type
        looks like one) is released, and skipped to its end like a value."""
        self._held, self._in_value = text[cut:], in_value
        if len(self._held) > MAX_NAME_BYTES:
            name = unquote_plus(self._held.decode("latin-1"), encoding="latin-1")
            if _may_become_override(name):
                raise _too_long(self.where)
            self._held, self._in_value = b"", True
            return text
        return text[:cut]

    def _check(self, name: bytes) -> None:
        if is_override_name(unquote_plus(name.decode("latin-1"), encoding="latin-1")):
            raise _override_refused(self.where)

    def finish(self) -> bytes:
        held, self._held = self._held, b""
        if held:
            self._check(held)
        return held


def _last_separator(data: bytes) -> int:
    return max(data.rfind(b"&"), data.rfind(b";"))


class MultipartGate:
    """Every line of the body (split at CR and at LF), whatever the part structure: a line that
    is a ``Content-Disposition`` header is checked for a ``_method`` name, and a line folded
    onto it (obs-fold) is refused. Held back: an unfinished line that may still become such a
    header, and such a header until the next line's first byte shows it is not folded."""

    where = "form body"

    def __init__(self) -> None:
        self._held = b""  # starts at a line start, or is empty
        self._mid_line = False  # (nothing held) the next byte continues a line judged harmless

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
                if _could_be_disposition(text[pos : pos + 64]):
                    return self._hold(text, pos)
                self._mid_line = True
                return self._hold(text, len(text))
            line = text[pos : m.start()]
            if not _DISPOSITION.match(line):
                pos = m.end()
                continue
            _check_disposition(line)
            if m.group() == b"\r" and m.end() == len(text):
                return self._hold(text, pos)  # CR at the end: an LF may follow
            if text[m.start() : m.start() + 2] != b"\r\n":
                # Django ends a header line at CRLF only, werkzeug and the email parser at any
                # CR or LF: which bytes belong to this header would be ambiguous.
                raise InvalidRequest(
                    "A multipart Content-Disposition line must end with CRLF.",
                    debug="bare CR/LF after a Content-Disposition line",
                )
            # A lenient parser takes a next line that starts with SP or HT as more of this one.
            after = m.start() + 2
            if after >= len(text):
                return self._hold(text, pos)
            if text[after : after + 1] in (b" ", b"\t"):
                raise InvalidRequest(
                    "Folded multipart headers are not accepted.", debug="obs-fold in part"
                )
            pos = after
        return self._hold(text, len(text))

    def _hold(self, text: bytes, cut: int) -> bytes:
        self._held = text[cut:]
        if len(self._held) > MAX_NAME_BYTES:
            raise _too_long(self.where)
        return text[:cut]

    def finish(self) -> bytes:
        held, self._held = self._held, b""
        for line in _LINE_END.split(held):
            if _DISPOSITION.match(line):
                _check_disposition(line)
        return held


_MAX_INDENT = 16  # a header line indented more than this is not read as a header by anyone


def _could_be_disposition(start: bytes) -> bool:
    """Whether a line starting so can be (or become) a Content-Disposition header."""
    word = start.lstrip(b" \t").lower()
    if len(start) - len(word) > _MAX_INDENT:
        return False
    n = min(len(word), len(_DISPOSITION_WORD))
    return word[:n] == _DISPOSITION_WORD[:n]


def _parameters(value: str) -> list[tuple[str, str]]:
    """``key=value`` pairs of a header value, split on ``;`` outside double quotes, in one
    linear pass (a regular expression here once took minutes on 800 spaces)."""
    out: list[tuple[str, str]] = []
    for part in _split_unquoted(value):
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


def _check_disposition(line: bytes) -> None:
    if len(line) > MAX_NAME_BYTES:
        raise _too_long("form body")
    value = line.partition(b":")[2].decode("latin-1")
    for key, field in _parameters(value):
        if _CONTINUATION.fullmatch(key):
            raise InvalidRequest(
                "A multipart field name in RFC 2231 continuations is not accepted.",
                debug="name*N in a part header",
            )
        if key not in ("name", "name*"):
            continue
        if len(field) >= 2 and field[0] == field[-1] and field[0] in "\"'":
            field = re.sub(r"\\(.)", r"\1", field[1:-1])  # PHP reads single quotes as quotes
        if key == "name*":  # RFC 2231 charset'lang'value
            charset, _, rest = field.partition("'")
            if charset.lower() not in CHARSETS:
                raise _ambiguous_type("RFC 2231 name in a charset not ASCII-compatible")
            field = rest.partition("'")[2]
        if is_override_name(unquote_plus(field, encoding="latin-1")):
            raise _override_refused("form body")


class JsonGate:
    """A JSON body is read whole (it is released only at its end, within ``max_body_bytes``)
    and every member name, at any depth (Laravel merges the top level), is checked. A body
    that is not valid JSON is released as it is: no framework reads members from it."""

    where = "JSON body"
    buffers = True  # (the exchange reads this body whole before it takes an upstream)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> bytes:
        self._parts.append(data)
        return b""

    def finish(self) -> bytes:
        body, self._parts = b"".join(self._parts), []
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return body
        stack = [document]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for name, value in node.items():
                    if is_override_name(name):
                        raise _override_refused(self.where)
                    stack.append(value)
            elif isinstance(node, list):
                stack.extend(node)
        return body
