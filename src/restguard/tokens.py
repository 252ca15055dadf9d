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

import base64
import re
import secrets
import zlib
from urllib.parse import unquote

# API keys, client secrets, opaque access tokens, refresh tokens. (Authorization codes,
# ``rg_ac_``, are not refused: they travel in the query of the redirect to the client, which
# may itself sit behind this gateway; they are single-use, PKCE-bound and live a minute.)
PREFIXES = ("rg_ak_", "rg_cs_", "rg_at_", "rg_rt_")
# Query parameter names clients commonly put API keys in.
QUERY_NAMES = frozenset({"api_key", "apikey", "api-key", "x-api-key"})

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def random_base62(length: int) -> str:
    """``length`` characters from ``secrets`` over ``BASE62`` (5.95 bits each: 43 make 256)."""
    return "".join(secrets.choice(BASE62) for _ in range(length))


CHECKSUM_CHARS = 6
_PAIRS = tuple(a + b for a in BASE62 for b in BASE62)  # every 2-digit base62 numeral, in order


def checksum62(body: str) -> str:
    """The CRC32 of ``body`` as 6 base62 digits, most significant first (API keys and opaque
    access tokens end with it, so secret scanners, and restguard before any look-up, can tell
    a well-formed one from a typo). Two digits at a time: it runs on every keyed request."""
    high, rest = divmod(zlib.crc32(body.encode("ascii")), 3844 * 3844)  # (62**2 = 3844)
    mid, low = divmod(rest, 3844)
    return _PAIRS[high] + _PAIRS[mid] + _PAIRS[low]


_US = r"(?:_|%5[Ff])"
_ANY = re.compile(rf"(?i)rg{_US}[a-z]{{2}}{_US}(?!\[redacted\])[A-Za-z0-9_%]*")
_ISSUED = re.compile("(?i)" + "|".join(re.escape(p).replace("_", _US) for p in PREFIXES))
_BASIC = re.compile(rb"(?i)basic[ \t]+([A-Za-z0-9+/=_-]+)")


def may_carry(value: bytes) -> bool:
    """Whether a header value is worth ``carries_credential``'s closer look: it holds ``rg``
    in any case, a ``%``, or starts with ``Basic``. A few C-level scans: a case-insensitive
    regex search would be ten times slower on a long value (a JWT), and this runs per header."""
    low = value.lower()
    return b"rg" in low or b"%" in value or low.lstrip().startswith(b"basic")


def contains_credential(text: str) -> bool:
    """True when ``text`` holds something with one of restguard's credential prefixes."""
    return _ISSUED.search(text) is not None


def carries_credential(value: bytes) -> bool:
    """Whether a header value holds a restguard credential: anywhere in it, percent-encoded,
    or inside HTTP Basic credentials (``Basic base64(key:)``)."""
    if contains_credential(_decoded(value.decode("latin-1"))):
        return True
    m = _BASIC.match(value.strip())
    if m is None:
        return False
    try:
        decoded = base64.b64decode(m.group(1) + b"==", validate=False)
    except ValueError:
        return False
    return contains_credential(decoded.decode("latin-1"))


def _decoded(text: str) -> str:
    """``text`` percent-decoded until it stops changing (double encodings too), at most 3 times."""
    for _ in range(3):
        if "%" not in text:
            break
        decoded = unquote(text, errors="replace")
        if decoded == text:
            break
        text = decoded
    return text


def redact(text: str) -> str:
    """``text`` with every ``rg_xx_...`` token replaced by ``rg_xx_[redacted]``, found also
    behind percent-encodings (``%72g%5Fak_...``, double encodings): where one is, the decoded
    text is what is kept."""
    if "%" in text:
        decoded = _decoded(text)
        if _ANY.search(decoded):
            text = decoded
    if "rg" not in text.lower():
        return text
    return _ANY.sub(lambda m: m.group(0)[:2] + "_" + _kind(m.group(0)) + "_[redacted]", text)


_SECRET_KINDS = frozenset(p[3:5] for p in PREFIXES)


def redact_secrets(text: str) -> str:
    """``redact`` for text that names public ids (``rg_ci_...`` clients, ``rg_us_...`` users):
    only tokens of the kinds that are secrets (``PREFIXES``) are replaced. Where a
    percent-encoding is, everything is redacted as by ``redact``."""
    if "%" in text:
        return redact(text)
    return _ANY.sub(
        lambda m: (
            m.group(0)[:2] + "_" + _kind(m.group(0)) + "_[redacted]"
            if _kind(m.group(0)) in _SECRET_KINDS
            else m.group(0)
        ),
        text,
    )


def _kind(token: str) -> str:
    rest = token[2:]
    rest = rest[1:] if rest.startswith("_") else rest[3:]
    return rest[:2].lower()
