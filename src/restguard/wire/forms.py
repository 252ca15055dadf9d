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

from restguard.errors import InvalidRequest, UnsupportedMediaType

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
OVERRIDE_PARAM = "_method"
OVERRIDE_NAMES = (OVERRIDE_PARAM, "x-http-method-override", "x-http-method", "x-method-override")
MAX_NAME_BYTES = 4096  # a parameter name (or a Content-Disposition line) longer than this: 400
# RFC 2046 §5.1.1 bchars, less "," and " " (Rack does not read those): 1 to 70 of them.
_BOUNDARY = re.compile(rb"^[0-9A-Za-z'()+_\-./:=?]{1,70}$")
_PARAM_SPLIT = re.compile(r"[&;]")
_PHP_MANGLED = str.maketrans({".": "_", " ": "_", "[": "_"})
_FORM_LIKE = re.compile(rb"(?i)form-data|x-www-form-urlencoded")
_JSON_LIKE = re.compile(rb"(?i)/json|\+json")
_SENSITIVE_PARAM = re.compile(rb"(?i)charset|boundary")
# Charsets in which every ASCII byte means itself (WHATWG's labels for them).
CHARSETS = frozenset(
    {"utf-8", "utf8", "unicode-1-1-utf-8", "us-ascii", "ascii", "iso-8859-1", "latin1", "l1"}
)
# RFC 9110 §5.6.2 token, §5.6.4 quoted-string, §5.6.6 parameters; §8.3.1 media type.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'  # with obs-text
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
    if kind != URLENCODED and not kind.startswith("multipart/"):
        if form_like:
            raise _ambiguous_type("a form type in the parameters")
        return kind, b""
    if kind == URLENCODED:
        return kind, b""
    # Every multipart type (Rack parses mixed and related ones as forms too) needs a boundary
    # that every parser extracts alike: else Rack reads the body as urlencoded instead.
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
    raw = b"".join(v for k, v in headers if k == b"content-type")
    if _JSON_LIKE.search(raw):  # Laravel's isJson(): "/json" or "+json" anywhere in the type
        return JsonGate()
    if kind in ("", URLENCODED):  # Rack reads a body without a Content-Type as a form
        return UrlencodedGate()
    if kind.startswith("multipart/"):
        return MultipartGate()
    return None


def check_encoding(headers: Sequence[tuple[bytes, bytes]]) -> None:
    """Refuse a compressed body that upstreams read as parameters once they inflate it (Express's
    body parsers inflate gzip, deflate and br): restguard would judge the compressed bytes."""
    codings = [v.strip().lower() for k, v in headers if k == b"content-encoding"]
    if any(c not in (b"", b"identity") for c in codings) and gate_for(headers) is not None:
        raise UnsupportedMediaType(
            "A compressed body of this type is not accepted; send it uncompressed.",
            debug="content-encoding on a body read as parameters",
        )


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


_CD = b"content-disposition"
_CID = b"content-id"
# A Content-Disposition header as RFC 7578 §4.2 and RFC 9110 §5.6 write it, and nothing looser:
# strict syntax is what every parser reads alike. (RFC 2231 ext-values for name* only.)
_CD_STRICT = re.compile(
    rb"(?i)content-disposition:[ \t]*"
    + _TOKEN
    + rb"((?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))*)[ \t]*"
)
# Rack 2.2 finds a name after "Content-Disposition:" anywhere in a line (its regex is not
# anchored), and takes it quoted or up to ";" or white space.
_RACK_NAME = re.compile(rb'(?i)content-disposition:[^:]*;\s*name=(?:"((?:\\.|[^"])*)"|([^;\s]*))')
MAX_LINE_PEEK = 256  # bytes of a line read to tell what it is


