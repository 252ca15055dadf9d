"""Review of embedded mode and the policy engine: attacks that work today (each with a twin).

Every test here is an attack that succeeded against ``restguard.asgi.GuardMiddleware``,
``restguard.fastapi`` or the shared policy/form code at the time of the review, driven through
real frameworks (Starlette, FastAPI and Django under a real uvicorn, Django under wsgiref behind
the real gateway, httpx's ``ASGITransport``). Each asserts which handler ran (none, for the
attack) and has a valid twin that reaches the intended handler.

1. The form gate is skipped when the Content-Type does not parse strictly (repeated, a trailing
   ``;``, two ``boundary`` parameters): the middleware reads and checks only bodies whose type
   parses, the decision never looks at the type again, and the app's method override reads the
   ``_method`` field anyway.
2. Parameter names are decoded as Latin-1 only, while upstreams decode them in a declared
   charset: RFC 2231 ``name*=utf-7''+AF8-method`` (the stdlib email parser, Django), and a
   query string under ``Content-Type: ...; charset=utf-7`` (Django's WSGI ``request.GET``).
3. Multipart part headers: the gate ends a header block at a bare ``LF LF`` and splits lines on
   bare CR/LF; Django splits on CRLF only, so a ``name="_method"`` parameter after a bare line
   end is still part of Django's Content-Disposition.
4. ``root_path``: the guard judges ``raw_path`` (root_path included or not, depending on the
   server); Starlette routes ``path`` less ``root_path``. With a server that does not prefix
   (hypercorn, daphne, httpx), ``/api/docs/admin/x`` is judged ``{tenant}=api`` (public docs) and
   routed ``{tenant}=docs`` (admin).
5. The letter-case ambiguity check folds ASCII only; Python's case-insensitive regexes (Django
   ``(?i)`` routes) also fold U+017F (long s) to s, U+212A (Kelvin) to k and U+0131
   (dotless i) to i.
6. Failed-attempt lockout with no client address (uvicorn on a Unix socket): every client
   shares one bucket, so a stranger's garbage keys lock every valid key out.
7. ``restguard.fastapi`` dependency-only mode: a route without ``require_scopes`` runs
   anonymously and start-up does not fail (CONTRACT: default deny holds or start-up fails).
8. Redaction: a key whose prefix is written with a percent-encoded letter (``%72g_ak_``) in a
   refused request's path is written to the audit log.
9. The middleware buffers a form body (up to 10 MiB) before any decision, for anonymous
   requests to protected routes too.
10. Percent-encoded reserved characters (``%3A``, ``%40``) are kept encoded by the normaliser,
    so they never match a route literal holding the character (``/v1/notes:purge``,
    ``/users/@me``); every router decodes them and runs that literal route's handler.
11. ``restguard.fastapi`` dependency-only mode with a ``Form()`` endpoint: 500 (stream consumed)
    for every form request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
import threading
import time
import types
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from restguard.asgi import GuardMiddleware
from restguard.audit import DecisionEvent
from restguard.cli.init import write_data_dir
from restguard.config import load
from restguard.credentials.apikey import generate_key, new_record
from restguard.fastapi import install, require_scopes
from restguard.types import Principal
from restguard.wiring import Runtime, open_runtime
from tests.attacks.test_router_differentials import (
    BOUNDARY,
    FORM,
    MULTIPART,
    ROLES,
    Stack,
    expect_handler,
    expect_refused,
    multipart,
    post,
)
from tests.attacks.wire import Response, _parse_one, api_key, request
from tests.attacks.wire import send as send_raw
from tests.harness import GatewayProcess
from tests.router_apps import (
    ArrivalLog,
    Call,
    Recorder,
    asgi_identity,
    fastapi_app,
    starlette_app,
    wsgi_identity,
)
from tests.stock_upstreams import UvicornUpstream, WsgiRefUpstream

# The router-differential policy's notes and docs routes, plus scoped docs pages whose literals
# hold the letters Unicode case folding maps onto (s, k, i).
ROUTES = """\
[[routes]]
path = "/public/**"
methods = ["GET", "POST"]
public = true

[[routes]]
path = "/notes/export"
methods = ["GET"]
scopes = ["notes:admin"]

[[routes]]
path = "/notes/{id}"
methods = ["GET"]
scopes = ["notes:read"]

[[routes]]
path = "/notes/{id}"
methods = ["POST", "PUT"]
scopes = ["notes:write"]

[[routes]]
path = "/notes/{id}"
methods = ["DELETE"]
scopes = ["notes:admin"]

