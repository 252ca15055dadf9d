"""The body a credential covers is read before the decision, in one way shared by the gateway
and the ASGI middleware (``credentials.base.ReadsBody``, ``Guard.body_wanted``): the verifier
sees exactly the bytes that are then forwarded; nothing reaches the upstream or the app before
an allow; a body over the authenticator's limit is 413 before any decision.

A stand-in authenticator (``BodyHash``) is the credential kind here: ``X-Body-Sha256: <hex>``
is valid when it is the SHA-256 of the body received (RFC 9421 with ``Content-Digest`` is the
real one; it builds on this)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from restguard.asgi import GuardMiddleware
from restguard.authz.policy import Policy
from restguard.authz.ratelimit import MemoryRateLimiter
from restguard.clock import FixedClock
from restguard.credentials.base import AuthContext, Credential
from restguard.errors import AuthError, InvalidCredential
from restguard.guard import Guard
from restguard.types import Principal, RequestView, verified_principal
from tests.harness import GatewayProcess, RecordingUpstream
from tests.unit.fakes import T0
from tests.unit.test_guard import route

LIMIT = 64
HEADER = b"x-body-sha256"


class BodyHash:
    method = "signature"  # (the name a body-covering method has in the contract)
    presentation = "the body's SHA-256 in 'X-Body-Sha256: <hex>'"

    def __init__(self) -> None:
        self.seen: list[bytes | None] = []

    def body_limit(self, view: RequestView) -> int:
        return LIMIT if view.single_header(HEADER) is not None else 0

    def extract(self, view: RequestView) -> Credential | None:
        value = view.single_header(HEADER)
        return None if value is None else Credential(self.method, value.decode(), "body", (HEADER,))

    def carriers(self, view: RequestView) -> tuple[bytes, ...]:
        return (HEADER,) if view.single_header(HEADER) is not None else ()

    async def authenticate(self, credential: Credential, ctx: AuthContext) -> Principal:
        body = None if ctx.view is None else ctx.view.body
        self.seen.append(body)
        if body is None or hashlib.sha256(body).hexdigest() != credential.secret:
            raise InvalidCredential(debug="body hash")
        return verified_principal(
            subject="app", client_id="app", scopes={"w"}, auth_method=self.method
        )

    def challenge(self, error: AuthError | None) -> str:
        return 'BodyHash realm="test"'


def signed(body: bytes) -> dict[str, str]:
    return {"x-body-sha256": hashlib.sha256(body).hexdigest()}


# --- the guard ------------------------------------------------------------------------------


def test_body_wanted_follows_the_route_and_the_credential() -> None:
    auth = BodyHash()
    guard = Guard(
        Policy(
            [
                route(0, "/public/**", ("POST",), public=True),
                route(1, "/signed/**", ("POST",), auth=("signature",)),
                route(2, "/other/**", ("POST",), auth=("jwt",)),
            ]
        ),
        {"signature": auth},
        FixedClock(T0),
        MemoryRateLimiter(),
    )
    with_header = RequestView("POST", "/signed/x", headers=((HEADER, b"00"),))
    assert guard.body_wanted(with_header) == LIMIT
    assert guard.body_wanted(RequestView("POST", "/signed/x")) == 0  # nothing covers a body
    assert guard.body_wanted(RequestView("POST", "/public/x", headers=((HEADER, b"00"),))) == 0
    assert guard.body_wanted(RequestView("POST", "/other/x", headers=((HEADER, b"00"),))) == 0
    assert guard.body_wanted(RequestView("POST", "/nowhere", headers=((HEADER, b"00"),))) == 0
    # a view that has its body (the gateway's bodiless head: b"") needs nothing read
    assert guard.body_wanted(with_header._replace(body=b"")) == 0


def test_a_body_that_may_carry_the_credential_is_read_only_when_the_head_carries_none() -> None:
    """OAuth 1.0a parameters may travel in a form body alone (RFC 5849 §3.5.2): such a body is
    read first only when no method of the route finds a credential in the head -- a large form
    posted with an API key is never held back or capped for a credential it does not carry."""
    from restguard.credentials.apikey import ApiKeyAuthenticator
    from restguard.credentials.oauth1 import FORM_BODY_LIMIT, OAuth1Authenticator, OAuth1Verifier
    from restguard.keys.sealing import Sealer
    from tests.unit.fakes import FakeApiKeyStore

    class Nothing:
        async def get(self, key: str) -> None:
            return None

    verifier = OAuth1Verifier(Nothing(), Nothing(), None, Sealer(b"k" * 32))  # type: ignore[arg-type]
    guard = Guard(
        Policy(
            [
                route(0, "/any/**", ("POST",), auth=("api_key", "oauth1")),
                route(1, "/keys/**", ("POST",), auth=("api_key",)),
            ]
        ),
        {
            "api_key": ApiKeyAuthenticator(FakeApiKeyStore(), FixedClock(T0)),
            "oauth1": OAuth1Authenticator(verifier, public_url="https://api.example"),
        },
        FixedClock(T0),
        MemoryRateLimiter(),
    )
    form = (b"content-type", b"application/x-www-form-urlencoded")
    key = (b"x-api-key", b"rg_ak_abc")

    def wanted(path: str, *headers: tuple[bytes, bytes], query: bytes = b"") -> int:
        return guard.body_wanted(RequestView("POST", path, query, headers))

    assert wanted("/any/x", form) == FORM_BODY_LIMIT  # nothing in the head: maybe in the body
    assert wanted("/any/x", form, key) == 0  # an API key: the form is the app's business
    assert wanted("/any/x", form, (b"authorization", b"ApiKey rg_ak_abc")) == 0
    # a JWT is no credential of this route (no jwt in its auth): the body may still hold one
    assert wanted("/any/x", form, (b"authorization", b"Bearer x.y.z")) == FORM_BODY_LIMIT
    oauth = (b"authorization", b'OAuth oauth_consumer_key="ck_x"')
    assert wanted("/any/x", form, oauth) == FORM_BODY_LIMIT  # signed with the header
    assert wanted("/any/x", form, query=b"oauth_signature=x") == FORM_BODY_LIMIT
    assert wanted("/any/x", (b"content-type", b"application/json")) == 0  # never signed
    assert wanted("/keys/x", form) == 0  # the route does not accept oauth1


# --- the ASGI middleware ----------------------------------------------------------------------


class EchoApp:
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
        await send({"type": "http.response.body", "body": body})


def asgi_env() -> tuple[httpx.AsyncClient, EchoApp, BodyHash]:
    auth, app = BodyHash(), EchoApp()
    guard = Guard(
        Policy([route(0, "/signed/**", ("POST",), auth=("signature",))]),
        {"signature": auth},
        FixedClock(T0),
        MemoryRateLimiter(),
    )
    transport = httpx.ASGITransport(app=GuardMiddleware(app, guard))
    return httpx.AsyncClient(transport=transport, base_url="http://app.test"), app, auth


async def test_asgi_reads_the_covered_body_first_and_replays_it() -> None:
    client, app, auth = asgi_env()
    async with client:
        ok = await client.post("/signed/a", content=b"hello", headers=signed(b"hello"))
        assert ok.status_code == 200 and ok.content == b"hello"
        assert auth.seen == [b"hello"] and app.bodies == [b"hello"]
        bad = await client.post("/signed/a", content=b"hellO", headers=signed(b"hello"))
        assert bad.status_code == 401 and app.bodies == [b"hello"]  # the app saw nothing
        big = b"x" * (LIMIT + 1)
        over = await client.post("/signed/a", content=big, headers=signed(big))
        assert over.status_code == 413 and len(auth.seen) == 2  # refused before any decision


# --- the gateway ------------------------------------------------------------------------------

ROUTES = """\
[[routes]]
path = "/signed/**"
methods = ["GET", "POST", "PUT"]
auth = ["signature"]
"""


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[tuple[GatewayProcess, BodyHash]]:
    from restguard import wiring

    auth = BodyHash()
    patch = pytest.MonkeyPatch()
    patch.setitem(wiring.AUTHENTICATORS, "signature", lambda parts: auth)
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("body-first") / "gw", upstream, routes=ROUTES
    ).start()
    try:
        yield gateway, auth
    finally:
        gateway.stop()
        patch.undo()


def test_gateway_forwards_exactly_the_bytes_it_verified(
    gw: tuple[GatewayProcess, BodyHash],
) -> None:
    gateway, auth = gw
    gateway.upstream.clear()
    r = httpx.post(gateway.url + "/signed/1", content=b"payload", headers=signed(b"payload"))
    assert r.status_code == 200, r.text
    assert gateway.upstream.last().body == b"payload"
    assert auth.seen[-1] == b"payload"
    # chunked, in pieces: verified whole, forwarded whole
    chunks = [b"pay", b"lo", b"ad"]
    r = httpx.post(gateway.url + "/signed/2", content=iter(chunks), headers=signed(b"payload"))
    assert r.status_code == 200 and gateway.upstream.last().body == b"payload"


def test_gateway_changed_body_never_reaches_the_upstream(
    gw: tuple[GatewayProcess, BodyHash],
) -> None:
    gateway, _ = gw
    gateway.upstream.clear()
    r = httpx.post(gateway.url + "/signed/1", content=b"tampered", headers=signed(b"payload"))
    assert r.status_code == 401
    big = b"y" * (LIMIT + 1)
    over = httpx.post(gateway.url + "/signed/1", content=big, headers=signed(big))
    assert over.status_code == 413
    assert gateway.upstream.requests == []
    # twin: the connection is still usable and the right body passes
    ok = httpx.post(gateway.url + "/signed/1", content=b"payload", headers=signed(b"payload"))
    assert ok.status_code == 200


def test_gateway_expect_continue_then_decides_on_the_whole_body(
    gw: tuple[GatewayProcess, BodyHash],
) -> None:
    gateway, _ = gw
    gateway.upstream.clear()
    digest = hashlib.sha256(b"abc").hexdigest().encode()
    head = (
        b"PUT /signed/3 HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\n"
        b"Expect: 100-continue\r\nX-Body-Sha256: " + digest + b"\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as s:
        s.sendall(head)
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 100 Continue"), first
        s.sendall(b"abc")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert gateway.upstream.last().body == b"abc"


def _exchange(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    ("method", "framing"),
    [
        (b"GET", b""),  # no framing at all: no body (RFC 9112 \u00a76.3), known from the head
        (b"POST", b""),
        (b"POST", b"Content-Length: 0\r\n"),
        (b"PUT", b"Transfer-Encoding: chunked\r\n"),  # read: an empty chunked body
    ],
)
def test_gateway_decides_a_bodiless_request_on_the_empty_body(
    gw: tuple[GatewayProcess, BodyHash], method: bytes, framing: bytes
) -> None:
    """A request without a body is decided on b"" (never on "not read"): a signature over
    the empty body passes, one claiming any other body fails, however the head frames it."""
    gateway, auth = gw
    gateway.upstream.clear()
    trailer = b"0\r\n\r\n" if b"chunked" in framing else b""
    for body, status in ((b"", b"200"), (b"x", b"401")):
        head = (
            method
            + b" /signed/5 HTTP/1.1\r\nHost: gw.test\r\n"
            + framing
            + b"X-Body-Sha256: "
            + hashlib.sha256(body).hexdigest().encode()
            + b"\r\nConnection: close\r\n\r\n"
            + trailer
        )
        answer = _exchange(gateway.port, head)
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:300]
        assert auth.seen[-1] == b""
    assert [r.body for r in gateway.upstream.requests] == [b""]
