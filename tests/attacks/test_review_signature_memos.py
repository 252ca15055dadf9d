"""Attacks on the RFC 9421 hot-path memos (4492a22, b129763).

1. rfc8941: ``_FAST_ITEMS``, the fast path's items tuple per component-list text.
2. rfc9421: ``_COMPONENTS``, the component checks per items tuple (by identity);
   ``SignatureInput.plain`` behind ``covers``; ``_PLAIN_DERIVED``, the fast base lines.
3. signature: ``_fields`` (Signature-Input, Signature and Host read in one pass).
4. rfc9421_algorithms: ``HmacSha256Key`` (keyed once, copied per verification) and the key
   kept per app record by ``AppCache``.

Each test asserts the secure behaviour: it passes when the memo is safe.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard.credentials.apps import decode_secret, new_app, secret_purpose, verification_key
from restguard.credentials.base import AuthContext
from restguard.credentials.signature import AppCache, SignatureAuthenticator
from restguard.errors import InvalidCredential
from restguard.keys.sealing import Sealer
from restguard.store.ports import AppRecord
from restguard.types import RequestView
from restguard.wire import rfc8941, rfc9421, rfc9421_algorithms, rfc9421_base, rfc9530
from restguard.wire.rfc8941 import StructuredFieldError, Token
from restguard.wire.rfc8941_serialize import serialize_item
from restguard.wire.rfc9421 import (
    Message,
    SignatureBaseError,
    SignatureInvalid,
    parse_signature_input,
    signature_base,
)
from restguard.wire.rfc9421_algorithms import HmacSha256Key, verify_hmac_sha256
from tests.unit.fakes import T0

SEALER = Sealer(b"m" * 32)
CREATED = int(T0.timestamp())
_NEVER = re.compile(r"(?!)")  # a fast-path pattern that never matches


def _new_app(name: str) -> tuple[AppRecord, bytes]:
    record, secret = new_app(name, ("w",), "hmac-sha256", None, now=T0, sealer=SEALER)
    assert secret is not None
    return record, decode_secret(secret)


APP_A, KEY_A = _new_app("billing")
APP_B, KEY_B = _new_app("reports")


@contextmanager
def _general_path_only() -> Iterator[None]:
    """Parse as if neither the fast path nor the memos existed."""
    saved_items = dict(rfc8941._FAST_ITEMS)
    saved_components = dict(rfc9421._COMPONENTS)
    rfc8941._FAST_ITEMS.clear()
    rfc9421._COMPONENTS.clear()
    try:
        with mock.patch.object(rfc8941, "_FAST_INNER_LIST_MEMBER", _NEVER):
            yield
    finally:
        rfc8941._FAST_ITEMS.clear()
        rfc8941._FAST_ITEMS.update(saved_items)
        rfc9421._COMPONENTS.clear()
        rfc9421._COMPONENTS.update(saved_components)


def _typed(sig: rfc9421.SignatureInput) -> Any:
    """A SignatureInput with every value's type spelled out (== says Token("a") == "a")."""
    components = [(type(n), n, tuple((k, type(v), v) for k, v in p)) for n, p in sig.components]
    return (sig._replace(components=()), components, sorted(sig.plain))


def _answer(value: bytes) -> Any:
    try:
        return {k: _typed(v) for k, v in parse_signature_input([value]).items()}
    except StructuredFieldError as exc:
        return ("refused", str(exc))


# --- 1./2. the component list memos ------------------------------------------------------------


