"""Header names that upstreams fold together (finding 2) and the forwarding-header family
(finding 5).

CGI-style servers (wsgiref, gunicorn's environ, PHP, Rack) turn ``X_Foo``, ``X-Foo`` (and some
``X.Foo``) into the same ``HTTP_X_FOO`` variable. restguard drops every header name with
characters other than letters, digits and ``-`` before the decision (nginx's default), so none
of them is judged or forwarded. Every test runs against the byte-recording upstream (what was on
the wire) and a stock wsgiref upstream (what a WSGI app's ``environ`` holds).

The forwarding family (``X-Forwarded-*``, ``Forwarded``, ``X-Real-IP`` and look-alikes) is
removed unless the peer is a trusted proxy; restguard sets ``X-Forwarded-For``, ``-Proto`` and
``-Host`` itself.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.attacks.conftest import Keys
from tests.attacks.sockets import send_from
from tests.attacks.wire import api_key, assert_forwarded, assert_refused, request, send
from tests.harness import GatewayProcess, Received, RecordingUpstream
from tests.stock_upstreams import WsgiRefUpstream

Header = tuple[bytes, bytes]
VALID_NAME = re.compile(rb"^[A-Za-z0-9-]+$")
# The identity block restguard adds, as wsgiref's environ names it.
IDENTITY_ENVIRON = {
    "HTTP_X_RESTGUARD_SUBJECT",
    "HTTP_X_RESTGUARD_CLIENT_ID",
    "HTTP_X_RESTGUARD_SCOPES",
    "HTTP_X_RESTGUARD_AUTH_METHOD",
    "HTTP_X_RESTGUARD_IDENTITY",
}


def ok_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = b'{"ok": true}'
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


@pytest.fixture(scope="module")
def wsgi() -> Iterator[WsgiRefUpstream]:
    server = WsgiRefUpstream(ok_app)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def wsgi_gw(tmp_path_factory: pytest.TempPathFactory, wsgi: WsgiRefUpstream) -> Iterator[Any]:
    """A second gateway, in front of wsgiref."""
    gateway = GatewayProcess(tmp_path_factory.mktemp("wsgi") / "gw", wsgi).start()  # type: ignore[arg-type]
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def wsgi_key(wsgi_gw: GatewayProcess) -> str:
    """A notes:read key named "reader" on the wsgiref gateway."""
    return wsgi_gw.issue_key("notes:read", name="reader")[1]


def through_wsgi(gw: GatewayProcess, wsgi: WsgiRefUpstream, data: bytes) -> dict[str, Any]:
    """Send ``data`` through the wsgiref gateway: 200, and the one environ the app saw."""
    before = len(wsgi.environs)
    response = send(gw.port, data)
    assert response.status == 200, (response.status, response.body[:300])
    got = wsgi.environs[before:]
    assert len(got) == 1, got
    return got[0]


def http_environ(environ: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith("HTTP_")}


def assert_clean_wire(seen: Received, values: list[bytes]) -> None:
    """The recording upstream got no invalid header name and none of ``values``."""
    bad = [name for name, _ in seen.headers if not VALID_NAME.match(name)]
    assert bad == [], f"header names with characters other than letters, digits, '-': {bad}"
    wire = b"\n".join(b"%s: %s" % h for h in seen.headers) + seen.target + seen.body
    for value in values:
        assert value not in wire, f"{value!r} reached the upstream"


def assert_clean_environ(environ: dict[str, Any], values: list[bytes]) -> None:
    """The WSGI app's environ holds none of ``values`` and no invalid HTTP_ variable."""
    for key, value in http_environ(environ).items():
        assert re.match(r"^HTTP_[A-Z0-9_]+$", key), f"{key} in environ"
        for forged in values:
            assert forged.decode("latin-1") not in value, f"{key}={value!r}"


