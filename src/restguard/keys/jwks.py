"""The JWKS cache for one external issuer (issue 8, item 2).

Two parts, as everywhere in restguard: ``JWKSPolicy`` decides and ``JWKSCache`` does the I/O.

``JWKSPolicy`` is sans-IO: it is told the (monotonic) time and the outcome of each fetch and
answers, for a ``kid``, one ``Lookup``: ``USE`` the key (perhaps also starting a background
refresh), ``UNKNOWN`` (the caller answers 401), ``FETCH`` (fetch, or join the fetch in flight,
then ask ``after_fetch``), or ``UNAVAILABLE`` (503, fail closed). The rules:

* Freshness from ``Cache-Control`` (``ttl_from_cache_control``): ``max-age`` clamped to
  ``[min_ttl, max_ttl]`` (60 s .. 24 h), ``default_ttl`` (5 min) without one, ``no-store`` /
  ``no-cache`` give ``min_ttl`` (keys are needed for every request, so they are kept that long).
* A background refresh is due ``refresh_ahead`` (30 s, at most a quarter of the TTL) before
  expiry, so requests do not wait on a fetch while the endpoint is up; after a failed refresh
  the next try comes ``retry_interval`` later.
* An unknown ``kid`` causes at most one fetch per ``refetch_cooldown`` (2 s, counted from the
  start of the last fetch of any kind): a key the issuer newly publishes is accepted within
  the cooldown plus one fetch (2 s + the 2 s fetch timeout < the contract's 5 s), and a flood
  of random ``kid``s costs the issuer one GET per 2 s. During the cooldown an unknown ``kid`` is
  answered ``UNKNOWN`` at once, except while a fetch is in flight: then it joins that one fetch.
* Endpoint down: keys past expiry keep working for ``max_stale`` (24 h), then every lookup is
  ``UNAVAILABLE`` until a fetch succeeds. With no usable keys a lookup may start a fetch (at most
  one per cooldown) and waits on it; otherwise it is ``UNAVAILABLE`` at once.
* Single flight: the policy knows whether a fetch is in flight (``begin_fetch`` /
  ``fetch_succeeded`` / ``fetch_failed``); the adapter keeps the one task.

So a request waits on at most one fetch, and only when it cannot be decided without one.

``JWKSCache`` is the asyncio adapter: ``await cache.key(kid)`` returns the ``VerificationKey``
or ``None`` (unknown: 401) or raises ``BackendUnavailable`` (503). Fetches run in a task
shielded from the request that started them (a client that goes away does not cancel the fetch
that others share). ``start()`` runs a timer task that refreshes ahead of expiry even without
traffic; ``aclose()`` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from restguard.clock import Clock
from restguard.errors import BackendUnavailable
from restguard.keys.jwk import KeySet, VerificationKey
from restguard.keys.jwks_fetch import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
    FetchedJWKS,
    JWKSEndpoint,
    JWKSFetchError,
    fetch_jwks,
    tls_context,
)

_log = logging.getLogger("restguard.jwks")

MIN_TTL: Final = 60.0
MAX_TTL: Final = 86400.0
DEFAULT_TTL: Final = 300.0
REFETCH_COOLDOWN: Final = 2.0
MAX_STALE: Final = 86400.0
REFRESH_AHEAD: Final = 30.0
RETRY_INTERVAL: Final = 10.0

__all__ = [
    "JWKSCache",
    "JWKSPolicy",
    "JWKSSettings",
    "Lookup",
    "Outcome",
    "ttl_from_cache_control",
]


@dataclass(frozen=True, slots=True)
class JWKSSettings:
    """The cache's bounds, in seconds. Checked at construction."""

    min_ttl: float = MIN_TTL
    max_ttl: float = MAX_TTL
    default_ttl: float = DEFAULT_TTL
    refetch_cooldown: float = REFETCH_COOLDOWN
    max_stale: float = MAX_STALE
    refresh_ahead: float = REFRESH_AHEAD
    retry_interval: float = RETRY_INTERVAL

    def __post_init__(self) -> None:
        if not 0 < self.min_ttl <= self.default_ttl <= self.max_ttl:
            raise ValueError("need 0 < min_ttl <= default_ttl <= max_ttl")
        if not 0 < self.refetch_cooldown <= 3:
            # the contract: a newly published key is accepted within 5 s (cooldown + a fetch)
            raise ValueError("refetch_cooldown must be in (0, 3] seconds")
        if self.max_stale < 0 or self.refresh_ahead < 0 or self.retry_interval <= 0:
            raise ValueError("max_stale and refresh_ahead must be >= 0, retry_interval > 0")


