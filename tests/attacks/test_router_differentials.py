"""Router differentials: the handler that runs is the one the policy judged (issue 5, findings 9
and 10; spec items 12 and 14).

Real routers run behind the real gateway (Starlette and FastAPI under uvicorn, Flask and Django
under wsgiref) and, separately, under ``GuardMiddleware`` (Starlette and FastAPI under a real
uvicorn, so raw request bytes reach them) and behind ``restguard.fastapi``'s dependency. Every app
(``tests/router_apps.py``) has ``{x:path}`` converter routes, a mounted metrics app, lenient
routes where the framework offers them, and the method-override middleware users deploy; each
handler records that it ran, with what, and which identity headers it saw.

For each tricky request the test asserts which handler ran (none for a refusal, and for the
gateway: nothing reached the upstream) and the status the spec gives the client; every attack
has a valid twin that reaches the intended handler.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from restguard.cli.init import write_data_dir
from restguard.config import ConfigError, load
from restguard.credentials.apikey import new_record
from restguard.wiring import Runtime, open_runtime
from tests.attacks.wire import Response, api_key, assert_json_error, chunked, request, send
from tests.harness import GatewayProcess
from tests.router_apps import (
    Call,
    Recorder,
    django_app,
    fastapi_app,
    fastapi_dependency_app,
    flask_app,
    starlette_app,
)
from tests.stock_upstreams import UvicornUpstream, WsgiRefUpstream

# Each differential matters under this policy: a public single-segment route before a scoped
# subtree, a public subtree, a scoped mount, a literal route scoped higher than the parameter
# route after it, DELETE scoped higher than POST, and a scoped page before a public HEAD+GET tree.
ROUTES = """\
[[routes]]
path = "/public/**"
methods = ["GET", "POST"]
public = true

[[routes]]
path = "/files/{name}"
methods = ["GET"]
public = true

[[routes]]
path = "/files/**"
methods = ["GET"]
scopes = ["files:read"]

[[routes]]
path = "/metrics/**"
methods = ["GET"]
scopes = ["ops:read"]

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
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]

[[routes]]
path = "/docs/secret"
methods = ["GET"]
scopes = ["docs:admin"]

[[routes]]
path = "/docs/**"
methods = ["GET", "HEAD"]
public = true
"""

ROLES: dict[str, tuple[str, ...]] = {
    "reader": ("notes:read",),
    "writer": ("notes:read", "notes:write"),
    "admin": ("notes:read", "notes:write", "notes:admin"),
    "filer": ("files:read",),
    "ops": ("ops:read",),
    "librarian": ("docs:admin",),
}
LOCKOUT = '"10000/minute"'  # 401s are part of these tests; the lockout is tested elsewhere

GATEWAY = ["gateway-starlette", "gateway-fastapi", "gateway-flask", "gateway-django"]
EMBEDDED = ["embedded-starlette", "embedded-fastapi"]
ALL = GATEWAY + EMBEDDED
BOUNDARY = b"rg-boundary-7d3f"
FORM = b"application/x-www-form-urlencoded"


@dataclass
class Stack:
    """One app, reached either through the gateway or directly (embedded)."""

    name: str
    embedded: bool
    port: int
    recorder: Recorder
    keys: dict[str, str]
    runtime: Runtime | None = None

    def key(self, role: str) -> tuple[bytes, bytes]:
        return api_key(self.keys[role])


class Stacks:
    """Starts each stack on first use, once per module."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: dict[str, Stack] = {}
        self.closers: list[Callable[[], None]] = []

    def get(self, name: str) -> Stack:
        if name not in self.started:
            self.started[name] = self._start(name)
        return self.started[name]

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()

    def _start(self, name: str) -> Stack:
        kind, framework = name.split("-")
        recorder = Recorder(name)
        if kind == "gateway":
            upstream: Any
            if framework == "starlette":
                upstream = UvicornUpstream(starlette_app(recorder))
            elif framework == "fastapi":
                upstream = UvicornUpstream(fastapi_app(recorder))
            elif framework == "flask":
                upstream = WsgiRefUpstream(flask_app(recorder))
            else:
                upstream = WsgiRefUpstream(django_app(recorder))
            self.closers.append(upstream.stop)
            gw = GatewayProcess(
                self.tmp / name, upstream, routes=ROUTES, extra={"failed_attempts": LOCKOUT}
            ).start()
            self.closers.append(gw.stop)
            keys = {role: gw.issue_key(*scopes, name=role)[1] for role, scopes in ROLES.items()}
            return Stack(name, False, gw.port, recorder, keys)
        config = write_data_dir(self.tmp / name, routes=ROUTES)
        config.write_text(
            config.read_text().replace(
                'failed_attempts = "30/minute"', f"failed_attempts = {LOCKOUT}"
            )
        )
        runtime = asyncio.run(open_runtime(load(config)))
        self.closers.append(runtime.close)
        keys = asyncio.run(_insert_keys(runtime))
        if kind == "dependency":
            app = fastapi_dependency_app(recorder, runtime.guard)
        elif framework == "starlette":
            app = starlette_app(recorder, guard=runtime.guard)
        else:
            app = fastapi_app(recorder, guard=runtime.guard)
        server = UvicornUpstream(app)
        self.closers.append(server.stop)
        return Stack(name, True, server.port, recorder, keys, runtime)


