"""restguard's own signing keys: the newest signs, every key not yet retired is in the JWKS.

Keys are EdDSA (Ed25519, the default), ES256 or RS256 (``keys/jws_sign.py``), stored sealed by
the master key (purpose ``signing-key:<kid>``). The JWS algorithm is fixed per key and never
read from a header (RFC 8725 §3.1).

Rotation (``rotation_plan``, the store's ``rotate``) adds a key that signs at once and retires
every other key ``MAX_TOKEN_LIFETIME`` later: until then they stay in the JWKS, so every token
they signed still verifies until it expires. Verifiers learn the new key by its unfamiliar
``kid`` (OpenID Connect Core §10.1.1: "The verifier knows to go back to the jwks_uri location to
re-retrieve the keys when it sees an unfamiliar kid value"); the JWKS is served with a short
``max-age`` (``JWKS_MAX_AGE``) for verifiers that do not.

A ``SigningKeys`` is an immutable snapshot; ``keys/keyring.py`` swaps in new ones.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from restguard.clock import Clock
from restguard.keys.jose import TokenInvalid, b64decode_checked
from restguard.keys.jwk import KeySet, VerificationKey
from restguard.keys.jws_sign import DEFAULT_ALG, PrivateSigningKey
from restguard.keys.jwt_verify import decode_part
from restguard.keys.sealing import MASTER_KEY_ENV, MasterKeyError, Sealer, SealError
from restguard.store.ports import SigningKeyRecord, SigningKeyStore
from restguard.types import Principal

ALG: Final = DEFAULT_ALG
IDENTITY_LIFETIME: Final = 300  # seconds; the contract caps X-Restguard-Identity at 5 minutes
#: The longest any token restguard signs may live, reuse included: identity tokens (300 s, a
#: signed block reused up to 60 s) and the coming OAuth 2.0 access tokens, whose configurable
#: lifetime is capped by it. A rotated-out key stays published this long.
MAX_TOKEN_LIFETIME: Final = 3600
#: ``Cache-Control: max-age`` of the JWKS: short, since a rotation's new key signs at once.
JWKS_MAX_AGE: Final = 60


def purpose(kid: str) -> str:
    """The sealing purpose (associated data) of a signing key's private half."""
    return f"signing-key:{kid}"


def new_signing_key(sealer: Sealer, now: datetime, alg: str = ALG) -> SigningKeyRecord:
    """A fresh key as a record, private half sealed."""
    kid = now.strftime("%Y%m%d") + "-" + secrets.token_hex(4)
    key = PrivateSigningKey.generate(kid, alg)
    public = json.dumps(key.public_jwk(), sort_keys=True)
    return SigningKeyRecord(kid, alg, public, sealer.seal(key.private_bytes(), purpose(kid)), now)


def rotation_plan(
    sealer: Sealer, now: datetime, alg: str = ALG
) -> tuple[SigningKeyRecord, datetime]:
    """The new key and when the others retire: what ``SigningKeyStore.rotate`` takes."""
    return new_signing_key(sealer, now, alg), now + timedelta(seconds=MAX_TOKEN_LIFETIME)


def status(record: SigningKeyRecord, signer_kid: str | None, now: datetime) -> str:
    """``signing``, ``published`` (until ``retired_at``) or ``retired``."""
    if record.retired_at is not None and record.retired_at <= now:
        return "retired"
    return "signing" if record.kid == signer_kid else "published"


def signer_of(records: list[SigningKeyRecord], now: datetime) -> SigningKeyRecord | None:
    """The key that signs: the newest not retired (one without a retirement date first)."""
    live = [r for r in records if r.retired_at is None or r.retired_at > now]
    live.sort(key=lambda r: (r.retired_at is None, r.created_at, r.kid), reverse=True)
    return live[0] if live else None


@dataclass(frozen=True, slots=True)
class LiveKey:
    kid: str
    key: PrivateSigningKey
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None = None

    def live_at(self, now: datetime) -> bool:
        return self.retired_at is None or self.retired_at > now


