"""OAuth 1.0a protected requests (RFC 5849 §3) through the gateway, signed by other people's
clients: oauthlib's ``Client`` with every method restguard supports (HMAC-SHA1, HMAC-SHA256,
RSA-SHA1, and PLAINTEXT over TLS) in every signature type (the ``Authorization`` header, a form
body, the query), and requests-oauthlib's ``OAuth1`` on ``requests``.

What must hold for each: the upstream receives exactly the request sent -- the target, and a
form body byte for byte with Content-Length framing -- with ``X-Restguard-Subject`` the user's
name, ``X-Restguard-Client-Id`` the consumer key, ``X-Restguard-Auth-Method: oauth1``, the
token's scopes (narrower than the consumer's here), and no ``Authorization: OAuth`` header.
Two-legged requests (no token) pass only on a route with ``oauth1_two_legged = true``. The
embedded ``GuardMiddleware`` and ``restguard.fastapi`` hand the app the exact form body, and
stock upstreams (uvicorn, wsgiref) receive it exactly, also when the client sent it chunked.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
from fastapi import Depends, FastAPI, Request
from oauthlib.oauth1 import (
    SIGNATURE_TYPE_AUTH_HEADER,
    SIGNATURE_TYPE_BODY,
    SIGNATURE_TYPE_QUERY,
    Client,
)
from requests_oauthlib import OAuth1

from restguard.asgi import GuardMiddleware
from restguard.cli.init import write_data_dir
from restguard.config import load
from restguard.fastapi import install, require_scopes
from restguard.types import Principal
from restguard.wiring import Runtime, open_runtime
from tests.attacks.sockets import read
from tests.attacks.test_review_body_first_stock import Stock
from tests.attacks.wire import chunked, exchange
from tests.faults import set_keys
from tests.harness import GatewayProcess, Received, RecordingUpstream
from tests.oauth1_support import (
    Consumer,
    Token,
    add_consumer,
    add_token,
    insert_consumer,
    insert_token,
)
from tests.pki import Pki

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET", "POST", "PUT"]
scopes = ["notes:read"]
auth = ["oauth1"]

[[routes]]
path = "/two/**"
methods = ["GET", "POST"]
scopes = ["notes:read"]
auth = ["oauth1"]
oauth1_two_legged = true
"""
EXTRA = {"server.failed_attempts": '"100000/minute"'}
FORM = "application/x-www-form-urlencoded"
# A form body with what encoders disagree on: '+' for a space, an escaped '~', UTF-8, a
# repeated name, an empty value.
BODY = "text=two+words&tilde=%7E&cafe=caf%C3%A9&a=1&a=0&empty="
TOKEN_SCOPES = ("notes:read",)
METHODS = ["HMAC-SHA1", "HMAC-SHA256", "RSA-SHA1", "PLAINTEXT"]
TYPES = [SIGNATURE_TYPE_AUTH_HEADER, SIGNATURE_TYPE_BODY, SIGNATURE_TYPE_QUERY]


# --- gateways, consumers, tokens ------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("oauth1") / "gw", upstream, routes=ROUTES, extra=EXTRA
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("oauth1pki"))


@pytest.fixture(scope="module")
def tls_gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream, pki: Pki
) -> Iterator[GatewayProcess]:
    """The same gateway speaking TLS (PLAINTEXT is accepted over TLS only, §3.4.4)."""
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("oauth1tls") / "gw", upstream, routes=ROUTES, extra=EXTRA
    )
    cert, key = pki.pair()
    set_keys(
        gateway.config,
        "server",
        {
            "tls_cert": f'"{cert}"',
            "tls_key": f'"{key}"',
            "public_url": f'"https://127.0.0.1:{gateway.port}"',
        },
    )
    gateway.settings = load(gateway.config)
    gateway.start()
    yield gateway
    gateway.stop()


def url_of(gateway: GatewayProcess) -> str:
    scheme = "https" if gateway.settings.server.tls_cert is not None else "http"
    return f"{scheme}://127.0.0.1:{gateway.port}"


def oauthlib_client(
    consumer: Consumer,
    token: Token | None,
    method: str = "HMAC-SHA1",
    signature_type: str = SIGNATURE_TYPE_AUTH_HEADER,
) -> Client:
    return Client(
        consumer.key,
        client_secret=consumer.secret,
        resource_owner_key=None if token is None else token.token,
        resource_owner_secret=None if token is None else token.secret,
        signature_method=method,
        signature_type=signature_type,
        rsa_key=consumer.rsa_pem() if method == "RSA-SHA1" else None,
    )


