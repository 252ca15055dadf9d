"""Embedding: ``GuardMiddleware`` around Starlette, ``restguard.fastapi``, and the admin app, all
built by ``wiring.open_runtime`` and driven through httpx's ASGI transport. Refusals must be the
gateway's, byte for byte in status, JSON body and challenges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from restguard.admin.app import AdminApp
from restguard.asgi import DECISION_KEY, VIEW_KEY, GuardMiddleware
from restguard.audit import DecisionEvent
from restguard.cli.init import write_data_dir
from restguard.config import load
from restguard.credentials.apikey import generate_key, new_record
from restguard.fastapi import install, require_scopes
from restguard.guard import Decision
from restguard.observe import Metrics
from restguard.store.sql import open_store
from restguard.types import Principal
from restguard.wiring import Runtime, open_runtime
from tests.harness import GatewayProcess

ROUTES = """\
[[routes]]
path = "/public/**"
methods = ["GET"]
public = true

[[routes]]
path = "/notes/{id}"
methods = ["GET", "HEAD"]
scopes = ["notes:read"]

[[routes]]
path = "/notes/**"
methods = ["POST", "PUT", "DELETE"]
scopes = ["notes:write"]
"""


@dataclass
class Embedded:
    runtime: Runtime
    events: list[DecisionEvent]
    metrics: Metrics
    calls: list[str] = field(default_factory=list)

    async def key(self, *scopes: str, name: str = "tester") -> tuple[str, str]:
        from datetime import UTC, datetime

        record, key = new_record(name, scopes, datetime.now(UTC), None)
        await self.runtime.store.api_keys.insert(record)
        return record.id, key


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Embedded]:
    config = write_data_dir(tmp_path / "data", routes=ROUTES)
    events: list[DecisionEvent] = []
    metrics = Metrics()
    runtime = await open_runtime(load(config), sinks=[events.append, metrics.observe_decision])
    try:
        yield Embedded(runtime, events, metrics)
    finally:
        runtime.close()


def starlette_app(env: Embedded) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        decision = request.scope[DECISION_KEY]
        assert isinstance(decision, Decision)
        p = decision.principal
        env.calls.append(f"{request.method} {request.url.path}")
        return JSONResponse(
            {
                "subject": p.subject,
                "client_id": p.client_id,
                "scopes": sorted(p.scopes),
                "auth_method": p.auth_method,
                "judged_path": request.scope[VIEW_KEY].path,
            }
        )

    return Starlette(
        routes=[
            Route("/public/{rest:path}", echo, methods=["GET"]),
            Route("/notes/{rest:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
            Route("/admin", echo, methods=["GET"]),
        ]
    )


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=("192.0.2.10", 5000)),
        base_url="http://testserver",
    )


# --- GuardMiddleware around Starlette -------------------------------------------------------------


async def test_middleware_passes_the_principal(embedded: Embedded) -> None:
    key_id, key = await embedded.key("notes:read", name="reader")
    async with client(GuardMiddleware(starlette_app(embedded), embedded.runtime.guard)) as c:
        r = await c.get("/notes/7", headers={"X-API-Key": key})
        assert r.status_code == 200
        assert r.json() == {
            "subject": "reader",
            "client_id": key_id,
            "scopes": ["notes:read"],
            "auth_method": "api_key",
            "judged_path": "/notes/7",
        }
        r = await c.get("/public/x")
        assert r.status_code == 200
        assert r.json()["auth_method"] == "none" and r.json()["subject"] == ""
        r = await c.get("/notes/%37", headers={"Authorization": "ApiKey " + key})
        assert r.json()["judged_path"] == "/notes/7"
    assert embedded.calls == ["GET /notes/7", "GET /public/x", "GET /notes/7"]
    assert [e.outcome for e in embedded.events] == ["allow", "allow", "allow"]
    assert embedded.events[0].client == "192.0.2.10"


async def test_middleware_never_runs_the_app_on_a_refusal(embedded: Embedded) -> None:
    _, reader = await embedded.key("notes:read")
    _, unknown = generate_key()
    async with client(GuardMiddleware(starlette_app(embedded), embedded.runtime.guard)) as c:
        cases = [
            (await c.get("/notes/7"), 401),
            (await c.get("/notes/7", headers={"X-API-Key": unknown}), 401),
            (await c.post("/notes/7", headers={"X-API-Key": reader}), 403),
            (await c.get("/admin", headers={"X-API-Key": reader}), 404),
            (await c.get("/notes/a%2Fb", headers={"X-API-Key": reader}), 400),
            (await c.get("/notes/7?api_key=" + reader), 400),
            # removed before the decision, not refused: no credential is left
            (await c.get("/notes/7", headers={"X-Restguard-Subject": "admin"}), 401),
            (await c.head("/notes/7"), 401),
        ]
        for response, status in cases:
            assert response.status_code == status, response.request.url
            assert response.headers["content-type"] == "application/json"
            if response.request.method != "HEAD":
                assert set(response.json()) <= {"error", "error_description", "scope"}
        assert cases[0][0].headers.get_list("www-authenticate") == [
            'ApiKey realm="restguard"',
            'Signature realm="restguard"',
            'Bearer realm="restguard"',
            'OAuth realm="restguard"',
        ]
        assert cases[2][0].json()["scope"] == "notes:write"
        assert cases[-1][0].content == b""
    assert embedded.calls == []


async def test_middleware_refuses_websockets(embedded: Embedded) -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    mw = GuardMiddleware(app, embedded.runtime.guard)
    await mw({"type": "websocket", "path": "/notes/7", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_middleware_header_cap(embedded: Embedded) -> None:
    mw = GuardMiddleware(starlette_app(embedded), embedded.runtime.guard, max_header_bytes=200)
    async with client(mw) as c:
        r = await c.get("/public/x", headers={"X-Big": "v" * 300})
        assert r.status_code == 431
    assert embedded.calls == []


# --- the same answers as the gateway --------------------------------------------------------------


async def test_refusals_match_the_gateway(gateway: GatewayProcess) -> None:
    """One policy (the harness's), one database: the real gateway over HTTP and the middleware
    in-process must refuse alike."""
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    _, reader = await asyncio.to_thread(gateway.issue_key, "notes:read", name="reader")
    _, writer = await asyncio.to_thread(gateway.issue_key, "notes:write", name="writer")
    _, unknown = generate_key()
    runtime = await open_runtime(gateway.settings)
    cases: list[tuple[str, str, dict[str, str]]] = [
        ("GET", "/notes/7", {"X-API-Key": reader}),
        ("GET", "/public/x", {}),
        ("GET", "/notes/7", {}),
        ("GET", "/notes/7", {"X-API-Key": unknown}),
        ("GET", "/notes/7", {"Authorization": "ApiKey " + unknown}),
        ("POST", "/notes/7", {"X-API-Key": reader}),
        ("GET", "/notes/7", {"X-API-Key": writer}),
        ("GET", "/admin", {"X-API-Key": reader}),
        ("DELETE", "/public/x", {}),
        ("GET", "/notes/a%2Fb", {"X-API-Key": reader}),
        ("GET", "/notes/7?api_key=x", {"X-API-Key": reader}),
        ("GET", "/notes/7", {"X-API-Key": "rg_ak_typo"}),
        ("GET", "/notes/7", {"X-API-Key": reader, "Authorization": "ApiKey " + reader}),
        ("GET", "/notes/7", {"X-Restguard-Scopes": "notes:write"}),
    ]
    try:
        mw = GuardMiddleware(app, runtime.guard)
        async with client(mw) as embedded_client, httpx.AsyncClient(base_url=gateway.url) as real:
            for method, path, headers in cases:
                ours = await embedded_client.request(method, path, headers=headers)
                theirs = await real.request(method, path, headers=headers)
                where = f"{method} {path} {sorted(headers)}"
                assert ours.status_code == theirs.status_code, where
                if theirs.status_code >= 400:
                    assert ours.json() == theirs.json(), where
                    assert ours.headers.get_list("www-authenticate") == theirs.headers.get_list(
                        "www-authenticate"
                    ), where
    finally:
        runtime.close()
    assert calls == ["/notes/7", "/public/x"]


# --- restguard.fastapi ----------------------------------------------------------------------------


def fastapi_app(env: Embedded, *, middleware: bool) -> FastAPI:
    app = FastAPI()
    install(app, env.runtime.guard)

    @app.get("/notes/{note_id}")
    async def read(
        note_id: str, principal: Principal = Depends(require_scopes("notes:read"))
    ) -> dict[str, Any]:
        env.calls.append("read " + note_id)
        return {"note": note_id, "subject": principal.subject, "scopes": sorted(principal.scopes)}

    @app.post("/notes/{note_id}")
    async def write(
        note_id: str,
        principal: Principal = Depends(require_scopes("notes:write", "notes:admin")),
    ) -> dict[str, Any]:
        env.calls.append("write " + note_id)
        return {"note": note_id, "client_id": principal.client_id}

    @app.get("/public/{rest}")
    async def public(rest: str, principal: Principal = Depends(require_scopes())) -> dict[str, str]:
        env.calls.append("public")
        return {"auth_method": principal.auth_method}

    if middleware:
        app.add_middleware(GuardMiddleware, guard=env.runtime.guard)
    return app


@pytest.mark.parametrize("middleware", [False, True], ids=["dependency", "middleware"])
async def test_fastapi_require_scopes(embedded: Embedded, middleware: bool) -> None:
    _, reader = await embedded.key("notes:read", name="reader")
    _, writer = await embedded.key("notes:read", "notes:write", name="writer")
    admin_id, admin = await embedded.key("notes:write", "notes:admin", name="admin")
    async with client(fastapi_app(embedded, middleware=middleware)) as c:
        r = await c.get("/notes/7", headers={"X-API-Key": reader})
        assert r.status_code == 200
        assert r.json() == {"note": "7", "subject": "reader", "scopes": ["notes:read"]}

        r = await c.get("/notes/7")
        assert r.status_code == 401
        assert r.json() == {
            "error": "unauthorized",
            "error_description": "This route needs a credential: send an API key in "
            "'Authorization: Bearer <key>', 'Authorization: ApiKey <key>' or 'X-API-Key: <key>', "
            "or an RFC 9421 signature by a registered app in 'Signature-Input' and 'Signature' "
            "(with 'Content-Digest' for a body), "
            "or a JWT in 'Authorization: Bearer <token>', or an access token from restguard's "
            "authorization server in 'Authorization: Bearer <token>', or an OAuth 1.0a signature "
            "by a registered consumer in 'Authorization: OAuth ...' (or in the query or a form "
            "body, RFC 5849 §3.5).",
        }
        assert r.headers.get_list("www-authenticate") == [
            'ApiKey realm="restguard"',
            'Signature realm="restguard"',
            'Bearer realm="restguard"',
            'OAuth realm="restguard"',
        ]
        assert r.headers["content-type"] == "application/json"

        # the policy's scope first ...
        r = await c.post("/notes/7", headers={"X-API-Key": reader})
        assert (r.status_code, r.json()["scope"]) == (403, "notes:write")
        # ... then the dependency's on top of it
        r = await c.post("/notes/7", headers={"X-API-Key": writer})
        assert r.status_code == 403
        assert r.json() == {
            "error": "insufficient_scope",
            "error_description": "The credential lacks a scope this route requires.",
            "scope": "notes:write notes:admin",
        }
        r = await c.post("/notes/7", headers={"X-API-Key": admin})
        assert r.status_code == 200 and r.json() == {"note": "7", "client_id": admin_id}

        r = await c.get("/public/x")
        assert (r.status_code, r.json()) == (200, {"auth_method": "none"})
        # no endpoint of the app matches it: the policy decides (and refuses the encoded slash)
        r = await c.get("/notes/a%2Fb", headers={"X-API-Key": reader})
        assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    assert embedded.calls == ["read 7", "write 7", "public"]
    # one event per request, whether the middleware or the dependency decided it, the
    # encoded-slash request refused before any decision included
    assert len(embedded.events) == 7
    assert (embedded.events[-1].path, embedded.events[-1].status) == ("/notes/a%2Fb", 400)


async def test_fastapi_require_scopes_is_the_policy_of_an_endpoint_outside_the_file(
    embedded: Embedded,
) -> None:
    app = fastapi_app(embedded, middleware=False)

    @app.get("/unlisted")
    async def unlisted(principal: Principal = Depends(require_scopes())) -> dict[str, str]:
        embedded.calls.append("unlisted")
        return {"subject": principal.subject}

    @app.delete("/reports/{rid}")
    async def drop(rid: str, p: Principal = Depends(require_scopes("reports:admin"))) -> None:
        embedded.calls.append("drop " + rid)

    _, reader = await embedded.key("notes:read", name="reader")
    _, admin = await embedded.key("reports:admin", name="boss")
    async with client(app) as c:
        r = await c.get("/unlisted")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = await c.get("/unlisted", headers={"Authorization": "Bearer " + reader})
        assert (r.status_code, r.json()) == (200, {"subject": "reader"})
        r = await c.delete("/reports/9", headers={"X-API-Key": reader})
        assert (r.status_code, r.json()["scope"]) == (403, "reports:admin")
        r = await c.delete("/reports/9", headers={"X-API-Key": admin})
        assert r.status_code == 200
    assert embedded.calls == ["unlisted", "drop 9"]
    assert [e.route for e in embedded.events] == [
        "endpoint /unlisted",
        "endpoint /unlisted",
        "endpoint /reports/{rid}",
        "endpoint /reports/{rid}",
    ]


async def test_fastapi_without_install_is_a_clear_error(embedded: Embedded) -> None:
    app = FastAPI()

    @app.get("/notes/{note_id}")
    async def read(note_id: str, p: Principal = Depends(require_scopes("x"))) -> dict[str, str]:
        return {}

    async with client(app) as c:
        with pytest.raises(RuntimeError, match="install"):
            await c.get("/notes/7")


# --- the admin app --------------------------------------------------------------------------------


async def test_admin_healthz_and_metrics(embedded: Embedded) -> None:
    _, reader = await embedded.key("notes:read")
    admin = AdminApp(embedded.runtime.store, embedded.metrics)
    async with client(admin) as c:
        r = await c.get("/healthz")
        assert (r.status_code, r.json()) == (200, {"status": "ok"})
        r = await c.get("/metrics")
        assert r.status_code == 200
        assert "restguard_decisions_total{" not in r.text
        assert r.headers["content-type"].startswith("text/plain")

    guarded = GuardMiddleware(starlette_app(embedded), embedded.runtime.guard)
    async with client(guarded) as g:
        assert (await g.get("/notes/1", headers={"X-API-Key": reader})).status_code == 200
        assert (await g.get("/notes/1")).status_code == 401

    async with client(admin) as c:
        text = (await c.get("/metrics")).text
        r404 = await c.get("/api/nothing")
    assert 'restguard_decisions_total{auth_method="api_key",outcome="allow",status="200"} 1.0' in (
        text
    )
    assert 'restguard_decisions_total{auth_method="none",outcome="deny",status="401"} 1.0' in text
    assert "restguard_decision_seconds_bucket" in text
    assert r404.status_code == 404 and r404.json()["error"] == "not_found"


async def test_admin_healthz_503_when_the_store_is_down(embedded: Embedded) -> None:
    down = open_store("postgresql://postgres@127.0.0.1:1/restguard")  # nothing listens there
    try:
        async with client(AdminApp(down, embedded.metrics)) as c:
            r = await c.get("/healthz")
    finally:
        down.close()
    assert r.status_code == 503
    assert r.json()["status"] == "unavailable"
    assert r.json()["error"] == "temporarily_unavailable"
    assert "postgres" not in r.text.lower()  # no driver detail leaks


async def test_guard_fails_closed_when_the_store_is_down(embedded: Embedded) -> None:
    from restguard.credentials.apikey import ApiKeyAuthenticator
    from restguard.guard import Guard

    down = open_store("postgresql://postgres@127.0.0.1:1/restguard")
    g = embedded.runtime.guard
    guard = Guard(
        g.policy,
        {"api_key": ApiKeyAuthenticator(down.api_keys, embedded.runtime.clock)},
        embedded.runtime.clock,
        g.limiter,
    )
    _, key = await embedded.key("notes:read")
    try:
        async with client(GuardMiddleware(starlette_app(embedded), guard)) as c:
            r = await c.get("/notes/7", headers={"X-API-Key": key})
    finally:
        down.close()
    assert r.status_code == 503
    assert r.json()["error"] == "temporarily_unavailable"
    assert embedded.calls == []