async def _insert_keys(runtime: Runtime) -> dict[str, str]:
    keys = {}
    for role, scopes in ROLES.items():
        record, key = new_record(role, scopes, datetime.now(UTC), None)
        await runtime.store.api_keys.insert(record)
        keys[role] = key
    return keys


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stacks]:
    pool = Stacks(tmp_path_factory.mktemp("router-differentials"))
    yield pool
    pool.close()


@pytest.fixture
def stack(request: pytest.FixtureRequest, stacks: Stacks) -> Stack:
    s = stacks.get(request.param)
    s.recorder.clear()
    return s


# --- requests and expectations ------------------------------------------------------------------


def post(
    target: bytes,
    *headers: tuple[bytes, bytes],
    body: bytes = b"",
    content_type: bytes | None = FORM,
    method: bytes = b"POST",
) -> bytes:
    """A request with a Content-Length body (``content_type=None``: no Content-Type)."""
    extra = [(b"Content-Length", str(len(body)).encode())]
    if content_type is not None:
        extra.insert(0, (b"Content-Type", content_type))
    return request(target, *headers, *extra, method=method, body=body)


def post_chunked(
    target: bytes, *headers: tuple[bytes, bytes], body: bytes, content_type: bytes = FORM
) -> bytes:
    return request(
        target,
        *headers,
        (b"Content-Type", content_type),
        (b"Transfer-Encoding", b"chunked"),
        method=b"POST",
        body=chunked(body, 7),
    )


def multipart(*parts: tuple[bytes, bytes]) -> bytes:
    """A multipart/form-data body; each part is (Content-Disposition parameters, value), or
    (its whole header block, value) when that contains a ':'; a part whose parameters name a
    filename is sent as application/octet-stream."""
    out = b""
    for params, value in parts:
        if b":" in params:
            out += b"--" + BOUNDARY + b"\r\n" + params + b"\r\n"
        else:
            out += b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; " + params + b"\r\n"
            if b"filename=" in params:
                out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + value + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


MULTIPART = b"multipart/form-data; boundary=" + BOUNDARY


def _where(stack: Stack, data: bytes) -> str:
    line = data.split(b"\r\n", 1)[0]
    return f"{stack.name}: {line!r}"


def _exchange(stack: Stack, data: bytes, head: bool) -> Response:
    stack.recorder.clear()
    return send(stack.port, data, head=head)


def expect_refused(
    stack: Stack,
    data: bytes,
    status: int,
    error: str = "invalid_request",
    *,
    head: bool = False,
    may_arrive: bool = False,
    settle: float = 0.01,
) -> Response:
    """``data`` gets ``status`` with the contract's JSON error and no handler runs; through the
    gateway nothing reaches the upstream at all (``may_arrive``: a request the gateway had to
    start forwarding before it could find the reason to refuse it)."""
    response = _exchange(stack, data, head)
    where = _where(stack, data)
    if head:
        assert response.status == status, (where, response.status)
        assert response.header("content-type") == "application/json", where
    else:
        assert response.status == status, (where, response.status, response.body[:300])
        assert_json_error(response, status, error)
    time.sleep(settle)  # anything wrongly forwarded or run would have shown by now
    assert stack.recorder.calls == [], (where, stack.recorder.calls)
    if not stack.embedded and not may_arrive:
        assert stack.recorder.arrivals == [], (where, stack.recorder.arrivals)
    return response


