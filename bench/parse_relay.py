"""The floor of a Python HTTP proxy on this machine: both heads parsed and rebuilt, no checks.

``python bench/parse_relay.py PORT UPSTREAM_PORT`` listens on 127.0.0.1:PORT and gives each
client connection its own keep-alive connection to 127.0.0.1:UPSTREAM_PORT, like
``bench/relay.py``. Unlike it, each request is parsed with httptools (llhttp, as restguard and
uvicorn do), its head rebuilt from the parsed method, target and fields (hop-by-hop fields
dropped), and sent on; the answer is parsed with httptools too and its head rebuilt for the
client. That much any proxy that must not forward bytes it has not understood (request
smuggling) does per request. No routing, policy, credential, audit line, metric, timer or
limit: everything restguard does beyond this is its own. ``bench/run.py`` measures it beside
nginx as the ``py-parse`` target. It handles what the bench sends (GETs, one at a time per
connection, answers with ``Content-Length``); it is a gauge, not a proxy to run.
"""

from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop

#: RFC 9110 section 7.6.1: fields for this connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


class Upstream(asyncio.Protocol):
    """One keep-alive upstream connection; rebuilds each answer's head for the client."""

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.fields: list[bytes] = []
        self.body: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in HOP_BY_HOP:
            self.fields.append(name + b": " + value + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        head = b"HTTP/1.1 %d OK\r\n" % status + b"".join(self.fields) + b"\r\n"
        self.client.write(head + b"".join(self.body))
        self.fields = []
        self.body = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class Client(asyncio.Protocol):
    """One client connection; rebuilds each request's head for the upstream."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.upstream: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.fields: list[bytes] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        upstream, _ = await loop.create_connection(
            lambda: Upstream(self.transport), "127.0.0.1", self.upstream_port
        )
        self.upstream = upstream
        for data in self.pending:
            upstream.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in HOP_BY_HOP:
            self.fields.append(name + b": " + value + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        head = method + b" " + self.url + b" HTTP/1.1\r\n" + b"".join(self.fields) + b"\r\n"
        data = head + b"".join(self.body)
        self.url = b""
        self.fields = []
        self.body = []
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def main(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(upstream_port), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
