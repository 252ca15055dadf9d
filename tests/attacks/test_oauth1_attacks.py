"""Attacks on the ``oauth1`` method (issue 11, RFC 5849 §3): one named test per case of the
issue's "Bad input" list, each next to its valid twin, through the real gateway over raw sockets
(TLS ones for PLAINTEXT). Every refusal is the contract's JSON error -- 400 ``invalid_request``
for what §3.2 calls a bad request (a parameter missing, repeated, in two places or malformed, an
unsupported or unregistered signature method, PLAINTEXT where it may not go), 401
``invalid_token`` with the one generic description otherwise, 413 for a form body over the cap
-- and the upstream receives nothing.

Requests are signed by ``tests/oauth1_support.py``'s own signer (standard library, not
restguard's), over exactly the parameters each test means, so that a malformed request is
otherwise correctly signed: what refuses it is the check under test, not a bad signature.

Findings of the review this file came from, fixed (each test failed before its fix):

* ``test_oauth_next_to_another_authorization_header``: an ``Authorization: OAuth`` header next
  to another ``Authorization`` header (Bearer, Basic) was accepted (200); on a
  ``forward_credentials`` route the upstream received both. Now 400, as for every method.
* ``test_nul_in_oauth_token_on_postgresql``: ``oauth_token`` was looked up in the store without
  a check of its form; on PostgreSQL a NUL in it was a driver error: 503 instead of a refusal,
  before any signature, for anyone who knows a (public) consumer key. Now a protocol value with
  a control character is a 400, and a token not of restguard's form a 401 without a store read.
* ``test_nul_in_oauth_nonce_on_postgresql``: the same for a NUL in a signed ``oauth_nonce``
  (after the signature, when the nonce is stored): 503; now 400.

Not covered here: reuse of an ``oauth_verifier`` (RFC 5849 §2.3) belongs to the provider's
``/oauth1/access_token`` endpoint, written separately.

Behaviour this file documents (by design, RFC 5849, not refused):

* ``oauth_callback`` and ``oauth_verifier`` on a protected-resource request are ordinary signed
  parameters (§3.1 names them for §2's endpoints only): the request passes when they are signed,
  and is 401 when they are added after signing.
* A body that is not ``application/x-www-form-urlencoded`` (JSON) is not signed (§3.4.1.3.1):
  it is forwarded as sent, and another body under the same signature passes too. Query
  parameters are signed as a set (§3.4.1.3.2 sorts them), so a reordered query passes.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa

from restguard.cli.main import cli
from restguard.config import load
from tests.attacks.sockets import read
from tests.attacks.wire import Response, assert_json_error, chunked, send
from tests.faults import set_keys
from tests.harness import GatewayProcess, RecordingUpstream
from tests.oauth1_support import (
    Consumer,
    Pair,
    Token,
    add_consumer,
    add_temporary,
    add_token,
    authorization,
    base_string,
    base_uri,
    form,
    oauth_params,
    parse_form,
    revoke_consumer,
    revoke_token,
    signature,
)
from tests.pki import Pki

HOST = b"gateway.test"
FORM = b"application/x-www-form-urlencoded"
ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET", "POST", "PUT", "DELETE"]
scopes = ["notes:read"]
auth = ["oauth1"]

[[routes]]
path = "/write/**"
methods = ["POST"]
scopes = ["notes:write"]
auth = ["oauth1"]

[[routes]]
path = "/fwd/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["oauth1"]
forward_credentials = true

[[routes]]
path = "/two/**"
methods = ["GET", "POST"]
scopes = ["notes:read"]
auth = ["oauth1"]
oauth1_two_legged = true
"""
EXTRA = {"server.failed_attempts": '"100000/minute"'}
# What a 401 must not say: which check failed.
GENERIC = ("nonce", "timestamp", "consumer", "token", "secret", "revoked", "signature", "replay")
DEFAULT = object()


# --- signing and raw requests ---------------------------------------------------------------


def sign(
    c: Consumer,
    t: Token | None,
    method: str,
    target: bytes,
    body: bytes | None = None,
    *,
    scheme: str = "http",
    host: bytes = HOST,
    signature_method: str = "HMAC-SHA1",
    timestamp: str | int | None = None,
    nonce: str | None = None,
    version: str | None = "1.0",
    extra: Sequence[Pair] = (),
    drop: Sequence[str] = (),
    token: str | object | None = DEFAULT,
    consumer_key: str | None = None,
    consumer_secret: str | None = None,
    token_secret: str | None = None,
    rsa_key: rsa.RSAPrivateKey | None = None,
) -> list[Pair]:
    """The protocol parameters of ``method target`` (with ``body``'s parameters when it is a
    form body) signed by ``c`` with ``t``: ``oauth_signature`` last; ``drop`` leaves parameters
    out (before signing, or ``oauth_signature`` after)."""
    chosen = (t.token if t is not None else None) if token is DEFAULT else token
    assert chosen is None or isinstance(chosen, str)
    path, _, query = target.decode("latin-1").partition("?")
    params = parse_form(query) + (parse_form(body.decode("latin-1")) if body else [])
    proto = oauth_params(
        consumer_key or c.key,
        signature_method,
        token=chosen,
        timestamp=timestamp,
        nonce_value=nonce,
        version=version,
        extra=extra,
    )
    proto = [(n, v) for n, v in proto if n not in drop]
    base = base_string(method, base_uri(scheme, host.decode(), path), params + proto)
    secret = signature(
        signature_method,
        base,
        c.secret if consumer_secret is None else consumer_secret,
        (t.secret if t is not None else "") if token_secret is None else token_secret,
        rsa_key or c.rsa_key,
    )
    return proto + ([] if "oauth_signature" in drop else [("oauth_signature", secret)])


def header(params: Sequence[Pair], realm: str | None = None) -> bytes:
    return authorization(params, realm).encode("utf-8")


def raw(
    method: str,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    body: bytes = b"",
    content_type: bytes | None = FORM,
    host: bytes | None = HOST,
    length: bool = True,
) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1"]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += [name + b": " + value for name, value in headers]
    if body and content_type is not None:
        lines.append(b"Content-Type: " + content_type)
    if body and length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def req(
    c: Consumer,
    t: Token | None,
    method: str = "GET",
    target: bytes = b"/notes/1",
    body: bytes = b"",
    *,
    where: str = "header",
    content_type: bytes | None = FORM,
    host: bytes = HOST,
    realm: str | None = None,
    signed_method: str | None = None,
    signed_target: bytes | None = None,
    signed_body: bytes | None = None,
    signed_host: bytes | None = None,
    signed_content_type: bytes | object | None = DEFAULT,
    **kw: object,
) -> bytes:
    """A raw request for ``method target`` with ``body``, signed by ``c`` and ``t`` and its
    protocol parameters ``where`` (``header``, ``query`` or ``body``, §3.5). ``signed_*`` sign
    another request than the one sent; ``kw`` go to :func:`sign`."""
    form_signed = (content_type if signed_content_type is DEFAULT else signed_content_type) == FORM
    sbody = body if signed_body is None else signed_body
    params = sign(
        c,
        t,
        signed_method or method,
        signed_target or target,
        sbody if form_signed else None,
        host=signed_host or host,
        **kw,  # type: ignore[arg-type]
    )
    return place(
        method,
        target,
        params,
        where=where,
        body=body,
        content_type=content_type,
        host=host,
        realm=realm,
    )


