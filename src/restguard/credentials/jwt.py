"""``jwt``: access tokens of external issuers (Auth0, Keycloak, Okta...), issue 8 item 3-4.

A token comes in ``Authorization: Bearer <token>`` (RFC 6750 §2.1). That header is shared, so
each method claims a disjoint set of Bearer tokens and the guard never sees two credentials in
one header (its "send one credential" 400 stays for requests that really carry two):

* ``api_key``: the ``rg_ak_`` prefix;
* ``oauth2`` (restguard's own authorization server): its opaque ``rg_`` tokens, and JWS tokens
  whose unverified ``iss`` is restguard's own ``public_url`` (``own_issuer``);
* ``jwt``: every other Bearer token, whatever its ``iss`` — an unknown issuer is an invalid
  token (401), never passed on, and so is a value that is not a JWS compact serialisation
  (three base64url parts): a malformed token is an invalid one (RFC 6750 §3.1).

So a route accepting several Bearer methods sends each token to the verifier it belongs to, by
format and then by issuer, and a route accepting only one answers 401 "does not accept this
Bearer token" for the others'. An external issuer may not be restguard's own ``public_url``
(``jwt_issuers.check_issuer`` refuses it).

``authenticate`` routes the token to its issuer by the (unverified) ``iss`` claim, asks the
issuer's key source for the header's ``kid`` (``JWKSCache.key``: an unknown ``kid`` causes at
most one fetch per cooldown, past max-stale it raises ``BackendUnavailable``: 503, fail closed),
then verifies with that issuer's ``JWTVerifier`` (``keys.jwt_verify``: algorithm from the key,
``iss`` exact, ``aud``, ``exp``, ``typ``...). The verifier is rebuilt only when the source's
``KeySet`` object changes. Nothing read before verification is trusted: it only chooses which
issuer and key to verify with.

A token that passed is remembered (``_Verified``, keyed by the token itself) so that a client
sending it again is not verified again: the hot path of a gateway sees the same token many
times. A remembered token still goes through its key source first (so a JWKS past max-stale
still answers 503), and counts only while its issuer and that issuer's key set are the very
objects it was verified with (an issuer removed, or keys refetched, means verifying again), and
until its ``exp`` (plus leeway) or ``VERIFIED_TTL``, whichever comes first.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from restguard.clock import Clock
from restguard.credentials.base import AuthContext, Background, Credential, HoldsCache
from restguard.credentials.bearer import bearer_token, jws_bearer_token
from restguard.errors import AuthError, BackendUnavailable, InvalidCredential, InvalidRequest
from restguard.keys.jwt_verify import (
    MAX_KID_LENGTH,
    MAX_TOKEN_BYTES_LIMIT,
    JWTVerifier,
    KeySet,
    Rules,
    TokenInvalid,
    VerificationKey,
    VerifiedToken,
    decode_part,
)
from restguard.types import Principal, RequestView, verified_principal

ALGORITHMS: Final = frozenset({"EdDSA", "ES256", "RS256"})
# RFC 9864 names Ed25519 signatures "Ed25519" (fully specified); "EdDSA" (RFC 8037) is the
# older name for the same thing. Allowing one allows both: which a token may use is still the
# key's choice (keys/jwk.py: a JWK with "alg": "Ed25519" verifies only tokens that say so).
_SAME_ALGORITHM: Final = {"Ed25519": "EdDSA"}
SCOPE_CLAIMS: Final = frozenset({"scope", "scp", "permissions"})
MAX_ISSUER_ID_CHARS: Final = 120
CHALLENGE: Final = 'Bearer realm="restguard"'

_OWN_PREFIX = b"rg_"  # restguard's own credentials (API keys, opaque tokens): not ours
_UNSAFE = re.compile(r"[^A-Za-z0-9:/._~%?#@!$&'()*+,;=-]")
_KID_CACHE_SIZE: Final = 16
VERIFIED_TTL: Final = 300.0  # seconds a verified token is remembered, at most
_VERIFIED_SIZE: Final = 2048  # tokens remembered, at most (cleared when full)
_VERIFIED_MAX_CHARS: Final = 2048  # longer tokens are verified every time (bounded memory)
_OWN_SIZE: Final = 1024  # restguard's own tokens seen, at most (cleared when full)
_log = logging.getLogger("restguard.jwt")


class KeySource(Protocol):
    """An issuer's verification keys: ``JWKSCache``, or ``StaticKeys`` for a fixed set."""

    async def key(self, kid: str | None) -> VerificationKey | None:
        """The key for ``kid`` (None: the issuer has none); may raise BackendUnavailable."""
        ...

    def keyset(self) -> KeySet | None:
        """The key set held now."""
        ...

    def held(self, keys: KeySet) -> bool:
        """Whether ``keys`` is the set held now and may still be used (a token verified with
        it needs no other look); a refresh that has come due starts in the background."""
        ...

    def start(self) -> None:
        """Begin keeping the keys current (inside the running loop)."""
        ...

    def close(self) -> None:
        """Stop any background work."""
        ...