def assert_reader_identity_environ(environ: dict[str, Any]) -> None:
    assert environ["HTTP_X_RESTGUARD_SUBJECT"] == "reader"  # not "admin,reader"
    assert environ["HTTP_X_RESTGUARD_SCOPES"] == "notes:read"
    assert environ["HTTP_X_RESTGUARD_AUTH_METHOD"] == "api_key"
    assert {k for k in environ if k.startswith("HTTP_X_RESTGUARD_")} == IDENTITY_ENVIRON
    assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == "/notes/1"


# --- named folding attacks ------------------------------------------------------------------------

FOLDED = [
    (b"X_Restguard_Subject", b"admin"),
    (b"X-Restguard_Subject", b"admin"),
    (b"X.Restguard.Subject", b"admin"),
    (b"x_restguard_scopes", b"notes:write"),
    (b"X_Restguard_Identity", b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."),
    (b"X_Forwarded_For", b"6.6.6.6"),
    (b"X_Real_IP", b"6.6.6.6"),
    (b"X_HTTP_Method_Override", b"DELETE"),
    (b"X_Original_URL", b"/admin/evil"),
    (b"X-Forwarded_Host", b"evil.example"),
    (b"X_Forwarded_Proto", b"https"),
]


@pytest.mark.parametrize("header", FOLDED, ids=[h[0].decode() for h in FOLDED])
def test_folded_name_never_reaches_recording_upstream(
    gw: GatewayProcess, keys: Keys, header: Header
) -> None:
    # Dropped before the decision: the request is decided and forwarded as if it were absent.
    data = request(b"/notes/1", api_key(keys.reader), header, (b"X-Kept", b"end-to-end"))
    _, seen = assert_forwarded(gw, data, b"/notes/1")
    assert_clean_wire(seen, [header[1]])
    assert seen.header("X-Restguard-Subject") == "reader"
    assert seen.header("X-Restguard-Scopes") == "notes:read"
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    assert seen.header("X-Forwarded-Host") == "gateway.test"
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Kept") == "end-to-end"
    # On a public route too (no identity block at all).
    _, seen = assert_forwarded(gw, request(b"/public/x", header), b"/public/x")
    assert_clean_wire(seen, [header[1]])
    assert not {n for n in seen.header_names() if n.startswith("x-restguard")}
    # Twin: the same request without it.
    _, seen = assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")
    assert seen.header("X-Restguard-Subject") == "reader"


@pytest.mark.parametrize("header", FOLDED, ids=[h[0].decode() for h in FOLDED])
def test_folded_name_never_reaches_wsgi_environ(
    wsgi_gw: GatewayProcess, wsgi: WsgiRefUpstream, wsgi_key: str, header: Header
) -> None:
    data = request(b"/notes/1", api_key(wsgi_key), header, (b"X-Kept", b"end-to-end"))
    environ = through_wsgi(wsgi_gw, wsgi, data)
    assert_clean_environ(environ, [header[1]])
    assert_reader_identity_environ(environ)
    assert "HTTP_X_REAL_IP" not in environ
    assert "HTTP_X_HTTP_METHOD_OVERRIDE" not in environ
    assert "HTTP_X_ORIGINAL_URL" not in environ
    assert environ["HTTP_X_FORWARDED_HOST"] == "gateway.test"
    assert environ["HTTP_X_FORWARDED_PROTO"] == "http"
    assert environ["HTTP_X_KEPT"] == "end-to-end"
    # Public route: no HTTP_X_RESTGUARD_* at all.
    environ = through_wsgi(wsgi_gw, wsgi, request(b"/public/x", header))
    assert_clean_environ(environ, [header[1]])
    assert not {k for k in environ if k.startswith("HTTP_X_RESTGUARD_")}
    # Twin: the same request without it, the same environ.
    environ = through_wsgi(wsgi_gw, wsgi, request(b"/notes/1", api_key(wsgi_key)))
    assert_reader_identity_environ(environ)


def test_folded_credential_header_is_not_a_credential(
    gw: GatewayProcess,
    keys: Keys,
    wsgi_gw: GatewayProcess,
    wsgi: WsgiRefUpstream,
    wsgi_key: str,
) -> None:
    # Never seen by the guard: X_API_Key is no credential (401), and beside a real X-API-Key it
    # is no second credential (no 400) and does not reach the upstream.
    for name in (b"X_API_Key", b"X.API.Key", b"X-API_Key"):
        assert_refused(gw, request(b"/notes/1", (name, keys.writer.encode())), 401, "unauthorized")
        data = request(b"/notes/1", api_key(keys.reader), (name, keys.writer.encode()))
        _, seen = assert_forwarded(gw, data, b"/notes/1")
        assert_clean_wire(seen, [keys.writer.encode(), keys.reader.encode()])
        assert seen.header("X-Restguard-Subject") == "reader"
        data = request(b"/public/x", (name, keys.writer.encode()))
        _, seen = assert_forwarded(gw, data, b"/public/x")
        assert_clean_wire(seen, [keys.writer.encode()])
        environ = through_wsgi(wsgi_gw, wsgi, request(b"/public/x", (name, wsgi_key.encode())))
        assert "HTTP_X_API_KEY" not in environ
        assert_clean_environ(environ, [wsgi_key.encode()])
    # Twin: the real header name is the credential.
    _, seen = assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")
    assert seen.header("X-Restguard-Subject") == "reader"


def test_valid_custom_headers_reach_both_upstreams(
    gw: GatewayProcess,
    keys: Keys,
    wsgi_gw: GatewayProcess,
    wsgi: WsgiRefUpstream,
    wsgi_key: str,
) -> None:
    # The twin of every drop: names of letters, digits and '-' pass, any case.
    headers = [(b"X-Trace-Tag", b"abc-123"), (b"x-tenant", b"t1"), (b"Accept-Language", b"fr")]
    data = request(b"/notes/1", api_key(keys.reader), *headers)
    _, seen = assert_forwarded(gw, data, b"/notes/1")
    assert seen.header("X-Trace-Tag") == "abc-123"
    assert seen.header("X-Tenant") == "t1"
    assert seen.header("Accept-Language") == "fr"
    environ = through_wsgi(wsgi_gw, wsgi, request(b"/notes/1", api_key(wsgi_key), *headers))
    assert environ["HTTP_X_TRACE_TAG"] == "abc-123"
    assert environ["HTTP_X_TENANT"] == "t1"
    assert environ["HTTP_ACCEPT_LANGUAGE"] == "fr"


# --- the class: generated names -------------------------------------------------------------------

# RFC 9110 tchar punctuation other than '-': all legal in a field name, all dropped by restguard.
PUNCTUATION = "_.!#$%&'*+^`|~"
TARGETS = [
    "x-restguard-subject",
    "x-restguard-scopes",
    "x-restguard-client-id",
    "x-restguard-auth-method",
    "x-restguard-identity",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-http-method-override",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-api-key",
    "content-length",
    "transfer-encoding",
]


@st.composite
def folded_names(draw: st.DrawFn) -> bytes:
    """A name that folds into one restguard relies on: its words joined by '-', '_', '.' or
    other punctuation (at least one not '-'), each letter in either case, maybe a stray prefix
    or suffix."""
    words = draw(st.sampled_from(TARGETS)).split("-")
    seps = [draw(st.sampled_from("-_." + PUNCTUATION)) for _ in words[1:]]
    if all(s == "-" for s in seps):
        seps[draw(st.integers(0, len(seps) - 1))] = draw(st.sampled_from("_." + PUNCTUATION))
    name = words[0] + "".join(s + w for s, w in zip(seps, words[1:], strict=True))
    name = draw(st.sampled_from(["", "", "_", "."])) + name + draw(st.sampled_from(["", "", "_"]))
    cases = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if up else c for c, up in zip(name, cases, strict=True)).encode()