[[routes]]
path = "/docs/secret"
methods = ["GET"]
scopes = ["docs:admin"]

[[routes]]
path = "/docs/keys"
methods = ["GET"]
scopes = ["docs:admin"]

[[routes]]
path = "/docs/internal"
methods = ["GET"]
scopes = ["docs:admin"]

[[routes]]
path = "/docs/{page}"
methods = ["GET"]
public = true

[[routes]]
path = "/v1/notes:purge"
methods = ["POST"]
scopes = ["notes:admin"]

[[routes]]
path = "/v1/{collection}"
methods = ["POST"]
scopes = ["notes:write"]

[[routes]]
path = "/users/@me"
methods = ["GET"]
scopes = ["notes:read"]

[[routes]]
path = "/users/{name}"
methods = ["GET"]
public = true
"""
LOCKOUT = '"10000/minute"'  # 401s are part of these tests; the lockout has its own test

EMBEDDED = ["embedded-starlette", "embedded-fastapi"]


def _set_lockout(config: Path, value: str) -> None:
    config.write_text(
        config.read_text().replace('failed_attempts = "30/minute"', f"failed_attempts = {value}")
    )


# --- Django, the same notes/docs API, under ASGI (embedded) and WSGI (behind the gateway) --------


class _UrlconfPlumbing:
    """Test plumbing: this app's URLconf per request (Django settings are per process)."""

    urlconf: Any = None

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        request.urlconf = self.urlconf
        return self.get_response(request)


def _wsgi_arrivals(app: Any, recorder: Recorder) -> Any:
    def log(environ: dict[str, Any], start_response: Any) -> Any:
        target = environ.get("PATH_INFO", "")
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
        recorder.arrivals.append((environ["REQUEST_METHOD"], target))
        return app(environ, start_response)

    return log


