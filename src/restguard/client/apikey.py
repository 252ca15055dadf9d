"""``ApiKeyAuth``: send a restguard API key in a header (never in the URL)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("restguard.client needs httpx: pip install 'restguard[client]'") from exc

from restguard.credentials.apikey import parse_key


class ApiKeyAuth(httpx.Auth):
    """Adds ``Authorization: ApiKey <key>`` (or ``X-API-Key`` with ``header="x-api-key"``)."""

    def __init__(
        self, key: str, *, header: Literal["authorization", "x-api-key"] = "authorization"
    ):
        parse_key(key)  # refuse a malformed key here, not as a 400 later
        self._key = key
        self._header = header

    def _apply(self, headers: Any) -> None:
        if self._header == "authorization":
            headers["Authorization"] = "ApiKey " + self._key
        else:
            headers["X-API-Key"] = self._key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._apply(request.headers)
        yield request

    def __call__(self, request: Any) -> Any:
        """The ``requests`` auth protocol."""
        self._apply(request.headers)
        return request

    def __repr__(self) -> str:
        return f"ApiKeyAuth(<{self._key[:18]}…>)"