ANY_INVALID_NAME = st.text(
    alphabet=string.ascii_letters + string.digits + "-" + PUNCTUATION, min_size=1, max_size=24
).filter(lambda n: re.search(r"[^A-Za-z0-9-]", n) is not None)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: bounded in time when it fails
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    names=st.lists(
        st.one_of(folded_names(), ANY_INVALID_NAME.map(str.encode)),
        min_size=1,
        max_size=4,
        unique_by=lambda n: n.lower(),
    )
)
def test_generated_invalid_names_never_reach_either_upstream(
    gw: GatewayProcess,
    keys: Keys,
    wsgi_gw: GatewayProcess,
    wsgi: WsgiRefUpstream,
    wsgi_key: str,
    names: list[bytes],
) -> None:
    forged = [b"evil%d" % i for i in range(len(names))]
    headers = list(zip(names, forged, strict=True))
    before = len(gw.upstream.requests)
    response = send(gw.port, request(b"/notes/1", api_key(keys.reader), *headers))
    assert response.status == 200, (headers, response.status, response.body[:200])
    [seen] = gw.upstream.requests[before:]
    assert seen.method == "GET" and seen.target == b"/notes/1"
    assert_clean_wire(seen, forged)
    assert seen.header("X-Restguard-Subject") == "reader"
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    environ = through_wsgi(wsgi_gw, wsgi, request(b"/notes/1", api_key(wsgi_key), *headers))
    assert_clean_environ(environ, forged)
    assert_reader_identity_environ(environ)


