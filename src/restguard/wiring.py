"""The one composition root: settings -> store, keys, authenticators, Guard.

New credential kinds plug in here, in ``AUTHENTICATORS``, and nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from restguard.audit import EventSink, JsonLinesAudit
from restguard.authz.policy import Policy
from restguard.authz.ratelimit import MemoryRateLimiter, RateLimiter, RefusalCache
from restguard.clock import Clock, SystemClock
from restguard.config import ConfigError, Settings
from restguard.credentials.apikey import ApiKeyAuthenticator
from restguard.credentials.base import Authenticator, Background, HoldsCache
from restguard.credentials.jwt import JwtAuthenticator
from restguard.credentials.jwt_issuers import IssuerDirectory
from restguard.credentials.oauth1 import FORM_BODY_LIMIT, OAuth1Authenticator, OAuth1Verifier
from restguard.credentials.oauth1_consumers import is_consumer_key
from restguard.credentials.oauth2 import ClientCache, OAuth2Authenticator, RevocationList
from restguard.credentials.opaque_tokens import OpaqueTokens
from restguard.credentials.signature import SIGNED_BODY_LIMIT, AppCache, SignatureAuthenticator
from restguard.guard import Guard
from restguard.keys.keyring import Keyring
from restguard.keys.master_check import ensure_master_key
from restguard.keys.sealing import Sealer, open_sealer
from restguard.keys.signing import IdentityMinter, load_signing_keys
from restguard.oauth2.access_tokens import AccessTokens
from restguard.oauth2.clients import is_client_id
from restguard.oauth2.http import AuthorizationServer, EndpointRequest
from restguard.oauth2.server import Server, ServerParts
from restguard.oauth2.web_tokens import WebTokens
from restguard.store.bookkeeping import UsageBook
from restguard.store.fanout import announcing
from restguard.store.ports import NonceStore, Store
from restguard.store.sql import SqlStore, migrate, open_store
from restguard.types import RequestView

if TYPE_CHECKING:  # (redis-py is the restguard[redis] extra: imported only when configured)
    from restguard.store.redis import RedisBackend


@dataclass(frozen=True, slots=True)
class Parts:
    """What an authenticator factory may use (each takes only what it needs)."""

    settings: Settings
    store: Store
    clock: Clock
    sealer: Sealer
    usage: UsageBook
    keys: Keyring
    clients: ClientCache  # OAuth 2.0 client records, shared with the token endpoint
    oauth1: OAuth1Verifier  # OAuth 1.0a, shared with the provider's endpoints
    signature_nonces: NonceStore  # the database's, or Redis's when configured


def _jwt(p: Parts) -> Authenticator:
    """External issuers' JWTs; the issuers come from the store and stay current."""
    jwt = JwtAuthenticator(None, p.clock, own_issuer=p.settings.server.public_url)
    jwt.follow(IssuerDirectory(p.store.issuers, jwt.set_issuers, p.clock))
    return jwt


def _signature(p: Parts) -> Authenticator:
    """RFC 9421 signatures of registered apps; a signed body up to the smaller of 1 MiB and
    ``[server] max_body_bytes`` is read before the decision."""
    return SignatureAuthenticator(
        AppCache(p.store.apps, p.sealer),
        p.signature_nonces,
        public_url=p.settings.server.public_url,
        body_limit=min(SIGNED_BODY_LIMIT, p.settings.server.max_body_bytes),
    )


def _oauth1(p: Parts) -> Authenticator:
    """OAuth 1.0a signed requests (RFC 5849); a form body up to the smaller of 1 MiB and
    ``[server] max_body_bytes`` is read before the decision. The verifier is the provider's
    too (``Parts.oauth1``)."""
    return OAuth1Authenticator(
        p.oauth1,
        public_url=p.settings.server.public_url,
        body_limit=min(FORM_BODY_LIMIT, p.settings.server.max_body_bytes),
    )


AUTHENTICATORS: dict[str, Callable[[Parts], Authenticator]] = {
    "api_key": lambda p: ApiKeyAuthenticator(p.store.api_keys, p.clock, usage=p.usage.record),
    "jwt": _jwt,
    "signature": _signature,
    "oauth1": _oauth1,
    "oauth2": lambda p: OAuth2Authenticator(
        p.keys,
        p.clients,
        p.clock,
        issuer=p.settings.server.public_url,
        audience=p.settings.server.public_url,
        revocations=RevocationList(p.store.revoked_tokens, p.clock),
        opaque=OpaqueTokens(p.store.oauth2_access_tokens),
    ),
}


def _credential_id(client_id: str | None) -> str | None:
    """How the audit log names the client of an authorization-server request: only a
    well-formed id (a client that sent its secret as the id must not have it logged)."""
    if client_id and is_client_id(client_id):
        return f"oauth2:{client_id}"
    if client_id and is_consumer_key(client_id):
        return f"oauth1:{client_id}"
    return None


