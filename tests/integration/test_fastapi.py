"""restguard.fastapi the idiomatic way: set up in ``lifespan`` under a real uvicorn, default deny
for every endpoint (mounts and static files included), ``require_scopes`` as an endpoint's own
policy, on WebSockets and in the OpenAPI document, and the audit log written while the app runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.staticfiles import StaticFiles

from restguard.asgi import GuardMiddleware
from restguard.cli.init import write_data_dir
from restguard.config import load
from restguard.credentials.apikey import new_record
from restguard.fastapi import UnprotectedEndpoints, install, public, require_scopes
from restguard.store.sql import open_store
from restguard.types import Principal
from restguard.wiring import Runtime, open_runtime
from tests.harness import free_port, set_key

ROUTES = """\
[[routes]]
path = "/notes/{id}"
methods = ["GET"]
scopes = ["notes:read"]

[[routes]]
path = "/static/**"
methods = ["GET"]
public = true
"""

ROOT = Path(__file__).resolve().parents[2]


async def issue_key(config: Path, *scopes: str, name: str = "tester") -> str:
    store = open_store(load(config).database_url)
    try:
        record, key = new_record(name, scopes, datetime.now(UTC), None)
        await store.api_keys.insert(record)
    finally:
        store.close()
    return key


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_data_dir(tmp_path / "data", routes=ROUTES)


@pytest.fixture
async def runtime(config: Path) -> AsyncIterator[Runtime]:
    rt = await open_runtime(load(config))
    try:
        yield rt
    finally:
        await rt.close()  # (awaitable as well as plain)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=("192.0.2.10", 5000)),
        base_url="http://testserver",
    )


# --- under a real uvicorn -------------------------------------------------------------------------

APP = """\
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

import restguard.fastapi as rg
from restguard import Principal

MODE = {mode!r}
CONFIG = {config!r}

if MODE == "lifespan":
    app = FastAPI(lifespan=rg.lifespan(CONFIG))
elif MODE == "own-lifespan":
    @asynccontextmanager
    async def lifespan(app):
        async with rg.guarded(app, CONFIG) as runtime:
            app.state.opened = runtime
            yield
    app = FastAPI(lifespan=lifespan)
else:  # "install-in-lifespan": the documented calls, inside the app's own lifespan
    from pathlib import Path

    from restguard.config import load
    from restguard.wiring import open_runtime

    @asynccontextmanager
    async def lifespan(app):
        runtime = await open_runtime(load(Path(CONFIG)))
        rg.install(app, runtime)
        yield
        await runtime.close()
    app = FastAPI(lifespan=lifespan)


@app.get("/notes/{{note_id}}")
async def read(note_id: str, who: Principal = Depends(rg.require_scopes("notes:read"))):
    return {{"note": note_id, "reader": who.subject}}


@app.delete("/notes/{{note_id}}")
async def delete(note_id: str, who: Principal = Depends(rg.require_scopes("notes:write"))):
    return {{"deleted": note_id}}