# --- the forwarding family (finding 5) ------------------------------------------------------------

FAMILY: list[Header] = [
    (b"X-Forwarded-For", b"6.6.6.6"),
    (b"X-Forwarded-Proto", b"https"),
    (b"X-Forwarded-Host", b"evil.example"),
    (b"X-Forwarded-Port", b"8443"),
    (b"X-Forwarded-Prefix", b"/evil-prefix"),
    (b"X-Forwarded-Ssl", b"on"),
    (b"X-Forwarded-Scheme", b"https"),
    (b"X-Forwarded-Server", b"evil-server.example"),
    (b"X-Forwarded-Uri", b"/evil-uri"),
    (b"X-Forwarded-Client-Cert", b"Hash=evil"),
    (b"Forwarded", b"for=6.6.6.7;proto=https;host=evil-fwd.example"),
    (b"X-Real-IP", b"6.6.6.8"),
    (b"True-Client-IP", b"6.6.6.9"),
    (b"X-Client-IP", b"6.6.6.10"),
    (b"Client-IP", b"6.6.6.11"),
    (b"CF-Connecting-IP", b"6.6.6.12"),
    (b"X-Cluster-Client-IP", b"6.6.6.13"),
    (b"Fastly-Client-IP", b"6.6.6.14"),
    (b"X-Url-Scheme", b"https"),
    (b"X-Scheme", b"https"),
    (b"X-Original-URI", b"/evil-original"),
    (b"X-Original-Host", b"evil-original.example"),
    (b"X-Host", b"evil-host.example"),
    (b"Front-End-Https", b"on"),
    (b"X-Original-Forwarded-For", b"6.6.6.15"),
]
RESTGUARD_SETS = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}


def family_left(seen: Received) -> dict[str, str | None]:
    """The family members the upstream received, other than the three restguard sets."""
    names = {h[0].decode().lower() for h in FAMILY} - RESTGUARD_SETS
    return {n: seen.header(n) for n in names if seen.header(n) is not None}


@pytest.mark.parametrize("header", FAMILY, ids=[h[0].decode() for h in FAMILY])
def test_forwarding_header_from_untrusted_client(
    gw: GatewayProcess, keys: Keys, header: Header
) -> None:
    data = request(b"/notes/1", api_key(keys.reader), header)
    _, seen = assert_forwarded(gw, data, b"/notes/1")
    assert family_left(seen) == {}
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Forwarded-Host") == "gateway.test"
    # (compared whole: a short value such as "on" may occur inside restguard's identity token)
    assert header[1] not in [v for _, v in seen.headers]


