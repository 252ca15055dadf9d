"""Device codes and user codes of the device authorization grant (RFC 8628 §3.2, §6.1).

The device code is a bearer secret the client polls with: ``rg_dc_`` and 43 base62 characters
(256 bits) from ``secrets``, stored only as SHA-256 (§5.2: "the device code ... SHOULD have
enough entropy"; restguard's tokens carry their type). The user code is what a person types:
RFC 8628 §6.1's example of 8 characters from the 20 consonants ``BCDFGHJKLMNPQRSTVWXZ``
(20^8 = 2^34.5, no vowels so no words, no digits to mistake for letters), shown as two
halves joined by a dash (``BCDF-GHJK``). As §6.1 advises, what the user types is compared
case-insensitively and with punctuation and spaces (the dash) ignored; the limit on attempts
(§5.1) is the pages' job.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Final

DEVICE_PREFIX: Final = "rg_dc_"
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DEVICE_FORM: Final = re.compile(r"rg_dc_[0-9A-Za-z]{43}")

#: RFC 8628 §6.1: "base-20 character set [BCDFGHJKLMNPQRSTVWXZ]", 8 characters.
USER_CODE_ALPHABET: Final = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH: Final = 8
#: Input longer than this is not a user code, whatever it holds (checked before normalising).
MAX_USER_CODE_INPUT: Final = 64

#: RFC 8628 §3.2 ``expires_in``: how long the user has to approve.
LIFETIME: Final = timedelta(seconds=600)
#: RFC 8628 §3.2 ``interval``: "If no value is provided, clients MUST use 5 as the default."
INTERVAL: Final = 5
#: RFC 8628 §3.5 ``slow_down``: "the interval MUST be increased by 5 seconds".
SLOW_DOWN_STEP: Final = 5


def new_device_code() -> str:
    return DEVICE_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(43))


def is_device_code(text: str) -> bool:
    return _DEVICE_FORM.fullmatch(text) is not None


def new_user_code() -> str:
    """A fresh user code in its normalised (stored) form: 8 letters, no dash."""
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def display(user_code: str) -> str:
    """How the device shows the code, two halves and a dash (``BCDFGHJK`` -> ``BCDF-GHJK``,
    RFC 8628 §6.1)."""
    half = len(user_code) // 2
    return f"{user_code[:half]}-{user_code[half:]}"


def normalise(entered: str) -> str | None:
    """The user code ``entered`` names, in stored form, or None if it cannot be one.

    Upper-cased; ASCII punctuation and whitespace (a dash, spaces) ignored; a letter or digit
    outside the alphabet, anything not ASCII, or the wrong length is not a user code."""
    if len(entered) > MAX_USER_CODE_INPUT or not entered.isascii():
        return None
    kept = "".join(c for c in entered.upper() if c.isalnum())
    if len(kept) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in kept):
        return None
    return kept