@app.get("/health", dependencies=[Depends(rg.public)])
async def health():
    return {{"ok": True}}
{extra}
"""


class Uvicorn:
    def __init__(self, directory: Path, config: Path, mode: str, extra: str = "") -> None:
        source = APP.format(mode=mode, config=str(config), extra=textwrap.dedent(extra))
        (directory / "guarded_app.py").write_text(source)
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), str(ROOT / "src")])}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "guarded_app:app",
                "--port",
                str(self.port),
                "--lifespan",
                "on",
                "--log-level",
                "warning",
            ],
            cwd=directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("uvicorn exited: " + self.process.communicate()[1])
            try:
                httpx.get(self.url + "/health", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("uvicorn did not start")

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=20)
        return self.process.returncode, err


@pytest.fixture
def uvicorn_app(tmp_path: Path, config: Path) -> Iterator[Any]:
    started: list[Uvicorn] = []

    def start(mode: str, extra: str = "") -> Uvicorn:
        server = Uvicorn(tmp_path, config, mode, extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("mode", ["lifespan", "own-lifespan", "install-in-lifespan"])
async def test_set_up_in_lifespan_under_uvicorn(uvicorn_app: Any, config: Path, mode: str) -> None:
    reader = await issue_key(config, "notes:read", name="reader")
    server = uvicorn_app(mode)
    server.wait_ready()
    audit = load(config).audit_path
    assert audit is not None
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/notes/7")
        assert r.status_code == 401  # not a 500: the error translator is in
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == (
            'ApiKey realm="restguard", Signature realm="restguard", Bearer realm="restguard", '
            'OAuth realm="restguard"'
        )
        r = c.delete("/notes/7", headers={"Authorization": "Bearer " + reader})
        assert (r.status_code, r.json()["error"], r.json()["scope"]) == (
            403,
            "insufficient_scope",
            "notes:write",
        )
        r = c.get("/notes/7", headers={"X-API-Key": reader})
        assert (r.status_code, r.json()) == (200, {"note": "7", "reader": "reader"})
        # the audit log is written while the app runs, not only at shutdown
        deadline = time.monotonic() + 5
        lines: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(lines) < 4:
            time.sleep(0.1)
            text = audit.read_text() if audit.exists() else ""
            lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert [(e["path"], e["status"]) for e in lines] == [
            ("/health", 200),  # (wait_ready's probe)
            ("/notes/7", 401),
            ("/notes/7", 403),
            ("/notes/7", 200),
        ]
    code, err = server.stop()
    assert code in (0, -signal.SIGTERM), err  # (uvicorn re-raises the signal once it is done)
    assert "Traceback" not in err and "ERROR" not in err


async def test_an_unprotected_endpoint_stops_start_up(uvicorn_app: Any) -> None:
    server = uvicorn_app(
        "lifespan",
        """
        @app.post("/admin/reset")
        async def reset_everything():
            return {"reset": True}
        """,
    )
    code, err = server.stop() if server.process.wait(timeout=20) is not None else (0, "")
    assert code != 0
    assert "UnprotectedEndpoints" in err
    assert "POST /admin/reset (reset_everything)" in err


# --- default deny, endpoint by endpoint -----------------------------------------------------------


async def test_every_kind_of_endpoint_is_protected_or_start_up_fails(
    runtime: Runtime, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    app = FastAPI()

    @app.get("/notes/{note_id}")  # covered by the policy, no dependency
    async def read(note_id: str) -> dict[str, str]:
        return {"note": note_id}

    @app.post("/notes/{note_id}")  # the policy has GET only
    async def write(note_id: str) -> None: ...

    @app.get("/export/{rest:path}")  # a whole subtree: no route covers it
    async def export(rest: str) -> None: ...

    @app.websocket("/feed")
    async def feed(websocket: WebSocket) -> None: ...

    app.mount("/static", StaticFiles(directory=files))  # covered: /static/** is public
    app.mount("/uploads", StaticFiles(directory=files))  # not covered

    install(app, runtime, public_docs=False)
    with pytest.raises(UnprotectedEndpoints) as caught:
        async with client(app) as c:  # (no lifespan events: checked at the first request)
            await c.get("/notes/1")
    message = str(caught.value)
    for endpoint in [
        "POST /notes/{note_id} (write)",
        "GET /export/{rest:path} (export)",
        "WebSocket /feed",
        "mount /uploads",
        "GET /openapi.json",
        "GET /docs",
    ]:
        assert endpoint in message
    for fine in ["GET /notes/{note_id}", "mount /static"]:
        assert fine not in message
    # fail closed: it stays refused until the app is fixed
    with pytest.raises(UnprotectedEndpoints):
        async with client(app) as c:
            await c.get("/notes/1")


async def test_endpoints_are_decided_by_policy_dependency_or_as_public(
    runtime: Runtime, config: Path, tmp_path: Path
) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("static")
    app = FastAPI()
    calls: list[str] = []

    @app.get("/notes/{note_id}")  # no dependency: the policy decides it before the app
    async def read(note_id: str) -> dict[str, str]:
        calls.append("read")
        return {"note": note_id}

    @app.get("/ping", dependencies=[Depends(public)])
    async def ping() -> dict[str, bool]:
        calls.append("ping")
        return {"pong": True}

    @app.get("/status")  # public by install(public=...)
    async def status() -> dict[str, str]:
        calls.append("status")
        return {"status": "ok"}

    app.mount("/static", StaticFiles(directory=tmp_path / "files"))
    install(app, runtime, public=["/status"])
    reader = await issue_key(config, "notes:read")
    async with client(app) as c:
        assert (await c.get("/notes/1")).status_code == 401
        r = await c.get("/notes/1", headers={"X-API-Key": reader})
        assert (r.status_code, r.json()) == (200, {"note": "1"})
        assert (await c.get("/ping")).json() == {"pong": True}
        assert (await c.get("/status")).json() == {"status": "ok"}
        r = await c.get("/static/a.txt")
        assert (r.status_code, r.text) == (200, "static")
        assert (await c.get("/openapi.json")).status_code == 200  # docs: public by default
        # public endpoints are still judged: no credential in the URL
        r = await c.get("/ping", params={"api_key": reader})
        assert r.status_code == 400
        # nothing the app does not serve gets through: default deny
        assert (await c.get("/nowhere")).status_code == 404
    assert calls == ["read", "ping", "status"]


async def test_a_policy_route_decides_before_a_public_marking(
    runtime: Runtime, config: Path
) -> None:
    # /notes/{id} needs notes:read in restguard.toml: marking the endpoint public in the app
    # does not open it (the file is the operator's word, the app only adds to it)
    app = FastAPI()

    @app.get("/notes/{note_id}", dependencies=[Depends(public)])
    async def read(note_id: str) -> dict[str, str]:
        return {"note": note_id}

    install(app, runtime)
    async with client(app) as c:
        assert (await c.get("/notes/1")).status_code == 401


# --- WebSockets, OpenAPI --------------------------------------------------------------------------


async def handshake(app: Any, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Drive one WebSocket connection through the ASGI app; what the app sent."""
    path, _, query = path.partition("?")
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"host", b"testserver")],
        "client": ("192.0.2.10", 5000),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_require_scopes_on_a_websocket_endpoint(runtime: Runtime, config: Path) -> None:
    app = FastAPI()

    @app.websocket("/notes/{note_id}/feed")
    async def feed(
        websocket: WebSocket, note_id: str, who: Principal = Depends(require_scopes("notes:read"))
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"note": note_id, "reader": who.subject})
        await websocket.close()

    install(app, runtime)
    reader = await issue_key(config, "notes:read", name="reader")
    other = await issue_key(config, "reports:read")
    sent = await handshake(app, "/notes/3/feed", {"X-API-Key": reader})
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert json.loads(sent[1]["text"]) == {"note": "3", "reader": "reader"}
    for headers in [{}, {"X-API-Key": other}, {"X-API-Key": "rg_ak_nonsense"}]:
        sent = await handshake(app, "/notes/3/feed", headers)
        assert [(m["type"], m.get("code")) for m in sent] == [("websocket.close", 1008)]


