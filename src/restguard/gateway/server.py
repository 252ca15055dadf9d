"""The gateway's HTTP/1.1 server: uvicorn on uvloop + httptools (llhttp), made strict.

``StrictHttpToolsProtocol`` keeps the raw request target (so absolute-form targets are refused
rather than silently reduced to their path), caps the request target (414) and the header block
(431) while they are parsed, answers parse errors with the contract's JSON instead of plain text,
and never lets uvicorn believe ``X-Forwarded-For``/``X-Forwarded-Proto``: only
``[server].trusted_proxies`` decides whose forwarding headers count (``edge/view.py``).
"""

from __future__ import annotations

import json
from typing import Any, cast

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from restguard.authz.paths import MAX_TARGET_BYTES
from restguard.edge.view import RAW_TARGET_KEY

MAX_HEADER_BYTES = 16 * 1024


class _HeadersTooLarge(Exception):
    """Raised inside a parser callback; httptools turns it into a parse error."""


def _json_error(status: int, reason: bytes, description: str) -> bytes:
    body = json.dumps({"error": "invalid_request", "error_description": description}).encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"cache-control: no-store\r\nconnection: close\r\n\r\n" % (status, reason, len(body))
    ) + body


class StrictHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with restguard's strictness added."""

    max_header_bytes = MAX_HEADER_BYTES

    _rg_header_bytes = 0
    _rg_too_large = False
    _rg_target_too_long = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn wraps the app in ProxyHeadersMiddleware by default, which rewrites the client
        # address and scheme from X-Forwarded-For/-Proto for peers in $FORWARDED_ALLOW_IPS
        # (127.0.0.1 unless set, "*" if an operator sets it so). That would let any such client
        # choose its own address (failed-attempt limits, audit, the upstream's X-Forwarded-For).
        if isinstance(self.app, ProxyHeadersMiddleware):
            self.app = self.app.app

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._rg_header_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_TARGET_BYTES:
            # RFC 9112 §3: a request-target longer than any URI the server wishes to parse MUST
            # get 414 (URI Too Long).
            self._rg_target_too_long = True
            raise _HeadersTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._rg_header_bytes += len(name) + len(value) + 4
        if self._rg_header_bytes > self.max_header_bytes:
            self._rg_too_large = True
            raise _HeadersTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        cast(dict[str, Any], self.scope)[RAW_TARGET_KEY] = self.url
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """Called by uvicorn for every parse error (httptools wraps callback errors)."""
        if self._rg_target_too_long:
            self._send_and_close(414, b"URI Too Long", "The request target is too long.")
        elif self._rg_too_large:
            self._send_and_close(
                431, b"Request Header Fields Too Large", "The request headers are too large."
            )
        else:
            self._send_and_close(400, b"Bad Request", "The request is not valid HTTP/1.1.")

    def _send_and_close(self, status: int, reason: bytes, description: str) -> None:
        if not self.transport.is_closing():
            self.transport.write(_json_error(status, reason, description))
            self.transport.close()


def protocol_for(max_header_bytes: int) -> type[Any]:
    """A protocol class with this header cap, for ``uvicorn.Config(http=...)``."""
    return type("RestguardHttp", (StrictHttpToolsProtocol,), {"max_header_bytes": max_header_bytes})