def expect_handler(
    stack: Stack,
    data: bytes,
    handler: str,
    args: dict[str, str],
    *,
    who: str | None = None,
    method: str | None = None,
    head: bool = False,
) -> Call:
    """``data`` succeeds and exactly ``handler`` ran, with ``args``, as ``who`` (a key's name;
    None: anonymous), seeing restguard's identity headers only (none in embedded mode)."""
    response = _exchange(stack, data, head)
    where = _where(stack, data)
    assert response.status == 200, (where, response.status, response.body[:300])
    calls = stack.recorder.calls
    assert [c.handler for c in calls] == [handler], (where, calls)
    call = calls[0]
    assert call.args == args, (where, call)
    if method is not None:
        assert call.method == method, (where, call)
    if stack.embedded:
        assert call.identity == {}, (where, call)
        assert call.principal == (who or ""), (where, call)
    elif who is None:
        assert call.identity == {}, (where, call)
    else:
        assert set(call.identity) == {
            "x-restguard-subject",
            "x-restguard-client-id",
            "x-restguard-scopes",
            "x-restguard-auth-method",
            "x-restguard-identity",
        }, (where, call)
        assert call.identity["x-restguard-subject"] == who, (where, call)
        assert call.identity["x-restguard-scopes"] == " ".join(sorted(ROLES[who])), (where, call)
        assert call.identity["x-restguard-auth-method"] == "api_key", (where, call)
    return call


