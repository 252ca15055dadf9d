"""The one documented choice for secrets that only need checking.

API keys carry 256 bits of randomness, so a slow password hash buys nothing against guessing and
would cost milliseconds on every cache miss: they are stored as SHA-256 digests and compared in
constant time (the approach GitHub and Stripe document for high-entropy tokens). Low-entropy
secrets (user passwords) get a slow KDF instead: Argon2id, in ``oauth2/users.py``.
"""

from __future__ import annotations

import hashlib
import hmac


def token_digest(token: str) -> bytes:
    """SHA-256 of a high-entropy token, as stored."""
    return hashlib.sha256(token.encode("ascii")).digest()


def digest_matches(token: str, stored: bytes) -> bool:
    """Constant-time check of ``token`` against a stored digest."""
    return hmac.compare_digest(token_digest(token), stored)
