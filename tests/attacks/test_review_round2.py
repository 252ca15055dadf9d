"""Review round 2 (after the issue-5 and issue-6 fixes), as an attacker: what still gets through.

Every test here fails against commit 5765c18, the code the review was asked to break, and each
attack has a valid twin that must keep working. Commit 706175f (gates hardened while this review
ran) fixes the escaped-quote, mid-token-quote, indentation, Unicode-space, name-on-the-next-line,
JSON-parser and urlencoded-quadratic cases; the multipart-quadratic case is new in 706175f (it
passes on 5765c18). Bounded in time: the whole module takes ~20 s.

1. Multipart part headers that real parsers read as a ``_method`` field while ``MultipartGate``
   does not (Django, werkzeug/Flask and the stdlib email parser behind the ASGI override,
   driven for real behind the gateway and under the middleware).
2. Bodies other upstreams read as parameters where the gates look for something else (Rack's
   ``Content-ID`` names, its unanchored Content-Disposition regex and its urlencoded fallback
   for multipart without a usable boundary, Rack 2's and ``qs``'s bracket names, Laravel's and
   Node's JSON), shown with a recording upstream; the JSON cases are also checked with the real
   ``node`` ``JSON.parse``.
3. Embedded: an HTTP/2 body without content-length is never judged.
4. One unauthenticated request freezes the event loop: a gate quadratic in what it holds when
   the body comes in small pieces (1-byte chunks): the urlencoded gate's held name (5765c18),
   the multipart gate's held header and its go-on lines (706175f).
5. Compressed bodies (Content-Encoding: gzip) that body-parser inflates before parsing.
6. The ``X-HTTP-Method-Override`` *parameter* (ASP.NET MVC reads it from the query and form).
7. A format suffix (``/notes/export.json``) that Rails, old Spring MVC and DRF route to an
   earlier literal route.
8. The upstream pool held by uploads that keep exactly to the minimum body rate.
9. Route rate limits (and the failed-attempt lockout) multiplied by ``--workers``.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.attacks.conftest import Keys
from tests.attacks.sockets import connect, read
from tests.attacks.test_router_differentials import (
    BOUNDARY,
    MULTIPART,
    Stack,
    expect_handler,
    expect_refused,
    post,
    stack,
    stacks,
)
from tests.attacks.wire import api_key, assert_forwarded, assert_refused, request, send
from tests.faults import ready_workers, serve_dir, serving
from tests.harness import GatewayProcess, RecordingUpstream
from tests.router_apps import Recorder, starlette_app

Header = tuple[bytes, bytes]
_ = (stack, stacks)  # the router-differential stacks' fixtures, used by name below


def _part(header: bytes, value: bytes = b"DELETE") -> bytes:
    """A multipart/form-data body of one part with this header line."""
    return (
        b"--" + BOUNDARY + b"\r\n" + header + b"\r\n\r\n" + value + b"\r\n--" + BOUNDARY + b"--\r\n"
    )


def _twin(stack: Stack) -> None:
    """The honest multipart POST reaches note.update; the writer may not DELETE."""
    k = stack.key
    expect_handler(
        stack,
        post(
            b"/notes/1",
            k("writer"),
            body=_part(b'Content-Disposition: form-data; name="title"', b"hi"),
            content_type=MULTIPART,
        ),
        "note.update",
        {"id": "1", "title": "hi"},
        who="writer",
        method="POST",
    )
    expect_refused(
        stack, request(b"/notes/1", k("writer"), method=b"DELETE"), 403, "insufficient_scope"
    )


# --- 1. part headers the gate misreads ---------------------------------------------------------

PART_HEADERS: dict[str, tuple[bytes, list[str]]] = {
    # email.message's parameter parser (Django 5's parse_header_parameters, and the stdlib
    # email parser many ASGI/WSGI overrides use) unquotes <...> like "..." (email.utils.unquote).
    "angle-brackets": (
        b"Content-Disposition: form-data; name=<_method>",
        ["gateway-django", "gateway-starlette", "embedded-starlette"],
    ),
    # A backslash-quote outside a quoted string: MultipartGate's splitter opens a quoted string
    # there (and hides the next parameters); email's _parseparam does not count \" as a quote,
    # and werkzeug's parameter regex restarts at every ";".
    "escaped-quote-outside-quotes": (
        b'Content-Disposition: form-data; x=\\"; name="_method"',
        ["gateway-django", "gateway-flask", "gateway-starlette", "embedded-starlette"],
    ),
    # A quote in the middle of a token: werkzeug (and Rack 3's parameter loop) start a quoted
    # string only right after "=", so name=_method is a parameter of its own.
    "quote-inside-token": (
        b'Content-Disposition: form-data; x=a"b; name=_method; y=c"d',
        ["gateway-flask"],
    ),
    # A header line indented with a vertical tab (or form feed): Django strips it with
    # str.strip(); the gate allows only spaces and tabs.
    "vertical-tab-indent": (
        b'\x0bContent-Disposition: form-data; name="_method"',
        ["gateway-django"],
    ),
    # ... or with more than the gate's 16 spaces (werkzeug strips any number too).
    "deep-indent": (
        b" " * 17 + b'Content-Disposition: form-data; name="_method"',
        ["gateway-django", "gateway-flask"],
    ),
    # Django decodes the header line as UTF-8 and strips Unicode white space (NBSP here) around
    # parameter names; the gate reads Latin-1, where "\xc2\xa0" is "Â" + NBSP, not white space.
    "utf8-nbsp-before-name": (
        b'Content-Disposition: form-data; \xc2\xa0name="_method"',
        ["gateway-django"],
    ),
    # ... and around an unquoted value: an ideographic space (U+3000) here.
    "utf8-space-before-value": (
        b"Content-Disposition: form-data; name=\xe3\x80\x80_method",
        ["gateway-django"],
    ),
}

PART_CASES = [
    pytest.param(header, name, id=f"{case}-{name}")
    for case, (header, names) in PART_HEADERS.items()
    for name in names
]


@pytest.mark.parametrize(("header", "stack"), PART_CASES, indirect=["stack"])
def test_method_part_header_real_parsers_read(stack: Stack, header: bytes) -> None:
    # POST /notes/{id} needs notes:write, DELETE notes:admin: today the writer's POST runs
    # note.delete (a request the policy refused, executed).
    expect_refused(
        stack,
        post(b"/notes/1", stack.key("writer"), body=_part(header), content_type=MULTIPART),
        400,
    )
    _twin(stack)


# --- 2. bodies other upstreams read as parameters, where the gates look for something else -----


def _public_post(content_type: bytes | None, body: bytes) -> bytes:
    """An anonymous POST to the public tree (GET and POST only: a DELETE there is refused)."""
    headers = [] if content_type is None else [(b"Content-Type", content_type)]
    return request(
        b"/public/x",
        *headers,
        (b"Content-Length", b"%d" % len(body)),
        method=b"POST",
        body=body,
    )


FORM_SHAPES: dict[str, tuple[bytes, bytes, bytes | None]] = {
    # Rack::Multipart::Parser#handle_mime_head (Rack 1.x to 3.2): a part without a
    # Content-Disposition name is named by its Content-ID header (so is one whose
    # Content-Disposition is over 1536 bytes, in Rack 3.1+). MultipartGate reads only
    # Content-Disposition lines.
    "rack-content-id": (
        b"multipart/form-data; boundary=XB",
        b"--XB\r\nContent-ID: _method\r\n\r\nDELETE\r\n--XB--\r\n",
        b"--XB\r\nContent-ID: title\r\n\r\nhello\r\n--XB--\r\n",
    ),
    # Rack 2.2's MULTIPART_CONTENT_DISPOSITION, /Content-Disposition:[^:]*;\s*name=(VALUE)/ni, is
    # neither anchored to a line start nor kept on one line: it finds the header inside another
    # header's name, and a name on the line after the Content-Disposition line.
    "rack2-disposition-inside-another-name": (
        b"multipart/form-data; boundary=XB",
        b'--XB\r\nX-Content-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--XB--\r\n',
        b'--XB\r\nContent-Disposition: form-data; name="title"\r\n\r\nhello\r\n--XB--\r\n',
    ),
    "rack2-name-on-the-next-line": (
        b"multipart/form-data; boundary=XB",
        b'--XB\r\nContent-Disposition: form-data;\r\nname="_method"\r\n\r\nDELETE\r\n--XB--\r\n',
        b'--XB\r\nContent-Disposition: form-data; name="title"\r\n\r\nhello\r\n--XB--\r\n',
    ),
    # Rack::Request#POST: for multipart/mixed and multipart/related (parseable_data?) and
    # multipart/form-data, Multipart.parse returns no params when Rack's MULTIPART regex finds no
    # boundary (`boundary=\"?([^\";,]+)`), and POST then parses the body as urlencoded. The
    # gateway picks MultipartGate for any multipart/* type, which never looks at name=value.
    # Fixed by refusing every multipart type without one boundary all parsers read alike (the
    # twin too: no parser agrees on what such a body holds).
    "rack-multipart-mixed-without-boundary": (
        b"multipart/mixed",
        b"_method=DELETE",
        None,
    ),
    # The same fallback with multipart/form-data: "," is a valid RFC 2046 boundary (accepted
    # by the gateway), but not one Rack's regex can extract.
    "rack-boundary-rack-cannot-read": (
        b'multipart/form-data; boundary=","',
        b"_method=DELETE",
        None,
    ),
    # Rack 2.x QueryParser#normalize_params (name =~ /\A[\[\]]*([^\[\]]+)\]*/) and qs, the
    # "extended" urlencoded parser of Express's body-parser (parseObject strips the brackets of
    # a bracketed root), both name the parameter "[_method]" "_method".
    "rack2-qs-bracketed-name": (
        b"application/x-www-form-urlencoded",
        b"%5B_method%5D=DELETE",
        b"%5Btitle%5D=hello",
    ),
    "rack2-qs-bracketed-name-raw": (
        b"application/x-www-form-urlencoded",
        b"[_method]=DELETE",
        b"[title]=hello",
    ),
    "rack2-bracketed-name-no-content-type": (
        b"",
        b"]_method=DELETE",
        b"]title=hello",
    ),
}


@pytest.mark.parametrize("shape", list(FORM_SHAPES.values()), ids=list(FORM_SHAPES))
def test_method_override_in_form_shapes_other_parsers_read(
    gw: GatewayProcess, shape: tuple[bytes, bytes, bytes | None]
) -> None:
    content_type, attack, twin = shape
    ct = content_type or None
    assert_refused(gw, _public_post(ct, attack), 400, "invalid_request")
    if twin is None:
        assert_refused(gw, _public_post(ct, b"title=hello"), 400, "invalid_request")
        return
    _, seen = assert_forwarded(gw, _public_post(ct, twin), b"/public/x", method="POST")
    assert seen.body == twin


# JSON bodies: Laravel's Request::createFromBase replaces the form bag with the JSON document and
# Symfony's getMethod() reads _method there; Express apps using method-override with a getter on
# req.body (its documented custom-logic form) behind express.json() do the same.

_BIG = b"1" * 4301  # CPython's int_max_str_digits is 4300: json.loads raises ValueError
_DEEP = b"[" * 1000 + b"]" * 1000  # past CPython's recursion limit, not V8's (iterative)

JSON_BODIES: dict[str, tuple[bytes, bytes, bytes]] = {
    # JsonGate releases "a body that is not valid JSON" as it is, and "not valid" means "what
    # CPython's json.loads refuses": a long integer (PHP's json_decode and JSON.parse read it as
    # a float), nesting past the recursion limit, a byte that is not UTF-8 inside a string
    # (body-parser decodes with U+FFFD replacement).
    "long-integer": (
        b"application/json",
        b'{"_method": "DELETE", "n": ' + _BIG + b"}",
        b'{"title": "hello", "n": 12345678901234567890}',
    ),
    "deep-nesting": (
        b"application/json",
        b'{"_method": "DELETE", "a": ' + _DEEP + b"}",
        b'{"title": "hello", "a": ' + b"[" * 50 + b"]" * 50 + b"}",
    ),
    "non-utf8-byte-in-a-string": (
        b"application/json",
        b'{"_method": "DELETE", "x": "\xff"}',
        b'{"title": "hello", "x": "\xc3\xbf"}',
    ),
    # Laravel's Request::isJson(): the Content-Type *contains* "/json" or "+json". The gateway
    # gates application/json and */*+json only; text/json gets no gate, and a type that does not
    # parse strictly ("application/json;") gets the urlencoded gate, which finds no name there.
    "laravel-text-json": (
        b"text/json",
        b'{"_method": "DELETE"}',
        b'{"title": "hello"}',
    ),
    "laravel-json-trailing-semicolon": (
        b"application/json;",
        b'{"_method": "DELETE"}',
        b'{"title": "hello"}',
    ),
    "laravel-json-seq": (
        b"application/json-seq",
        b'{"_method": "DELETE"}',
        b'{"title": "hello"}',
    ),
}

_NODE_READS = (
    "let b=require('fs').readFileSync(0).toString('utf8');"
    "process.stdout.write(String(JSON.parse(b)._method))"
)


def _node_method(body: bytes) -> str | None:
    """What Node's JSON.parse (body-parser's UTF-8 decoding) reads as ``_method``."""
    node = shutil.which("node")
    if node is None:
        return None
    out = subprocess.run(
        [node, "-e", _NODE_READS], input=body, capture_output=True, timeout=20, check=True
    )
    return out.stdout.decode()


@pytest.mark.parametrize("case", list(JSON_BODIES.values()), ids=list(JSON_BODIES))
def test_method_override_in_json_bodies_other_parsers_read(
    gw: GatewayProcess, case: tuple[bytes, bytes, bytes]
) -> None:
    content_type, attack, twin = case
    if content_type == b"application/json":
        # A real JSON parser reads _method from exactly these bytes.
        assert _node_method(attack) in ("DELETE", None)
    assert_refused(gw, _public_post(content_type, attack), 400, "invalid_request")
    _, seen = assert_forwarded(gw, _public_post(content_type, twin), b"/public/x", method="POST")
    assert seen.body == twin


# --- 3. embedded: a body the middleware does not know is there ----------------------------------


def _asgi_post(
    app: Any, key: str, body: bytes, headers: list[Header], *, http_version: str
) -> tuple[int, bytes]:
    """POST /notes/1 to ``app`` with a hand-built scope (as an HTTP/2 server builds it); the
    body arrives in one http.request message."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": "POST",
        "scheme": "https",
        "path": "/notes/1",
        "raw_path": b"/notes/1",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"x-api-key", key.encode()), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 443),
    }
    sent: list[dict[str, Any]] = []
    events = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if events:
            return events.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("stack", ["embedded-starlette"], indirect=True)
