"""Review of the ``signature`` method (issue 10, RFC 9421 + RFC 9530): one named attack per test,
each next to its valid twin, through the real gateway over raw sockets (or the embedded
``GuardMiddleware``). Every refusal is 400, 401 or 413 with the contract's JSON error and a
generic description, and the upstream (or the app) receives nothing.

Findings this file holds the code to (each test failed before its fix):

* ``test_embedded_body_without_content_length_is_covered``: the ASGI middleware judged "has a
  body" from ``Content-Length`` / ``Transfer-Encoding``; an HTTP/2 request needs neither
  (RFC 9113 §8.1.1), so a body arrived at the app that no signature covered.
* ``test_nonce_is_kept_for_the_whole_life_of_its_signature``: a nonce was kept for
  ``now + 330 s`` while a signature created ``30 s`` ahead is accepted until ``created + 301``:
  the same signed request replayed once more in the last second of its life.
* ``test_many_labels_cost_a_bounded_number_of_lookups``: every label of ``Signature-Input``
  was tried (a store read and a verification each): one 8 KiB header bought ~250 of them.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from restguard.asgi import GuardMiddleware
from restguard.cli.init import write_data_dir
from restguard.clock import FixedClock
from restguard.config import load
from restguard.credentials.apps import new_app, rotated_app
from restguard.keys.sealing import open_sealer
from restguard.store.ports import AppRecord
from restguard.store.sql import open_store
from restguard.wire import rfc9421, rfc9421_algorithms, rfc9530
from restguard.wiring import Runtime, open_runtime
from tests.attacks.wire import Response, assert_json_error, chunked, exchange, send
from tests.harness import GatewayProcess, RecordingUpstream

HOST = b"gateway.test"
ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET", "POST", "PUT"]
scopes = ["notes:write"]
auth = ["signature"]
"""
EXTRA = {"server.failed_attempts": '"100000/minute"'}
GENERIC = ("nonce", "digest", "created", "expire", "alg", "label", "covered", "keyid", "replay")


# --- apps and signing -----------------------------------------------------------------------


class App:
    def __init__(self, record: AppRecord, key: Any) -> None:
        self.record, self.key = record, key

    @property
    def keyid(self) -> str:
        return self.record.key_id

    @property
    def alg(self) -> str:
        return self.record.alg


def _insert(database_url: str, *records: AppRecord) -> None:
    async def go() -> None:
        store = open_store(database_url)
        try:
            for record in records:
                await store.apps.insert(record)
        finally:
            store.close()

    asyncio.run(go())


def make_app(gw: GatewayProcess, alg: str = "hmac-sha256") -> App:
    private: Any = None
    pem = None
    if alg == "ed25519":
        private = Ed25519PrivateKey.generate()
    elif alg == "ecdsa-p256-sha256":
        private = ec.generate_private_key(ec.SECP256R1())
    if private is not None:
        pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    sealer = open_sealer(gw.settings.master_key_path)
    record, secret = new_app(
        "billing", ("notes:write",), alg, pem, now=datetime.now(UTC), sealer=sealer
    )
    _insert(gw.settings.database_url, record)
    if secret is not None:
        private = base64.urlsafe_b64decode(secret + "=")
    return App(record, private)


def _split(target: bytes) -> tuple[str, bytes]:
    path, _, query = target.partition(b"?")
    return path.decode(), query


def sign(
    app: App,
    method: str,
    target: bytes,
    *,
    body: bytes = b"",
    host: bytes = HOST,
    headers: Sequence[tuple[bytes, bytes]] = (),
    components: Sequence[Any] | None = None,
    created: int | None = None,
    expires: int | None = None,
    nonce: str | None = "fresh",
    label: str = "sig1",
    alg: str | None = None,
    keyid: str | None = None,
    tag: str | None = None,
    digest: bool = True,
) -> list[tuple[bytes, bytes]]:
    """The headers of ``method target`` signed by ``app`` (Content-Digest, Signature-Input,
    Signature); ``host`` etc. are what is *signed*, whatever is then sent."""
    extra = list(headers)
    if body and digest:
        extra.append((b"content-digest", rfc9530.content_digest(body).encode()))
    path, query = _split(target)
    message = rfc9421.Message(
        method=method,
        scheme="http",
        authority=host.decode(),
        path=path,
        query=query,
        headers=[(b"host", host), *extra],
    )
    if components is None:
        components = ["@method", "@authority", "@path"]
        components += ["@query"] if query else []
        components += ["content-digest"] if body and digest else []
    sig_input, signature = rfc9421_algorithms.sign_request(
        message,
        label=label,
        keyid=keyid or app.keyid,
        alg=app.alg,
        key=app.key,
        components=list(components),
        created=int(time.time()) if created is None else created,
        expires=expires,
        nonce=secrets.token_urlsafe(12) if nonce == "fresh" else nonce,
        tag=tag,
        include_alg=alg is None,
    )
    if alg is not None:  # signed with the app's key, whatever ``alg`` says
        sig_input += f';alg="{alg}"'.encode()
        sig_input, signature = _resign(app, message, sig_input, label)
    return [*extra, (b"signature-input", sig_input), (b"signature", signature)]


