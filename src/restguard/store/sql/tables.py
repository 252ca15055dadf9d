"""The schema as SQLAlchemy Core tables. Migrations (``migrations/versions``) create it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back as a timezone-aware UTC ``datetime``.

    PostgreSQL keeps it as ``timestamptz``; SQLite as naive UTC text, which sorts correctly.
    Naive datetimes are refused on write: their meaning depends on the machine.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = to_utc(value)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def to_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; ``ValueError`` if it is naive."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: pass a timezone-aware datetime (UTC)")
    return value.astimezone(UTC)


#: Constraint names match those the migrations create.
metadata = MetaData(
    naming_convention={"pk": "pk_%(table_name)s", "uq": "uq_%(table_name)s_%(column_0_name)s"}
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("key_hash", LargeBinary, nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated, in the order given
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", Text, primary_key=True),
    Column("alg", Text, nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("sealed_private", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
)

issuers = Table(
    "issuers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("issuer", Text, nullable=False),
    Column("jwks_uri", Text, nullable=False),
    Column("audience", Text, nullable=False),
    Column("algorithms", Text, nullable=False),  # space-separated JWS names
    Column("scope_claim", Text, nullable=False),
    Column("typ", Text, nullable=True),
    Column("leeway", Float, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("issuer"),
)

#: One row (id ``MASTER_KEY_CHECK_ID``): a value sealed by the master key the data directory is
#: bound to (``keys/master_check.py``). Opening it proves a master key belongs here.
master_key_check = Table(
    "master_key_check",
    metadata,
    Column("id", Text, primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
)
MASTER_KEY_CHECK_ID = "master"

#: Clients of restguard's OAuth 2.0 authorization server. ``secret_hash`` is SHA-256 of the
#: client secret, NULL for a public client; list-valued columns are space-separated (redirect
#: URIs hold no spaces: ``oauth2.clients`` refuses them).
oauth2_clients = Table(
    "oauth2_clients",
    metadata,
    Column("client_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("secret_hash", LargeBinary, nullable=True),
    Column("grants", Text, nullable=False),  # space-separated, in the order given
    Column("redirect_uris", Text, nullable=False),  # space-separated, in the order given
    Column("scopes", Text, nullable=False),  # space-separated, in the order given
    Column("token_format", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", Text, primary_key=True),
    Column("client_id", Text, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=False),
)

#: Resource owners of restguard's OAuth 2.0 authorization server (``oauth2/users.py``).
#: ``password_hash`` is an Argon2id PHC string (not sealed: a slow salted hash is the protection);
#: ``username`` is stored lower-cased, so its uniqueness ignores case; ``failed_logins`` and
#: ``locked_until`` are the per-account login throttle, updated in one statement.
users = Table(
    "users",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("username", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated, in the order given
    Column("created_at", UtcDateTime, nullable=False),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", UtcDateTime, nullable=True),
    UniqueConstraint("username"),
)

#: Authorization codes (RFC 6749 §4.1.2), by the SHA-256 of the code; single-use: ``used_at``
#: is set by the one exchange that wins, with the ids of the tokens it issues (``family_id``,
#: ``access_jti``) so that a replay revokes them (RFC 6749 §4.1.2: "SHOULD revoke").
oauth2_codes = Table(
    "oauth2_codes",
    metadata,
    Column("code_hash", LargeBinary, primary_key=True),
    Column("client_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("redirect_uri_given", Boolean, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("code_challenge", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Column("family_id", Text, nullable=True),
    Column("access_jti", Text, nullable=True),
)

#: One row per grant that issued refresh tokens: the family every rotation stays in. Its row is
#: the lock that rotation and revocation take (``grant_repositories.py``).
oauth2_token_families = Table(
    "oauth2_token_families",
    metadata,
    Column("family_id", Text, primary_key=True),
    Column("client_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("rotated_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
)

#: Refresh tokens by the SHA-256 of the token (always opaque: ``rg_rt_...``). ``used_at``: rotated
#: (a second use is a reuse, RFC 9700 §4.14.2). ``access_jti``: the access token issued beside it.
oauth2_refresh_tokens = Table(
    "oauth2_refresh_tokens",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("family_id", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Column("access_jti", Text, nullable=False),
    Column("access_expires_at", UtcDateTime, nullable=False),
    Index("ix_oauth2_refresh_tokens_family_id", "family_id"),
)

#: What a user consented to per client, remembered until revoked.
oauth2_consents = Table(
    "oauth2_consents",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("client_id", Text, primary_key=True),
    Column("scopes", Text, nullable=False),
    Column("granted_at", UtcDateTime, nullable=False),
)

#: Opaque access tokens (``rg_at_...``) by the SHA-256 of the token; revoked by ``jti``.
oauth2_access_tokens = Table(
    "oauth2_access_tokens",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("jti", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

#: Device authorizations (RFC 8628 §3.2) by the SHA-256 of the device code. A user code is
#: unique among pending codes (a partial index: a used or expired one may recur).
oauth2_device_codes = Table(
    "oauth2_device_codes",
    metadata,
    Column("device_code_hash", LargeBinary, primary_key=True),
    Column("user_code", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("interval", Integer, nullable=False),
    Column("last_polled_at", UtcDateTime, nullable=True),
    Column("status", Text, nullable=False),
    Column("user_id", Text, nullable=True),
    Column("subject", Text, nullable=True),
    Column("granted_scopes", Text, nullable=True),
    Column("used_at", UtcDateTime, nullable=True),
    Index(
        "ux_oauth2_device_codes_pending_user_code",
        "user_code",
        unique=True,
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
    Index("ix_oauth2_device_codes_expires_at", "expires_at"),
)

#: Signing apps (RFC 9421 signatures; ``credentials/apps.py``), by their public ``key_id``. An
#: hmac-sha256 app has ``sealed_secret`` (its HMAC key sealed by the master key, purpose
#: ``app-secret:<key_id>``: re-sealed by ``master-key rotate``, ``reseal.SEALED_COLUMNS``); a
#: public-key app has ``public_key`` (DER SubjectPublicKeyInfo).
apps = Table(
    "apps",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("alg", Text, nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated, in the order given
    Column("sealed_secret", LargeBinary, nullable=True),
    Column("public_key", LargeBinary, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

#: Signature nonces seen per app, until they expire: the primary key makes a nonce single-use
#: across every worker and instance on the database (an INSERT that clashes is a replay).
signature_nonces = Table(
    "signature_nonces",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("nonce", Text, primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_signature_nonces_expires_at", "expires_at"),
)

#: OAuth 1.0a consumers (RFC 5849; ``credentials/oauth1_consumers.py``), by their public
#: ``consumer_key``. ``sealed_secret`` is the consumer secret sealed by the master key (purpose
#: ``oauth1-consumer-secret:<consumer_key>``, re-sealed by ``master-key rotate``);
#: ``rsa_public_key`` is DER SubjectPublicKeyInfo (RSA-SHA1), or NULL.
oauth1_consumers = Table(
    "oauth1_consumers",
    metadata,
    Column("consumer_key", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("sealed_secret", LargeBinary, nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated, in the order given
    Column("callback", Text, nullable=True),
    Column("signature_methods", Text, nullable=False),  # space-separated
    Column("rsa_public_key", LargeBinary, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

#: OAuth 1.0a temporary credentials (``kind`` 'temporary') and token credentials ('access'),
#: by ``token``; ``sealed_secret`` is the token secret sealed by the master key (purpose
#: ``oauth1-token-secret:<token>``). ``verifier_hash``: SHA-256 of the verifier, once authorized.
oauth1_tokens = Table(
    "oauth1_tokens",
    metadata,
    Column("token", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("consumer_key", Text, nullable=False),
    Column("sealed_secret", LargeBinary, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("user_id", Text, nullable=True),
    Column("subject", Text, nullable=True),
    Column("callback", Text, nullable=True),
    Column("verifier_hash", LargeBinary, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("used_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_oauth1_tokens_consumer_key", "consumer_key"),
    Index("ix_oauth1_tokens_user_id", "user_id"),
)

#: OAuth 1.0a nonces seen per consumer, token ('' when two-legged) and timestamp (RFC 5849
#: §3.3), until they expire: the primary key makes a nonce single-use across every worker and
#: instance on the database.
oauth1_nonces = Table(
    "oauth1_nonces",
    metadata,
    Column("consumer_key", Text, primary_key=True),
    Column("token", Text, primary_key=True),
    Column("timestamp", BigInteger, primary_key=True, autoincrement=False),
    Column("nonce", Text, primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_oauth1_nonces_expires_at", "expires_at"),
)

#: Rate-limit counters shared by every worker and instance on the database
#: (``rate_limit_repository.py``; the arithmetic is ``authz.ratelimit.gcra``). ``key``: the
#: limiter's key, or ``sha256:`` and its hex digest when longer than 200 characters; ``tat``: its
#: theoretical arrival time in wall-clock epoch seconds (a row whose ``tat`` has passed means the
#: same as no row, and is swept); ``seen``: the latest clock reading its events were judged at.
#: ``prev`` and ``ok``: the TAT before the last event and whether that event was allowed,
#: written by the same statement so that it can return them.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", Text, primary_key=True),
    Column("tat", Float, nullable=False),
    Column("seen", Float, nullable=False),
    Column("prev", Float, nullable=True),
    Column("ok", Boolean, nullable=False),
    Index("ix_rate_limits_tat", "tat"),
)