class SigningKeys:
    """A snapshot of the keys not yet retired: ``signer`` signs; ``jwks`` lists them all."""

    def __init__(self, keys: list[LiveKey]) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.keys = tuple(sorted(keys, key=lambda k: (k.created_at, k.kid), reverse=True))
        fresh = [k for k in self.keys if k.retired_at is None]
        self.signer: LiveKey = fresh[0] if fresh else self.keys[0]
        self._body: tuple[datetime, datetime | None, bytes] | None = None
        self._keyset: KeySet | None = None

    def live(self, now: datetime | None = None) -> tuple[LiveKey, ...]:
        """The keys published at ``now`` (all of them without ``now``)."""
        return self.keys if now is None else tuple(k for k in self.keys if k.live_at(now))

    def jwks(self, now: datetime | None = None) -> dict[str, Any]:
        """RFC 7517 §5: the JWK Set of the keys published at ``now``, newest first."""
        return {"keys": [k.public_jwk for k in self.live(now)]}

    def jwks_body(self, now: datetime) -> bytes:
        """``jwks(now)`` encoded, cached until the next key leaves (so serving is cheap)."""
        cached = self._body
        if cached is not None and cached[0] <= now and (cached[1] is None or now < cached[1]):
            return cached[2]
        live = self.live(now)
        ends = [k.retired_at for k in live if k.retired_at is not None]
        body = json.dumps({"keys": [k.public_jwk for k in live]}).encode()
        self._body = (now, min(ends) if ends else None, body)
        return body

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        return self.signer.key.sign_jwt(claims, typ)

    def keyset(self) -> KeySet:
        """The public keys of this snapshot, for verifying (built once per snapshot). A key
        past its ``retired_at`` is still in it until the next reload: check ``live``."""
        if self._keyset is None:
            self._keyset = KeySet(VerificationKey.from_jwk(k.public_jwk) for k in self.keys)
        return self._keyset

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token signed by a key of this snapshot; ``ValueError`` otherwise.
        Signature and header only (``keys/jwt_verify``'s key checks): claims are the caller's.
        For tests and tools."""
        keyset = self.keyset()
        parts = token.split(".")
        try:
            if len(parts) != 3:
                raise TokenInvalid("not three parts")
            header = decode_part(parts[0], "header")
            kid = header.get("kid")
            key = keyset.select(kid) if isinstance(kid, str) else None
            if key is None or header.get("alg") != key.alg:
                raise ValueError("not signed by a live restguard key")
            signature = b64decode_checked(parts[2])
            key.verify_signature(f"{parts[0]}.{parts[1]}".encode("ascii"), signature)
            return decode_part(parts[1], "payload")
        except TokenInvalid as exc:
            raise ValueError(f"invalid token: {exc.detail}") from None


def unseal(record: SigningKeyRecord, sealer: Sealer) -> LiveKey:
    """One record's key; ``SealError`` if the master key does not open it."""
    private = sealer.open(record.sealed_private, purpose(record.kid))
    key = PrivateSigningKey.from_private_bytes(record.kid, record.alg, private)
    return LiveKey(
        record.kid, key, json.loads(record.public_jwk), record.created_at, record.retired_at
    )


def wrong_master_key(kid: str) -> MasterKeyError:
    return MasterKeyError(
        "this master key does not open the data directory's stored secrets "
        f"(signing key {kid}); use the master key the data directory was created "
        f"with ([keys] master_key or {MASTER_KEY_ENV})"
    )


def open_keys(records: list[SigningKeyRecord], sealer: Sealer, now: datetime) -> SigningKeys:
    """Unseal the records not retired at ``now``."""
    live = []
    for rec in records:
        if rec.retired_at is not None and rec.retired_at <= now:
            continue
        try:
            live.append(unseal(rec, sealer))
        except SealError:
            raise wrong_master_key(rec.kid) from None
    return SigningKeys(live)


async def load_signing_keys(store: SigningKeyStore, sealer: Sealer, clock: Clock) -> SigningKeys:
    """The live keys from the store, creating the first one on a fresh database."""
    now = clock.now()
    records = await store.list()
    if not any(r.retired_at is None or r.retired_at > now for r in records):
        await store.insert(new_signing_key(sealer, now))
        records = await store.list()
    return open_keys(records, sealer, now)


class Signer(Protocol):
    """What signs: a ``SigningKeys`` snapshot or a ``Keyring`` (its current snapshot)."""

    @property
    def signer(self) -> LiveKey: ...

    def sign(self, claims: dict[str, Any]) -> str: ...


class IdentityMinter:
    """Mints ``X-Restguard-Identity`` tokens (CONTRACT "Identity forwarded per method")."""

    def __init__(self, keys: Signer, issuer: str, clock: Clock) -> None:
        self.keys, self.issuer, self.clock = keys, issuer, clock

    def signer_kid(self) -> str:
        """The kid new tokens are signed with (it changes with a rotation)."""
        return self.keys.signer.kid

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
        if principal.issuer:
            # Who vouched for the subject (an external issuer): RFC 9493's subject identifier
            # of format "iss_sub", since a subject is unique only with its issuer.
            claims["sub_id"] = {
                "format": "iss_sub",
                "iss": principal.issuer,
                "sub": principal.subject,
            }
        return self.keys.sign(claims)
