"""FastAPI integration: ``Depends(require_scopes("notes:read"))`` returns the ``Principal``.

Set it up where FastAPI apps set things up, in ``lifespan``::

    app = FastAPI(lifespan=restguard.fastapi.lifespan("restguard.toml"))

or, inside a lifespan of one's own, ``async with restguard.fastapi.guarded(app, config):``
(``install(app, runtime)`` at import time or in ``lifespan`` works as well). The runtime is
closed at shutdown and its audit log written while the app runs.

Default deny holds: every endpoint of the app (routes of included routers, mounts, static files
and host routes included) is covered by a policy route in ``restguard.toml``, carries
``require_scopes`` (the endpoint's own policy: any accepted credential plus every scope its
dependencies name), or is marked public on purpose (``Depends(restguard.fastapi.public)`` or
``install(..., public=["/path"])``). Anything else stops start-up with ``UnprotectedEndpoints``
naming it. ``install``'s layer decides every request before the app sees it -- the policy route
first, then the endpoint's own rule -- so no dependency runs, and no body is read, for a request
that is refused. FastAPI's own documentation routes are public unless ``public_docs=False``.
``require_scopes`` works on WebSocket endpoints (a refusal closes the handshake with 1008) and
declares the API-key schemes in the OpenAPI document, so that the docs' Authorize button sends
a key.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import WebSocketException
from fastapi.responses import Response
from fastapi.routing import APIWebSocketRoute
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.endpoints import HTTPEndpoint
from starlette.requests import HTTPConnection
from starlette.routing import Host, Match, Mount, WebSocketRoute
from starlette.routing import Route as StarletteRoute
from starlette.status import WS_1008_POLICY_VIOLATION

from restguard.asgi import (
    DECISION_KEY,
    GuardMiddleware,
    Limits,
    Scope,
    guard_and_limits,
)
from restguard.authz.policy import Route
from restguard.config import Settings, load
from restguard.edge.problem import problem
from restguard.errors import AuthError
from restguard.guard import Decision, Guard
from restguard.guard import require_scopes as _check
from restguard.types import Principal
from restguard.wiring import Runtime, open_runtime

__all__ = [
    "UnprotectedEndpoints",
    "guarded",
    "install",
    "lifespan",
    "public",
    "require_scopes",
]

_log = logging.getLogger("restguard.fastapi")
_STATE = "restguard"
_SCOPES_MARK = "__restguard_scopes__"
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# The schemes the OpenAPI document declares (alternatives): what the docs' Authorize button
# fills in. The guard reads the headers itself; these only describe them (auto_error=False).
_API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="A restguard API key (rg_ak_...).",
    auto_error=False,
)
_BEARER = HTTPBearer(
    scheme_name="Bearer",
    bearerFormat="rg_ak_...",
    description="A restguard API key as a Bearer token.",
    auto_error=False,
)


class UnprotectedEndpoints(RuntimeError):
    """Start-up refused: endpoints that nothing protects (default deny)."""


def public() -> None:
    """``dependencies=[Depends(restguard.fastapi.public)]``: this endpoint is public on purpose
    (restguard still refuses credentials in its URL and method overrides, and audits it)."""


def require_scopes(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the request's Principal, after the guard's decision and these scopes."""

    async def dependency(
        connection: HTTPConnection,
        _key: Annotated[Any, Security(_API_KEY)] = None,
        _bearer: Annotated[Any, Security(_BEARER)] = None,
    ) -> Principal:
        decision = connection.scope.get(DECISION_KEY)
        if not isinstance(decision, Decision):  # (install's layer decides every request)
            raise RuntimeError("call restguard.fastapi.install(app, runtime) first")
        try:
            _check(decision.principal, scopes)
        except AuthError as err:
            if connection.scope["type"] == "websocket":  # the handshake is refused: 1008
                raise WebSocketException(WS_1008_POLICY_VIOLATION, err.description) from None
            raise
        return decision.principal

    setattr(dependency, _SCOPES_MARK, scopes)
    return dependency


