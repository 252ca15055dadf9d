"""Review of issue 7 (45cf0af), as an attacker: restguard.fastapi's endpoint-by-endpoint default
deny, restguard's own endpoints in front of a catch-all policy, and reload.

Every test here fails against 45cf0af and has a valid twin that must keep working.

Embedded (FastAPI 0.165 / Starlette 1.10, the versions this project installs):
1. A user endpoint whose path is one of FastAPI's documentation paths (``POST /docs``, a
   "documents" API) counts as public: it passes the start-up check with nothing protecting it,
   and anonymous requests run it. Likewise a path in ``install(public=[...])`` (or a docs
   path) overrides the ``require_scopes`` of every endpoint at that path: ``require_scopes()``
   lets anonymous requests in, ``require_scopes("x")`` refuses even a valid key (403).
2. Endpoints in an ``include_router``-ed APIRouter (FastAPI 0.165 keeps them behind an
   ``_IncludedRouter`` entry with no path, methods or dependant) and routes without a method
   list (an ``HTTPEndpoint`` class, a raw ASGI app, a ``Host``) are invisible to the start-up
   check; and ``require_scopes`` / ``public`` inside an included router are ignored (404).
3. An endpoint whose ``require_scopes`` decides sees the headers as the client sent them:
   client-sent ``X-Restguard-*`` and invalid header names (``X_Restguard_Scopes``) reach it.
4. Dependencies declared before ``require_scopes`` (route ``dependencies=[...]``, earlier
   parameters) run for anonymous requests before the refusal.
5. ``app.dependency_overrides`` replacing a dependency that carries ``require_scopes`` leaves the
   endpoint classified "its dependency decides" while nothing decides it: anonymous access.

Gateway (own endpoints before a ``/**`` policy):
6. ``/.well-known/jwks.json`` is answered before anything is judged: a key in its query, a
   ``_method`` parameter and a method-override header all get 200 (every route refuses them).
7. The spellings of an own endpoint that configuration already treats as naming it
   (``named_endpoint``: letter case, one trailing slash) are forwarded to the upstream.

Reload:
8. A worker that dies after a reload is respawned with the configuration ``serve`` started
   with: the pre-reload policy comes back in one process.
9. ``restguard.pid`` is per directory, not per configuration: ``restguard reload --config
   other.toml`` signals the server of another file in the same directory and says "sent".
10. ``restguard reload`` checks the file with ``validate`` only: a file the server refuses
    (a route whose only ``auth`` method this build lacks) is reported as sent.
11. The pid check is ``b"restguard" in cmdline``: a stale pid file pointing at an operator's
    ``tail -f /var/lib/restguard/audit.log`` gets SIGHUP (which kills it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.endpoints import HTTPEndpoint
from starlette.responses import JSONResponse, Response
from starlette.routing import Host, Route, Router

from restguard.cli.init import write_data_dir
from restguard.config import load
from restguard.credentials.apikey import new_record
from restguard.fastapi import UnprotectedEndpoints, install, public, require_scopes
from restguard.store.sql import open_store
from restguard.wiring import Runtime, open_runtime
from tests.attacks.wire import request
from tests.faults import (
    RESTGUARD,
    children_of,
    process_gone,
    ready_workers,
    serve_dir,
    serving,
    wait_until,
    worker_decisions,
)
from tests.harness import GatewayProcess, RecordingUpstream, raw_request, status_of

ROUTES = """\
[[routes]]
path = "/notes/{id}"
methods = ["GET"]
scopes = ["notes:read"]

[[routes]]
path = "/api/covered/{id}"
methods = ["GET"]
scopes = ["notes:read"]
"""


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
        await rt.close()


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=("192.0.2.10", 5000)),
        base_url="http://testserver",
    )


async def started(app: FastAPI) -> str:
    """'ok' when the app serves its first request, else the start-up refusal's message."""
    try:
        async with client(app) as c:  # (no lifespan events: checked at the first request)
            await c.get("/nowhere")
    except UnprotectedEndpoints as exc:
        return str(exc)
    return "ok"


