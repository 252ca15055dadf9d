"""Attack review of token revocation (RFC 7009, ``POST /oauth2/revoke``) and introspection
(RFC 7662, ``POST /oauth2/introspect``): everything through the real gateway on raw sockets.

Findings are ``xfail(strict=True)`` with ``FINDING:`` reasons; everything else is what held.
Helpers (clients inserted into the store, Basic encoding, form requests) are reused from
``tests/attacks/test_review_oauth2_token.py``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.attacks.test_review_oauth2_token import (
    OClient,
    basic,
    claims,
    fetch_token,
    get,
    make_client,
    restguard_keys,
    revoke_client,
    token_request,
)
from tests.attacks.wire import Response, assert_json_error, send
from tests.harness import GatewayProcess, RecordingUpstream
from tests.jwt_support import bearer

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["oauth2"]
"""
REVOKE = b"/oauth2/revoke"
INTROSPECT = b"/oauth2/introspect"


def revoke(gw: GatewayProcess, body: Any, *headers: tuple[bytes, bytes]) -> Response:
    return send(gw.port, token_request(body, *headers, target=REVOKE))


def introspect(gw: GatewayProcess, body: Any, *headers: tuple[bytes, bytes]) -> Response:
    return send(gw.port, token_request(body, *headers, target=INTROSPECT))


def auth(c: OClient) -> tuple[bytes, bytes]:
    assert c.secret is not None
    return basic(c.id, c.secret)


def notes(gw: GatewayProcess, token: str) -> int:
    return get(gw, b"/notes/1", bearer(token)).status


def second_instance(gw: GatewayProcess, directory: Path) -> GatewayProcess:
    """Another gateway on the same database and master key (a second instance)."""
    return GatewayProcess(
        directory,
        gw.upstream,
        routes=ROUTES,
        database_url=gw.settings.database_url,
        extra={
            "keys.master_key": json.dumps(str(gw.settings.master_key_path)),
            "server.failed_attempts": '"100000/minute"',
            # one issuer for both: the tokens' iss and aud are the public URL
            "server.public_url": json.dumps(gw.settings.server.public_url),
        },
    ).start()


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("revattack") / "gw",
        upstream,
        routes=ROUTES,
        extra={"server.failed_attempts": '"100000/minute"'},
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def alice(gw: GatewayProcess) -> OClient:
    return make_client(gw, "notes:read")


@pytest.fixture(scope="module")
def bob(gw: GatewayProcess) -> OClient:
    return make_client(gw, "notes:read")


@pytest.fixture(scope="module")
def resource_server(gw: GatewayProcess) -> OClient:
    return make_client(gw, "restguard:introspect")


@pytest.fixture(scope="module")
def public(gw: GatewayProcess) -> OClient:
    return make_client(
        gw,
        "notes:read",
        grants=("authorization_code",),
        public=True,
        redirect_uris=("https://app.example/cb",),
    )


# === revocation ==================================================================================


def test_revoked_token_dies_at_once_even_when_cached(gw: GatewayProcess, alice: OClient) -> None:
    token = fetch_token(gw, alice)
    for _ in range(3):  # in the verified-token cache
        assert notes(gw, token) == 200
    r = revoke(gw, {"token": token}, auth(alice))
    assert r.status == 200 and r.body == b"", (r.status, r.body)
    assert r.header("cache-control") == "no-store"
    assert notes(gw, token) == 401  # same instance: at once, no wait
    # and it stays dead after the next polls of the table (the local note is replaced by the row)
    time.sleep(1.2)
    assert notes(gw, token) == 401
    # revoking again, and with client_secret_post: still 200
    assert revoke(gw, {"token": token}, auth(alice)).status == 200
    assert alice.secret is not None
    r = revoke(gw, {"token": token, "client_id": alice.id, "client_secret": alice.secret})
    assert r.status == 200
    # a fresh token of the same client is unaffected
    assert notes(gw, fetch_token(gw, alice)) == 200