# --- install ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    """One endpoint of the app as Starlette dispatches it (routes of included routers too):
    how it is decided -- "dependency" (it carries ``require_scopes``: ``scopes`` is every scope
    they name), "public" or "policy" -- and what the start-up check calls it."""

    route: Any  # (a Starlette route, or FastAPI's route context for an included router's)
    kind: str  # "http", "websocket", "mount" or "host"
    path: str
    methods: tuple[str, ...]
    mode: str
    scopes: tuple[str, ...] = ()
    name: str = ""

    def matches(self, scope: Scope) -> bool:
        return bool(self.route.matches(scope)[0] == Match.FULL)


def _route_contexts(app: FastAPI) -> list[Any]:
    """Every route as Starlette dispatches it. Recent FastAPI keeps an included router as one
    entry whose routes it builds lazily (``iter_route_contexts`` gives them with their full
    paths, methods and dependencies); older versions copy them into ``app.routes``."""
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return list(app.router.routes)
    return list(iter_route_contexts(app.router.routes))


@dataclass
class _Installed:
    """What ``install`` put on an app: the guard, and how each endpoint is decided."""

    app: FastAPI
    guard: Guard
    limits: Limits
    public: frozenset[str]
    public_docs: bool
    checked: bool = False
    _endpoints: list[_Endpoint] = field(default_factory=list)
    _version: Any = None

    def endpoints(self) -> list[_Endpoint]:
        """The app's endpoints, rebuilt when its routes change."""
        router = self.app.router
        versioned = getattr(router, "_get_routes_version", None)
        version = versioned() if versioned is not None else None
        key = (version, tuple(id(r) for r in router.routes))
        if key != self._version:
            self._endpoints = [self._endpoint(rc) for rc in _route_contexts(self.app)]
            self._version = key
        return self._endpoints

    def forget(self) -> None:
        self.checked = False
        self._endpoints, self._version = [], None

    def _endpoint(self, route: Any) -> _Endpoint:
        original = getattr(route, "original_route", route)
        path = getattr(route, "path", None) or ""
        name = getattr(getattr(route, "endpoint", None), "__name__", "") or ""
        methods: tuple[str, ...] = ()
        if isinstance(original, Host):
            kind, methods = "host", ()
        elif isinstance(original, Mount):
            kind, methods = "mount", ()
        elif isinstance(original, (APIWebSocketRoute, WebSocketRoute)):
            kind, methods = "websocket", ("GET",)
        else:
            kind, methods = "http", _methods_of(route)
        dependant = getattr(route, "dependant", None)
        calls = list(_calls(dependant)) if dependant is not None else []
        marks = [getattr(call, _SCOPES_MARK) for call in calls if hasattr(call, _SCOPES_MARK)]
        scopes = tuple(dict.fromkeys(s for mark in marks for s in mark))
        if marks:
            mode = "dependency"  # (before any public marking: the endpoint asks for a key)
        elif public in calls or path in self.public or self._is_docs(original, path):
            mode = "public"
        else:
            mode = "policy"
        return _Endpoint(route, kind, path, methods, mode, scopes, name)

    def _is_docs(self, route: Any, path: str) -> bool:
        """FastAPI's own documentation routes (not an endpoint of the app at the same path)."""
        if not self.public_docs or path not in _docs_paths(self.app):
            return False
        qualname = getattr(getattr(route, "endpoint", None), "__qualname__", "")
        return isinstance(route, StarletteRoute) and qualname.startswith("FastAPI.setup.")

    def check(self) -> None:
        """Every endpoint is protected somehow, or UnprotectedEndpoints names each one that
        is not."""
        problems = [p for endpoint in self.endpoints() for p in self._problems(endpoint)]
        if problems:  # (and every request answers 500 until the app is fixed: fail closed)
            raise UnprotectedEndpoints(
                "restguard: endpoints that nothing protects (default deny):\n"
                + "\n".join(f"  {p}" for p in problems)
                + "\nFix: add a [[routes]] entry covering each to restguard.toml, give it "
                "Depends(require_scopes(...)), or mark it public "
                "(Depends(restguard.fastapi.public) or install(..., public=[path]))."
            )
        self.checked = True

    def _problems(self, endpoint: _Endpoint) -> list[str]:
        if endpoint.mode != "policy":
            return []
        policy = self.guard.policy
        path = endpoint.path
        if endpoint.kind == "websocket":
            return [f"WebSocket {path}: the policy covers HTTP only; use require_scopes"]
        if endpoint.kind in ("mount", "host"):
            root = path.rstrip("/")
            pattern = (_pattern(root) if root else "") + "/**"
            if any(policy.covers(pattern, m) for m in _METHODS):
                return []
            where = "host route" if endpoint.kind == "host" else f"mount {path or '/'}"
            return [f"{where} (everything under it)"]
        methods = endpoint.methods
        pattern = _pattern(path)
        missing = [
            m
            for m in methods
            if not (m == "HEAD" and "GET" in methods) and not policy.covers(pattern, m)
        ]
        if not missing:
            return []
        name = f" ({endpoint.name})" if endpoint.name else ""
        return [f"{' '.join(missing)} {path}{name}"]

    def decider(self, scope: Scope) -> Route | None:
        """The route that decides this request when no policy route matches: none (default
        deny) for an endpoint the policy must cover, a public one for an endpoint public on
        purpose, or one requiring the endpoint's ``require_scopes`` scopes. Every endpoint
        that matches counts and the strictest wins: no routing detail can pick a weaker one."""
        matching = [e for e in self.endpoints() if e.matches(scope)]
        if not matching or any(e.mode == "policy" for e in matching):
            return None
        label = matching[0].path
        if all(e.mode == "public" for e in matching):
            return Route(-1, f"public endpoint {label}", frozenset(_METHODS), public=True)
        scopes = tuple(dict.fromkeys(s for e in matching for s in e.scopes))
        return Route(-1, f"endpoint {label}", frozenset(_METHODS), scopes=scopes)


