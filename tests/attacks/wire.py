"""Byte-exact requests and strict response parsing for the attack tests.

``exchange`` sends raw bytes and parses every response that comes back (HEAD, chunked and
pipelined responses included), so a test can say exactly what the client saw. ``assert_refused``
is the contract's refusal: the status, a JSON ``{"error", "error_description"}`` body (never a
stack trace, never text/plain) and nothing at all at the upstream.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any

from tests.harness import GatewayProcess, Received, RecordingUpstream

Header = tuple[bytes, bytes]


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None

    def values(self, name: str) -> list[str]:
        """Every value of a header that may be repeated (WWW-Authenticate), in order."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


def request(
    target: bytes = b"/notes/1",
    *headers: Header,
    method: bytes = b"GET",
    body: bytes = b"",
    version: bytes = b"HTTP/1.1",
    host: bytes | None = b"gateway.test",
) -> bytes:
    """One request, byte for byte. ``host=None`` sends no Host header."""
    lines = [method + b" " + target + b" " + version]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def api_key(key: str) -> Header:
    return (b"X-API-Key", key.encode())


def chunked(data: bytes, size: int = 256) -> bytes:
    """``data`` in the chunked transfer coding (RFC 9112 §7.1)."""
    out = b""
    for i in range(0, len(data), size):
        piece = data[i : i + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n\r\n"


def _parse_one(buf: bytes, head: bool) -> tuple[Response, bytes] | None:
    """One complete response from the front of ``buf`` and the rest; None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    rest = buf[end + 4 :]
    names = {k.lower(): v for k, v in headers}
    if head or status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, b""), rest
    if "content-length" in names:
        n = int(names["content-length"])
        if len(rest) < n:
            return None
        return Response(status, headers, rest[:n]), rest[n:]
    if names.get("transfer-encoding", "").lower() == "chunked":
        body, pos = b"", 0
        while True:
            eol = rest.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(rest[pos:eol].split(b";")[0], 16)
            if size == 0:
                if rest.find(b"\r\n", eol + 2) < 0:
                    return None
                return Response(status, headers, body), rest[rest.find(b"\r\n", eol + 2) + 2 :]
            if len(rest) < eol + 2 + size + 2:
                return None
            body += rest[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2
    return None  # delimited by close: complete only at EOF


def exchange(
    port: int,
    data: bytes,
    *,
    head: bool = False,
    responses: int = 1,
    timeout: float = 5.0,
    pause_after: bytes | None = None,
) -> list[Response]:
    """Send ``data`` on one connection; return up to ``responses`` final (non-1xx) responses,
    fewer if the server closes first."""
    out: list[Response] = []
    buf = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        deadline = time.monotonic() + timeout
        while len(out) < responses and time.monotonic() < deadline:
            parsed = _parse_one(buf, head)
            if parsed is not None:
                response, buf = parsed
                if not 100 <= response.status < 200:
                    out.append(response)
                continue
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                if buf:  # a close-delimited body
                    end = buf.find(b"\r\n\r\n")
                    lines = buf[:end].decode("latin-1").split("\r\n")
                    hdrs = [
                        (k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:])
                    ]
                    out.append(Response(int(lines[0].split(" ", 2)[1]), hdrs, buf[end + 4 :]))
                break
            buf += chunk
    return out


def send(port: int, data: bytes, *, head: bool = False, timeout: float = 5.0) -> Response:
    """Send one request and return its response."""
    got = exchange(port, data, head=head, timeout=timeout)
    assert got, f"no response to {data[:120]!r}"
    return got[0]


def assert_json_error(response: Response, status: int, error: str | None = None) -> dict[str, Any]:
    """The contract's error shape: status, application/json, error + error_description."""
    assert response.status == status, (response.status, response.body[:300])
    assert response.header("content-type") == "application/json", response.headers
    text = response.body.decode("utf-8")
    assert "Traceback" not in text and 'File "' not in text
    body = response.json()
    assert {"error", "error_description"} <= set(body) <= {"error", "error_description", "scope"}
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["error_description"], str) and body["error_description"]
    if error is not None:
        assert body["error"] == error, body
    return body


def assert_refused(
    gw: GatewayProcess,
    data: bytes,
    status: int,
    error: str | None = "invalid_request",
    *,
    head: bool = False,
) -> Response:
    """Send ``data``: it gets ``status`` with the JSON error, and the upstream receives nothing."""
    upstream = gw.upstream
    before = len(upstream.requests)
    response = send(gw.port, data, head=head)
    if not head:
        assert_json_error(response, status, error)
    else:
        assert response.status == status
        assert response.header("content-type") == "application/json"
    time.sleep(0.02)  # anything wrongly forwarded would have arrived by now
    assert upstream.requests[before:] == [], "the upstream received a refused request"
    return response


def assert_forwarded(
    gw: GatewayProcess, data: bytes, target: bytes, *, head: bool = False, method: str = "GET"
) -> tuple[Response, Received]:
    """Send ``data``: it succeeds and the upstream receives exactly one request for ``target``."""
    upstream: RecordingUpstream = gw.upstream
    before = len(upstream.requests)
    response = send(gw.port, data, head=head)
    assert response.status == 200, (response.status, response.body[:300])
    got = upstream.requests[before:]
    assert len(got) == 1, got
    assert got[0].target == target
    assert got[0].method == method
    return response, got[0]