class StaticKeys:
    """A fixed ``KeySet`` as a ``KeySource`` (tests, keys given in the configuration)."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    async def key(self, kid: str | None) -> VerificationKey | None:
        return self.keys.select(kid)

    def keyset(self) -> KeySet | None:
        return self.keys

    def held(self, keys: KeySet) -> bool:
        return keys is self.keys

    def start(self) -> None:
        """Nothing to keep current."""

    def close(self) -> None:
        """Nothing to stop."""


@dataclass(frozen=True, slots=True)
class JwtIssuer:
    """One trusted external issuer. ``scope_claim``: ``scope`` (a space-separated string,
    RFC 8693 §4.2) or ``scp`` / ``permissions`` (arrays of strings: Okta, Auth0 RBAC).
    Unsafe values are refused at construction (ValueError)."""

    issuer: str
    audience: str
    keys: KeySource = field(compare=False)
    algorithms: frozenset[str] = ALGORITHMS
    scope_claim: str = "scope"
    typ: str | None = None
    leeway: float = 0
    rules: Rules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        algorithms = frozenset(self.algorithms)
        if not algorithms or not algorithms <= ALGORITHMS:
            raise ValueError(f"algorithms must be a non-empty subset of {sorted(ALGORITHMS)}")
        if self.scope_claim not in SCOPE_CLAIMS:
            raise ValueError(f"scope_claim must be one of {sorted(SCOPE_CLAIMS)}")
        object.__setattr__(self, "algorithms", algorithms)
        rules = Rules(self.issuer, self.audience, leeway=self.leeway, typ=self.typ)
        object.__setattr__(self, "rules", rules)


def issuer_id(iss: str) -> str:
    """``jwt:<iss>`` for the audit log: the issuer (public), printable, truncated."""
    return "jwt:" + _UNSAFE.sub("?", iss[:MAX_ISSUER_ID_CHARS])


@dataclass(slots=True)
class _Issuer:
    config: JwtIssuer
    verifier: JWTVerifier
    kids: dict[str, str | None] = field(default_factory=dict)  # encoded header -> kid

    def verifier_for(self, keys: KeySet) -> JWTVerifier:
        if self.verifier.keys is not keys:  # new keys: a new verifier, built once per set
            self.verifier = self.verifier.with_keys(keys)
        return self.verifier

    def kid(self, token: str) -> str | None:
        h64 = token.partition(".")[0]
        try:
            return self.kids[h64]
        except KeyError:
            pass
        kid = decode_part(h64, "header").get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
            raise TokenInvalid("header 'kid' is not a short string")
        if len(self.kids) >= _KID_CACHE_SIZE:
            self.kids.clear()
        self.kids[h64] = kid
        return kid


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token that passed: for whom, against which issuer and key set, until when."""

    credential_id: str
    issuer: _Issuer
    keys: KeySet
    until: float
    principal: Principal


