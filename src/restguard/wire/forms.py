"""Request bodies that upstreams read as parameters, checked only as far as restguard must: to
refuse parameters that make an upstream act on another method than the one the policy judged.

A ``_method`` parameter turns a POST into a DELETE or PUT in Express (method-override), Laravel
and Symfony, Rails (Rack::MethodOverride) and the Django and Flask override middlewares: from the
query string, from urlencoded and multipart form bodies, from a body without a Content-Type
(Rack reads it as a form), from any ``multipart/*`` body (Rack parses mixed and related ones
too) and from a JSON body (Laravel merges JSON members into the request parameters). restguard
refuses it (400) wherever a parameter can come from, like the method-override headers.

Each body type has a *gate*: ``feed`` takes the body as it streams and returns the bytes that
may be forwarded now. The urlencoded and JSON gates judge every byte as it comes and release
all but the last one: the upstream never has the whole body before the gate has judged it, and
a refusal cuts the upstream connection off (the body stays unfinished there). The multipart gate
holds back the line it is judging. The scans are deliberately looser than the formats (they may
see more names than a strict parser, never fewer), they do not depend on how the body is split
into reads, they keep a bounded amount of it (a name's first bytes, a line), and they run in
linear time: every regular expression here is checked against adversarial input by the tests.

The multipart gate ignores the part structure altogether: it looks at every line of the body,
preamble and epilogue included (Django reads parts there), for a ``Content-Disposition`` header
naming ``_method`` -- whatever delimiters, line ends or nesting an upstream's parser believes in.
"""

from __future__ import annotations

