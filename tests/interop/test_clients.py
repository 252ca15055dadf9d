"""Clients we did not write (``requests`` and the ``curl`` binary) against a real gateway."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.harness import GatewayProcess

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="the curl binary is not installed")
MB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def curl(*args: str, timeout: float = 30) -> tuple[int, bytes]:
    """Run curl; return (status, body)."""
    assert CURL is not None
    done = subprocess.run(
        [CURL, "-s", "--max-time", str(timeout), "-w", "\n%{http_code}", *args],
        capture_output=True,
        timeout=timeout + 10,
    )
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


def assert_identity(gw: GatewayProcess, key_id: str, *, subject: str = "tester") -> None:
    seen = gw.upstream.last()
    assert seen.header("X-Restguard-Subject") == subject
    assert seen.header("X-Restguard-Client-Id") == key_id
    assert seen.header("X-Restguard-Auth-Method") == "api_key"
    assert seen.header("X-Restguard-Identity") is not None
    assert seen.header("X-API-Key") is None
    assert seen.header("Authorization") is None


# --- API keys, both headers, both clients ---------------------------------------------------------


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.mark.parametrize("header", ["X-API-Key", "ApiKey", "Bearer"])
def test_requests_with_an_api_key(
    gateway: GatewayProcess, session: requests.Session, header: str
) -> None:
    key_id, key = gateway.issue_key("notes:read")
    headers = {"X-API-Key": key} if header == "X-API-Key" else {"Authorization": f"{header} {key}"}
    r = session.get(gateway.url + "/notes/7", headers=headers, params={"q": "a b"})
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True}
    assert gateway.upstream.last().target == b"/notes/7?q=a+b"
    assert_identity(gateway, key_id)
    # the same session, no credential: 401 with the challenge
    r = session.get(gateway.url + "/notes/7")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == (
        'ApiKey realm="restguard", Signature realm="restguard", Bearer realm="restguard", '
        'OAuth realm="restguard"'
    )
    assert r.json()["error"] == "unauthorized"


@needs_curl
@pytest.mark.parametrize(
    "option",
    [
        ("-H", "X-API-Key: {}"),
        ("-H", "Authorization: ApiKey {}"),
        ("--oauth2-bearer", "{}"),  # curl's own Bearer option: Authorization: Bearer <key>
    ],
)
def test_curl_with_an_api_key(gateway: GatewayProcess, option: tuple[str, str]) -> None:
    key_id, key = gateway.issue_key("notes:read")
    flag, value = option[0], option[1].format(key)
    status, body = curl(flag, value, gateway.url + "/notes/7")
    assert status == 200
    assert json.loads(body) == {"ok": True}
    assert_identity(gateway, key_id)
    status, body = curl(flag, value, "-X", "DELETE", gateway.url + "/notes/7")
    assert status == 403
    assert json.loads(body)["scope"] == "notes:write"


def test_requests_refusals_are_json(gateway: GatewayProcess, session: requests.Session) -> None:
    _, key = gateway.issue_key("notes:read")
    before = len(gateway.upstream.requests)
    for method, path, headers, status in [
        ("GET", "/admin", {"X-API-Key": key}, 404),
        ("POST", "/notes/7", {"X-API-Key": key}, 403),
        ("GET", "/notes/7", {"X-API-Key": key + "x"}, 401),  # malformed: invalid_token
        ("GET", "/notes/7?api_key=" + key, {}, 400),
    ]:
        r = session.request(method, gateway.url + path, headers=headers)
        assert r.status_code == status, (method, path)
        assert r.headers["Content-Type"] == "application/json"
        assert set(r.json()) <= {"error", "error_description", "scope"}
    assert len(gateway.upstream.requests) == before


# --- paths curl sends as they are -----------------------------------------------------------------


@needs_curl
@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/notes/../x", 404, "not_found"),  # normalised to /x: no route
        ("/notes/../../x", 400, "invalid_request"),  # above the root
        ("/notes/%2e%2e/x", 400, "invalid_request"),  # encoded dots
        ("/notes/a%2Fb", 400, "invalid_request"),  # encoded slash
        ("/notes//7", 400, "invalid_request"),
        ("/public/..;/notes/7", 400, "invalid_request"),
    ],
)
def test_curl_path_as_is(gateway: GatewayProcess, path: str, status: int, error: str) -> None:
    _, key = gateway.issue_key("notes:read")
    before = len(gateway.upstream.requests)
    got, body = curl("--path-as-is", "-H", "X-API-Key: " + key, gateway.url + path)
    assert got == status
    assert json.loads(body)["error"] == error
    assert len(gateway.upstream.requests) == before


@needs_curl
def test_curl_dot_segments_reach_the_upstream_resolved(gateway: GatewayProcess) -> None:
    _, key = gateway.issue_key("notes:read")
    status, _ = curl("--path-as-is", "-H", "X-API-Key: " + key, gateway.url + "/notes/x/../7")
    assert status == 200
    assert gateway.upstream.last().target == b"/notes/7"


# --- bodies: large, streamed, chunked -------------------------------------------------------------


def test_requests_large_upload_passes_intact(
    gateway: GatewayProcess, session: requests.Session
) -> None:
    _, key = gateway.issue_key("notes:write")
    data = os.urandom(5 * MB)
    r = session.post(gateway.url + "/notes/upload", data=data, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    seen = gateway.upstream.last()
    assert len(seen.body) == len(data)
    assert sha(seen.body) == sha(data)
    assert seen.header("Content-Length") == str(len(data))


@needs_curl
def test_curl_large_upload_passes_intact(gateway: GatewayProcess, tmp_path: Path) -> None:
    _, key = gateway.issue_key("notes:write")
    data = os.urandom(5 * MB)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(data)
    status, _ = curl(
        "-X",
        "PUT",
        "-H",
        "X-API-Key: " + key,
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        f"@{upload}",
        gateway.url + "/notes/7",
    )
    assert status == 200
    seen = gateway.upstream.last()
    assert seen.method == "PUT"
    assert sha(seen.body) == sha(data)
    assert seen.header("Content-Type") == "application/octet-stream"


def test_requests_chunked_upload_passes_intact(
    gateway: GatewayProcess, session: requests.Session
) -> None:
    _, key = gateway.issue_key("notes:write")
    parts = [os.urandom(64 * 1024 + i) for i in range(20)]

    def body() -> Iterator[bytes]:
        yield from parts

    r = session.post(gateway.url + "/notes/stream", data=body(), headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    seen = gateway.upstream.last()
    assert sha(seen.body) == sha(b"".join(parts))
    # streamed on: no length was announced, so none may be invented
    assert seen.header("Content-Length") is None
    assert seen.header("Transfer-Encoding") == "chunked"


def test_requests_over_the_body_limit_is_refused(
    gateway: GatewayProcess, session: requests.Session
) -> None:
    _, key = gateway.issue_key("notes:write")
    before = len(gateway.upstream.requests)
    data = b"x" * (10 * MB + 1)
    try:
        r = session.post(gateway.url + "/notes/big", data=data, headers={"X-API-Key": key})
    except requests.ConnectionError:
        pass  # the gateway may close before the whole body is sent
    else:
        assert r.status_code == 413
        assert r.json()["error"] == "invalid_request"
    assert len(gateway.upstream.requests) == before


@pytest.fixture
def big_reply(gateway: GatewayProcess) -> bytes:
    data = os.urandom(3 * MB)
    gateway.upstream.reply.body = data
    gateway.upstream.reply.headers = [("Content-Type", "application/octet-stream")]
    return data


def test_requests_large_response_streams_back_intact(
    gateway: GatewayProcess, session: requests.Session, big_reply: bytes
) -> None:
    _, key = gateway.issue_key("notes:read")
    with session.get(gateway.url + "/notes/7", headers={"X-API-Key": key}, stream=True) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/octet-stream"
        chunks = list(r.iter_content(64 * 1024))
    received = b"".join(chunks)
    assert len(received) == len(big_reply)
    assert sha(received) == sha(big_reply)


@needs_curl
def test_curl_large_response_streams_back_intact(
    gateway: GatewayProcess, big_reply: bytes, tmp_path: Path
) -> None:
    _, key = gateway.issue_key("notes:read")
    out = tmp_path / "out.bin"
    status, _ = curl("-H", "X-API-Key: " + key, "-o", str(out), gateway.url + "/notes/7")
    assert status == 200
    assert sha(out.read_bytes()) == sha(big_reply)


def test_requests_chunked_response(gateway: GatewayProcess, session: requests.Session) -> None:
    _, key = gateway.issue_key("notes:read")
    data = os.urandom(256 * 1024)
    gateway.upstream.reply.body = data
    gateway.upstream.reply.chunked = True
    r = session.get(gateway.url + "/notes/7", headers={"X-API-Key": key})
    assert r.status_code == 200
    assert sha(r.content) == sha(data)


def test_requests_public_route_head_and_query(
    gateway: GatewayProcess, session: requests.Session
) -> None:
    r = session.get(gateway.url + "/public/a/b", params={"x": "1/2", "y": "é"})
    assert r.status_code == 200
    seen = gateway.upstream.last()
    assert seen.target == b"/public/a/b?x=1%2F2&y=%C3%A9"
    assert seen.header("X-Restguard-Subject") is None  # anonymous: no identity headers
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