def unservable_routes(settings: Settings) -> list[ConfigError]:
    """A problem for every protected route that accepts no method this build provides."""
    return [
        settings.error(
            ("routes", route.index + 1, "auth"),
            f"none of {', '.join(route.auth)} is available in this version",
            f"use one of {', '.join(AUTHENTICATORS)}",
        )
        for route in settings.routes
        if not route.public and not any(m in AUTHENTICATORS for m in route.auth)
    ]


def check_routes_servable(settings: Settings) -> None:
    """Every protected route must accept at least one method this build provides."""
    problems = unservable_routes(settings)
    if problems:
        problems[0].problems = tuple(problems)
        raise problems[0]


@dataclass
class Runtime:
    """Everything a running restguard holds; ``close`` releases it. While it is open, the audit
    log is written every ``AUDIT_FLUSH_SECONDS`` (so lines appear while an embedding app runs,
    not only at ``close``) and the signing keys are reloaded every ``REFRESH_SECONDS``
    (``keys/keyring.py``)."""

    settings: Settings
    clock: Clock
    store: Store
    sealer: Sealer
    guard: Guard
    keys: Keyring
    minter: IdentityMinter
    usage: UsageBook
    audit: JsonLinesAudit | None = None
    redis: RedisBackend | None = None  # [storage] redis: its readiness is /readyz's "redis"
    closers: list[Callable[[], None]] = field(default_factory=list)
    authorization_server: AuthorizationServer | None = None

    async def flush(self) -> None:
        """Write what bookkeeping and the audit log still hold (before ``close``)."""
        await self.usage.flush()
        if self.audit is not None:
            self.audit.flush()

    def close(self) -> _Closed:
        """Release everything (the audit log is flushed). Plain or awaited: awaiting it also
        waits for Redis's connections to close (``runtime.close()`` leaves that to a task)."""
        closers, self.closers = self.closers, []
        for closer in reversed(closers):
            closer()
        redis, self.redis = self.redis, None
        if redis is None:
            return _Closed(None)
        try:
            return _Closed(asyncio.get_running_loop().create_task(redis.aclose()))
        except RuntimeError:  # no loop: the process's end closes the sockets
            return _Closed(None)


class _Closed:
    """What ``Runtime.close`` returns: awaiting it waits for what closes in the background."""

    def __init__(self, closing: asyncio.Task[None] | None) -> None:
        self._closing = closing
        if closing is not None:  # (kept until done, awaited or not)
            _CLOSING.add(closing)
            closing.add_done_callback(_CLOSING.discard)

    def __await__(self) -> Generator[Any, None, None]:
        if self._closing is not None:
            yield from self._closing.__await__()


_CLOSING: set[asyncio.Task[None]] = set()
AUDIT_FLUSH_SECONDS = 0.25


def _canceller(task: asyncio.Task[None]) -> Callable[[], None]:
    def cancel() -> None:
        task.cancel()

    return cancel


async def _flush_audit(audit: JsonLinesAudit) -> None:
    """Write the audit log's pending lines on a timer; while it fails, probe it so that
    readiness comes back as soon as it takes writes again."""
    while True:
        await asyncio.sleep(AUDIT_FLUSH_SECONDS)
        if audit.flush():
            audit.probe()


def open_redis_for(settings: Settings) -> RedisBackend | None:
    """The configured Redis (no connection is made until first use), or None."""
    if not settings.redis_url:
        return None
    try:
        from restguard.store.redis import open_redis
    except ImportError:  # (redis-py is the restguard[redis] extra)
        raise settings.error(
            ("storage", "redis"),
            "needs the Redis client, which is not installed",
            "pip install 'restguard[redis]'",
        ) from None
    try:
        return open_redis(
            settings.redis_url, timeout=settings.store_timeout, prefix=settings.redis_prefix
        )
    except ValueError as exc:  # (its message never repeats the URL: it may hold a password)
        raise settings.error(
            ("storage", "redis"), str(exc), 'write e.g. "redis://127.0.0.1:6379/0"'
        ) from None


def _limiter(
    settings: Settings, store: SqlStore, redis: RedisBackend | None, clock: Clock
) -> RateLimiter:
    """Where the counters of limits live: in Redis when it is configured; else in the database
    when more than one process may serve (``--workers``, or PostgreSQL, which several instances
    share); else in this process's memory. A limit is never multiplied by the processes. A
    shared limiter's refusals are remembered here while they last (``RefusalCache``: exact),
    so a flood from one address is not a flood of writes."""
    if redis is not None:
        return RefusalCache(redis.limiter, clock.monotonic)
    if settings.processes > 1 or not settings.database_url.startswith("sqlite"):
        return RefusalCache(store.rate_limits, clock.monotonic)
    return MemoryRateLimiter(clock.monotonic)