def test_http2_form_body_without_content_length_is_judged(stack: Stack) -> None:
    # RFC 9113 §8.1.1: an HTTP/2 request body needs no content-length (hypercorn and daphne pass
    # none when the client sends none), and there is no transfer-encoding in HTTP/2.
    # GuardMiddleware judges a body only when has_body() sees one of those two headers, so the
    # app's form parser reads _method from a body nobody judged: the writer's POST runs DELETE.
    assert stack.runtime is not None
    recorder = Recorder("http2")
    app = starlette_app(recorder, guard=stack.runtime.guard)
    form = [(b"content-type", b"application/x-www-form-urlencoded")]
    status, body = _asgi_post(app, stack.keys["writer"], b"_method=DELETE", form, http_version="2")
    assert recorder.ran() == [], (status, body, recorder.calls)
    assert status == 400, (status, body)
    # Twin: the same HTTP/2 request with an ordinary field reaches note.update.
    recorder.clear()
    status, body = _asgi_post(app, stack.keys["writer"], b"title=hi", form, http_version="2")
    assert status == 200, (status, body)
    assert recorder.ran() == ["note.update"]
    # (and with a content-length, as HTTP/1.1 sends it, the attack is refused today)
    recorder.clear()
    status, _ = _asgi_post(
        app,
        stack.keys["writer"],
        b"_method=DELETE",
        [*form, (b"content-length", b"14")],
        http_version="1.1",
    )
    assert (status, recorder.ran()) == (400, [])


