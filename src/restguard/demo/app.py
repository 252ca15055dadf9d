"""The quickstart's stand-in OAuth 2.0 application: a public client whose redirect URI is
``GET /app/callback`` on the demo notes API. The person signs in and consents in a browser;
the callback shows the code and the exact ``curl`` that redeems it (with the PKCE verifier the
quickstart made), so the whole authorization code flow can be tried from a terminal."""

from __future__ import annotations

import base64
import hashlib
import secrets
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

PATH = "/app/callback"
SCOPES = ("notes:read", "notes:write")


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class DemoApp:
    client_id: str
    gateway: str  # the gateway's base URL
    upstream: str  # the demo notes API's base URL (where the callback is)
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    @property
    def redirect_uri(self) -> str:
        return self.upstream + PATH

    def authorize_url(self) -> str:
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(SCOPES),
            "state": self.state,
            "code_challenge": _challenge(self.verifier),
            "code_challenge_method": "S256",
        }
        return f"{self.gateway}/oauth2/authorize?{urlencode(query)}"

    def callback(self, query: bytes) -> tuple[int, dict[str, Any]]:
        """The answer to ``GET /app/callback?<query>``: the code and how to redeem it."""
        params = {k: v[0] for k, v in parse_qs(query.decode("latin-1")).items()}
        if "error" in params:
            return 400, {
                "error": params["error"],
                "error_description": params.get("error_description"),
            }
        if params.get("state") != self.state or "code" not in params:
            return 400, {
                "error": "this is not the answer to the quickstart's authorization request"
            }
        q = shlex.quote
        redeem = (
            f"curl -i -d grant_type=authorization_code -d code={q(params['code'])} "
            f"-d client_id={q(self.client_id)} -d redirect_uri={q(self.redirect_uri)} "
            f"-d code_verifier={q(self.verifier)} {self.gateway}/oauth2/token"
        )
        return 200, {
            "code": params["code"],
            "iss": params.get("iss"),
            "next": "redeem the code within a minute (the quickstart app is a public client "
            "with PKCE), then send its access_token as 'Authorization: Bearer <token>'",
            "curl": redeem,
        }
