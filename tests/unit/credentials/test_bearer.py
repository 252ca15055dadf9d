"""``bearer_token`` keeps its answer for the last header tuple: it must answer every request
exactly as a fresh read of that request's headers would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restguard.credentials import bearer
from restguard.errors import InvalidRequest
from restguard.types import RequestView

_VALUES = st.sampled_from(
    [b"Bearer abc", b"bearer  x.y.z ", b"Basic dTpw", b"Bearer\tt", b"Token k", b"", b"Bearer"]
)
_HEADERS = st.lists(
    st.tuples(st.sampled_from([b"authorization", b"host", b"x-api-key"]), _VALUES), max_size=3
)


def _view(headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]]) -> RequestView:
    return RequestView(method="GET", path="/", headers=headers)


def _fresh(headers: list[tuple[bytes, bytes]]) -> bytes | type[InvalidRequest] | None:
    try:
        return bearer._bearer_token(headers)
    except InvalidRequest:
        return InvalidRequest


@given(st.lists(st.tuples(_HEADERS, st.integers(0, 2)), min_size=1, max_size=8))
def test_every_answer_is_the_fresh_reading(calls: list[tuple[list, int]]) -> None:
    """Requests one after another, some asked about twice or three times in a row (as the
    guard's authenticators do), some with equal but distinct header tuples."""
    for headers, repeat in calls:
        view = _view(tuple(headers))
        for _ in range(repeat + 1):
            expected = _fresh(headers)
            if expected is InvalidRequest:
                with pytest.raises(InvalidRequest):
                    bearer.bearer_token(view)
            else:
                assert bearer.bearer_token(view) == expected


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
