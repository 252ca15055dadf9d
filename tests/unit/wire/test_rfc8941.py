"""RFC 8941 structured fields: the strict Dictionary parser and the serializer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard.wire import rfc8941, rfc9421, rfc9530
from restguard.wire.rfc8941 import (
    InnerList,
    Item,
    StructuredFieldError,
    Token,
    parse_byte_sequence_dictionary,
    parse_dictionary,
    parse_inner_list_dictionary,
    serialize_bare_item,
)
from restguard.wire.rfc8941_serialize import serialize_dictionary, serialize_inner_list
from tests.unit.test_linear_parsing import assert_linear


def test_every_bare_item_type() -> None:
    parsed = parse_dictionary(
        [b'a="s \\"q\\" \\\\", b=tok/en:1, c=-42, d=?1, e=?0, f=:AQID:, g, h;p=1;q']
    )
    assert parsed == {
        "a": Item('s "q" \\'),
        "b": Item("tok/en:1"),
        "c": Item(-42),
        "d": Item(True),
        "e": Item(False),
        "f": Item(b"\x01\x02\x03"),
        "g": Item(True),
        "h": Item(True, (("p", 1), ("q", True))),
    }
    assert isinstance(parsed["b"].value, Token) and not isinstance(parsed["a"].value, Token)


def test_inner_lists_with_parameters() -> None:
    parsed = parse_inner_list_dictionary([b'sig1=("a";x=1 "b" );k="v"'])
    assert parsed == {"sig1": InnerList((Item("a", (("x", 1),)), Item("b")), (("k", "v"),))}
    assert parse_inner_list_dictionary([b"e=()"]) == {"e": InnerList(())}


def test_whitespace_rules() -> None:
    assert parse_dictionary([b"  a=1 ,\tb=2\t"]) == {"a": Item(1), "b": Item(2)}
    assert parse_dictionary([b"a=(  1   2  )"]) == {"a": InnerList((Item(1), Item(2)))}
    assert parse_dictionary([b"a=1;  b=2"]) == {"a": Item(1, (("b", 2),))}
    for bad in (b"\ta=1", b"a =1", b"a= 1", b"a=1 ;b", b"a=(1\t2)", b'a="\tx"', b"a=(1)x"):
        with pytest.raises(StructuredFieldError):
            parse_dictionary([bad])


def test_multiple_field_lines_are_one_dictionary() -> None:
    assert parse_dictionary([b"a=1", b"b=2, c=3"]) == {"a": Item(1), "b": Item(2), "c": Item(3)}
    assert parse_dictionary([]) == {}
    assert parse_dictionary([b""]) == {}
    with pytest.raises(StructuredFieldError):
        parse_dictionary([b"a=1", b""])  # an empty line is a trailing comma


@pytest.mark.parametrize(
    "value",
    [
        b"a=1, a=2",  # RFC 8941 keeps the last; restguard refuses (parser differential)
        b"a=1;p=1;p=2",
        b"a=(1;p 2);p;p",
        b"a=(1;p;p)",
    ],
)
def test_duplicates_are_refused(value: bytes) -> None:
    with pytest.raises(StructuredFieldError, match="duplicate"):
        parse_dictionary([value])


def test_duplicate_keys_across_lines_are_refused() -> None:
    with pytest.raises(StructuredFieldError, match="duplicate"):
        parse_dictionary([b"a=1", b"a=2"])


@pytest.mark.parametrize(
    "value",
    [
        b"A=1",  # keys are lower-case
        b"1a=1",
        b"a=1,",
        b",a=1",
        b"a=1,,b=2",
        b"a=1 b=2",
        b"a=1.5",  # decimals are not accepted
        b"a=1234567890123456",  # 16 digits
        b"a=-",
        b"a=?2",
        b"a=?",
        b'a="x',
        b'a="\\x"',
        b'a="\\',
        b"a=:AQID",
        b"a=:AQ=D:",
        b"a=:AQ===:",
        b"a=:A:",
        b"a=:A-_=:",  # base64url is not base64
        b"a=(1",
        b"a=(1 2",
        b"a=@",
        b"a=%",
        b"a=1;",
        b"a=1;P=1",
        b"a=\xc3\xa9",
        b"a=\x00",
        b"a=1\r\nb=2",
    ],
)
def test_malformed_dictionaries_are_refused(value: bytes) -> None:
    with pytest.raises(StructuredFieldError):
        parse_dictionary([value])


def test_byte_sequences_without_padding_are_accepted() -> None:
    # §4.2.7: parsers SHOULD NOT fail when "=" padding is absent
    assert parse_byte_sequence_dictionary([b"a=:AQ:, b=:AQI:, c=::"]) == {
        "a": b"\x01",
        "b": b"\x01\x02",
        "c": b"",
    }


def test_member_type_checks() -> None:
    with pytest.raises(StructuredFieldError):
        parse_byte_sequence_dictionary([b"a=1"])
    with pytest.raises(StructuredFieldError):
        parse_byte_sequence_dictionary([b"a=(:AA==:)"])
    with pytest.raises(StructuredFieldError):
        parse_inner_list_dictionary([b'a="x"'])
    assert parse_byte_sequence_dictionary([b"a=:AA==:;p=1"]) == {"a": b"\0"}


def test_size_cap_applies_before_parsing() -> None:
    ok = b"a=" + b"1" * 10 + b", b=" + b"x" * (rfc8941.MAX_FIELD_BYTES - 20)
    assert len(ok) <= rfc8941.MAX_FIELD_BYTES
    parse_dictionary([ok])
    with pytest.raises(StructuredFieldError, match="longer"):
        parse_dictionary([ok + b"x" * 20])
    with pytest.raises(StructuredFieldError, match="longer"):
        parse_dictionary([b"a=1"] * 3000)  # many small lines add up
    with pytest.raises(StructuredFieldError, match="longer"):
        parse_dictionary([b"a=1"], limit=2)


def test_serializer() -> None:
    assert serialize_bare_item(True) == "?1"
    assert serialize_bare_item(False) == "?0"
    assert serialize_bare_item(-5) == "-5"
    assert serialize_bare_item(b"\x01\x02\x03") == ":AQID:"
    assert serialize_bare_item(Token("a/b")) == "a/b"
    assert serialize_bare_item('q"\\') == '"q\\"\\\\"'
    inner = InnerList((Item("@method"), Item("x", (("bs", True),))), (("created", 1), ("k", "v")))
    assert serialize_inner_list(inner) == '("@method" "x";bs);created=1;k="v"'
    assert serialize_dictionary({"a": Item(True, (("p", 1),)), "b": inner}) == (
        'a;p=1, b=("@method" "x";bs);created=1;k="v"'
    )
    for bad in ("é", "\n", 10**15, Token("1x")):
        with pytest.raises(StructuredFieldError):
            serialize_bare_item(bad)


def test_serialize_parse_round_trip() -> None:
    text = 'a=("x";p=?0 y);q=:AA==:, b="s", c=tok;z=-1, d'
    assert serialize_dictionary(parse_dictionary([text.encode()])) == text


# --- property tests: mutations of valid headers never crash ---------------------------------

VALID = [
    b'sig1=("@method" "@authority" "@path" "content-digest");created=1618884473'
    b';keyid="test-key";alg="hmac-sha256";nonce="b3k2pp5k7z-50gnwp.yemd"',
    b'a=("@query-param";name="Pet" "x";key="k" "y";bs);created=1;expires=2;tag="t", b=();created=3',
    b"sig1=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:, sig2=:AQID:;p=1",
    b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, md5=:AA==:",
]
_ALPHABET = b' \t"():;=,?*-_./\\@!#%&+0123456789aAzZ\x00\x7f\xff'


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "replace" and data:
            data[at] = draw(st.sampled_from(_ALPHABET))
        elif op == "insert":
            data.insert(at, draw(st.sampled_from(_ALPHABET)))
        elif op == "delete" and data:
            del data[at]
        else:
            end = draw(st.integers(at, len(data)))
            data[at:at] = data[at:end]
    return bytes(data)


@settings(max_examples=600, deadline=None)
@given(value=mutated(), split=st.booleans())
def test_mutations_raise_only_structured_field_errors(value: bytes, split: bool) -> None:
    lines = value.split(b",", 1) if split else [value]
    for parse in (
        parse_dictionary,
        parse_inner_list_dictionary,
        parse_byte_sequence_dictionary,
        rfc9421.parse_signature_input,
        rfc9421.parse_signature,
        rfc9530.parse_content_digest,
    ):
        try:
            parse(lines)
        except StructuredFieldError:
            pass
    assert isinstance(rfc9530.digest_problem(lines, b"body"), str | None)  # never raises


@settings(max_examples=300, deadline=None)
@given(value=mutated())
def test_what_parses_serializes_and_parses_back_the_same(value: bytes) -> None:
    try:
        parsed = parse_dictionary([value])
    except StructuredFieldError:
        return
    assert parse_dictionary([serialize_dictionary(parsed).encode()]) == parsed


@settings(max_examples=300, deadline=None)
@given(value=st.binary(max_size=64))
def test_random_bytes_raise_only_structured_field_errors(value: bytes) -> None:
    try:
        parse_dictionary([value])
    except StructuredFieldError:
        pass


def _scanner_only(value: bytes) -> dict[str, rfc8941.Member] | str:
    try:
        return rfc8941._dictionary(rfc8941.combine([value]))
    except StructuredFieldError:
        return "error"


def _public(parse: object, value: bytes) -> object:
    try:
        return parse([value])  # type: ignore[operator]
    except StructuredFieldError:
        return "error"


@settings(max_examples=600, deadline=None)
@given(value=mutated())
def test_the_fast_paths_agree_with_the_scanner(value: bytes) -> None:
    scanned = _scanner_only(value)
    fast = _public(parse_inner_list_dictionary, value)
    if scanned == "error" or not all(isinstance(m, InnerList) for m in scanned.values()):
        assert fast == "error"
    else:
        assert fast == scanned
        serialized = rfc8941.parse_inner_lists_serialized([value])
        assert {k: text for k, (_, text) in serialized.items()} == {
            k: rfc8941.canonical_inner_list(m) for k, m in scanned.items()
        }
        assert {k: text for k, (_, text) in serialized.items()} == {
            k: serialize_inner_list(m) for k, m in scanned.items()
        }
    fast_bytes = _public(parse_byte_sequence_dictionary, value)
    if scanned == "error" or not all(
        isinstance(m, Item) and type(m.value) is bytes for m in scanned.values()
    ):
        assert fast_bytes == "error"
    else:
        assert fast_bytes == {k: m.value for k, m in scanned.items()}


@pytest.mark.parametrize(
    "value",
    [
        b'sig1=("@method" "@path");created=1;keyid="k";created=2',
        b'sig1=("@method");created=1.5',
        b'sig1=("@method");created=1234567890123456',
        b'sig1=("a b" "");x="";y=-0;z=007',
        b'sig1=("a");y=-0',
        b'sig1=("a");y=0;z=-12',
        b'sig1=("a" "b");z=007',
        b"sig1=:AQ:",
        b"sig1=:AQ=:",
    ],
)
def test_the_fast_paths_on_edge_cases(value: bytes) -> None:
    scanned = _scanner_only(value)
    if value.count(b":") == 2:
        expected = scanned if scanned == "error" else {k: m.value for k, m in scanned.items()}
        assert _public(parse_byte_sequence_dictionary, value) == expected
    else:
        assert _public(parse_inner_list_dictionary, value) == scanned
        if scanned != "error":
            (text,) = [t for _, t in rfc8941.parse_inner_lists_serialized([value]).values()]
            (member,) = scanned.values()
            assert text == serialize_inner_list(member)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: b"a=1" + b"".join(b";p%d" % i for i in range(n)),  # many parameters
        lambda n: b", ".join(b"k%d" % i for i in range(n)),  # many keys
        lambda n: b'a=("' + b'" "'.join(b"x%d" % i for i in range(n)) + b'")',  # many items
        lambda n: b'a=("x");' + b";".join(b'p%d="v"' % i for i in range(n)),  # the fast path
        lambda n: b'a="' + b'\\"' * n + b'"',  # escapes
    ],
)
def test_parsing_time_is_linear_in_the_input(make: Callable[[int], bytes]) -> None:
    # (CPU time, best of several runs, a second round: tests/unit/test_linear_parsing.py)
    def parse(value: bytes) -> None:
        try:
            parse_dictionary([value], limit=1 << 20)
        except StructuredFieldError:
            pass

    assert_linear(parse, make, small=1000, large=4000)