def test_forwarding_family_never_reaches_wsgi_environ(
    wsgi_gw: GatewayProcess, wsgi: WsgiRefUpstream, wsgi_key: str
) -> None:
    data = request(b"/notes/1", api_key(wsgi_key), *FAMILY)
    environ = through_wsgi(wsgi_gw, wsgi, data)
    family = {"HTTP_" + h[0].decode().upper().replace("-", "_") for h in FAMILY}
    restguards = {"HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST"}
    assert {k for k in environ if k in family} == restguards
    assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert environ["HTTP_X_FORWARDED_PROTO"] == "http"
    assert environ["HTTP_X_FORWARDED_HOST"] == "gateway.test"
    # Twin: without the family, the same three, the same values.
    environ = through_wsgi(wsgi_gw, wsgi, request(b"/notes/1", api_key(wsgi_key)))
    assert {k for k in environ if k in family} == restguards
    assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"


@pytest.fixture(scope="module")
def behind_proxy(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    """A gateway that trusts 127.0.0.1 as its proxy (127.0.0.2 is an ordinary client)."""
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("proxied") / "gw",
        upstream,
        extra={"trusted_proxies": '["127.0.0.1"]'},
    ).start()
    yield gateway
    gateway.stop()


def test_forwarding_family_with_a_trusted_proxy(behind_proxy: GatewayProcess) -> None:
    gw = behind_proxy
    _, key = gw.issue_key("notes:read", name="reader")
    upstream = gw.upstream
    claims = [
        (b"X-Forwarded-For", b"203.0.113.7"),
        (b"X-Forwarded-Prefix", b"/api"),
        (b"X-Forwarded-Ssl", b"on"),
        (b"X_Forwarded_For", b"6.6.6.6"),  # an invalid name, dropped even from a trusted proxy
    ]
    # From the trusted proxy: the client address is its X-Forwarded-For claim, and the family
    # it set reaches the upstream.
    _, seen = assert_forwarded(gw, request(b"/notes/1", api_key(key), *claims), b"/notes/1")
    xff = seen.header("X-Forwarded-For") or ""
    assert "203.0.113.7" in [h.strip() for h in xff.split(",")], xff
    assert "6.6.6.6" not in xff
    assert seen.header("X-Forwarded-Prefix") == "/api"
    assert seen.header("X-Forwarded-Ssl") == "on"
    assert_clean_wire(seen, [b"6.6.6.6"])
    assert gw.audit_events()[-1]["client"] == "203.0.113.7"
    # From 127.0.0.2, not a trusted proxy: the whole family is removed.
    before = len(upstream.requests)
    response = send_from(gw.port, request(b"/notes/1", api_key(key), *claims), "127.0.0.2")
    assert response.status == 200, (response.status, response.body[:200])
    [seen] = upstream.requests[before:]
    assert seen.header("X-Forwarded-For") == "127.0.0.2"
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Forwarded-Prefix") is None
    assert seen.header("X-Forwarded-Ssl") is None
    assert_clean_wire(seen, [b"203.0.113.7", b"6.6.6.6", b"/api"])
    time.sleep(0.05)
    assert gw.audit_events()[-1]["client"] == "127.0.0.2"
    # And every member of the family, from 127.0.0.2.
    before = len(upstream.requests)
    response = send_from(gw.port, request(b"/notes/1", api_key(key), *FAMILY), "127.0.0.2")
    assert response.status == 200, (response.status, response.body[:200])
    [seen] = upstream.requests[before:]
    assert family_left(seen) == {}
    assert seen.header("X-Forwarded-For") == "127.0.0.2"
    assert seen.header("X-Forwarded-Host") == "gateway.test"