@pytest.mark.parametrize(
    ("accepted", "refused"),
    [
        # sf-string vs sf-token of the same text
        (b'sig1=("content-digest");created=1', b"sig1=(content-digest);created=1"),
        (b'sig1=("@method" "x-a");created=1', b'sig1=("@method" x-a);created=1'),
        # Boolean vs Integer (sf, bs take only ?1)
        (b'sig1=("x-a";sf);created=1', b'sig1=("x-a";sf=1);created=1'),
        (b'sig1=("x-a";bs);created=1', b'sig1=("x-a";bs=1);created=1'),
        # String vs Token (key, @query-param's name take an sf-string)
        (b'sig1=("x-a";key="k");created=1', b'sig1=("x-a";key=k);created=1'),
        (
            b'sig1=("@query-param";name="a");created=1',
            b'sig1=("@query-param";name=a);created=1',
        ),
        # the same parameters, a combination that is not allowed
        (b'sig1=("x-a";key="k";sf);created=1', b'sig1=("x-a";key="k";bs);created=1'),
        # a parameter on a derived name
        (b'sig1=("@method");created=1', b'sig1=("@method";req);created=1'),
        # upper case, an unknown derived name, @signature-params
        (b'sig1=("x-a");created=1', b'sig1=("X-A");created=1'),
        (b'sig1=("@path");created=1', b'sig1=("@status");created=1'),
        (b'sig1=("@path");created=1', b'sig1=("@signature-params");created=1'),
    ],
)
def test_a_remembered_list_never_vouches_for_a_look_alike(accepted: bytes, refused: bytes) -> None:
    for _ in range(3):  # checked, then remembered (by text and by identity)
        parse_signature_input([accepted])
    for _ in range(3):  # refused every time, not remembered as accepted
        with pytest.raises(StructuredFieldError):
            parse_signature_input([refused])
    parse_signature_input([accepted])  # (and the accepted one still is)


@pytest.mark.parametrize(
    "duplicate",
    [
        b'sig1=("@method" "@path" "@method");created=1',  # fast path
        b'sig1=("@method" "@path"  "@method");created=1',  # general path (two SP)
        b'sig1=("x-a";sf "x-a";sf);created=1',
        b'sig1=("x-a";key="k";sf "x-a";sf;key="k");created=1',  # same params, other order
        b'sig1=("@query-param";name="a" "@query-param";name="a");created=1',
    ],
)
def test_a_duplicate_component_is_refused_after_its_prefix_was_remembered(
    duplicate: bytes,
) -> None:
    prefix = b'sig1=("@method" "@path");created=1'
    for _ in range(3):
        parse_signature_input([prefix])
    for _ in range(3):
        with pytest.raises(StructuredFieldError, match="twice"):
            parse_signature_input([duplicate])
    # the fast path's items of a refused list are remembered; its check never is
    items = rfc8941._FAST_ITEMS.get('"@method" "@path" "@method"')
    if items is not None:
        entry = rfc9421._COMPONENTS.get(id(items))
        assert entry is None or entry[0] is not items


def test_the_memos_stay_bounded_and_right_past_eviction() -> None:
    good = b'sig1=("@method" "@authority" "@path");created=1;nonce="n"'
    bad = b'sig1=("@method" "@authority" "@method");created=1;nonce="n"'
    first = _answer(good)
    assert first != _answer(bad) and _answer(bad)[0] == "refused"
    for i in range(700):  # fast-path texts, general-path texts, refused texts
        parse_signature_input([b'sig1=("@method" "x-%d");created=1' % i])
        parse_signature_input([b'sig1=("@method"  "x-%d");created=1' % i])
        with pytest.raises(StructuredFieldError):
            parse_signature_input([b'sig1=("@method" "X-%d");created=1' % i])
        assert len(rfc8941._FAST_ITEMS) <= 256
        assert len(rfc9421._COMPONENTS) <= 256
        if i % 97 == 0:  # re-sent across evictions
            assert _answer(good) == first
            assert _answer(bad)[0] == "refused"
    # every remembered check is of the very tuple it is keyed by
    assert all(id(items) == k for k, (items, _) in rfc9421._COMPONENTS.items())
    assert all(
        plain == frozenset(n for n, p in items if not p)
        for items, plain in rfc9421._COMPONENTS.values()
    )


