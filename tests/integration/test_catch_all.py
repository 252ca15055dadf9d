"""Catch-all routes (issue 7, item 3): ``/**`` in front of an API, with restguard's own
endpoints still answered by restguard before the policy (CONTRACT "Configuration") and never
proxied; endpoints this version does not serve are ordinary paths for the policy."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from restguard.cli.serve import _Server, bind, uvicorn_config
from restguard.config import Listen
from restguard.demo.notes import NotesApp
from restguard.store.sql import open_store
from tests.harness import GatewayProcess, RecordingUpstream, free_port, raw_request

CATCH_ALL = """\
[[routes]]
path = "/health"
methods = ["GET"]
public = true

[[routes]]
path = "/**"
methods = ["GET", "HEAD"]
scopes = ["notes:read"]

[[routes]]
path = "/**"
methods = ["POST", "PUT", "PATCH", "DELETE"]
scopes = ["notes:write"]
"""


class DemoUpstream:
    """The quickstart's demo notes API under uvicorn, in a background thread."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server = _Server(uvicorn_config(NotesApp()))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the demo API did not start"
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        sock = bind(Listen("127.0.0.1", self.port))
        self.loop.run_until_complete(self.server.serve(sockets=[sock]))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def demo_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    demo = DemoUpstream()
    gw = GatewayProcess(tmp_path / "gw", demo, routes=CATCH_ALL).start()  # type: ignore[arg-type]
    yield gw
    gw.stop()
    demo.stop()


def test_a_catch_all_policy_in_front_of_the_demo_api(demo_gateway: GatewayProcess) -> None:
    gw = demo_gateway
    _, reader = gw.issue_key("notes:read", name="reader")
    _, writer = gw.issue_key("notes:read", "notes:write", name="writer")
    # the policy covers every path of the API
    assert httpx.get(gw.url + "/health").json()["status"] == "ok"
    assert httpx.get(gw.url + "/notes").status_code == 401
    listed = httpx.get(gw.url + "/notes", headers={"X-API-Key": reader})
    assert listed.status_code == 200
    assert listed.json()["seen_by_upstream"] == {"subject": "reader", "auth_method": "api_key"}
    denied = httpx.post(gw.url + "/notes", json={"text": "x"}, headers={"X-API-Key": reader})
    assert denied.status_code == 403
    made = httpx.post(gw.url + "/notes", json={"text": "x"}, headers={"X-API-Key": writer})
    assert made.status_code == 201
    assert httpx.get(gw.url + "/anything/else").status_code == 401
    # ... and restguard's JWKS is still restguard's, with no credential, not the demo's 404
    jwks = httpx.get(gw.url + "/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert jwks.headers["cache-control"] == "public, max-age=60"
    assert "seen_by_upstream" not in jwks.text
    [key] = jwt.PyJWKSet.from_dict(jwks.json()).keys
    assert key.key_id in _signing_kids(gw)  # restguard's own signing key
    assert httpx.head(gw.url + "/.well-known/jwks.json").status_code == 200


def _signing_kids(gw: GatewayProcess) -> set[str]:
    async def kids() -> set[str]:
        store = open_store(gw.settings.database_url)
        try:
            return {r.kid for r in await store.signing_keys.list()}
        finally:
            store.close()

    return asyncio.run(kids())


@pytest.fixture
def recording_gateway(tmp_path: Path, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    upstream.clear()
    gw = GatewayProcess(tmp_path / "gw", upstream, routes=PUBLIC_CATCH_ALL).start()
    yield gw
    gw.stop()


PUBLIC_CATCH_ALL = """\
[[routes]]
path = "/**"
methods = ["GET", "POST", "PUT", "DELETE", "OPTIONS"]
public = true
"""

OWN = [
    b"GET /.well-known/jwks.json HTTP/1.1",
    b"HEAD /.well-known/jwks.json HTTP/1.1",
    b"GET /.well-known/jwks.json?x=1 HTTP/1.1",
    b"GET /.well-known/./jwks.json HTTP/1.1",  # the normalised path is what counts
    b"GET /.well-known/x/../jwks.json HTTP/1.1",
    b"GET /.well-known/%6Awks.json HTTP/1.1",
]


@pytest.mark.parametrize("line", OWN, ids=[x.decode() for x in OWN])
def test_own_endpoints_are_never_proxied_whatever_the_routes(
    recording_gateway: GatewayProcess, upstream: RecordingUpstream, line: bytes
) -> None:
    answer = raw_request(recording_gateway.port, line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    if not line.startswith(b"HEAD"):
        assert b'"keys"' in answer
    time.sleep(0.05)
    assert upstream.requests == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_on_an_own_endpoint_get_405(
    recording_gateway: GatewayProcess, upstream: RecordingUpstream, method: str
) -> None:
    with httpx.Client(base_url=recording_gateway.url) as client:
        answer = client.request(method, "/.well-known/jwks.json", content=b"GET /x HTTP/1.1")
        assert answer.status_code == 405
        assert answer.headers["allow"] == "GET, HEAD"
        assert answer.json()["error"] == "invalid_request"
        time.sleep(0.05)
        assert upstream.requests == []
        # the same connection goes on: the body was read and dropped, not taken for a request
        assert client.get("/ok").status_code == 200
    assert [r.target for r in upstream.requests] == [b"/ok"]


@pytest.mark.parametrize(
    "path",
    [
        "/oauth1/token",  # not one of restguard's: the policy decides
        "/oauth1",
        "/.well-known/openid-configuration",
        "/tenant/.well-known/jwks.json",
    ],
)
def test_other_paths_go_to_the_policy(
    recording_gateway: GatewayProcess, upstream: RecordingUpstream, path: str
) -> None:
    assert httpx.get(recording_gateway.url + path).status_code == 200
    assert upstream.last().target == path.encode()


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("POST", "/oauth2/token", 401, "invalid_client"),  # no client authentication
        ("GET", "/oauth2/token", 405, "invalid_request"),
        ("GET", "/.well-known/oauth-authorization-server", 200, None),
        ("POST", "/.well-known/oauth-authorization-server", 405, "invalid_request"),
        ("POST", "/oauth1/request_token", 400, "invalid_request"),  # no OAuth parameters
        ("GET", "/oauth1/request_token", 405, "invalid_request"),
        ("POST", "/oauth1/access_token", 400, "invalid_request"),
    ],
)
def test_the_authorization_servers_endpoints_are_never_proxied(
    recording_gateway: GatewayProcess,
    upstream: RecordingUpstream,
    method: str,
    path: str,
    status: int,
    error: str | None,
) -> None:
    # served by restguard's authorization server whatever the routes say (a /** route too)
    upstream.clear()
    r = httpx.request(method, recording_gateway.url + path, data={"grant_type": "x"})
    assert r.status_code == status
    assert r.json().get("error") == error
    if status == 200:
        assert r.json()["issuer"] == recording_gateway.settings.server.public_url
    time.sleep(0.05)
    assert upstream.requests == []


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/JWKS.json",
        "/.well-known/jwks.json/",
        "/OAuth2/Token",
        "/.well-known/oauth-authorization-server/",
    ],
)
def test_spellings_of_an_own_endpoint_are_refused_not_forwarded(
    recording_gateway: GatewayProcess, upstream: RecordingUpstream, path: str
) -> None:
    # a case-insensitive upstream router would answer them with a document of its own,
    # under restguard's issuer URL: ambiguous, as a path folding onto a route is
    upstream.clear()
    r = httpx.get(recording_gateway.url + path)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    assert upstream.requests == []