def assert_forwarded(
    seen: Received,
    sent: requests.PreparedRequest,
    consumer: Consumer,
    *,
    subject: str = "alice",
    scopes: str = " ".join(TOKEN_SCOPES),
) -> None:
    """The upstream got exactly the request ``requests`` sent, with the identity headers."""
    assert isinstance(sent.url, str)
    parts = urlsplit(sent.url)
    assert seen.method == sent.method
    assert seen.target == (parts.path + ("?" + parts.query if parts.query else "")).encode()
    assert sent.body is None or isinstance(sent.body, str | bytes)
    body = sent.body.encode() if isinstance(sent.body, str) else (sent.body or b"")
    assert seen.body == body
    if body:
        assert seen.header("content-length") == str(len(body))
        assert seen.header("transfer-encoding") is None
    assert seen.header("x-restguard-subject") == subject
    assert seen.header("x-restguard-client-id") == consumer.key
    assert seen.header("x-restguard-auth-method") == "oauth1"
    assert seen.header("x-restguard-scopes") == scopes
    assert seen.header("authorization") is None


# --- oauthlib: every method in every signature type -----------------------------------------


@pytest.mark.parametrize("signature_type", TYPES)
@pytest.mark.parametrize("method", METHODS)
def test_oauthlib_client_every_method_and_signature_type(
    gw: GatewayProcess, tls_gw: GatewayProcess, pki: Pki, method: str, signature_type: str
) -> None:
    gateway = tls_gw if method == "PLAINTEXT" else gw
    consumer = add_consumer(gateway, rsa_key=method == "RSA-SHA1")
    assert method in consumer.record.signature_methods
    token = add_token(gateway, consumer, "alice", scopes=TOKEN_SCOPES)
    client = oauthlib_client(consumer, token, method, signature_type)
    uri, headers, body = client.sign(
        url_of(gateway) + "/notes/1?q=caf%C3%A9&page=2",
        "POST",
        body=BODY,
        headers={"Content-Type": FORM},
    )
    assert ("Authorization" in headers) == (signature_type == SIGNATURE_TYPE_AUTH_HEADER)
    before = len(gateway.upstream.requests)
    with requests.Session() as session:
        response = session.post(
            uri, data=body, headers=headers, verify=str(pki.ca), allow_redirects=False
        )
    if method == "PLAINTEXT" and signature_type == SIGNATURE_TYPE_QUERY:
        # by design: the PLAINTEXT signature is the secrets, never put in a URL (400)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"
        time.sleep(0.05)
        assert gateway.upstream.requests[before:] == []
        return
    assert response.status_code == 200, response.text
    got = gateway.upstream.requests[before:]
    assert len(got) == 1
    assert_forwarded(got[0], response.request, consumer)
    if signature_type == SIGNATURE_TYPE_BODY:  # (oauthlib writes the body again: "~" as is)
        assert got[0].body.startswith(BODY.replace("%7E", "~").encode() + b"&oauth_")
    else:
        assert got[0].body == BODY.encode()
    # the same signed request again is a replay
    with requests.Session() as session:
        again = session.post(uri, data=body, headers=headers, verify=str(pki.ca))
    assert again.status_code == 401
    assert len(gateway.upstream.requests) == before + 1


@pytest.mark.parametrize("method", ["HMAC-SHA1", "HMAC-SHA256", "RSA-SHA1"])
def test_oauthlib_get_without_a_body(gw: GatewayProcess, method: str) -> None:
    consumer = add_consumer(gw, rsa_key=method == "RSA-SHA1")
    token = add_token(gw, consumer, "alice", scopes=TOKEN_SCOPES)
    uri, headers, _ = oauthlib_client(consumer, token, method).sign(
        gw.url + "/notes/7?sort=desc&filter=a%20b"
    )
    response = requests.get(uri, headers=headers)
    assert response.status_code == 200, response.text
    assert_forwarded(gw.upstream.last(), response.request, consumer)
    # a wrong secret is refused before the upstream
    wrong = Client(
        consumer.key,
        client_secret="x" * 43,
        resource_owner_key=token.token,
        resource_owner_secret=token.secret,
        signature_method="HMAC-SHA1",
    )
    before = len(gw.upstream.requests)
    uri, headers, _ = wrong.sign(gw.url + "/notes/7")
    assert requests.get(uri, headers=headers).status_code == 401
    assert len(gw.upstream.requests) == before