class MultipartGate:
    """Multipart bodies, line by line (a line ends at CR, at LF or at CRLF), whatever the part
    structure: preamble, epilogue and bodies without a delimiter included (Django reads parts
    there). Strict where parsers disagree, lenient where they look:

    * a ``Content-Disposition`` header (at a line's start) must be written strictly (RFC 7578:
      tokens and quoted strings, SP/HT only), end with CRLF, and be followed by an empty line
      or another header (no folded line, no line without a colon: PHP appends those); its
      ``name`` is checked. An indented one is refused (werkzeug and Django read it).
    * ``content-disposition:`` anywhere else in a line is read as Rack 2.2 reads it, and every
      ``name`` after it is checked; a ``Content-ID`` header is checked as a name (Rack names a
      part without a disposition by it).

    Each byte is looked at a bounded number of times (the gate is linear however the body is
    split); held back: only the part of a line that is still undecided or being judged."""

    where = "form body"

    def __init__(self) -> None:
        self._line = bytearray()  # the current line, while it may matter (else empty)
        self._watch = False  # the current line: released, but watched for "content-disposition"
        self._tail = b""  # (watching) the last bytes, lower-cased, where the word may begin
        self._after_cd = False  # the previous line was a Content-Disposition header
        self._cr = False  # the previous byte ended a line with CR: an LF now is the same end

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        pos = 0
        n = len(data)
        while pos < n:
            if self._cr:
                self._cr = False
                pending, self._pending_crlf = self._pending_crlf, False
                if data[pos : pos + 1] == b"\n":  # the LF of a CRLF
                    out.append(b"\n")
                    pos += 1
                    continue
                if pending:  # a Content-Disposition line ended with a bare CR
                    raise _bare_line_end()
            m = _LINE_END.search(data, pos)
            end = n if m is None else m.start()
            if self._rack:  # the rest of a line Rack reads a name in: held to its end
                self._line += data[pos:end]
                if len(self._line) > MAX_NAME_BYTES:
                    raise _too_long(self.where)
                pos = end
            elif self._watch:
                pos = self._watch_run(data, pos, end, out)
            else:
                pos = self._line_run(data, pos, end, out)
            if m is not None and pos == end:  # the line ended here
                self._end_line(m.group(), out)
                pos = m.end()
        return b"".join(out)

    _pending_crlf = False  # the line that just ended must have ended with CRLF

    def _line_run(self, data: bytes, pos: int, end: int, out: list[bytes]) -> int:
        """Bytes of a line being told (or judged): hold them, or release the line once it is
        known to be harmless. A line known to be a header is not classified again."""
        new = data[pos:end]
        ended = end < len(data)
        self._line += new
        if self._after_cd:
            # the line after a Content-Disposition header may not be folded onto it
            if not self._line_started and _LEADING_BLANKS.match(new).end():  # type: ignore[union-attr]
                raise InvalidRequest(
                    "Folded multipart headers are not accepted.", debug="obs-fold in part"
                )
            self._colon = self._colon or b":" in new
            if not self._colon and (ended or len(self._line) >= MAX_LINE_PEEK) and self._line:
                raise InvalidRequest(
                    "A multipart header line without a colon is not accepted.",
                    debug="header line without a colon in part",
                )
        self._line_started = self._line_started or bool(new)
        if self._class != "header":
            line = bytes(self._line)
            blanks = _LEADING_BLANKS.match(line).end()  # type: ignore[union-attr]
            if blanks and not self._after_cd:
                # Leading white space goes out as it comes (a file may hold long runs of it);
                # a header that follows it is an indented one, refused when it ends.
                out.append(line[:blanks])
                del self._line[:blanks]
                self._indented = True
                line = line[blanks:]
            self._class = _classify(line, ended)
        if self._class == "harmless" and not (self._after_cd and not self._colon):
            line = bytes(self._line)  # released, but watched from its start on
            self._line.clear()
            self._watch, self._tail = True, b""
            self._watch_run(line, 0, len(line), out)
            return end
        if len(self._line) > MAX_NAME_BYTES:
            raise _too_long(self.where)
        return end  # undecided, or a header to judge at its end: held

    _class = "undecided"  # the current line: "undecided", "header" or "harmless"
    _indented = False  # the current line began with white space (released already)
    _line_started = False
    _colon = False  # (after a Content-Disposition header) the line has a colon

    def _watch_run(self, data: bytes, pos: int, end: int, out: list[bytes]) -> int:
        """A released line watched for "content-disposition" (Rack 2.2 finds it anywhere):
        release up to where the word may begin; from a match, hold the rest of the line."""
        chunk = data[pos:end]
        window = self._tail + chunk.lower()
        at = window.find(_CD + b":")
        if at < 0:
            keep = min(len(_CD), len(window))  # "content-disposition" + ":" less one byte
            self._tail = window[-keep:] if keep else b""
            out.append(chunk)
            return end
        start = at - len(self._tail)  # where it begins in chunk (may be in released bytes)
        self._watch, self._tail = False, b""
        if start < 0:  # it began in the released tail: judge from the word on
            self._rack_prefix = (_CD + b":")[:-start]
            start = 0
        out.append(chunk[:start])
        self._line += chunk[start:]
        self._rack = True
        if len(self._line) > MAX_NAME_BYTES:
            raise _too_long(self.where)
        return end

    _rack = False  # the current held line is a mid-line "content-disposition" (Rack's reading)
    _rack_prefix = b""  # (judged with it) the start of the word, already released

    def _end_line(self, terminator: bytes, out: list[bytes]) -> None:
        """The current line ended with ``terminator`` (CR or LF): judge what was held."""
        line = bytes(self._line)
        self._line.clear()
        was_cd = False
        if self._watch:
            self._watch, self._tail = False, b""
        elif self._rack:
            self._rack = False
            _check_rack_line(self._rack_prefix + line)
            self._rack_prefix = b""
        elif _classify(line, True) == "header":
            if self._indented:  # werkzeug and Django read it; strictly it is not a header
                raise InvalidRequest(
                    "An indented multipart header is not accepted.", debug="indented part header"
                )
            was_cd = _check_header_line(line)
        out.append(line + terminator)
        self._class, self._line_started, self._colon = "undecided", False, False
        self._indented = False
        self._after_cd = was_cd
        if was_cd:  # it must end with CRLF
            if terminator == b"\n":
                raise _bare_line_end()
            self._cr, self._pending_crlf = True, True
        else:
            self._pending_crlf = False
            self._cr = terminator == b"\r"

    def finish(self) -> bytes:
        if self._cr and self._pending_crlf:
            raise _bare_line_end()
        line = bytes(self._line)
        self._line.clear()
        if self._rack:
            _check_rack_line(self._rack_prefix + line)
        elif line and not self._watch and _classify(line, True) == "header":
            if self._indented:
                raise InvalidRequest(
                    "An indented multipart header is not accepted.", debug="indented part header"
                )
            _check_header_line(line)
        return line