async def test_websocket_endpoints_marked_public_are_judged_as_public(runtime: Runtime) -> None:
    app = FastAPI()

    @app.websocket("/lobby", dependencies=[Depends(public)])
    async def lobby(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    @app.websocket("/notes/{note_id}")  # public in the app, but the file's route needs a key
    async def note(websocket: WebSocket, note_id: str) -> None:
        await websocket.accept()
        await websocket.close()

    install(app, runtime, public=["/notes/{note_id}"])
    sent = await handshake(app, "/lobby", {})
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    sent = await handshake(app, "/lobby?api_key=rg_ak_x", {})  # still judged
    assert [(m["type"], m.get("code")) for m in sent] == [("websocket.close", 1008)]
    sent = await handshake(app, "/notes/1", {})
    assert [(m["type"], m.get("code")) for m in sent] == [("websocket.close", 1008)]


def test_require_scopes_declares_the_key_schemes_in_openapi() -> None:
    app = FastAPI()

    @app.get("/notes/{note_id}")
    async def read(note_id: str, who: Principal = Depends(require_scopes("notes:read"))) -> None:
        return None

    @app.get("/health", dependencies=[Depends(public)])
    async def health() -> None:
        return None

    document = app.openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A restguard API key (rg_ak_...).",
    }
    assert schemes["Bearer"]["type"] == "http" and schemes["Bearer"]["scheme"] == "bearer"
    # alternatives: either one authorizes the operation
    assert document["paths"]["/notes/{note_id}"]["get"]["security"] == [
        {"ApiKey": []},
        {"Bearer": []},
    ]
    assert "security" not in document["paths"]["/health"]["get"]


