"""HTML form encodings (``application/x-www-form-urlencoded``, ``multipart/form-data``), read
only as far as restguard must: to refuse parameters that make an upstream act on another method
than the one the policy judged.

A ``_method`` parameter turns a POST into a DELETE or PUT in Express (method-override), Laravel,
Symfony, Rails (Rack::MethodOverride) and the Django and Flask method-override middlewares, from
the query string and from form bodies, urlencoded or multipart. restguard refuses it (400)
wherever a form parameter can come from, like the method-override headers.

The multipart scan is streaming (``MultipartGate``): part header blocks are checked before any of
their bytes are released for forwarding, so an upstream never receives a ``_method`` part. It is
deliberately looser than RFC 2046 in what it treats as a delimiter (``--boundary`` anywhere, bare
LF line ends), because lenient upstream parsers are: it may see more parts than a strict parser,
never fewer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote_plus

from restguard.errors import InvalidRequest

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
OVERRIDE_PARAM = "_method"
MAX_PART_HEADER_BYTES = 16 * 1024
FORM_BODY_CAP = 1024 * 1024  # urlencoded bodies are read whole to be checked: at most this
# RFC 2046 §5.1.1: boundary := 0*69<bchars> bcharsnospace
_BOUNDARY = re.compile(rb"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
_PARAM_SPLIT = re.compile(r"[&;]")
_PHP_MANGLED = str.maketrans({".": "_", " ": "_", "[": "_"})
# The earliest a lenient parser may end a part's header block (a block that holds bare line
# ends is refused when it is checked).
_HEADER_END = re.compile(rb"\n\r?\n|\r\r")
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
# Content-Disposition parameters: key=token or key="quoted", split on ";" outside quotes.
_PARAM = re.compile(r'\s*([^=;"]*?)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)\s*(?:;|$)')
# RFC 2231 §3 continuations (name*0, name*1*, ...): werkzeug, Django and the email parser put
# them back together; restguard refuses them for the field name instead of guessing alike.
_CONTINUATION = re.compile(r"name\*\d+\*?")


def _override_refused(where: str) -> InvalidRequest:
    return InvalidRequest(
        f"A '_method' parameter in the {where} is not accepted; use the real HTTP method.",
        debug=f"_method in {where}",
    )


def is_override_name(name: str) -> bool:
    """True for ``_method`` and what lenient parsers read as it: any case, surrounding white
    space, a suffix (``_method[]``), PHP's mangling of ``.``, `` `` and ``[`` into ``_``
    (``.method`` is ``$_POST['_method']`` in Laravel and Symfony), and any name with a NUL
    (C-string parsers end the name there)."""
    if "\x00" in name:
        return True
    folded = name.strip().lower().translate(_PHP_MANGLED)
    return folded.startswith(OVERRIDE_PARAM)


def check_params(encoded: bytes, where: str) -> None:
    """Refuse a ``_method`` parameter in a query string or urlencoded body. Parameters are split
    on ``&`` and on ``;`` (which some parsers still accept), names percent- and plus-decoded."""
    if not any(c in encoded for c in (b"_", b"%", b".", b"+", b"[", b"\x00")):
        return
    text = encoded.decode("latin-1")
    for pair in _PARAM_SPLIT.split(text):
        name = pair.partition("=")[0]
        if is_override_name(unquote_plus(name, encoding="latin-1")):
            raise _override_refused(where)


def looks_like_form(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether any parser might read this request's body as a form (the adapters then read it
    and ``content_type`` judges it strictly)."""
    return any(k == b"content-type" and _FORM_LIKE.search(v) for k, v in headers)


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


def _check_part_header(block: bytes) -> None:
    # Lines end at CRLF only; a bare CR or LF ends a line for some parsers (werkzeug, email)
    # and not for others (Django), so which bytes form one header is ambiguous: refused.
    if b"\r" in block.replace(b"\r\n", b"") or b"\n" in block.replace(b"\r\n", b""):
        raise InvalidRequest(
            "A multipart part header has a bare CR or LF.", debug="bare CR/LF in a part header"
        )
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            raise InvalidRequest(
                "Folded multipart part headers are not accepted.", debug="obs-fold in part"
            )
        name, sep, value = line.partition(b":")
        if not sep or name.strip(b" \t").lower() != b"content-disposition":
            continue
        for key, raw in _PARAM.findall(value.decode("latin-1")):
            key = key.strip().lower()
            if _CONTINUATION.fullmatch(key):
                raise InvalidRequest(
                    "A multipart field name in RFC 2231 continuations is not accepted.",
                    debug="name*N in a part header",
                )
            if key not in ("name", "name*"):
                continue
            field = raw.strip()
            if len(field) >= 2 and field[0] == field[-1] and field[0] in "\"'":
                # PHP reads single quotes as quotes too
                field = re.sub(r"\\(.)", r"\1", field[1:-1])
            if key == "name*":  # RFC 2231 charset'lang'value
                charset, _, rest = field.partition("'")
                if charset.lower() not in CHARSETS:
                    raise _ambiguous_type("RFC 2231 name in a charset not ASCII-compatible")
                field = rest.partition("'")[2]
            if is_override_name(unquote_plus(field, encoding="latin-1")):
                raise _override_refused("form body")


class MultipartGate:
    """Feeds a multipart body through, releasing bytes only once the part header blocks they
    belong to were checked. ``feed`` returns what may be forwarded now; ``finish`` the rest.
    Both raise InvalidRequest for a ``_method`` part (or a part header block over the cap)."""

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"--" + boundary
        self._buf = b""
        self._in_header = False

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out: list[bytes] = []
        delimiter = self._delimiter
        while True:
            buf = self._buf
            if not self._in_header:
                at = buf.find(delimiter)
                if at < 0:
                    keep = len(delimiter) - 1
                    cut = max(0, len(buf) - keep)
                    out.append(buf[:cut])
                    self._buf = buf[cut:]
                    break
                out.append(buf[:at])
                self._buf = buf[at:]
                self._in_header = True
                continue
            after = len(delimiter)
            if len(buf) < after + 2:
                break
            if buf[after : after + 2] == b"--":  # a close delimiter: no header block follows
                out.append(buf[: after + 2])
                self._buf = buf[after + 2 :]
                self._in_header = False
                continue
            end = _HEADER_END.search(buf, after)
            if end is None:
                if len(buf) > MAX_PART_HEADER_BYTES:
                    raise InvalidRequest(
                        "A multipart part header is too large.", debug="part header over cap"
                    )
                break
            _check_part_header(buf[after : end.end()])
            out.append(buf[: end.end()])
            self._buf = buf[end.end() :]
            self._in_header = False
        return b"".join(out)

    def finish(self) -> bytes:
        """The end of the body: check an unterminated header block too, release the rest."""
        rest, self._buf = self._buf, b""
        if self._in_header:
            _check_part_header(rest[len(self._delimiter) :])
        return rest


def check_form_body(headers: Sequence[tuple[bytes, bytes]], body: bytes) -> None:
    """Refuse a ``_method`` field in a complete urlencoded or multipart body."""
    kind, boundary = content_type(headers)
    if kind == URLENCODED:
        check_params(body, "form body")
    elif kind == MULTIPART:
        gate = MultipartGate(boundary)
        gate.feed(body)
        gate.finish()