def _classify(line: bytes, ended: bool) -> str:
    """What a line (or the start of one) is: "header" (a Content-Disposition or Content-ID
    header, however indented: white space, then the name, white space, a colon), "harmless",
    or "undecided" while what came cannot tell yet."""
    start = _LEADING_BLANKS.match(line).end()  # type: ignore[union-attr]
    if not ended and (start == len(line) or _PARTIAL_BLANK.fullmatch(line, start)):
        return "undecided"
    rest = line[start:]
    for word in (_CD, _CID):
        head = rest[: len(word)].lower()
        if len(head) < len(word):
            if not ended and word.startswith(head):
                return "undecided"
            continue
        if head != word:
            continue
        after = rest[len(word) :]
        gap = _LEADING_BLANKS.match(after).end()  # type: ignore[union-attr]
        if after[gap : gap + 1] == b":":
            return "header"
        if not ended and (gap == len(after) or _PARTIAL_BLANK.fullmatch(after, gap)):
            return "undecided"
    return "harmless"


def _bare_line_end() -> InvalidRequest:
    # Django ends header lines at CRLF only, werkzeug and the email parser at any CR or LF:
    # which bytes belong to the header would be ambiguous.
    return InvalidRequest(
        "A multipart Content-Disposition line must end with CRLF.",
        debug="bare CR/LF after a Content-Disposition line",
    )


def _check_header_line(line: bytes) -> bool:
    """Judge a header line that starts (maybe indented) with Content-Disposition or Content-ID;
    True for a Content-Disposition one."""
    if line[:1] in (b" ", b"\t") or _LEADING_BLANKS.match(line).end():  # type: ignore[union-attr]
        raise InvalidRequest(
            "An indented multipart header is not accepted.", debug="indented part header"
        )
    low = line.lower()
    if low.startswith(_CID):
        value = line.partition(b":")[2].decode("latin-1").strip().strip("<>\"' ")
        if is_override_name(unquote_plus(value, encoding="latin-1")):
            raise _override_refused("form body")
        return False
    if not _CD_STRICT.fullmatch(line):
        raise InvalidRequest(
            "A multipart Content-Disposition header is not written strictly (RFC 7578).",
            debug="malformed Content-Disposition",
        )
    _check_disposition(line)
    return True


def _check_rack_line(line: bytes) -> None:
    for m in _RACK_NAME.finditer(line):
        raw = m.group(1) if m.group(1) is not None else m.group(2)
        if is_override_name(unquote_plus(raw.decode("latin-1"), encoding="latin-1")):
            raise _override_refused("form body")
    _check_disposition(line)  # and every other reading of what follows


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
            if is_override_name(unquote_plus(field, encoding="latin-1").strip("\"'<> ")):
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
