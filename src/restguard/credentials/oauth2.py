"""``oauth2``: access tokens issued by restguard's own authorization server (issue 9).

Which Bearer tokens are this method's (``credentials/jwt.py`` explains the dispatch): JWS
tokens whose unverified ``iss`` is restguard's ``public_url``, and restguard's opaque ``rg_at_``
tokens (``credentials/opaque_tokens.py``: checked for form and checksum, then looked up by hash in
the store; remembered like a verified JWT, their client and revocation checked every time).

A JWT access token is verified locally with the keyring's public keys, by the same strict
verifier as external issuers' (``keys/jwt_verify``): the algorithm from the key, ``typ``
``at+jwt`` (RFC 9068 §4: so no other JWT restguard signs passes as an access token), ``iss``
exactly ``public_url``, ``aud``, ``exp``. Its signing key must still be published (a key past
its retirement verifies nothing), and its client must not be revoked: client records are read
through a cache of at most one second, so a revocation takes effect on every instance within
a second.

A token that passed is remembered (as in ``credentials/jwt.py``) while the keyring's snapshot is
the one it was verified with, until its ``exp``, its key's retirement or ``VERIFIED_TTL``; its
client is still checked (through the one-second cache) every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from restguard.clock import Clock, wait_for_event
from restguard.credentials.base import AuthContext, Credential
from restguard.credentials.bearer import bearer_token, jws_bearer_token
from restguard.credentials.opaque_tokens import PREFIX, OpaqueTokens, well_formed
from restguard.credentials.read_through import ReadThrough
from restguard.errors import AuthError, BackendUnavailable, InvalidCredential, InvalidRequest
from restguard.keys.jwk import KeySet
from restguard.keys.jwt_verify import (
    MAX_TOKEN_BYTES_LIMIT,
    JWTVerifier,
    Rules,
    TokenInvalid,
    decode_part,
)
from restguard.keys.signing import SigningKeys
from restguard.store.ports import OAuthClientRecord, OAuthClientStore, RevokedTokenStore
from restguard.types import Principal, RequestView, verified_principal

CHALLENGE: Final = 'Bearer realm="restguard"'
OPAQUE_PREFIX: Final = PREFIX.encode()
OPAQUE_PREFIX_TEXT: Final = PREFIX
CLIENT_CACHE_SECONDS: Final = 1.0
VERIFIED_TTL: Final = 300.0  # seconds a verified token is remembered, at most
_VERIFIED_SIZE: Final = 4096
_VERIFIED_MAX_CHARS: Final = 2048
# Bearer JWTs whose payload was read to tell whose they are (``_claim``): the answer, a pure
# function of the token's bytes, is kept so that a token of another method (an external
# issuer's, for ``jwt``) is not base64- and JSON-decoded twice on every request.
_CLAIMS_SIZE: Final = 1024
_HEADERS: Final = (b"authorization",)
_OPAQUE: Final = "oauth2:opaque"  # the audit log's name of a token not verified yet
REVOCATIONS_SECONDS: Final = 0.5
_log = logging.getLogger("restguard.oauth2")


class KeyringView(Protocol):
    """What the authenticator reads of the keyring: its current snapshot."""

    @property
    def current(self) -> SigningKeys: ...


class ClientCache:
    """OAuth 2.0 client records read through a cache of at most ``CLIENT_CACHE_SECONDS``
    (``read_through.ReadThrough``), so a revocation applies on every instance within a second.
    Shared by the token endpoint and the ``oauth2`` authenticator of one process."""

    def __init__(self, clients: OAuthClientStore, ttl: float = CLIENT_CACHE_SECONDS) -> None:
        self._cache = ReadThrough(clients.get, _nothing, ttl)  # ValueError past a second

    async def get(self, client_id: str) -> OAuthClientRecord | None:
        found = await self._cache.get(client_id)  # BackendUnavailable: 503
        return None if found is None else found[0]

    def drop_cached(self) -> None:
        self._cache.drop_cached()


def _nothing(record: OAuthClientRecord) -> None:
    """(A client record has nothing to derive.)"""


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token that passed: with which key snapshot, until when, as whom."""

    keys: SigningKeys | None  # None: an opaque token
    kid: str
    until: float
    credential_id: str
    principal: Principal
    jti: str
    claims: Mapping[str, Any]


class RevocationList:
    """The ``jti`` of every access token revoked before its expiry (RFC 7009), read from the
    store every ``REVOCATIONS_SECONDS`` in a background task, so a revocation on any instance
    applies on every instance within a second. A store outage keeps the last list (tokens
    verify locally); before the first read nothing is known, and ``oauth2`` answers 503."""

    def __init__(self, store: RevokedTokenStore, clock: Clock) -> None:
        self._store, self._clock = store, clock
        self._jtis: frozenset[str] = frozenset()
        self._added: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.loaded = False

    def revoked(self, jti: str) -> bool:
        return jti in self._jtis or jti in self._added

    def add(self, jti: str) -> None:
        self._added.add(jti)

    async def refresh(self) -> None:
        added = set(self._added)
        self._jtis = frozenset(await self._store.active(self._clock.now()))
        self._added -= added  # (now in the store's list, or expired)
        self.loaded = True

    async def start(self) -> None:
        with contextlib.suppress(BackendUnavailable):
            await self.refresh()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def drop_cached(self) -> None:
        """Read the list again now rather than at the next tick (a revocation was announced)."""
        self._wake.set()

    async def _follow(self) -> None:
        while True:
            await wait_for_event(self._wake, REVOCATIONS_SECONDS)
            self._wake.clear()
            try:
                await self.refresh()
            except BackendUnavailable:
                pass  # keep the last list; the store's outage is reported elsewhere
            except Exception:
                _log.exception("reading the revoked access tokens failed")


