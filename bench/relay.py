"""The floor of any Python proxy on this machine: bytes relayed, nothing parsed.

``python bench/relay.py PORT UPSTREAM_PORT`` listens on 127.0.0.1:PORT and gives each client
connection its own keep-alive connection to 127.0.0.1:UPSTREAM_PORT; what one side sends, the
other receives, through one ``data_received`` and one ``write`` each way (uvloop, TCP_NODELAY).
No HTTP parsing, no header rewriting, no decision: every real proxy (restguard, any Python
gateway) does at least this per request, so its CPU per request bounds from below what a
Python gateway can cost. ``bench/run.py`` measures it beside nginx as the ``py-relay`` target.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class Client(asyncio.Protocol):
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.upstream: asyncio.Transport | None = None
        self.pending: list[bytes] = []

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
