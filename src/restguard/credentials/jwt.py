"""``jwt``: access tokens of external issuers (Auth0, Keycloak, Okta...), issue 8 item 3-4.

A token comes in ``Authorization: Bearer <token>`` (RFC 6750 §2.1). That header is shared: the
API-key authenticator reads ``Bearer rg_ak_...`` and (later) ``oauth2`` reads restguard's own
tokens, so ``extract`` claims only what is shaped like a JWS compact serialisation (three
base64url parts) and does not start with ``rg_`` (restguard's own opaque credentials); for
anything else it returns ``None`` and the guard never sees two credentials for one header.

``authenticate`` routes the token to its issuer by the (unverified) ``iss`` claim, asks the
issuer's key source for the header's ``kid`` (``JWKSCache.key``: an unknown ``kid`` causes at
most one fetch per cooldown, past max-stale it raises ``BackendUnavailable``: 503, fail closed),
then verifies with that issuer's ``JWTVerifier`` (``keys.jwt_verify``: algorithm from the key,
``iss`` exact, ``aud``, ``exp``, ``typ``...). The verifier is rebuilt only when the source's
``KeySet`` object changes. Nothing read before verification is trusted: it only chooses which
issuer and key to verify with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from restguard.clock import Clock
from restguard.credentials.base import AuthContext, Credential
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
SCOPE_CLAIMS: Final = frozenset({"scope", "scp", "permissions"})
MAX_ISSUER_ID_CHARS: Final = 120
CHALLENGE: Final = 'Bearer realm="restguard"'

# A JWS compact serialisation: three non-empty base64url parts (RFC 7515 §7.1).
_COMPACT = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_OWN_PREFIX = b"rg_"  # restguard's own credentials (API keys, opaque tokens): not ours
_UNSAFE = re.compile(r"[^A-Za-z0-9:/._~%?#@!$&'()*+,;=-]")
_KID_CACHE_SIZE: Final = 16


class KeySource(Protocol):
    """An issuer's verification keys: ``JWKSCache``, or ``StaticKeys`` for a fixed set."""

    async def key(self, kid: str | None) -> VerificationKey | None:
        """The key for ``kid`` (None: the issuer has none); may raise BackendUnavailable."""
        ...

    def keyset(self) -> KeySet | None:
        """The key set held now."""
        ...


class StaticKeys:
    """A fixed ``KeySet`` as a ``KeySource`` (tests, keys given in the configuration)."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    async def key(self, kid: str | None) -> VerificationKey | None:
        return self.keys.select(kid)

    def keyset(self) -> KeySet | None:
        return self.keys


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


def _scopes(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    value = claims.get(name)
    if value is None:
        return frozenset()
    if name == "scope":
        if type(value) is not str:
            raise TokenInvalid("'scope' is not a string")
        return frozenset(value.split())
    if type(value) is not list or not all(type(s) is str for s in value):
        raise TokenInvalid(f"'{name}' is not an array of strings")
    return frozenset(value)


class JwtAuthenticator:
    """Verifies JWTs of the configured external issuers."""

    method = "jwt"
    presentation = "a JWT in 'Authorization: Bearer <token>'"

    def __init__(self, issuers: Iterable[JwtIssuer], clock: Clock) -> None:
        self._clock = clock
        self._issuers: dict[str, _Issuer] = {}
        for config in issuers:
            key = issuer_id(config.issuer)
            if key in self._issuers:
                raise ValueError(f"issuer {config.issuer!r} is configured twice")
            self._issuers[key] = _Issuer(config, JWTVerifier(KeySet(()), config.rules))

    @staticmethod
    def _token(view: RequestView) -> bytes | None:
        """The Bearer token if it is shaped like a JWT (not restguard's own ``rg_`` ones)."""
        auth = None
        for name, value in view.headers:  # one pass; a repeated field is ambiguous
            if name == b"authorization":
                if auth is not None:
                    raise InvalidRequest("The authorization header must not be repeated.")
                auth = value
        if auth is None:
            return None
        # RFC 9110 §11.4 separates the scheme with SP; lenient servers also take a tab.
        scheme, _, rest = auth.replace(b"\t", b" ").partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        token = rest.strip(b" ")
        if token.startswith(_OWN_PREFIX) or not _COMPACT.fullmatch(token):
            return None
        return token

    def carriers(self, view: RequestView) -> tuple[bytes, ...]:
        try:
            return (b"authorization",) if self._token(view) is not None else ()
        except InvalidRequest:  # a repeated header is stripped, whatever it holds
            return (b"authorization",)

    def extract(self, view: RequestView) -> Credential | None:
        raw = self._token(view)
        if raw is None:
            return None
        if len(raw) > MAX_TOKEN_BYTES_LIMIT:
            raise InvalidCredential(debug="jwt too long")
        token = raw.decode("ascii")  # the pattern admits ASCII only
        iss = decode_part(token.split(".")[1], "payload").get("iss")
        if type(iss) is not str:
            raise TokenInvalid("'iss' missing or not a string")
        return Credential(self.method, token, issuer_id(iss), (b"authorization",))

    async def authenticate(self, credential: Credential, ctx: AuthContext) -> Principal:
        # credential_id selects the issuer; the verifier then checks ``iss`` exactly, so a
        # look-alike issuer that maps to the same id is still refused.
        issuer = self._issuers.get(credential.credential_id)
        if issuer is None:
            raise InvalidCredential(debug=f"unknown issuer {credential.credential_id}")
        config = issuer.config
        token = credential.secret
        kid = issuer.kid(token)
        key = await config.keys.key(kid)  # an unknown kid: one fetch, within the cooldown
        if key is None:
            raise TokenInvalid("no key for this 'kid'" if kid is not None else "no 'kid'")
        if key.alg not in config.algorithms:
            raise TokenInvalid(f"key algorithm {key.alg} not allowed for this issuer")
        keys = config.keys.keyset()
        if keys is None:
            raise BackendUnavailable(debug=f"no key set for {credential.credential_id}")
        verified = issuer.verifier_for(keys).verify(token, ctx.now)
        return self._principal(verified, config)

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
        )

    def challenge(self, error: AuthError | None) -> str:
        if isinstance(error, InvalidCredential):
            return CHALLENGE + ', error="invalid_token"'
        return CHALLENGE