def test_the_same_items_under_other_labels_and_parameters() -> None:
    a = parse_signature_input([b'a=("@method" "@path");created=1;keyid="k1"'])["a"]
    b = parse_signature_input([b'b=("@method" "@path");created=2;nonce="x"'])["b"]
    assert a.components is b.components  # (the fast path's one tuple)
    assert (a.label, a.created, a.keyid, a.nonce) == ("a", 1, "k1", None)
    assert (b.label, b.created, b.keyid, b.nonce) == ("b", 2, None, "x")
    assert a.params_value == '("@method" "@path");created=1;keyid="k1"'
    assert b.params_value == '("@method" "@path");created=2;nonce="x"'
    # and a refused list under a label does not become accepted under another
    for label in (b"a", b"b", b"c"):
        with pytest.raises(StructuredFieldError):
            parse_signature_input([label + b'=("@method" "@method");created=1'])


def test_a_long_list_is_not_remembered_and_answers_alike() -> None:
    names = " ".join(f'"x-{i:03d}"' for i in range(80))
    assert len(names) > 512
    good = f"sig1=({names});created=1".encode()
    bad = f'sig1=({names} "x-000");created=1'.encode()
    answers = [_answer(good) for _ in range(3)]
    assert answers[0] == answers[1] == answers[2] and answers[0] != ()
    assert names not in rfc8941._FAST_ITEMS
    assert all(len(k) <= 512 for k in rfc8941._FAST_ITEMS)
    for _ in range(3):
        assert _answer(bad)[0] == "refused"
    with _general_path_only():
        assert _answer(good) == answers[0]


@pytest.mark.parametrize(
    "value",
    [
        b'sig1=("@method");created=1;nonce="x;created=9"',
        b'sig1=("@method");nonce="a=b;c";created=1',
        b'sig1=("@method");created=1;nonce="x\\"y"',  # an escape: the general path
        b'sig1=("@method");created=1;nonce="x\\\\y"',
        b'sig1=("a;b=1");created=1',  # ; = inside the component's string
        b'sig1=("a\\"b");created=1',
        b'sig1=("@method");created=1;created=2',  # duplicate parameter
        b'sig1=("@method");created=01',  # a leading zero
        b'sig1=("@method");created=-1',
        b'sig1=("@method");created="1"',
        b'sig1=("@method");created=?1',
        b'sig1=("@method");created=1;nonce=n',  # a token nonce
        b'sig1=("@method");created=1;alg=?1',
        b'sig1=("@method");created=1;expires=1.5',
        b'sig1=("@method");created=1, sig2=("@path");created=2',
        b'sig1=("@method" );created=1',
        b"sig1=();created=1",
        b'sig1=("");created=1',
    ],
)
def test_odd_texts_answer_as_the_general_path_does(value: bytes) -> None:
    with _general_path_only():
        reference = _answer(value)
    assert [_answer(value) for _ in range(3)] == [reference] * 3


_ITEM_TEXTS = [
    '"@method"',
    '"@authority"',
    '"@path"',
    '"@query"',
    '"@scheme"',
    '"@target-uri"',
    '"content-digest"',
    "content-digest",
    '"x-a"',
    "x-a",
    '"x-a";sf',
    '"x-a";sf=1',
    '"x-a";sf=?0',
    '"x-a";key="k"',
    '"x-a";key=k',
    '"x-a";bs',
    '"x-a";bs;sf',
    '"x-a";sf;key="k"',
    '"x-a";key="k";sf',
    '"@query-param";name="a"',
    '"@query-param";name=a',
    '"@query-param";name="a";name="b"',
    '"X-A"',
    '"@status"',
    '"@signature-params"',
    '"@method";req',
    '"a;b=1"',
    '"a\\"b"',
    '""',
    "1",
    "?1",
]
_PARAM_TEXTS = [
    ";created=1",
    ';created=1;nonce="n"',
    ';nonce="a;created=2";created=3',
    ';created=1;keyid="k";alg="hmac-sha256"',
    ";created=1;tag=t",
    ";created=?1",
    ";created=1;expires=2",
    "",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_ITEM_TEXTS), max_size=6),
    st.sampled_from([" ", "  "]),
    st.sampled_from(_PARAM_TEXTS),
    st.sampled_from(["sig1", "a", "x*y"]),
)
def test_parsing_with_warm_memos_equals_the_general_path(
    items: list[str], sep: str, params: str, label: str
) -> None:
    value = f"{label}=({sep.join(items)}){params}".encode()
    with _general_path_only():
        reference = _answer(value)
    for _ in range(2):  # cold, then from the memos
        assert _answer(value) == reference