def _dropper(holders: Sequence[HoldsCache]) -> Callable[[str, str], None]:
    """What an announced revocation does here: every hot-path cache forgets what it holds
    (the records are read again; cheaper than knowing which cache holds what)."""

    def drop(kind: str, key: str) -> None:
        for holder in holders:
            holder.drop_cached()

    return drop


def open_store_for(settings: Settings, *, apply_migrations: bool = True) -> SqlStore:
    """The configured store, migrated to the current schema unless told otherwise."""
    if apply_migrations:
        migrate(settings.database_url)
    return open_store(settings.database_url, timeout=settings.store_timeout)


async def open_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sinks: Sequence[EventSink] = (),
    apply_migrations: bool = True,
) -> Runtime:
    """Build the whole object graph from settings (migrating the database first)."""
    check_routes_servable(settings)
    clock = clock or SystemClock()
    sealer = open_sealer(settings.master_key_path)
    sql = open_store_for(settings, apply_migrations=apply_migrations)
    usage = UsageBook(sql.api_keys.touch)
    closers: list[Callable[[], None]] = [sql.close, usage.close]
    redis = open_redis_for(settings)
    store: Store = sql
    if redis is not None:  # (closed by Runtime.close, or below on failure)
        store = announcing(sql, redis.revocations.publish)
    try:
        await ensure_master_key(store, sealer)  # before anything is sealed with it
        snapshot = await load_signing_keys(store.signing_keys, sealer, clock)
        keys = Keyring(
            store.signing_keys,
            sealer,
            clock,
            snapshot,
            reopen_sealer=lambda: open_sealer(settings.master_key_path),
        )
        refresher = asyncio.get_running_loop().create_task(keys.run())
        closers.append(_canceller(refresher))
        audit = None
        if settings.audit_path:
            try:
                audit = JsonLinesAudit(settings.audit_path, required=settings.audit_required)
            except OSError as exc:
                raise settings.error(
                    ("audit", "path"),
                    f"cannot open {settings.audit_path} ({exc.strerror or exc})",
                    'choose a writable path, or "" to turn the file off',
                ) from None
            closers.append(audit.close)
            flusher = asyncio.get_running_loop().create_task(_flush_audit(audit))
            closers.append(_canceller(flusher))
        clients = ClientCache(store.oauth2_clients)
        oauth1 = OAuth1Verifier(
            store.oauth1_consumers,
            store.oauth1_tokens,
            store.oauth1_nonces if redis is None else redis.oauth1_nonces,
            sealer,
            window=int(settings.server.oauth1_timestamp_window),
        )
        parts = Parts(
            settings,
            store,
            clock,
            sealer,
            usage,
            keys,
            clients,
            oauth1,
            store.signature_nonces if redis is None else redis.signature_nonces,
        )
        authenticators = {name: make(parts) for name, make in AUTHENTICATORS.items()}
        for authenticator in authenticators.values():
            if isinstance(authenticator, Background):
                closers.append(authenticator.close)
                await authenticator.start()
        if redis is not None:  # announced revocations: every cache forgets at once
            holders = [clients, oauth1, *authenticators.values()]
            redis.revocations.start(_dropper([h for h in holders if isinstance(h, HoldsCache)]))
        guard = Guard(
            Policy(list(settings.routes)),
            authenticators,
            clock,
            _limiter(settings, sql, redis, clock),
            sinks=[*([audit] if audit else []), *sinks],
            failed_attempts=settings.server.failed_attempts,
        )
    except BaseException:
        for closer in reversed(closers):
            closer()
        if redis is not None:
            await redis.aclose()
        raise
    minter = IdentityMinter(keys, settings.server.public_url, clock)
    public_url = settings.server.public_url
    # The access tokens' audience: the APIs behind this gateway, named by its public URL.
    tokens = AccessTokens(
        keys, public_url, public_url, clock, opaque=OpaqueTokens(store.oauth2_access_tokens)
    )

    def record(
        request: EndpointRequest,
        status: int,
        error: str | None,
        method: str | None,
        client_id: str | None,
        detail: str | None,
    ) -> None:
        guard.record(
            RequestView(request.method, request.path, client=request.client),
            status=status,
            started=clock.monotonic(),
            error=error,
            auth_method=method,
            credential_id=_credential_id(client_id),
            detail=detail,
        )

    # Revocation and introspection read tokens exactly as the gateway's oauth2 method does.
    inspector = guard.authenticators["oauth2"]
    if not isinstance(inspector, OAuth2Authenticator):
        raise TypeError("the oauth2 method must be restguard's OAuth2Authenticator")
    server = Server(
        ServerParts(
            public_url,
            clients,
            tokens,
            store,
            WebTokens(sealer),
            clock,
            inspector,
            failures=guard.failed_attempt,
            record=record,
            oauth1=oauth1,
            limiter=guard.limiter,
        )
    )
    return Runtime(
        settings, clock, store, sealer, guard, keys, minter, usage, audit, redis, closers, server
    )
