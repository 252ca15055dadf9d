"""OAuth 2.0 clients: identifiers, secrets, and the checks ``oauth2 client create`` applies.

* ``client_id``: ``rg_ci_`` and 16 characters of ``[0-9a-z]``: public (it appears in logs, URLs
  and tokens), unguessable enough that ids cannot be enumerated.
* ``client_secret``: ``rg_cs_`` and 43 base62 characters from ``secrets`` (256 bits), shown
  once. Only its SHA-256 is stored: with that much entropy a slow password hash adds latency
  and no safety (Hydra's bcrypt caps it near 400 grants/s). Checked in constant time. The
  ``rg_cs_`` prefix lets secret scanners and restguard's own redaction find a leaked one.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Final

from restguard.keys.hashing import digest_matches
from restguard.store.ports import OAuthClientRecord

ID_PREFIX: Final = "rg_ci_"
SECRET_PREFIX: Final = "rg_cs_"  # noqa: S105 (a public marker, not a secret)
GRANTS: Final = ("authorization_code", "client_credentials", "refresh_token", "device_code")
TOKEN_FORMATS: Final = ("jwt", "opaque")
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_client_id() -> str:
    return ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def new_client_secret() -> str:
    return SECRET_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(43))


def secret_matches(record: OAuthClientRecord, secret: str) -> bool:
    """Whether ``secret`` is the client's (constant time); never for a public client."""
    if record.secret_hash is None or not secret.isascii():
        return False
    return digest_matches(secret, record.secret_hash)


def is_active(record: OAuthClientRecord, now: datetime) -> bool:
    return record.revoked_at is None or record.revoked_at > now