# --- 2. covers() through ``plain`` --------------------------------------------------------------


def test_covers_a_parameterised_component_is_not_covering_the_plain_one() -> None:
    sig = parse_signature_input([b'sig1=("content-digest";sf "@method");created=1'])["sig1"]
    for _ in range(2):
        assert not sig.covers("content-digest")
        assert sig.covers("content-digest", (("sf", True),))
        assert sig.covers("@method") and not sig.covers("@path")
        assert not sig.covers("@method", (("req", True),))
    assert sig.plain == frozenset({"@method"})


# --- 2. the base's fast lines -------------------------------------------------------------------


def _reference_line(name: str, msg: Message) -> bytes:
    """The line as RFC 9421 §2.2 and §2.5 write it (independently of the module)."""
    if name == "@method":
        value = msg.method
    elif name == "@authority":
        value = msg.authority.lower()
        if not value:
            raise SignatureBaseError("no authority")
        default = {"http": ":80", "https": ":443"}.get(msg.scheme.lower())
        if default and value.endswith(default):
            value = value[: -len(default)]
    elif name == "@path":
        value = msg.path or "/"
    else:
        raw = b"?" + msg.query
        value = raw.decode("latin-1")
    if any(not (0x20 <= ord(c) < 0x7F or c == "\t") for c in value):
        raise SignatureBaseError("not printable ASCII")
    return f'"{name}": {value}'.encode("ascii")


def _reference_base(sig: rfc9421.SignatureInput, msg: Message) -> bytes:
    lines = []
    for name, params in sig.components:
        if params or name not in ("@method", "@authority", "@path", "@query"):
            # (the general path's pieces, untouched by the change)
            if name.startswith("@"):
                try:
                    value = rfc9421_base._derived(name, params, msg)
                except UnicodeEncodeError:
                    raise SignatureBaseError("not ASCII") from None
            else:
                value = rfc9421_base._field(name, params, msg.headers)
            if value.translate(None, rfc9421_base._VALUE_BYTES):
                raise SignatureBaseError("not printable")
            ident = rfc8941_item(name, params)
            lines.append(ident + b": " + value)
        else:
            lines.append(_reference_line(name, msg))
    lines.append(b'"@signature-params": ' + sig.params_value.encode("ascii"))
    return b"\n".join(lines)


def rfc8941_item(name: str, params: Any) -> bytes:
    return serialize_item(rfc8941.Item(name, params)).encode("ascii")


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except SignatureBaseError:
        return SignatureBaseError