# --- 4. one request freezes the event loop: the urlencoded gate rescans what it holds -----------


def _one_byte_chunks(body: bytes) -> bytes:
    return b"".join(b"1\r\n%s\r\n" % body[i : i + 1] for i in range(len(body))) + b"0\r\n\r\n"


def test_urlencoded_gate_is_linear_in_small_reads(gw: GatewayProcess, keys: Keys) -> None:
    # (5765c18) UrlencodedGate.feed joins what it holds (an unfinished name, up to 4096 bytes)
    # with each new piece and percent-decodes the whole of it again (_may_hold_override ->
    # unquote_to_bytes, a Python loop over every "%"): quadratic in the held name. Chunked
    # 1-byte chunks hand the gate one byte at a time whatever TCP does: ~450 us per body byte.
    # The gate runs while the body is read, before the decision: 8 KB of body in one write to
    # a path no route matches (no credential at all) freezes every connection of the worker
    # for seconds (40 KB: 18 s).
    body = (b"%" * 4000 + b"&") * 2
    attack = request(
        b"/nowhere/at/all",
        (b"Content-Type", b"application/x-www-form-urlencoded"),
        (b"Transfer-Encoding", b"chunked"),
        method=b"POST",
        body=_one_byte_chunks(body),
    )
    started = time.monotonic()
    with connect(gw.port, timeout=30.0) as attacker:
        attacker.sendall(attack)
        time.sleep(0.05)  # the attacker's bytes are in the gateway's hands
        victim = send(gw.port, request(b"/notes/1", api_key(keys.reader)), timeout=30.0)
        elapsed = time.monotonic() - started
        got = read(attacker, timeout=30.0)
    assert victim.status == 200
    assert [r.status for r in got.responses] == [404]
    assert elapsed < 1.0, f"another client waited {elapsed:.2f}s"
    # Twin: the same body in one piece passes the gate at once, and reaches a public route.
    twin = request(
        b"/public/x",
        (b"Content-Type", b"application/x-www-form-urlencoded"),
        (b"Content-Length", b"%d" % len(body)),
        method=b"POST",
        body=body,
    )
    _, seen = assert_forwarded(gw, twin, b"/public/x", method="POST")
    assert seen.body == body


