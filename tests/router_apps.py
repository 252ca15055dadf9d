"""Real upstream routers for the router-differential tests (tests/attacks/).

The same small notes API written four times, the way users write it, in Starlette, FastAPI,
Flask and Django: a ``{x:path}`` / ``<path:x>`` converter route, a mounted "metrics" sub-app,
the framework's lenient route where it offers one (Flask ``strict_slashes=False``, a Django
``re_path`` with ``(?i)`` and ``/?$``; Starlette and FastAPI only redirect slashes), and the
method-override middleware people deploy: a POST whose query string or form body
(urlencoded or multipart) carries ``_method`` is routed as that method.

Every handler appends a ``Call`` to its app's ``Recorder``: which handler ran, with which method
and arguments, which ``X-Restguard-*`` identity headers it saw (names folded the way a CGI/WSGI
server folds them) and, under ``GuardMiddleware``, the subject of the decision. ``arrivals``
records every request as the server handed it to the app, before any middleware.
"""

from __future__ import annotations

import io
import sys
import types
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Request
from flask import Flask
from flask import request as flask_request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request as WerkzeugRequest

from restguard.asgi import GuardMiddleware
from restguard.fastapi import install, require_scopes
from restguard.types import Principal

OVERRIDABLE = frozenset({"PUT", "PATCH", "DELETE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Call:
    """One handler run."""

    handler: str
    method: str
    args: dict[str, str]
    identity: dict[str, str]
    principal: str | None = None  # under GuardMiddleware: the decision's subject


@dataclass
class Recorder:
    """What one app saw: every arrival (before middleware) and every handler run."""

    name: str
    calls: list[Call] = field(default_factory=list)
    arrivals: list[tuple[str, str]] = field(default_factory=list)

    def clear(self) -> None:
        self.calls.clear()
        self.arrivals.clear()

    def ran(self) -> list[str]:
        return [c.handler for c in self.calls]


# --- helpers shared by the ASGI apps -----------------------------------------------------------


def parse_form(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """Form fields of a urlencoded or multipart body (files as ``<file N bytes>``), as an app's
    form parser reads them: media type case-insensitive, RFC 2231 ``name*=`` decoded."""
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return parse_qsl(body.decode("latin-1"), keep_blank_values=True)
    if media != "multipart/form-data":
        return []
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = BytesParser().parsebytes(head + body)
    if not message.is_multipart():
        return []
    out: list[tuple[str, str]] = []
    for part in message.get_payload():
        raw_name = part.get_param("name", header="content-disposition")
        name = collapse_rfc2231_value(raw_name) if raw_name else ""
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            out.append((name, f"<file {len(payload)} bytes>"))
        else:
            out.append((name, payload.decode("utf-8", "replace")))
    return out


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


def asgi_identity(scope: Scope) -> dict[str, str]:
    """The identity headers an ASGI handler saw, names folded like a CGI server folds them."""
    seen: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower().replace("_", "-").replace(".", "-")
        if "restguard" in name:
            text = value.decode("latin-1")
            seen[name] = seen[name] + "," + text if name in seen else text
    return seen


def wsgi_identity(environ: dict[str, Any]) -> dict[str, str]:
    return {
        key[5:].lower().replace("_", "-"): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_") and "RESTGUARD" in key
    }


def _principal(scope: Scope) -> str | None:
    decision = scope.get("restguard.decision")
    return None if decision is None else str(decision.principal.subject)


def _form_args(fields: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in fields if k in ("title", "file")}


class ArrivalLog:
    """Outermost ASGI layer: records each request as the server handed it over."""

    def __init__(self, app: ASGIApp, recorder: Recorder) -> None:
        self.app, self.recorder = app, recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            target = scope.get("raw_path") or scope["path"].encode()
            if scope.get("query_string"):
                target += b"?" + scope["query_string"]
            self.recorder.arrivals.append((scope["method"], target.decode("latin-1")))
        await self.app(scope, receive, send)


class AsgiMethodOverride:
    """The usual ASGI method-override middleware: a POST with ``_method`` in the query string or
    in a form body (urlencoded or multipart) is routed as that method; the body is replayed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        method = query.get("_method")
        content_type = _header(scope, b"content-type")
        if method is None and content_type.partition(";")[0].strip().lower() in FORM_TYPES:
            body, more = b"", True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client went away: nothing to answer
                body += message.get("body", b"")
                more = message.get("more_body", False)
            method = dict(parse_form(content_type, body)).get("_method")
            receive = _replay(body, receive)
        if method and method.upper() in OVERRIDABLE:
            scope = {**scope, "method": method.upper()}
        await self.app(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# --- Starlette ---------------------------------------------------------------------------------


def starlette_app(recorder: Recorder, guard: Any = None) -> ASGIApp:
    """Starlette under uvicorn; ``guard``: wrapped in ``GuardMiddleware`` (outermost, as users
    add it), with the method override inside it."""

    def handler(name: str, *params: str, form: bool = False) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            args = {p: str(request.path_params[p]) for p in params}
            if form:
                body = await request.body()
                args |= _form_args(parse_form(request.headers.get("content-type", ""), body))
            recorder.calls.append(
                Call(
                    name,
                    request.method,
                    args,
                    asgi_identity(request.scope),
                    _principal(request.scope),
                )
            )
            return JSONResponse({"handler": name})

        return endpoint

    metrics = Starlette(routes=[Route("/{rest:path}", handler("metrics", "rest"))])
    middleware = [Middleware(AsgiMethodOverride)]
    if guard is not None:
        middleware.insert(0, Middleware(GuardMiddleware, guard=guard))
    app = Starlette(
        routes=[
            Route("/public/{rest:path}", handler("public", "rest"), methods=["GET", "POST"]),
            Route("/files/{name:path}", handler("files", "name"), methods=["GET"]),
            Mount("/metrics", app=metrics),
            Route("/notes/export", handler("export"), methods=["GET"]),
            Route("/notes/{id}", handler("note.read", "id"), methods=["GET"]),
            Route("/notes/{id}", handler("note.update", "id", form=True), methods=["POST"]),
            Route("/notes/{id}", handler("note.replace", "id", form=True), methods=["PUT"]),
            Route("/notes/{id}", handler("note.delete", "id"), methods=["DELETE"]),
            Route("/docs/secret", handler("docs.secret"), methods=["GET"]),
            Route("/docs/{page}", handler("docs.page", "page"), methods=["GET"]),
        ],
        middleware=middleware,
    )
    return ArrivalLog(app, recorder)


# --- FastAPI -----------------------------------------------------------------------------------


def fastapi_app(recorder: Recorder, guard: Any = None) -> ASGIApp:
    """FastAPI under uvicorn: the same API with decorators; ``guard`` as for Starlette."""

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def record(
        name: str, request: Request, /, form: bool = False, **args: str
    ) -> dict[str, str]:
        if form:
            body = await request.body()
            args |= _form_args(parse_form(request.headers.get("content-type", ""), body))
        recorder.calls.append(
            Call(
                name, request.method, args, asgi_identity(request.scope), _principal(request.scope)
            )
        )
        return {"handler": name}

    @app.api_route("/public/{rest:path}", methods=["GET", "HEAD", "POST"])
    async def public(rest: str, request: Request) -> dict[str, str]:
        return await record("public", request, rest=rest)

    @app.api_route("/files/{name:path}", methods=["GET", "HEAD"])
    async def files(name: str, request: Request) -> dict[str, str]:
        return await record("files", request, name=name)

    async def metrics_endpoint(request: Any) -> Any:

        await record("metrics", request, rest=str(request.path_params["rest"]))
        return JSONResponse({"handler": "metrics"})

    app.mount("/metrics", Starlette(routes=[Route("/{rest:path}", metrics_endpoint)]))

    @app.get("/notes/export")
    async def export(request: Request) -> dict[str, str]:
        return await record("export", request)

    @app.api_route("/notes/{note_id}", methods=["GET", "HEAD"])  # @app.get answers HEAD 405
    async def note_read(note_id: str, request: Request) -> dict[str, str]:
        return await record("note.read", request, id=note_id)

    @app.post("/notes/{note_id}")
    async def note_update(note_id: str, request: Request) -> dict[str, str]:
        return await record("note.update", request, form=True, id=note_id)

    @app.put("/notes/{note_id}")
    async def note_replace(note_id: str, request: Request) -> dict[str, str]:
        return await record("note.replace", request, form=True, id=note_id)

    @app.delete("/notes/{note_id}")
    async def note_delete(note_id: str, request: Request) -> dict[str, str]:
        return await record("note.delete", request, id=note_id)

    @app.api_route("/docs/secret", methods=["GET", "HEAD"])
    async def docs_secret(request: Request) -> dict[str, str]:
        return await record("docs.secret", request)

    @app.api_route("/docs/{page}", methods=["GET", "HEAD"])
    async def docs_page(page: str, request: Request) -> dict[str, str]:
        return await record("docs.page", request, page=page)

    app.add_middleware(AsgiMethodOverride)
    if guard is not None:
        app.add_middleware(GuardMiddleware, guard=guard)  # added last: outermost
    return ArrivalLog(app, recorder)


# --- WSGI (Flask, Django) ----------------------------------------------------------------------


class WsgiMethodOverride:
    """The usual WSGI method-override middleware (werkzeug does the parsing): a POST with
    ``_method`` in the query string or the form body is routed as that method."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:

        if environ["REQUEST_METHOD"] == "POST":
            request = WerkzeugRequest(environ)
            data = request.get_data(cache=True)  # kept for the app below
            method = request.args.get("_method") or request.form.get("_method")
            request.close()  # the parsed files
            environ["wsgi.input"] = io.BytesIO(data)
            if method and method.upper() in OVERRIDABLE:
                environ["REQUEST_METHOD"] = method.upper()
        return self.app(environ, start_response)  # type: ignore[no-any-return]


def _wsgi_arrivals(app: Any, recorder: Recorder) -> Any:
    def log(environ: dict[str, Any], start_response: Any) -> Any:
        target = environ.get("PATH_INFO", "")
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
        recorder.arrivals.append((environ["REQUEST_METHOD"], target))
        return app(environ, start_response)

    return log


def flask_app(recorder: Recorder) -> Any:
    """Flask: ``<path:x>`` routes, slash-tolerant routes, a metrics app mounted with werkzeug's
    ``DispatcherMiddleware`` and the method override around it all."""

    def record(name: str, /, form: bool = False, **args: str) -> dict[str, str]:
        if form:
            args |= _form_args(flask_request.form.items())
            if "file" in flask_request.files:
                args["file"] = f"<file {len(flask_request.files['file'].read())} bytes>"
        recorder.calls.append(
            Call(name, flask_request.method, args, wsgi_identity(flask_request.environ))
        )
        return {"handler": name}

    app = Flask("router_differentials")

    @app.route("/public/<path:rest>", methods=["GET", "POST"])
    def public(rest: str) -> dict[str, str]:
        return record("public", rest=rest)

    @app.get("/files/<path:name>")
    def files(name: str) -> dict[str, str]:
        return record("files", name=name)

    @app.get("/notes/export", strict_slashes=False)
    def export() -> dict[str, str]:
        return record("export")

    @app.get("/notes/<id>")
    def note_read(id: str) -> dict[str, str]:
        return record("note.read", id=id)

    @app.post("/notes/<id>")
    def note_update(id: str) -> dict[str, str]:
        return record("note.update", form=True, id=id)

    @app.put("/notes/<id>")
    def note_replace(id: str) -> dict[str, str]:
        return record("note.replace", form=True, id=id)

    @app.delete("/notes/<id>")
    def note_delete(id: str) -> dict[str, str]:
        return record("note.delete", id=id)

    @app.get("/docs/secret", strict_slashes=False)
    def docs_secret() -> dict[str, str]:
        return record("docs.secret")

    @app.get("/docs/<page>")
    def docs_page(page: str) -> dict[str, str]:
        return record("docs.page", page=page)

    metrics = Flask("router_differentials_metrics")

    @metrics.get("/<path:rest>")
    def metrics_view(rest: str) -> dict[str, str]:
        return record("metrics", rest=rest)

    app.wsgi_app = WsgiMethodOverride(  # type: ignore[method-assign]
        DispatcherMiddleware(app.wsgi_app, {"/metrics": metrics})
    )
    return _wsgi_arrivals(app, recorder)


class DjangoMethodOverride:
    """The usual Django method-override middleware: ``_method`` from the form body (urlencoded
    or multipart, ``request.POST``) or the query string turns a POST into that method."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        if request.method == "POST":
            method = request.POST.get("_method") or request.GET.get("_method")
            if method and method.upper() in OVERRIDABLE:
                request.method = method.upper()
        return self.get_response(request)


class _DjangoUrls:
    """Test plumbing: this app's URLconf per request (settings may be shared in the process)."""

    urlconf: Any = None

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        request.urlconf = self.urlconf
        return self.get_response(request)


def django_app(recorder: Recorder) -> Any:
    """Django configured in-process (``settings.configure``): ``<path:x>`` converters, an
    ``include()``d metrics URLconf, ``re_path`` routes that ignore case and a trailing slash,
    and the method-override middleware."""
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import JsonResponse
    from django.test.utils import override_settings
    from django.urls import include, path, re_path

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["*"],
            SECRET_KEY="router-differentials-" + "x" * 40,
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
            ROOT_URLCONF=None,
            USE_TZ=True,
        )
        django.setup()

    def record(request: Any, name: str, /, form: bool = False, **args: str) -> Any:
        if form:
            if request.POST or request.FILES:
                args |= _form_args(request.POST.items())
            else:  # Django parses POST bodies only
                args |= _form_args(parse_form(request.content_type, request.body))
            if "file" in request.FILES:
                args["file"] = f"<file {request.FILES['file'].size} bytes>"
        recorder.calls.append(Call(name, request.method, args, wsgi_identity(request.META)))
        return JsonResponse({"handler": name})

    def public(request: Any, rest: str) -> Any:
        return record(request, "public", rest=rest)

    def files(request: Any, name: str) -> Any:
        return record(request, "files", name=name)

    def metrics(request: Any, rest: str) -> Any:
        return record(request, "metrics", rest=rest)

    def export(request: Any) -> Any:
        return record(request, "export")

    def note(request: Any, id: str) -> Any:
        name = {
            "GET": "note.read",
            "HEAD": "note.read",
            "POST": "note.update",
            "PUT": "note.replace",
            "DELETE": "note.delete",
        }[request.method]
        return record(request, name, form=request.method in ("POST", "PUT"), id=id)

    def docs_secret(request: Any) -> Any:
        return record(request, "docs.secret")

    def docs_page(request: Any, page: str) -> Any:
        return record(request, "docs.page", page=page)

    urls = types.ModuleType("router_differentials_urls")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("public/<path:rest>", public),
        path("files/<path:name>", files),
        path("metrics/", include([path("<path:rest>", metrics)])),
        re_path(r"(?i)^notes/export/?$", export),
        path("notes/<str:id>", note),
        re_path(r"^docs/secret/?$", docs_secret),
        path("docs/<str:page>", docs_page),
    ]
    plumbing = type("_Urls", (_DjangoUrls,), {"urlconf": urls})
    module = sys.modules[__name__]
    setattr(module, f"_DjangoUrls_{id(recorder)}", plumbing)
    with override_settings(
        MIDDLEWARE=[
            f"{__name__}._DjangoUrls_{id(recorder)}",
            f"{__name__}.DjangoMethodOverride",
        ]
    ):
        handler = WSGIHandler()
    return _wsgi_arrivals(handler, recorder)


# --- FastAPI with restguard.fastapi's dependency (no middleware) -------------------------------


def fastapi_dependency_app(recorder: Recorder, guard: Any) -> ASGIApp:
    """FastAPI protected by ``Depends(require_scopes())`` alone: the guard judges the request
    after FastAPI routed it, from the same scope."""

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    install(app, guard)

    def record(name: str, request: Request, principal: Principal, /, **args: str) -> dict[str, str]:
        recorder.calls.append(
            Call(name, request.method, args, asgi_identity(request.scope), principal.subject)
        )
        return {"handler": name}

    @app.get("/public/{rest:path}")
    async def public(
        rest: str, request: Request, principal: Principal = Depends(require_scopes())
    ) -> dict[str, str]:
        return record("public", request, principal, rest=rest)

    @app.get("/files/{name:path}")
    async def files(
        name: str, request: Request, principal: Principal = Depends(require_scopes())
    ) -> dict[str, str]:
        return record("files", request, principal, name=name)

    @app.get("/notes/export")
    async def export(
        request: Request, principal: Principal = Depends(require_scopes())
    ) -> dict[str, str]:
        return record("export", request, principal)

    @app.get("/notes/{note_id}")
    async def note_read(
        note_id: str, request: Request, principal: Principal = Depends(require_scopes())
    ) -> dict[str, str]:
        return record("note.read", request, principal, id=note_id)

    return ArrivalLog(app, recorder)