_TEXT = st.text(
    st.one_of(
        st.sampled_from("aZ09-._~:/?#[]@!$&'()*+,;=%\t \x7f\x00\x1f"),
        st.characters(min_codepoint=0x80, max_codepoint=0x2FF),
    ),
    max_size=12,
)
_AUTHORITY = st.one_of(
    _TEXT,
    st.tuples(
        st.sampled_from(["Example.COM", "gw.test", "[::1]", "\u00e9.test", "a b"]),
        st.sampled_from(["", ":80", ":443", ":8080", ":"]),
    ).map("".join),
)
_MESSAGE = st.builds(
    Message,
    method=st.one_of(st.sampled_from(["GET", "get", "POST", "M\u00c9", "G T", "G\x01"]), _TEXT),
    scheme=st.sampled_from(["http", "https", "HTTPS", "ftp"]),
    authority=_AUTHORITY,
    path=st.one_of(st.just(""), _TEXT),
    query=st.binary(max_size=10),
    headers=st.just(((b"host", b"gw.test"), (b"x-a", b"1"), (b"x-b", b"\xff"))),
)
_BASE_ITEMS = ['"@method"', '"@authority"', '"@path"', '"@query"', '"@scheme"']
_BASE_ITEMS += ['"@target-uri"', '"@request-target"', '"x-a"', '"x-b"', '"host"', '"x-a";bs']


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_BASE_ITEMS), unique=True, max_size=6), _MESSAGE)
def test_the_base_equals_a_reference_built_without_the_fast_lines(
    items: list[str], msg: Message
) -> None:
    value = f'sig1=({" ".join(items)});created=1;nonce="n"'.encode()
    sig = parse_signature_input([value])["sig1"]
    expected = _outcome(_reference_base, sig, msg)
    assert _outcome(signature_base, sig, msg) == expected
    with _general_path_only():
        general = parse_signature_input([value])["sig1"]
    assert _outcome(signature_base, general, msg) == expected


@pytest.mark.parametrize(
    ("component", "msg"),
    [
        ("@query", Message("GET", "http", "gw.test", "/", b"a=\x01")),
        ("@query", Message("GET", "http", "gw.test", "/", b"a=\x7f")),
        ("@query", Message("GET", "http", "gw.test", "/", b"a=\xc3\xa9")),
        ("@query", Message("GET", "http", "gw.test", "/", b"a\nb")),
        ("@authority", Message("GET", "http", "\u00e9.test", "/")),
        ("@authority", Message("GET", "http", "gw.test\n", "/")),
        ("@authority", Message("GET", "http", "", "/")),
        ("@path", Message("GET", "http", "gw.test", "/\u00e9")),
        ("@path", Message("GET", "http", "gw.test", "/\xe9")),  # latin-1 of a raw byte
        ("@path", Message("GET", "http", "gw.test", "/a\r\nx: y")),
        ("@method", Message("G\u00c9T", "http", "gw.test", "/")),
        ("@method", Message("GE\x00T", "http", "gw.test", "/")),
    ],
)
def test_a_fast_line_refuses_what_cannot_be_a_base_line(component: str, msg: Message) -> None:
    sig = parse_signature_input([f'sig1=("{component}");created=1'.encode()])["sig1"]
    with pytest.raises(SignatureBaseError):
        signature_base(sig, msg)


def test_a_fast_line_keeps_a_tab_and_the_default_port_rules() -> None:
    sig = parse_signature_input([b'sig1=("@authority" "@query" "@path");created=1'])["sig1"]
    msg = Message("GET", "https", "GW.Test:443", "", b"a=\tb")
    assert signature_base(sig, msg).split(b"\n")[:3] == [
        b'"@authority": gw.test',
        b'"@query": ?a=\tb',
        b'"@path": /',
    ]
    other = Message("GET", "http", "GW.Test:443", "/p", b"")
    assert signature_base(sig, other).split(b"\n")[:3] == [
        b'"@authority": gw.test:443',
        b'"@query": ?',
        b'"@path": /p',
    ]


# --- 3./4. through the authenticator --------------------------------------------------------


class Apps:
    def __init__(self, *records: AppRecord) -> None:
        self.records = {r.key_id: r for r in records}

    async def get(self, key_id: str) -> AppRecord | None:
        return self.records.get(key_id)


class Nonces:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    async def use(self, key_id: str, nonce: str, expires_at: Any, now: Any) -> bool:
        fresh = (key_id, nonce) not in self.seen
        self.seen.add((key_id, nonce))
        return fresh


def _auth(apps: Apps) -> SignatureAuthenticator:
    return SignatureAuthenticator(
        AppCache(apps, SEALER, ttl=0), Nonces(), public_url="https://api.example.com"
    )