def test_revocation_applies_on_a_second_instance_within_a_second(
    gw: GatewayProcess, alice: OClient, tmp_path: Path
) -> None:
    other = second_instance(gw, tmp_path / "gw2")
    try:
        token = fetch_token(gw, alice)
        assert notes(other, token) == 200  # cached on the other instance too
        assert notes(gw, token) == 200
        assert revoke(gw, {"token": token}, auth(alice)).status == 200
        started = time.monotonic()
        while notes(other, token) != 401:
            assert time.monotonic() - started < 1.0, "still accepted on instance 2 after 1 s"
            time.sleep(0.05)
        # and the other way round: revoked on instance 2, refused on instance 1
        token2 = fetch_token(other, alice)
        assert notes(gw, token2) == 200
        assert revoke(other, {"token": token2}, auth(alice)).status == 200
        assert notes(other, token2) == 401
        started = time.monotonic()
        while notes(gw, token2) != 401:
            assert time.monotonic() - started < 1.0, "still accepted on instance 1 after 1 s"
            time.sleep(0.05)
    finally:
        other.stop()


def test_another_clients_token_is_refused_by_every_trick(
    gw: GatewayProcess, alice: OClient, bob: OClient
) -> None:
    victim = fetch_token(gw, bob)
    assert alice.secret is not None and bob.secret is not None
    attempts = {
        "plain": token_request({"token": victim}, auth(alice), target=REVOKE),
        "hint refresh": token_request(
            {"token": victim, "token_type_hint": "refresh_token"}, auth(alice), target=REVOKE
        ),
        "body client_id=bob, Basic alice": token_request(
            {"token": victim, "client_id": bob.id}, auth(alice), target=REVOKE
        ),
        "Basic bob id + alice secret": token_request(
            {"token": victim}, basic(bob.id, alice.secret), target=REVOKE
        ),
        "percent-encoded bob id, alice secret": token_request(
            {"token": victim},
            basic("".join(f"%{b:02X}" for b in bob.id.encode()), alice.secret, encode=False),
            target=REVOKE,
        ),
        "bob id with no secret (as 'none')": token_request(
            {"token": victim, "client_id": bob.id}, target=REVOKE
        ),
        "bob id upper-cased + bob secret": token_request(
            {"token": victim}, basic(bob.id.upper(), bob.secret), target=REVOKE
        ),
        "post: bob id, alice secret": token_request(
            {"token": victim, "client_id": bob.id, "client_secret": alice.secret}, target=REVOKE
        ),
        "token in query": token_request(
            b"", auth(alice), target=REVOKE + b"?token=" + victim.encode()
        ),
        "two tokens (own then victim)": token_request(
            "token=" + fetch_token(gw, alice) + "&token=" + victim, auth(alice), target=REVOKE
        ),
    }
    for name, data in attempts.items():
        r = send(gw.port, data)
        assert r.status in (400, 401), (name, r.status, r.body)
        assert victim not in r.body.decode()
    r = revoke(gw, {"token": victim}, auth(alice))
    assert_json_error(r, 400, "unauthorized_client")
    time.sleep(0.7)  # past a poll
    assert notes(gw, victim) == 200  # bob's token lives


def test_encoded_variants_of_a_victims_token_do_not_revoke_it(
    gw: GatewayProcess, alice: OClient, bob: OClient
) -> None:
    """Variants of bob's token that alice might hope the verifier reads as hers (or as junk
    while still revoking): none revokes it."""
    victim = fetch_token(gw, bob)
    h, p, s = victim.split(".")
    variants = [
        " " + victim,
        victim + " ",
        "Bearer " + victim,
        victim + "=",
        f"{h}.{p}.{s}.",
        f"{h}..{s}",
        victim.replace(".", "%2E"),
        victim + "\n",
    ]
    for v in variants:
        body = urlencode({"token": v})
        r = revoke(gw, body, auth(alice))
        assert r.status in (200, 400), (v, r.status, r.body)
    time.sleep(0.7)
    assert notes(gw, victim) == 200


