"""Storage ports of API keys, signing keys, external JWT issuers and the master-key check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
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

    async def revoke(
        self, key_id: str, at: datetime, *, expected: ApiKeyRecord | None = None
    ) -> ApiKeyRecord:
        """Set ``revoked_at`` (keeping an earlier one); ``UnknownRecord`` if absent. With
        ``expected`` (the record as the caller read it), only if its ``revoked_at`` is still
        that one's, else ``StaleRecord`` and nothing changes."""
        ...

    async def rotate(
        self,
        old_id: str,
        new: ApiKeyRecord,
        old_revoked_at: datetime,
        *,
        expected: ApiKeyRecord | None = None,
    ) -> None:
        """In one transaction: insert ``new`` and revoke ``old_id`` at ``old_revoked_at``;
        with ``expected``, only if the old key's ``revoked_at`` is still that one's
        (``StaleRecord`` otherwise, and nothing changes)."""
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