def _signed(
    components: str,
    app: AppRecord,
    key: bytes,
    *,
    body: bytes | None = None,
    sign_as: str | None = None,
    headers: tuple[tuple[bytes, bytes], ...] = ((b"host", b"gw.test"),),
) -> RequestView:
    """A request signed over ``components`` (the inner list's text); ``sign_as``: the text
    whose base is signed when ``components`` itself does not parse (the base it would have)."""
    nonce = secrets.token_urlsafe(9)
    params = f';created={CREATED};keyid="{app.key_id}";alg="hmac-sha256";nonce="{nonce}"'
    extra: tuple[tuple[bytes, bytes], ...] = ()
    if body:
        extra = ((b"content-digest", rfc9530.content_digest(body).encode()),)
    all_headers = (*headers, *extra)
    method = "POST" if body else "GET"
    msg = Message(method, "http", "gw.test", "/notes/1", b"", all_headers)
    member = f"({components}){params}"
    parsed = parse_signature_input([f"sig1=({sign_as or components}){params}".encode()])
    sig = parsed["sig1"]._replace(params_value=member)
    signature = rfc9421_algorithms.sign("hmac-sha256", key, signature_base(sig, msg))
    sig_headers = (
        (b"signature-input", f"sig1={member}".encode()),
        (b"signature", b"sig1=:" + base64.b64encode(signature) + b":"),
    )
    return RequestView(
        method,
        "/notes/1",
        headers=(*all_headers, *sig_headers),
        raw_path=b"/notes/1",
        body=body,
    )


async def _accepts(a: SignatureAuthenticator, view: RequestView) -> bool:
    credential = a.extract(view)
    assert credential is not None
    try:
        await a.authenticate(credential, AuthContext(T0, "c", view))
    except InvalidCredential:
        return False
    return True


PLAIN = '"@method" "@authority" "@path"'


async def test_a_signed_look_alike_list_is_refused_after_the_real_one_was_accepted() -> None:
    a = _auth(Apps(APP_A))
    real = PLAIN + ' "content-digest"'
    for _ in range(3):
        assert await _accepts(a, _signed(real, APP_A, KEY_A, body=b"{}"))
    # correctly signed, but content-digest an sf-token: refused however often the string was
    token = PLAIN + " content-digest"
    for _ in range(3):
        assert not await _accepts(a, _signed(token, APP_A, KEY_A, body=b"{}", sign_as=real))
    # a duplicate after the prefix was remembered
    for _ in range(3):
        view = _signed(PLAIN + ' "@method"', APP_A, KEY_A, sign_as=PLAIN)
        assert not await _accepts(a, view)
    assert await _accepts(a, _signed(PLAIN, APP_A, KEY_A))


async def test_a_parameterised_content_digest_does_not_cover_the_body() -> None:
    a = _auth(Apps(APP_A))
    assert await _accepts(a, _signed(PLAIN + ' "content-digest"', APP_A, KEY_A, body=b"{}"))
    for _ in range(2):
        view = _signed(PLAIN + ' "content-digest";sf', APP_A, KEY_A, body=b"{}")
        assert not await _accepts(a, view)


async def test_one_pass_fields_keep_host_and_line_rules() -> None:
    a = _auth(Apps(APP_A))
    assert await _accepts(a, _signed(PLAIN, APP_A, KEY_A))
    # two Host lines: no authority, so @authority cannot be rebuilt
    two_hosts = ((b"host", b"gw.test"), (b"host", b"gw.test"))
    assert not await _accepts(a, _signed(PLAIN, APP_A, KEY_A, headers=two_hosts))
    # a second Signature-Input line (a second label) without its Signature: refused; with a
    # Signature line of its own (that does not verify), the first label still wins
    view = _signed(PLAIN, APP_A, KEY_A)
    sig_input = next(v for k, v in view.headers if k == b"signature-input")
    signature = next(v for k, v in view.headers if k == b"signature")
    second = (b"signature-input", b'sig2=("@method");created=1')
    without = (*view.headers, second)
    assert not await _accepts(a, view._replace(headers=without))
    both = (
        (b"host", b"gw.test"),
        (b"signature-input", sig_input),
        (b"signature", b"sig2=:AAAA:"),
        second,
        (b"signature", signature),
    )
    assert await _accepts(a, view._replace(headers=both))


