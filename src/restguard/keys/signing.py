"""restguard's own signing keys: the newest signs, every live key is published in the JWKS.

Keys are Ed25519, generated with pyca through joserfc, stored sealed by the master key. The JWS
algorithm is fixed per key ("EdDSA", RFC 8037) and never read from a header. RFC 9864 names the
fully specified "Ed25519" as its successor, but common verifiers (PyJWT among them) only know
"EdDSA" today, so restguard signs with "EdDSA" and silences joserfc's deprecation notice for
exactly that one algorithm.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc import jws, jwt
from joserfc.jwk import OKPKey
from joserfc.jws import JWSRegistry

from restguard.clock import Clock
from restguard.keys.sealing import MASTER_KEY_ENV, MasterKeyError, Sealer, SealError
from restguard.store.ports import SigningKeyRecord, SigningKeyStore
from restguard.types import Principal

ALG = "EdDSA"
IDENTITY_LIFETIME = 300  # seconds; the contract caps X-Restguard-Identity at 5 minutes


def _quiet_registry() -> JWSRegistry:
    alg = JWSRegistry.algorithms[ALG]
    quiet = type(alg)()
    quiet.security_warning = None
    registry = JWSRegistry(algorithms=[ALG])
    registry.algorithms = {ALG: quiet}
    return registry


_REGISTRY = _quiet_registry()


def _purpose(kid: str) -> str:
    return f"signing-key:{kid}"


def new_signing_key(sealer: Sealer, now: datetime) -> SigningKeyRecord:
    """A fresh Ed25519 key as a record, private half sealed."""
    kid = now.strftime("%Y%m%d") + "-" + secrets.token_hex(4)
    key = OKPKey.generate_key("Ed25519", parameters={"kid": kid, "alg": ALG, "use": "sig"})
    private = json.dumps(key.as_dict(private=True)).encode()
    public = json.dumps(key.as_dict(private=False), sort_keys=True)
    return SigningKeyRecord(kid, ALG, public, sealer.seal(private, _purpose(kid)), now)


@dataclass(frozen=True, slots=True)
class LiveKey:
    kid: str
    key: OKPKey
    public_jwk: dict[str, Any]


class SigningKeys:
    """The live keys: ``signer`` is the newest; ``jwks`` lists them all."""

    def __init__(self, keys: list[LiveKey]) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.keys = tuple(keys)

    @property
    def signer(self) -> LiveKey:
        return self.keys[0]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk for k in self.keys]}

    def sign(self, claims: dict[str, Any]) -> str:
        live = self.signer
        header = {"alg": ALG, "kid": live.kid, "typ": "JWT"}
        return jwt.encode(header, claims, live.key, algorithms=[ALG], registry=_REGISTRY)

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a token signed by a live key; raises on any failure. For tests and tools."""
        header = jws.extract_compact(token.encode()).protected
        match = [k for k in self.keys if k.kid == header.get("kid")]
        if not match or header.get("alg") != ALG:
            raise ValueError("not signed by a live restguard key")
        return dict(jwt.decode(token, match[0].key, algorithms=[ALG], registry=_REGISTRY).claims)


def open_keys(records: list[SigningKeyRecord], sealer: Sealer, now: datetime) -> SigningKeys:
    """Unseal the live (not retired) records, newest first."""
    live = []
    for rec in records:
        if rec.retired_at is not None and rec.retired_at <= now:
            continue
        try:
            private = json.loads(sealer.open(rec.sealed_private, _purpose(rec.kid)))
        except SealError:
            raise MasterKeyError(
                "this master key does not open the data directory's stored secrets "
                f"(signing key {rec.kid}); use the master key the data directory was created "
                f"with ([keys] master_key or {MASTER_KEY_ENV})"
            ) from None
        live.append(LiveKey(rec.kid, OKPKey.import_key(private), json.loads(rec.public_jwk)))
    return SigningKeys(live)


async def load_signing_keys(store: SigningKeyStore, sealer: Sealer, clock: Clock) -> SigningKeys:
    """The live keys from the store, creating the first one on a fresh database."""
    now = clock.now()
    records = await store.list()
    if not any(r.retired_at is None or r.retired_at > now for r in records):
        await store.insert(new_signing_key(sealer, now))
        records = await store.list()
    return open_keys(records, sealer, now)


class IdentityMinter:
    """Mints ``X-Restguard-Identity`` tokens (CONTRACT "Identity forwarded per method")."""

    def __init__(self, keys: SigningKeys, issuer: str, clock: Clock) -> None:
        self.keys, self.issuer, self.clock = keys, issuer, clock

    def mint(self, principal: Principal) -> str:
        now = self.clock.now()
        iat = int(now.timestamp())
        claims = {
            "iss": self.issuer,
            "sub": principal.subject,
            "client_id": principal.client_id,
            "scope": " ".join(sorted(principal.scopes)),
            "auth_method": principal.auth_method,
            "iat": iat,
            "exp": int((now + timedelta(seconds=IDENTITY_LIFETIME)).timestamp()),
            "jti": secrets.token_urlsafe(12),
        }
        return self.keys.sign(claims)