def django_notes(recorder: Recorder, *, asgi: bool) -> Any:
    """Django with ``(?i)`` + ``/?$`` routes for the export and docs pages (as in
    tests/router_apps.py) and the usual ``_method`` override middleware; an ASGI handler
    (``asgi=True``) or a WSGI one."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["*"],
            SECRET_KEY="review-embedded-" + "x" * 40,
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
            ROOT_URLCONF=None,
            USE_TZ=True,
        )
        django.setup()
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import JsonResponse
    from django.test.utils import override_settings
    from django.urls import path, re_path

    def record(request: Any, name: str, /, **args: str) -> Any:
        scope = getattr(request, "scope", None)
        if scope is not None:
            decision = scope.get("restguard.decision")
            principal = None if decision is None else str(decision.principal.subject)
            identity = asgi_identity(scope)
        else:
            principal, identity = None, wsgi_identity(request.META)
        recorder.calls.append(Call(name, request.method, args, identity, principal))
        return JsonResponse({"handler": name})

    def page(name: str) -> Callable[..., Any]:
        def view(request: Any, **args: str) -> Any:
            return record(request, name, **args)

        return view

    def note(request: Any, id: str) -> Any:
        name = {
            "GET": "note.read",
            "HEAD": "note.read",
            "POST": "note.update",
            "PUT": "note.replace",
            "DELETE": "note.delete",
        }[request.method]
        return record(request, name, id=id)

    urls = types.ModuleType(f"review_urls_{id(recorder)}")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("public/<path:rest>", page("public")),
        re_path(r"(?i)^notes/export/?$", page("export")),
        path("notes/<str:id>", note),
        re_path(r"(?i)^docs/secret/?$", page("docs.secret")),
        re_path(r"(?i)^docs/keys/?$", page("docs.keys")),
        re_path(r"(?i)^docs/internal/?$", page("docs.internal")),
        path("docs/<str:page>", page("docs.page")),
        path("v1/notes:purge", page("purge")),  # AIP-136 style custom method
        path("v1/<str:collection>", page("create")),
        path("users/@me", page("me")),
        path("users/<str:name>", page("profile")),
    ]
    name = f"_ReviewUrls_{id(recorder)}"
    setattr(sys.modules[__name__], name, type(name, (_UrlconfPlumbing,), {"urlconf": urls}))
    with override_settings(
        MIDDLEWARE=[f"{__name__}.{name}", "tests.router_apps.DjangoMethodOverride"]
    ):
        handler = ASGIHandler() if asgi else WSGIHandler()
    return handler


# --- stacks: each app reached through the middleware (embedded) or the real gateway --------------


@dataclass
class ReviewStack(Stack):
    events: list[DecisionEvent] = field(default_factory=list)
    gateway: GatewayProcess | None = None

    def audit_text(self) -> str:
        """The audit log file, after everything pending was written."""
        if self.gateway is not None:
            self.gateway.audit_events()  # waits for the next batch write
            path = self.gateway.settings.audit_path
        else:
            assert self.runtime is not None and self.runtime.audit is not None
            self.runtime.audit.flush()
            path = self.runtime.settings.audit_path
        assert path is not None
        return path.read_text()


class Stacks:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: dict[str, ReviewStack] = {}
        self.closers: list[Callable[[], None]] = []

    def get(self, name: str) -> ReviewStack:
        if name not in self.started:
            self.started[name] = self._start(name)
        return self.started[name]

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()

    def _start(self, name: str) -> ReviewStack:
        kind, framework = name.split("-")
        recorder = Recorder(name)
        if kind == "gateway":
            assert framework == "django"
            upstream = WsgiRefUpstream(_wsgi_arrivals(django_notes(recorder, asgi=False), recorder))
            self.closers.append(upstream.stop)
            gw = GatewayProcess(
                self.tmp / name, upstream, routes=ROUTES, extra={"failed_attempts": LOCKOUT}
            ).start()
            self.closers.append(gw.stop)
            keys = {role: gw.issue_key(*scopes, name=role)[1] for role, scopes in ROLES.items()}
            return ReviewStack(name, False, gw.port, recorder, keys, gateway=gw)
        config = write_data_dir(self.tmp / name, routes=ROUTES)
        _set_lockout(config, LOCKOUT)
        events: list[DecisionEvent] = []
        runtime = asyncio.run(open_runtime(load(config), sinks=[events.append]))
        self.closers.append(runtime.close)
        keys = asyncio.run(_insert_keys(runtime, ROLES))
        app: Any
        if framework == "starlette":
            app = starlette_app(recorder, guard=runtime.guard)
        elif framework == "fastapi":
            app = fastapi_app(recorder, guard=runtime.guard)
        else:
            app = ArrivalLog(
                GuardMiddleware(django_notes(recorder, asgi=True), runtime.guard), recorder
            )
        server = UvicornUpstream(app)
        self.closers.append(server.stop)
        return ReviewStack(name, True, server.port, recorder, keys, runtime, events=events)


async def _insert_keys(runtime: Runtime, roles: dict[str, tuple[str, ...]]) -> dict[str, str]:
    keys = {}
    for role, scopes in roles.items():
        record, key = new_record(role, scopes, datetime.now(UTC), None)
        await runtime.store.api_keys.insert(record)
        keys[role] = key
    return keys


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stacks]:
    pool = Stacks(tmp_path_factory.mktemp("review-embedded"))
    yield pool
    pool.close()


@pytest.fixture
def stack(request: pytest.FixtureRequest, stacks: Stacks) -> ReviewStack:
    s = stacks.get(request.param)
    s.recorder.clear()
    return s


def each_stack(names: list[str]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("stack", names, indirect=True)


def _override_twins(stack: Stack) -> None:
    """The honest POST (notes:write) reaches the update handler; DELETE needs notes:admin."""
    k = stack.key
    expect_handler(
        stack,
        post(b"/notes/1", k("writer"), body=b"title=x"),
        "note.update",
        {"id": "1"} if "django" in stack.name else {"id": "1", "title": "x"},
        who="writer",
        method="POST",
    )
    expect_refused(
        stack, request(b"/notes/1", k("writer"), method=b"DELETE"), 403, "insufficient_scope"
    )


# --- 1. the form gate is skipped when the Content-Type does not parse strictly -------------------


def _headers_for(content_types: list[bytes], body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"Content-Type", c) for c in content_types] + [
        (b"Content-Length", str(len(body)).encode())
    ]


MALFORMED_TYPES: dict[str, tuple[list[bytes], bytes]] = {
    # python-multipart (Starlette), werkzeug and Django parse these as forms, and so do the
    # method overrides in tests/router_apps.py
    "trailing-semicolon": ([FORM + b";"], b"title=x&_method=DELETE"),
    "charset-then-semicolon": ([FORM + b"; charset=utf-8;"], b"_method=DELETE"),
    "repeated": ([FORM, FORM], b"_method=DELETE"),  # request.headers[...] is the first one
    "repeated-differently": ([FORM, b"text/plain"], b"_method=DELETE"),
    "two-boundaries": (
        [MULTIPART + b"; boundary=" + BOUNDARY],
        multipart((b'name="_method"', b"DELETE")),
    ),
    "multipart-trailing-semicolon": (
        [b'multipart/form-data; boundary="' + BOUNDARY + b'";'],
        multipart((b'name="_method"', b"DELETE")),
    ),
}


@each_stack(EMBEDDED)
@pytest.mark.parametrize(
    ("content_types", "body"), list(MALFORMED_TYPES.values()), ids=list(MALFORMED_TYPES)
)
def test_form_gate_runs_whatever_the_content_type_looks_like(
    stack: ReviewStack, content_types: list[bytes], body: bytes
) -> None:
    """``is_form`` swallows the AuthError that ``content_type`` raises for a type that does not
    parse strictly, so the middleware neither reads nor checks the body; ``Guard.decide`` checks
    form bodies only when one was handed to it. The gateway refuses these types (400); under
    the middleware a ``notes:write`` key ran the ``notes:admin`` DELETE handler."""
    _override_twins(stack)
    data = request(
        b"/notes/1",
        stack.key("writer"),
        *_headers_for(content_types, body),
        method=b"POST",
        body=body,
    )
    expect_refused(stack, data, 400)


# --- 2. parameter names in a declared charset ----------------------------------------------------

UTF16_NAME = b"".join(b"%%%02X" % b for b in "_method".encode("utf-16le"))

CHARSET_PARTS: dict[str, bytes] = {
    "rfc2231-utf-7": b"name*=utf-7''+AF8-method",
    "rfc2231-utf-16le": b"name*=utf-16le''" + UTF16_NAME,
    "rfc2231-utf-7-quoted": b"name*=\"utf-7''+AF8-method\"",
}


@each_stack([*EMBEDDED, "embedded-django", "gateway-django"])
@pytest.mark.parametrize("params", list(CHARSET_PARTS.values()), ids=list(CHARSET_PARTS))
def test_multipart_field_name_in_a_declared_charset(stack: ReviewStack, params: bytes) -> None:
    """The gate reads an RFC 2231 ``name*`` value as Latin-1 whatever charset it names; the
    email parser (``collapse_rfc2231_value``) and Django (``parse_header_parameters``) decode it
    in that charset, so ``utf-7''+AF8-method`` is ``_method`` to them."""
    _override_twins(stack)
    twin = multipart((b"name*=utf-8''title", b"x"))  # an RFC 2231 name that is not _method
    expect_handler(
        stack,
        post(b"/notes/1", stack.key("writer"), body=twin, content_type=MULTIPART),
        "note.update",
        {"id": "1"} if "django" in stack.name else {"id": "1", "title": "x"},
        who="writer",
    )
    body = multipart((params, b"DELETE"))
    expect_refused(
        stack, post(b"/notes/1", stack.key("writer"), body=body, content_type=MULTIPART), 400
    )


CHARSET_QUERIES: dict[str, tuple[bytes, bytes]] = {
    "utf-7": (b"utf-7", b"%2BAF8-method=DELETE"),
    # odd length: Django's bytes.decode("utf-16le") fails, it falls back to Latin-1 and then
    # percent-decodes the names in utf-16le
    "utf-16le": (b"utf-16le", UTF16_NAME + b"=DELETE&x"),
}


@each_stack(["gateway-django"])
@pytest.mark.parametrize(
    ("charset", "query"), list(CHARSET_QUERIES.values()), ids=list(CHARSET_QUERIES)
)
def test_query_parameter_name_in_the_request_charset(
    stack: ReviewStack, charset: bytes, query: bytes
) -> None:
    """Django's WSGI ``request.GET`` decodes the query string in the Content-Type's charset
    (any Python codec); ``check_query`` reads names as Latin-1 only. A body-less POST with
    ``Content-Type: text/plain; charset=utf-7`` and ``?%2BAF8-method=DELETE`` ran DELETE."""
    _override_twins(stack)
    # Twin: an ASCII-compatible charset passes; one that is not is refused outright (400),
    # whatever the query holds, since the upstream would decode the whole query in it.
    twin = post(
        b"/notes/1?%2BAF8-title=x", stack.key("writer"), content_type=b"text/plain; charset=utf-8"
    )
    expect_handler(stack, twin, "note.update", {"id": "1"}, who="writer", method="POST")
    ctype = b"text/plain; charset=" + charset
    data = post(b"/notes/1?" + query, stack.key("writer"), content_type=ctype)
    expect_refused(stack, data, 400)
    benign = post(b"/notes/1?%2BAF8-title=x", stack.key("writer"), content_type=ctype)
    expect_refused(stack, benign, 400)


# --- 3. multipart part-header line ends ----------------------------------------------------------


def _raw_part(block: bytes, value: bytes) -> bytes:
    return (
        b"--" + BOUNDARY + b"\r\n" + block + b"\r\n\r\n" + value + b"\r\n--" + BOUNDARY + b"--\r\n"
    )


LINE_END_BLOCKS: dict[str, bytes] = {
    "lf-lf": b'Content-Disposition: form-data; name="title"\n\nx; name="_method"',
    "lf-lf-bare": b'Content-Disposition: form-data; name="title"\n\n; name="_method"',
    "cr-cr": b'Content-Disposition: form-data; name="title"\r\r; name="_method"',
    "bare-cr": b'Content-Disposition: form-data; name="title"\r; name="_method"',
    "bare-lf": b'Content-Disposition: form-data; name="title"\n; name="_method"',
}


@each_stack(["embedded-django", "gateway-django"])
@pytest.mark.parametrize("block", list(LINE_END_BLOCKS.values()), ids=list(LINE_END_BLOCKS))
def test_multipart_parameter_after_a_bare_line_end(stack: ReviewStack, block: bytes) -> None:
    """The gate ends a part's header block at ``\\n\\n`` and splits its lines on bare CR and LF;
    Django ends it at CRLFCRLF only and splits lines on CRLF only, so everything up to the CRLF
    is one Content-Disposition line whose last ``name`` parameter is ``_method``."""
    _override_twins(stack)
    ok = b'Content-Disposition: form-data; name="title"'
    expect_handler(
        stack,
        post(b"/notes/1", stack.key("writer"), body=_raw_part(ok, b"x"), content_type=MULTIPART),
        "note.update",
        {"id": "1"},
        who="writer",
    )
    data = post(
        b"/notes/1", stack.key("writer"), body=_raw_part(block, b"DELETE"), content_type=MULTIPART
    )
    expect_refused(stack, data, 400)


# --- 5. Unicode case folding vs the ASCII-only ambiguity check -----------------------------------

UNICODE_CASE = {
    "long-s": b"/docs/%C5%BFecret",  # U+017F, folds to "s"
    "kelvin": b"/docs/%E2%84%AAeys",  # U+212A, lower() is "k"
    "dotless-i": b"/docs/%C4%B1nternal",  # U+0131, Python's re folds it with "i"
    "long-s-in-keys": b"/docs/key%C5%BF",
}


@each_stack(["embedded-django", "gateway-django"])
@pytest.mark.parametrize("target", list(UNICODE_CASE.values()), ids=list(UNICODE_CASE))
def test_unicode_case_variant_of_an_earlier_route(stack: ReviewStack, target: bytes) -> None:
    """``/docs/secret`` (docs:admin) comes before the public ``/docs/{page}``. ``fold_path``
    lower-cases the percent-encoded path (ASCII only), so ``/docs/%C5%BFecret`` is judged a
    public page; Django's ``(?i)`` route (Python ``re.IGNORECASE`` on str) matches ``\u017fecret``
    and ran the secret page anonymously. The ASCII spelling is refused (the twin)."""
    expect_handler(
        stack, request(b"/docs/secret", stack.key("librarian")), "docs.secret", {}, who="librarian"
    )
    expect_handler(stack, request(b"/docs/intro"), "docs.page", {"page": "intro"})
    expect_handler(stack, request(b"/docs/%C3%A9t%C3%A9"), "docs.page", {"page": "été"})
    expect_refused(stack, request(b"/docs/SECRET"), 400)
    expect_refused(stack, request(b"/docs/Keys"), 400)
    expect_refused(stack, request(target), 400)


# --- 10. percent-encoded reserved characters vs route literals ----------------------------------

RESERVED_ENCODINGS = {
    "colon": (b"/v1/notes%3Apurge", "writer", "purge"),
    "colon-lower-hex": (b"/v1/notes%3apurge", "writer", "purge"),
    "at": (b"/users/%40me", None, "me"),
}


@each_stack(["embedded-django", "gateway-django"])
@pytest.mark.parametrize(
    ("target", "role", "handler"), list(RESERVED_ENCODINGS.values()), ids=list(RESERVED_ENCODINGS)
)
def test_percent_encoded_reserved_character_in_a_route_literal(
    stack: ReviewStack, target: bytes, role: str | None, handler: str
) -> None:
    """The normaliser decodes unreserved characters only and keeps ``%3A``/``%40``; a route
    literal holds the character itself (``/v1/notes:purge``, ``/users/@me``), so the encoded
    spelling never matches it and falls to the next route (``/v1/{collection}``,
    ``/users/{name}``). Every router decodes the path first: a notes:write key ran the
    notes:admin purge, an anonymous client ran ``/users/@me``."""
    k = stack.key
    # twins: the literal spelling needs its own scope; the next route reaches its handler
    expect_refused(stack, post(b"/v1/notes:purge", k("writer")), 403, "insufficient_scope")
    expect_handler(stack, post(b"/v1/notes:purge", k("admin")), "purge", {}, who="admin")
    expect_handler(
        stack, post(b"/v1/notes", k("writer")), "create", {"collection": "notes"}, who="writer"
    )
    expect_refused(stack, request(b"/users/@me"), 401, "unauthorized")
    expect_handler(stack, request(b"/users/@me", k("reader")), "me", {}, who="reader")
    expect_handler(stack, request(b"/users/alice"), "profile", {"name": "alice"})
    headers = [k(role)] if role else []
    data = post(target, *headers) if handler == "purge" else request(target, *headers)
    stack.recorder.clear()
    response = send_raw(stack.port, data)
    time.sleep(0.01)
    assert stack.recorder.ran() == [], f"{handler} ran ({response.status})"
    assert response.status in (400, 401, 403), (response.status, response.body[:200])


# --- 8. redaction of a refused request's raw path -------------------------------------------------


def _encoded_prefix_spellings(key: str) -> list[bytes]:
    raw = key.encode()
    rest = raw[len(b"rg_ak_") :]
    return [
        b"%72g_ak_" + rest,
        b"r%67_ak_" + rest,
        b"rg_%61k_" + rest,
        b"rg%5F%61k%5F" + rest,
        b"%72%67%5f%61%6b%5f" + rest,
    ]


@each_stack(["embedded-starlette", "gateway-django"])
def test_refused_path_with_a_percent_encoded_prefix_is_redacted(stack: ReviewStack) -> None:
    """A path refused before the view (``;``) is logged raw; ``redact`` looks for ``rg`` + ``_``
    (or ``%5F``) only, so a key whose prefix has any other percent-encoded letter is logged
    whole. CONTRACT: no log ever holds a credential, one sent in a URL included."""
    _, leaked = generate_key()
    secret = leaked.split("_", 3)[3]
    twin = request(b"/notes/" + leaked.encode() + b";x", stack.key("reader"))
    expect_refused(stack, twin, 400)
    assert secret not in stack.audit_text()  # the plain spelling is redacted today
    for spelled in _encoded_prefix_spellings(leaked):
        expect_refused(stack, request(b"/notes/" + spelled + b";x", stack.key("reader")), 400)
    text = stack.audit_text()
    assert "/notes/" in text  # the refusals were logged ...
    assert secret not in text  # ... without the key


# --- 9. form bodies are buffered before any decision ---------------------------------------------


@each_stack(["embedded-starlette"])
async def test_form_body_is_not_buffered_before_the_decision(stack: ReviewStack) -> None:
    """An anonymous POST with a form type to a protected route: the middleware reads the whole
    body (up to ``max_body_bytes`` = 10 MiB) before it finds that there is no credential. The
    gateway reads at most 1 MiB of urlencoded body before deciding (spec item 12) and streams
    multipart; an unauthenticated client should not make the app buffer 10 MiB per request."""
    assert stack.runtime is not None
    guard = stack.runtime.guard
    ran: list[bytes] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        ran.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def call(headers: list[tuple[bytes, bytes]], total: int) -> tuple[int, int]:
        pulled = 0
        chunk = b"t" * 65536
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal pulled
            piece = chunk[: max(0, min(len(chunk), total - pulled))]
            pulled += len(piece)
            return {"type": "http.request", "body": piece, "more_body": pulled < total}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/notes/1",
            "raw_path": b"/notes/1",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"app.test"), (b"content-type", FORM), *headers],
            "client": ("192.0.2.30", 4000),
            "server": ("127.0.0.1", 80),
        }
        await GuardMiddleware(app, guard)(scope, receive, send)
        return int(sent[0]["status"]), pulled

    # twin: an allowed form POST reaches the app with its body
    status, _ = await call([api_key(stack.keys["writer"])], 7)
    assert (status, ran) == (200, [b"t" * 7])
    ran.clear()
    status, pulled = await call([], 4 * 1024 * 1024)
    # (nothing in the head is a credential, so the form may carry OAuth 1.0a parameters,
    # RFC 5849 §3.5.2: it is read up to the oauth1 method's 1 MiB, and refused past it)
    assert status == 413
    assert ran == []
    assert pulled <= 1024 * 1024 + 65536, f"{pulled} body bytes read for an anonymous request"


# --- 4. root_path: judged path vs the path Starlette routes -------------------------------------

TENANT_ROUTES = """\
[[routes]]
path = "/{tenant}/admin/**"
methods = ["GET"]
scopes = ["tenant:admin"]

