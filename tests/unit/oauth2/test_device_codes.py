"""oauth2/device_codes.py: RFC 8628 §6.1 user codes (alphabet, length, shown as XXXX-XXXX,
read back whatever the case, dashes and spaces) and §5.2 device codes (256 bits, typed)."""

from __future__ import annotations

import math

import pytest

from restguard.oauth2.device_codes import (
    USER_CODE_ALPHABET,
    display,
    is_device_code,
    new_device_code,
    new_user_code,
    normalise,
)


def test_the_alphabet_is_rfc_8628s_twenty_consonants() -> None:
    assert USER_CODE_ALPHABET == "BCDFGHJKLMNPQRSTVWXZ"
    assert not set(USER_CODE_ALPHABET) & set("AEIOUY0123456789")


def test_user_codes_are_eight_letters_of_the_alphabet_with_34_bits() -> None:
    codes = {new_user_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == 8 and set(c) <= set(USER_CODE_ALPHABET) for c in codes)
    assert set("".join(codes)) == set(USER_CODE_ALPHABET)  # every letter is drawn
    assert math.log2(len(USER_CODE_ALPHABET) ** 8) > 34


def test_shown_as_two_groups_of_four() -> None:
    assert display("WDJBMJHT") == "WDJB-MJHT"


@pytest.mark.parametrize(
    "typed",
    [
        "WDJB-MJHT",
        "wdjb-mjht",
        "WDJBMJHT",
        " wdjb mjht ",
        "WdJb MjHt",
        "W-D-J-B-M-J-H-T",
    ],
)
def test_typing_is_forgiving(typed: str) -> None:
    assert normalise(typed) == "WDJBMJHT"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "WDJB-MJH",  # too short
        "WDJB-MJHTT",  # too long
        "WDJA-MJHT",  # a vowel: not in the alphabet
        "WDJ0-MJHT",  # a digit
        "WDJB\u2013MJHT",  # not ASCII (an en dash)
        "\uff37DJBMJHT",  # a fullwidth W
        "W" * 65,
        "WDJB-MJHT" + " " * 60,  # long input is refused before normalising
    ],
)
def test_anything_else_is_not_a_user_code(typed: str) -> None:
    assert normalise(typed) is None


def test_device_codes_are_typed_and_carry_256_bits() -> None:
    code = new_device_code()
    assert code.startswith("rg_dc_") and len(code) == 6 + 43 and is_device_code(code)
    assert 43 * math.log2(62) >= 256
    assert new_device_code() != code
    assert not is_device_code(code + "x") and not is_device_code("rg_ac_" + code[6:])