# --- 1. FastAPI's documentation paths ------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", "/docs"), ("DELETE", "/redoc")])
async def test_a_user_endpoint_at_a_docs_path_is_not_public_by_default(
    runtime: Runtime, config: Path, method: str, path: str
) -> None:
    # _Installed._classify: `path in _docs_paths(app)` -> "public", whatever the route is. The
    # docs paths are FastAPI's own GET routes, but any endpoint declared at the same path (a
    # documents API: `POST /docs` stores a document) is classified public too: the start-up
    # check passes with nothing protecting it, and the middleware decides it with a public
    # fallback route (every method), so anonymous clients run it.
    app = FastAPI()
    calls: list[str] = []

    @app.api_route(path, methods=[method])
    async def store_document(request: Request) -> dict[str, bool]:
        calls.append("stored")
        return {"stored": True}

    install(app, runtime)
    message = await started(app)
    assert f"{method} {path}" in message, "an unprotected endpoint passed the start-up check"
    async with client(app) as c:
        with pytest.raises(UnprotectedEndpoints):
            await c.request(method, path, json={"title": "x"})
    assert calls == [], "an anonymous request ran an endpoint nothing protects"


async def test_docs_twin_fastapi_docs_stay_public_and_a_marked_endpoint_works(
    runtime: Runtime,
) -> None:
    # twin: FastAPI's own documentation stays public by default, and a documents endpoint that
    # is marked public on purpose serves anonymous clients
    app = FastAPI()

    @app.post("/docs", dependencies=[Depends(public)])
    async def store_document() -> dict[str, bool]:
        return {"stored": True}

    install(app, runtime)
    assert await started(app) == "ok"
    async with client(app) as c:
        assert (await c.get("/docs")).status_code == 200
        assert (await c.get("/openapi.json")).status_code == 200
        assert (await c.post("/docs")).json() == {"stored": True}


def _items_app(runtime: Runtime) -> FastAPI:
    app = FastAPI()

    @app.get("/items")  # the public listing: install(public=["/items"])
    async def listing() -> list[str]:
        return []

    @app.post("/items")
    async def create(who: Any = Depends(require_scopes("notes:write"))) -> dict[str, str]:
        return {"by": who.subject}

    @app.delete("/items")  # any accepted credential
    async def wipe(who: Any = Depends(require_scopes())) -> dict[str, str]:
        return {"by": who.subject}

    install(app, runtime, public=["/items"])
    return app


async def test_a_public_path_does_not_override_an_endpoints_require_scopes(
    runtime: Runtime, config: Path
) -> None:
    # _classify tests `path in self.public` (and the docs paths) *before* looking for
    # require_scopes, and install(public=[...]) names paths, not endpoints. Every endpoint at a
    # public path -- also the ones that carry require_scopes -- is then decided by the
    # middleware with a public fallback: the decision's principal is ANONYMOUS whatever the
    # request presents, and the dependency only checks that principal's scopes.
    # * require_scopes() ("any accepted credential", README): an anonymous DELETE /items runs
    #   the endpoint (who.subject == "", auth_method "none").
    # * require_scopes("notes:write") with a valid writer key: 403, the endpoint is unusable.
    # The same happens to an endpoint with require_scopes at /docs, /redoc or /openapi.json.
    app = _items_app(runtime)
    writer = await issue_key(config, "notes:write", name="writer")
    async with client(app) as c:
        assert (await c.delete("/items")).status_code == 401, "anonymous passed require_scopes()"
        r = await c.post("/items", headers={"X-API-Key": writer})
        assert (r.status_code, r.json()) == (200, {"by": "writer"})


async def test_public_path_twin_the_listing_stays_public(runtime: Runtime) -> None:
    app = _items_app(runtime)
    async with client(app) as c:
        assert (await c.get("/items")).json() == []
        assert (await c.post("/items")).status_code in (401, 403)


# --- 2. endpoints the start-up check does not see ------------------------------------------------


