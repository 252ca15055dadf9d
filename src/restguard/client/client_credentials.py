"""``ClientCredentialsAuth``: call an API with an OAuth 2.0 client credentials token
(RFC 6749 §4.4) from restguard's authorization server, fetched, cached and renewed for you.

The token is requested with ``client_secret_basic`` (RFC 6749 §2.3.1: id and secret
form-encoded, then HTTP Basic), kept until shortly before its ``expires_in``, and fetched again
once when the API answers 401 (a revoked or rotated token). The secret only ever goes to the
token endpoint, never to the API.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Generator, Iterable
from typing import Any
from urllib.parse import quote_plus

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("restguard.client needs httpx: pip install 'restguard[client]'") from exc

RENEW_BEFORE = 30.0  # seconds before expiry a token is replaced


class TokenError(Exception):
    """The token endpoint refused (its ``error`` and description) or answered nonsense."""


class ClientCredentialsAuth(httpx.Auth):
    """``httpx.Client(auth=ClientCredentialsAuth(token_url, client_id, client_secret))``; also
    a ``requests`` auth (``requests.get(url, auth=...)``)."""

    requires_response_body = True

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scopes: Iterable[str] = (),
    ) -> None:
        if not token_url.startswith(("https://", "http://")):
            raise ValueError("token_url must be an http(s) URL")
        self.token_url = token_url
        self.client_id = client_id
        self._basic = "Basic " + base64.b64encode(
            f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
        ).decode("ascii")
        self._form = {"grant_type": "client_credentials"}
        scope = " ".join(scopes)
        if scope:
            self._form["scope"] = scope
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    # -- the token ------------------------------------------------------------------------------

    def _valid(self) -> str | None:
        if self._token is not None and time.monotonic() < self._expires - RENEW_BEFORE:
            return self._token
        return None

    def _token_request(self) -> httpx.Request:
        return httpx.Request(
            "POST", self.token_url, data=self._form, headers={"Authorization": self._basic}
        )

    def _store(self, status: int, data: Any) -> str:
        if status != 200 or not isinstance(data, dict):
            error = data.get("error") if isinstance(data, dict) else None
            detail = data.get("error_description") if isinstance(data, dict) else None
            raise TokenError(f"token endpoint answered {status}: {error or ''} {detail or ''}")
        token, lifetime = data.get("access_token"), data.get("expires_in", 60)
        if not isinstance(token, str) or not isinstance(lifetime, int | float):
            raise TokenError("token endpoint answered without access_token/expires_in")
        self._token, self._expires = token, time.monotonic() + float(lifetime)
        return token

    def _forget(self) -> None:
        self._token = None

    # -- httpx ----------------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._valid()
        if token is None:
            response = yield self._token_request()
            token = self._store(response.status_code, _json(response.content))
        request.headers["Authorization"] = "Bearer " + token
        response = yield request
        if response.status_code == 401:  # revoked or rotated: one fresh token, one retry
            self._forget()
            fresh = yield self._token_request()
            request.headers["Authorization"] = "Bearer " + self._store(
                fresh.status_code, _json(fresh.content)
            )
            yield request

    # -- requests -------------------------------------------------------------------------------

    def __call__(self, request: Any) -> Any:
        """The ``requests`` auth protocol (the token is fetched with ``requests`` too)."""
        import requests

        with self._lock:
            token = self._valid()
            if token is None:
                response = requests.post(
                    self.token_url,
                    data=self._form,
                    headers={"Authorization": self._basic},
                    timeout=30,
                )
                token = self._store(response.status_code, _json(response.content))
        request.headers["Authorization"] = "Bearer " + token
        if not getattr(request, "_restguard_retry", False):
            request.register_hook("response", self._retry_on_401)
        return request

    def _retry_on_401(self, response: Any, **kwargs: Any) -> Any:
        """A 401 from the API: fetch one fresh token and send the request once more."""
        if response.status_code != 401:
            return response
        with self._lock:
            self._forget()
        response.content  # noqa: B018 (read the body so the connection can be reused)
        response.close()
        again = response.request.copy()
        again._restguard_retry = True
        self(again)
        retried = response.connection.send(again, **kwargs)
        retried.history.append(response)
        retried.request = again
        return retried

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth({self.token_url!r}, {self.client_id!r})"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