def place(
    method: str,
    target: bytes,
    params: Sequence[Pair],
    *,
    where: str = "header",
    body: bytes = b"",
    content_type: bytes | None = FORM,
    host: bytes = HOST,
    realm: str | None = None,
) -> bytes:
    """``params`` in the ``Authorization`` header, the query or the form body (§3.5.1-§3.5.3)."""
    return spread(
        method,
        target,
        {where: params},
        body=body,
        content_type=content_type,
        host=host,
        realm=realm,
    )


def spread(
    method: str,
    target: bytes,
    groups: dict[str, Sequence[Pair]],
    *,
    body: bytes = b"",
    content_type: bytes | None = FORM,
    host: bytes = HOST,
    realm: str | None = None,
) -> bytes:
    """Each group of parameters in its place: ``header``, ``query`` or ``body``."""
    headers: list[tuple[bytes, bytes]] = []
    for where, params in groups.items():
        encoded = form(params).encode()
        if where == "header":
            headers.append((b"Authorization", header(params, realm)))
        elif where == "query":
            target += (b"&" if b"?" in target else b"?") + encoded
        else:
            assert where == "body"
            body = body + b"&" + encoded if body else encoded
    return raw(method, target, headers, body=body, content_type=content_type, host=host)


def unique(prefix: str) -> str:
    """A nonce no other test uses (they share a consumer, a token and maybe a second)."""
    return prefix + secrets.token_hex(8)


def body_of(data: bytes) -> bytes:
    return data.partition(b"\r\n\r\n")[2]


# --- assertions -----------------------------------------------------------------------------


def refused(
    gw: GatewayProcess, data: bytes, status: int = 401, *, tls: Pki | None = None
) -> Response:
    """``data`` gets ``status`` with the contract's JSON error, and the upstream receives
    nothing; a 401 says nothing of why, and challenges ``OAuth``."""
    before = len(gw.upstream.requests)
    response = send_tls(gw.port, data, tls) if tls is not None else send(gw.port, data)
    error = {400: "invalid_request", 401: "invalid_token", 413: "invalid_request"}.get(status)
    body = assert_json_error(response, status, error)
    if status == 401:
        description = body["error_description"].lower()
        assert not any(word in description for word in GENERIC), description
        assert 'OAuth realm="restguard"' in response.values("www-authenticate")
    time.sleep(0.05)
    assert gw.upstream.requests[before:] == [], "the upstream received a refused request"
    return response


def accepted(
    gw: GatewayProcess,
    data: bytes,
    *,
    body: bytes = b"",
    subject: str = "alice",
    tls: Pki | None = None,
) -> None:
    """``data`` is forwarded once, with exactly ``body``, as ``subject``, without the
    ``Authorization`` header."""
    before = len(gw.upstream.requests)
    response = send_tls(gw.port, data, tls) if tls is not None else send(gw.port, data)
    assert response.status == 200, (response.status, response.body[:300])
    got = gw.upstream.requests[before:]
    assert len(got) == 1, got
    assert got[0].body == body
    assert got[0].header("x-restguard-auth-method") == "oauth1"
    assert got[0].header("x-restguard-subject") == subject
    assert got[0].header("authorization") is None


def send_tls(port: int, data: bytes, pki: Pki) -> Response:
    context = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
        with context.wrap_socket(plain, server_hostname="127.0.0.1") as s:
            s.sendall(data)
            got = read(s, timeout=5)
    assert got.responses, f"no response to {data[:120]!r}"
    return got.responses[0]


# --- the gateways ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("oauth1attack") / "gw", upstream, routes=ROUTES, extra=EXTRA
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("oauth1pki"))


def tls_gateway(directory: Path, upstream: RecordingUpstream, pki: Pki) -> GatewayProcess:
    """A gateway whose listener speaks TLS (PLAINTEXT is accepted over it only)."""
    gateway = GatewayProcess(directory, upstream, routes=ROUTES, extra=EXTRA)
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
    return gateway.start()


@pytest.fixture(scope="module")
def tls_gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream, pki: Pki
) -> Iterator[GatewayProcess]:
    gateway = tls_gateway(tmp_path_factory.mktemp("oauth1tls") / "gw", upstream, pki)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def c(gw: GatewayProcess) -> Consumer:
    return add_consumer(gw)


@pytest.fixture(scope="module")
def t(gw: GatewayProcess, c: Consumer) -> Token:
    return add_token(gw, c, "alice")


BODY = b"amount=10&to=alice&note=lunch+%26+coffee"


# --- valid twins ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["header", "query", "body"])
@pytest.mark.parametrize("method", ["HMAC-SHA1", "HMAC-SHA256", "RSA-SHA1"])
def test_valid_requests_in_every_location_with_every_method(
    gw: GatewayProcess, where: str, method: str
) -> None:
    signer = add_consumer(gw, rsa_key=method == "RSA-SHA1")
    token = add_token(gw, signer, "alice")
    data = req(signer, token, "POST", b"/notes/1?a=1", BODY, where=where, signature_method=method)
    accepted(gw, data, body=body_of(data))
    seen = gw.upstream.last()
    assert seen.header("x-restguard-client-id") == signer.key
    assert seen.header("x-restguard-scopes") == "notes:read notes:write"
    assert seen.target == data.split(b" ")[1]


# --- replays --------------------------------------------------------------------------------


