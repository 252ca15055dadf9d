"""Access tokens restguard issues: JWTs per RFC 9068, signed with restguard's keyring (and,
for clients registered for them, opaque tokens: ``credentials/opaque_tokens.py``).

Header ``typ: at+jwt`` (RFC 9068 §2.1, so no other JWT restguard signs can pass as an access
token); claims ``iss`` (``public_url``), ``exp``, ``aud``, ``sub``, ``client_id``, ``iat``,
``jti`` and ``scope`` (RFC 9068 §2.2). For the client credentials grant the subject is the
client itself (RFC 9068 §2.2: "sub ... the client identifier"). Lifetimes are capped by
``MAX_TOKEN_LIFETIME``: a rotated signing key stays published that long, so every token it
signed verifies until it expires.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from restguard.clock import Clock
from restguard.credentials.opaque_tokens import OpaqueTokens
from restguard.keys.signing import MAX_TOKEN_LIFETIME
from restguard.store.ports import OAuthClientRecord

TYP: Final = "at+jwt"
DEFAULT_LIFETIME: Final = 900  # seconds


class TokenSigner(Protocol):
    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str: ...


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None


def new_jti() -> str:
    return secrets.token_urlsafe(16)


class AccessTokens:
    """Mints RFC 9068 access tokens for one issuer and audience."""

    def __init__(
        self,
        signer: TokenSigner,
        issuer: str,
        audience: str,
        clock: Clock,
        lifetime: int = DEFAULT_LIFETIME,
        opaque: OpaqueTokens | None = None,
    ) -> None:
        """``opaque``: where opaque tokens go, for clients registered for them."""
        if not 0 < lifetime <= MAX_TOKEN_LIFETIME:
            raise ValueError(f"lifetime must be in (0, {MAX_TOKEN_LIFETIME}] seconds")
        self.signer, self.issuer, self.audience = signer, issuer, audience
        self.clock, self.lifetime, self.opaque = clock, lifetime, opaque

    async def issue_for(
        self,
        client: OAuthClientRecord,
        *,
        subject: str,
        scopes: Iterable[str],
        jti: str | None = None,
    ) -> IssuedToken:
        """An access token in the client's format (``token_format``): a JWT, or an opaque
        ``rg_at_`` token stored by hash."""
        if client.token_format != "opaque":  # noqa: S105 (a format's name)
            return self.issue(client_id=client.client_id, subject=subject, scopes=scopes, jti=jti)
        if self.opaque is None:
            raise RuntimeError("opaque access tokens need a store (AccessTokens(opaque=...))")
        granted = tuple(scopes)
        token = await self.opaque.issue(
            jti=jti or new_jti(),
            client_id=client.client_id,
            subject=subject,
            scopes=granted,
            now=self.clock.now(),
            lifetime=self.lifetime,
        )
        return IssuedToken(token, self.lifetime, " ".join(granted))

    def issue(
        self, *, client_id: str, subject: str, scopes: Iterable[str], jti: str | None = None
    ) -> IssuedToken:
        """A signed access token; ``jti`` chosen beforehand when it must be recorded before
        the token exists (so that revoking what a grant produced cannot miss it)."""
        now = int(self.clock.now().timestamp())
        scope = " ".join(scopes)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "exp": now + self.lifetime,
            "aud": self.audience,
            "sub": subject,
            "client_id": client_id,
            "iat": now,
            "jti": jti or new_jti(),
            "scope": scope,
        }
        return IssuedToken(self.signer.sign(claims, TYP), self.lifetime, scope)