def test_token_type_hints_missing_repeated_and_junk(gw: GatewayProcess, alice: OClient) -> None:
    for hint in ("refresh_token", "access_token", "junk", "x" * 500):
        token = fetch_token(gw, alice)
        r = revoke(gw, {"token": token, "token_type_hint": hint}, auth(alice))
        assert r.status == 200, (hint, r.status, r.body)
        assert notes(gw, token) == 401, hint
    assert_json_error(revoke(gw, {}, auth(alice)), 400, "invalid_request")
    assert_json_error(revoke(gw, {"token": ""}, auth(alice)), 400, "invalid_request")
    assert_json_error(revoke(gw, "token=a&token=b", auth(alice)), 400, "invalid_request")
    assert_json_error(
        revoke(gw, "token=a&token_type_hint=x&token_type_hint=y", auth(alice)),
        400,
        "invalid_request",
    )
    # GET with the token in the query: 405, never a revocation
    token = fetch_token(gw, alice)
    r = send(
        gw.port,
        token_request(b"", auth(alice), target=REVOKE + b"?token=" + token.encode(), method=b"GET"),
    )
    assert r.status == 405
    assert notes(gw, token) == 200


def test_junk_huge_and_odd_tokens_are_200_never_500(gw: GatewayProcess, alice: OClient) -> None:
    own = gw.settings.server.public_url
    keys = restguard_keys(gw)
    expired = keys.sign(claims(own, own, alice.id, exp=int(time.time()) - 5, jti="old"), "at+jwt")
    odd = [
        "x",
        "x.y.z",
        "..",
        "a.b.c.d.e",
        "é.é.é",
        "\x00",
        "rg_at_" + "A" * 40,
        "A" * 12000 + "." + "B" * 10 + ".C",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.",
        expired,
        keys.sign(claims(own, own, alice.id, jti=""), "at+jwt"),
        keys.sign(claims(own, own, alice.id, jti=12), "at+jwt"),
        keys.sign(claims(own, own, alice.id, exp="soon"), "at+jwt"),
        keys.sign(claims(own, own, alice.id, exp=True), "at+jwt"),
    ]
    for t in odd:
        r = revoke(gw, {"token": t}, auth(alice))
        assert r.status == 200, (t[:40], r.status, r.body)
        r = introspect(gw, {"token": t}, auth(alice))
        assert r.status == 200 and r.json() == {"active": False}, (t[:40], r.status, r.body)
    # over the 16 KiB body limit: refused before parsing (not 500)
    r = revoke(gw, {"token": "A" * 20000}, auth(alice))
    assert r.status in (400, 413), r.status


def test_a_token_with_an_absurd_exp_is_revocable(gw: GatewayProcess, alice: OClient) -> None:
    own = gw.settings.server.public_url
    keys = restguard_keys(gw)
    for n, exp in enumerate((1e300, 253402300799 + 10)):
        far = keys.sign(claims(own, own, alice.id, exp=exp, jti=f"far{n}"), "at+jwt")
        assert notes(gw, far) == 200  # accepted at the gateway
        r = revoke(gw, {"token": far}, auth(alice))
        assert r.status == 200, (exp, r.status, r.body)
        assert notes(gw, far) == 401


def test_a_public_client_cannot_revoke_others_and_cannot_introspect(
    gw: GatewayProcess, public: OClient, alice: OClient
) -> None:
    victim = fetch_token(gw, alice)
    r = revoke(gw, {"token": victim, "client_id": public.id})
    assert_json_error(r, 400, "unauthorized_client")
    assert revoke(gw, {"token": "junk", "client_id": public.id}).status == 200
    # a public client that pretends to hold a secret, an unknown id
    assert revoke(gw, {"token": "junk"}, basic(public.id, "x")).status == 401
    assert revoke(gw, {"token": "junk", "client_id": "rg_ci_nobody"}).status == 401
    # introspection: confidential clients only
    for data in (
        {"token": victim, "client_id": public.id},
        {"token": victim},
    ):
        r = introspect(gw, data)
        assert r.status == 401, (data, r.status)
        assert "active" not in r.body.decode()
    assert notes(gw, victim) == 200