[[routes]]
path = "/{tenant}/docs/**"
methods = ["GET"]
public = true
"""


@dataclass
class Embedded:
    runtime: Runtime
    keys: dict[str, str]
    calls: list[tuple[str, str, str]] = field(default_factory=list)


@pytest.fixture
async def tenants(tmp_path: Path) -> AsyncIterator[Embedded]:
    config = write_data_dir(tmp_path / "data", routes=TENANT_ROUTES)
    _set_lockout(config, LOCKOUT)
    runtime = await open_runtime(load(config))
    try:
        keys = await _insert_keys(runtime, {"owner": ("tenant:admin",)})
        yield Embedded(runtime, keys)
    finally:
        runtime.close()


def tenant_app(env: Embedded) -> Any:
    def handler(name: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            subject = request.scope["restguard.decision"].principal.subject
            env.calls.append((name, str(request.path_params["tenant"]), subject))
            return JSONResponse({"handler": name})

        return endpoint

    app = Starlette(
        routes=[
            Route("/{tenant}/admin/{rest:path}", handler("admin")),
            Route("/{tenant}/docs/{rest:path}", handler("docs")),
        ]
    )
    return GuardMiddleware(app, env.runtime.guard)


@pytest.mark.parametrize("root_path", ["/api", "/docs"])
async def test_root_path_prefix_is_judged_but_not_routed(tenants: Embedded, root_path: str) -> None:
    """A server that sets ``root_path`` without prefixing ``path`` (hypercorn's and daphne's
    ``--root-path``, httpx's ``ASGITransport(root_path=...)``): normal requests are judged and
    routed alike, but a client that adds the root path itself is judged with it (``/api/docs/
    admin/users``: tenant ``api``, public docs) while Starlette's ``get_route_path`` strips it and
    routes ``/docs/admin/users`` (tenant ``docs``, the admin handler), anonymously."""
    transport = httpx.ASGITransport(
        tenant_app(tenants), root_path=root_path, client=("192.0.2.40", 4000)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
        # twins: the public docs, the admin pages with and without the owner's key
        assert (await c.get("/acme/docs/intro")).status_code == 200
        assert (await c.get("/acme/admin/users")).status_code == 401
        owner = {"X-API-Key": tenants.keys["owner"]}
        assert (await c.get("/acme/admin/users", headers=owner)).status_code == 200
        assert tenants.calls == [("docs", "acme", ""), ("admin", "acme", "owner")]
        tenants.calls.clear()
        r = await c.get(root_path + "/docs/admin/users")
    assert tenants.calls == [], "the admin handler ran for a request judged as public docs"
    assert r.status_code in (400, 401), r.text


async def test_root_path_hand_built_hypercorn_scope(tenants: Embedded) -> None:
    """The scope hypercorn builds (``http_stream.py``): ``path`` and ``raw_path`` as sent,
    ``root_path`` from ``--root-path``."""
    app = tenant_app(tenants)

    async def call(target: bytes) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "http_version": "1.1",
            "asgi": {"spec_version": "2.1"},
            "method": "GET",
            "scheme": "http",
            "path": target.decode("ascii"),
            "raw_path": target,
            "query_string": b"",
            "root_path": "/api",
            "headers": [(b"host", b"app.test")],
            "client": ("192.0.2.41", 4000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)
        return int(sent[0]["status"])

    assert await call(b"/acme/docs/intro") == 200
    assert await call(b"/acme/admin/users") == 401
    tenants.calls.clear()
    status = await call(b"/api/docs/admin/users")
    assert tenants.calls == [] and status in (400, 401), (status, tenants.calls)


# --- 6. the failed-attempt lockout when the server knows no client address ----------------------


class UnixUvicorn:
    """``app`` under a real uvicorn on a Unix socket (``uvicorn --uds``, the usual set-up behind
    nginx): ASGI ``client`` is None."""

    def __init__(self, app: Any, path: Path) -> None:
        self.path = str(path)
        config = uvicorn.Config(
            app,
            uds=self.path,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()), daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline and self._thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)

    def send(self, data: bytes) -> Response:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.path)
            s.sendall(data)
            buf = b""
            while True:
                parsed = _parse_one(buf, False)
                if parsed is not None:
                    return parsed[0]
                chunk = s.recv(65536)
                assert chunk, "connection closed before a response"
                buf += chunk

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def test_lockout_is_not_shared_by_clients_the_server_cannot_tell_apart(tmp_path: Path) -> None:
    """Over a Unix socket ``scope["client"]`` is None, so ``view.client`` is "" for everyone and
    the lockout bucket ``fail:`` is shared: a stranger's five garbage keys (each a 401 since
    issue 5) lock out every valid key, whatever X-Forwarded-For the front proxy sets (there is no
    way to trust a Unix-socket peer). CONTRACT: nothing a stranger does may refuse a
    credential's valid use from another address."""
    config = write_data_dir(tmp_path / "data", routes=ROUTES)
    _set_lockout(config, '"5/minute"')
    runtime = asyncio.run(open_runtime(load(config)))
    ran: list[str] = []

    async def note(request: Request) -> JSONResponse:
        ran.append(request.scope["restguard.decision"].principal.subject)
        return JSONResponse({})

    guarded = GuardMiddleware(
        Starlette(routes=[Route("/notes/{id}", note)]),
        runtime.guard,
        trusted_proxies=[ipaddress.ip_network("127.0.0.0/8")],
    )
    server = UnixUvicorn(guarded, tmp_path / "app.sock")
    try:
        key = asyncio.run(_insert_keys(runtime, {"victim": ("notes:read",)}))["victim"]
        victim = (b"X-Forwarded-For", b"203.0.113.9")
        # twin: the victim's key works, and the stranger's garbage ends in 429 (spec item 8)
        assert server.send(request(b"/notes/1", api_key(key), victim)).status == 200
        _, garbage = generate_key()
        statuses = [
            server.send(
                request(b"/notes/1", api_key(garbage), (b"X-Forwarded-For", b"198.51.100.7"))
            ).status
            for _ in range(6)
        ]
        assert statuses == [401] * 5 + [429]
        r = server.send(request(b"/notes/1", api_key(key), victim))
        assert r.status == 200, (r.status, r.body)
        assert ran == ["victim", "victim"]
    finally:
        server.stop()
        runtime.close()