async def test_endpoints_in_an_included_router_are_checked_at_start_up(
    runtime: Runtime,
) -> None:
    # FastAPI 0.165's include_router no longer copies routes into app.router.routes: it adds one
    # `_IncludedRouter` entry (no .path, .methods or .dependant). _Installed._problems then
    # finds `methods == ()`, so nothing is "missing", and the whole router passes. Nearly every
    # real FastAPI app puts its endpoints in APIRouters; an unprotected
    # `DELETE /api/admin/users/{user_id}` there starts without a word. (At run time the file
    # still decides it -- default deny holds -- but the promised start-up check is void.)
    app = FastAPI(openapi_url=None)
    router = APIRouter()

    @router.delete("/admin/users/{user_id}")
    async def delete_user(user_id: str) -> None: ...

    @router.get("/covered/{note_id}")  # twin: covered by the policy's /api/covered/{id}
    async def covered(note_id: str) -> dict[str, str]:
        return {"note": note_id}

    app.include_router(router, prefix="/api")
    install(app, runtime)
    message = await started(app)
    assert "DELETE /api/admin/users/{user_id}" in message
    assert "/api/covered" not in message


async def test_included_router_twin_the_same_endpoint_on_the_app_is_refused(
    runtime: Runtime,
) -> None:
    app = FastAPI(openapi_url=None)

    @app.delete("/api/admin/users/{user_id}")
    async def delete_user(user_id: str) -> None: ...

    install(app, runtime)
    assert "DELETE /api/admin/users/{user_id}" in await started(app)


async def test_require_scopes_and_public_inside_an_included_router_are_honoured(
    runtime: Runtime, config: Path
) -> None:
    # The same `_IncludedRouter` entry classifies as "policy" (it has no dependant), so an
    # endpoint in a router that carries require_scopes (or is marked public) is decided by the
    # file alone: without a [[routes]] entry, 404 even with the right key. The README's own
    # example breaks as soon as the endpoint moves into an APIRouter, and the only way out is
    # a broad policy route.
    app = FastAPI()
    router = APIRouter()

    @router.get("/reports/{report_id}")
    async def report(
        report_id: str, who: Any = Depends(require_scopes("notes:read"))
    ) -> dict[str, str]:
        return {"report": report_id}

    @router.get("/ping", dependencies=[Depends(public)])
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    app.include_router(router, prefix="/api")
    install(app, runtime)
    reader = await issue_key(config, "notes:read")
    async with client(app) as c:
        r = await c.get("/api/reports/1", headers={"X-API-Key": reader})
        assert (r.status_code, r.json()) == (200, {"report": "1"})
        assert (await c.get("/api/reports/1")).status_code == 401
        assert (await c.get("/api/ping")).json() == {"pong": True}


async def test_included_router_twin_on_the_app_itself(runtime: Runtime, config: Path) -> None:
    app = FastAPI()

    @app.get("/api/reports/{report_id}")
    async def report(
        report_id: str, who: Any = Depends(require_scopes("notes:read"))
    ) -> dict[str, str]:
        return {"report": report_id}

    install(app, runtime)
    reader = await issue_key(config, "notes:read")
    async with client(app) as c:
        r = await c.get("/api/reports/1", headers={"X-API-Key": reader})
        assert (r.status_code, r.json()) == (200, {"report": "1"})
        assert (await c.get("/api/reports/1")).status_code == 401


class Purge(HTTPEndpoint):
    async def delete(self, request: Request) -> Response:
        return JSONResponse({"purged": True})