LINEAR_MULTIPART = {
    # (706175f) the lines a lenient parser appends to a Content-Disposition header were held
    # and re-read on every feed: ~5 ms per byte. Now refused at the first line without a colon.
    "appended-lines": (
        b'--XB\r\nContent-Disposition: form-data; name="t"\r\n' + b"a\r\n" * 700,
        400,
    ),
    # The longest thing the strict scanner still holds: one Content-Disposition line near the
    # name cap, one byte at a time.
    "long-name": (
        b'--XB\r\nContent-Disposition: form-data; name="'
        + b"t" * 4000
        + b'"\r\n\r\nv\r\n--XB--\r\n',
        404,
    ),
}


@pytest.mark.parametrize("case", list(LINEAR_MULTIPART.values()), ids=list(LINEAR_MULTIPART))
def test_multipart_gate_is_linear_in_small_reads(
    gw: GatewayProcess, keys: Keys, case: tuple[bytes, int]
) -> None:
    body, status = case
    attack = request(
        b"/nowhere/at/all",
        (b"Content-Type", b"multipart/form-data; boundary=XB"),
        (b"Transfer-Encoding", b"chunked"),
        method=b"POST",
        body=_one_byte_chunks(body),
    )
    started = time.monotonic()
    with connect(gw.port, timeout=30.0) as attacker:
        attacker.sendall(attack)
        time.sleep(0.05)  # the attacker's bytes are in the gateway's hands
        victim = send(gw.port, request(b"/notes/1", api_key(keys.reader)), timeout=30.0)
        elapsed = time.monotonic() - started
        got = read(attacker, timeout=30.0)
    assert victim.status == 200
    assert [r.status for r in got.responses] == [status]
    assert elapsed < 1.0, f"another client waited {elapsed:.2f}s"


