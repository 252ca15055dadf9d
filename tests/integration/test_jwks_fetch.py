"""The JWKS fetcher and cache against a real HTTP server on 127.0.0.1 (plain and TLS)."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from restguard.clock import FixedClock
from restguard.errors import BackendUnavailable
from restguard.keys.jwks import JWKSCache
from restguard.keys.jwks_fetch import JWKSEndpoint, JWKSFetchError, fetch_jwks
from tests.pki import Pki
from tests.unit.keys.jwt_helpers import EC, ED


class JWKSServer:
    """Answers every GET per ``mode``; counts the requests."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": [ED.jwk()]}
        self.mode = "ok"
        self.status = 200
        self.content_type = "application/json"
        self.cache_control: str | None = "max-age=600"
        self.requests = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            body = json.dumps(self.jwks).encode()
            head = [f"HTTP/1.1 {self.status} X", f"Content-Type: {self.content_type}"]
            if self.cache_control:
                head.append(f"Cache-Control: {self.cache_control}")
            if self.mode == "slow":
                await asyncio.sleep(5)
            elif self.mode == "redirect":
                head[0] = "HTTP/1.1 302 Found"
                head.append(f"Location: http://127.0.0.1:{self.port}/other")
                body = b""
            elif self.mode == "huge-chunked":  # no Content-Length to trust
                head.append("Transfer-Encoding: chunked")
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
                chunk = b"x" * 65536
                for _ in range(8):
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return
            elif self.mode == "huge-length":  # an honest Content-Length, over the cap
                head.append("Content-Length: 300000")
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + b"x" * 300_000)
                await writer.drain()
                return
            elif self.mode == "not-json":
                body = b"<html>hello</html>"
            head.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _serve(server: JWKSServer, ssl_ctx: ssl.SSLContext | None) -> AsyncIterator[JWKSServer]:
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=ssl_ctx)
    server.port = srv.sockets[0].getsockname()[1]
    async with srv:
        yield server
        srv.close()


@pytest.fixture
async def jwks_server() -> AsyncIterator[JWKSServer]:
    async for s in _serve(JWKSServer(), None):
        yield s


def url(server: JWKSServer, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.port}/.well-known/jwks.json"


async def fetch(server: JWKSServer, **kw: Any) -> Any:
    return await fetch_jwks(JWKSEndpoint.parse(url(server)), **kw)


async def test_fetch_success(jwks_server: JWKSServer) -> None:
    got = await fetch(jwks_server)
    assert [k.kid for k in got.keys.keys] == ["ed-1"]
    assert got.cache_control == "max-age=600"


async def test_rotated_key_is_picked_up_after_the_cooldown(jwks_server: JWKSServer) -> None:
    clock = FixedClock()
    cache = JWKSCache(url(jwks_server), clock=clock)
    assert (await cache.key("ed-1")) is not None
    jwks_server.jwks = {"keys": [ED.jwk(), EC.jwk()]}
    clock.advance(1)
    assert await cache.key("ec-1") is None  # within the cooldown: no fetch, 401
    assert jwks_server.requests == 1
    clock.advance(1)  # 2 s after the last fetch
    key = await cache.key("ec-1")
    assert key is not None and key.kid == "ec-1" and jwks_server.requests == 2
    await cache.aclose()


async def test_slow_server_times_out(jwks_server: JWKSServer) -> None:
    jwks_server.mode = "slow"
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(JWKSFetchError, match="within"):
        await fetch(jwks_server, timeout=0.3)
    assert loop.time() - start < 1.5


@pytest.mark.parametrize("mode", ["huge-chunked", "huge-length"])
async def test_huge_body_hits_the_size_cap(jwks_server: JWKSServer, mode: str) -> None:
    jwks_server.mode = mode
    with pytest.raises(JWKSFetchError, match="larger than"):
        await fetch(jwks_server, max_bytes=256 * 1024)


async def test_redirect_is_not_followed(jwks_server: JWKSServer) -> None:
    jwks_server.mode = "redirect"
    with pytest.raises(JWKSFetchError, match="redirect"):
        await fetch(jwks_server)
    assert jwks_server.requests == 1


async def test_non_json_is_refused(jwks_server: JWKSServer) -> None:
    jwks_server.mode = "not-json"
    with pytest.raises(JWKSFetchError, match="JSON"):
        await fetch(jwks_server)
    jwks_server.mode, jwks_server.content_type = "ok", "text/html"
    with pytest.raises(JWKSFetchError, match="content type"):
        await fetch(jwks_server)


async def test_jwks_without_a_usable_key_is_refused(jwks_server: JWKSServer) -> None:
    jwks_server.jwks = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hs"}]}
    with pytest.raises(JWKSFetchError, match="no usable key"):
        await fetch(jwks_server)


async def test_server_error_keeps_the_cached_keys(jwks_server: JWKSServer) -> None:
    clock = FixedClock()
    cache = JWKSCache(url(jwks_server), clock=clock)
    assert await cache.key("ed-1") is not None
    jwks_server.status = 500
    with pytest.raises(JWKSFetchError, match="500"):
        await fetch(jwks_server)
    clock.advance(3600)  # expired; the background refresh fails
    assert await cache.key("ed-1") is not None
    await asyncio.sleep(0.1)
    assert "500" in cache.policy.last_error
    assert await cache.key("ed-1") is not None
    clock.advance(86400)  # past max-stale: fail closed
    with pytest.raises(BackendUnavailable):
        await cache.key("ed-1")
    await cache.aclose()


@pytest.mark.parametrize(
    "bad",
    [
        "http://issuer.example/jwks",
        "http://10.0.0.1/jwks",
        "ftp://127.0.0.1/jwks",
        "https://user:pw@issuer.example/jwks",
    ],
)
def test_unsafe_urls_are_refused_at_construction(bad: str) -> None:
    with pytest.raises(ValueError):
        JWKSCache(bad, clock=FixedClock())


@pytest.mark.parametrize("ok", ["http://127.0.0.2:8080/k", "http://[::1]/k", "http://localhost/k"])
def test_loopback_http_is_allowed(ok: str) -> None:
    JWKSCache(ok, clock=FixedClock())


async def test_https_with_a_private_ca(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    cert, key = pki.pair()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    async for server in _serve(JWKSServer(), ctx):
        cache = JWKSCache(url(server, "https"), clock=FixedClock(), ca_file=str(pki.ca))
        got = await cache.key("ed-1")
        assert got is not None and got.kid == "ed-1"
        await cache.aclose()
        # without the CA (the system store only) the certificate is not trusted
        with pytest.raises(JWKSFetchError, match=r"TLS|certificate"):
            await fetch_jwks(JWKSEndpoint.parse(url(server, "https")))