def test_a_revoked_clients_tokens_revoke_as_200_and_introspect_inactive(
    gw: GatewayProcess, resource_server: OClient
) -> None:
    dead = make_client(gw, "notes:read")
    token = fetch_token(gw, dead)
    assert introspect(gw, {"token": token}, auth(resource_server)).json()["active"] is True
    revoke_client(gw, dead.id)
    time.sleep(1.1)
    assert introspect(gw, {"token": token}, auth(resource_server)).json() == {"active": False}
    assert revoke(gw, {"token": token}, auth(dead)).status == 401  # the client itself is gone


# === introspection ===============================================================================


def test_introspection_own_other_and_resource_server(
    gw: GatewayProcess, alice: OClient, bob: OClient, resource_server: OClient
) -> None:
    mine = fetch_token(gw, alice)
    theirs = fetch_token(gw, bob)
    r = introspect(gw, {"token": mine}, auth(alice))
    body = r.json()
    assert r.status == 200 and body["active"] is True and body["client_id"] == alice.id
    assert r.header("cache-control") == "no-store"
    # another client's live token is indistinguishable from junk, a revoked or an expired one
    answers = {
        name: introspect(gw, {"token": t}, auth(alice))
        for name, t in {
            "other": theirs,
            "junk": "x.y.z",
            "bad signature": theirs[:-4] + ("AAAA" if not theirs.endswith("AAAA") else "BBBB"),
        }.items()
    }
    for name, a in answers.items():
        assert a.status == 200 and a.body == b'{"active": false}', (name, a.body)
        assert sorted(a.headers) == sorted(answers["junk"].headers), name
    # the resource server sees other clients' tokens
    rs = introspect(gw, {"token": theirs}, auth(resource_server)).json()
    assert rs["active"] is True and rs["client_id"] == bob.id
    # after revocation: inactive for everyone, at once
    assert revoke(gw, {"token": theirs}, auth(bob)).status == 200
    assert introspect(gw, {"token": theirs}, auth(resource_server)).json() == {"active": False}
    assert introspect(gw, {"token": theirs}, auth(bob)).json() == {"active": False}


def test_introspection_is_not_a_timing_oracle_for_other_clients_tokens(
    gw: GatewayProcess, alice: OClient, bob: OClient
) -> None:
    """Coarse: "another client's live token" vs "a forged signature" take about as long (the
    only difference is the client lookup, cached for a second)."""
    theirs = fetch_token(gw, bob)
    forged = theirs[:-4] + ("AAAA" if not theirs.endswith("AAAA") else "BBBB")

    def median(t: str) -> float:
        times = []
        for _ in range(30):
            start = time.perf_counter()
            introspect(gw, {"token": t}, auth(alice))
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    median(theirs)
    a, b = median(theirs), median(forged)
    assert abs(a - b) < 0.005, (a, b)


def test_introspection_method_and_credentials_checks(gw: GatewayProcess, alice: OClient) -> None:
    token = fetch_token(gw, alice)
    assert alice.secret is not None
    assert introspect(gw, {"token": token}, basic(alice.id, "wrong")).status == 401
    assert introspect(gw, {"token": token, "client_id": alice.id}).status == 401
    r = send(
        gw.port, token_request(b"", auth(alice), target=INTROSPECT + b"?token=" + token.encode())
    )
    assert r.status == 400 and "active" not in r.body.decode()
    r = send(gw.port, token_request(b"", target=INTROSPECT, method=b"GET"))
    assert r.status == 405
    assert_json_error(introspect(gw, {}, auth(alice)), 400, "invalid_request")


# === store down ==================================================================================


