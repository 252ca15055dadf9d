"""Storage ports of the methods that sign each request: RFC 9421 apps and their nonces, OAuth
1.0a consumers, credentials and nonces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AppRecord:
    """A signing app: a client that signs its requests (RFC 9421 HTTP Message Signatures)
    with its own key, named in the signature's ``keyid`` parameter by ``key_id`` (public).

    ``alg`` is ``hmac-sha256``, ``ed25519`` or ``ecdsa-p256-sha256`` and fixed per app (RFC 9421
    §3.3.7: the verifier takes it from the key, never from the request). An ``hmac-sha256`` app
    has ``sealed_secret`` (its 32-byte HMAC key sealed by the master key: the verifier needs the
    key itself) and no ``public_key``; the others have ``public_key`` (DER SubjectPublicKeyInfo)
    and no secret. ``revoked_at`` may lie in the future: that is a rotation grace period."""

    key_id: str
    name: str
    alg: str
    scopes: tuple[str, ...]
    sealed_secret: bytes | None
    public_key: bytes | None
    created_at: datetime
    revoked_at: datetime | None = None


class AppStore(Protocol):
    async def insert(self, record: AppRecord) -> None:
        """Add an app; ``DuplicateRecord`` if the key_id exists."""
        ...

    async def get(self, key_id: str) -> AppRecord | None: ...

    async def list(self) -> list[AppRecord]:
        """All apps, oldest first."""
        ...

    async def revoke(
        self, key_id: str, at: datetime, *, expected: AppRecord | None = None
    ) -> AppRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent. With
        ``expected`` (the record as the caller read it), only while it is still as read, else
        ``StaleRecord`` and nothing changes."""
        ...

    async def rotate(
        self,
        old_key_id: str,
        new: AppRecord,
        old_revoked_at: datetime,
        *,
        expected: AppRecord | None = None,
    ) -> None:
        """In one transaction: insert ``new`` and revoke ``old_key_id`` at ``old_revoked_at``
        (keeping an earlier revocation); ``DuplicateRecord`` if ``new.key_id`` exists,
        ``UnknownRecord`` if ``old_key_id`` does not, ``StaleRecord`` if ``expected`` is given
        and the old app is no longer as read (nothing changes then)."""
        ...


class NonceStore(Protocol):
    """Signature nonces already seen (RFC 9421 §7.2.2, replay), per app, until they expire."""

    async def use(self, key_id: str, nonce: str, expires_at: datetime, now: datetime) -> bool:
        """Record ``nonce`` for the app ``key_id`` until ``expires_at`` (which should lie after
        ``now``): True for the one call that recorded it first, atomically across processes
        and instances; False while it is recorded (a replay; nothing written). Expired
        records are dropped meanwhile, so a nonce may recur once its record expired."""
        ...


@dataclass(frozen=True, slots=True)
class OAuth1ConsumerRecord:
    """An OAuth 1.0a consumer (RFC 5849 §1.1 "client"; ``restguard oauth1 consumer create``),
    named in requests by ``consumer_key`` (public: sent in every request).

    ``sealed_secret``: the consumer secret (32 random bytes) sealed by the master key: the
    server needs the secret itself to verify HMAC signatures (RFC 5849 §3.4.2), so it cannot be
    hashed. ``callback``: the registered callback URI (None: only ``oob``). ``signature_methods``:
    the RFC 5849 §3.4 method names this consumer may sign with (``HMAC-SHA1``, ``HMAC-SHA256``,
    ``RSA-SHA1``, ``PLAINTEXT``); ``rsa_public_key``: DER SubjectPublicKeyInfo for ``RSA-SHA1``
    (§3.4.3), else None. ``scopes``: what its tokens may be granted."""

    consumer_key: str
    name: str
    sealed_secret: bytes
    scopes: tuple[str, ...]
    callback: str | None
    signature_methods: tuple[str, ...]
    rsa_public_key: bytes | None
    created_at: datetime
    revoked_at: datetime | None = None


class OAuth1ConsumerStore(Protocol):
    async def insert(self, record: OAuth1ConsumerRecord) -> None:
        """Add a consumer; ``DuplicateRecord`` if the consumer_key exists."""
        ...

    async def get(self, consumer_key: str) -> OAuth1ConsumerRecord | None: ...

    async def list(self) -> list[OAuth1ConsumerRecord]:
        """All consumers, oldest first."""
        ...

    async def revoke(
        self, consumer_key: str, at: datetime, *, expected: OAuth1ConsumerRecord | None = None
    ) -> OAuth1ConsumerRecord:
        """Set ``revoked_at`` (keeping an earlier one) and, in the same transaction, revoke every
        token (temporary and token credentials) of the consumer; ``UnknownRecord`` if absent. With
        ``expected`` (the record as the caller read it), only while it is still as read, else
        ``StaleRecord`` and nothing changes."""
        ...


