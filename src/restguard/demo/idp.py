"""A stand-in identity provider for ``restguard quickstart``: what Auth0 or Keycloak would be.

It holds one ES256 key (made fresh on every run), publishes it as a JWK Set at ``/idp/jwks.json``
on the demo server, and mints access tokens for the guide's example requests. restguard trusts
it like any external issuer (``restguard issuer add``), fetching the keys over HTTP like any
other, so the quickstart's JWT requests take exactly the path real ones take.
"""

from __future__ import annotations

import json
import secrets
import time

from joserfc import jwt
from joserfc.jwk import ECKey

PATH = "/idp"
ALG = "ES256"


class DemoIdentityProvider:
    """One signing key, its JWKS, and tokens for ``audience``."""

    def __init__(self, issuer: str, audience: str) -> None:
        self.issuer, self.audience = issuer, audience
        kid = "demo-" + secrets.token_hex(4)
        self._key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALG, "use": "sig"})
        self.jwks = json.dumps({"keys": [self._key.as_dict(private=False)]}).encode()

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/jwks.json"

    def token(self, subject: str, scopes: tuple[str, ...], lifetime: int = 3600) -> str:
        """An access token (RFC 9068 claims) signed by the demo key."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "client_id": "quickstart-demo",
            "scope": " ".join(scopes),
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(12),
        }
        header = {"alg": ALG, "kid": self._key.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, self._key, algorithms=[ALG])