# --- 5. a body the gates judge in one coding and the upstream reads in another -----------------

ENCODED_FORMS: dict[str, tuple[bytes, bytes]] = {
    # Express's body-parser (express.urlencoded(), express.json()) inflates gzip, deflate and br
    # request bodies by default (inflate: true) before parsing; method-override's documented
    # body getter then reads req.body._method. The gates see compressed bytes.
    "urlencoded-gzip": (b"application/x-www-form-urlencoded", b"_method=DELETE"),
    "json-gzip": (b"application/json", b'{"_method": "DELETE"}'),
}


@pytest.mark.parametrize("case", list(ENCODED_FORMS.values()), ids=list(ENCODED_FORMS))
def test_method_override_in_a_compressed_form_body(
    gw: GatewayProcess, case: tuple[bytes, bytes]
) -> None:
    content_type, plain = case
    body = gzip.compress(plain, mtime=0)
    assert gzip.decompress(body) == plain  # what body-parser hands the app

    def post_encoded(data: bytes, encoding: bytes) -> bytes:
        return request(
            b"/public/x",
            (b"Content-Type", content_type),
            (b"Content-Encoding", encoding),
            (b"Content-Length", b"%d" % len(data)),
            method=b"POST",
            body=data,
        )

    # Fixed: a compressed body of a type upstreams read as parameters is refused as such (415).
    for coding in (b"gzip", b"deflate", b"br", b"GZIP, identity"):
        refused = assert_refused(gw, post_encoded(body, coding), 415, "invalid_request")
        assert refused.header("accept-encoding") == "identity"
    # Twin: an identity-coded body without _method is forwarded as sent.
    twin = plain.replace(b"_method", b"title")
    _, seen = assert_forwarded(gw, post_encoded(twin, b"identity"), b"/public/x", method="POST")
    assert seen.body == twin