async def test_two_apps_interleaved_and_forged_signatures() -> None:
    a = _auth(Apps(APP_A, APP_B))
    for i in range(6):
        assert await _accepts(a, _signed(PLAIN, APP_A, KEY_A))
        # B's key id with A's secret, and A's with B's
        assert not await _accepts(a, _signed(PLAIN, APP_B, KEY_A))
        assert not await _accepts(a, _signed(PLAIN, APP_A, KEY_B))
        assert await _accepts(a, _signed(PLAIN, APP_B, KEY_B))
        if i % 2:  # a signature that is a prefix / the empty signature
            view = _signed(PLAIN, APP_A, KEY_A)
            headers = tuple((k, b"sig1=::" if k == b"signature" else v) for k, v in view.headers)
            assert not await _accepts(a, view._replace(headers=headers))


async def test_a_rekeyed_or_revoked_record_stops_its_cached_key_at_once() -> None:
    apps = Apps(APP_A)
    a = _auth(apps)  # (ttl 0: every request reads the record again)
    assert await _accepts(a, _signed(PLAIN, APP_A, KEY_A))
    # the same key id, another secret (what a restore or a re-seal of the store would do)
    other, other_key = _new_app("billing")
    sealed = SEALER.seal(other_key, secret_purpose(APP_A.key_id))
    apps.records[APP_A.key_id] = dataclasses.replace(APP_A, sealed_secret=sealed)
    assert not await _accepts(a, _signed(PLAIN, APP_A, KEY_A))
    assert await _accepts(a, _signed(PLAIN, APP_A, other_key))
    apps.records[APP_A.key_id] = dataclasses.replace(apps.records[APP_A.key_id], revoked_at=T0)
    assert not await _accepts(a, _signed(PLAIN, APP_A, other_key))
    assert other.key_id != APP_A.key_id


# --- 4. HmacSha256Key --------------------------------------------------------------------------


def test_the_keyed_state_never_carries_over_between_verifications() -> None:
    ka, kb = HmacSha256Key(KEY_A), HmacSha256Key(KEY_B)
    bases = [b"", b'"@method": GET', b"x" * 200, b"\x00" * 64]
    for base in bases * 3:
        good_a = rfc9421_algorithms.sign("hmac-sha256", KEY_A, base)
        good_b = rfc9421_algorithms.sign("hmac-sha256", KEY_B, base)
        for key, good, bad in ((ka, good_a, good_b), (kb, good_b, good_a)):
            with pytest.raises(SignatureInvalid):
                verify_hmac_sha256(key, base, bad)  # wrong, then right
            verify_hmac_sha256(key, base, good)
            verify_hmac_sha256(key, base, good)  # right twice
            for forged in (bad, good[:-1], good + b"\x00", b"", bytes(32)):
                with pytest.raises(SignatureInvalid):
                    verify_hmac_sha256(key, base, forged)
        # a base that extends the last one verified is not taken for it
        with pytest.raises(SignatureInvalid):
            verify_hmac_sha256(ka, base + b"!", good_a)


def test_the_key_made_for_a_record_is_that_records_secret_and_hides_it() -> None:
    key = verification_key(APP_A, SEALER)
    assert type(key) is HmacSha256Key
    assert KEY_A.hex() not in repr(key) and str(KEY_A) not in repr(key)
    assert not hasattr(key, "__dict__")
    base = b'"@method": GET'
    verify_hmac_sha256(key, base, rfc9421_algorithms.sign("hmac-sha256", KEY_A, base))
    with pytest.raises(SignatureInvalid):
        verify_hmac_sha256(key, base, rfc9421_algorithms.sign("hmac-sha256", KEY_B, base))
    with pytest.raises(ValueError):
        HmacSha256Key(b"")