def ttl_from_cache_control(header: str | None, settings: JWKSSettings) -> float:
    """Seconds to keep a JWK Set, from its ``Cache-Control`` (RFC 9111 §5.2.2), clamped."""
    if header is None:
        return settings.default_ttl
    max_age: float | None = None
    for directive in header.split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return settings.min_ttl
        if name == "max-age" and max_age is None:
            value = value.strip().strip('"')
            if value.isascii() and value.isdigit():
                max_age = float(value)
    if max_age is None:
        return settings.default_ttl
    return min(max(max_age, settings.min_ttl), settings.max_ttl)


class Outcome(enum.Enum):
    USE = "use"  # the key is in ``Lookup.key``
    UNKNOWN = "unknown"  # no such key: 401
    FETCH = "fetch"  # fetch (or join the fetch in flight), then ``after_fetch``
    UNAVAILABLE = "unavailable"  # 503


@dataclass(frozen=True, slots=True)
class Lookup:
    outcome: Outcome
    key: VerificationKey | None = None
    refresh: bool = False  # also start a background refresh (not waited on)
    reason: str = ""  # for UNAVAILABLE and UNKNOWN: the audit log's detail


class JWKSPolicy:
    """The sans-IO state of one issuer's key cache. Times are monotonic seconds."""

    def __init__(self, settings: JWKSSettings | None = None) -> None:
        self.settings = settings or JWKSSettings()
        self.keys: KeySet | None = None
        self.fetched_at = 0.0
        self.expires_at = 0.0  # fresh until then
        self.stale_until = 0.0  # usable until then
        self.refresh_at = 0.0  # a background refresh is due then
        self.last_attempt: float | None = None  # start of the last fetch
        self.last_error = ""
        self.fetching = False

    # -- decisions
    def usable(self, now: float) -> bool:
        return self.keys is not None and now < self.stale_until

    def lookup(self, kid: str | None, now: float) -> Lookup:
        if not self.usable(now):
            if self.fetching or self._may_fetch(now):
                return Lookup(Outcome.FETCH)
            return self._unavailable(now)
        assert self.keys is not None
        key = self.keys.select(kid)
        if key is not None:
            return Lookup(Outcome.USE, key, refresh=self.refresh_due(now))
        if self.fetching or self._may_fetch(now):
            return Lookup(Outcome.FETCH)
        return Lookup(Outcome.UNKNOWN, refresh=self.refresh_due(now), reason=f"unknown kid {kid!r}")

    def after_fetch(self, kid: str | None, now: float) -> Lookup:
        """The answer once the fetch this lookup waited on is over: never another fetch."""
        if not self.usable(now):
            return self._unavailable(now)
        assert self.keys is not None
        key = self.keys.select(kid)
        if key is None:
            return Lookup(Outcome.UNKNOWN, reason=f"unknown kid {kid!r} after a fetch")
        return Lookup(Outcome.USE, key)

    def refresh_due(self, now: float) -> bool:
        """A background fetch should start now (keys held, none in flight, time has come)."""
        return not self.fetching and self.keys is not None and now >= self.next_refresh_at()

    def next_refresh_at(self) -> float:
        """When the next background refresh is due (monotonic seconds)."""
        at = self.refresh_at
        if self.last_attempt is not None and self.last_error:
            at = max(at, self.last_attempt + self.settings.retry_interval)
        return at

    # -- fetch events
    def begin_fetch(self, now: float) -> bool:
        """Record the start of a fetch; ``False`` if one is already in flight (join it)."""
        if self.fetching:
            return False
        self.fetching = True
        self.last_attempt = now
        return True

    def fetch_succeeded(self, keys: KeySet, cache_control: str | None, now: float) -> float:
        """Install a fetched key set; returns its TTL."""
        s = self.settings
        ttl = ttl_from_cache_control(cache_control, s)
        self.keys = keys
        self.fetched_at = now
        self.expires_at = now + ttl
        self.stale_until = self.expires_at + s.max_stale
        self.refresh_at = self.expires_at - min(s.refresh_ahead, ttl / 4)
        self.last_error = ""
        self.fetching = False
        return ttl

    def fetch_failed(self, reason: str, now: float) -> None:
        """Keep what is cached; note the failure (the retry waits ``retry_interval``)."""
        self.last_error = reason or "fetch failed"
        self.fetching = False

    # -- internals
    def _may_fetch(self, now: float) -> bool:
        last = self.last_attempt
        return last is None or now >= last + self.settings.refetch_cooldown

    def _unavailable(self, now: float) -> Lookup:
        if self.keys is None:
            why = "no JWK Set fetched yet"
        else:
            why = f"JWK Set expired {now - self.expires_at:.0f} s ago (max stale exceeded)"
        if self.last_error:
            why += f"; last fetch: {self.last_error}"
        return Lookup(Outcome.UNAVAILABLE, reason=why)


Fetcher = Callable[[], Awaitable[FetchedJWKS]]