# --- 6. method-override parameters under another name --------------------------------------------

ASPNET_OVERRIDES: dict[str, tuple[bytes, bytes | None, bytes]] = {
    # ASP.NET MVC (System.Web.Mvc HttpRequestBase.GetHttpMethodOverride, behind [HttpDelete],
    # [AcceptVerbs] and every verb selector): a POST is acted on as the method named by the
    # X-HTTP-Method-Override *header, form field or query parameter* (names compared without
    # case). The gateway refuses the header and the _method parameter, not this parameter.
    "query": (b"/public/x?X-HTTP-Method-Override=DELETE", None, b"/public/x?title=DELETE"),
    "query-lower-case": (b"/public/x?x-http-method-override=PUT", None, b"/public/x?title=PUT"),
    "form-body": (b"/public/x", b"X-HTTP-Method-Override=DELETE", b"/public/x"),
}


@pytest.mark.parametrize("case", list(ASPNET_OVERRIDES.values()), ids=list(ASPNET_OVERRIDES))
def test_method_override_parameter_named_like_the_header(
    gw: GatewayProcess, case: tuple[bytes, bytes | None, bytes]
) -> None:
    target, body, twin_target = case
    form = (b"Content-Type", b"application/x-www-form-urlencoded")
    data = body if body is not None else b"title=x"
    attack = request(
        target, form, (b"Content-Length", b"%d" % len(data)), method=b"POST", body=data
    )
    assert_refused(gw, attack, 400, "invalid_request")
    twin_body = b"title=x"
    twin = request(
        twin_target,
        form,
        (b"Content-Length", b"%d" % len(twin_body)),
        method=b"POST",
        body=twin_body,
    )
    _, seen = assert_forwarded(gw, twin, twin_target, method="POST")
    assert seen.body == twin_body


# --- 7. a route suffix many routers ignore: the format extension ------------------------------

SUFFIX_ROUTES = """\
[[routes]]
path = "/notes/export"
methods = ["GET"]
scopes = ["notes:admin"]

[[routes]]
path = "/notes/{id}"
methods = ["GET"]
scopes = ["notes:read"]
"""


@pytest.fixture(scope="module")
def suffix_gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("suffix") / "gw", upstream, routes=SUFFIX_ROUTES
    ).start()
    yield gateway
    gateway.stop()


def test_format_suffix_of_an_earlier_literal_route(suffix_gw: GatewayProcess) -> None:
    # Rails appends "(.:format)" to every route (`get "notes/export"` serves
    # /notes/export.json), Spring MVC before 5.3 matched "/notes/export.*" by default
    # (suffix pattern matching) and DRF's format_suffix_patterns do the same: a reader's
    # GET /notes/export.json is judged /notes/{id} (notes:read) and runs the export handler
    # (notes:admin). The policy already refuses the equivalences it knows routers apply (case,
    # one trailing slash) when they land on an earlier route; an extension is one more.
    gw = suffix_gw
    _, reader = gw.issue_key("notes:read", name="reader")
    _, admin = gw.issue_key("notes:admin", name="admin")
    assert_refused(gw, request(b"/notes/export.json", api_key(reader)), 400, "invalid_request")
    assert_refused(gw, request(b"/notes/export.csv", api_key(reader)), 400, "invalid_request")
    # Twins: the literal route with its scope, and an ordinary id with an extension.
    assert_forwarded(gw, request(b"/notes/export", api_key(admin)), b"/notes/export")
    assert_forwarded(gw, request(b"/notes/7.json", api_key(reader)), b"/notes/7.json")


