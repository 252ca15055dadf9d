"""wire/forms.py: ``_method`` refused in queries, urlencoded bodies and multipart parts; the
multipart gate releases bytes only after the part headers they belong to were checked."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from restguard.errors import InvalidRequest
from restguard.wire.forms import (
    MAX_PART_HEADER_BYTES,
    MULTIPART,
    URLENCODED,
    MultipartGate,
    check_form_body,
    check_params,
    content_type,
    is_override_name,
)

# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "override"),
    [
        ("_method", True),
        ("_METHOD", True),
        ("_Method", True),
        (" _method ", True),
        ("_method[]", True),  # PHP/Rails array syntax
        ("_method[x]", True),
        ("method", False),
        ("x_method", False),
        ("__method", False),
        ("_meth", False),
        ("", False),
        ("_me thod", False),
    ],
)
def test_is_override_name(name: str, override: bool) -> None:
    assert is_override_name(name) is override


# --- query strings and urlencoded bodies ----------------------------------------------------------

REFUSED_PARAMS = [
    b"_method=DELETE",
    b"_method",
    b"_method=",
    b"a=1&_method=PUT",
    b"a=1;_method=PUT",  # ';' is still a separator to some parsers
    b"_METHOD=PUT",
    b"%5Fmethod=PUT",
    b"%5fmethod=PUT",
    b"_%6Dethod=PUT",
    b"%5F%6D%65%74%68%6F%64=PUT",
    b"+_method=PUT",  # '+' is a space, and names are stripped
    b"_method%5B%5D=PUT",
    b"a=1&&_method=PUT&",
]


@pytest.mark.parametrize("encoded", REFUSED_PARAMS)
@pytest.mark.parametrize("where", ["query", "form body"])
def test_check_params_refuses(encoded: bytes, where: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_params(encoded, where)
    err = caught.value
    assert err.status == 400
    assert err.debug == f"_method in {where}"
    assert where in err.description and "_method" in err.description


@pytest.mark.parametrize(
    "encoded",
    [
        b"",
        b"a=1",
        b"method=DELETE",
        b"x=_method",  # a value, not a name
        b"x=%5Fmethod",
        b"x_method=1",
        b"q=a%26_method%3DPUT",  # one parameter named q
        b"%255Fmethod=PUT",  # decodes once to "%5Fmethod"
        b"\xff\xfe=1",
    ],
)
def test_check_params_accepts(encoded: bytes) -> None:
    check_params(encoded, "query")


# --- Content-Type ---------------------------------------------------------------------------------


def ct(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"h"), (b"content-type", value)]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], ("", b"")),
        (ct(b"application/json"), ("application/json", b"")),
        (ct(b"Application/X-WWW-Form-Urlencoded; charset=utf-8"), (URLENCODED, b"")),
        (ct(b" application/x-www-form-urlencoded "), (URLENCODED, b"")),
        (ct(b"multipart/form-data; boundary=abc"), (MULTIPART, b"abc")),
        (ct(b"Multipart/Form-Data;boundary=abc"), (MULTIPART, b"abc")),
        (ct(b"multipart/form-data; BOUNDARY=abc; charset=utf-8"), (MULTIPART, b"abc")),
        (ct(b'multipart/form-data; boundary="a b:c?"'), (MULTIPART, b"a b:c?")),
        (ct(b"multipart/form-data; boundary=" + b"x" * 70), (MULTIPART, b"x" * 70)),
        (ct(b"multipart/mixed; boundary=abc"), ("multipart/mixed", b"")),
    ],
)
def test_content_type(headers: list[tuple[bytes, bytes]], expected: tuple[str, bytes]) -> None:
    assert content_type(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        ct(b"text/plain") + ct(b"text/plain"),  # repeated, even identical
        ct(b"multipart/form-data"),
        ct(b"multipart/form-data; boundary="),
        ct(b'multipart/form-data; boundary=""'),
        ct(b"multipart/form-data; boundary=a; boundary=a"),
        ct(b"multipart/form-data; boundary=a; Boundary=b"),
        ct(b"multipart/form-data; boundary=" + b"x" * 71),
        ct(b'multipart/form-data; boundary="ab "'),  # may not end with a space
        ct(b"multipart/form-data; boundary=a@b"),
        ct(b'multipart/form-data; boundary=a"b'),
    ],
)
def test_content_type_refuses_ambiguous_forms(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(InvalidRequest):
        content_type(headers)


# --- the multipart gate ---------------------------------------------------------------------------

B = b"XyZ"


def part(
    disposition: bytes, value: bytes = b"v", *, extra: bytes = b"", eol: bytes = b"\r\n"
) -> bytes:
    return (
        b"--" + B + eol + b"Content-Disposition: " + disposition + eol + extra + eol + value + eol
    )


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--" + B + b"--\r\n"


def run(data: bytes, *chunks: int) -> bytes:
    """Feed ``data`` cut at ``chunks`` offsets; everything released, or InvalidRequest."""
    gate = MultipartGate(B)
    out = []
    start = 0
    for end in [*chunks, len(data)]:
        out.append(gate.feed(data[start:end]))
        start = end
    out.append(gate.finish())
    return b"".join(out)


def test_gate_passes_an_ordinary_body_through() -> None:
    data = body(
        part(b'form-data; name="title"', b"hello"),
        part(
            b'form-data; name="file"; filename="_method.txt"',
            b"\x00--X\r\n",
            extra=b"Content-Type: text/plain\r\n",
        ),
    )
    assert run(data) == data
    assert run(data, 1, 5, 6, 30, 31, 80) == data


@pytest.mark.parametrize(
    "disposition",
    [
        b'form-data; name="_method"',
        b"form-data; name=_method",
        b'form-data; NAME="_METHOD"',
        b'form-data;name="_method"',
        b'form-data; name = "_method"',
        b"form-data; name*=utf-8''_method",
        b'form-data; name="%5Fmethod"',
        b'form-data; name="_me\\thod"',  # quoted-pair
        b'form-data; name="_method[]"',
        b'form-data; filename="a.txt"; name="_method"',
        b'form-data; name="a"; name="_method"',  # a repeated parameter: either may win
        b'name="_method"',
    ],
)
def test_gate_refuses_a_method_part(disposition: bytes) -> None:
    data = body(part(b'form-data; name="a"'), part(disposition, b"DELETE"))
    with pytest.raises(InvalidRequest, match="_method") as caught:
        run(data)
    assert caught.value.debug == "_method in form body"


@pytest.mark.parametrize(
    "header",
    [
        b"content-disposition",
        b"CONTENT-DISPOSITION",
        b"Content-Disposition ",
        b"content-disposition\t",
    ],
)
def test_gate_reads_the_disposition_header_name_leniently(header: bytes) -> None:
    data = (
        b"--"
        + B
        + b"\r\n"
        + header
        + b': form-data; name="_method"\r\n\r\nDELETE\r\n--'
        + B
        + b"--"
    )
    with pytest.raises(InvalidRequest):
        run(data)


@pytest.mark.parametrize("disposition", [b'form-data; name="a"', b'form-data; name="_method"'])
def test_gate_refuses_bare_lf_line_ends(disposition: bytes) -> None:
    # Django ends a part's header lines at CRLF only, werkzeug and the email parser at any line
    # end: which bytes form one header is ambiguous, so a bare LF or CR is refused outright.
    with pytest.raises(InvalidRequest):
        run(body(part(disposition, eol=b"\n")))


@pytest.mark.parametrize(
    "disposition",
    [
        b'form-data; name="title"; filename="_method"',  # a file name is not a field name
        b'form-data; name="method"',
        b'form-data; name="x_method"',
        b'form-data; name="a"; x="_method"',
    ],
)
def test_gate_only_looks_at_the_field_name(disposition: bytes) -> None:
    data = body(
        part(disposition, b"_method=DELETE"),
        part(b'form-data; name="b"', extra=b"X-Name: _method\r\n"),
    )
    assert run(data) == data


@pytest.mark.parametrize(
    "disposition",
    [
        b"form-data; name*0=_me; name*1=thod",
        b"form-data; name*0*=UTF-8''%5Fme; name*1*=thod",
        b'form-data; NAME*0="x"',
    ],
)
def test_gate_refuses_a_field_name_in_rfc2231_continuations(disposition: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        run(body(part(disposition)))
    assert caught.value.debug == "name*N in a part header"


@pytest.mark.parametrize(
    ("eol", "refused"),
    [
        (b"\r", "bare CR/LF in a part header"),
        (b"\n", "bare CR/LF in a part header"),
        (b"\r\n", "_method in form body"),
    ],
)
def test_gate_refuses_a_header_hidden_behind_a_bare_line_end(eol: bytes, refused: str) -> None:
    # werkzeug and the email parser split part headers on a bare CR or LF, Django does not
    extra = b"X-Note: a" + eol + b'Content-Disposition: form-data; name="_method"\r\n'
    with pytest.raises(InvalidRequest) as caught:
        run(body(part(b'form-data; name="a"', extra=extra)))
    assert caught.value.debug == refused


def test_gate_reads_quoted_parameters_as_one_value() -> None:
    # ";" and "=" inside a quoted name are part of the name
    data = body(part(b'form-data; name="a;b=c"'), part(b'form-data; x="; name=y"; name="z"'))
    assert run(data) == data


def test_gate_refuses_folded_part_headers() -> None:
    data = body(part(b'form-data; name="a"', extra=b'X-Note: a\r\n name="_method"\r\n'))
    with pytest.raises(InvalidRequest) as caught:
        run(data)
    assert caught.value.debug == "obs-fold in part"


def test_gate_caps_a_part_header_block() -> None:
    gate = MultipartGate(B)
    assert gate.feed(b"preamble") == b"prea"  # holds back len("--XyZ") - 1 bytes
    gate.feed(b"le--" + B + b"\r\nX-Pad: ")
    with pytest.raises(InvalidRequest) as caught:
        for _ in range(MAX_PART_HEADER_BYTES // 1024 + 1):
            gate.feed(b"a" * 1024)
    assert caught.value.debug == "part header over cap"


def test_a_large_part_header_under_the_cap_is_fine() -> None:
    pad = b"X-Pad: " + b"a" * (MAX_PART_HEADER_BYTES - 200) + b"\r\n"
    data = body(part(b'form-data; name="a"', extra=pad))
    assert run(data, *range(0, len(data), 1000)) == data


def test_gate_checks_an_unterminated_header_block_at_the_end() -> None:
    gate = MultipartGate(B)
    released = gate.feed(b"--" + B + b'\r\nContent-Disposition: form-data; name="_method"')
    assert released == b""
    with pytest.raises(InvalidRequest):
        gate.finish()
    gate = MultipartGate(B)
    gate.feed(b"--" + B + b'\r\nContent-Disposition: form-data; name="a"')
    assert gate.finish() == b"--" + B + b'\r\nContent-Disposition: form-data; name="a"'


def test_gate_sees_parts_after_the_close_delimiter_too() -> None:
    # A lenient upstream parser may read on after the close delimiter: never fewer parts.
    data = body(part(b'form-data; name="a"')) + part(b'form-data; name="_method"')
    with pytest.raises(InvalidRequest):
        run(data)


def test_gate_sees_a_delimiter_anywhere() -> None:
    # RFC 2046 wants CRLF before a delimiter; lenient parsers do not insist, nor does the gate.
    data = b"--" + B + b'\r\nContent-Disposition: form-data; name="a"\r\n\r\nv--' + B
    data += b'\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE'
    with pytest.raises(InvalidRequest):
        run(data)


def test_gate_releases_nothing_of_a_method_part() -> None:
    first = part(b'form-data; name="a"', b"x" * 100)
    data = body(first, part(b'form-data; name="_method"', b"DELETE"))
    gate = MultipartGate(B)
    released = gate.feed(data[: len(first) + 10])
    assert released == first  # all of the first part, none of the second's delimiter line
    with pytest.raises(InvalidRequest):
        gate.feed(data[len(first) + 10 :])


# --- check_form_body ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "data"),
    [
        (b"application/x-www-form-urlencoded", b"a=1&_method=DELETE"),
        (b"application/x-www-form-urlencoded; charset=utf-8", b"%5Fmethod=DELETE"),
        (b"multipart/form-data; boundary=XyZ", body(part(b'form-data; name="_method"'))),
    ],
)
def test_check_form_body_refuses(content: bytes, data: bytes) -> None:
    with pytest.raises(InvalidRequest, match="_method"):
        check_form_body(ct(content), data)


@pytest.mark.parametrize(
    ("headers", "data"),
    [
        (ct(b"application/x-www-form-urlencoded"), b"a=1&method=DELETE"),
        (ct(b"multipart/form-data; boundary=XyZ"), body(part(b'form-data; name="a"'))),
        (ct(b"application/json"), b'{"_method": "DELETE"}'),
        (ct(b"text/plain"), b"_method=DELETE"),
        ([], b"_method=DELETE"),
    ],
)
def test_check_form_body_accepts(headers: list[tuple[bytes, bytes]], data: bytes) -> None:
    check_form_body(headers, data)


def test_check_form_body_refuses_an_ambiguous_content_type() -> None:
    with pytest.raises(InvalidRequest):
        check_form_body(ct(b"multipart/form-data"), b"")


# --- properties -----------------------------------------------------------------------------------

_BOUNDARY = st.text(alphabet="abcXYZ0189'()+_,-./:=?", min_size=1, max_size=16).map(str.encode)
_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(
    lambda n: not is_override_name(n)
)
_VALUE = st.binary(max_size=40) | st.sampled_from([b"", b"\r\n", b"--", b"\r\n\r\n", b"-"])
_METHOD_DISPOSITION = st.sampled_from(
    [
        b'form-data; name="_method"',
        b"form-data; name=_method",
        b'form-data; NAME="_Method"',
        b"form-data; name*=UTF-8''%5Fmethod",
        b'form-data; filename="x"; name="_method[]"',
    ]
)


def _part(boundary: bytes, disposition: bytes, value: bytes, eol: bytes = b"\r\n") -> bytes:
    return b"--" + boundary + eol + b"Content-Disposition: " + disposition + eol + eol + value + eol


@st.composite
def _bodies(draw: st.DrawFn, with_method: bool) -> tuple[bytes, bytes, int]:
    """(boundary, body, offset of the ``_method`` part's delimiter or -1)."""
    boundary = draw(_BOUNDARY)
    delimiter = b"--" + boundary
    eol = st.just(b"\r\n")  # (bare line ends in part headers are refused: tested above)
    fields = draw(st.lists(st.tuples(_NAME, _VALUE, eol), max_size=5))
    pieces = [_part(boundary, b'form-data; name="' + n.encode() + b'"', v, e) for n, v, e in fields]
    offset = -1
    if with_method:
        at = draw(st.integers(0, len(pieces)))
        pieces.insert(at, _part(boundary, draw(_METHOD_DISPOSITION), b"DELETE", draw(eol)))
        offset = sum(len(p) for p in pieces[:at])
    preamble = draw(st.sampled_from([b"", b"preamble\r\n"]))
    data = (
        preamble
        + b"".join(pieces)
        + delimiter
        + b"--\r\n"
        + draw(st.sampled_from([b"", b"epilogue"]))
    )
    if offset >= 0:
        offset += len(preamble)
    # the delimiter occurs only where the parts put it
    assume(data.count(delimiter) == len(pieces) + 1)
    return boundary, data, offset


def _cuts(draw: st.DrawFn, size: int) -> list[int]:
    return sorted(draw(st.lists(st.integers(0, size), max_size=8)))


@given(st.data())
def test_gate_releases_exactly_the_input_for_any_chunking(data: st.DataObject) -> None:
    boundary, raw, _ = data.draw(_bodies(with_method=False))
    gate = MultipartGate(boundary)
    released = b""
    start = 0
    for end in [*_cuts(data.draw, len(raw)), len(raw)]:
        released += gate.feed(raw[start:end])
        start = end
        assert raw.startswith(released)  # never anything but a prefix of what came in
    # streaming, not buffering: only what could start a delimiter is held back
    assert len(raw) - len(released) <= len(b"--" + boundary) - 1
    assert released + gate.finish() == raw


@given(st.data())
def test_gate_refuses_a_method_part_before_releasing_its_header(data: st.DataObject) -> None:
    boundary, raw, offset = data.draw(_bodies(with_method=True))
    gate = MultipartGate(boundary)
    released = b""
    start = 0
    with pytest.raises(InvalidRequest, match="_method"):
        for end in [*_cuts(data.draw, len(raw)), len(raw)]:
            released += gate.feed(raw[start:end])
            start = end
            assert raw.startswith(released)
            assert len(released) <= offset  # not one byte of the _method part's delimiter line
        gate.finish()
    assert len(released) <= offset


@given(st.binary(max_size=300), st.data())
def test_gate_outcome_does_not_depend_on_the_chunking(raw: bytes, data: st.DataObject) -> None:
    boundary = b"XyZ"
    if data.draw(st.booleans()):  # make delimiters and part headers likely
        raw = raw.replace(b"\x00", b"--XyZ\r\n").replace(
            b"\x01", b'content-disposition: name="_method"\n\n'
        )

    def outcome(cuts: list[int]) -> bytes | str:
        gate = MultipartGate(boundary)
        out = b""
        start = 0
        try:
            for end in [*cuts, len(raw)]:
                out += gate.feed(raw[start:end])
                start = end
            return out + gate.finish()
        except InvalidRequest as err:
            return err.debug

    whole = outcome([])
    assert whole == raw or isinstance(whole, str)
    assert outcome(_cuts(data.draw, len(raw))) == whole
    assert outcome(list(range(len(raw)))) == whole  # one byte at a time