def test_form_body_byte_exact_over_a_raw_socket(gw: GatewayProcess) -> None:
    """A form body oauthlib signs but did not write (lower-case hex, '+', a name without '=',
    names out of order), sent with Content-Length and chunked: the upstream gets those bytes,
    framed with Content-Length."""
    consumer = add_consumer(gw)
    token = add_token(gw, consumer, "alice", scopes=TOKEN_SCOPES)
    body = b"z=last&a=%7e+x+&flag&caf%c3%a9=%C3%A9&a=&n=1%2B1"

    def build(sent: bytes, framing: str) -> bytes:
        """``sent`` under a fresh signature over ``body``."""
        _, headers, _ = oauthlib_client(consumer, token).sign(
            "http://gateway.test/notes/1",
            "POST",
            body=body.decode(),
            headers={"Content-Type": FORM},
        )
        head = [
            b"POST /notes/1 HTTP/1.1",
            b"Host: gateway.test",
            b"Content-Type: " + FORM.encode(),
            b"Authorization: " + headers["Authorization"].encode(),
        ]
        if framing == "length":
            return b"\r\n".join([*head, b"Content-Length: %d" % len(sent)]) + b"\r\n\r\n" + sent
        head.append(b"Transfer-Encoding: chunked")
        return b"\r\n".join(head) + b"\r\n\r\n" + chunked(sent, 5)

    for framing in ("length", "chunked"):
        before = len(gw.upstream.requests)
        got = exchange(gw.port, build(body, framing))
        assert [r.status for r in got] == [200], got
        seen = gw.upstream.requests[before:]
        assert len(seen) == 1
        assert seen[0].body == body
        assert seen[0].header("content-length") == str(len(body))
        assert seen[0].header("transfer-encoding") is None
        assert seen[0].header("x-restguard-subject") == "alice"
        # the same body with one byte changed: refused, nothing forwarded
        got = exchange(gw.port, build(body.replace(b"n=1%2B1", b"n=1%2B2"), framing))
        assert [r.status for r in got] == [401], got
        time.sleep(0.05)
        assert len(gw.upstream.requests) == before + 1


# --- requests-oauthlib ----------------------------------------------------------------------


@pytest.mark.parametrize("signature_type", ["auth_header", "query", "body"])
def test_requests_oauthlib_auth(gw: GatewayProcess, signature_type: str) -> None:
    consumer = add_consumer(gw)
    token = add_token(gw, consumer, "alice", scopes=TOKEN_SCOPES)
    auth = OAuth1(
        consumer.key,
        client_secret=consumer.secret,
        resource_owner_key=token.token,
        resource_owner_secret=token.secret,
        signature_type=signature_type,
    )
    with requests.Session() as session:
        session.auth = auth
        if signature_type != "body":  # (a body signature needs a form body)
            response = session.get(gw.url + "/notes/3?x=%2F")
            assert response.status_code == 200, response.text
            assert_forwarded(gw.upstream.last(), response.request, consumer)
        response = session.post(gw.url + "/notes/3", data={"text": "hello world", "n": "1"})
        assert response.status_code == 200, response.text
        assert_forwarded(gw.upstream.last(), response.request, consumer)
        response = session.put(
            gw.url + "/notes/3", data="plain=1&other=%20", headers={"Content-Type": FORM}
        )
        assert response.status_code == 200, response.text
        assert_forwarded(gw.upstream.last(), response.request, consumer)
    # another token's secret under this token: refused
    before = len(gw.upstream.requests)
    other = add_token(gw, consumer, "alice")
    bad = OAuth1(
        consumer.key,
        client_secret=consumer.secret,
        resource_owner_key=token.token,
        resource_owner_secret=other.secret,
        signature_type=signature_type,
    )
    assert requests.post(gw.url + "/notes/3", data={"a": "1"}, auth=bad).status_code == 401
    assert len(gw.upstream.requests) == before


# --- two-legged -----------------------------------------------------------------------------


