"""Storage ports of the OAuth 2.0 authorization server: clients, revoked tokens, users,
authorization codes, refresh tokens, consents, opaque access tokens, device codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


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

    async def revoke(
        self, client_id: str, at: datetime, *, expected: OAuthClientRecord | None = None
    ) -> OAuthClientRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent. With
        ``expected`` (the record as the caller read it), only while it is still as read, else
        ``StaleRecord`` and nothing changes."""
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

    async def login_attempt(
        self, user_id: str, now: datetime, *, lock_after: int, lock_for: timedelta
    ) -> UserRecord | None:
        """Count a sign-in attempt before its password is checked, atomically and only while
        the user is not locked at ``now`` (one statement: racing attempts on every instance
        each count once, and none past the lock): ``failed_logins`` += 1, and when the new
        count is a multiple of ``lock_after``, ``locked_until`` = ``now + lock_for``. The
        updated user, or None if there is no such user or it is locked (nothing written). A
        success resets the count (``login_succeeded``): what stays counted is the failures."""
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