class RawApp:
    """A plain ASGI app object (not a function): Starlette routes every method to it."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await JSONResponse({"raw": True})(scope, receive, send)


raw_asgi = RawApp()


@pytest.mark.parametrize("kind", ["HTTPEndpoint", "ASGI app", "Host"])
async def test_routes_without_a_method_list_are_checked_at_start_up(
    runtime: Runtime, kind: str
) -> None:
    # Starlette leaves `methods = None` on a Route whose endpoint is an HTTPEndpoint class or
    # an ASGI app (it serves every method), and a Host has neither a path nor methods.
    # _problems reads `sorted(route.methods or ())` -> nothing missing -> no problem.
    app = FastAPI(openapi_url=None)
    if kind == "HTTPEndpoint":
        app.add_route("/purge", Purge)
    elif kind == "ASGI app":
        app.router.routes.append(Route("/purge", raw_asgi))
    else:
        app.router.routes.append(Host("admin.example", app=Router([Route("/purge", raw_asgi)])))
    install(app, runtime)
    assert await started(app) != "ok", f"an unprotected {kind} route passed the start-up check"


async def test_method_list_twin_a_function_route_is_refused(runtime: Runtime) -> None:
    app = FastAPI(openapi_url=None)

    async def purge(request: Request) -> Response:
        return JSONResponse({})

    app.add_route("/purge", purge, methods=["DELETE"])
    install(app, runtime)
    assert "DELETE /purge" in await started(app)


# --- 3. headers in dependency mode ---------------------------------------------------------------


def _headers_app(runtime: Runtime, *, dependency: bool) -> FastAPI:
    app = FastAPI()

    async def seen(request: Request) -> dict[str, str]:
        return {k: v for k, v in request.headers.items() if k not in ("x-api-key",)}

    if dependency:

        @app.get("/whoami")
        async def whoami(
            request: Request, who: Any = Depends(require_scopes("notes:read"))
        ) -> dict[str, str]:
            return await seen(request)

    else:  # decided by the policy's /notes/{id}

        @app.get("/notes/{note_id}")
        async def note(request: Request, note_id: str) -> dict[str, str]:
            return await seen(request)

    install(app, runtime)
    return app


async def test_dependency_mode_endpoint_never_sees_client_sent_identity_headers(
    runtime: Runtime, config: Path
) -> None:
    # README "Embedding": "The app sees exactly what was judged: ... header names other than
    # letters, digits and `-`, and client-sent `X-Restguard-*`, removed". _EndpointGuard defers
    # an endpoint whose require_scopes decides (`if defer: await self.app(scope, ...)`) with the
    # scope untouched; the dependency judges a cleaned view but never replaces the headers. An
    # app that reads X-Restguard-Subject (as its upstream twin behind the gateway does) takes
    # the client's word for who it is; CGI-style readers fold X_Restguard_Scopes onto it too.
    app = _headers_app(runtime, dependency=True)
    reader = await issue_key(config, "notes:read")
    spoof = {
        "X-API-Key": reader,
        "X-Restguard-Subject": "admin",
        "X_Restguard_Scopes": "restguard:admin",
        "X-Trace": "t1",
    }
    async with client(app) as c:
        r = await c.get("/whoami", headers=spoof)
    assert r.status_code == 200
    seen = r.json()
    assert seen.get("x-trace") == "t1"  # ordinary headers pass
    leaked = sorted(k for k in seen if "restguard" in k)
    assert leaked == [], f"client-sent identity headers reached the endpoint: {leaked}"


async def test_headers_twin_policy_mode_strips_them(runtime: Runtime, config: Path) -> None:
    app = _headers_app(runtime, dependency=False)
    reader = await issue_key(config, "notes:read")
    headers = {"X-API-Key": reader, "X-Restguard-Subject": "admin", "X_Restguard_Scopes": "x"}
    async with client(app) as c:
        r = await c.get("/notes/1", headers={**headers, "X-Trace": "t1"})
    assert r.status_code == 200
    assert r.json().get("x-trace") == "t1"
    assert not [k for k in r.json() if "restguard" in k]


# --- 4. dependencies that run before require_scopes ----------------------------------------------


def _ordered_app(runtime: Runtime, effects: list[str]) -> FastAPI:
    app = FastAPI()

    async def record_vote(request: Request) -> None:  # e.g. a counter, a DB write, a lookup
        effects.append("vote recorded for " + request.path_params["note_id"])

    @app.post("/notes/{note_id}/vote", dependencies=[Depends(record_vote)])
    async def vote(note_id: str, who: Any = Depends(require_scopes("notes:write"))) -> dict:
        effects.append("endpoint")
        return {"voted": note_id}

    install(app, runtime)
    return app


async def test_dependencies_before_require_scopes_do_not_run_for_anonymous_requests(
    runtime: Runtime,
) -> None:
    # In dependency mode the middleware defers the whole request to FastAPI, which solves the
    # route's `dependencies=[...]` (and router-level ones, and earlier parameters) in order:
    # `record_vote` runs before `require_scopes` refuses. "require_scopes is the endpoint's
    # policy" -- but part of the endpoint's code runs for anyone. Under the policy (or the
    # gateway) nothing of the app runs before the decision.
    effects: list[str] = []
    app = _ordered_app(runtime, effects)
    async with client(app) as c:
        r = await c.post("/notes/7/vote")
    assert r.status_code == 401
    assert effects == [], f"app code ran for an anonymous request: {effects}"


async def test_dependency_order_twin_a_writer_votes(runtime: Runtime, config: Path) -> None:
    effects: list[str] = []
    app = _ordered_app(runtime, effects)
    writer = await issue_key(config, "notes:write")
    async with client(app) as c:
        r = await c.post("/notes/7/vote", headers={"X-API-Key": writer})
    assert (r.status_code, r.json()) == (200, {"voted": "7"})
    assert effects == ["vote recorded for 7", "endpoint"]


# --- 5. dependency_overrides ---------------------------------------------------------------------


def _override_app(runtime: Runtime, calls: list[str], *, override: bool) -> FastAPI:
    app = FastAPI()

    async def current_user(who: Any = Depends(require_scopes("notes:read"))) -> str:
        return who.subject

    @app.get("/me")
    async def me(user: str = Depends(current_user)) -> dict[str, str]:
        calls.append("me")
        return {"user": user}

    if override:  # e.g. a deployment that swaps in a cached or tenant-aware user lookup

        async def cached_user() -> str:
            return "cached"

        app.dependency_overrides[current_user] = cached_user
    install(app, runtime)
    return app


async def test_dependency_overrides_do_not_remove_the_endpoint_policy(runtime: Runtime) -> None:
    # _classify walks route.dependant, built when the route was declared; FastAPI applies
    # app.dependency_overrides when it solves the request. Overriding a dependency whose tree
    # holds require_scopes drops the check, but the route stays "dependency" mode, so
    # _EndpointGuard defers it and nothing decides: anonymous requests run the endpoint.
    # (Expected: refused, or start-up fails naming the endpoint.)
    calls: list[str] = []
    app = _override_app(runtime, calls, override=True)
    try:
        async with client(app) as c:
            r = await c.get("/me")
    except UnprotectedEndpoints:
        return
    assert r.status_code == 401
    assert calls == []


async def test_dependency_overrides_twin_without_override(runtime: Runtime, config: Path) -> None:
    calls: list[str] = []
    app = _override_app(runtime, calls, override=False)
    reader = await issue_key(config, "notes:read", name="reader")
    async with client(app) as c:
        assert (await c.get("/me")).status_code == 401
        r = await c.get("/me", headers={"X-API-Key": reader})
    assert r.json() == {"user": "reader"}


# --- gateway: restguard's own endpoints before a /** policy --------------------------------------

CATCH_ALL = """\
[[routes]]
path = "/**"
methods = ["GET", "POST"]
public = true
"""


@pytest.fixture(scope="module")
def catch_all(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("issue7") / "gw", upstream, routes=CATCH_ALL
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def clean(upstream: RecordingUpstream) -> RecordingUpstream:
    upstream.clear()
    return upstream


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        (b"/.well-known/jwks.json?api_key=rg_ak_abc_def", ()),
        (b"/.well-known/jwks.json?x=rg_ak_abc_def", ()),
        (b"/.well-known/jwks.json?_method=DELETE", ()),
        (b"/.well-known/jwks.json", ((b"X-HTTP-Method-Override", b"DELETE"),)),
    ],
)
def test_own_endpoint_refuses_keys_in_the_query_and_method_overrides(
    catch_all: GatewayProcess, clean: RecordingUpstream, target: bytes, headers: Any
) -> None:
    # exchange._decide_and_forward answers served_endpoint(view.path) before guard.decide, so
    # nothing of guard.decide's request checks runs: CONTRACT "api_key ... never in the query
    # string, on any route: a value with the rg_ak_ prefix in any query parameter gets 400", and
    # "A `_method` parameter ... is refused with 400, like the method-override headers". The
    # same request to any public route (/public?x=rg_ak_...) gets 400; here 200 (and no
    # decision is recorded, so a leaked key in a URL goes unnoticed).
    reply = raw_request(catch_all.port, request(target, *headers, (b"Connection", b"close")))
    assert status_of(reply) == 400, reply[:200]
    assert clean.requests == []


def test_own_endpoint_twin_plain_requests(
    catch_all: GatewayProcess, clean: RecordingUpstream
) -> None:
    r = httpx.get(catch_all.url + "/.well-known/jwks.json", timeout=5)
    assert r.status_code == 200 and "keys" in r.json()
    assert clean.requests == []
    # and the same checks on an ordinary public route under /**
    reply = raw_request(
        catch_all.port, request(b"/public?x=rg_ak_abc_def", (b"Connection", b"close"))
    )
    assert status_of(reply) == 400
    assert httpx.get(catch_all.url + "/public/page", timeout=5).status_code == 200


@pytest.mark.parametrize(
    "target", [b"/.well-known/JWKS.json", b"/.well-known/Jwks.Json", b"/.well-known/jwks.json/"]
)
def test_own_endpoint_spellings_are_not_forwarded(
    catch_all: GatewayProcess, clean: RecordingUpstream, target: bytes
) -> None:
    # authz.endpoints.named_endpoint refuses a *route* that names an own endpoint ignoring
    # letter case and one trailing slash ("as lenient upstream routers do"), and the policy
    # refuses (400) a request that matches an earlier route only under those equivalences.
    # Own endpoints are "matched before the policy", i.e. before every route, yet a request
    # for their case or trailing-slash spelling is matched exactly (served_endpoint is a dict
    # lookup) and proxied to the upstream under /**, where a case-insensitive router serves its
    # /.well-known/jwks.json under restguard's issuer URL.
    reply = raw_request(catch_all.port, request(target, (b"Connection", b"close")))
    assert status_of(reply) == 400, reply[:200]
    assert clean.requests == []


def test_own_endpoint_spellings_twin(catch_all: GatewayProcess, clean: RecordingUpstream) -> None:
    for path in ["/.well-known/openid-configuration", "/.well-known/jwks.json.d/x", "/jwks.json"]:
        assert httpx.get(catch_all.url + path, timeout=5).status_code == 200
    assert [r.target for r in clean.requests] == [
        b"/.well-known/openid-configuration",
        b"/.well-known/jwks.json.d/x",
        b"/jwks.json",
    ]


# --- reload ---------------------------------------------------------------------------------------

OPEN = '[[routes]]\npath = "/open/**"\nmethods = ["GET"]\npublic = true\n'
CLOSED = '[[routes]]\npath = "/open/**"\nmethods = ["GET"]\nscopes = ["admin"]\n'


def reload_cli(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RESTGUARD, "reload", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _statuses(url: str, count: int) -> list[int]:
    """``count`` requests, each on a new connection (so either process may take it)."""
    return [httpx.get(url, timeout=5).status_code for _ in range(count)]


@pytest.mark.slow
def test_a_respawned_worker_serves_the_reloaded_policy(
    tmp_path: Path, clean: RecordingUpstream
) -> None:
    # workers.Supervisor pickles `self.settings` -- the settings `serve` started with -- to every
    # worker it (re)spawns, and nothing updates them on reload (serve's on_hup reloads the
    # first process's runtime and forwards SIGHUP; the supervisor keeps the old Settings). So
    # after an operator reloads to close a public route, a worker that dies (OOM, a crash, a
    # kill) comes back serving the *old* policy: the route is public again in one of the N
    # processes until the next reload or restart. The module docstring promises "a respawned
    # worker serves exactly the configuration the others serve".
    config = serve_dir(tmp_path / "d", upstream=clean.url, routes=OPEN)
    with serving(config, "--workers", "2") as serve:
        (worker,) = ready_workers(serve.pid, 1)
        assert set(_statuses(serve.url + "/open/x", 10)) == {200}
        config.write_text(config.read_text().replace(OPEN, CLOSED))
        assert reload_cli(config).returncode == 0
        time.sleep(1.0)
        # twin: right after the reload both processes refuse
        assert set(_statuses(serve.url + "/open/x", 30)) == {401}
        serve_pid = serve.pid
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: process_gone(worker), 5, "the worker gone")
        wait_until(
            lambda: [p for p in children_of(serve_pid) if p != worker] != [], 10, "a respawn"
        )
        (respawned,) = ready_workers(serve_pid, 1)
        assert respawned != worker
        seen: list[int] = []
        _, taken_before = worker_decisions(respawned)
        for _ in range(10):
            seen += _statuses(serve.url + "/open/x", 20)
            time.sleep(1.2)
            if worker_decisions(respawned)[1] > taken_before:
                break
        assert worker_decisions(respawned)[1] > taken_before, "the respawned worker took nothing"
        opened = seen.count(200)
        assert opened == 0, f"{opened} of {len(seen)} requests served by the pre-reload policy"


@pytest.mark.slow
def test_reload_signals_only_the_server_of_the_given_configuration(
    tmp_path: Path, clean: RecordingUpstream
) -> None:
    # reload.pid_path is `settings.file.parent / "restguard.pid"`: one pid file per directory.
    # /etc/restguard/{restguard,staging}.toml (two instances, one directory) share it, and
    # `restguard reload --config staging.toml` signals whichever server wrote it last -- here
    # the production server -- and prints "reload sent to restguard (pid N): K routes" with K
    # counted from staging.toml. Production re-reads its own file (possibly half-edited, now
    # applied); staging never reloaded although the operator was told it did.
    config = serve_dir(tmp_path / "restguard", upstream=clean.url, routes=OPEN)
    staging = config.parent / "staging.toml"
    staging.write_text(config.read_text().replace(OPEN, OPEN + OPEN.replace("/open", "/stage")))
    with serving(config) as serve:
        done = reload_cli(staging)
        time.sleep(0.5)
        signalled = "SIGHUP" in serve.stderr
        assert (done.returncode, signalled) == (1, False), (done.stdout, done.stderr)
        # twin: reloading the server's own file reaches it
        assert reload_cli(config).returncode == 0
        serve.wait_line("SIGHUP", 5)


@pytest.mark.slow
def test_reload_cli_and_server_agree_on_every_contract_method(
    tmp_path: Path, clean: RecordingUpstream
) -> None:
    # `restguard reload` runs config.validate() only; the server's reload_settings (and
    # `restguard check`, and start-up) also run check_routes_servable. While a method the
    # CONTRACT lists was missing from the build (auth = ["oauth1"] before issue 11), such a
    # route passed the CLI ("reload sent", exit 0) while the server refused it. The CLI now
    # runs the same check; and with every method served, the route reloads on both sides.
    config = serve_dir(tmp_path / "d", upstream=clean.url, routes=OPEN)
    with serving(config) as serve:
        good = config.read_text().replace(OPEN, CLOSED)
        config.write_text(
            good + '\n[[routes]]\npath = "/sso/**"\nmethods = ["GET"]\nauth = ["oauth1"]\n'
        )
        done = reload_cli(config)
        assert done.returncode == 0, (done.stdout, done.stderr)
        wait_until(lambda: "routes from" in serve.stderr, 5, "the reload applied")
        assert "reload refused" not in serve.stderr
        assert httpx.get(serve.url + "/open/x", timeout=5).status_code == 401
        sso = httpx.get(serve.url + "/sso/x", timeout=5)
        assert sso.status_code == 401
        assert sso.headers.get_list("www-authenticate") == ['OAuth realm="restguard"']


@pytest.mark.slow
def test_reload_never_signals_a_process_that_only_mentions_restguard(
    tmp_path: Path,
) -> None:
    # _server_pid accepts any pid whose /proc/PID/cmdline contains b"restguard". After a crash
    # (SIGKILL, OOM: remove_pid_file never ran) the pid file is stale; once the pid is reused,
    # `restguard reload` (a systemd ExecReload, a deploy script) SIGHUPs whatever holds it if
    # its command line merely mentions the data directory -- `tail -f /var/lib/restguard/
    # audit.log`, `less /etc/restguard/restguard.toml` -- and SIGHUP's default action kills it.
    config = serve_dir(tmp_path / "restguard", routes=OPEN)
    (config.parent / "audit.log").touch()  # (tail -f gives up on a missing file by itself)
    tail = subprocess.Popen(["tail", "-f", str(config.parent / "audit.log")])
    time.sleep(0.2)
    assert tail.poll() is None
    try:
        (config.parent / "restguard.pid").write_text(f"{tail.pid}\n")
        done = reload_cli(config)
        time.sleep(0.3)
        assert tail.poll() is None, "restguard reload killed `tail -f .../audit.log`"
        assert done.returncode == 1
    finally:
        tail.kill()
        tail.wait()


@pytest.mark.slow
def test_reload_pid_twin_a_real_server_is_signalled(tmp_path: Path) -> None:
    config = serve_dir(tmp_path / "restguard", routes=OPEN)
    with serving(config) as serve:
        done = reload_cli(config)
        assert done.returncode == 0, done.stderr
        serve.wait_line("SIGHUP", 5)
        assert serve.proc.poll() is None
