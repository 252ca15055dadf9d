"""The gateway listener: HTTP/1.1 on asyncio (uvloop) + httptools (llhttp), strict.

Chosen by measurement (bench/README.md): uvicorn's ASGI cycle plus aiohttp's client cost
~140 us of CPU per proxied request against nginx's ~13; a protocol that feeds llhttp's events
straight into the exchange removes most of that. llhttp refuses malformed framing (CL+TE,
bad chunking, bare LF, obs-fold ...); this module adds the caps and the contract's JSON errors:

* the request target is capped at ``MAX_TARGET_BYTES`` (414, RFC 9112 §3) and kept raw, so
  absolute-form targets are refused by the path normaliser rather than reduced to a path;
* the header block is capped while it is parsed (431);
* every parse error is answered with JSON and the connection is closed.

Requests on one connection are answered in order (pipelining): the next one waits, with reading
paused, until the current answer is complete.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import ssl
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import cast
from urllib.parse import urlsplit

import httptools

from restguard.authz.paths import MAX_TARGET_BYTES, TargetTooLong
from restguard.edge.problem import problem
from restguard.edge.view import Network
from restguard.errors import AuthError, HeadersTooLarge, InvalidRequest
from restguard.gateway.exchange import Exchange
from restguard.gateway.upstream import UpstreamPool
from restguard.guard import Decision, Guard
from restguard.keys.signing import SigningKeys
from restguard.wiring import Runtime


def _error_response(err: AuthError) -> bytes:
    """A complete answer that closes the connection, through the one error translator."""
    status, headers, body = problem(err)
    head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
    head += [b"%s: %s\r\n" % (k, v) for k, v in headers]
    return b"".join(head) + b"connection: close\r\n\r\n" + body


class _TooLarge(Exception):
    """Raised in a parser callback; httptools turns it into a parse error."""


class Gateway:
    """What every connection shares: the guard, the upstream pool, limits, identity."""

    def __init__(
        self,
        guard: Guard,
        keys: SigningKeys,
        identity: Callable[[Decision], bytes],
        *,
        upstream_host: str,
        upstream_port: int,
        upstream_tls: ssl.SSLContext | None = None,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
        max_body_bytes: int,
        max_header_bytes: int,
        trusted_proxies: Sequence[Network],
        observe_upstream: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.guard, self.keys, self.identity = guard, keys, identity
        self.pool = UpstreamPool(
            upstream_host,
            upstream_port,
            tls=upstream_tls,
            connect_timeout=connect_timeout,
            size=pool_size,
        )
        default_port = 443 if upstream_tls else 80
        self.upstream_host = (
            upstream_host if upstream_port == default_port else f"{upstream_host}:{upstream_port}"
        ).encode("idna")
        self.read_timeout = read_timeout
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.trusted_proxies = tuple(trusted_proxies)
        self.observe_upstream = observe_upstream
        self.connections: set[ClientConnection] = set()
        self._server: asyncio.base_events.Server | None = None

    def jwks_body(self) -> bytes:
        return json.dumps(self.keys.jwks()).encode()

    async def start(self, sock: socket.socket) -> None:
        self._server = await self.loop.create_server(
            lambda: ClientConnection(self), sock=sock, backlog=2048
        )

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let answers in flight finish (up to ``grace`` s), close the rest."""
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + grace
        for conn in list(self.connections):
            conn.close_when_idle()
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        self.pool.close()
        if self._server is not None:
            await self._server.wait_closed()


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, runs one exchange at a time, in order."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._in_head = False
        self._too_large: AuthError | None = None
        self._parsing: Exchange | None = None
        self._active: Exchange | None = None
        self._queue: collections.deque[Exchange] = collections.deque()
        self._paused: set[str] = set()
        self._closing = False
        self._upgrade = False
        self._task: asyncio.Task[None] | None = None
        self._out: list[bytes] = []

    # --- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""
        self.gw.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._upgrade:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request asked to switch protocols; restguard does not tunnel (RFC 9110
            # §7.8: a server MAY ignore Upgrade). It is answered as a plain request, then
            # the connection closes, since what follows is not HTTP/1.1.
            self._upgrade = True
            if self._parsing is not None:
                self._parsing.body_done()
                self._parsing.keep_alive = False
                self._parsing = None
        except httptools.HttpParserError:
            err = self._too_large or InvalidRequest(
                "The request is not valid HTTP/1.1.", debug="HTTP/1.1 parse error"
            )
            self._fatal(err)
            self._audit_parse_error(err)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gw.connections.discard(self)
        self._closing = True
        for ex in (self._active, *self._queue):
            if ex is not None:
                ex.client_lost()
        self._queue.clear()

    def pause_writing(self) -> None:
        if self._active is not None:
            self._active.client_writable(False)

    def resume_writing(self) -> None:
        if self._active is not None:
            self._active.client_writable(True)

    # --- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_TARGET_BYTES:
            # RFC 9112 §3: a request-target longer than any URI the server wishes to parse
            # MUST get 414 (URI Too Long).
            self._too_large = TargetTooLong(
                "The request target is too long.", debug="request target too long"
            )
            raise _TooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:  # chunked trailer fields: never forwarded
            return
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.gw.max_header_bytes:
            self._too_large = HeadersTooLarge(debug="header block over the limit")
            raise _TooLarge
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        length: int | None = None
        chunked = False
        for name, value in self._headers:
            if name == b"content-length":
                length = int(value)  # llhttp refused malformed and conflicting values
            elif name == b"transfer-encoding":
                chunked = True
        ex = Exchange(
            self,
            parser.get_method().decode("ascii"),
            self._url,
            self._headers,
            parser.get_http_version(),
            parser.should_keep_alive(),
            content_length=length,
            chunked=chunked,
        )
        self._parsing = ex
        if self._active is None:
            self._start(ex)
        else:
            self._queue.append(ex)
            self.pause("pipeline")

    def on_body(self, body: bytes) -> None:
        if self._parsing is not None:
            self._parsing.feed_body(body)

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.body_done()
            self._parsing = None

    # --- exchanges ---------------------------------------------------------------------------
    def _start(self, ex: Exchange) -> None:
        self._active = ex
        self._task = self.gw.loop.create_task(ex.run())

    def exchange_finished(self, ex: Exchange, keep_alive: bool) -> None:
        if ex is not self._active:
            return
        self._active = None
        if not keep_alive or self._upgrade or (self._closing and not self._queue):
            self._close()
            return
        if self._queue:
            self._start(self._queue.popleft())
            if not self._queue:
                self.resume("pipeline")

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the client; ``flush`` sends what is queued in one write."""
        self._out.append(data)

    def flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def pause(self, reason: str) -> None:
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # --- endings -----------------------------------------------------------------------------
    def _audit_parse_error(self, err: AuthError) -> None:
        """Parse errors are decisions too: they go to the audit log and the metrics."""
        try:
            method = self._parser.get_method().decode("ascii", "replace")
        except httptools.HttpParserError:
            method = "?"
        self.gw.guard.refused(method, self._url, self.peer, err)

    def _fatal(self, err: AuthError) -> None:
        """A framing error: nothing after it can be trusted. The request it broke is answered
        with the error (or, if its answer already started, cut off); complete requests before
        it are still answered; then the connection closes."""
        self._closing = True
        broken, self._parsing = self._parsing, None
        if broken is not None and broken is self._active:
            broken.body_failed(err)
            return
        if broken is not None and broken in self._queue:
            self._queue.remove(broken)
        if self._active is None and not self._queue:
            self.write(_error_response(err))
            self._close()

    def _close(self) -> None:
        self._closing = True
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def close_when_idle(self) -> None:
        if self._active is None:
            self._close()
        else:
            self._active.keep_alive = False

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def make_gateway(
    runtime: Runtime,
    identity: Callable[[Decision], bytes],
    observe_upstream: Callable[[float], None],
) -> Gateway:
    """The Gateway for ``runtime``'s settings (must run inside the event loop)."""
    settings = runtime.settings
    parts = urlsplit(settings.upstream.url)
    tls = None
    if parts.scheme == "https":
        # Certificate and host name are verified (the system store, or [upstream] ca_file).
        ca_file = settings.upstream.ca_file
        tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    return Gateway(
        runtime.guard,
        runtime.keys,
        identity,
        upstream_host=parts.hostname or "127.0.0.1",
        upstream_port=parts.port or (443 if tls else 80),
        upstream_tls=tls,
        connect_timeout=settings.upstream.connect_timeout,
        read_timeout=settings.upstream.timeout,
        pool_size=settings.upstream.pool_size,
        max_body_bytes=settings.server.max_body_bytes,
        max_header_bytes=settings.server.max_header_bytes,
        trusted_proxies=settings.server.trusted_proxies,
        observe_upstream=observe_upstream,
    )
