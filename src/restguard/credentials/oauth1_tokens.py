"""OAuth 1.0a temporary credentials and token credentials (RFC 5849 §2.1, §2.3): the records the
provider stores (``OAuth1TokenRecord``) and their secrets. Running the flow is the provider's
work; this module makes the values.

* ``token``: ``rg_or_`` (temporary credentials, "request token") or ``rg_ot_`` (token
  credentials, "access token") and 32 base62 characters (190 bits). The token identifier is
  sent in the clear with every request (§3.1 ``oauth_token``; in the query of the authorization
  redirect, §2.2), so it is stored as it is and shown to the admin; the kind column, not the
  prefix, decides what a token is (the prefix tells people and log readers).
* ``token_secret``: 32 random bytes, shown to the consumer once, as base64url without padding
  (unreserved characters: §3.6 encoding leaves it unchanged in the §3.4.2 HMAC key), stored
  sealed by the master key under ``oauth1-token-secret:<token>``: the verifier needs it for HMAC
  signatures.
* ``verifier`` (§2.2 ``oauth_verifier``): 22 base62 characters (131 bits), given once to the
  resource owner's browser (or shown for ``oob``); only its SHA-256 is stored and it is
  single-use: temporary credentials are exchanged once (§2.3), within ``TEMPORARY_TTL``.
"""

from __future__ import annotations

import hmac
import re
from datetime import datetime, timedelta
from typing import Final

from restguard.credentials.oauth1_consumers import new_secret, open_secret
from restguard.keys.hashing import token_digest
from restguard.keys.sealing import Sealer
from restguard.store.ports import OAuth1ConsumerRecord, OAuth1TokenRecord
from restguard.tokens import random_base62

TEMPORARY: Final = "temporary"
ACCESS: Final = "access"
KINDS: Final = (TEMPORARY, ACCESS)
TEMPORARY_PREFIX: Final = "rg_or_"
ACCESS_PREFIX: Final = "rg_ot_"
TOKEN_CHARS: Final = 32
VERIFIER_CHARS: Final = 22
#: How long temporary credentials may wait for authorization and exchange (RFC 5849 §2.1 leaves
#: it to the server; short, since they only bridge the user's visit).
TEMPORARY_TTL: Final = timedelta(minutes=10)


def new_token(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"an OAuth 1.0a token is {' or '.join(KINDS)}, not {kind!r}")
    return (TEMPORARY_PREFIX if kind == TEMPORARY else ACCESS_PREFIX) + random_base62(TOKEN_CHARS)


_TOKEN_RE: Final = re.compile(
    f"(?:{re.escape(TEMPORARY_PREFIX)}|{re.escape(ACCESS_PREFIX)})[0-9A-Za-z]{{{TOKEN_CHARS}}}"
)


def is_token(text: str) -> bool:
    """Whether ``text`` has the form of restguard's OAuth 1.0a token (safe to look up)."""
    return _TOKEN_RE.fullmatch(text) is not None


def secret_purpose(token: str) -> str:
    """The sealing purpose (associated data) of a token secret."""
    return f"oauth1-token-secret:{token}"


def new_verifier() -> tuple[str, bytes]:
    """A fresh ``oauth_verifier`` and the hash to store (``verifier_hash``)."""
    verifier = random_base62(VERIFIER_CHARS)
    return verifier, verifier_hash(verifier)


def verifier_hash(verifier: str) -> bytes:
    """SHA-256 of a verifier as the client sent it (non-ASCII: a hash that matches nothing)."""
    try:
        return token_digest(verifier)
    except UnicodeEncodeError:
        return b"\x00" * 32


def verifier_matches(verifier: str, record: OAuth1TokenRecord) -> bool:
    """Constant-time check of ``verifier`` against authorized temporary credentials."""
    stored = record.verifier_hash
    return stored is not None and hmac.compare_digest(verifier_hash(verifier), stored)


def new_temporary_credentials(
    consumer: OAuth1ConsumerRecord,
    callback: str,
    *,
    now: datetime,
    sealer: Sealer,
    scopes: tuple[str, ...] | None = None,
) -> tuple[OAuth1TokenRecord, str]:
    """Temporary credentials (§2.1) for ``consumer`` and their secret, shown once. ``callback``
    is the request's ``oauth_callback`` (already checked: ``oauth_callback_problem``);
    ``scopes`` are those requested (default: all the consumer's; never more)."""
    asked = consumer.scopes if scopes is None else scopes
    extra = [s for s in asked if s not in consumer.scopes]
    if extra:
        raise ValueError(f"the consumer may not be granted the scope {extra[0]!r}")
    token = new_token(TEMPORARY)
    raw, text = new_secret()
    record = OAuth1TokenRecord(
        token=token,
        kind=TEMPORARY,
        consumer_key=consumer.consumer_key,
        sealed_secret=sealer.seal(raw, secret_purpose(token)),
        scopes=tuple(asked),
        created_at=now,
        callback=callback,
        expires_at=now + TEMPORARY_TTL,
    )
    return record, text


def new_token_credentials(
    temporary: OAuth1TokenRecord,
    *,
    now: datetime,
    sealer: Sealer,
    expires_at: datetime | None = None,
) -> tuple[OAuth1TokenRecord, str]:
    """Token credentials (§2.3) for authorized temporary credentials -- their consumer, user,
    subject and granted scopes -- and their secret, shown once. Store them with
    ``OAuth1TokenStore.exchange`` (which uses the temporary credentials up, atomically)."""
    if temporary.kind != TEMPORARY or temporary.user_id is None or temporary.subject is None:
        raise ValueError("token credentials come from authorized temporary credentials")
    token = new_token(ACCESS)
    raw, text = new_secret()
    record = OAuth1TokenRecord(
        token=token,
        kind=ACCESS,
        consumer_key=temporary.consumer_key,
        sealed_secret=sealer.seal(raw, secret_purpose(token)),
        scopes=temporary.scopes,
        created_at=now,
        user_id=temporary.user_id,
        subject=temporary.subject,
        expires_at=expires_at,
    )
    return record, text


def token_secret(record: OAuth1TokenRecord, sealer: Sealer) -> str:
    """The token secret's text (the "token shared-secret" of RFC 5849 §3.4.2's HMAC key);
    ``SealError`` if it does not open with this master key."""
    return open_secret(record.sealed_secret, secret_purpose(record.token), sealer)


def is_live(record: OAuth1TokenRecord, now: datetime) -> bool:
    """Not revoked and not expired at ``now`` (temporary: nor used)."""
    if record.revoked_at is not None and record.revoked_at <= now:
        return False
    if record.expires_at is not None and record.expires_at <= now:
        return False
    return record.kind != TEMPORARY or record.used_at is None


def state(record: OAuth1TokenRecord, now: datetime) -> str:
    """``active``, ``revoked``, ``expired`` or (temporary) ``used``: what listings show."""
    if record.revoked_at is not None and record.revoked_at <= now:
        return "revoked"
    if record.kind == TEMPORARY and record.used_at is not None:
        return "used"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"