# --- 8. the upstream pool held by uploads at exactly the minimum rate -------------------------


def test_uploads_at_the_minimum_rate_cannot_hold_the_upstream_pool(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    # A body over body_buffer_bytes (64 KiB) takes a pooled upstream connection and then streams
    # for as long as it keeps client_body_min_rate (1 KiB/s by default, per client_body_timeout
    # window): 10 MiB may take 10,000 s. pool_size such uploads (100 by default: 6.4 MB, then
    # 100 KiB/s in all, anonymously on any public POST route) hold every pooled connection, and
    # every other request on every route waits queue_timeout and gets 503 (the R-U-Dead-Yet
    # slow POST). nginx is immune because it reads the whole body before it connects upstream
    # (proxy_request_buffering). Fixed: streaming uploads hold at most half the pool; one more
    # waits queue_timeout for a slot, then gets 503, and everything else still flows.
    gw = GatewayProcess(
        tmp_path / "gw",
        upstream,
        extra={
            "pool_size": "4",
            "queue_timeout": '"300ms"',
            "client_body_timeout": '"1s"',
        },
    ).start()
    slow: list[socket.socket] = []
    stop = threading.Event()
    try:
        head = request(b"/public/upload", (b"Content-Length", b"1000000"), method=b"POST")
        for _ in range(4):  # as many as the pool holds
            s = connect(gw.port, timeout=3.0)
            slow.append(s)
            s.sendall(head + b"a" * 70_000)

        def trickle() -> None:  # 10 KiB/s each: ten times the minimum rate (a loaded machine)
            while not stop.is_set():
                for s in slow:
                    try:
                        s.send(b"a" * 1024, socket.MSG_DONTWAIT)
                    except OSError:
                        continue  # (one refused, or not read)
                time.sleep(0.1)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        time.sleep(1.2)  # both uploads are well within the minimum rate, and forwarding
        statuses = [
            send(gw.port, request(b"/public/v%d" % i), timeout=2.0).status for i in range(6)
        ]
        stop.set()
        thread.join(2)
        assert statuses == [200] * 6, statuses
        # Two uploads, in their slots, were never refused (they are legal); the other two found
        # none free in queue_timeout.
        answers = [[r.status for r in read(s, count=0, timeout=0.2).responses] for s in slow]
        assert sorted(answers) == [[], [], [503], [503]], answers
    finally:
        stop.set()
        for s in slow:
            s.close()
        gw.stop()


# --- 9. rate limits across worker processes --------------------------------------------------


@pytest.mark.slow
def test_route_rate_limit_across_workers_is_one_count(tmp_path: Path) -> None:
    # `restguard serve --workers N` runs N processes on one listening socket. Each once had its
    # own in-memory limiter, so "3/minute" on a public route admitted 6 requests with 2 workers
    # (and serve warned). Now the counters of a multi-process server live in the database (or
    # Redis): the kernel may hand the client's connections to any process, and exactly the
    # limit is admitted.
    routes = (
        '[[routes]]\npath = "/limited"\nmethods = ["GET"]\npublic = true\nrate_limit = "3/minute"\n'
    )
    config = serve_dir(tmp_path / "d", routes=routes)
    with serving(config, "--workers", "2") as serve:
        ready_workers(serve.pid, 1)
        admitted = 0
        for _ in range(40):  # each on a new connection: any process may accept it
            with socket.create_connection(("127.0.0.1", serve.port), timeout=5) as s:
                s.sendall(b"GET /limited HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
                status = read(s, timeout=5).responses[0].status
            assert status in (429, 502), status  # 502: allowed (the upstream is down)
            admitted += status != 429
        assert admitted == 3, f"{admitted} requests admitted by 3/minute in 2 processes"
        assert "counted in each" not in serve.stderr
