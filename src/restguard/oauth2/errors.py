"""OAuth 2.0 error responses (RFC 6749 §5.2), as the token endpoint writes them."""

from __future__ import annotations

import json
from typing import Final

from restguard.oauth2.http import EndpointResponse, Headers

#: RFC 6749 §5.1: token responses (and their errors) must not be cached.
NO_STORE: Final[Headers] = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
]


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: ``error`` code, a description for the client, the status."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        basic_challenge: bool = False,
        debug: str | None = None,
    ) -> None:
        super().__init__(error)
        self.error, self.description, self.status = error, description, status
        self.basic_challenge = basic_challenge
        self.debug = debug or description

    def response(self) -> EndpointResponse:
        headers = list(NO_STORE)
        if self.basic_challenge:
            # RFC 6749 §5.2: a client that authenticated with the Authorization header gets
            # 401 and a WWW-Authenticate naming the scheme it used.
            headers.append((b"www-authenticate", b'Basic realm="restguard", charset="UTF-8"'))
        body = {"error": self.error, "error_description": self.description}
        return EndpointResponse(self.status, headers, json.dumps(body).encode())


def invalid_request(description: str, debug: str | None = None) -> OAuthError:
    return OAuthError("invalid_request", description, debug=debug)