class OAuth2Authenticator:
    """Verifies restguard's own access tokens."""

    method = "oauth2"
    header_names = frozenset(_HEADERS)  # (ReadsHeaders)
    stable_extract = True  # (ReadsHeaders: an opaque token's client is named by ``attributed``)
    unrepeated = False  # (ReadsHeaders)
    presentation = (
        "an access token from restguard's authorization server in 'Authorization: Bearer <token>'"
    )

    def __init__(
        self,
        keyring: KeyringView,
        clients: OAuthClientStore | ClientCache,
        clock: Clock,
        *,
        issuer: str,
        audience: str,
        revocations: RevocationList | None = None,
        opaque: OpaqueTokens | None = None,
    ) -> None:
        """``revocations``: the revoked tokens (None: none are, for tests and tools);
        ``opaque``: where opaque tokens are looked up (None: every one is refused)."""
        self._opaque, self._audience = opaque, audience
        self._revocations = revocations or _NoRevocations()
        self._keyring, self._clock = keyring, clock
        self._clients = clients if isinstance(clients, ClientCache) else ClientCache(clients)
        self._issuer = issuer
        self._rules = Rules(issuer, audience, typ="at+jwt")
        self._verifier: JWTVerifier | None = None
        self._verifier_keys: KeySet | None = None
        self._verified: dict[str, _Verified] = {}
        self._claims: dict[bytes, tuple[str, str] | None] = {}

    def drop_cached(self) -> None:
        self._clients.drop_cached()
        self._revocations.drop_cached()

    def _claim(self, view: RequestView) -> tuple[str, str] | None:
        """(token, client id for the audit log) if the Bearer token is this method's."""
        raw = bearer_token(view)
        if raw is None:
            return None
        if raw.startswith(OPAQUE_PREFIX):
            if not raw.isascii():
                raise InvalidCredential(debug="an opaque access token that is not ASCII")
            return raw.decode("ascii"), ""
        if raw in self._claims:  # read before (only JWS-shaped tokens are kept)
            return self._claims[raw]
        if len(raw) > MAX_TOKEN_BYTES_LIMIT or jws_bearer_token(view) is None:
            return None  # not a JWS: jwt's (which refuses it as malformed)
        token = raw.decode("ascii")
        payload = decode_part(token.split(".")[1], "payload")  # (malformed: raises, not kept)
        claimed = None
        if payload.get("iss") == self._issuer:
            client_id = payload.get("client_id")
            claimed = token, client_id if isinstance(client_id, str) else ""
        if len(raw) <= _VERIFIED_MAX_CHARS:
            if len(self._claims) >= _CLAIMS_SIZE:
                self._claims.clear()
            self._claims[raw] = claimed
        return claimed

    def carriers(self, view: RequestView) -> tuple[bytes, ...]:
        try:
            return _HEADERS if self._claim(view) is not None else ()
        except (InvalidRequest, InvalidCredential):
            return _HEADERS

    def extract(self, view: RequestView) -> Credential | None:
        """The token, named by its JWT's ``client_id`` claim, or ``oauth2:opaque`` until it is
        verified (``attributed``). A function of the header alone (``stable_extract``)."""
        claimed = self._claim(view)
        if claimed is None:
            return None
        token, client_id = claimed
        return Credential(self.method, token, _shown(client_id) if client_id else _OPAQUE, _HEADERS)

    def attributed(self, credential: Credential, principal: Principal) -> Credential:
        """(``Attributes``) An opaque token, once verified, is named by its client."""
        if credential.credential_id != _OPAQUE:
            return credential
        hit = self._verified.get(credential.secret)
        shown = hit.credential_id if hit is not None else _shown(principal.client_id)
        return Credential(self.method, credential.secret, shown, credential.headers)

    def _verifier_for(self, keys: SigningKeys) -> JWTVerifier:
        keyset = keys.keyset()
        if self._verifier is None or self._verifier_keys is not keyset:
            self._verifier = JWTVerifier(keyset, self._rules)
            self._verifier_keys = keyset
        return self._verifier

    async def _active(self, client_id: str, now: datetime) -> None:
        client = await self._clients.get(client_id)
        if client is None or not (client.revoked_at is None or client.revoked_at > now):
            raise InvalidCredential(debug="the token's client is unknown or revoked")

    async def verified(self, token: str, now: datetime) -> _Verified:
        """The token's facts if it is a live access token of this server: signature, claims,
        a published key, its client not revoked, itself not revoked (RFC 7009). Raises
        ``InvalidCredential`` otherwise (``BackendUnavailable`` when that cannot be known)."""
        if not self._revocations.loaded:
            raise BackendUnavailable(debug="the revoked tokens could not be read yet")
        if token.startswith(OPAQUE_PREFIX_TEXT):
            return await self._verified_opaque(token, now)
        keys = self._keyring.current
        hit = self._verified.get(token)
        at = now.timestamp()
        if hit is not None and hit.keys is keys and at < hit.until:
            await self._active(hit.principal.client_id, now)  # client revocation: within 1 s
            if self._revocations.revoked(hit.jti):
                raise InvalidCredential(debug="the access token was revoked")
            return hit
        result = self._verifier_for(keys).verify(token, now)
        key = next((k for k in keys.live(now) if k.kid == result.kid), None)
        if key is None:
            raise TokenInvalid("signed by a key no longer published")
        claims = result.claims
        client_id, subject, scope = claims.get("client_id"), claims.get("sub"), claims.get("scope")
        jti = claims.get("jti")
        if not isinstance(client_id, str) or not isinstance(subject, str):
            raise TokenInvalid("'client_id' or 'sub' missing")
        if not isinstance(jti, str) or not jti:
            raise TokenInvalid("'jti' missing")
        if scope is not None and not isinstance(scope, str):
            raise TokenInvalid("'scope' is not a string")
        await self._active(client_id, now)
        if self._revocations.revoked(jti):
            raise InvalidCredential(debug="the access token was revoked")
        principal = verified_principal(
            subject=subject,
            client_id=client_id,
            scopes=frozenset(s for s in (scope or "").split(" ") if s),
            auth_method=self.method,
        )
        # until the token expires, its key retires, or VERIFIED_TTL: whichever comes first
        ends = [result.expires_at, at + VERIFIED_TTL]
        if key.retired_at is not None:
            ends.append(key.retired_at.timestamp())
        facts = _Verified(keys, key.kid, min(ends), _shown(client_id), principal, jti, claims)
        if len(token) <= _VERIFIED_MAX_CHARS:
            if len(self._verified) >= _VERIFIED_SIZE:
                self._verified.clear()
            self._verified[token] = facts
        return facts

    async def _verified_opaque(self, token: str, now: datetime) -> _Verified:
        at = now.timestamp()
        hit = self._verified.get(token)
        if hit is not None and hit.keys is None and at < hit.until:
            await self._active(hit.principal.client_id, now)
            if self._revocations.revoked(hit.jti):
                raise InvalidCredential(debug="the access token was revoked")
            return hit
        if self._opaque is None or not well_formed(token):
            raise InvalidCredential(debug="a malformed opaque access token")
        record = await self._opaque.find(token)  # BackendUnavailable: 503
        if record is None:
            raise InvalidCredential(debug="an unknown opaque access token")
        if record.expires_at <= now:
            raise InvalidCredential(debug="the opaque access token expired")
        await self._active(record.client_id, now)
        if self._revocations.revoked(record.jti):
            raise InvalidCredential(debug="the access token was revoked")
        principal = verified_principal(
            subject=record.subject,
            client_id=record.client_id,
            scopes=frozenset(record.scopes),
            auth_method=self.method,
        )
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": record.subject,
            "client_id": record.client_id,
            "scope": " ".join(record.scopes),
            "iat": int(record.created_at.timestamp()),
            "exp": int(record.expires_at.timestamp()),
            "jti": record.jti,
        }
        until = min(record.expires_at.timestamp(), at + VERIFIED_TTL)
        facts = _Verified(None, "", until, _shown(record.client_id), principal, record.jti, claims)
        if len(self._verified) >= _VERIFIED_SIZE:
            self._verified.clear()
        self._verified[token] = facts
        return facts

    async def authenticate(self, credential: Credential, ctx: AuthContext) -> Principal:
        return (await self.verified(credential.secret, ctx.now)).principal

    def revoked(self, jti: str) -> None:
        """Note a revocation made by this process at once (others see it within a second)."""
        self._revocations.add(jti)

    async def start(self) -> None:
        await self._revocations.start()

    def close(self) -> None:
        self._revocations.close()

    def challenge(self, error: AuthError | None) -> str:
        if isinstance(error, InvalidCredential):
            return CHALLENGE + ', error="invalid_token"'
        return CHALLENGE


def _shown(client_id: str) -> str:
    """The audit log's name of a client's token: ``oauth2:`` and the client id, made safe."""
    return "oauth2:" + re.sub(r"[^A-Za-z0-9_-]", "?", client_id[:64])


class _NoRevocations(RevocationList):
    """No store of revocations: nothing is revoked (tests, tools)."""

    def __init__(self) -> None:
        self._jtis, self._added, self._task, self.loaded = frozenset(), set(), None, True
        self._wake = asyncio.Event()

    async def start(self) -> None:
        return None