def test_replayed_nonce(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    data = req(c, t, "POST", b"/notes/1", BODY)
    accepted(gw, data, body=BODY)
    refused(gw, data)
    # the same nonce and timestamp under a new signature, over another request
    now, n = int(time.time()), unique("n")
    accepted(gw, req(c, t, target=b"/notes/2", nonce=n, timestamp=now))
    refused(gw, req(c, t, target=b"/notes/3", nonce=n, timestamp=now))
    refused(gw, req(c, t, target=b"/notes/3", nonce=n, timestamp=now, where="query"))
    # unique per timestamp, consumer and token (§3.3): each of these is another combination
    accepted(gw, req(c, t, target=b"/notes/3", nonce=n, timestamp=now - 1))
    accepted(gw, req(c, add_token(gw, c, "alice"), target=b"/notes/3", nonce=n, timestamp=now))


def test_concurrent_replays_of_one_request(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    data = req(c, t, "POST", b"/notes/1", BODY)
    barrier = threading.Barrier(12)
    before = len(gw.upstream.requests)

    def one(_: int) -> int:
        barrier.wait()
        return send(gw.port, data).status

    with ThreadPoolExecutor(12) as pool:
        statuses = sorted(pool.map(one, range(12)))
    assert statuses == [200] + [401] * 11, statuses
    time.sleep(0.05)
    assert len(gw.upstream.requests) == before + 1


@pytest.mark.postgres
@pytest.mark.parametrize("redis", ["", "redis://127.0.0.1:6379/0"], ids=["database", "redis"])
def test_replayed_nonce_across_two_instances(
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
            shared = add_consumer(one)
            token = add_token(one, shared, "alice")
            # the twin: each instance accepts a fresh request of the other's consumer
            accepted(one, req(shared, token, "POST", b"/notes/1", BODY), body=BODY)
            accepted(two, req(shared, token, "POST", b"/notes/1", BODY), body=BODY)
            # sequential: accepted by one, replayed at the other
            data = req(shared, token, "POST", b"/notes/1", BODY)
            accepted(one, data, body=BODY)
            refused(two, data)
            for _ in range(4):
                data = req(shared, token, "POST", b"/notes/1", BODY)
                before = len(upstream.requests)
                barrier = threading.Barrier(8)

                def hit(i: int, data: bytes = data, barrier: threading.Barrier = barrier) -> int:
                    barrier.wait()
                    return send((one, two)[i % 2].port, data).status

                with ThreadPoolExecutor(8) as pool:
                    statuses = sorted(pool.map(hit, range(8)))
                assert statuses == [200] + [401] * 7, statuses
                time.sleep(0.05)
                assert len(upstream.requests) == before + 1
        finally:
            two.stop()
    finally:
        one.stop()


# --- timestamps -----------------------------------------------------------------------------


def test_stale_timestamp(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    now = int(time.time())
    accepted(gw, req(c, t, timestamp=now - 280))
    refused(gw, req(c, t, timestamp=now - 320))
    refused(gw, req(c, t, timestamp=1))


def test_future_timestamp(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    now = int(time.time())
    accepted(gw, req(c, t, timestamp=now + 280))
    refused(gw, req(c, t, timestamp=now + 320))
    refused(gw, req(c, t, timestamp=now + 10**9))


def test_19_digit_timestamp_is_a_401_not_a_crash(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    # the largest value that is still "plain digits": far outside the window (not a 500)
    refused(gw, req(c, t, timestamp="9" * 19))
    refused(gw, req(c, t, timestamp="9223372036854775808"))  # 2**63: beyond a BIGINT
    accepted(gw, req(c, t))


def test_smaller_window_is_honoured(tmp_path: Path, upstream: RecordingUpstream) -> None:
    gateway = GatewayProcess(tmp_path / "gw", upstream, routes=ROUTES, extra=EXTRA)
    set_keys(gateway.config, "server", {"oauth1_timestamp_window": '"30s"'})
    gateway.settings = load(gateway.config)
    assert gateway.settings.server.oauth1_timestamp_window == 30
    gateway.start()
    try:
        signer = add_consumer(gateway)
        token = add_token(gateway, signer)
        now = int(time.time())
        accepted(gateway, req(signer, token, timestamp=now - 20))
        accepted(gateway, req(signer, token, timestamp=now + 20))
        refused(gateway, req(signer, token, timestamp=now - 45))
        refused(gateway, req(signer, token, timestamp=now + 45))
        # what the default window would take is refused here
        refused(gateway, req(signer, token, timestamp=now - 200))
    finally:
        gateway.stop()


ARABIC_INDIC = str.maketrans("0123456789", "".join(map(chr, range(0x660, 0x66A))))
FULL_WIDTH = str.maketrans("0123456789", "".join(map(chr, range(0xFF10, 0xFF1A))))


@pytest.mark.parametrize(
    "shape",
    [
        "leading zero",
        "plus sign",
        "leading space",
        "trailing space",
        "arabic-indic digits",
        "full-width digits",
        "arabic-indic 123",
        "exponent",
        "decimal",
        "negative",
        "minus one",
        "20 digits",
        "hex",
        "underscore",
    ],
)
def test_timestamp_not_plain_ascii_digits(
    gw: GatewayProcess, c: Consumer, t: Token, shape: str
) -> None:
    now = str(int(time.time()))
    value = {
        "leading zero": "0" + now,
        "plus sign": "+" + now,
        "leading space": " " + now,
        "trailing space": now + " ",
        "arabic-indic digits": now.translate(ARABIC_INDIC),  # int() reads these as `now`
        "full-width digits": now.translate(FULL_WIDTH),
        "arabic-indic 123": "١٢٣",
        "exponent": "1e9",
        "decimal": now + ".0",
        "negative": "-" + now,
        "minus one": "-1",
        "20 digits": "1" + "0" * 19,
        "hex": hex(int(now)),
        "underscore": now[:5] + "_" + now[5:],  # int() reads this as `now` too
    }[shape]
    assert value != now
    for where in ("header", "query", "body"):
        refused(gw, req(c, t, "POST", b"/notes/1", BODY, where=where, timestamp=value), 400)
    accepted(gw, req(c, t, "POST", b"/notes/1", BODY, timestamp=now), body=BODY)


# --- duplicates and conflicts ---------------------------------------------------------------


REPEATABLE = [
    "oauth_consumer_key",
    "oauth_signature_method",
    "oauth_timestamp",
    "oauth_nonce",
    "oauth_token",
    "oauth_version",
    "oauth_signature",
]


@pytest.mark.parametrize("name", REPEATABLE)
def test_duplicate_oauth_parameter_within_the_header(
    gw: GatewayProcess, c: Consumer, t: Token, name: str
) -> None:
    params = sign(c, t, "GET", b"/notes/1")
    value = dict(params)[name]
    # the same value twice, and another value next to it
    for twice in ([*params, (name, value)], [*params, (name, value + "x")]):
        refused(gw, place("GET", b"/notes/1", twice), 400)
    accepted(gw, place("GET", b"/notes/1", params))


@pytest.mark.parametrize("where", ["query", "body"])
def test_duplicate_oauth_parameter_within_the_query_or_body(
    gw: GatewayProcess, c: Consumer, t: Token, where: str
) -> None:
    params = sign(c, t, "POST", b"/notes/1", BODY)
    for name in REPEATABLE:
        twice = [*params, (name, dict(params)[name])]
        refused(gw, place("POST", b"/notes/1", twice, where=where, body=BODY), 400)
    data = place("POST", b"/notes/1", params, where=where, body=BODY)
    accepted(gw, data, body=body_of(data))


@pytest.mark.parametrize("pair", [("header", "query"), ("header", "body"), ("query", "body")])
def test_conflicting_oauth_parameters_across_locations(
    gw: GatewayProcess, c: Consumer, t: Token, pair: tuple[str, str]
) -> None:
    first, second = pair
    params = sign(c, t, "POST", b"/notes/1", BODY)
    other = add_consumer(gw)
    # another consumer key, token or nonce in the second place: which one would be believed?
    for extra in (
        [("oauth_consumer_key", other.key)],
        [("oauth_token", add_token(gw, other).token)],
        [("oauth_nonce", "other")],
        [("oauth_signature", dict(params)["oauth_signature"])],
        list(params),  # the whole set twice, identical
        [("oauth_unknown", "1")],  # any oauth_* name counts (§3.5)
    ):
        refused(gw, spread("POST", b"/notes/1", {first: params, second: extra}, body=BODY), 400)
    data = place("POST", b"/notes/1", params, where=first, body=BODY)
    accepted(gw, data, body=body_of(data))


def test_two_oauth_authorization_headers(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    value = header(sign(c, t, "GET", b"/notes/1"))
    other = header(sign(c, t, "GET", b"/notes/1"))
    for pair in ((value, value), (value, other), (value, b"oauth " + other[6:])):
        refused(gw, raw("GET", b"/notes/1", [(b"Authorization", v) for v in pair]), 400)
    accepted(gw, raw("GET", b"/notes/1", [(b"Authorization", value)]))


@pytest.mark.parametrize("other", [b"Bearer someone-elses-token", b"Basic YWxpY2U6cHc="])
@pytest.mark.parametrize("oauth_first", [True, False], ids=["oauth-first", "oauth-last"])
def test_oauth_next_to_another_authorization_header(
    gw: GatewayProcess, c: Consumer, t: Token, other: bytes, oauth_first: bool
) -> None:
    # the twin: alone, the OAuth header passes (and is forwarded on this route)
    value = header(sign(c, t, "GET", b"/fwd/1"))
    before = len(gw.upstream.requests)
    assert send(gw.port, raw("GET", b"/fwd/1", [(b"Authorization", value)])).status == 200
    assert [r.header("authorization") for r in gw.upstream.requests[before:]] == [value.decode()]
    # Authorization is a singleton field (RFC 9110 §11.6.2): two are ambiguous, 400
    value = header(sign(c, t, "GET", b"/fwd/1"))
    pair = [(b"Authorization", value), (b"Authorization", other)]
    refused(gw, raw("GET", b"/fwd/1", pair if oauth_first else pair[::-1]), 400)


def test_percent_encoded_parameter_names(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    # names are §3.6-encoded like values: an escaped "_" reads as "_", in the header and query
    value = header(sign(c, t, "GET", b"/notes/1"))
    escaped = value.replace(b'oauth_nonce="', b'oauth%5Fnonce="')
    assert escaped != value
    accepted(gw, raw("GET", b"/notes/1", [(b"Authorization", escaped)]))
    query = form(sign(c, t, "GET", b"/notes/1")).replace("oauth_", "oauth%5F").encode()
    accepted(gw, raw("GET", b"/notes/1?" + query))
    # ... so an escaped name repeats the plain one
    params = sign(c, t, "GET", b"/notes/1")
    value = header(params) + b', oauth%5Fnonce="other"'
    refused(gw, raw("GET", b"/notes/1", [(b"Authorization", value)]), 400)
    query = form(params).encode() + b"&oauth%5Fnonce=other"
    refused(gw, raw("GET", b"/notes/1?" + query), 400)


def test_authorization_header_syntax(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    def fresh() -> bytes:
        """A freshly signed value without its "OAuth " (each request needs its own nonce)."""
        return header(sign(c, t, "GET", b"/notes/1"))[len(b"OAuth ") :]

    def send_value(value: bytes) -> bytes:
        return raw("GET", b"/notes/1", [(b"Authorization", value)])

    # §3.5.1: the scheme is case-insensitive; white space around the commas is optional
    accepted(gw, send_value(b"oauth " + fresh()))
    accepted(gw, send_value(b"OAUTH " + fresh()))
    accepted(gw, send_value(b"OAuth   " + fresh()))
    accepted(gw, send_value(b"OAuth " + fresh().replace(b", ", b",")))
    accepted(gw, send_value(b"OAuth " + fresh().replace(b", ", b" ,\t ")))
    # anything else is malformed (400)
    refused(gw, send_value(b"OAuth " + fresh() + b","), 400)  # a trailing comma
    refused(gw, send_value(b"OAuth , " + fresh()), 400)  # a leading one
    unquoted = fresh().replace(b'="', b"=", 1).replace(b'", ', b", ", 1)
    refused(gw, send_value(b"OAuth " + unquoted), 400)
    refused(gw, send_value(b"OAuth " + fresh().replace(b'"', b"'")), 400)  # single quotes
    refused(gw, send_value(b"OAuth " + fresh().replace(b", ", b" ")), 400)  # no commas
    refused(gw, send_value(b"OAuth\t" + fresh()), 400)  # the scheme not followed by a space
    spaced = fresh().replace(b'oauth_nonce="', b'oauth_nonce = "')
    refused(gw, send_value(b"OAuth " + spaced), 400)


# --- signature methods ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", ["HMAC-MD5", "rsa-sha256", "RSA-SHA256", "hmac-sha1", "HMAC-SHA512", "Plaintext"]
)
def test_unknown_signature_method(gw: GatewayProcess, c: Consumer, t: Token, method: str) -> None:
    refused(gw, req(c, t, signature_method=method), 400)
    accepted(gw, req(c, t, signature_method="HMAC-SHA1"))


def test_method_the_consumer_is_not_registered_for(gw: GatewayProcess) -> None:
    narrow = add_consumer(gw, ["HMAC-SHA256"])
    token = add_token(gw, narrow)
    accepted(gw, req(narrow, token, signature_method="HMAC-SHA256"))
    refused(gw, req(narrow, token, signature_method="HMAC-SHA1"), 400)
    # RSA-SHA1 by a consumer without an RSA key, signed with a key of the attacker's
    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(gw, req(narrow, token, signature_method="RSA-SHA1", rsa_key=mine), 400)
    # and an RSA consumer that did not register HMAC
    rsa_only = add_consumer(gw, ["RSA-SHA1"], rsa_key=True)
    rsa_token = add_token(gw, rsa_only)
    accepted(gw, req(rsa_only, rsa_token, signature_method="RSA-SHA1"))
    refused(gw, req(rsa_only, rsa_token, signature_method="HMAC-SHA1"), 400)
    refused(gw, req(rsa_only, rsa_token, signature_method="PLAINTEXT"), 400)


def test_plaintext_over_plain_http(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    assert "PLAINTEXT" in c.record.signature_methods
    for where in ("header", "body"):
        refused(
            gw, req(c, t, "POST", b"/notes/1", BODY, where=where, signature_method="PLAINTEXT"), 400
        )
    accepted(gw, req(c, t, "POST", b"/notes/1", BODY, signature_method="HMAC-SHA1"), body=BODY)


def test_plaintext_over_tls(tls_gw: GatewayProcess, pki: Pki) -> None:
    signer = add_consumer(tls_gw)
    token = add_token(tls_gw, signer)
    for where in ("header", "body"):
        data = req(
            signer,
            token,
            "POST",
            b"/notes/1",
            BODY,
            where=where,
            scheme="https",
            signature_method="PLAINTEXT",
        )
        accepted(tls_gw, data, body=body_of(data), tls=pki)
    # the wrong secret, in PLAINTEXT (the signature *is* the secrets): 401
    wrong = req(
        signer, token, scheme="https", signature_method="PLAINTEXT", consumer_secret="x" * 43
    )
    refused(tls_gw, wrong, tls=pki)
    wrong = req(signer, token, scheme="https", signature_method="PLAINTEXT", token_secret="x" * 43)
    refused(tls_gw, wrong, tls=pki)


def test_behind_a_trusted_tls_proxy(tmp_path: Path, upstream: RecordingUpstream) -> None:
    """Behind a trusted proxy that terminated TLS, the base string URI is ``public_url``'s and
    PLAINTEXT is allowed when ``public_url`` is https (§3.4.1.2, §3.4.4); the Host header the
    proxy sent says nothing the client signed."""
    public = b"api.example.test"
    gateway = GatewayProcess(
        tmp_path / "gw",
        upstream,
        routes=ROUTES,
        extra={
            **EXTRA,
            "server.public_url": '"https://api.example.test"',
            "server.trusted_proxies": '["127.0.0.1"]',
        },
    ).start()
    try:
        signer = add_consumer(gateway)
        token = add_token(gateway, signer)
        proxied = [(b"X-Forwarded-For", b"203.0.113.7"), (b"X-Forwarded-Proto", b"https")]

        def via_proxy(**kw: object) -> bytes:
            params = sign(signer, token, "GET", b"/notes/1", **kw)  # type: ignore[arg-type]
            return raw(
                "GET",
                b"/notes/1",
                [(b"Authorization", header(params)), *proxied],
                host=b"10.0.0.5:8080",
            )

        accepted(gateway, via_proxy(scheme="https", host=public))
        accepted(gateway, via_proxy(scheme="https", host=public, signature_method="PLAINTEXT"))
        # signed for what the proxy sent on, or for plain http: not what the client addressed
        refused(gateway, via_proxy(scheme="http", host=b"10.0.0.5:8080"))
        refused(gateway, via_proxy(scheme="http", host=public))
        refused(gateway, via_proxy(scheme="https", host=b"evil.test"))
    finally:
        gateway.stop()


def test_plaintext_in_the_query(tls_gw: GatewayProcess, pki: Pki) -> None:
    signer = add_consumer(tls_gw)
    token = add_token(tls_gw, signer)
    refused(
        tls_gw,
        req(signer, token, where="query", scheme="https", signature_method="PLAINTEXT"),
        400,
        tls=pki,
    )
    accepted(
        tls_gw,
        req(signer, token, where="query", scheme="https", signature_method="HMAC-SHA1"),
        tls=pki,
    )
    accepted(
        tls_gw,
        req(signer, token, where="header", scheme="https", signature_method="PLAINTEXT"),
        tls=pki,
    )


def test_forwarded_headers_from_a_client_are_not_believed(
    gw: GatewayProcess, c: Consumer, t: Token
) -> None:
    # no trusted proxy: the scheme and host are the connection's and the Host header's
    spoof = [
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Forwarded-Host", b"evil.test"),
        (b"Forwarded", b"proto=https;host=evil.test"),
    ]
    plaintext = sign(c, t, "GET", b"/notes/1", signature_method="PLAINTEXT")
    refused(gw, raw("GET", b"/notes/1", [(b"Authorization", header(plaintext)), *spoof]), 400)
    for signed in (
        sign(c, t, "GET", b"/notes/1", scheme="https"),
        sign(c, t, "GET", b"/notes/1", host=b"evil.test"),
    ):
        refused(gw, raw("GET", b"/notes/1", [(b"Authorization", header(signed)), *spoof]))
    honest = sign(c, t, "GET", b"/notes/1")
    accepted(gw, raw("GET", b"/notes/1", [(b"Authorization", header(honest)), *spoof]))


# --- secrets, consumers, tokens -------------------------------------------------------------


def test_wrong_consumer_secret(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    other = add_consumer(gw)
    refused(gw, req(c, t, consumer_secret=other.secret))
    refused(gw, req(c, t, consumer_secret=c.secret[:-1] + ("A" if c.secret[-1] != "A" else "B")))
    refused(gw, req(c, t, signature_method="HMAC-SHA256", consumer_secret=other.secret))
    accepted(gw, req(c, t))


def test_wrong_token_secret(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    other = add_token(gw, c, "alice")
    refused(gw, req(c, t, token_secret=other.secret))
    refused(gw, req(c, t, token_secret=""))
    refused(gw, req(c, t, token=other.token))  # another token under t's secret
    accepted(gw, req(c, other))


def test_unknown_consumer_key(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    for key in ("ck_" + "0" * 20, "ck_nosuch", c.key.upper(), c.key + " ", "x"):
        refused(gw, req(c, t, consumer_key=key))
    accepted(gw, req(c, t))


def test_revoked_consumer(gw: GatewayProcess) -> None:
    victim = add_consumer(gw)
    token = add_token(gw, victim)
    accepted(gw, req(victim, token))
    accepted(gw, req(victim, None, target=b"/two/1"), subject=victim.key)
    revoke_consumer(gw, victim.key)
    time.sleep(1.1)  # (the read-through cache keeps a record at most a second)
    refused(gw, req(victim, token))
    refused(gw, req(victim, None, target=b"/two/1"))


def test_temporary_credentials_used_as_token_credentials(gw: GatewayProcess, c: Consumer) -> None:
    for temp in (add_temporary(gw, c), add_temporary(gw, c, username="alice")):
        assert temp.token.startswith("rg_or_")
        refused(gw, req(c, temp))
        refused(gw, req(c, temp, target=b"/two/1"))  # not even where no token is needed
    accepted(gw, req(c, add_token(gw, c)))


def test_another_consumers_token(gw: GatewayProcess, c: Consumer) -> None:
    mine = add_token(gw, c, "alice")
    other = add_consumer(gw)
    # the other consumer signs with its own secret and the token (and its secret) it stole
    refused(gw, req(other, mine))
    refused(gw, req(other, mine, target=b"/two/1"))
    accepted(gw, req(c, mine))
    accepted(gw, req(other, add_token(gw, other, "alice")))


def test_expired_token_credentials(gw: GatewayProcess, c: Consumer) -> None:
    now = datetime.now(UTC)
    expired = add_token(gw, c, expires_at=now - timedelta(seconds=1))
    live = add_token(gw, c, expires_at=now + timedelta(hours=1))
    refused(gw, req(c, expired))
    accepted(gw, req(c, live))


def test_nul_in_oauth_token(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    # (SQLite; PostgreSQL below) a control character in a protocol value is malformed: 400;
    # a token restguard never issued: 401
    for token in ("rg_ot_\x00", "\x00"):
        refused(gw, req(c, t, token=token, consumer_secret="guessed" * 6), 400)
        refused(gw, req(c, None, target=b"/two/1", token=token), 400)
    for token in ("rg_ot_" + "a" * 31, "rg_ot_" + "a" * 33, "RG_OT_" + "a" * 32, "x"):
        refused(gw, req(c, None, target=b"/two/1", token=token))
    accepted(gw, req(c, t))


def test_revoked_token_via_the_store(gw: GatewayProcess, c: Consumer) -> None:
    victim = add_token(gw, c)
    kept = add_token(gw, c)
    accepted(gw, req(c, victim))
    revoke_token(gw, victim.token)
    time.sleep(1.1)
    refused(gw, req(c, victim))
    accepted(gw, req(c, kept))


def invoke(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (result.output, result.stderr)


def test_revoked_token_via_the_cli(gw: GatewayProcess, c: Consumer) -> None:
    victim = add_token(gw, c)
    kept = add_token(gw, c)
    accepted(gw, req(c, victim))
    invoke("oauth1", "token", "revoke", victim.token, "--config", str(gw.config))
    revoked = time.monotonic()
    # fresh requests until the first refusal: within about a second (the read-through cache)
    while send(gw.port, req(c, victim)).status == 200:
        assert time.monotonic() - revoked < 1.5, "still accepted 1.5 s after the revocation"
        time.sleep(0.05)
    refused(gw, req(c, victim))
    refused(gw, req(c, victim, "POST", b"/notes/1", BODY, where="body"))
    accepted(gw, req(c, kept))


def test_token_of_a_removed_user(gw: GatewayProcess, c: Consumer) -> None:
    name = "u" + secrets.token_hex(4)
    victim = add_token(gw, c, name)
    other = add_token(gw, c, "alice")
    accepted(gw, req(c, victim), subject=name)
    invoke("user", "remove", name, "--config", str(gw.config))
    time.sleep(1.1)
    refused(gw, req(c, victim))
    accepted(gw, req(c, other))


def test_token_scopes_not_the_consumers(gw: GatewayProcess, c: Consumer) -> None:
    assert c.record.scopes == ("notes:read", "notes:write")
    reader = add_token(gw, c, "alice", scopes=["notes:read"])
    writer = add_token(gw, c, "alice")
    before = len(gw.upstream.requests)
    response = send(gw.port, req(c, reader, "POST", b"/write/1", BODY))
    assert_json_error(response, 403, "insufficient_scope")
    time.sleep(0.05)
    assert gw.upstream.requests[before:] == []
    accepted(gw, req(c, writer, "POST", b"/write/1", BODY), body=BODY)
    accepted(gw, req(c, reader))
    assert gw.upstream.last().header("x-restguard-scopes") == "notes:read"


# --- two-legged -----------------------------------------------------------------------------


def test_no_token_on_a_default_route(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    refused(gw, req(c, None))
    refused(gw, req(c, None, extra=[("oauth_token", "")]))  # empty: "no token" (§2.1)
    accepted(gw, req(c, None, target=b"/two/1"), subject=c.key)
    assert gw.upstream.last().header("x-restguard-scopes") == "notes:read notes:write"
    accepted(gw, req(c, t))


# --- sizes ----------------------------------------------------------------------------------


def test_oversized_authorization_header(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    # realm is not signed (§3.4.1.3.1) and pads the header to the size wanted
    def padded(size: int) -> bytes:
        params = sign(c, t, "GET", b"/notes/1")
        base = len(header(params, ""))
        return place("GET", b"/notes/1", params, realm="r" * (size - base))

    data = padded(8192)
    assert len(data.split(b"Authorization: ")[1].split(b"\r\n")[0]) == 8192
    accepted(gw, data)
    data = padded(8193)
    refused(gw, data, 400)
    refused(gw, padded(12000), 400)
    # an over-long nonce (a bound of the nonce store): 400; 255 characters pass
    accepted(gw, req(c, t, nonce=unique("n").rjust(255, "n")))
    refused(gw, req(c, t, nonce=unique("n").rjust(256, "n")), 400)


def test_form_body_over_the_cap(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    limit = 1024 * 1024
    fits = b"a=" + b"x" * (limit - 2)
    accepted(gw, req(c, t, "POST", b"/notes/1", fits), body=fits)
    big = b"a=" + b"x" * (limit - 1)
    refused(gw, req(c, t, "POST", b"/notes/1", big), 413)
    data = req(c, t, "POST", b"/notes/1", big)
    head, _, body = data.partition(b"\r\n\r\n")
    head = head.replace(b"Content-Length: %d" % len(big), b"Transfer-Encoding: chunked")
    refused(gw, head + b"\r\n\r\n" + chunked(body, 65536), 413)
    # announced too large: refused before the body is read at all
    before = len(gw.upstream.requests)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(
            head.replace(b"Transfer-Encoding: chunked", b"Content-Length: %d" % (limit + 1))
            + b"\r\n\r\n"
        )
        got = read(s, timeout=3)
    assert [r.status for r in got.responses] == [413]
    assert gw.upstream.requests[before:] == []


# --- parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.0", "1.0a", "1", "1.00", ""])
def test_oauth_version_not_1_0(gw: GatewayProcess, c: Consumer, t: Token, version: str) -> None:
    refused(gw, req(c, t, version=version), 400)
    accepted(gw, req(c, t, version="1.0"))
    accepted(gw, req(c, t, version=None))  # optional (§3.1)


@pytest.mark.parametrize(
    "name",
    [
        "oauth_consumer_key",
        "oauth_signature_method",
        "oauth_signature",
        "oauth_timestamp",
        "oauth_nonce",
    ],
)
def test_missing_required_parameter(gw: GatewayProcess, c: Consumer, t: Token, name: str) -> None:
    for where in ("header", "query", "body"):
        refused(gw, req(c, t, "POST", b"/notes/1", BODY, where=where, drop=[name]), 400)
        # present but empty is missing too
        params = [(n, "" if n == name else v) for n, v in sign(c, t, "POST", b"/notes/1", BODY)]
        refused(gw, place("POST", b"/notes/1", params, where=where, body=BODY), 400)
    accepted(gw, req(c, t, "POST", b"/notes/1", BODY), body=BODY)


def test_tampered_form_body_parameter(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    for tampered in (
        BODY.replace(b"amount=10", b"amount=99"),
        BODY + b"&amount=99",  # a parameter added
        BODY.replace(b"&to=alice", b""),  # one taken away
        BODY.replace(b"alice", b"%61lice"),  # the same text, otherwise encoded: same parameters
    ):
        data = req(c, t, "POST", b"/notes/1", tampered, signed_body=BODY)
        if tampered == BODY.replace(b"alice", b"%61lice"):
            # decoded parameters are what is signed (§3.4.1.3.1): this one passes, as sent
            accepted(gw, data, body=tampered)
        else:
            refused(gw, data)
    for where in ("header", "query", "body"):
        params = sign(c, t, "POST", b"/notes/1", BODY)
        bad = BODY.replace(b"amount=10", b"amount=99")
        refused(gw, place("POST", b"/notes/1", params, where=where, body=bad))
    accepted(gw, req(c, t, "POST", b"/notes/1", BODY), body=BODY)


def test_tampered_query(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    target = b"/notes/1?a=1&b=2"
    for sent in (
        b"/notes/1?a=1&b=3",
        b"/notes/1?a=1",
        b"/notes/1?a=1&b=2&c=3",
        b"/notes/1?a=1&b=2&b=2",
    ):
        refused(gw, req(c, t, target=sent, signed_target=target))
        refused(gw, req(c, t, target=sent, signed_target=target, where="query"))
    # the query is signed as a set of parameters: the order is not signed (§3.4.1.3.2)
    accepted(gw, req(c, t, target=b"/notes/1?b=2&a=1", signed_target=target))
    assert gw.upstream.last().target == b"/notes/1?b=2&a=1"
    accepted(gw, req(c, t, target=target))


def test_changed_path(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    for sent in (
        b"/notes/2",
        b"/notes/1/x",
        b"/notes/1/",
        b"/notes/1.json",
        b"/notes/%31",
        b"/notes/./1",
    ):
        refused(gw, req(c, t, target=sent, signed_target=b"/notes/1"))
    # another letter case, an empty segment: the router refuses those before any signature
    for sent in (b"/NOTES/1", b"/notes//1"):
        refused(gw, req(c, t, target=sent, signed_target=b"/notes/1"), 400)
    accepted(gw, req(c, t, target=b"/notes/1"))


def test_changed_host_or_port(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    refused(gw, req(c, t, host=b"evil.test", signed_host=HOST))
    refused(gw, req(c, t, host=b"gateway.test:8081", signed_host=b"gateway.test:8080"))
    refused(gw, req(c, t, host=b"gateway.test:8080", signed_host=b"gateway.test"))
    refused(gw, req(c, t, scheme="https"))  # signed for https, sent over http
    accepted(gw, req(c, t, host=b"gateway.test:8080"))
    # the same authority written otherwise: case, the default port (§3.4.1.2)
    accepted(gw, req(c, t, host=b"GATEWAY.test", signed_host=HOST))
    accepted(gw, req(c, t, host=b"gateway.test:80", signed_host=HOST))


def test_changed_method(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    refused(gw, req(c, t, "POST", signed_method="GET"))
    refused(gw, req(c, t, "DELETE", signed_method="GET"))
    refused(gw, req(c, t, "PUT", b"/notes/1", BODY, signed_method="POST"))
    accepted(gw, req(c, t, "DELETE"))


def test_json_body_is_not_signed_but_forwarded(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    payload = b'{"amount": 10, "to": "alice"}'
    data = req(c, t, "POST", b"/notes/1", payload, content_type=b"application/json")
    accepted(gw, data, body=payload)
    assert gw.upstream.last().header("content-type") == "application/json"
    # not signed (§3.4.1.3.1): another JSON body passes under a signature made without it
    other = b'{"amount": 99, "to": "mallory"}'
    data = req(c, t, "POST", b"/notes/1", other, content_type=b"application/json", signed_body=b"")
    accepted(gw, data, body=other)
    # a body without a Content-Type is not a form either (RFC 5849 names the media type): not
    # signed, forwarded as sent -- although Rack reads such a body as form parameters
    form_like = b"amount=99&to=mallory"
    data = req(c, t, "POST", b"/notes/1", form_like, content_type=None)
    accepted(gw, data, body=form_like)
    assert gw.upstream.last().header("content-type") is None


def test_form_signed_but_sent_as_text_plain(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    for sent_type in (b"text/plain", b"application/json", b"application/octet-stream"):
        refused(
            gw,
            req(c, t, "POST", b"/notes/1", BODY, content_type=sent_type, signed_content_type=FORM),
        )
    # the reverse: signed without the body's parameters, sent as a form
    refused(
        gw,
        req(c, t, "POST", b"/notes/1", BODY, content_type=FORM, signed_content_type=b"text/plain"),
    )
    # a look-alike media type is refused as ambiguous before anything
    evil = b"application/x-www-form-urlencoded-evil"
    refused(gw, req(c, t, "POST", b"/notes/1", BODY, content_type=evil), 400)
    accepted(gw, req(c, t, "POST", b"/notes/1", BODY, content_type=b"text/plain"), body=BODY)
    accepted(gw, req(c, t, "POST", b"/notes/1", BODY), body=BODY)
    # the media type is matched as a media type: case, white space and a charset parameter do
    # not stop a form being a form (signed as one, checked as one)
    for typed in (
        FORM + b"; charset=utf-8",
        b"Application/X-WWW-Form-URLEncoded",
        b"application/x-www-form-urlencoded ; charset=UTF-8",
    ):
        refused(
            gw, req(c, t, "POST", b"/notes/1", BODY, content_type=typed, signed_content_type=None)
        )
        accepted(
            gw,
            req(c, t, "POST", b"/notes/1", BODY, content_type=typed, signed_content_type=FORM),
            body=BODY,
        )


# --- percent-encoding -----------------------------------------------------------------------


def test_lower_case_hex_in_the_header(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    def lower(value: bytes) -> bytes:
        for escape in (b"%2F", b"%2B", b"%3D", b"%20", b"%7E"):
            value = value.replace(escape, escape.lower())
        return value

    nonce = "a b/c+d="
    value = lower(header(sign(c, t, "GET", b"/notes/1", nonce=nonce)))
    assert b"%2f" in value and b"%2b" in value
    accepted(gw, raw("GET", b"/notes/1", [(b"Authorization", value)]))
    # read correctly, not just accepted: a wrong signature in lower-case hex is still wrong,
    # and the nonce decoded from lower-case hex is the same nonce (a replay)
    wrong = lower(
        header(sign(c, t, "GET", b"/notes/1", nonce=unique("x y/"), consumer_secret="x" * 43))
    )
    refused(gw, raw("GET", b"/notes/1", [(b"Authorization", wrong)]))
    now = int(time.time())
    n = unique("r/")
    upper = header(sign(c, t, "GET", b"/notes/2", nonce=n, timestamp=now))
    accepted(gw, raw("GET", b"/notes/2", [(b"Authorization", upper)]))
    again = lower(header(sign(c, t, "GET", b"/notes/3", nonce=n, timestamp=now)))
    refused(gw, raw("GET", b"/notes/3", [(b"Authorization", again)]))
    # a (lower-case) escape of an unreserved character reads as that character
    params = sign(c, t, "GET", b"/notes/1", nonce=unique("abc"))
    escaped = header(params).replace(b'oauth_nonce="abc', b'oauth_nonce="%61bc')
    assert escaped != header(params)
    accepted(gw, raw("GET", b"/notes/1", [(b"Authorization", escaped)]))


def test_plus_in_the_header_value(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    params = sign(c, t, "GET", b"/notes/1", nonce=unique("a+b"))
    value = header(params)
    assert b"a%2Bb" in value
    refused(gw, raw("GET", b"/notes/1", [(b"Authorization", value.replace(b"a%2Bb", b"a+b"))]), 400)
    # '+' is not a space in the header either
    params = sign(c, t, "GET", b"/notes/1", nonce=unique("a b"))
    value = header(params)
    refused(gw, raw("GET", b"/notes/1", [(b"Authorization", value.replace(b"a%20b", b"a+b"))]), 400)
    accepted(gw, raw("GET", b"/notes/1", [(b"Authorization", value)]))


def test_bad_percent_escape(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    n = unique("abc")
    value = header(sign(c, t, "GET", b"/notes/1", nonce=n))
    for bad in (b"%zz", b"%4", b"%", b"%g0"):
        broken = value.replace(f'"{n}"'.encode(), f'"{n}'.encode() + bad + b'"')
        assert broken != value
        refused(
            gw,
            raw(
                "GET",
                b"/notes/1",
                [(b"Authorization", broken)],
            ),
            400,
        )
        refused(gw, req(c, t, target=b"/notes/1?q=" + bad), 400)
        refused(gw, req(c, t, "POST", b"/notes/1", b"q=" + bad), 400)
        refused(gw, req(c, t, "POST", b"/notes/1", b"q=" + bad, where="body"), 400)
    accepted(gw, raw("GET", b"/notes/1", [(b"Authorization", value)]))


def test_protocol_value_not_utf8(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    n = unique("x")
    value = header(sign(c, t, "GET", b"/notes/1", nonce=n))
    broken = value.replace(n.encode(), n.encode() + b"%FF")
    assert broken != value
    refused(gw, raw("GET", b"/notes/1", [(b"Authorization", broken)]), 400)
    query = form(sign(c, t, "GET", b"/notes/1", nonce=n + "q")).replace(n + "q", n + "%FF")
    refused(gw, raw("GET", b"/notes/1?" + query.encode()), 400)
    accepted(gw, raw("GET", b"/notes/1", [(b"Authorization", value)]))


# --- realm, callback, verifier --------------------------------------------------------------


def test_realm_is_ignored(gw: GatewayProcess, c: Consumer, t: Token) -> None:
    for realm in ("", "Example", "http://sp.example.com/", 'a \\"quoted\\" realm'):
        accepted(gw, req(c, t, realm=realm))
    # realm twice is malformed
    params = sign(c, t, "GET", b"/notes/1")
    value = header(params, "a").replace(b"OAuth ", b'OAuth realm="b", ', 1)
    refused(gw, raw("GET", b"/notes/1", [(b"Authorization", value)]), 400)
    # a realm signed as if it were a parameter: not what a verifier signs (§3.4.1.3.1)
    params = sign(c, t, "GET", b"/notes/1", extra=[("realm", "Example")])
    params = [(n, v) for n, v in params if n != "realm"]
    refused(gw, place("GET", b"/notes/1", params, realm="Example"))


def test_callback_and_verifier_on_a_protected_request(
    gw: GatewayProcess, c: Consumer, t: Token
) -> None:
    """Documented: ``oauth_callback`` / ``oauth_verifier`` mean nothing on a protected request
    (§3.1 lists them for §2's endpoints); they are signed parameters like any other."""
    extra = [("oauth_callback", "oob"), ("oauth_verifier", "abcdefghij0123456789AB")]
    accepted(gw, req(c, t, extra=extra))
    data = req(c, t, "POST", b"/notes/1", BODY, where="body", extra=extra)
    accepted(gw, data, body=body_of(data))
    # added after signing: the signature does not cover them
    params = sign(c, t, "GET", b"/notes/1")
    refused(gw, place("GET", b"/notes/1", [*params, *extra]))
    refused(gw, place("GET", b"/notes/1", [*params, ("oauth_callback", "https://evil.test/")]))


# --- PostgreSQL: characters its text columns cannot hold --------------------------------------


@pytest.fixture
def pg_gw(
    tmp_path: Path, upstream: RecordingUpstream, postgres_url: str
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path / "gw", upstream, routes=ROUTES, database_url=postgres_url, extra=EXTRA
    ).start()
    yield gateway
    gateway.stop()


@pytest.mark.postgres
def test_nul_in_oauth_token_on_postgresql(pg_gw: GatewayProcess) -> None:
    signer = add_consumer(pg_gw)
    token = add_token(pg_gw, signer)
    accepted(pg_gw, req(signer, token))
    # an attacker with the consumer key only: a guessed secret, a token with a NUL (a control
    # character in a protocol value: malformed, 400) or not of restguard's form (401)
    for where in ("header", "query"):
        refused(
            pg_gw,
            req(signer, token, where=where, token="rg_ot_\x00", consumer_secret="g" * 43),
            400,
        )
        refused(
            pg_gw, req(signer, token, where=where, token="rg_ot_\u00e9", consumer_secret="g" * 43)
        )
    refused(pg_gw, req(signer, None, target=b"/two/1", token="\x00", consumer_secret="g" * 43), 400)


@pytest.mark.postgres
def test_nul_in_oauth_nonce_on_postgresql(pg_gw: GatewayProcess) -> None:
    signer = add_consumer(pg_gw)
    token = add_token(pg_gw, signer)
    accepted(pg_gw, req(signer, token))
    before = len(pg_gw.upstream.requests)
    response = send(pg_gw.port, req(signer, token, nonce=unique("a\x00b")))
    # either refused as malformed (400) or kept like any other nonce (200): never a 503
    assert response.status in (200, 400), (response.status, response.body)
    time.sleep(0.05)
    assert len(pg_gw.upstream.requests) == before + (response.status == 200)