def _methods_of(route: Any) -> tuple[str, ...]:
    """The HTTP methods a route serves: its list, an HTTPEndpoint class's handlers, or every
    method for a route without a list (a plain ASGI app)."""
    methods = getattr(route, "methods", None)
    if methods:
        return tuple(sorted(methods))
    endpoint = getattr(route, "endpoint", None)
    if isinstance(endpoint, type) and issubclass(endpoint, HTTPEndpoint):
        return tuple(m for m in _METHODS if hasattr(endpoint, m.lower()))
    return _METHODS


def _calls(dependant: Any) -> Iterable[Any]:
    """Every dependency callable of an endpoint, at any depth."""
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _docs_paths(app: FastAPI) -> set[str]:
    paths = {app.openapi_url, app.docs_url, app.redoc_url}
    if app.docs_url and app.swagger_ui_oauth2_redirect_url:
        paths.add(app.swagger_ui_oauth2_redirect_url)
    return {p for p in paths if p}


def _pattern(path: str) -> str:
    """A Starlette path in policy syntax: ``{id:int}`` is ``{id}``, a trailing ``{p:path}``
    (any rest, slashes included) a subtree."""
    segments = path.split("/")
    out: list[str] = []
    for i, segment in enumerate(segments):
        if segment.startswith("{") and segment.endswith("}"):
            name, _, convertor = segment[1:-1].partition(":")
            if convertor == "path":
                return "/".join(out) + "/**" if i == len(segments) - 1 else path
            segment = "{" + name + "}"
        out.append(segment)
    return "/".join(out)


