"""PKCE (RFC 7636), S256 only: what a challenge and a verifier look like, and the check.

RFC 7636 §4.1: ``code_verifier = 43*128unreserved`` (``[A-Za-z0-9-._~]``). §4.2: ``S256``'s
challenge is ``BASE64URL(SHA256(ASCII(code_verifier)))``, 43 characters without padding. The
``plain`` method is refused (RFC 9700 §2.1.1: it protects nothing against an eavesdropper of
the authorization request).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

METHOD: Final = "S256"
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")  # 256 bits: last char 2 bits


def is_verifier(text: str) -> bool:
    return _VERIFIER.fullmatch(text) is not None


def is_challenge(text: str) -> bool:
    """Whether ``text`` is an S256 challenge: the base64url of exactly 32 bytes."""
    return _CHALLENGE.fullmatch(text) is not None


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6, compared in constant time; False for a malformed verifier."""
    if not is_verifier(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
