"""End-to-end test harness: a recording upstream and a real gateway on 127.0.0.1.

``RecordingUpstream`` is a raw HTTP/1.1 server (httptools) that records byte-exact what it
received: method, raw request target, header list and body. ``GatewayProcess`` runs the real
``run_servers`` (gateway + admin listeners) in a background thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httptools
import uvloop

from restguard.cli.init import write_data_dir
from restguard.cli.serve import run_servers
from restguard.config import Settings, load
from restguard.credentials.apikey import new_record
from restguard.store.sql import open_store

TEST_ROUTES = """\
[[routes]]
path = "/public/**"
methods = ["GET", "POST"]
public = true

[[routes]]
path = "/notes/{id}"
methods = ["GET"]
scopes = ["notes:read"]

[[routes]]
path = "/notes/**"
methods = ["GET", "HEAD"]
scopes = ["notes:read"]

[[routes]]
path = "/notes/**"
methods = ["POST", "PUT", "PATCH", "DELETE"]
scopes = ["notes:write"]

[[routes]]
path = "/fwd/**"
methods = ["GET"]
scopes = ["notes:read"]
forward_credentials = true

[[routes]]
path = "/limited"
methods = ["GET"]
rate_limit = "3/minute"
"""


def set_key(text: str, key: str, value: str) -> str:
    """Set ``key = value`` in a restguard.toml text: ``"section.key"`` in that table, a bare
    ``key`` where it first appears."""
    section, _, name = key.rpartition(".")
    line = re.compile(rf"(?m)^{re.escape(name)} = .*$")
    if not section:
        return line.sub(f"{name} = {value}", text, count=1)
    head = re.search(rf"(?m)^\[{re.escape(section)}\]$", text)
    assert head is not None, f"no [{section}] table"
    nxt = re.search(r"(?m)^\[", text[head.end() :])
    end = head.end() + nxt.start() if nxt else len(text)
    body = text[head.end() : end]
    assert line.search(body), f"no {name} in [{section}]"
    return text[: head.end()] + line.sub(f"{name} = {value}", body, count=1) + text[end:]


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, below the kernel's ephemeral range: a port
    from that range can be taken, between this call and its use, as the local port of some
    outgoing connection ("Address already in use" at random). Never the same twice."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10_000, max(low, 10_001))
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # (a crowded range: any free port)
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    """One request as the upstream saw it."""

    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [
            v.decode("latin-1") for k, v in self.headers if k.lower() == name.lower().encode()
        ]
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None

    def header_names(self) -> set[str]:
        return {k.decode("latin-1").lower() for k, _ in self.headers}


@dataclass
class Reply:
    """What the upstream answers (changeable per test)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(
        default_factory=lambda: [("Content-Type", "application/json")]
    )
    body: bytes = b'{"ok": true}'
    delay: float = 0.0
    chunked: bool = False


class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, owner: RecordingUpstream) -> None:
        self.owner = owner
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        received = Received(method, self.url, self.headers, self.body)
        self._reset()
        self.owner.requests.append(received)
        asyncio.get_running_loop().create_task(self._answer(method))

    async def _answer(self, method: str) -> None:
        reply = self.owner.reply
        if reply.delay:
            await asyncio.sleep(reply.delay)
        assert self.transport is not None
        if self.transport.is_closing():
            return
        head = [f"HTTP/1.1 {reply.status} X"]
        head += [f"{k}: {v}" for k, v in reply.headers]
        body = b"" if method == "HEAD" else reply.body
        if reply.chunked:
            head.append("Transfer-Encoding: chunked")
            payload = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
        else:
            head.append(f"Content-Length: {len(reply.body)}")
            payload = body
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)


class RecordingUpstream:
    """A raw upstream on 127.0.0.1 that records every request it receives."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.reply = Reply()
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("recording upstream did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _UpstreamProtocol(self), "127.0.0.1", self.port)
        )
        self._server = server
        self._ready.set()
        self.loop.run_forever()
        server.close()
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    def clear(self) -> None:
        self.requests.clear()
        self.reply = Reply()

    def last(self) -> Received:
        assert self.requests, "the upstream received nothing"
        return self.requests[-1]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class GatewayProcess:
    """The real gateway and admin listeners, in a background thread, on free ports."""

    def __init__(
        self,
        directory: Path,
        upstream: RecordingUpstream,
        *,
        database_url: str | None = None,
        routes: str = TEST_ROUTES,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.port, self.admin_port = free_port(), free_port()
        config = write_data_dir(
            directory,
            upstream=upstream.url,
            listen=f"127.0.0.1:{self.port}",
            admin_listen=f"127.0.0.1:{self.admin_port}",
            routes=routes,
        )
        text = config.read_text()
        if database_url:
            text = text.replace(
                'database = "sqlite:///restguard.db"', f'database = "{database_url}"'
            )
        for key, value in (extra or {}).items():
            text = set_key(text, key, value)
        config.write_text(text)
        self.config = config
        self.settings: Settings = load(config)
        self.upstream = upstream
        self.loop = uvloop.new_event_loop()  # what `restguard serve` runs on
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> GatewayProcess:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._ready.wait(0.05):
            if self._error or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start: {self._error!r}")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            await run_servers(self.settings, on_ready=self._ready.set, stop=self._stop)

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            self.loop.close()

    def stop(self) -> None:
        if self._stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def issue_key(
        self, *scopes: str, name: str = "tester", expires_in: int | None = None
    ) -> tuple[str, str]:
        """A fresh API key (id, key) written straight to the store."""
        record, key = new_record(name, tuple(scopes), datetime.now(UTC), expires_in)

        async def insert() -> None:
            store = open_store(self.settings.database_url)
            try:
                await store.api_keys.insert(record)
            finally:
                store.close()

        asyncio.run(insert())
        return record.id, key

    def audit_events(self) -> list[dict[str, Any]]:
        """The decision log, after the server's next batch write (every 0.25 s)."""
        time.sleep(0.4)
        path = self.settings.audit_path
        assert path is not None
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes to 127.0.0.1:port and return everything until the server closes or
    one full response has arrived (Content-Length bodies only)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            head, sep, body = out.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
        return out


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def json_body(response: bytes) -> dict[str, Any]:
    return dict(json.loads(response.partition(b"\r\n\r\n")[2]))