# --- the middleware takes the runtime's settings --------------------------------------------------


async def test_middleware_takes_trusted_proxies_and_limits_from_the_runtime(
    tmp_path: Path,
) -> None:
    config = write_data_dir(tmp_path / "d", routes=ROUTES)
    text = set_key(config.read_text(), "server.trusted_proxies", '["192.0.2.0/24"]')
    config.write_text(set_key(text, "server.max_header_bytes", "4096"))
    events: list[Any] = []
    rt = await open_runtime(load(config), sinks=[events.append])
    try:

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async with client(GuardMiddleware(app, rt)) as c:
            r = await c.get("/static/x", headers={"X-Forwarded-For": "203.0.113.9"})
            assert r.status_code == 204
            assert events[-1].client == "203.0.113.9"  # the trusted proxy's word is taken
            r = await c.get("/static/x", headers={"X-Big": "a" * 5000})
            assert r.status_code == 431
    finally:
        rt.close()


async def test_audit_lines_are_written_while_the_runtime_is_open(runtime: Runtime) -> None:
    import asyncio

    app = FastAPI()
    install(app, runtime, public=["/open"])

    @app.get("/open")
    async def open_() -> None:
        return None

    audit = runtime.settings.audit_path
    assert audit is not None
    async with client(app) as c:
        await c.get("/open")
    await asyncio.sleep(0.6)  # the timer writes every 0.25 s
    assert '"path":"/open"' in audit.read_text()


SIGNED_ROUTES = """\
[[routes]]
path = "/notes"
methods = ["POST"]
scopes = ["notes:write"]
auth = ["signature"]
"""


async def test_a_signed_body_is_verified_before_the_endpoint_and_read_by_it(
    tmp_path: Path,
) -> None:
    """RFC 9421 with Content-Digest in an embedded FastAPI app: the body is read and checked
    before the endpoint runs, which then reads exactly those bytes; a changed body never
    reaches it."""
    import base64
    import secrets as _secrets
    import time as _time

    from restguard.credentials.apps import new_app
    from restguard.keys.sealing import open_sealer
    from restguard.wire import rfc9421, rfc9421_algorithms, rfc9530

    config = write_data_dir(tmp_path / "signed", routes=SIGNED_ROUTES)
    settings = load(config)
    sealer = open_sealer(settings.master_key_path)
    record, secret = new_app(
        "billing", ("notes:write",), "hmac-sha256", None, now=datetime.now(UTC), sealer=sealer
    )
    assert secret is not None
    store = open_store(settings.database_url)
    try:
        await store.apps.insert(record)
    finally:
        store.close()
    app = FastAPI()
    received: list[bytes] = []

    @app.post("/notes")
    async def create(
        request: Request, who: Principal = Depends(require_scopes("notes:write"))
    ) -> dict[str, str]:
        received.append(await request.body())
        return {"by": who.subject}

    rt = await open_runtime(settings)
    try:
        install(app, rt)
        body = b'{"text": "signed"}'
        digest = rfc9530.content_digest(body)
        message = rfc9421.Message(
            "POST",
            "http",
            "testserver",
            "/notes",
            b"",
            ((b"host", b"testserver"), (b"content-digest", digest.encode())),
        )
        sig_input, signature = rfc9421_algorithms.sign_request(
            message,
            keyid=record.key_id,
            alg="hmac-sha256",
            key=base64.urlsafe_b64decode(secret + "="),
            components=("@method", "@authority", "@path", "content-digest"),
            created=int(_time.time()),
            nonce=_secrets.token_urlsafe(8),
        )
        headers = {
            "content-digest": digest,
            "signature-input": sig_input.decode(),
            "signature": signature.decode(),
        }
        async with client(app) as http:
            tampered = await http.post("/notes", content=b'{"text": "changed"}', headers=headers)
            assert tampered.status_code == 401 and received == []
            ok = await http.post("/notes", content=body, headers=headers)
            assert ok.status_code == 200, ok.text
            assert ok.json() == {"by": "billing"} and received == [body]
    finally:
        await rt.close()
