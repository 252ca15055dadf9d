"""A scriptable raw upstream and a strict raw client, for the gateway's wire-level tests.

``RawUpstream``'s per-test ``handler`` writes byte-exact answers and it records each request
with the upstream connection it came on; ``Conn`` reads responses with RFC 9112 framing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httptools

from tests.attacks.wire import Response, api_key, request
from tests.harness import free_port

# --- a scriptable raw upstream ----------------------------------------------------------------


@dataclass
class Seen:
    """One request as the raw upstream received it, and on which connection."""

    conn: int  # the upstream connection, numbered in accept order from 1
    port: int  # the gateway's source port on that connection
    index: int  # the request's position on its connection (0: the first)
    method: str
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == name.encode()]


Handler = Callable[["UpConn", Seen], Awaitable[None]]


async def answer_ok(conn: UpConn, seen: Seen) -> None:
    conn.answer(200, b"ok " + seen.target)


class UpConn(asyncio.Protocol):
    """One connection to the raw upstream; requests are handed to the handler one at a time."""

    def __init__(self, owner: RawUpstream) -> None:
        self.owner = owner
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.number = 0
        self.port = 0
        self.count = 0
        self.raw = b""
        self.closed = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._lock = asyncio.Lock()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        owner = self.owner
        owner.accepted += 1
        owner.open += 1
        owner.max_open = max(owner.max_open, owner.open)
        self.number = owner.accepted
        self.port = transport.get_extra_info("peername")[1]
        owner.conns.append(self)

    def data_received(self, data: bytes) -> None:
        self.raw += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.owner.errors.append(f"bad request from the gateway: {exc!r}")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.owner.open -= 1
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        seen = Seen(
            self.number,
            self.port,
            self.count,
            self.parser.get_method().decode(),
            self._url,
            self.parser.get_http_version(),
            self._headers,
            b"".join(self._body),
        )
        self.count += 1
        self.owner.requests.append(seen)
        asyncio.get_running_loop().create_task(self._serve(seen))

    async def _serve(self, seen: Seen) -> None:
        async with self._lock:
            try:
                await self.owner.handler(self, seen)
            except Exception as exc:  # reported by the fixture
                self.owner.errors.append(f"handler failed: {exc!r}")

    # what handlers use
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        await self._writable.wait()

    def answer(self, status: int = 200, body: bytes = b"ok", *headers: str) -> None:
        head = [f"HTTP/1.1 {status} X", *headers, f"Content-Length: {len(body)}"]
        self.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RawUpstream:
    """An upstream on 127.0.0.1 whose answers are written by ``handler`` (async, per request)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler: Handler = answer_ok
        self.requests: list[Seen] = []
        self.conns: list[UpConn] = []
        self.errors: list[str] = []
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("raw upstream did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            self.loop.create_server(lambda: UpConn(self), "127.0.0.1", self.port)
        )
        self._ready.set()
        self.loop.run_forever()
        server.close()
        for conn in self.conns:
            conn.close()
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


# --- a raw client with strict framing -----------------------------------------------------------


class Incomplete(AssertionError):
    """The connection ended before a complete response."""


class Conn:
    """One client connection; ``response()`` reads the next response with RFC 9112 framing."""

    def __init__(self, port: int, *, timeout: float = 5.0, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.eof = False

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> None:
        if not self.eof:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            self.buf += chunk
            self.eof = not chunk
        if self.eof:
            raise Incomplete(f"connection closed; unparsed: {self.buf[:200]!r}")

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self, *, head: bool = False) -> Response:
        """The next response on the connection (1xx included, as their own responses)."""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        block, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = block.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [(k, v.strip()) for k, _, v in (x.partition(":") for x in lines[1:])]
        names = [k.lower() for k, _ in headers]
        if head or status < 200 or status in (204, 304):
            return Response(status, headers, b"")
        if "transfer-encoding" in names:
            assert names.count("transfer-encoding") == 1, headers
            assert "content-length" not in names, headers
            body = b""
            try:
                while size := int(self._line().split(b";")[0], 16):
                    body += self._take(size)
                    assert self._take(2) == b"\r\n"
                while self._line():  # trailer section
                    pass
            except Incomplete as exc:
                raise Incomplete(f"chunked body cut after {len(body)} bytes: {exc}") from None
            return Response(status, headers, body)
        if "content-length" in names:
            return Response(status, headers, self._take(int(dict(headers)["content-length"])))
        with contextlib.suppress(Incomplete):  # delimited by the end of the connection
            while True:
                self._more()
        body, self.buf = self.buf, b""
        return Response(status, headers, body)

    def closed(self, wait: float = 2.0) -> bool:
        """True if the server closes the connection within ``wait`` s with nothing more sent."""
        self.sock.settimeout(wait)
        try:
            self._more()
        except Incomplete:
            return self.buf == b""
        except TimeoutError:
            return False
        return False

    def idle(self, wait: float = 0.2) -> bool:
        """True if nothing arrives and the connection stays open for ``wait`` s."""
        self.sock.settimeout(wait)
        try:
            self._more()
        except (TimeoutError, Incomplete):
            pass
        return not self.eof and self.buf == b""


def values(response: Response, name: str) -> list[str]:
    return [v for k, v in response.headers if k.lower() == name]


def get(key: str, target: bytes = b"/notes/1", *headers: tuple[bytes, bytes]) -> bytes:
    return request(target, api_key(key), *headers)