def _scopes(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    value = claims.get(name)
    if value is None:
        return frozenset()
    if name == "scope":
        if type(value) is not str:
            raise TokenInvalid("'scope' is not a string")
        # RFC 6749 §3.3: scope-tokens delimited by SP only; any other white space stays in
        # a token (and makes it invalid there), never a second delimiter.
        return frozenset(s for s in value.split(" ") if s)
    if type(value) is not list or not all(type(s) is str for s in value):
        raise TokenInvalid(f"'{name}' is not an array of strings")
    return frozenset(value)


class JwtAuthenticator:
    """Verifies JWTs of the configured external issuers."""

    method = "jwt"
    header_names = frozenset({b"authorization"})  # (ReadsHeaders)
    stable_extract = True  # (ReadsHeaders)
    unrepeated = False  # (ReadsHeaders)
    presentation = "a JWT in 'Authorization: Bearer <token>'"

    def __init__(
        self,
        issuers: Iterable[JwtIssuer] | None,
        clock: Clock,
        *,
        own_issuer: str | None = None,
    ) -> None:
        """``issuers=None``: not known yet (503 until ``set_issuers``, which a
        ``Background`` given to ``follow`` calls). ``own_issuer``: restguard's ``public_url``,
        whose tokens are left to ``oauth2``."""
        self._clock = clock
        self._own = own_issuer
        # Tokens whose payload named restguard itself as ``iss`` (oauth2's): a pure function of
        # the token's bytes, kept so that they are not decoded again on every request.
        self._own_tokens: set[bytes] = set()
        self._issuers: dict[str, _Issuer] = {}
        self._loaded = issuers is not None
        self._background: Background | None = None
        self._verified: dict[str, _Verified] = {}
        if issuers is not None:
            self.set_issuers(issuers, strict=True)

    def set_issuers(self, issuers: Iterable[JwtIssuer], *, strict: bool = False) -> None:
        """Trust exactly ``issuers`` from now on. An issuer already trusted keeps its verifier.
        Two issuers with one id: ValueError if ``strict``, else the first wins (logged)."""
        held: dict[str, _Issuer] = {}
        for config in issuers:
            key = issuer_id(config.issuer)
            if key in held:
                if strict:
                    raise ValueError(f"issuer {config.issuer!r} is configured twice")
                _log.error("issuer %s is configured twice; the first one is used", key)
                continue
            old = self._issuers.get(key)
            if old is not None and old.config is config:
                held[key] = old
            else:
                held[key] = _Issuer(config, JWTVerifier(KeySet(()), config.rules))
        self._issuers = held
        self._loaded = True
        self._verified = {}

    def follow(self, background: Background) -> None:
        """Let ``background`` keep the issuers current (started and closed with the runtime)."""
        self._background = background

    async def start(self) -> None:
        if self._background is not None:
            await self._background.start()

    def close(self) -> None:
        if self._background is not None:
            self._background.close()

    def drop_cached(self) -> None:
        if isinstance(self._background, HoldsCache):
            self._background.drop_cached()

    @staticmethod
    def _bearer(view: RequestView) -> bytes | None:
        """The Bearer token unless it is one of restguard's own (``rg_``), JWT-shaped or not."""
        token = bearer_token(view)
        return None if token is None or token.startswith(_OWN_PREFIX) else token

    @staticmethod
    def _token(view: RequestView) -> bytes | None:
        """The Bearer token if it is shaped like a JWT (not restguard's own ``rg_`` ones)."""
        token = jws_bearer_token(view)
        return None if token is None or token.startswith(_OWN_PREFIX) else token

    def carriers(self, view: RequestView) -> tuple[bytes, ...]:
        try:
            return (b"authorization",) if self._token(view) is not None else ()
        except InvalidRequest:  # a repeated header is stripped, whatever it holds
            return (b"authorization",)

    def extract(self, view: RequestView) -> Credential | None:
        raw = self._bearer(view)
        if raw is None or raw in self._own_tokens:
            return None
        if len(raw) > MAX_TOKEN_BYTES_LIMIT:
            raise InvalidCredential(debug="jwt too long")
        if jws_bearer_token(view) is None:  # (the same header tuple: ``raw``'s shape)
            raise InvalidCredential(debug="Bearer token is not a JWS compact serialisation")
        token = raw.decode("ascii")  # the pattern admits ASCII only
        hit = self._verified.get(token)
        if hit is not None:
            return Credential(self.method, token, hit.credential_id, (b"authorization",))
        iss = decode_part(token.split(".")[1], "payload").get("iss")
        if type(iss) is not str:
            raise TokenInvalid("'iss' missing or not a string")
        if iss == self._own:  # restguard's own token: oauth2's to verify
            if len(raw) <= _VERIFIED_MAX_CHARS:
                if len(self._own_tokens) >= _OWN_SIZE:
                    self._own_tokens.clear()
                self._own_tokens.add(raw)
            return None
        return Credential(self.method, token, issuer_id(iss), (b"authorization",))

    async def authenticate(self, credential: Credential, ctx: AuthContext) -> Principal:
        # credential_id selects the issuer; the verifier then checks ``iss`` exactly, so a
        # look-alike issuer that maps to the same id is still refused.
        if not self._loaded:
            raise BackendUnavailable(debug="the trusted issuers could not be read yet")
        issuer = self._issuers.get(credential.credential_id)
        if issuer is None:
            raise InvalidCredential(debug=f"unknown issuer {credential.credential_id}")
        config = issuer.config
        token = credential.secret
        hit = self._verified.get(token)
        if (
            hit is not None
            and hit.issuer is issuer
            and ctx.now.timestamp() < hit.until
            and config.keys.held(hit.keys)
        ):
            return hit.principal  # (its key and algorithm were checked with this very set)
        kid = issuer.kid(token)
        key = await config.keys.key(kid)  # an unknown kid: one fetch, within the cooldown
        if key is None:
            raise TokenInvalid("no key for this 'kid'" if kid is not None else "no 'kid'")
        if _SAME_ALGORITHM.get(key.alg, key.alg) not in config.algorithms:
            raise TokenInvalid(f"key algorithm {key.alg} not allowed for this issuer")
        keys = config.keys.keyset()
        if keys is None:
            raise BackendUnavailable(debug=f"no key set for {credential.credential_id}")
        now = ctx.now.timestamp()
        verified = issuer.verifier_for(keys).verify(token, ctx.now)
        principal = self._principal(verified, config)
        if len(token) <= _VERIFIED_MAX_CHARS:
            if len(self._verified) >= _VERIFIED_SIZE:
                self._verified.clear()
            until = min(math.floor(verified.expires_at) + config.leeway, now + VERIFIED_TTL)
            self._verified[token] = _Verified(
                credential.credential_id, issuer, keys, until, principal
            )
        return principal

    @staticmethod
    def _principal(token: VerifiedToken, config: JwtIssuer) -> Principal:
        claims = token.claims
        client_id = claims.get("client_id", claims.get("azp", ""))
        if type(client_id) is not str:
            raise TokenInvalid("'client_id' or 'azp' is not a string")
        subject = token.subject or client_id
        if not subject:
            raise TokenInvalid("neither 'sub' nor a client id")
        return verified_principal(
            subject=subject,
            client_id=client_id,
            scopes=_scopes(claims, config.scope_claim),
            auth_method="jwt",
            issuer=config.issuer,
        )

    def challenge(self, error: AuthError | None) -> str:
        if isinstance(error, InvalidCredential):
            return CHALLENGE + ', error="invalid_token"'
        return CHALLENGE
