"""tokens.py: restguard's credential prefixes, found in text and redacted from what is logged."""

from __future__ import annotations

import base64
import re
import zlib
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restguard.credentials.apikey import generate_key
from restguard.tokens import (
    BASE62,
    PREFIXES,
    QUERY_NAMES,
    carries_credential,
    checksum62,
    contains_credential,
    may_carry,
    redact,
)


def key() -> str:
    return generate_key()[1]


def test_prefixes_and_query_names() -> None:
    from restguard.credentials.opaque_tokens import new_token
    from restguard.oauth2.clients import new_client_secret
    from restguard.oauth2.refresh_tokens import new_token as new_refresh_token

    assert generate_key()[1].startswith(PREFIXES)
    # every secret restguard issues is refused in a URL and found by scanners
    for issued in (new_client_secret(), new_token(), new_refresh_token()):
        assert issued.startswith(PREFIXES) and contains_credential("/x?t=" + issued)
    assert {"api_key", "apikey", "api-key", "x-api-key"} <= QUERY_NAMES


# --- contains_credential --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{k}",
        "rg_ak_",
        "a={k}",
        "a {k} b",
        "/notes/{k}",
        "_{k}",
        "%{k}",
        "x=rg%5Fak%5Fabc",
        "x=rg%5fak%5fabc",
        "x=rg_ak%5Fabc",
        "x=rg%5Fak_abc",
    ],
)
def test_contains_credential(template: str) -> None:
    assert contains_credential(template.format(k=key()))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "rg",
        "rg_",
        "rg_ak",
        "rg-ak-abc",
        "rg__ak_",
        "rg_ac_abc",  # an authorization code travels in a redirect's query: not refused
        "rg%2Fak%2Fabc",
        "organisation",
        "ak_rg_",
    ],
)
def test_does_not_contain_credential(text: str) -> None:
    assert not contains_credential(text)


# --- redact ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{k}", "rg_ak_[redacted]"),
        ("/notes/{k}", "/notes/rg_ak_[redacted]"),
        ("/notes/{k}/x", "/notes/rg_ak_[redacted]/x"),
        ("a={k}&b=1", "a=rg_ak_[redacted]&b=1"),
        ("no route for GET /a/{k}", "no route for GET /a/rg_ak_[redacted]"),
        ("{k} {k}", "rg_ak_[redacted] rg_ak_[redacted]"),
        ("{k_5f}", "rg_ak_[redacted]"),
        ("/x/{k_5f_lower}.json", "/x/rg_ak_[redacted].json"),
        # the whole rg_xx_ family: a kind added later is redacted from day one
        ("t=rg_xy_SECRET", "t=rg_xy_[redacted]"),
        ("t=rg%5Fzz%5FSECRET", "t=rg_zz_[redacted]"),
        ("rg_ak_", "rg_ak_[redacted]"),
    ],
)
def test_redact(template: str, expected: str) -> None:
    k = key()
    text = template.format(k=k, k_5f=k.replace("_", "%5F"), k_5f_lower=k.replace("_", "%5f"))
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text", ["", "/notes/7", "rg", "rg_", "organisation", "rg-ak-x", "/rg/ak/x", "/a%20b"]
)
def test_redact_leaves_other_text_alone(text: str) -> None:
    assert redact(text) == text


_SPELLING = st.sampled_from(["_", "%5F", "%5f"])
# What may follow a key without continuing it (a token runs over letters, digits, "_" and "%").
_AFTER = st.text(
    alphabet=st.characters(blacklist_categories=["L", "N"], blacklist_characters="_%"),
    max_size=10,
)


@given(st.text(max_size=20), _SPELLING, _AFTER)
def test_redact_never_leaves_a_secret(before: str, underscore: str, after: str) -> None:
    k = key()
    secret = k.rsplit("_", 1)[1]
    text = before + k.replace("_", underscore) + after
    out = redact(text)
    assert secret not in out
    assert out.endswith("_[redacted]" + after)
    assert contains_credential(text)


@given(st.text(alphabet=st.characters(blacklist_characters="rR%"), max_size=40))
def test_redact_is_the_identity_on_text_without_rg(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "spelling",
    ["RG_AK_{s}", "%72g%5Fak%5F{s}", "%252F%72g_ak_{s}", "rg%255Fak%255F{s}", "%52G_aK_{s}"],
)
def test_redaction_sees_through_case_and_percent_encodings(spelling: str) -> None:
    # (keys are lower-case, but a stray redaction costs nothing and a missed secret leaks)
    secret = "SeCrEt0123456789"
    out = redact("/notes/" + spelling.format(s=secret))
    assert secret not in out and "[redacted]" in out


@pytest.mark.parametrize(
    "before", ["/notes/Bearer%20", "/s/q%3D", "/x%2F", "/x/key", "t=x", "9", "org"]
)
def test_a_key_glued_to_the_preceding_text_is_still_found_and_redacted(before: str) -> None:
    # e.g. a kept percent-encoding (%20, %3D) right before the key in a logged path
    k = key()
    # where a key is found behind encodings, the decoded text is what is logged
    assert redact(before + k) == unquote(before) + "rg_ak_[redacted]"
    assert contains_credential(before + k)


# What may_carry must find: the case-insensitive search it replaced (ten times slower on a JWT).
_MAY_CARRY_SPEC = re.compile(rb"(?i)rg|%|^[ \t]*basic")


@given(st.binary(max_size=64) | st.sampled_from([b"Rg", b" \tBaSiC x", b"x%", b"\tbasic"]))
def test_may_carry_finds_what_the_pattern_finds(value: bytes) -> None:
    assert may_carry(value) == bool(_MAY_CARRY_SPEC.search(value))


_KEY = generate_key()[1]
_CARRIED = [
    _KEY.encode(),
    _KEY.upper().encode(),
    _KEY.replace("_", "%5F").encode(),
    b"Basic " + base64.b64encode(_KEY.encode() + b":"),
    b" \tbasic " + base64.b64encode(b"user:" + _KEY.encode()),
]


@given(st.binary(max_size=16), st.sampled_from(_CARRIED), st.binary(max_size=16))
def test_every_value_carrying_a_credential_is_looked_at(
    before: bytes, carried: bytes, after: bytes
) -> None:
    """The cheap pre-check never hides a credential from the full one."""
    for value in (before + carried + after, carried + after):
        if carries_credential(value):
            assert may_carry(value)
    assert carries_credential(carried)


def test_a_basic_credential_after_any_whitespace_is_looked_at() -> None:
    # found by the property above: carries_credential strips every kind of whitespace
    value = b"\nBasic " + base64.b64encode(b"user:" + _KEY.encode())
    assert carries_credential(value) and may_carry(value)


def _base62_reference(value: int, width: int) -> str:
    """Base62, one digit at a time (how the checksum was written before ``checksum62``)."""
    out = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        out.append(BASE62[rem])
    return "".join(reversed(out))


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_checksum62_is_the_crc32_in_six_base62_digits(body: str) -> None:
    assert checksum62(body) == _base62_reference(zlib.crc32(body.encode("ascii")), 6)


@pytest.mark.parametrize("crc", [0, 61, 62, 3843, 3844, 3844**2, 2**32 - 1])
def test_checksum62_at_the_digit_boundaries(crc: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zlib, "crc32", lambda data: crc)
    assert checksum62("x") == _base62_reference(crc, 6)