def _resign(
    app: App, message: rfc9421.Message, sig_input: bytes, label: str
) -> tuple[bytes, bytes]:
    parsed = rfc9421.parse_signature_input([sig_input])[label]
    raw = rfc9421_algorithms.sign(app.alg, app.key, rfc9421.signature_base(parsed, message))
    return sig_input, label.encode() + b"=:" + base64.b64encode(raw) + b":"


def raw(
    method: str,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    body: bytes = b"",
    host: bytes | None = HOST,
    length: bool = True,
) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1"]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += [name + b": " + value for name, value in headers]
    if body and length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def replace_header(
    headers: Sequence[tuple[bytes, bytes]], name: bytes, value: bytes | None
) -> list[tuple[bytes, bytes]]:
    out = [(k, v) for k, v in headers if k != name]
    return out + ([(name, value)] if value is not None else [])


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes:
    return next(v for k, v in headers if k == name)


# --- assertions -----------------------------------------------------------------------------


def refused(gw: GatewayProcess, data: bytes, *statuses: int) -> Response:
    """``data`` is refused with one of ``statuses`` (401 by default), the contract's JSON error
    with a generic description, and nothing at the upstream."""
    statuses = statuses or (401,)
    before = len(gw.upstream.requests)
    response = send(gw.port, data)
    assert response.status in statuses, (response.status, response.body[:300])
    body = assert_json_error(response, response.status)
    description = body["error_description"].lower()
    assert not any(word in description for word in GENERIC), description
    if response.status == 401:
        assert any("Signature" in v for v in response.values("www-authenticate"))
    time.sleep(0.05)
    assert gw.upstream.requests[before:] == [], "the upstream received a refused request"
    return response


def accepted(gw: GatewayProcess, data: bytes, *, body: bytes = b"") -> None:
    """``data`` is forwarded once, with exactly ``body``, without the signature fields."""
    before = len(gw.upstream.requests)
    response = send(gw.port, data)
    assert response.status == 200, (response.status, response.body[:300])
    got = gw.upstream.requests[before:]
    assert len(got) == 1, got
    assert got[0].body == body
    assert got[0].header("x-restguard-auth-method") == "signature"
    assert got[0].header("signature") is None and got[0].header("signature-input") is None


# --- the gateway ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("sigattack") / "gw", upstream, routes=ROUTES, extra=EXTRA
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def app(gw: GatewayProcess) -> App:
    return make_app(gw)


BODY = b'{"pay": 10}'


def test_valid_twins_of_every_algorithm_are_forwarded(gw: GatewayProcess, app: App) -> None:
    accepted(gw, raw("GET", b"/notes/1?a=1", sign(app, "GET", b"/notes/1?a=1")))
    accepted(
        gw, raw("POST", b"/notes", sign(app, "POST", b"/notes", body=BODY), body=BODY), body=BODY
    )
    for alg in ("ed25519", "ecdsa-p256-sha256"):
        other = make_app(gw, alg)
        data = raw("POST", b"/notes", sign(other, "POST", b"/notes", body=BODY), body=BODY)
        accepted(gw, data, body=BODY)


# replays


def test_replay_of_the_same_signed_request(gw: GatewayProcess, app: App) -> None:
    data = raw("POST", b"/notes", sign(app, "POST", b"/notes", body=BODY), body=BODY)
    accepted(gw, data, body=BODY)
    refused(gw, data)


