"""The trusted external issuers, kept in step with the store (``restguard issuer add|remove``).

``new_issuer`` checks what ``issuer add`` is given and makes the record; every problem is a
``ValueError`` naming the option. ``IssuerDirectory`` reloads the ``issuers`` table every
``REFRESH_SECONDS`` in a background task and hands the ``JwtAuthenticator`` the current set, so
an issuer added or removed on any instance takes effect everywhere within a second. Each issuer
gets its own ``JWKSCache``, started at once so that its keys are fetched off the request path.
While the store cannot be read the last set stays in force (locally verifiable tokens keep
working in a database outage); before the first successful read, ``jwt`` answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Final
from urllib.parse import urlsplit

from restguard.clock import Clock, wait_for_event
from restguard.credentials.jwt import (
    MAX_ISSUER_ID_CHARS,
    SCOPE_CLAIMS,
    JwtIssuer,
    KeySource,
    StaticKeys,
)
from restguard.errors import BackendUnavailable
from restguard.keys.jwk import KeySet
from restguard.keys.jwks import JWKSCache
from restguard.keys.jwks_fetch import JWKSEndpoint, is_loopback
from restguard.keys.jwt_verify import MAX_LEEWAY
from restguard.store.ports import IssuerRecord, IssuerStore

REFRESH_SECONDS: Final = 0.5
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_LEN = 12
# What an issuer identifier may hold: printable ASCII URL characters (so the audit log's
# ``jwt:<issuer>`` names exactly one issuer).
_ISSUER_CHARS = re.compile(r"[A-Za-z0-9:/._~%@!$&'()*+,;=-]+")
_TYP = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,64}(/[A-Za-z0-9!#$&^_.+-]{1,64})?")
_log = logging.getLogger("restguard.jwt")

#: JWS names and the spellings ``--alg`` also takes.
ALG_NAMES: Final = {
    "eddsa": "EdDSA",
    "ed25519": "EdDSA",
    "es256": "ES256",
    "rs256": "RS256",
}


def check_issuer(issuer: str, own_issuer: str | None = None) -> str:
    """An issuer identifier restguard can trust: an ``https://`` URL (``http://`` only on
    loopback) with no query or fragment (RFC 8414 §2, OpenID Connect Discovery §4.3: the
    ``iss`` claim is compared to it exactly, so it is kept as given, trailing slash and all)."""
    if not issuer or len(issuer) > MAX_ISSUER_ID_CHARS or not _ISSUER_CHARS.fullmatch(issuer):
        raise ValueError(
            f"must be a URL of at most {MAX_ISSUER_ID_CHARS} printable ASCII characters"
        )
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an https:// URL (the token's exact 'iss' value)")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("must be https:// (http:// only for a loopback issuer)")
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        raise ValueError("must have no query or fragment (RFC 8414 §2)")
    if own_issuer is not None and issuer.rstrip("/") == own_issuer.rstrip("/"):
        raise ValueError(
            "is restguard's own public_url: its tokens belong to the oauth2 method, not jwt"
        )
    return issuer


def algorithm_names(values: Iterable[str]) -> tuple[str, ...]:
    """JWS names for ``--alg`` values (``EdDSA``/``ed25519``, ``ES256``, ``RS256``)."""
    names = []
    for value in values:
        name = ALG_NAMES.get(value.lower())
        if name is None:
            raise ValueError(f"'{value}' is not one of EdDSA, ES256, RS256")
        names.append(name)
    return tuple(dict.fromkeys(names)) or ("EdDSA", "ES256", "RS256")


def new_issuer(
    *,
    issuer: str,
    jwks_uri: str,
    audience: str,
    now: datetime,
    algorithms: Iterable[str] = (),
    scope_claim: str = "scope",
    typ: str | None = None,
    leeway: float = 0,
    own_issuer: str | None = None,
) -> IssuerRecord:
    """A record for ``restguard issuer add``; ``ValueError("--option: problem")`` otherwise."""

    def check(option: str, test: Callable[[], object]) -> None:
        try:
            test()
        except ValueError as exc:
            raise ValueError(f"{option}: {exc}") from None

    check("--issuer", lambda: check_issuer(issuer, own_issuer))
    check("--jwks-uri", lambda: JWKSEndpoint.parse(jwks_uri))
    if (
        not audience
        or not audience.isprintable()
        or len(audience) > 500
        or audience != audience.strip()
    ):
        raise ValueError("--audience: must be 1 to 500 printable characters (the 'aud' value)")
    names: tuple[str, ...] = ()

    def algs() -> None:
        nonlocal names
        names = algorithm_names(algorithms)

    check("--alg", algs)
    if scope_claim not in SCOPE_CLAIMS:
        raise ValueError(f"--scope-claim: must be one of {', '.join(sorted(SCOPE_CLAIMS))}")
    if typ is not None and not _TYP.fullmatch(typ):
        raise ValueError("--typ: must be a media type such as at+jwt")
    if not 0 <= leeway <= MAX_LEEWAY:
        raise ValueError(f"--leeway: must be between 0 and {MAX_LEEWAY:g} seconds")
    issuer_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LEN))
    record = IssuerRecord(
        issuer_id, issuer, jwks_uri, audience, names, scope_claim, typ, now, float(leeway)
    )
    config(record, StaticKeys(KeySet(())))  # every rule the verifier will apply, checked now
    return record


def config(record: IssuerRecord, keys: KeySource) -> JwtIssuer:
    """The verifier's view of a stored issuer."""
    return JwtIssuer(
        issuer=record.issuer,
        audience=record.audience,
        keys=keys,
        algorithms=frozenset(record.algorithms),
        scope_claim=record.scope_claim,
        typ=record.typ,
        leeway=record.leeway,
    )