import codecs
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
_PARAM_SPLIT = re.compile(rb"[&;]")
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
    name? Only if ``method`` appears once it is decoded and its brackets dropped."""
    if b"%" in raw:
        if b"%u" in raw or b"%U" in raw:  # (IIS escapes: see decode_name)
            return True
        raw = unquote_to_bytes(raw)
    # (brackets out: the qs/Rack reading of is_override_name drops them)
    return b"method" in raw.lower().replace(b"[", b"").replace(b"]", b"")


def check_params(encoded: bytes, where: str) -> None:
    """Refuse a ``_method`` parameter in a query string or urlencoded text. Parameters are split
    on ``&`` and on ``;`` (which some parsers still accept), names decoded by ``decode_name``."""
    if not _may_hold_override(encoded):
        return
    for pair in _PARAM_SPLIT.split(encoded):
        if is_override_name(decode_name(pair.partition(b"=")[0])):
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
    ``%XX`` as a Latin-1 byte and IIS's ``%uXXXX`` as a code point (ASP.NET reads it)."""
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
    """A parameter name as the most lenient parser decodes it: ``+`` is a space, ``%XX`` a
    byte (Latin-1), ``%uXXXX`` a code point (IIS/ASP.NET); an escape that is not one stays as
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


class UrlencodedGate:
    """``name=value&...`` (split on ``&`` and ``;``): every name is read as it streams in and
    refused as soon as it reads as an override name, before its last byte is released. Every
    byte goes out as it comes but the last one (so the upstream never has the whole body before
    the gate has judged it: a refusal cuts the upstream off). Each byte is decoded once; what is
    kept between reads is a few bytes (an escape cut in two) and the name's readings."""

    where = "form body"

    def __init__(self) -> None:
        self._last = b""  # the byte held back
        self._reading: _NameReading | None = _NameReading()  # None: in a value or a dead name
        self._partial = b""  # an escape cut by the end of the last read

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        self._scan(data)
        out, self._last = self._last + data[:-1], data[-1:]
        return out

    def _scan(self, data: bytes) -> None:
        if not self._partial and not _may_hold_override(data):
            # No name that these bytes hold whole can be one: only the name going on from the
            # last read (up to the first separator) and the last one (from the last) count.
            first = _SEPARATOR.search(data)
            if first is None:
                if self._reading is not None:
                    self._scan_names(data)
                return
            if self._reading is not None:  # (its separator too: it ends an escape cut short)
                self._scan_names(data[: first.end()])
            self._reading = None
            data = data[max(data.rfind(b"&"), data.rfind(b";")) :]
        self._scan_names(data)

    def _scan_names(self, data: bytes) -> None:
        raw = self._partial + data
        self._partial = b""
        pos, n = 0, len(raw)
        fresh = False  # at a name's start
        while pos < n:
            reading = self._reading
            if reading is None:  # skip to where the next name starts
                m = _SEPARATOR.search(raw, pos)
                if m is None:
                    return
                self._reading, pos, fresh = _NameReading(), m.end(), True
                continue
            if fresh:  # a name that ends in these bytes is judged at once if it can be
                fresh = False
                end = _NAME_END.search(raw, pos)
                if end is not None and not _may_hold_override(raw[pos : end.start()]):
                    pos = end.end()
                    if end.group() == b"=":
                        self._reading = None
                    else:
                        self._reading, fresh = _NameReading(), True
                    continue
            run = _NAME_RUN.match(raw, pos).end()  # type: ignore[union-attr]
            for char in raw[pos:run].decode("latin-1"):
                if reading.push(char):
                    raise _override_refused(self.where)
                if not reading.open:
                    break
            if not reading.open:
                self._reading, pos = None, run
                continue
            pos = run
            if pos == n:
                return
            byte = raw[pos]
            if byte in b"&;":
                self._reading, pos, fresh = _NameReading(), pos + 1, True
            elif byte == 0x3D:  # "=": a value follows
                self._reading, pos = None, pos + 1
            elif byte == 0x2B:  # "+"
                if reading.push(" "):
                    raise _override_refused(self.where)
                pos += 1
            else:  # "%"
                decoded, size = _escape(raw, pos)
                if size < 0:  # cut by the end of this read: decided by the next one
                    self._partial = raw[pos:]
                    return
                if reading.push("%" if decoded is None else decoded):
                    raise _override_refused(self.where)
                pos += size if decoded is not None else 1

    def finish(self) -> bytes:
        partial, self._partial = self._partial, b""
        if self._reading is not None and partial:  # a cut escape at the end: literal
            for char in partial.decode("latin-1"):
                if self._reading.push(char):
                    raise _override_refused(self.where)
        last, self._last = self._last, b""
        return last


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
        low = data.lower()  # (for _harmless_lines: once per read)
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
            if self._at_fresh_line():
                pos = self._harmless_lines(data, low, pos, out)
                if pos == n:
                    break
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

    def _at_fresh_line(self) -> bool:
        return not (
            self._line
            or self._line_started
            or self._watch
            or self._rack
            or self._after_cd
            or self._cr
        )

    def _harmless_lines(self, data: bytes, low: bytes, pos: int, out: list[bytes]) -> int:
        """At a line's start: release at once the whole lines ahead that cannot matter -- every
        line the gate judges holds "content-" (a Content-Disposition or Content-ID header, or
        Rack's reading of "content-disposition:" anywhere) -- up to the line that holds it.
        Runs of ordinary lines (a file's content) then cost no Python step per line."""
        found = low.find(b"content-", pos)
        limit = len(data) if found < 0 else found
        cut = max(data.rfind(b"\n", pos, limit), data.rfind(b"\r", pos, limit)) + 1
        if cut <= pos:
            return pos
        if cut < len(data) and data[cut - 1] == 0x0D and data[cut] == 0x0A:
            cut += 1  # (a CRLF is one line end)
        out.append(data[pos:cut])
        self._cr = data[cut - 1] == 0x0D and cut == len(data)
        return cut

    def _line_run(self, data: bytes, pos: int, end: int, out: list[bytes]) -> int:
        """Bytes of a line being told (or judged): hold them, or release the line once it is
        known to be harmless. A line known to be a header is not classified again."""
        new = data[pos:end]
        ended = end < len(data)
        self._line += new
        if self._after_cd:
            # The line after a Content-Disposition header may not be folded onto it: judged on
            # the line's first bytes, however they arrive (a UTF-8 blank may come cut in two).
            if not self._fold_judged:
                head = bytes(self._line[:4])
                if _LEADING_BLANKS.match(head).end():  # type: ignore[union-attr]
                    raise InvalidRequest(
                        "Folded multipart headers are not accepted.", debug="obs-fold in part"
                    )
                self._fold_judged = ended or not _PARTIAL_BLANK.fullmatch(head)
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
    _fold_judged = False  # (after a Content-Disposition line) the next one is not folded
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
        self._fold_judged = False
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