class _EndpointGuard(GuardMiddleware):
    """``install``'s layer: decides every request before the app sees it (its dependencies
    included) -- by the policy, and where no policy route matches, by the endpoint's
    ``require_scopes`` scopes or as a public endpoint; default deny for anything else."""

    def __init__(self, app: Any, installed: _Installed) -> None:
        limits = installed.limits
        super().__init__(
            app,
            installed.guard,
            trusted_proxies=limits.trusted_proxies,
            max_header_bytes=limits.max_header_bytes,
            max_body_bytes=limits.max_body_bytes,
        )
        self.installed = installed

    def fallback(self, scope: Scope) -> Route | None:
        installed = self.installed
        if not installed.checked:  # a server that sends no lifespan events: check now
            installed.check()
        return installed.decider(scope)


def install(
    app: FastAPI,
    guard: Runtime | Guard,
    *,
    public: Iterable[str] = (),
    public_docs: bool = True,
) -> None:
    """Protect ``app``: its endpoints are decided by restguard's policy, by their
    ``require_scopes`` dependency, or are public (``public`` names endpoint paths, as declared,
    that are public on purpose). AuthError becomes the contract's JSON error. Works at import
    time and inside ``lifespan``; the endpoints are checked at start-up (or at once, when the
    app has started already) and ``UnprotectedEndpoints`` names any that nothing protects."""
    bare, limits = guard_and_limits(guard)
    installed = getattr(app.state, _STATE, None)
    if isinstance(installed, _Installed):  # a second install replaces the first's settings
        installed.guard, installed.limits = bare, limits
        installed.public, installed.public_docs = frozenset(public), public_docs
        installed.forget()
        started = app.middleware_stack is not None
        app.middleware_stack = None  # (rebuilt at the next request, with the new guard)
        if not started:
            return  # (the start-up check is in place already)
    else:
        installed = _Installed(app, bare, limits, frozenset(public), public_docs)
        setattr(app.state, _STATE, installed)
        app.add_exception_handler(AuthError, _problem_response)
        started = app.middleware_stack is not None
        # Starlette fixes its middleware and exception handlers when the app starts (its
        # lifespan is the first call): rebuilt at the next request, with these in.
        app.middleware_stack = None
        app.add_middleware(_EndpointGuard, installed=installed)
        if not started:
            _check_at_startup(app, installed)
            return
    installed.check()


def _check_at_startup(app: FastAPI, installed: _Installed) -> None:
    original = app.router.lifespan_context

    @asynccontextmanager
    async def checked(a: Any) -> AsyncIterator[Any]:
        installed.check()
        async with original(a) as state:
            yield state

    app.router.lifespan_context = checked


async def _problem_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    status, headers, body = problem(exc)
    response = Response(body, status_code=status)
    for name, value in headers:
        if name != b"content-length":  # Response sets its own
            response.headers.append(name.decode("latin-1"), value.decode("latin-1"))
    return response


# --- lifespan -------------------------------------------------------------------------------------


@asynccontextmanager
async def guarded(
    app: FastAPI,
    config: str | PathLike[str] | Settings = "restguard.toml",
    *,
    public: Iterable[str] = (),
    public_docs: bool = True,
) -> AsyncIterator[Runtime]:
    """Open restguard's runtime for ``config`` (a path, or loaded settings), ``install`` it on
    ``app``, and close it (audit log and bookkeeping written) on the way out. For use inside a
    lifespan of one's own."""
    settings = config if isinstance(config, Settings) else load(Path(config))
    runtime = await open_runtime(settings)
    try:
        install(app, runtime, public=public, public_docs=public_docs)
        yield runtime
    finally:
        try:
            await runtime.flush()
        finally:
            await runtime.close()


def lifespan(
    config: str | PathLike[str] | Settings = "restguard.toml",
    *,
    public: Iterable[str] = (),
    public_docs: bool = True,
) -> Callable[[FastAPI], Any]:
    """``FastAPI(lifespan=restguard.fastapi.lifespan("restguard.toml"))``: ``guarded`` as the
    app's whole lifespan."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        async with guarded(app, config, public=public, public_docs=public_docs):
            yield

    return run