class JWKSCache:
    """One issuer's JWKS cache on asyncio: ``await key(kid)``."""

    def __init__(
        self,
        jwks_uri: str,
        *,
        clock: Clock,
        settings: JWKSSettings | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ca_file: str | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.endpoint = JWKSEndpoint.parse(jwks_uri)  # ValueError: refused at construction
        if not 0 < timeout <= 30:
            raise ValueError("timeout must be in (0, 30] seconds")
        if not 0 < max_bytes <= 16 * 1024 * 1024:
            raise ValueError("max_bytes must be in (0, 16 MiB]")
        self.policy = JWKSPolicy(settings)
        self._clock = clock
        ssl_context = tls_context(ca_file) if self.endpoint.https else None
        endpoint = self.endpoint

        async def fetch() -> FetchedJWKS:
            return await fetch_jwks(
                endpoint, ssl_context=ssl_context, timeout=timeout, max_bytes=max_bytes
            )

        self._fetcher: Fetcher = fetcher or fetch
        self._inflight: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self.fetch_count = 0

    async def key(self, kid: str | None) -> VerificationKey | None:
        """The key for ``kid``; ``None`` if the issuer has no such key (401). Raises
        ``BackendUnavailable`` when no usable key set can be had (503)."""
        policy = self.policy
        decision = policy.lookup(kid, self._clock.monotonic())
        if decision.outcome is Outcome.FETCH:
            await self._fetch()
            decision = policy.after_fetch(kid, self._clock.monotonic())
        elif decision.refresh:
            self._start_fetch()
        if decision.outcome is Outcome.UNAVAILABLE:
            raise BackendUnavailable(debug=f"JWKS {self.endpoint.url}: {decision.reason}")
        return decision.key

    def keyset(self) -> KeySet | None:
        """The key set held now, if any (whether fresh or stale)."""
        return self.policy.keys

    def held(self, keys: KeySet) -> bool:
        """Whether ``keys`` is the set held now and still usable (fresh, or stale within its
        grace): what ``key`` would have used. A refresh that has come due starts, as ``key``
        starts it."""
        policy = self.policy
        if policy.keys is not keys:
            return False
        now = self._clock.monotonic()
        if not policy.usable(now):
            return False
        if policy.refresh_due(now):
            self._start_fetch()
        return True

    async def refresh(self) -> None:
        """Fetch now (or join the fetch in flight); failures are logged, not raised."""
        await self._fetch()

    def start(self) -> None:
        """Run the background refresher (call inside the running loop)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._refresher())

    def close(self) -> None:
        """Stop the refresher and any fetch without waiting (``aclose`` also waits)."""
        for task in (self._timer, self._inflight):
            if task is not None:
                task.cancel()

    async def aclose(self) -> None:
        for task in (self._timer, self._inflight):
            if task is not None:
                task.cancel()
        for task in (self._timer, self._inflight):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._timer = self._inflight = None

    # -- internals
    async def _refresher(self) -> None:
        while True:
            policy = self.policy
            now = self._clock.monotonic()
            if policy.keys is None or policy.refresh_due(now):
                await self._fetch()
                if policy.keys is None:  # nothing yet: try again after the retry interval
                    await asyncio.sleep(policy.settings.retry_interval)
                continue
            await asyncio.sleep(max(0.5, policy.next_refresh_at() - now))

    def _start_fetch(self) -> asyncio.Task[None]:
        task = self._inflight
        if task is None:
            self.policy.begin_fetch(self._clock.monotonic())
            task = self._inflight = asyncio.get_running_loop().create_task(self._run_fetch())
        return task

    async def _fetch(self) -> None:
        # shield: a request that goes away does not cancel the fetch others wait on
        task = self._start_fetch()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                # The fetch was stopped under the request (the issuer removed, shutdown): the
                # request is not cancelled itself, so it gets an answer: no keys, 503.
                raise BackendUnavailable(
                    debug=f"JWKS {self.endpoint.url}: the fetch was stopped"
                ) from None
            raise

    async def _run_fetch(self) -> None:
        self.fetch_count += 1
        try:
            fetched = await self._fetcher()
        except JWKSFetchError as exc:
            self.policy.fetch_failed(str(exc), self._clock.monotonic())
            _log.warning("JWKS %s: fetch failed: %s", self.endpoint.url, exc)
        except Exception as exc:  # a bug or an unexpected error: never leave fetching set
            self.policy.fetch_failed(f"{type(exc).__name__}: {exc}", self._clock.monotonic())
            _log.exception("JWKS %s: fetch failed", self.endpoint.url)
        else:
            ttl = self.policy.fetch_succeeded(
                fetched.keys, fetched.cache_control, self._clock.monotonic()
            )
            _log.info(
                "JWKS %s: %d keys, cached for %.0f s", self.endpoint.url, len(fetched.keys), ttl
            )
        finally:
            if self.policy.fetching:  # cancelled (aclose): not left in flight
                self.policy.fetch_failed("cancelled", self._clock.monotonic())
            self._inflight = None
