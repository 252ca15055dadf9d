"""Storage ports: one Protocol per artifact. The core depends on these, never on a driver.

Every method may raise ``BackendUnavailable`` (the driver failed: fail closed, 503). Writes are
atomic: a failed write leaves the store as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored API key. ``key_hash`` is SHA-256 of the whole key; the key itself is never kept.

    ``revoked_at`` may lie in the future: that is a rotation grace period.
    """

    id: str
    name: str
    key_hash: bytes
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    """One of restguard's own signing keys. The private key is sealed by the master key."""

    kid: str
    alg: str
    public_jwk: str
    sealed_private: bytes
    created_at: datetime
    retired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuerRecord:
    """An external JWT issuer restguard trusts (``restguard issuer add``). Nothing secret:
    the keys come from ``jwks_uri``. ``issuer`` is unique; ``algorithms`` are JWS names."""

    id: str
    issuer: str
    jwks_uri: str
    audience: str
    algorithms: tuple[str, ...]
    scope_claim: str
    typ: str | None
    created_at: datetime
    leeway: float = 0  # seconds of clock skew allowed on exp/nbf/iat (at most 60)


class ApiKeyStore(Protocol):
    async def insert(self, record: ApiKeyRecord) -> None:
        """Add a key; ``DuplicateRecord`` if the id exists."""
        ...

    async def get(self, key_id: str) -> ApiKeyRecord | None: ...

    async def list(self) -> list[ApiKeyRecord]:
        """All keys, oldest first."""
        ...

    async def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent."""
        ...

    async def rotate(self, old_id: str, new: ApiKeyRecord, old_revoked_at: datetime) -> None:
        """In one transaction: insert ``new`` and revoke ``old_id`` at ``old_revoked_at``."""
        ...

    async def touch(self, uses: Mapping[str, datetime]) -> None:
        """Record last-used times (key id -> time), in one write; never moves one backwards.
        Bookkeeping: callers batch these off the decision path (``store.bookkeeping``)."""
        ...


class SigningKeyStore(Protocol):
    async def insert(self, record: SigningKeyRecord) -> None: ...

    async def list(self) -> list[SigningKeyRecord]:
        """All keys, newest first."""
        ...

    async def rotate(self, new: SigningKeyRecord, retire_at: datetime) -> None:
        """In one transaction: insert ``new`` and set ``retired_at`` to ``retire_at`` on every
        other key (keeping an earlier one); ``DuplicateRecord`` if ``new.kid`` exists."""
        ...


class IssuerStore(Protocol):
    async def insert(self, record: IssuerRecord) -> None:
        """Add an issuer; ``DuplicateRecord`` if its id or its ``issuer`` exists."""
        ...

    async def list(self) -> list[IssuerRecord]:
        """All issuers, oldest first."""
        ...

    async def remove(self, issuer_id: str) -> IssuerRecord:
        """Delete and return the issuer; ``UnknownRecord`` if absent."""
        ...


class MasterKeyCheckStore(Protocol):
    """The data directory's master-key check: one value sealed by the master key it is bound to
    (``keys/master_check.py``), and the sealed secrets a first binding must be able to open."""

    async def get(self) -> bytes | None:
        """The sealed check value; ``None`` while the data directory is bound to no key."""
        ...

    async def put_if_absent(self, sealed: bytes) -> bytes:
        """Store ``sealed`` as the check value unless one exists; the value stored afterwards
        (another writer's, if it came first: a lost race reads back the winner)."""
        ...

    async def sealed_secrets(self) -> list[tuple[str, bytes]]:
        """``(purpose, sealed value)`` of every sealed secret the store holds (the check value
        itself excluded), retired ones included."""
        ...


@dataclass(frozen=True, slots=True)
class OAuthClientRecord:
    """A client of restguard's OAuth 2.0 authorization server (RFC 6749 §2).

    ``secret_hash`` is SHA-256 of the whole client secret (256 random bits, shown once), None
    for a public client (RFC 6749 §2.1: it cannot keep a secret; PKCE instead). ``grants`` are
    RFC 6749 names (``authorization_code``, ``client_credentials``, ``refresh_token``,
    ``device_code``); ``redirect_uris`` match exactly; ``scopes`` are what it may be granted;
    ``token_format`` is ``jwt`` (RFC 9068) or ``opaque``. ``revoked_at`` may lie in the future
    (a rotation's grace)."""

    client_id: str
    name: str
    secret_hash: bytes | None
    grants: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    token_format: str
    created_at: datetime
    revoked_at: datetime | None = None


class OAuthClientStore(Protocol):
    async def insert(self, record: OAuthClientRecord) -> None:
        """Add a client; ``DuplicateRecord`` if the client_id exists."""
        ...

    async def get(self, client_id: str) -> OAuthClientRecord | None: ...

    async def list(self) -> list[OAuthClientRecord]:
        """All clients, oldest first."""
        ...

    async def revoke(self, client_id: str, at: datetime) -> OAuthClientRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent."""
        ...


class RevokedTokenStore(Protocol):
    """Access tokens revoked before their expiry (RFC 7009), by ``jti``, kept until they expire."""

    async def revoke(self, jti: str, client_id: str, expires_at: datetime, at: datetime) -> None:
        """Record a revocation (again: nothing changes); expired records are dropped meanwhile."""
        ...

    async def active(self, now: datetime) -> list[str]:
        """The ``jti`` of every revoked token that has not expired at ``now``."""
        ...


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A resource owner of restguard's OAuth 2.0 authorization server: someone who logs in on
    its login page and consents to clients (``restguard user create``).

    ``user_id`` is ``rg_us_`` and 16 characters of ``[0-9a-z]``; ``username`` is unique (stored
    lower-cased by ``oauth2/users.py``); ``password_hash`` is an Argon2id PHC string, never the
    password; ``scopes`` are what the user may grant to clients. ``failed_logins`` counts failed
    logins since the last success; while ``locked_until`` lies ahead, logins are refused."""

    user_id: str
    username: str
    password_hash: str
    scopes: tuple[str, ...]
    created_at: datetime
    failed_logins: int = 0
    locked_until: datetime | None = None


class UserStore(Protocol):
    async def insert(self, record: UserRecord) -> None:
        """Add a user; ``DuplicateRecord`` if its user_id or its username exists."""
        ...

    async def get(self, user_id: str) -> UserRecord | None: ...

    async def by_username(self, username: str) -> UserRecord | None:
        """The user with exactly this (stored, already normalised) username, or None."""
        ...

    async def list(self) -> list[UserRecord]:
        """All users, oldest first."""
        ...

    async def remove(self, user_id_or_username: str) -> UserRecord:
        """Delete and return the user with this user_id, else with this username;
        ``UnknownRecord`` if neither exists."""
        ...

    async def login_failed(
        self, user_id: str, now: datetime, *, lock_after: int, lock_for: timedelta
    ) -> UserRecord | None:
        """Count a failed login, atomically (one statement: concurrent callers on every
        instance each count once): ``failed_logins`` += 1, and when the new count is a multiple
        of ``lock_after``, ``locked_until`` = ``now + lock_for``. The updated user, or None if
        there is no such user (nothing written)."""
        ...

    async def login_succeeded(self, user_id: str, new_password_hash: str | None) -> None:
        """Reset the throttle (``failed_logins`` 0, ``locked_until`` None) and, when given,
        replace the password hash (a rehash with stronger parameters). No user: nothing."""
        ...


@dataclass(frozen=True, slots=True)
class AuthorizationCodeRecord:
    """An authorization code (RFC 6749 §4.1.2), stored by ``code_hash`` (SHA-256 of the code).

    ``redirect_uri_given``: the authorization request named it, so the token request must too
    (RFC 6749 §4.1.3). ``code_challenge``: the S256 PKCE challenge (RFC 7636 §4.2). Set when
    the code is used: ``used_at`` and the ids of what that exchange issued."""

    code_hash: bytes
    client_id: str
    user_id: str
    subject: str
    redirect_uri: str
    redirect_uri_given: bool
    scopes: tuple[str, ...]
    code_challenge: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    family_id: str | None = None
    access_jti: str | None = None


class AuthorizationCodeStore(Protocol):
    async def insert(self, record: AuthorizationCodeRecord) -> None: ...

    async def get(self, code_hash: bytes) -> AuthorizationCodeRecord | None: ...

    async def consume(
        self, code_hash: bytes, at: datetime, *, family_id: str | None, access_jti: str
    ) -> bool:
        """Mark the code used, with what its exchange issues: True for the one call that used
        it first (atomic across processes and instances), False if it was used already or its
        user no longer exists (nothing written then)."""
        ...


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    """A refresh token (always opaque, stored by ``token_hash``), one of a family: the tokens
    one grant produced by rotation. ``access_jti`` is the access token issued beside it, so
    that revoking the family revokes it too. ``family_revoked_at`` is read from the family."""

    token_hash: bytes
    family_id: str
    client_id: str
    user_id: str
    subject: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    access_jti: str
    access_expires_at: datetime
    used_at: datetime | None = None
    family_revoked_at: datetime | None = None


class RefreshTokenStore(Protocol):
    async def start_family(self, first: RefreshTokenRecord) -> None:
        """Create ``first.family_id`` with its first refresh token."""
        ...

    async def get(self, token_hash: bytes) -> RefreshTokenRecord | None: ...

    async def rotate(self, used: bytes, new: RefreshTokenRecord, at: datetime) -> str:
        """Replace refresh token ``used`` by ``new`` (same family), atomically: ``"rotated"``
        for the one call that used it first, ``"reused"`` if it was used before (nothing
        written: the caller revokes the family), ``"revoked"`` if its family was revoked or its
        user no longer exists (nothing written). Of racing calls exactly one rotates, across
        processes."""
        ...

    async def revoke_family(self, family_id: str, at: datetime) -> None:
        """Revoke the family: none of its refresh tokens works any more, and the access tokens
        issued beside them that have not expired are added to the revoked access tokens (in
        the same transaction)."""
        ...

    async def revoke_user(self, user_id: str, at: datetime, client_id: str | None = None) -> int:
        """Revoke every family of the user (to one client, or all; ``revoke_family`` each);
        how many."""
        ...


class ConsentStore(Protocol):
    """What a user consented to per client (the scope set), remembered until revoked."""

    async def granted(self, user_id: str, client_id: str) -> tuple[str, ...]:
        """The scopes the user granted the client so far (empty: none)."""
        ...

    async def grant(
        self, user_id: str, client_id: str, scopes: tuple[str, ...], at: datetime
    ) -> None:
        """Remember ``scopes`` as granted, besides what was granted before."""
        ...

    async def revoke(self, user_id: str, client_id: str | None = None) -> int:
        """Forget the user's consents (to one client, or all); how many were removed."""
        ...

    async def list(self, user_id: str) -> list[tuple[str, tuple[str, ...], datetime]]:
        """``(client_id, scopes, granted_at)`` of each consent the user gave, oldest first."""
        ...


@dataclass(frozen=True, slots=True)
class AccessTokenRecord:
    """An opaque access token (``rg_at_...``), stored by ``token_hash`` (SHA-256), with what a
    JWT access token would carry. Revoked by ``jti`` (``RevokedTokenStore``)."""

    token_hash: bytes
    jti: str
    client_id: str
    subject: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime


class AccessTokenStore(Protocol):
    async def insert(self, record: AccessTokenRecord) -> None:
        """Store a token (expired ones are dropped meanwhile)."""
        ...

    async def get(self, token_hash: bytes) -> AccessTokenRecord | None: ...


@dataclass(frozen=True, slots=True)
class DeviceCodeRecord:
    """A device authorization (RFC 8628 §3.2), stored by ``device_code_hash`` (SHA-256 of the
    device code). ``user_code`` is kept normalised (``oauth2/device_codes.normalise``).

    ``status``: ``pending`` until the user decides, then ``approved`` (with ``user_id``,
    ``subject`` and ``granted_scopes``) or ``denied``; ``used`` once the token was issued.
    ``interval``: the seconds the client must wait between polls (grows by ``slow_down``)."""

    device_code_hash: bytes
    user_code: str
    client_id: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    interval: int
    status: str = "pending"
    last_polled_at: datetime | None = None
    user_id: str | None = None
    subject: str | None = None
    granted_scopes: tuple[str, ...] = ()
    used_at: datetime | None = None


class DeviceCodeStore(Protocol):
    """Device authorizations; every state change is one atomic conditional write."""

    async def insert(self, record: DeviceCodeRecord) -> None:
        """Store a new pending device code; ``DuplicateRecord`` if its user code is that of
        another pending, unexpired one (the caller draws another)."""
        ...

    async def get(self, device_code_hash: bytes) -> DeviceCodeRecord | None: ...

    async def by_user_code(self, user_code: str, now: datetime) -> DeviceCodeRecord | None:
        """The pending, unexpired device code with this (normalised) user code, if any."""
        ...

    async def approve(
        self,
        user_code: str,
        *,
        user_id: str,
        subject: str,
        scopes: tuple[str, ...],
        at: datetime,
    ) -> bool:
        """pending -> approved for the user, with the scopes granted; False (nothing written)
        unless the code was pending and unexpired at ``at``."""
        ...

    async def deny(self, user_code: str, at: datetime) -> bool:
        """pending -> denied; False unless the code was pending and unexpired at ``at``."""
        ...

    async def poll(self, device_code_hash: bytes, at: datetime, *, step: int) -> bool:
        """Record a token request for the code at ``at``: True when it came too early (less
        than ``interval`` seconds after the previous one, or racing another): then the code's
        interval grows by ``step`` seconds (RFC 8628 §3.5 ``slow_down``). False otherwise."""
        ...

    async def consume(self, device_code_hash: bytes, at: datetime) -> bool:
        """approved -> used: True for the one call that used it first (atomic across
        processes and instances), False otherwise -- also when the approving user no longer
        exists (nothing written then)."""
        ...


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

    async def revoke(self, key_id: str, at: datetime) -> AppRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent."""
        ...

    async def rotate(self, old_key_id: str, new: AppRecord, old_revoked_at: datetime) -> None:
        """In one transaction: insert ``new`` and revoke ``old_key_id`` at ``old_revoked_at``
        (keeping an earlier revocation); ``DuplicateRecord`` if ``new.key_id`` exists,
        ``UnknownRecord`` if ``old_key_id`` does not (nothing changes then)."""
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

    async def revoke(self, consumer_key: str, at: datetime) -> OAuth1ConsumerRecord:
        """Set ``revoked_at`` (keeping an earlier one) and, in the same transaction, revoke every
        token (temporary and token credentials) of the consumer; ``UnknownRecord`` if absent."""
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

    async def revoke(self, token: str, at: datetime) -> OAuth1TokenRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent."""
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


class Store(Protocol):
    """The set of stores one backend provides, and its health."""

    api_keys: ApiKeyStore
    signing_keys: SigningKeyStore
    issuers: IssuerStore
    master_key_check: MasterKeyCheckStore
    oauth2_clients: OAuthClientStore
    revoked_tokens: RevokedTokenStore
    users: UserStore
    oauth2_codes: AuthorizationCodeStore
    refresh_tokens: RefreshTokenStore
    consents: ConsentStore
    oauth2_access_tokens: AccessTokenStore
    device_codes: DeviceCodeStore
    apps: AppStore
    signature_nonces: NonceStore
    oauth1_consumers: OAuth1ConsumerStore
    oauth1_tokens: OAuth1TokenStore
    oauth1_nonces: OAuth1NonceStore

    async def ping(self) -> None:
        """Raise ``BackendUnavailable`` unless the backend answers."""
        ...

    def close(self) -> None: ...