def test_replay_of_a_nonce_under_a_new_signature(gw: GatewayProcess, app: App) -> None:
    nonce = secrets.token_urlsafe(12)
    accepted(gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", nonce=nonce)))
    refused(gw, raw("GET", b"/notes/2", sign(app, "GET", b"/notes/2", nonce=nonce)))
    # the same nonce by another app is that app's own
    accepted(gw, raw("GET", b"/notes/2", sign(make_app(gw), "GET", b"/notes/2", nonce=nonce)))


def test_concurrent_replays_of_one_signed_request(gw: GatewayProcess, app: App) -> None:
    data = raw("POST", b"/notes", sign(app, "POST", b"/notes", body=BODY), body=BODY)
    barrier = threading.Barrier(16)

    def one(_: int) -> int:
        barrier.wait()
        return send(gw.port, data).status

    with ThreadPoolExecutor(16) as pool:
        statuses = sorted(pool.map(one, range(16)))
    assert statuses == [200] + [401] * 15, statuses
    assert len(gw.upstream.requests) == 1


def test_missing_nonce(gw: GatewayProcess, app: App) -> None:
    refused(gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", nonce=None)))


def forge(app: App, method: str, target: bytes, params: str) -> list[tuple[bytes, bytes]]:
    """A correct signature over ``@method @authority @path`` whose Signature-Input carries
    ``params`` as written, however large (the signer here refuses over 8 KiB)."""
    value = f'sig1=("@method" "@authority" "@path"){params}'.encode()
    parsed = rfc9421.parse_signature_input([value], limit=1 << 20)["sig1"]
    path, query = _split(target)
    message = rfc9421.Message(method, "http", HOST.decode(), path, query, [(b"host", HOST)])
    signature = rfc9421_algorithms.sign(app.alg, app.key, rfc9421.signature_base(parsed, message))
    return [
        (b"signature-input", value),
        (b"signature", b"sig1=:" + base64.b64encode(signature) + b":"),
    ]


def test_nonce_of_10_kib(gw: GatewayProcess, app: App) -> None:
    now = int(time.time())
    common = f';created={now};keyid="{app.keyid}"'
    accepted(
        gw,
        raw(
            "GET",
            b"/notes/1",
            forge(app, "GET", b"/notes/1", common + ';nonce="' + "n" * 128 + '"'),
        ),
    )
    refused(
        gw,
        raw(
            "GET",
            b"/notes/1",
            forge(app, "GET", b"/notes/1", common + ';nonce="' + "m" * 129 + '"'),
        ),
    )
    refused(
        gw,
        raw(
            "GET",
            b"/notes/1",
            forge(app, "GET", b"/notes/1", common + ';nonce="' + "k" * 10240 + '"'),
        ),
    )


# time


def test_missing_created(gw: GatewayProcess, app: App) -> None:
    headers = sign(app, "GET", b"/notes/1")
    value = header(headers, b"signature-input")
    stripped = value.replace(b";created=%d" % int(value.split(b"created=")[1][:10]), b"")
    assert b"created" not in stripped
    refused(gw, raw("GET", b"/notes/1", replace_header(headers, b"signature-input", stripped)))


def test_stale_created(gw: GatewayProcess, app: App) -> None:
    now = int(time.time())
    accepted(gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", created=now - 280)))
    refused(gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", created=now - 320)))


def test_created_far_in_the_future(gw: GatewayProcess, app: App) -> None:
    now = int(time.time())
    accepted(gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", created=now + 10)))
    refused(gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", created=now + 60)))
    refused(gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", created=now + 10**9)))


def test_expires_in_the_past(gw: GatewayProcess, app: App) -> None:
    now = int(time.time())
    ok = sign(app, "GET", b"/notes/1", created=now - 5, expires=now + 60)
    accepted(gw, raw("GET", b"/notes/1", ok))
    refused(
        gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", created=now - 5, expires=now - 1))
    )


# coverage


@pytest.mark.parametrize("left_out", ["@method", "@authority", "@path", "@query", "content-digest"])
def test_component_missing_from_coverage(gw: GatewayProcess, app: App, left_out: str) -> None:
    target = b"/notes/1?a=1"
    full = ["@method", "@authority", "@path", "@query", "content-digest"]
    components = [c for c in full if c != left_out]
    ok = sign(app, "PUT", target, body=BODY, components=full)
    accepted(gw, raw("PUT", target, ok, body=BODY), body=BODY)
    bad = sign(app, "PUT", target, body=BODY, components=components)
    refused(gw, raw("PUT", target, bad, body=BODY))


@pytest.mark.parametrize(
    "field,signed,sent",
    [
        ("method", "GET", "POST"),
        ("path", "/notes/1", "/notes/2"),
        ("authority", "other.test", "gateway.test"),
        ("query", "/notes/1?a=1", "/notes/1?a=2"),
    ],
)
def test_signature_over_another_request(
    gw: GatewayProcess, app: App, field: str, signed: str, sent: str
) -> None:
    method, target = "GET", b"/notes/1"
    kw: dict[str, Any] = {}
    if field == "method":
        headers = sign(app, signed, target)
        method = sent
    elif field == "path" or field == "query":
        headers = sign(
            app, method, signed.encode(), components=["@method", "@authority", "@path", "@query"]
        )
        target = sent.encode()
    else:
        headers = sign(app, method, target, host=signed.encode())
        kw["host"] = sent.encode()
    refused(gw, raw(method, target, headers, **kw))


def test_host_header_swap(gw: GatewayProcess, app: App) -> None:
    headers = sign(app, "GET", b"/notes/1", host=b"api.internal:8080")
    accepted(gw, raw("GET", b"/notes/1", headers, host=b"API.internal:8080"))
    headers = sign(app, "GET", b"/notes/1", host=b"api.internal:8080")
    refused(gw, raw("GET", b"/notes/1", headers, host=b"api.internal:8081"))
    headers = sign(app, "GET", b"/notes/1", host=b"api.internal")
    refused(gw, raw("GET", b"/notes/1", headers, host=b"evil.test"))
    # the default port may be written or not (RFC 9110 §4.2.3): the same authority
    headers = sign(app, "GET", b"/notes/1", host=b"api.internal")
    accepted(gw, raw("GET", b"/notes/1", headers, host=b"api.internal:80"))


def test_duplicate_host_headers(gw: GatewayProcess, app: App) -> None:
    headers = sign(app, "GET", b"/notes/1")
    refused(gw, raw("GET", b"/notes/1", [(b"Host", b"evil.test"), *headers]), 400, 401)
    headers = sign(app, "GET", b"/notes/1")
    refused(gw, raw("GET", b"/notes/1", [*headers, (b"Host", HOST)]), 400, 401)


def test_query_reordered(gw: GatewayProcess, app: App) -> None:
    headers = sign(app, "GET", b"/notes/1?a=1&b=2")
    refused(gw, raw("GET", b"/notes/1?b=2&a=1", headers))
    accepted(gw, raw("GET", b"/notes/1?a=1&b=2", headers))


def test_query_percent_encoding_varied(gw: GatewayProcess, app: App) -> None:
    headers = sign(app, "GET", b"/notes/1?q=a%20b")
    for sent in (
        b"/notes/1?q=a+b",
        b"/notes/1?q=a%2520b",
        b"/notes/1?q=%61%20b",
        b"/notes/1?q=a%20B",
    ):
        refused(gw, raw("GET", sent, headers))
    headers = sign(app, "GET", b"/notes/1", components=["@method", "@authority", "@path"])
    refused(gw, raw("GET", b"/notes/1?admin=1", headers))  # a query added to an unsigned one
    refused(gw, raw("GET", b"/notes/%31", sign(app, "GET", b"/notes/1")))  # path as sent


def test_component_listed_twice(gw: GatewayProcess, app: App) -> None:
    headers = sign(app, "GET", b"/notes/1")
    value = header(headers, b"signature-input").replace(b'"@method"', b'"@method" "@method"', 1)
    refused(gw, raw("GET", b"/notes/1", replace_header(headers, b"signature-input", value)))


def test_uppercase_component_names(gw: GatewayProcess, app: App) -> None:
    for name in (b'"@Method"', b'"@METHOD"'):
        headers = sign(app, "GET", b"/notes/1")
        value = header(headers, b"signature-input").replace(b'"@method"', name, 1)
        refused(gw, raw("GET", b"/notes/1", replace_header(headers, b"signature-input", value)))


def test_at_named_fake_headers(gw: GatewayProcess, app: App) -> None:
    # a header whose name starts with "@" is not a field name (RFC 9110 §5.1): refused
    headers = sign(app, "GET", b"/notes/1")
    refused(gw, raw("GET", b"/notes/1", [(b"@method", b"POST"), *headers]), 400, 401)
    # an unknown derived component is not read from a field of that name
    headers = sign(app, "GET", b"/notes/1")
    value = header(headers, b"signature-input").replace(b'"@path"', b'"@path" "@fake"', 1)
    refused(gw, raw("GET", b"/notes/1", replace_header(headers, b"signature-input", value)))
    # "@signature-params" and "@status" cannot be covered
    for name in (b'"@signature-params"', b'"@status"'):
        headers = sign(app, "GET", b"/notes/1")
        value = header(headers, b"signature-input").replace(b'"@path"', b'"@path" ' + name, 1)
        refused(gw, raw("GET", b"/notes/1", replace_header(headers, b"signature-input", value)))


# body and digest


def test_body_changed(gw: GatewayProcess, app: App) -> None:
    headers = sign(app, "POST", b"/notes", body=BODY)
    refused(gw, raw("POST", b"/notes", headers, body=b'{"pay": 99}'))
    accepted(gw, raw("POST", b"/notes", headers, body=BODY), body=BODY)


def test_body_with_digest_absent(gw: GatewayProcess, app: App) -> None:
    # content-digest covered, the field not sent: the base cannot be built
    headers = sign(app, "POST", b"/notes", body=BODY)
    refused(gw, raw("POST", b"/notes", replace_header(headers, b"content-digest", None), body=BODY))
    # a body, neither covered nor digested
    headers = sign(app, "POST", b"/notes", body=BODY, digest=False)
    refused(gw, raw("POST", b"/notes", headers, body=BODY))


def test_content_digest_unsupported_algorithm_only(gw: GatewayProcess, app: App) -> None:
    import hashlib

    md5 = base64.b64encode(hashlib.md5(BODY).digest())
    headers = sign(
        app,
        "POST",
        b"/notes",
        body=BODY,
        digest=False,
        headers=[(b"content-digest", b"md5=:" + md5 + b":")],
        components=["@method", "@authority", "@path", "content-digest"],
    )
    refused(gw, raw("POST", b"/notes", headers, body=BODY))


def test_content_digest_sha256_right_sha512_wrong(gw: GatewayProcess, app: App) -> None:
    right = rfc9530.content_digest(BODY, "sha-256").encode()
    wrong = rfc9530.content_digest(b"other", "sha-512").encode()
    good512 = rfc9530.content_digest(BODY, "sha-512").encode()
    cover = ["@method", "@authority", "@path", "content-digest"]
    both = sign(
        app,
        "POST",
        b"/notes",
        body=BODY,
        digest=False,
        headers=[(b"content-digest", right + b", " + good512)],
        components=cover,
    )
    accepted(gw, raw("POST", b"/notes", both, body=BODY), body=BODY)
    headers = sign(
        app,
        "POST",
        b"/notes",
        body=BODY,
        digest=False,
        headers=[(b"content-digest", right + b", " + wrong)],
        components=cover,
    )
    refused(gw, raw("POST", b"/notes", headers, body=BODY))
    # the same key twice over two lines is a duplicate
    headers = sign(
        app,
        "POST",
        b"/notes",
        body=BODY,
        digest=False,
        headers=[(b"content-digest", right), (b"content-digest", right)],
        components=cover,
    )
    refused(gw, raw("POST", b"/notes", headers, body=BODY))


def test_chunked_body_with_trailers(gw: GatewayProcess, app: App) -> None:
    headers = [*sign(app, "POST", b"/notes", body=BODY), (b"Transfer-Encoding", b"chunked")]
    body = chunked(BODY, 4)[: -len(b"\r\n")] + b"X-Trailer: 1\r\n\r\n"
    accepted(gw, raw("POST", b"/notes", headers, body=body, length=False), body=BODY)
    assert gw.upstream.last().header("x-trailer") is None
    # changed body, chunked
    headers = [*sign(app, "POST", b"/notes", body=BODY), (b"Transfer-Encoding", b"chunked")]
    refused(gw, raw("POST", b"/notes", headers, body=chunked(b'{"pay": 99}', 4), length=False))
    # the digest sent as a trailer only: it is not a header, so the covered field is absent
    headers = [*sign(app, "POST", b"/notes", body=BODY), (b"Transfer-Encoding", b"chunked")]
    trailer = b"Content-Digest: " + header(headers, b"content-digest") + b"\r\n\r\n"
    headers = replace_header(headers, b"content-digest", None)
    refused(gw, raw("POST", b"/notes", headers, body=chunked(BODY, 4)[:-2] + trailer, length=False))


def test_body_over_the_signed_body_limit(gw: GatewayProcess, app: App) -> None:
    big = b"x" * (1024 * 1024 + 1)
    headers = sign(app, "POST", b"/notes", body=big)
    refused(gw, raw("POST", b"/notes", headers, body=big), 413)
    headers = [*sign(app, "POST", b"/notes", body=big), (b"Transfer-Encoding", b"chunked")]
    refused(gw, raw("POST", b"/notes", headers, body=chunked(big, 65536), length=False), 413)
    fits = b"x" * (1024 * 1024)
    headers = sign(app, "POST", b"/notes", body=fits)
    accepted(gw, raw("POST", b"/notes", headers, body=fits), body=fits)


def test_expect_100_continue_with_a_signed_body(gw: GatewayProcess, app: App) -> None:
    import socket

    for body, status in ((BODY, 200), (b'{"pay": 99}', 401)):
        before = len(gw.upstream.requests)
        hdrs = [*sign(app, "POST", b"/notes", body=BODY), (b"Expect", b"100-continue")]
        head = raw("POST", b"/notes", hdrs, body=BODY)[: -len(BODY)]
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(head)
            interim = s.recv(65536)
            assert interim.startswith(b"HTTP/1.1 100"), interim
            assert len(gw.upstream.requests) == before  # nothing forwarded before the body
            s.sendall(body)
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
        assert data.split(b" ")[1] == str(status).encode(), data
        time.sleep(0.05)
        assert len(gw.upstream.requests) == before + (status == 200)


def test_content_length_zero_with_content_digest_covered(gw: GatewayProcess, app: App) -> None:
    cover = ["@method", "@authority", "@path", "content-digest"]
    empty = rfc9530.content_digest(b"").encode()
    ok = sign(
        app, "POST", b"/notes", digest=False, headers=[(b"content-digest", empty)], components=cover
    )
    accepted(gw, raw("POST", b"/notes", [*ok, (b"Content-Length", b"0")]))
    # a digest of a body that is not sent
    bad = sign(app, "POST", b"/notes", body=BODY, components=cover)
    refused(gw, raw("POST", b"/notes", [*bad, (b"Content-Length", b"0")]))


def test_smuggling_with_a_signed_body(gw: GatewayProcess, app: App) -> None:
    inner = b"GET /notes/9 HTTP/1.1\r\nHost: gateway.test\r\n\r\n"
    body = b"0\r\n\r\n" + inner
    headers = sign(app, "POST", b"/notes", body=body)
    data = raw(
        "POST",
        b"/notes",
        [*headers, (b"Content-Length", b"%d" % len(body)), (b"Transfer-Encoding", b"chunked")],
        body=body,
        length=False,
    )
    before = len(gw.upstream.requests)
    got = exchange(gw.port, data, responses=2)
    assert got and got[0].status == 400, [r.status for r in got]
    assert all(r.status in (400, 401) for r in got)
    time.sleep(0.05)
    assert gw.upstream.requests[before:] == []
    # Transfer-Encoding twice, or not chunked last
    for te in (
        [(b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")],
        [(b"Transfer-Encoding", b"chunked, identity")],
    ):
        refused(gw, raw("POST", b"/notes", [*headers, *te], body=chunked(body), length=False), 400)


# parameters and algorithms


def test_alg_mismatch(gw: GatewayProcess, app: App) -> None:
    refused(gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", alg="ed25519")))
    refused(gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", alg="hmac-sha512")))
    accepted(gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", alg="hmac-sha256")))


def test_ecdsa_der_signature_instead_of_raw(gw: GatewayProcess) -> None:
    ecdsa = make_app(gw, "ecdsa-p256-sha256")
    headers = sign(ecdsa, "GET", b"/notes/1")
    parsed = rfc9421.parse_signature_input([header(headers, b"signature-input")])["sig1"]
    message = rfc9421.Message("GET", "http", HOST.decode(), "/notes/1", b"", [(b"host", HOST)])
    der = ecdsa.key.sign(rfc9421.signature_base(parsed, message), ec.ECDSA(hashes.SHA256()))
    bad = replace_header(headers, b"signature", b"sig1=:" + base64.b64encode(der) + b":")
    refused(gw, raw("GET", b"/notes/1", bad))
    accepted(gw, raw("GET", b"/notes/1", headers))


def test_duplicate_parameters(gw: GatewayProcess, app: App) -> None:
    headers = sign(app, "GET", b"/notes/1")
    value = header(headers, b"signature-input")
    for dup in (
        b';alg="hmac-sha256"',
        b';nonce="x"',
        b";created=1",
        b';keyid="app_0000000000000000"',
    ):
        refused(
            gw, raw("GET", b"/notes/1", replace_header(headers, b"signature-input", value + dup))
        )
    # a duplicate label over two lines (Signature-Input and Signature)
    refused(gw, raw("GET", b"/notes/1", [*headers, (b"signature-input", value)]))
    refused(gw, raw("GET", b"/notes/1", [*headers, (b"signature", header(headers, b"signature"))]))


def test_tag_parameter_is_signed(gw: GatewayProcess, app: App) -> None:
    headers = sign(app, "GET", b"/notes/1", tag="restguard")
    changed = header(headers, b"signature-input").replace(b'tag="restguard"', b'tag="other"')
    refused(gw, raw("GET", b"/notes/1", replace_header(headers, b"signature-input", changed)))
    accepted(gw, raw("GET", b"/notes/1", headers))


@pytest.mark.parametrize(
    "signature_input,signature",
    [
        (b"sig1=(@method);created=1", None),  # a token, not a string
        (b'sig1=("@method" "@path";created=1', None),  # unterminated
        (b'sig1="@method";created=1', None),  # not an inner list
        (b'sig1=("@method");created=1.5', None),  # a decimal
        (b'sig1=("@method");created=-1', None),
        (b'sig1=("@method");created="1"', None),
        (b'sig1=("@method");created=1;nonce=abc', None),  # a token nonce
        (b'sig1=("@method");created=1,', None),  # trailing comma
        (b'SIG1=("@method");created=1', None),  # upper-case key
        (b'sig1=("@m\xe9thod");created=1', None),  # not ASCII
        (None, b"sig1=:not base64!:"),
        (None, b"sig1=:AAAA"),
        (None, b'sig1="AAAA"'),
        (None, b"sig1=:AAA=A:"),
    ],
)
def test_malformed_structured_fields(
    gw: GatewayProcess, app: App, signature_input: bytes | None, signature: bytes | None
) -> None:
    headers = sign(app, "GET", b"/notes/1")
    if signature_input is not None:
        headers = replace_header(headers, b"signature-input", signature_input)
    if signature is not None:
        headers = replace_header(headers, b"signature", signature)
    refused(gw, raw("GET", b"/notes/1", headers), 400, 401)


def test_huge_signature_input_over_the_field_cap(gw: GatewayProcess, app: App) -> None:
    headers = sign(app, "GET", b"/notes/1")
    value = header(headers, b"signature-input") + b';pad="' + b"p" * 8200 + b'"'
    refused(gw, raw("GET", b"/notes/1", replace_header(headers, b"signature-input", value)))
    # over the gateway's header cap altogether: refused before anything
    value = header(headers, b"signature-input") + b';pad="' + b"p" * 40000 + b'"'
    refused(
        gw, raw("GET", b"/notes/1", replace_header(headers, b"signature-input", value)), 400, 431
    )


# labels and keys


def test_unknown_label(gw: GatewayProcess, app: App) -> None:
    # a Signature-Input label without its Signature member
    headers = sign(app, "GET", b"/notes/1")
    renamed = header(headers, b"signature").replace(b"sig1=", b"sig2=", 1)
    refused(gw, raw("GET", b"/notes/1", replace_header(headers, b"signature", renamed)))
    # a Signature member without its Signature-Input: nothing to verify it with
    headers = sign(app, "GET", b"/notes/1")
    refused(
        gw, raw("GET", b"/notes/1", replace_header(headers, b"signature-input", None)), 400, 401
    )
    refused(gw, raw("GET", b"/notes/1", replace_header(headers, b"signature", None)), 400, 401)


def test_signature_by_app_a_with_the_keyid_of_app_b(gw: GatewayProcess, app: App) -> None:
    other = make_app(gw)
    refused(gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", keyid=other.keyid)))
    refused(
        gw, raw("GET", b"/notes/1", sign(app, "GET", b"/notes/1", keyid="app_0000000000000000"))
    )
    accepted(gw, raw("GET", b"/notes/1", sign(other, "GET", b"/notes/1")))


def test_several_labels_first_unknown_key(gw: GatewayProcess, app: App) -> None:
    stranger = App(dataclasses.replace(app.record, key_id="app_zzzzzzzzzzzzzzzz"), app.key)

    def two(second: App, keyid: str | None = None) -> list[tuple[bytes, bytes]]:
        first = sign(stranger, "GET", b"/notes/1", label="proxy")
        mine = sign(second, "GET", b"/notes/1", label="sig1", keyid=keyid)
        return [
            (
                b"signature-input",
                header(first, b"signature-input") + b", " + header(mine, b"signature-input"),
            ),
            (b"signature", header(first, b"signature") + b", " + header(mine, b"signature")),
        ]

    accepted(gw, raw("GET", b"/notes/1", two(app)))
    wrong = App(app.record, b"w" * 32)
    refused(gw, raw("GET", b"/notes/1", two(wrong)))


def test_revoked_app_is_refused_within_a_second(gw: GatewayProcess) -> None:
    victim = make_app(gw)
    accepted(gw, raw("GET", b"/notes/1", sign(victim, "GET", b"/notes/1")))

    async def revoke() -> None:
        store = open_store(gw.settings.database_url)
        try:
            await store.apps.revoke(victim.keyid, datetime.now(UTC))
        finally:
            store.close()

    asyncio.run(revoke())
    time.sleep(1.1)
    refused(gw, raw("GET", b"/notes/1", sign(victim, "GET", b"/notes/1")))


def test_rotation_grace_then_after(gw: GatewayProcess) -> None:
    old = make_app(gw)
    sealer = open_sealer(gw.settings.master_key_path)
    new_record, secret = rotated_app(old.record, None, now=datetime.now(UTC), sealer=sealer)
    assert secret is not None
    new = App(new_record, base64.urlsafe_b64decode(secret + "="))

    async def rotate() -> None:
        store = open_store(gw.settings.database_url)
        try:
            grace = datetime.now(UTC) + timedelta(seconds=2)
            await store.apps.rotate(old.keyid, new_record, grace)
        finally:
            store.close()

    asyncio.run(rotate())
    time.sleep(1.05)  # (the cache of the old record is gone)
    accepted(gw, raw("GET", b"/notes/1", sign(old, "GET", b"/notes/1")))
    accepted(gw, raw("GET", b"/notes/1", sign(new, "GET", b"/notes/1")))
    time.sleep(2.2)
    refused(gw, raw("GET", b"/notes/1", sign(old, "GET", b"/notes/1")))
    accepted(gw, raw("GET", b"/notes/1", sign(new, "GET", b"/notes/1")))
    # the new key under the old keyid and the reverse
    refused(gw, raw("GET", b"/notes/1", sign(new, "GET", b"/notes/1", keyid=old.keyid)))
    refused(gw, raw("GET", b"/notes/1", sign(old, "GET", b"/notes/1", keyid=new.keyid)))


# --- two instances on one PostgreSQL database ------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("redis", ["", "redis://127.0.0.1:6379/0"], ids=["database", "redis"])
def test_nonce_replayed_across_two_instances(
    tmp_path: Path, upstream: RecordingUpstream, postgres_url: str, redis: str
) -> None:
    # the nonces live in the database, or in Redis when it is configured
    shared_keys = {
        **EXTRA,
        "storage.redis": json.dumps(redis),
        "storage.redis_prefix": json.dumps(f"rg-test-{secrets.token_hex(6)}:"),
    }
    one = GatewayProcess(
        tmp_path / "a", upstream, routes=ROUTES, database_url=postgres_url, extra=shared_keys
    ).start()
    try:
        two = GatewayProcess(
            tmp_path / "b",
            upstream,
            routes=ROUTES,
            database_url=postgres_url,
            extra={
                **shared_keys,
                "keys.master_key": json.dumps(str(one.settings.master_key_path)),
            },
        ).start()
        try:
            shared = make_app(one)
            for _ in range(5):
                data = raw("POST", b"/notes", sign(shared, "POST", b"/notes", body=BODY), body=BODY)
                before = len(upstream.requests)
                barrier = threading.Barrier(8)

                def hit(i: int, data: bytes = data, barrier: threading.Barrier = barrier) -> int:
                    barrier.wait()
                    return send((one, two)[i % 2].port, data).status

                with ThreadPoolExecutor(8) as pool:
                    statuses = sorted(pool.map(hit, range(8)))
                assert statuses == [200] + [401] * 7, statuses
                assert len(upstream.requests) == before + 1
        finally:
            two.stop()
    finally:
        one.stop()


# --- findings: the nonce's lifetime and the cost of many labels ------------------------------


APP_ROUTES = ROUTES


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[tuple[Runtime, FixedClock]]:
    config = write_data_dir(tmp_path / "data", routes=APP_ROUTES)
    clock = FixedClock(datetime(2030, 1, 1, 0, 0, 0, 200_000, tzinfo=UTC))
    rt = await open_runtime(load(config), clock=clock)
    try:
        yield rt, clock
    finally:
        rt.close()


async def _runtime_app(rt: Runtime) -> App:
    record, secret = new_app(
        "billing",
        ("notes:write",),
        "hmac-sha256",
        None,
        now=rt.clock.now() - timedelta(days=1),
        sealer=rt.sealer,
    )
    await rt.store.apps.insert(record)
    assert secret is not None
    return App(record, base64.urlsafe_b64decode(secret + "="))


class Recorder:
    """A plain ASGI app that records what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope, body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(
    middleware: GuardMiddleware,
    method: str,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    chunks: Sequence[bytes] = (b"",),
    *,
    http_version: str = "1.1",
) -> int:
    path, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path.decode(),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", HOST), *[(k.lower(), v) for k, v in headers]],
        "client": ("203.0.113.9", 40000),
        "server": ("gateway.test", 80),
    }
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    status: list[int] = []

    async def send_(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await middleware(scope, receive, send_)
    return status[0]


async def test_nonce_is_kept_for_the_whole_life_of_its_signature(
    runtime: tuple[Runtime, FixedClock],
) -> None:
    rt, clock = runtime
    signer = await _runtime_app(rt)
    app = Recorder()
    middleware = GuardMiddleware(app, rt)
    now = int(clock.now().timestamp())
    # a client whose clock is 30 s ahead (the accepted skew)
    headers = sign(signer, "GET", b"/notes/1", created=now + 30)
    assert await call(middleware, "GET", b"/notes/1", headers) == 200
    assert await call(middleware, "GET", b"/notes/1", headers) == 401
    for step in (300, 29, 0.5, 0.2):  # up to 329.9 s later: the signature is still accepted
        clock.advance(step)
        assert await call(middleware, "GET", b"/notes/1", headers) == 401, clock.now()
    # 330.9 s: a nonce kept for "now + 330 s" is gone, yet the signature is still accepted
    # (created + 300 at whole seconds): its nonce must outlive it
    clock.advance(1)
    assert await call(middleware, "GET", b"/notes/1", headers) == 401
    clock.advance(1)  # 331.9 s: the signature itself is too old
    assert await call(middleware, "GET", b"/notes/1", headers) == 401
    assert len(app.calls) == 1


class CountingApps:
    def __init__(self, inner: Any) -> None:
        self.inner, self.reads = inner, 0

    async def get(self, key_id: str) -> AppRecord | None:
        self.reads += 1
        return await self.inner.get(key_id)


async def test_many_labels_cost_a_bounded_number_of_lookups(
    runtime: tuple[Runtime, FixedClock],
) -> None:
    rt, clock = runtime
    signer = await _runtime_app(rt)
    auth: Any = rt.guard.authenticators["signature"]
    counting = CountingApps(rt.store.apps)  # every read the app cache makes, counted
    auth._apps._cache._load = counting.get
    app = Recorder()
    middleware = GuardMiddleware(app, rt)
    now = int(clock.now().timestamp())
    inputs, sigs = [], []
    for i in range(130):
        inputs.append(f'l{i}=();created={now};keyid="app_{i:016d}"'.encode())
        sigs.append(f"l{i}=:AAAA:".encode())
    mine = sign(signer, "GET", b"/notes/1", label="sig1", created=now)
    headers = [
        (b"signature-input", b", ".join([*inputs, header(mine, b"signature-input")])),
        (b"signature", b", ".join([*sigs, header(mine, b"signature")])),
    ]
    assert len(headers[0][1]) < 8192
    assert await call(middleware, "GET", b"/notes/1", headers) == 401
    assert counting.reads <= 8, counting.reads
    assert app.calls == []


# --- embedded: GuardMiddleware in front of a plain ASGI app ---------------------------------


async def test_embedded_valid_body_is_replayed_exactly(runtime: tuple[Runtime, FixedClock]) -> None:
    rt, clock = runtime
    signer = await _runtime_app(rt)
    app = Recorder()
    middleware = GuardMiddleware(app, rt)
    created = int(clock.now().timestamp())
    headers = sign(signer, "POST", b"/notes", body=BODY, created=created)
    length = [(b"content-length", b"%d" % len(BODY))]
    assert (
        await call(middleware, "POST", b"/notes", [*headers, *length], [BODY[:3], BODY[3:]]) == 200
    )
    assert app.calls[-1][1] == BODY
    # a changed body, or the same one replayed, never reaches the app
    headers = sign(signer, "POST", b"/notes", body=BODY, created=created)
    assert await call(middleware, "POST", b"/notes", [*headers, *length], [b'{"pay": 99}']) == 401
    assert await call(middleware, "POST", b"/notes", [*headers, *length], [BODY]) == 200
    assert await call(middleware, "POST", b"/notes", [*headers, *length], [BODY]) == 401
    big = b"x" * (1024 * 1024 + 1)
    headers = sign(signer, "POST", b"/notes", body=big, created=created)
    assert (
        await call(middleware, "POST", b"/notes", headers, [big[:10], big[10:]], http_version="2")
        == 413
    )
    assert len(app.calls) == 2


async def test_embedded_bad_signature_never_reaches_the_app(
    runtime: tuple[Runtime, FixedClock],
) -> None:
    rt, clock = runtime
    signer = await _runtime_app(rt)
    app = Recorder()
    middleware = GuardMiddleware(app, rt)
    created = int(clock.now().timestamp())
    wrong = App(signer.record, b"w" * 32)
    assert (
        await call(middleware, "GET", b"/notes/1", sign(wrong, "GET", b"/notes/1", created=created))
        == 401
    )
    stale = sign(signer, "GET", b"/notes/1", created=created - 3600)
    assert await call(middleware, "GET", b"/notes/1", stale) == 401
    other_host = sign(signer, "GET", b"/notes/1", host=b"other.test", created=created)
    assert await call(middleware, "GET", b"/notes/1", other_host) == 401
    assert app.calls == []


async def test_embedded_body_without_content_length_is_covered(
    runtime: tuple[Runtime, FixedClock],
) -> None:
    """HTTP/2 (RFC 9113 §8.1.1) sends a body with neither Content-Length nor Transfer-Encoding:
    a signature that covers no body must not let one through to the app."""
    rt, clock = runtime
    signer = await _runtime_app(rt)
    app = Recorder()
    middleware = GuardMiddleware(app, rt)
    created = int(clock.now().timestamp())
    headers = sign(signer, "POST", b"/notes", created=created)  # no body signed
    status = await call(middleware, "POST", b"/notes", headers, [b'{"pay": 99}'], http_version="2")
    assert status == 401
    assert app.calls == []
    # the twin: a covered body without Content-Length is read, checked and replayed
    headers = sign(signer, "POST", b"/notes", body=BODY, created=created)
    assert await call(middleware, "POST", b"/notes", headers, [BODY], http_version="2") == 200
    assert app.calls[-1][1] == BODY
    # and a signed bodiless request with no body still passes
    headers = sign(signer, "POST", b"/notes", created=created)
    assert await call(middleware, "POST", b"/notes", headers, [b""], http_version="2") == 200