def test_concurrent_verifications_with_shared_keys_from_threads() -> None:
    keys = {b"a": HmacSha256Key(KEY_A), b"b": HmacSha256Key(KEY_B)}
    secrets_ = {b"a": KEY_A, b"b": KEY_B}
    wrong: list[str] = []
    barrier = threading.Barrier(8)

    def work(seed: int) -> None:
        barrier.wait()
        for i in range(300):
            base = b"base %d %d" % (seed, i)
            who = b"ab"[(seed + i) % 2 : (seed + i) % 2 + 1]
            other = b"b" if who == b"a" else b"a"
            good = rfc9421_algorithms.sign("hmac-sha256", secrets_[who], base)
            bad = rfc9421_algorithms.sign("hmac-sha256", secrets_[other], base)
            try:
                verify_hmac_sha256(keys[who], base, good)
            except SignatureInvalid:
                wrong.append(f"refused good {seed} {i}")
            try:
                verify_hmac_sha256(keys[who], base, bad)
                wrong.append(f"accepted bad {seed} {i}")
            except SignatureInvalid:
                pass

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_a_token_is_never_a_plain_component_even_from_the_fast_items() -> None:
    """The fast path only ever hands out sf-strings: no Token among its remembered items."""
    parse_signature_input([b'sig1=("@method" "x-a");created=1'])
    with pytest.raises(StructuredFieldError):
        parse_signature_input([b'sig1=("@method" x-a);created=1'])
    for items in rfc8941._FAST_ITEMS.values():
        assert all(type(name) is str and params == () for name, params in items)
    assert not any(
        type(name) is Token for items, _ in rfc9421._COMPONENTS.values() for name, _p in items
    )


def test_parsing_from_threads_while_the_memos_churn() -> None:
    """Threads parse accepted and refused lists while others fill (and so clear) the memos:
    no answer changes (a refused list is never let through by a half-updated memo)."""
    good = b'sig1=("@method" "@authority" "@path");created=1'
    bad = b'sig1=("@method" "@authority" "@method");created=1'
    token = b'sig1=("@method" "@authority" content-digest);created=1'
    expected = _answer(good)
    wrong: list[str] = []
    barrier = threading.Barrier(6)

    def check(seed: int) -> None:
        barrier.wait()
        for i in range(400):
            if _answer(good) != expected:
                wrong.append(f"good {seed} {i}")
            for refused in (bad, token):
                if _answer(refused)[0] != "refused":
                    wrong.append(f"accepted {refused!r} {seed} {i}")

    def churn(seed: int) -> None:
        barrier.wait()
        for i in range(1500):
            parse_signature_input([b'sig1=("@method" "y-%d-%d");created=1' % (seed, i)])

    threads = [threading.Thread(target=check, args=(s,)) for s in range(4)]
    threads += [threading.Thread(target=churn, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


async def test_behind_a_trusted_proxy_the_host_field_is_not_the_authority() -> None:
    """``_fields`` reads Host for every request; behind a trusted proxy it must still not be
    what ``@authority`` is (the configured public authority is)."""
    a = _auth(Apps(APP_A))
    public = Message("GET", "https", "api.example.com", "/notes/1", b"")
    spoofed = Message("GET", "http", "gw.test", "/notes/1", b"")
    for msg, accepted in ((public, True), (spoofed, False)):
        nonce = secrets.token_urlsafe(9)
        sig_input, signature = rfc9421_algorithms.sign_request(
            msg,
            keyid=APP_A.key_id,
            alg="hmac-sha256",
            key=KEY_A,
            components=("@method", "@authority", "@path"),
            created=CREATED,
            nonce=nonce,
        )
        view = RequestView(
            "GET",
            "/notes/1",
            headers=(
                (b"host", b"gw.test"),
                (b"signature-input", sig_input),
                (b"signature", signature),
            ),
            raw_path=b"/notes/1",
            via_trusted_proxy=True,
        )
        assert await _accepts(a, view) is accepted