def test_two_legged_only_where_the_route_allows_it(gw: GatewayProcess) -> None:
    consumer = add_consumer(gw)
    client = oauthlib_client(consumer, None)
    before = len(gw.upstream.requests)
    uri, headers, _ = client.sign(gw.url + "/notes/1")
    response = requests.get(uri, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert 'OAuth realm="restguard"' in response.headers["www-authenticate"]
    time.sleep(0.05)
    assert gw.upstream.requests[before:] == []
    for signature_type in TYPES:
        uri, headers, body = oauthlib_client(consumer, None, signature_type=signature_type).sign(
            gw.url + "/two/1", "POST", body="a=1", headers={"Content-Type": FORM}
        )
        response = requests.post(uri, data=body, headers=headers)
        assert response.status_code == 200, response.text
        assert_forwarded(
            gw.upstream.last(),
            response.request,
            consumer,
            subject=consumer.key,
            scopes="notes:read notes:write",
        )
    # requests-oauthlib without a resource owner: the same
    auth = OAuth1(consumer.key, client_secret=consumer.secret)
    assert requests.get(gw.url + "/two/2", auth=auth).status_code == 200
    assert requests.get(gw.url + "/notes/2", auth=auth).status_code == 401


# --- embedded: GuardMiddleware and restguard.fastapi ----------------------------------------


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    config = write_data_dir(tmp_path / "data", routes=ROUTES)
    rt = await open_runtime(load(config))
    try:
        yield rt
    finally:
        rt.close()


class Recorder:
    """A plain ASGI app that records the body it was given."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=("192.0.2.10", 5000)),
        base_url="http://testserver",
    )


@pytest.mark.parametrize("signature_type", [SIGNATURE_TYPE_AUTH_HEADER, SIGNATURE_TYPE_BODY])
async def test_embedded_middleware_gets_the_exact_form_body(
    runtime: Runtime, signature_type: str
) -> None:
    consumer = await insert_consumer(runtime.store, runtime.sealer)
    token = await insert_token(runtime.store, runtime.sealer, consumer, scopes=TOKEN_SCOPES)
    app = Recorder()
    client = oauthlib_client(consumer, token, signature_type=signature_type)
    async with asgi_client(GuardMiddleware(app, runtime)) as c:
        uri, headers, body = client.sign(
            "http://testserver/notes/1", "POST", body=BODY, headers={"Content-Type": FORM}
        )
        sent = body.encode()
        r = await c.post(uri, content=sent, headers=headers)
        assert r.status_code == 200, r.text
        assert app.bodies == [sent]
        # a changed body, and the same request again, never reach the app
        r = await c.post(uri, content=sent.replace(b"a=1", b"a=9"), headers=headers)
        assert r.status_code == 401
        r = await c.post(uri, content=sent, headers=headers)
        assert r.status_code == 401
    assert app.bodies == [sent]


async def call(
    middleware: GuardMiddleware,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes],
) -> int:
    """One HTTP/2-style POST (no Content-Length, RFC 9113 §8.1.1) straight into ``middleware``,
    its body in ``chunks``; the response status."""
    path, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "2",
        "method": "POST",
        "scheme": "http",
        "path": path.decode(),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("192.0.2.10", 5000),
        "server": ("testserver", 80),
    }
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await middleware(scope, receive, send)
    return status[0]


async def test_embedded_form_body_without_content_length(runtime: Runtime) -> None:
    """A form body that no header announces is still read and its parameters checked."""
    consumer = await insert_consumer(runtime.store, runtime.sealer)
    token = await insert_token(runtime.store, runtime.sealer, consumer, scopes=TOKEN_SCOPES)
    app = Recorder()
    middleware = GuardMiddleware(app, runtime)

    def signed(body: str | None) -> list[tuple[bytes, bytes]]:
        form_headers = {"Content-Type": FORM} if body is not None else {}
        _, headers, _ = oauthlib_client(consumer, token).sign(
            "http://testserver/notes/1", "POST", body=body, headers=form_headers
        )
        return [
            (b"content-type", FORM.encode()),
            (b"authorization", headers["Authorization"].encode()),
        ]

    body = BODY.encode()
    assert await call(middleware, b"/notes/1", signed(BODY), [body[:9], body[9:]]) == 200
    assert app.bodies == [body]
    # signed without a body, a form body sent anyway: its parameters are not covered
    assert await call(middleware, b"/notes/1", signed(None), [b"amount=99"]) == 401
    # signed over the body, another one sent
    changed = body.replace(b"a=1", b"a=9")
    assert await call(middleware, b"/notes/1", signed(BODY), [changed]) == 401
    assert app.bodies == [body]


async def test_embedded_fastapi_gets_the_exact_form_body(runtime: Runtime) -> None:
    consumer = await insert_consumer(runtime.store, runtime.sealer)
    token = await insert_token(runtime.store, runtime.sealer, consumer, scopes=TOKEN_SCOPES)
    api = FastAPI()
    install(api, runtime.guard)
    seen: list[tuple[bytes, str, str, list[str]]] = []

    @api.post("/notes/{note_id}")
    async def write(
        note_id: str, request: Request, principal: Principal = Depends(require_scopes())
    ) -> dict[str, str]:
        seen.append(
            (
                await request.body(),
                principal.subject,
                principal.client_id,
                sorted(principal.scopes),
            )
        )
        form = await request.form()
        return {"note": note_id, "text": str(form["text"]), "method": principal.auth_method}

    async with asgi_client(api) as c:
        uri, headers, body = oauthlib_client(consumer, token).sign(
            "http://testserver/notes/5", "POST", body=BODY, headers={"Content-Type": FORM}
        )
        r = await c.post(uri, content=body.encode(), headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"note": "5", "text": "two words", "method": "oauth1"}
        r = await c.post(uri, content=body.encode(), headers=headers)  # a replay
        assert r.status_code == 401
    assert seen == [(BODY.encode(), "alice", consumer.key, list(TOKEN_SCOPES))]


# --- stock upstreams ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["uvicorn", "wsgiref"])
def stock(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, Stock]]:
    server = Stock(request.param)
    gateway = GatewayProcess(
        tmp_path_factory.mktemp(f"oauth1-{request.param}") / "gw",
        server,  # type: ignore[arg-type]  # (only .url is used)
        routes=ROUTES,
        extra=EXTRA,
    ).start()
    yield gateway, server
    gateway.stop()
    server.stop()


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("signature_type", [SIGNATURE_TYPE_AUTH_HEADER, SIGNATURE_TYPE_BODY])
def test_stock_upstream_gets_the_signed_form_body(
    stock: tuple[GatewayProcess, Stock], signature_type: str, framing: str
) -> None:
    gateway, server = stock
    server.bodies.clear()
    consumer = add_consumer(gateway)
    token = add_token(gateway, consumer)
    form = BODY + "&pad=" + "x" * 3000

    def signed(change: tuple[bytes, bytes] = (b"", b"")) -> tuple[bytes, bytes]:
        """A freshly signed request (its body changed by ``change`` after signing), and the
        body as sent before framing."""
        _, headers, body = oauthlib_client(consumer, token, signature_type=signature_type).sign(
            "http://gateway.test/notes/1", "POST", body=form, headers={"Content-Type": FORM}
        )
        raw = body.encode().replace(*change)
        head = [b"POST /notes/1 HTTP/1.1", b"Host: gateway.test"]
        head += [f"{k}: {v}".encode() for k, v in headers.items()]
        if framing == "length":
            head.append(b"Content-Length: %d" % len(raw))
            return b"\r\n".join(head) + b"\r\n\r\n" + raw, raw
        head.append(b"Transfer-Encoding: chunked")
        return b"\r\n".join(head) + b"\r\n\r\n" + chunked(raw, 7), raw

    data, expected = signed()
    got = exchange(gateway.port, data)
    assert [r.status for r in got] == [200], got
    settle(server, 1)
    assert server.bodies == [expected]
    # the twin's evil sibling: one parameter changed after signing
    evil, changed = signed((b"two+words", b"two+wordz"))
    assert b"two+wordz" in changed
    got = exchange(gateway.port, evil)
    assert [r.status for r in got] == [401], got
    time.sleep(0.1)
    assert server.bodies == [expected]


def settle(server: Stock, n: int, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while len(server.bodies) < n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_stock_upstream_never_sees_an_unsigned_socket_reuse(
    stock: tuple[GatewayProcess, Stock],
) -> None:
    """A pipelined second request after a signed form body on one connection is judged on its
    own: the refused one never reaches the app."""
    gateway, server = stock
    server.bodies.clear()
    consumer = add_consumer(gateway)
    token = add_token(gateway, consumer)
    _, headers, _ = oauthlib_client(consumer, token).sign(
        "http://gateway.test/notes/1", "POST", body="a=1", headers={"Content-Type": FORM}
    )
    first = (
        b"POST /notes/1 HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: "
        + FORM.encode()
        + b"\r\nAuthorization: "
        + headers["Authorization"].encode()
        + b"\r\nContent-Length: 3\r\n\r\na=1"
    )
    second = (
        b"POST /notes/2 HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: "
        + FORM.encode()
        + b"\r\nContent-Length: 3\r\n\r\na=2"
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as s:
        s.sendall(first + second)
        got = read(s, count=2, timeout=5)
    assert [r.status for r in got.responses] == [200, 401], got
    settle(server, 1)
    time.sleep(0.1)
    assert server.bodies == [b"a=1"]
