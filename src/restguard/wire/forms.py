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

The gates are ``wire/urlencoded_gate.py``, ``wire/multipart_gate.py`` and ``wire/json_gate.py``;
what they share (override names, their decoding, white space, HTTP syntax) is ``wire/params.py``.
The multipart gate ignores the part structure altogether: it looks at every line of the body,
preamble and epilogue included (Django reads parts there), for a ``Content-Disposition`` header
naming ``_method`` -- whatever delimiters, line ends or nesting an upstream's parser believes in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from restguard.errors import InvalidRequest, UnsupportedMediaType
from restguard.wire.json_gate import JsonGate
from restguard.wire.multipart_gate import MultipartGate
from restguard.wire.params import (
    _LEADING_BLANKS,
    _QUOTED,
    _TOKEN,
    CHARSETS,
    MAX_NAME_BYTES,
    OVERRIDE_NAMES,
    OVERRIDE_PARAM,
    _ambiguous_type,
    _may_hold_override,
    _override_refused,
    _unquoted,
    decode_name,
    is_override_name,
)
from restguard.wire.urlencoded_gate import UrlencodedGate

__all__ = [
    "CHARSETS",
    "MAX_NAME_BYTES",
    "MULTIPART",
    "OVERRIDE_NAMES",
    "OVERRIDE_PARAM",
    "URLENCODED",
    "_LEADING_BLANKS",
    "Gate",
    "JsonGate",
    "MultipartGate",
    "UrlencodedGate",
    "check_body",
    "check_encoding",
    "check_params",
    "content_type",
    "decode_name",
    "gate_for",
    "is_override_name",
]

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
# RFC 2046 §5.1.1 bchars, less "," and " " (Rack does not read those): 1 to 70 of them.
_BOUNDARY = re.compile(rb"^[0-9A-Za-z'()+_\-./:=?]{1,70}$")
_PARAM_SPLIT = re.compile(rb"[&;]")
_FORM_LIKE = re.compile(rb"(?i)form-data|x-www-form-urlencoded")
_JSON_LIKE = re.compile(rb"(?i)/json|\+json")
_SENSITIVE_PARAM = re.compile(rb"(?i)charset|boundary")
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
