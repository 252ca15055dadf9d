"""Sealed values the browser carries: they round-trip, expire, and never pass for another
purpose, another key, or after any change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restguard.keys.sealing import Sealer
from restguard.oauth2.web_tokens import MAX_CHARS, WebTokenInvalid, WebTokens
from tests.unit.fakes import T0

WEB = WebTokens(Sealer(b"k" * 32))


def test_round_trip_until_expiry() -> None:
    token = WEB.make("session", {"u": "rg_us_1", "s": "n"}, T0, 60)
    assert WEB.open("session", token, T0 + timedelta(seconds=59)) == {"u": "rg_us_1", "s": "n"}
    with pytest.raises(WebTokenInvalid):
        WEB.open("session", token, T0 + timedelta(seconds=60))


def test_bound_to_purpose_and_key() -> None:
    token = WEB.make("csrf", {"b": "x"}, T0, 60)
    with pytest.raises(WebTokenInvalid):
        WEB.open("session", token, T0)
    with pytest.raises(WebTokenInvalid):
        WebTokens(Sealer(b"o" * 32)).open("csrf", token, T0)
    assert WEB.open("csrf", token, T0) == {"b": "x"}


@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_change_is_refused(position: int, flip: int) -> None:
    token = WEB.make("request", {"c": "client"}, T0, 60)
    i = position % len(token)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    changed = token[:i] + alphabet[(alphabet.index(token[i]) + flip) % 64] + token[i + 1 :]
    if changed == token:
        return
    with pytest.raises(WebTokenInvalid):
        WEB.open("request", changed, T0)


@pytest.mark.parametrize("junk", ["", "x", "é" * 10, "A" * (MAX_CHARS + 1), "a.b.c", "===="])
def test_junk_is_refused(junk: str) -> None:
    with pytest.raises(WebTokenInvalid):
        WEB.open("request", junk, T0)