KeySourceFactory = Callable[[IssuerRecord], KeySource]


class IssuerDirectory:
    """Keeps a ``JwtAuthenticator``'s issuers in step with the store (see the module doc)."""

    def __init__(
        self,
        store: IssuerStore,
        apply: Callable[[list[JwtIssuer]], None],
        clock: Clock,
        *,
        sources: KeySourceFactory | None = None,
        interval: float = REFRESH_SECONDS,
    ) -> None:
        self._store, self._apply, self._clock = store, apply, clock
        self._sources = sources or (lambda rec: JWKSCache(rec.jwks_uri, clock=clock))
        self._interval = interval
        self._held: dict[IssuerRecord, JwtIssuer] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.loaded = False

    async def refresh(self) -> None:
        """Read the issuers and apply any change (BackendUnavailable if the store fails)."""
        records = await self._store.list()
        if self.loaded and set(records) == set(self._held):
            return
        held: dict[IssuerRecord, JwtIssuer] = {}
        for record in records:
            current = self._held.get(record)
            if current is None:
                try:
                    current = config(record, self._sources(record))
                except ValueError as exc:  # a row written by hand, or by a future version
                    _log.error("issuer %s (%s) ignored: %s", record.id, record.issuer, exc)
                    continue
                current.keys.start()
            held[record] = current
        gone = [issuer for record, issuer in self._held.items() if record not in held]
        self._held = held
        self._apply(list(held.values()))
        self.loaded = True
        for issuer in gone:
            issuer.keys.close()

    async def start(self) -> None:
        """Load the issuers once (a failure is logged: ``jwt`` answers 503 until a read
        succeeds), then keep them in step in the background."""
        with contextlib.suppress(BackendUnavailable):
            await self.refresh()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for issuer in self._held.values():
            issuer.keys.close()

    def drop_cached(self) -> None:
        """Read the issuers again now rather than at the next tick (one was removed)."""
        self._wake.set()

    async def _follow(self) -> None:
        failing = False
        while True:
            await wait_for_event(self._wake, self._interval)
            self._wake.clear()
            try:
                await self.refresh()
            except BackendUnavailable as exc:
                if not failing:
                    _log.warning("cannot read the issuers (keeping the last set): %s", exc.debug)
                failing = True
            except Exception:  # a bug must not stop the directory for good
                _log.exception("issuer refresh failed")
            else:
                failing = False
