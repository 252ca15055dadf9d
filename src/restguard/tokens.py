"""How restguard's own credentials look in text: to refuse them where they must never be (a
URL's query) and to redact them wherever something is logged.

Every secret restguard issues starts with ``rg_`` and two letters naming its kind (``rg_ak_`` API
key; later kinds add their prefix to ``PREFIXES``), which is also what lets secret scanners find
leaked ones. Redaction matches the whole ``rg_xx_`` family, so a kind added later is redacted
from day one; ``_`` may also be written ``%5F`` in a URL. Both matches look everywhere, glued to
other characters too (``/x%2Frg_ak_...``, ``?q=Xrg_ak_...``): a stray redaction costs nothing,
a missed secret is a leak.
"""

from __future__ import annotations

import re

PREFIXES = ("rg_ak_",)
# Query parameter names clients commonly put API keys in.
QUERY_NAMES = frozenset({"api_key", "apikey", "api-key", "x-api-key"})

_US = r"(?:_|%5[Ff])"
_ANY = re.compile(rf"rg{_US}[a-z]{{2}}{_US}(?!\[redacted\])[A-Za-z0-9_%]*")
_ISSUED = re.compile("|".join(re.escape(p).replace("_", _US) for p in PREFIXES))


def contains_credential(text: str) -> bool:
    """True when ``text`` holds something with one of restguard's credential prefixes."""
    return _ISSUED.search(text) is not None


_ENCODED = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else match.group(0)


def redact(text: str) -> str:
    """``text`` with every ``rg_xx_...`` token replaced by ``rg_xx_[redacted]``; percent-encoded
    letters, digits and ``_`` are decoded first (``%72g_ak_...`` is a key too)."""
    if "%" in text:
        text = _ENCODED.sub(_unreserved, text)
    if "rg" not in text:
        return text
    return _ANY.sub(lambda m: m.group(0)[:2] + "_" + _kind(m.group(0)) + "_[redacted]", text)


def _kind(token: str) -> str:
    rest = token[2:]
    rest = rest[1:] if rest.startswith("_") else rest[3:]
    return rest[:2]