def each_stack(names: list[str]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("stack", names, indirect=True)


# --- valid twins: every route reaches its handler -----------------------------------------------


@each_stack(ALL)
def test_routes_reach_their_handlers(stack: Stack) -> None:
    k = stack.key
    expect_handler(stack, request(b"/public/x"), "public", {"rest": "x"})
    expect_handler(stack, request(b"/files/report"), "files", {"name": "report"})
    expect_refused(stack, request(b"/files/a/b"), 401, "unauthorized")
    expect_handler(stack, request(b"/files/a/b", k("filer")), "files", {"name": "a/b"}, who="filer")
    expect_refused(stack, request(b"/metrics/cpu"), 401, "unauthorized")
    expect_handler(stack, request(b"/metrics/cpu", k("ops")), "metrics", {"rest": "cpu"}, who="ops")
    expect_refused(stack, request(b"/notes/export", k("reader")), 403, "insufficient_scope")
    expect_handler(stack, request(b"/notes/export", k("admin")), "export", {}, who="admin")
    expect_handler(stack, request(b"/notes/7", k("reader")), "note.read", {"id": "7"}, who="reader")
    expect_refused(stack, request(b"/docs/secret"), 401, "unauthorized")
    expect_handler(
        stack, request(b"/docs/secret", k("librarian")), "docs.secret", {}, who="librarian"
    )
    expect_handler(stack, request(b"/docs/intro"), "docs.page", {"page": "intro"})
    expect_refused(
        stack, request(b"/notes/7", k("writer"), method=b"DELETE"), 403, "insufficient_scope"
    )
    expect_handler(
        stack,
        request(b"/notes/7", k("admin"), method=b"DELETE"),
        "note.delete",
        {"id": "7"},
        who="admin",
        method="DELETE",
    )


@each_stack(ALL)
def test_form_bodies_reach_the_handler(stack: Stack) -> None:
    """Form bodies (read by the gateway or the middleware before the decision) arrive intact."""
    k = stack.key
    expect_handler(
        stack,
        post(b"/notes/7", k("writer"), body=b"title=hello+world"),
        "note.update",
        {"id": "7", "title": "hello world"},
        who="writer",
        method="POST",
    )
    expect_handler(
        stack,
        post(b"/notes/7", k("writer"), body=b"title=x", content_type=FORM + b"; charset=UTF-8"),
        "note.update",
        {"id": "7", "title": "x"},
        who="writer",
    )
    body = multipart((b'name="title"', b"hello"), (b'name="file"; filename="a.bin"', b"\0" * 300))
    expect_handler(
        stack,
        post(b"/notes/7", k("writer"), body=body, content_type=MULTIPART),
        "note.update",
        {"id": "7", "title": "hello", "file": "<file 300 bytes>"},
        who="writer",
    )
    expect_handler(
        stack,
        post(b"/notes/7", k("writer"), body=b"title=new", method=b"PUT"),
        "note.replace",
        {"id": "7", "title": "new"},
        who="writer",
        method="PUT",
    )


# --- dot segments (finding 9, spec item 14) -----------------------------------------------------

# (raw target, what the gateway does: (handler, its arguments, the resolved target it forwards)
# or the refusal status)
RAW_DOTS: list[tuple[bytes, tuple[str, dict[str, str], str] | int]] = [
    (b"/files/../public/x", ("public", {"rest": "x"}, "/public/x")),
    (b"/metrics/../public/x", ("public", {"rest": "x"}, "/public/x")),
    (b"/files/secret/../../public/x", ("public", {"rest": "x"}, "/public/x")),
    (b"/files/./report", ("files", {"name": "report"}, "/files/report")),
    (b"/public/../metrics/x", 401),
    (b"/public/../files/a/b", 401),
    (b"/docs/../docs/secret", 401),
    (b"/public/./../notes/export", 401),
]


@each_stack(ALL)
@pytest.mark.parametrize(("target", "at_gateway"), RAW_DOTS, ids=[t.decode() for t, _ in RAW_DOTS])
def test_raw_dot_segments(
    stack: Stack, target: bytes, at_gateway: tuple[str, dict[str, str], str] | int
) -> None:
    """The gateway resolves dot segments and forwards the resolved path, so the upstream routes
    what was judged. Embedded, the app routes the path as sent (Starlette ran
    ``/files/{name:path}`` with ``name="../public/x"`` and the mounted metrics app for
    ``/metrics/../public/x``, anonymously): refused, 400."""
    # the twin: the same anonymous client on the public path itself
    expect_handler(stack, request(b"/public/x"), "public", {"rest": "x"})
    if stack.embedded:
        expect_refused(stack, request(target), 400)
    elif isinstance(at_gateway, int):
        expect_refused(stack, request(target), at_gateway, "unauthorized")
    else:
        handler, args, forwarded = at_gateway
        expect_handler(stack, request(target), handler, args)
        assert stack.recorder.arrivals == [("GET", forwarded)]


ENCODED_DOTS = [
    b"/files/%2e%2e/public/x",
    b"/files/%2E%2E/public/x",
    b"/files/.%2e/public/x",
    b"/metrics/%2e%2e/public/x",
    b"/public/%2e%2e/metrics/x",
    b"/files/%2e/report",
    b"/files/a%2Fb",  # one segment for the policy's /files/{name}, two for the app
    b"/files/a%2fsecret",
]


@each_stack(ALL)
@pytest.mark.parametrize("target", ENCODED_DOTS, ids=[t.decode() for t in ENCODED_DOTS])
def test_encoded_dot_segments_and_slashes(stack: Stack, target: bytes) -> None:
    # twin: an encoded unreserved character is just that character, for the guard and the app
    expect_handler(stack, request(b"/files/%72eport"), "files", {"name": "report"})
    expect_refused(stack, request(target), 400)


# --- _method in the query and in form bodies (finding 10, spec items 12 and 14) -----------------

QUERY_OVERRIDES = [
    b"?_method=DELETE",
    b"?_method=delete",
    b"?%5Fmethod=DELETE",
    b"?%5fmethod=DELETE",
    b"?_METHOD=DELETE",
    b"?_Method=PUT",
    b"?title=x&_method=DELETE",
    b"?_method",
]


@each_stack(ALL)
@pytest.mark.parametrize("query", QUERY_OVERRIDES, ids=[q.decode() for q in QUERY_OVERRIDES])
def test_method_override_in_query(stack: Stack, query: bytes) -> None:
    """``POST /notes/1?_method=DELETE`` with a key that may POST but not DELETE ran the DELETE
    handler (Express's method-override, Laravel, Symfony, and every middleware here)."""
    k = stack.key
    # twins: the parameter as a value, the honest POST, the honest DELETE
    expect_handler(
        stack,
        post(b"/notes/1?title=_method", k("writer"), body=b"title=x"),
        "note.update",
        {"id": "1", "title": "x"},
        who="writer",
        method="POST",
    )
    expect_handler(
        stack,
        request(b"/notes/1", k("admin"), method=b"DELETE"),
        "note.delete",
        {"id": "1"},
        who="admin",
        method="DELETE",
    )
    expect_refused(stack, post(b"/notes/1" + query, k("writer"), body=b"title=x"), 400)
    expect_refused(stack, post(b"/notes/1" + query, k("admin"), body=b"title=x"), 400)


@each_stack(ALL)
def test_method_override_in_query_other_routes(stack: Stack) -> None:
    """On a GET and on a public route too: the parameter is refused wherever it appears."""
    expect_handler(stack, post(b"/public/x?a=b", body=b"a=b"), "public", {"rest": "x"})
    expect_refused(stack, request(b"/notes/1?_method=DELETE", stack.key("reader")), 400)
    expect_refused(stack, post(b"/public/x?_method=DELETE", body=b"a=b"), 400)


FORM_OVERRIDES = [
    (FORM, b"_method=DELETE"),
    (FORM, b"title=x&_method=DELETE"),
    (FORM, b"_method=DELETE&title=x"),
    (FORM, b"%5Fmethod=DELETE"),
    (FORM, b"_METHOD=DELETE"),
    (FORM, b"title=x&_method=PUT"),
    (FORM + b"; charset=UTF-8", b"_method=DELETE"),
    (b"Application/X-WWW-Form-URLEncoded", b"_method=DELETE"),
    (b"application/x-www-form-urlencoded ; charset=utf-8", b"title=x&_method=DELETE"),
]


@each_stack(ALL)
@pytest.mark.parametrize(
    ("content_type", "body"),
    FORM_OVERRIDES,
    ids=[f"{c.decode()}|{b.decode()}" for c, b in FORM_OVERRIDES],
)
def test_method_override_in_urlencoded_body(stack: Stack, content_type: bytes, body: bytes) -> None:
    """The Django and Flask middlewares read ``_method`` from the form body."""
    k = stack.key
    expect_handler(
        stack,
        post(b"/notes/1", k("writer"), body=b"title=_method", content_type=content_type),
        "note.update",
        {"id": "1", "title": "_method"},
        who="writer",
        method="POST",
    )
    data = post(b"/notes/1", k("writer"), body=body, content_type=content_type)
    expect_refused(stack, data, 400)


@each_stack(ALL)
def test_method_override_in_chunked_urlencoded_body(stack: Stack) -> None:
    k = stack.key
    expect_refused(
        stack, post_chunked(b"/notes/1", k("writer"), body=b"title=x&_method=DELETE"), 400
    )
    expect_refused(stack, post_chunked(b"/public/x", body=b"_method=DELETE"), 400)


@each_stack(["gateway-starlette", "gateway-fastapi", *EMBEDDED])
def test_chunked_urlencoded_body_reaches_the_handler(stack: Stack) -> None:
    """The twin (wsgiref cannot read chunked request bodies, so only the uvicorn apps)."""
    expect_handler(
        stack,
        post_chunked(b"/notes/1", stack.key("writer"), body=b"title=chunked+body&x=y"),
        "note.update",
        {"id": "1", "title": "chunked body"},
        who="writer",
    )


# Each honoured by at least one of werkzeug, Django or the email-based ASGI parser, except where
# noted (refused anyway: a part named _method is refused whatever its form).
MULTIPART_OVERRIDES: dict[str, list[tuple[bytes, bytes]]] = {
    "plain": [(b'name="_method"', b"DELETE")],
    "after-a-field": [(b'name="title"', b"x"), (b'name="_method"', b"DELETE")],
    "unquoted": [(b"name=_method", b"DELETE")],
    "upper-value": [(b'name="_METHOD"', b"DELETE")],  # honoured by none
    "rfc2231": [(b"name*=UTF-8''%5Fmethod", b"DELETE")],
    "rfc2231-continuation": [(b"name*0=_me; name*1=thod", b"DELETE")],
    "after-a-file": [
        (b'name="file"; filename="a.bin"', b"\x00" * 2000),
        (b'name="_method"', b"PUT"),
    ],
    "duplicate-name": [(b'name="title"; name="_method"', b"DELETE")],  # last one wins
    "upper-param": [(b'NAME="_method"', b"DELETE")],
    "spaces": [(b'name = "_method"', b"DELETE")],  # Django
    "escaped": [(b'name="\\_method"', b"DELETE")],  # werkzeug unescapes
    "lower-header": [(b'content-disposition: form-data; name="_method"', b"DELETE")],
    "folded-header": [(b'Content-Disposition: form-data;\r\n name="_method"', b"DELETE")],
    "as-a-file": [(b'name="_method"; filename="m"', b"DELETE")],  # honoured by none
    "rfc2231-encoded-continuation": [(b"name*0*=UTF-8''%5Fme; NAME*1=thod", b"DELETE")],
    "attachment": [(b'Content-Disposition: attachment; name="_method"', b"DELETE")],
    "no-disposition-type": [(b'Content-Disposition: name="_method"', b"DELETE")],
    "tabs": [(b'Content-Disposition:\tform-data;\tname="_method"', b"DELETE")],
    "two-dispositions": [  # Django reads the last one
        (
            b'Content-Disposition: form-data; name="title"\r\n'
            b'Content-Disposition: form-data; name="_method"',
            b"DELETE",
        )
    ],
    "bare-cr-between-headers": [  # werkzeug and email split header lines on a bare CR
        (b'Content-Type: text/plain\rContent-Disposition: form-data; name="_method"', b"DELETE")
    ],
}


@each_stack(ALL)
@pytest.mark.parametrize("parts", list(MULTIPART_OVERRIDES.values()), ids=list(MULTIPART_OVERRIDES))
def test_method_override_in_multipart_part(stack: Stack, parts: list[tuple[bytes, bytes]]) -> None:
    k = stack.key
    twin = multipart((b'name="title"', b"_method"), (b'name="file"; filename="_method"', b"1"))
    expect_handler(
        stack,
        post(b"/notes/1", k("writer"), body=twin, content_type=MULTIPART),
        "note.update",
        {"id": "1", "title": "_method", "file": "<file 1 bytes>"},
        who="writer",
    )
    body = multipart(*parts)
    expect_refused(stack, post(b"/notes/1", k("writer"), body=body, content_type=MULTIPART), 400)
    upper = MULTIPART.replace(b"multipart/form-data", b"Multipart/Form-Data")
    expect_refused(stack, post(b"/notes/1", k("writer"), body=body, content_type=upper), 400)


LARGE = 256 * 1024  # beyond the gateway's body_buffer_bytes (64 KiB): streamed to the upstream


@each_stack(ALL)
def test_method_override_in_multipart_part_after_a_large_file(stack: Stack) -> None:
    """A ``_method`` part the gateway finds only after it started forwarding: the upstream
    connection is cut before that part reaches it, so no handler runs; the client gets 400."""
    k = stack.key
    big = (b'name="file"; filename="big.bin"', b"\x01" * LARGE)
    body = multipart(big, (b'name="_method"', b"DELETE"))
    twin = post(b"/notes/1", k("writer"), body=multipart(big), content_type=MULTIPART)
    expect_handler(
        stack, twin, "note.update", {"id": "1", "file": f"<file {LARGE} bytes>"}, who="writer"
    )
    data = post(b"/notes/1", k("writer"), body=body, content_type=MULTIPART)
    expect_refused(stack, data, 400, may_arrive=True, settle=0.3)


@each_stack(["gateway-starlette"])
def test_large_urlencoded_bodies_stream_and_are_judged_to_their_end(stack: Stack) -> None:
    """Form bodies are judged as they stream (no buffering, no 1 MiB cap): a large field
    passes whole, and a ``_method`` after it is still refused."""
    k = stack.key
    big = b"a" * (2 * 1024 * 1024)
    expect_handler(
        stack,
        post(b"/notes/1", k("writer"), body=b"title=" + big),
        "note.update",
        {"id": "1", "title": big.decode()},
        who="writer",
    )
    late = b"title=" + big + b"&_method=DELETE"
    expect_refused(stack, post(b"/notes/1", k("writer"), body=late), 400, may_arrive=True)


# --- letter case and one trailing slash (finding 10, spec item 12) ------------------------------

CASE_VARIANTS = [
    (b"/notes/EXPORT", "reader"),  # Django's (?i) route ran the export handler for a reader
    (b"/notes/Export", "reader"),
    (b"/notes/eXpOrT", "writer"),
    (b"/docs/SECRET", None),
    (b"/docs/Secret", None),
]


@each_stack(ALL)
@pytest.mark.parametrize(
    ("target", "role"), CASE_VARIANTS, ids=[t.decode() for t, _ in CASE_VARIANTS]
)
def test_case_variant_of_an_earlier_route(stack: Stack, target: bytes, role: str | None) -> None:
    """``/notes/export`` (notes:admin) comes before ``/notes/{id}`` (notes:read): judged as
    ``{id}``, ``/notes/EXPORT`` reached a case-insensitive export route."""
    headers = [stack.key(role)] if role else []
    # twins: the exact path with the right scope; a different word is just an id
    expect_handler(stack, request(b"/notes/export", stack.key("admin")), "export", {}, who="admin")
    expect_handler(
        stack,
        request(b"/notes/EXPORTS", stack.key("reader")),
        "note.read",
        {"id": "EXPORTS"},
        who="reader",
    )
    expect_handler(stack, request(b"/docs/secrets"), "docs.page", {"page": "secrets"})
    expect_refused(stack, request(target, *headers), 400)


SLASH_VARIANTS = [
    (b"/notes/export/", "reader"),  # Flask strict_slashes=False and Django /?$ ran export
    (b"/docs/secret/", None),  # ... and the scoped docs page, anonymously
    (b"/files/report/", None),
    (b"/notes/7/", "reader"),
]


@each_stack(ALL)
@pytest.mark.parametrize(
    ("target", "role"), SLASH_VARIANTS, ids=[t.decode() for t, _ in SLASH_VARIANTS]
)
def test_trailing_slash_variant_of_an_earlier_route(
    stack: Stack, target: bytes, role: str | None
) -> None:
    headers = [stack.key(role)] if role else []
    expect_handler(
        stack, request(b"/docs/secret", stack.key("librarian")), "docs.secret", {}, who="librarian"
    )
    expect_handler(
        stack, request(b"/notes/7", stack.key("reader")), "note.read", {"id": "7"}, who="reader"
    )
    expect_handler(stack, request(b"/public/x/"), "public", {"rest": "x/"})
    expect_refused(stack, request(target, *headers), 400)


# --- HEAD is decided as GET (finding 10, spec item 12) ------------------------------------------


@each_stack(ALL)
def test_head_is_decided_as_get(stack: Stack) -> None:
    """``/docs/secret`` lists GET only, the public ``/docs/**`` lists HEAD: judged by the public
    route, a HEAD ran the secret page's GET handler anonymously (Flask, Django, Starlette)."""
    k = stack.key
    expect_handler(
        stack,
        request(b"/docs/intro", method=b"HEAD"),
        "docs.page",
        {"page": "intro"},
        method="HEAD",
        head=True,
    )
    get = expect_refused(stack, request(b"/docs/secret"), 401, "unauthorized")
    head = expect_refused(stack, request(b"/docs/secret", method=b"HEAD"), 401, head=True)
    assert head.values("www-authenticate") == get.values("www-authenticate")
    expect_refused(stack, request(b"/docs/secret", k("reader"), method=b"HEAD"), 403, head=True)
    expect_handler(
        stack,
        request(b"/docs/secret", k("librarian"), method=b"HEAD"),
        "docs.secret",
        {},
        who="librarian",
        method="HEAD",
        head=True,
    )
    # a GET-only route answers HEAD exactly as GET
    expect_refused(stack, request(b"/notes/7", method=b"HEAD"), 401, head=True)
    expect_handler(
        stack,
        request(b"/notes/7", k("reader"), method=b"HEAD"),
        "note.read",
        {"id": "7"},
        who="reader",
        method="HEAD",
        head=True,
    )


def test_head_without_get_is_a_config_error(tmp_path: Path) -> None:
    routes = '[[routes]]\npath = "/docs/**"\nmethods = ["HEAD"]\npublic = true\n'
    with pytest.raises(ConfigError, match="HEAD"):
        load(write_data_dir(tmp_path / "data", routes=routes))
    load(write_data_dir(tmp_path / "twin", routes=routes.replace('["HEAD"]', '["GET", "HEAD"]')))


# --- what the handlers see of identity headers --------------------------------------------------

SPOOFS = [
    (b"X-Restguard-Subject", b"admin"),
    (b"X_Restguard_Subject", b"admin"),
    (b"X-Restguard_Scopes", b"notes:admin"),
    (b"X.Restguard.Auth-Method", b"jwt"),
]


@each_stack(ALL)
def test_handlers_see_only_restguards_identity(stack: Stack) -> None:
    """Client-sent ``X-Restguard-*`` (and look-alike names a CGI server folds onto them) are
    removed, not refused: the handler sees restguard's identity headers only (embedded: none,
    the principal is in the scope)."""
    expect_handler(
        stack,
        request(b"/notes/7", stack.key("reader"), *SPOOFS),
        "note.read",
        {"id": "7"},
        who="reader",
    )
    expect_handler(stack, request(b"/public/x", *SPOOFS), "public", {"rest": "x"})


# --- restguard.fastapi's dependency and raw ASGI scopes (spec item 14) --------------------------


@pytest.mark.parametrize("stack", ["dependency-fastapi"], indirect=True)
@pytest.mark.parametrize(
    "target",
    [b"/files/../public/x", b"/files/./report", b"/files/%2e%2e/public/x", b"/files/a%2Fb"],
)
def test_dependency_judges_what_fastapi_routed(stack: Stack, target: bytes) -> None:
    """The dependency runs after FastAPI routed ``/files/{name:path}`` with ``name="../public/x"``:
    judging the resolved ``/public/x`` let the files handler run anonymously."""
    expect_handler(stack, request(b"/files/report"), "files", {"name": "report"})
    expect_refused(stack, request(b"/files/a/b"), 401, "unauthorized")
    expect_handler(
        stack, request(b"/files/a/b", stack.key("filer")), "files", {"name": "a/b"}, who="filer"
    )
    expect_refused(stack, request(target), 400)


@pytest.mark.parametrize("stack", ["embedded-starlette"], indirect=True)
@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/files/../public/x", None),  # a server that sends no raw_path
        ("/metrics/../public/x", None),
        ("/files/./report", None),
        ("/files/secret/x", b"/public/x"),  # raw_path and path disagree
        ("/metrics/x", b"/public/x"),
        ("/public/x", b"/metrics/x"),
    ],
)
async def test_middleware_judges_the_scope_path(
    stack: Stack, path: str, raw_path: bytes | None
) -> None:
    """Driven with hand-made scopes: what the app routes on is ``path``; a ``raw_path`` that does
    not decode to it, or dot segments in it, are refused before the app runs."""
    from restguard.asgi import GuardMiddleware

    assert stack.runtime is not None
    ran: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        ran.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def call(path: str, raw_path: bytes | None) -> int:
        sent: list[dict[str, Any]] = []
        scope: dict[str, Any] = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"app.test")],
            "client": ("192.0.2.7", 4000),
            "server": ("127.0.0.1", 80),
        }
        if raw_path is not None:
            scope["raw_path"] = raw_path

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await GuardMiddleware(app, stack.runtime.guard)(scope, receive, send)  # type: ignore[union-attr]
        return int(sent[0]["status"])

    assert await call(path, raw_path) == 400
    assert ran == []
    assert await call("/public/x", b"/public/x") == 200
    assert await call("/public/x", None) == 200
    assert await call("/files/report", b"/files/%72eport") == 200
    assert ran == ["/public/x", "/public/x", "/files/report"]