# --- 7. restguard.fastapi without the middleware: default deny -----------------------------------


async def _lifespan_startup(app: Any) -> bool:
    """Run the app's lifespan start-up; True when it completed, False when it failed."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put)
    )
    try:
        message = await asyncio.wait_for(outbox.get(), 5)
    except Exception:
        return False
    if message["type"] != "lifespan.startup.complete":
        return False
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(outbox.get(), 5)
    await asyncio.wait_for(task, 5)
    return True


async def test_dependency_mode_form_endpoint(tmp_path: Path) -> None:
    """With ``install`` and no middleware, FastAPI parses a ``Form()`` body (``request.form()``
    consumes the stream without caching it) before it solves dependencies; ``require_scopes``
    then calls ``request.body()`` for the ``_method`` check: ``RuntimeError: Stream consumed``,
    a 500 with a traceback for every form request, valid ones included. (Needs python-multipart,
    which every ``Form()`` endpoint needs; skipped without it.)"""
    pytest.importorskip("python_multipart")
    from fastapi import Form

    config = write_data_dir(tmp_path / "data", routes=ROUTES)
    runtime = await open_runtime(load(config))
    try:
        keys = await _insert_keys(runtime, {"writer": ("notes:read", "notes:write")})

        def build(middleware: bool) -> FastAPI:
            app = FastAPI()
            install(app, runtime.guard)

            @app.post("/notes/{note_id}")
            async def update(
                note_id: str,
                title: str = Form(),
                who: Principal = Depends(require_scopes("notes:write")),
            ) -> dict[str, str]:
                return {"title": title, "who": who.subject}

            if middleware:
                app.add_middleware(GuardMiddleware, guard=runtime.guard)
            return app

        writer = {"X-API-Key": keys["writer"]}
        for middleware in (True, False):  # the twin first: under the middleware it works
            transport = httpx.ASGITransport(build(middleware), raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
                r = await c.post("/notes/1", data={"title": "hello"}, headers=writer)
                refused = await c.post("/notes/1", data={"_method": "DELETE"}, headers=writer)
            where = "middleware" if middleware else "dependency"
            assert (r.status_code, r.text) == (200, '{"title":"hello","who":"writer"}'), where
            assert refused.status_code == 400, (where, refused.status_code)
    finally:
        runtime.close()
