"""The gateway listener: what every client connection shares (the guard, the upstream pool,
limits, identity, TLS), accepting connections, and a graceful stop. Each connection is
``gateway/http1.py``'s ``ClientConnection``.

With ``[server] tls_cert``/``tls_key`` the listener speaks HTTPS (``keys/tls.py``). The TLS
handshake counts against ``client_header_timeout``: it must end within it (else the connection
is dropped), and a connection's first request head is due that long after it was *accepted*,
handshake included. A failed handshake (plain HTTP on the port, an old protocol, a client that
refuses the certificate) closes that connection only, logged at debug level by asyncio. Closing
a TLS connection (flushing the answer and ``close_notify``) takes at most
``client_send_timeout``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

from restguard.config import ServerSettings, Settings
from restguard.gateway.http1 import ClientConnection
from restguard.gateway.upstream_pool import UpstreamPool
from restguard.guard import Decision, Guard
from restguard.keys.keyring import Keyring
from restguard.keys.tls import ServerTLS, TLSFileError
from restguard.oauth2.http import AuthorizationServer
from restguard.tracing import Tracing
from restguard.wiring import Runtime


class Gateway:
    """What every connection shares: the guard, the upstream pool, identity, and ``limits``
    (the ``[server]`` settings: body buffer, slow-client timeouts, connection cap).

    ``authorization_server`` answers restguard's OAuth 2.0 endpoints (``/oauth2/token``,
    ``/.well-known/oauth-authorization-server``; ``gateway/own.py``). Without one those paths
    are still restguard's (never the policy's or the upstream's): they get 503
    ``temporarily_unavailable``."""

    def __init__(
        self,
        guard: Guard,
        keys: Keyring,
        identity: Callable[[Decision], bytes],
        *,
        upstream_host: str,
        upstream_port: int,
        upstream_tls: ssl.SSLContext | None = None,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
        queue_timeout: float,
        limits: ServerSettings,
        observe_upstream: Callable[[float], None] = lambda seconds: None,
        tls: ServerTLS | None = None,
        authorization_server: AuthorizationServer | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.guard, self.keys, self.identity = guard, keys, identity
        self.authorization_server = authorization_server
        self.tracing = tracing  # ([tracing] enabled: one span per request)
        self.pool = UpstreamPool(
            upstream_host,
            upstream_port,
            tls=upstream_tls,
            connect_timeout=connect_timeout,
            size=pool_size,
            queue_timeout=queue_timeout,
            timeout=read_timeout,
        )
        default_port = 443 if upstream_tls else 80
        self.upstream_host = (
            upstream_host if upstream_port == default_port else f"{upstream_host}:{upstream_port}"
        ).encode("idna")
        self.max_body_bytes = limits.max_body_bytes
        self.max_header_bytes = limits.max_header_bytes
        self.trusted_proxies = tuple(limits.trusted_proxies)
        self.observe_upstream = observe_upstream
        self.limits = limits
        self.tls = tls
        self.connections: set[ClientConnection] = set()
        self._server: asyncio.base_events.Server | None = None

    def apply_limits(self, limits: ServerSettings) -> None:
        """New ``[server]`` limits (a reload): read per request and connection from now on."""
        self.limits = limits
        self.max_body_bytes = limits.max_body_bytes
        self.max_header_bytes = limits.max_header_bytes
        self.trusted_proxies = tuple(limits.trusted_proxies)

    def jwks_body(self) -> bytes:
        """The JWKS as served: the keys published now (encoded once per change)."""
        return self.keys.jwks_body()

    async def start(self, sock: socket.socket) -> None:
        # (asyncio builds the protocol when it accepts, before any handshake: the connection's
        # clocks start then)
        if self.tls is None:
            self._server = await self.loop.create_server(
                lambda: ClientConnection(self), sock=sock, backlog=2048
            )
            return
        self._server = await self.loop.create_server(
            lambda: ClientConnection(self),
            sock=sock,
            backlog=2048,
            ssl=self.tls.context,
            ssl_handshake_timeout=self.limits.client_header_timeout,
            ssl_shutdown_timeout=self.limits.client_send_timeout,
        )

    def reload_tls(self, settings: Settings) -> None:
        """Serve ``settings``' certificate and key to new connections (SIGHUP's reload).

        Raises ``ConfigError`` (naming the file, the key and the fix) when they do not load or
        do not match, or when TLS would be turned on or off (that needs a restart): the pair in
        use keeps serving. Connections already open keep theirs."""
        server = settings.server
        if (server.tls_cert is None) != (self.tls is None):
            now = "on" if self.tls is None else "off"
            raise settings.error(
                ("server", "tls_cert"),
                f"turning TLS {now} needs a restart (the listener's protocol cannot change)",
                "restart restguard serve, or restore tls_cert and tls_key",
            )
        if self.tls is None or server.tls_cert is None or server.tls_key is None:
            return
        try:
            self.tls.reload(server.tls_cert, server.tls_key)
        except TLSFileError as exc:
            raise settings.error(("server", exc.key), exc.problem, exc.fix) from None

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let answers in flight finish (up to ``grace`` s); then a request not
        yet answered gets 503 (one already being answered is cut) and every connection closes."""
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + grace
        for conn in list(self.connections):
            conn.close_when_idle()
        while self.connections and self.loop.time() < deadline:
            if all(conn.only_goodbye_left() for conn in self.connections):
                break  # (idle TLS clients need not answer our close_notify)
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.shut_down()
        await asyncio.sleep(0)  # let the 503s be written
        for conn in list(self.connections):
            conn.abort()
        self.pool.close()
        if self._server is not None:
            await self._server.wait_closed()


def listener_tls(settings: Settings) -> ServerTLS | None:
    """The gateway listener's TLS from ``[server] tls_cert``/``tls_key`` (None without them).
    Raises ``ConfigError`` naming the file, the key and the fix when they do not load."""
    server = settings.server
    if server.tls_cert is None or server.tls_key is None:
        return None
    try:
        return ServerTLS(server.tls_cert, server.tls_key)
    except TLSFileError as exc:
        raise settings.error(("server", exc.key), exc.problem, exc.fix) from None


def make_gateway(
    runtime: Runtime,
    identity: Callable[[Decision], bytes],
    observe_upstream: Callable[[float], None],
    *,
    tls: ServerTLS | None = None,
) -> Gateway:
    """The Gateway for ``runtime``'s settings (must run inside the event loop); ``tls`` is the
    listener's (``listener_tls``), None for plain HTTP. The authorization server is the
    runtime's ``authorization_server`` when it has one."""
    settings = runtime.settings
    parts = urlsplit(settings.upstream.url)
    upstream_tls = None
    if parts.scheme == "https":
        # Certificate and host name are verified (the system store, or [upstream] ca_file).
        ca_file = settings.upstream.ca_file
        upstream_tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    return Gateway(
        runtime.guard,
        runtime.keys,
        identity,
        upstream_host=parts.hostname or "127.0.0.1",
        upstream_port=parts.port or (443 if upstream_tls else 80),
        upstream_tls=upstream_tls,
        connect_timeout=settings.upstream.connect_timeout,
        read_timeout=settings.upstream.timeout,
        pool_size=settings.upstream.pool_size,
        queue_timeout=settings.upstream.queue_timeout,
        limits=settings.server,
        observe_upstream=observe_upstream,
        tls=tls,
        # (read with getattr until wiring.Runtime carries it: issue 9's wiring)
        authorization_server=runtime.authorization_server,
        tracing=Tracing() if settings.tracing else None,
    )
