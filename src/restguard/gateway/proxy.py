"""Streaming forward to the upstream over a pooled keep-alive HTTP/1.1 client (aiohttp).

Header hygiene (CONTRACT "What the upstream receives"): hop-by-hop headers, every
``X-Restguard-*`` header and the credential that was used are removed; identity headers are
added. The upstream receives exactly the path the policy judged. Bodies stream both ways; the
request body is capped at ``max_body_bytes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from restguard.edge.asgi_send import send_problem
from restguard.errors import AuthError, PayloadTooLarge, UpstreamError, UpstreamTimeout
from restguard.guard import Decision
from restguard.types import RequestView

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
IdentityHeaders = Callable[[Decision], list[tuple[str, str]]]

# RFC 9110 §7.6.1 hop-by-hop fields and the proxy-* ones (§11.7): never forwarded either way.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)
# Request fields restguard sets itself for the upstream connection (framing, Host, Expect).
_REQUEST_DROP = HOP_BY_HOP | {b"expect", b"host", b"content-length"}
# Client-sent claims about the client's address or scheme: restguard sets the X-Forwarded-*
# ones itself from what it verified, and drops look-alikes some frameworks believe.
CLIENT_ADDRESS_HEADERS = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"forwarded",
        b"x-real-ip",
        b"true-client-ip",
        b"x-client-ip",
        b"client-ip",
    }
)


class Upstream:
    """One pooled client to one upstream base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        timeout: float,
        pool_size: int,
        max_body_bytes: int,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_body_bytes = max_body_bytes
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=timeout
        )
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,
            limit_per_host=self._pool_size,
            keepalive_timeout=30,
            enable_cleanup_closed=False,
            ttl_dns_cache=60,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def upstream_headers(
        self,
        view: RequestView,
        decision: Decision,
        scope: dict[str, Any],
        identity: IdentityHeaders,
    ) -> CIMultiDict[str]:
        """The request headers the upstream receives."""
        connection_named: set[bytes] = set()
        for name, value in view.headers:
            if name == b"connection":
                connection_named.update(t.strip(b" \t") for t in value.lower().split(b","))
        drop = set(decision.credential_headers) if not decision.route.forward_credentials else set()
        out: CIMultiDict[str] = CIMultiDict()
        host = b""
        for name, value in view.headers:
            if name == b"host":
                host = value
            if (
                name in _REQUEST_DROP
                or name in connection_named
                or name.startswith(b"x-restguard-")
                or name.startswith(b"proxy-")
                or name in drop
                or name in CLIENT_ADDRESS_HEADERS
            ):
                continue
            out.add(name.decode("latin-1"), value.decode("latin-1"))
        out["X-Forwarded-For"] = view.client
        out["X-Forwarded-Proto"] = scope.get("scheme", "http")
        if host:
            out["X-Forwarded-Host"] = host.decode("latin-1")
        for field, text in identity(decision):
            out[field] = text
        return out

    async def forward(
        self,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
        view: RequestView,
        decision: Decision,
        identity: IdentityHeaders,
    ) -> float:
        """Forward one request and stream back the answer; returns upstream seconds."""
        assert self._session is not None, "Upstream.start() was not awaited"
        headers = self.upstream_headers(view, decision, scope, identity)
        length_values = view.header_values(b"content-length")
        chunked = any(b"chunked" in v.lower() for v in view.header_values(b"transfer-encoding"))
        body: AsyncIterator[bytes] | bytes | None = None
        # Errors raised inside the body generator reach us wrapped by aiohttp; keep the original.
        body_errors: list[AuthError] = []
        if length_values:
            length = int(length_values[0])  # llhttp already refused malformed/duplicate values
            if length > self.max_body_bytes:
                await send_problem(send, PayloadTooLarge(debug=f"content-length {length}"))
                return 0.0
            headers["Content-Length"] = str(length)
            body = self._body(receive, body_errors) if length else b""
        elif chunked:
            # No length announced: look at what has already arrived before the upstream is
            # contacted, so a body already over the limit never reaches it at all.
            first = await receive()
            if first["type"] == "http.disconnect":
                return 0.0
            if len(first.get("body", b"")) > self.max_body_bytes:
                await send_problem(send, PayloadTooLarge(debug="chunked body over the limit"))
                return 0.0
            body = self._body(receive, body_errors, first)
        # encoded=True: the path and query go out byte for byte as judged. Without it yarl
        # "requotes" them, e.g. "%3B" -> ";" and "%2F" -> "/" in the query, so the upstream would
        # receive a different request than the policy decided on.
        target = view.path + ("?" + view.query.decode("ascii") if view.query else "")
        url = URL(self.base_url + target, encoded=True)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response_started = False
        try:
            async with self._session.request(
                view.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                compress=None,
                chunked=None,
            ) as resp:
                out_headers = [
                    (k.lower(), v) for k, v in resp.raw_headers if k.lower() not in HOP_BY_HOP
                ]
                await send(
                    {"type": "http.response.start", "status": resp.status, "headers": out_headers}
                )
                response_started = True
                async for chunk in resp.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except AuthError as err:  # raised from the body generator (too large)
            if response_started:
                raise
            await send_problem(send, body_errors[0] if body_errors else err)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            if response_started:
                raise
            await send_problem(
                send, body_errors[0] if body_errors else UpstreamTimeout(debug=repr(exc))
            )
        except (aiohttp.ClientError, OSError) as exc:
            if response_started:
                raise
            await send_problem(
                send, body_errors[0] if body_errors else UpstreamError(debug=repr(exc))
            )
        return loop.time() - started

    async def _body(
        self, receive: Receive, errors: list[AuthError], first: dict[str, Any] | None = None
    ) -> AsyncIterator[bytes]:
        seen = 0
        message = first
        while True:
            if message is None:
                message = await receive()
            if message["type"] == "http.disconnect":
                errors.append(UpstreamError(debug="client went away mid-body"))
                raise errors[-1]
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body_bytes:
                errors.append(PayloadTooLarge(debug="streamed body over the limit"))
                raise errors[-1]
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
            message = None