def test_revocation_while_the_store_cannot_write_is_503_not_200(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    gw = GatewayProcess(tmp_path / "gw", upstream, routes=ROUTES).start()
    try:
        alice = make_client(gw, "notes:read")
        token = fetch_token(gw, alice)
        assert notes(gw, token) == 200
        db = Path(gw.settings.database_url.removeprefix("sqlite:///"))
        locker = sqlite3.connect(db, isolation_level=None, timeout=0)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            r = revoke(gw, {"token": token}, auth(alice))
            assert r.status == 503, (r.status, r.body)
            assert_json_error(r, 503, "temporarily_unavailable")
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        # once the store is back, the revocation works
        r = revoke(gw, {"token": token}, auth(alice))
        assert r.status == 200
        assert notes(gw, token) == 401
    finally:
        gw.stop()


# === secrets in answers, logs and audit ==========================================================


def test_no_token_or_secret_in_bodies_logs_or_audit(
    gw: GatewayProcess, alice: OClient, bob: OClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert alice.secret is not None
    mine, theirs = fetch_token(gw, alice), fetch_token(gw, bob)
    wrong = "rg_cs_" + "Q" * 43
    bodies = [
        revoke(gw, {"token": theirs}, auth(alice)),
        revoke(gw, {"token": mine}, basic(alice.id, wrong)),
        revoke(gw, {"token": mine, "client_id": alice.id, "client_secret": wrong}),
        revoke(gw, {"token": mine, "client_id": alice.secret}),  # secret sent as the id
        introspect(gw, {"token": theirs}, auth(alice)),
        introspect(gw, {"token": mine}, basic(alice.id, wrong)),
        send(gw.port, token_request(b"", auth(alice), target=REVOKE + b"?token=" + mine.encode())),
    ]
    for r in bodies:
        text = r.body.decode() + "".join(v for _, v in r.headers)
        for secret in (mine, theirs, alice.secret, wrong):
            assert secret not in text, (r.status, text)
    events = gw.audit_events()
    text = json.dumps(events)
    for secret in (mine.split(".")[2], theirs.split(".")[2], alice.secret, wrong):
        assert secret not in text
        assert secret not in caplog.text
    paths = [e.get("path") for e in events]
    assert REVOKE.decode() in paths and INTROSPECT.decode() in paths


# === metadata ====================================================================================


def test_metadata_advertises_exactly_what_is_served(gw: GatewayProcess) -> None:
    meta = get(gw, b"/.well-known/oauth-authorization-server").json()
    base = gw.settings.server.public_url.rstrip("/")
    assert meta["revocation_endpoint"] == base + "/oauth2/revoke"
    assert meta["introspection_endpoint"] == base + "/oauth2/introspect"
    assert meta["revocation_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ]
    assert meta["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    # no algorithm lists for auth methods the server does not serve (private_key_jwt etc.)
    for key in meta:
        assert not key.endswith("_signing_alg_values_supported"), key
    # both endpoints answer at the advertised paths (POST only)
    for path in (REVOKE, INTROSPECT):
        r = send(gw.port, token_request(b"token=x", target=path))
        assert r.status == 401  # served: asks for client authentication
        assert send(gw.port, token_request(b"", target=path, method=b"PUT")).status == 405


# === one instance, several worker processes ======================================================


def test_revocation_reaches_every_worker_of_the_instance_within_a_second(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    from types import SimpleNamespace

    from restguard.cli.init import write_data_dir
    from restguard.config import load
    from tests.faults import ServeProcess, ready_workers
    from tests.harness import free_port

    port = free_port()
    config = write_data_dir(
        tmp_path / "data",
        upstream=upstream.url,
        listen=f"127.0.0.1:{port}",
        admin_listen=f"127.0.0.1:{free_port()}",
        routes=ROUTES,
    )
    shim: Any = SimpleNamespace(settings=load(config), port=port)
    serve = ServeProcess(config, "--workers", "4")
    try:
        serve.wait_up()
        ready_workers(serve.pid, 3)
        alice = make_client(shim, "notes:read")
        accepted_after = 0
        for _ in range(5):
            token = fetch_token(shim, alice)
            for _ in range(40):  # new connections: every worker verifies (and caches) it
                assert notes(shim, token) == 200
            assert revoke(shim, {"token": token}, auth(alice)).status == 200
            # the worker that took it refuses at once; the others at their next read of the
            # revoked tokens (every 0.5 s): CONTRACT, revocation within one second
            time.sleep(1.0)
            accepted_after += sum(notes(shim, token) == 200 for _ in range(20))
        assert accepted_after == 0, f"{accepted_after} requests accepted a second after the 200"
    finally:
        serve.stop()
