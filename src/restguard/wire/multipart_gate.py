"""The multipart gate: every line of a ``multipart/*`` body, whatever its part structure."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

from restguard.errors import InvalidRequest
from restguard.wire.params import (
    _CONTINUATION,
    _LEADING_BLANKS,
    _LINE_END,
    _PARTIAL_BLANK,
    _QUOTED,
    _TOKEN,
    CHARSETS,
    MAX_NAME_BYTES,
    _ambiguous_type,
    _override_refused,
    _too_long,
    is_override_name,
)

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