@dataclass(frozen=True, slots=True)
class OAuth1TokenRecord:
    """OAuth 1.0a temporary credentials (``kind`` ``temporary``, RFC 5849 §2.1) or token
    credentials (``access``, §2.3), by ``token`` (public-ish: sent in the clear with every
    request); ``sealed_secret`` is the token secret sealed by the master key (the verifier needs
    it for HMAC, §3.4.2).

    Temporary credentials: ``callback`` is the request's ``oauth_callback`` (or ``oob``);
    ``user_id``/``subject`` are None until the resource owner authorizes (§2.2), which sets them,
    the ``scopes`` granted and ``verifier_hash`` (SHA-256 of the verifier); ``expires_at`` is
    short; ``used_at`` is set by the one exchange for token credentials (§2.3: single use).
    Token credentials carry the user, subject and scopes granted; ``expires_at`` may be None.
    ``revoked_at``: revoked by the user, the admin, or with the consumer."""

    token: str
    kind: str
    consumer_key: str
    sealed_secret: bytes
    scopes: tuple[str, ...]
    created_at: datetime
    user_id: str | None = None
    subject: str | None = None
    callback: str | None = None
    verifier_hash: bytes | None = None
    expires_at: datetime | None = None
    used_at: datetime | None = None
    revoked_at: datetime | None = None


class OAuth1TokenStore(Protocol):
    """Temporary and token credentials; every state change is one atomic conditional write."""

    async def insert(self, record: OAuth1TokenRecord) -> None:
        """Add credentials; ``DuplicateRecord`` if the token exists. Expired temporary
        credentials are dropped meanwhile."""
        ...

    async def get(self, token: str) -> OAuth1TokenRecord | None: ...

    async def authorize(
        self,
        temporary_token: str,
        *,
        user_id: str,
        subject: str,
        scopes: tuple[str, ...],
        verifier_hash: bytes,
        at: datetime,
    ) -> bool:
        """Record the resource owner's authorization (RFC 5849 §2.2) of temporary credentials:
        True for the one call that authorized them first (atomic across processes and
        instances), False (nothing written) unless they are temporary, unexpired at ``at``, not
        yet authorized, not used and not revoked."""
        ...

    async def exchange(
        self, temporary_token: str, verifier_hash: bytes, new: OAuth1TokenRecord, at: datetime
    ) -> str:
        """Exchange authorized temporary credentials for the token credentials ``new`` (RFC
        5849 §2.3), in one transaction: ``"exchanged"`` for the one call that used them first
        (they are marked used, ``new`` is inserted); ``"used"`` if they were exchanged before;
        ``"invalid"`` otherwise -- unknown, not temporary, expired, revoked, not authorized,
        another verifier, another consumer or user than ``new``'s, or the user no longer
        exists. Nothing is written unless ``"exchanged"``; of racing calls exactly one wins."""
        ...

    async def list(
        self, *, user_id: str | None = None, consumer_key: str | None = None
    ) -> list[OAuth1TokenRecord]:
        """Token credentials (``kind`` ``access``; revoked ones too), of one user and/or one
        consumer or all, oldest first."""
        ...

    async def revoke(
        self, token: str, at: datetime, *, expected: OAuth1TokenRecord | None = None
    ) -> OAuth1TokenRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent. With
        ``expected`` (the record as the caller read it), only while it is still as read, else
        ``StaleRecord`` and nothing changes."""
        ...

    async def revoke_user(self, user_id: str, at: datetime, consumer_key: str | None = None) -> int:
        """Revoke the user's token credentials, and the temporary credentials the user
        authorized that were not exchanged yet (to one consumer, or all); how many were not
        revoked before."""
        ...


class OAuth1NonceStore(Protocol):
    """OAuth 1.0a nonces already seen (RFC 5849 §3.3: unique per timestamp, client credentials
    and token combination), until they expire."""

    async def use(
        self,
        consumer_key: str,
        token: str,
        timestamp: int,
        nonce: str,
        expires_at: datetime,
        now: datetime,
    ) -> bool:
        """Record ``nonce`` for ``(consumer_key, token, timestamp)`` (``token`` is ``""`` for a
        two-legged request) until ``expires_at``: True for the one call that recorded it first,
        atomically across processes and instances; False while it is recorded (a replay;
        nothing written). Expired records are dropped meanwhile."""
        ...
