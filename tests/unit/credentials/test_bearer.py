"""``bearer_token`` and ``jws_bearer_token`` keep their answer for the last header tuple: they
must answer every request exactly as a fresh read of that request's headers would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restguard.credentials import bearer
from restguard.errors import InvalidRequest
from restguard.types import RequestView

_VALUES = st.sampled_from(
    [
        b"Bearer abc",
        b"bearer  x.y.z ",
        b"Basic dTpw",
        b"Bearer\tt",
        b"Token k",
        b"",
        b"Bearer",
        b"Bearer a.b.c",
        b"Bearer a.b.c.d",
        b"Bearer a..c",
        b"Bearer rg_a.b.c",
        b"Basic a.b.c",
        b"Bearer\ta.b.c",
        b"BEARER a.b.c",
        b"Bearer a.b.c ",
        b"Bearer a.b.c\t",
        b"Bearer a.b.",
        b"Basic  a.b.c",
    ]
)
_HEADERS = st.lists(
    st.tuples(st.sampled_from([b"authorization", b"host", b"x-api-key"]), _VALUES), max_size=3
)


def _view(headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]]) -> RequestView:
    return RequestView(method="GET", path="/", headers=headers)


def _fresh(headers: list[tuple[bytes, bytes]]) -> bytes | type[InvalidRequest] | None:
    try:
        auth = bearer._authorization(headers)  # (read afresh: no memo)
        return None if auth is None else bearer._scheme_token(auth)
    except InvalidRequest:
        return InvalidRequest


def _fresh_jws(token: bytes | type[InvalidRequest] | None) -> bytes | None:
    """A JWS compact serialisation: three non-empty base64url parts (RFC 7515 §7.1), read
    here without the module's pattern."""
    if not isinstance(token, bytes):
        return None
    parts = token.split(b".")
    alphabet = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    shaped = len(parts) == 3 and all(part and set(part) <= alphabet for part in parts)
    return token if shaped else None


@given(st.lists(st.tuples(_HEADERS, st.integers(0, 2)), min_size=1, max_size=8))
def test_every_answer_is_the_fresh_reading(calls: list[tuple[list, int]]) -> None:
    """Requests one after another, some asked about twice or three times in a row (as the
    guard's authenticators do), some with equal but distinct header tuples."""
    for headers, repeat in calls:
        view = _view(tuple(headers))
        for i in range(repeat + 1):
            expected = _fresh(headers)
            if expected is InvalidRequest:
                with pytest.raises(InvalidRequest):
                    bearer.bearer_token(view)
                with pytest.raises(InvalidRequest):
                    bearer.jws_bearer_token(view)
            elif i % 2:  # (either may be asked first)
                assert bearer.jws_bearer_token(view) == _fresh_jws(expected)
                assert bearer.bearer_token(view) == expected
            else:
                assert bearer.bearer_token(view) == expected
                assert bearer.jws_bearer_token(view) == _fresh_jws(expected)


def test_a_header_list_is_read_again_each_time() -> None:
    """A list can change between two calls: its answer is never kept."""
    headers = [(b"authorization", b"Bearer first")]
    view = _view(headers)
    assert bearer.bearer_token(view) == b"first"
    headers[0] = (b"authorization", b"Bearer second")
    assert bearer.bearer_token(view) == b"second"


def test_no_headers_after_a_token() -> None:
    assert bearer.bearer_token(_view(((b"authorization", b"Bearer t"),))) == b"t"
    assert bearer.bearer_token(_view(())) is None


def test_the_answers_kept_across_requests_stay_bounded() -> None:
    """Every distinct JWS-shaped value is kept (an attacker's stream of new tokens too): never
    more than ``_KEPT`` of them, and never a value longer than ``_KEPT_BYTES``; each answer is
    still the fresh reading."""
    for i in range(bearer._KEPT * 2 + 3):
        token = b"a.b." + str(i).encode()
        view = _view(((b"authorization", b"Bearer " + token),))
        assert bearer.jws_bearer_token(view) == token
        assert len(bearer._BY_VALUE) <= bearer._KEPT
    long = b"a.b." + b"c" * bearer._KEPT_BYTES
    assert bearer.jws_bearer_token(_view(((b"authorization", b"Bearer " + long),))) == long
    assert b"Bearer " + long not in bearer._BY_VALUE
