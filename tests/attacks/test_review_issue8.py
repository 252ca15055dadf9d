"""Review of issue 8 (the ``jwt`` method, external issuers, restguard's own signing keyring and
master-key rotation), as an attacker.

Findings (``xfail(strict=True)``: each fails against c9a522a and says what should happen):

1. A scope from an array claim (``scp`` / ``permissions``) that holds a space (``"x admin"``)
   is one scope to the guard, but ``X-Restguard-Scopes`` is space separated: the upstream reads
   ``x`` and ``admin``, scopes the token never granted.
2. A ``scope`` string is split on every Unicode whitespace (``str.split()``): "admin<NBSP>
   notes:read" (one RFC 6749 scope-token... or not a valid one) grants ``notes:read`` and is
   forwarded as two clean scopes. RFC 6749 §3.3 delimits with %x20 only.
3. A validly signed token whose ``sub`` / ``client_id`` / scope holds a control character or a
   lone surrogate (``"\\ud800"``, which Python's json accepts) is *allowed* and then answered
   500 ``server_error`` (the surrogate one with a traceback in the server log, the audit line
   says ``allow``): a credential that cannot be forwarded is an invalid one (401).
4. The same ``sub`` / ``client_id`` from two different trusted issuers reaches the upstream as
   byte-identical identity headers -- the very same ``X-Restguard-Identity`` token (jti
   included, from the 60 s identity cache): the upstream cannot tell ``alice@idp-a`` from
   ``alice@idp-b`` (OIDC Core §2: only (iss, sub) is unique).
5. The per-credential ``rate_limit`` of a route is keyed on ``jwt:<client_id>``: another
   issuer's token with the same ``client_id``, or any token without a client id (all share
   ``jwt:``), exhausts the limit of unrelated subjects.
6. A request waiting on an issuer's JWKS fetch when that issuer is removed never gets an
   answer: the directory closes the issuer's ``JWKSCache``, the fetch task is cancelled, the
   ``CancelledError`` kills the exchange (``_guarded`` catches ``Exception`` only) and the
   connection hangs with no response and no decision recorded.
7. ``restguard signing-key rotate`` with the wrong master key on a data directory without a
   live signing key (right after ``init``) seals the new key with the wrong master key and
   reports success; ``serve`` with the right key then refuses to start (the data dir is
   bricked until the row is deleted by hand). ``serve``'s first start has the same hole.

What held is below the findings (each a passing test).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from restguard.cli.main import cli
from restguard.clock import SystemClock
from restguard.config import load
from restguard.keys.sealing import MASTER_KEY_ENV, next_key_path
from restguard.wiring import open_runtime
from tests.attacks.wire import (
    Response,
    assert_forwarded,
    assert_refused,
    exchange,
    request,
    send,
)
from tests.harness import GatewayProcess, Received, RecordingUpstream, free_port
from tests.jwt_support import (
    DROP,
    JWKSServer,
    Signer,
    add_issuer,
    bearer,
    claims_for,
    jwks_of,
    mint_raw,
    remove_issuer,
    wait_until,
)

ROUTES = """\
[[routes]]
path = "/jwt/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["jwt"]

[[routes]]
path = "/lim1"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["jwt"]
rate_limit = "3/minute"

[[routes]]
path = "/lim2"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["jwt"]
rate_limit = "3/minute"

[[routes]]
path = "/any/**"
methods = ["GET"]
scopes = ["notes:read"]
"""

AUD = "api"
A_ISS = "https://a.example/"
B_ISS = "https://b.example/"
P_ISS = "https://perm.example/"  # scope_claim = "scp"
A = Signer.generate("ES256", "a-1")
B = Signer.generate("ES256", "b-1")
P = Signer.generate("EdDSA", "p-1")


@pytest.fixture(scope="module")
def jwks() -> Iterator[JWKSServer]:
    server = JWKSServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream, jwks: JWKSServer
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("review8") / "gw",
        upstream,
        routes=ROUTES,
        extra={"failed_attempts": '"100000/minute"'},
    ).start()
    add_issuer(gateway, issuer=A_ISS, jwks_uri=jwks.serve("/a", jwks_of(A)), audience=AUD)
    add_issuer(gateway, issuer=B_ISS, jwks_uri=jwks.serve("/b", jwks_of(B)), audience=AUD)
    add_issuer(
        gateway,
        issuer=P_ISS,
        jwks_uri=jwks.serve("/p", jwks_of(P)),
        audience=AUD,
        scope_claim="scp",
    )
    ready: list[tuple[Signer, str, dict[str, Any]]] = [
        (A, A_ISS, {}),
        (B, B_ISS, {}),
        (P, P_ISS, _scp("notes:read")),
    ]
    for signer, iss, over in ready:
        tok = mint_raw(signer, claims_for(iss, AUD, **over))
        wait_until(accepts(gateway, tok), timeout=10)
    yield gateway
    gateway.stop()


def accepts(gw: GatewayProcess, tok: str) -> Callable[[], bool]:
    return lambda: status(gw, tok) == 200


def _scp(*scopes: str) -> dict[str, Any]:
    return {"scope": DROP, "scp": list(scopes)}


def status(gw: GatewayProcess, tok: str | bytes, path: bytes = b"/jwt/x") -> int:
    return send(gw.port, request(path, bearer(tok))).status


def tok_a(**over: Any) -> str:
    return mint_raw(A, claims_for(A_ISS, AUD, **over))


def tok_b(**over: Any) -> str:
    return mint_raw(B, claims_for(B_ISS, AUD, **over))


def forwarded(gw: GatewayProcess, tok: str | bytes, path: bytes = b"/jwt/x") -> Received:
    _, got = assert_forwarded(gw, request(path, bearer(tok)), path)
    assert got.header("authorization") is None
    assert got.header("x-restguard-auth-method") == "jwt"
    return got


def refused(
    gw: GatewayProcess, tok: str | bytes, status: int = 401, error: str | None = None
) -> Response:
    return assert_refused(gw, request(b"/jwt/x", bearer(tok)), status, error)


def restguard_headers(got: Received) -> list[tuple[bytes, bytes]]:
    return [(k.lower(), v) for k, v in got.headers if k.lower().startswith(b"x-restguard-")]


# === findings ===================================================================================


def test_array_scope_with_a_space_does_not_become_two_scopes_upstream(
    gw: GatewayProcess,
) -> None:
    tok = mint_raw(P, claims_for(P_ISS, AUD, **_scp("notes:read", "x admin")))
    response = send(gw.port, request(b"/jwt/x", bearer(tok)))
    if response.status == 200:  # accepted: then the upstream must not see 'admin' as a scope
        scopes = (gw.upstream.last().header("x-restguard-scopes") or "").split(" ")
        assert "admin" not in scopes, scopes
    else:  # or the token is refused as malformed (RFC 6749 §3.3 scope-token has no SP)
        assert response.status == 401
    # twin: clean array scopes pass
    got = forwarded(gw, mint_raw(P, claims_for(P_ISS, AUD, **_scp("notes:read", "x"))))
    assert got.header("x-restguard-scopes") == "notes:read x"


@pytest.mark.parametrize("sep", ["\u00a0", "\x1f", "\u0085", "\u2003"], ids=repr)
def test_scope_string_is_split_on_spaces_only(gw: GatewayProcess, sep: str) -> None:
    response = send(gw.port, request(b"/jwt/x", bearer(tok_a(scope=f"admin{sep}notes:read"))))
    assert response.status in (401, 403), response.status  # no scope-token 'notes:read' in it
    forwarded(gw, tok_a(scope="admin notes:read"))


def _payload_with(raw_member: str, **drop: Any) -> bytes:
    """Valid claims for A without ``sub`` (and ``drop``), then raw JSON member text (escapes
    kept as written)."""
    base = json.dumps(claims_for(A_ISS, AUD, sub=DROP, **drop))[:-1]
    return (base + ", " + raw_member + "}").encode()


UNWRITABLE = {
    "sub-crlf-injection": _payload_with(r'"sub": "alice\r\nX-Restguard-Scopes: admin"'),
    "sub-nul": _payload_with(r'"sub": "a\u0000b"'),
    "sub-lone-surrogate": _payload_with(r'"sub": "al\ud800ice"'),
    "client-id-del": _payload_with('"sub": "alice", "client_id": "app\\u007f"', client_id=DROP),
    "scope-lone-surrogate": json.dumps(claims_for(A_ISS, AUD, scope="notes:read X"))
    .replace(" X", " \\udfff")
    .encode(),
}


@pytest.mark.parametrize("case", list(UNWRITABLE))
def test_identity_that_cannot_be_a_header_value_is_an_invalid_token(
    gw: GatewayProcess, case: str
) -> None:
    response = refused(gw, mint_raw(A, UNWRITABLE[case]), 401, "invalid_token")
    assert response.status == 401
    forwarded(gw, tok_a())


def test_same_subject_from_two_issuers_is_distinguishable_upstream(gw: GatewayProcess) -> None:
    sub = "victim-" + secrets.token_hex(4)
    got_a = forwarded(gw, tok_a(sub=sub))
    got_b = forwarded(gw, tok_b(sub=sub))
    assert got_a.header("x-restguard-subject") == sub == got_b.header("x-restguard-subject")
    # Something the upstream receives must name the issuer: a header or a claim of the
    # signed identity token.
    assert restguard_headers(got_a) != restguard_headers(got_b)


@pytest.mark.parametrize("case", ["same-client-id-other-issuer", "no-client-id"])
def test_rate_limit_of_one_subject_is_not_spent_by_another(gw: GatewayProcess, case: str) -> None:
    if case == "same-client-id-other-issuer":
        path, client = b"/lim1", "app-" + secrets.token_hex(4)
        attacker = tok_b(sub="mallory", client_id=client)
        victim = tok_a(sub="alice", client_id=client)
    else:
        path = b"/lim2"
        attacker = tok_b(sub="mallory", client_id=DROP)
        victim = tok_a(sub="alice", client_id=DROP)
    for _ in range(3):
        assert status(gw, attacker, path) == 200
    assert status(gw, attacker, path) == 429  # the attacker's own limit: fine
    assert status(gw, victim, path) == 200  # alice (another issuer, another subject): untouched


def test_request_waiting_on_a_jwks_fetch_of_a_removed_issuer_is_answered(
    gw: GatewayProcess, jwks: JWKSServer
) -> None:
    iss = "https://inflight.example/"
    first, second = Signer.generate("ES256", "if-1"), Signer.generate("ES256", "if-2")
    record = add_issuer(
        gw, issuer=iss, jwks_uri=jwks.serve("/inflight", jwks_of(first)), audience=AUD
    )
    wait_until(lambda: status(gw, mint_raw(first, claims_for(iss, AUD))) == 200, timeout=10)
    jwks.serve("/inflight", jwks_of(first, second), delay=1.5)  # a new key, slowly
    time.sleep(2.2)  # past the refetch cooldown: the new kid makes the request wait on a fetch
    answers: list[Any] = []
    started = time.monotonic()

    def client() -> None:
        answers.extend(
            exchange(
                gw.port,
                request(b"/jwt/x", bearer(mint_raw(second, claims_for(iss, AUD)))),
                timeout=8,
            )
        )

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.4)
    remove_issuer(gw, record.id)  # the directory notices within 0.5 s, mid-fetch
    thread.join(15)
    assert answers, f"no answer within {time.monotonic() - started:.1f} s"
    assert answers[0].status in (401, 503)
    assert time.monotonic() - started < 5


def test_signing_key_rotate_with_a_wrong_master_key_leaves_the_data_dir_openable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    runner = CliRunner()
    directory = tmp_path / "d"
    assert runner.invoke(cli, ["init", "--dir", str(directory)]).exit_code == 0
    config = str(directory / "restguard.toml")
    monkeypatch.setenv(MASTER_KEY_ENV, "A" * 43)  # not this data directory's key
    wrong = runner.invoke(cli, ["signing-key", "rotate", "--config", config])
    monkeypatch.delenv(MASTER_KEY_ENV)
    # Either the command refuses the key, or whatever it did leaves the data dir openable.
    if wrong.exit_code == 0:
        asyncio.run(_opens(config))
    else:
        assert "Traceback" not in wrong.output
        asyncio.run(_opens(config))


async def _opens(config: str) -> None:
    runtime = await open_runtime(load(Path(config)), clock=SystemClock())
    try:
        token = runtime.keys.sign({"sub": "x"})
        assert runtime.keys.verify(token) == {"sub": "x"}
    finally:
        runtime.close()


# === what held ==================================================================================


def test_cached_token_is_verified_again_when_the_kid_gets_new_key_material(
    gw: GatewayProcess, jwks: JWKSServer
) -> None:
    """The verified cache is bound to the KeySet object: the issuer replacing the key behind a
    kid (same kid, new material) voids every token the old key signed, cached or not."""
    iss = "https://swap.example/"
    old, new = Signer.generate("ES256", "swap-1"), Signer.generate("ES256", "swap-1")
    add_issuer(gw, issuer=iss, jwks_uri=jwks.serve("/swap", jwks_of(old)), audience=AUD)
    cached = mint_raw(old, claims_for(iss, AUD))
    wait_until(lambda: status(gw, cached) == 200, timeout=10)
    forwarded(gw, cached)  # in the verified cache now
    other = Signer.generate("ES256", "swap-2")
    jwks.serve("/swap", jwks_of(new, other))
    time.sleep(2.1)
    trigger = mint_raw(other, claims_for(iss, AUD))  # an unknown kid: one refetch
    wait_until(lambda: status(gw, trigger) == 200, timeout=5)
    refused(gw, cached, 401, "invalid_token")
    forwarded(gw, mint_raw(new, claims_for(iss, AUD)))


def test_cached_token_of_a_replaced_look_alike_issuer_is_refused(
    gw: GatewayProcess, jwks: JWKSServer
) -> None:
    """remove + add of the same iss with another audience: a token cached under the first
    record is not accepted by the second."""
    iss = "https://lookalike.example/"
    signer = Signer.generate("EdDSA", "la-1")
    uri = jwks.serve("/lookalike", jwks_of(signer))
    first = add_issuer(gw, issuer=iss, jwks_uri=uri, audience=AUD)
    cached = mint_raw(signer, claims_for(iss, AUD))
    wait_until(lambda: status(gw, cached) == 200, timeout=10)
    forwarded(gw, cached)
    remove_issuer(gw, first.id)
    add_issuer(gw, issuer=iss, jwks_uri=uri, audience="other-api")
    twin = mint_raw(signer, claims_for(iss, "other-api"))
    wait_until(lambda: status(gw, twin) == 200, timeout=10)
    refused(gw, cached, 401, "invalid_token")


@pytest.mark.parametrize("variant", ["trailing-slash", "upper-case", "default-port", "exact"])
def test_variants_of_restguards_own_issuer_are_refused(gw: GatewayProcess, variant: str) -> None:
    own = gw.settings.server.public_url
    iss = {
        "trailing-slash": own + "/",
        "upper-case": own.upper(),
        "default-port": own.replace("http://", "http://localhost@"),
        "exact": own,
    }[variant]
    evil = Signer.generate("ES256", "a-1")  # A's kid, the attacker's key
    for signer in (evil, A):
        response = assert_refused(
            gw, request(b"/jwt/x", bearer(mint_raw(signer, claims_for(iss, AUD)))), 401, None
        )
        assert response.json()["error"] in ("invalid_token", "unauthorized")
    forwarded(gw, tok_a())


def test_forged_restguard_headers_next_to_a_jwt_are_dropped(gw: GatewayProcess) -> None:
    forged = [
        (b"X-Restguard-Subject", b"root"),
        (b"X-Restguard-Scopes", b"admin"),
        (b"X-Restguard-Identity", tok_b(sub="root").encode()),
        (b"x-restguard-auth-method", b"api_key"),
        (b"X_Restguard_Client_Id", b"evil"),
        (b"X-RESTGUARD-SUBJECT", b"root"),
    ]
    _, got = assert_forwarded(gw, request(b"/jwt/x", bearer(tok_a()), *forged), b"/jwt/x")
    assert got.header("x-restguard-subject") == "alice"
    assert got.header("x-restguard-scopes") == "notes:read"
    assert got.header("x-restguard-client-id") == "app-1"
    assert b"x_restguard_client_id" not in {k.lower() for k, _ in got.headers}
    for header in (
        (b"X-API-Key", tok_a().encode()),
        (b"Authorization", b"ApiKey " + tok_a().encode()),
    ):
        assert_refused(gw, request(b"/jwt/x", header), 401, None)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xef\xbb\xbf" + json.dumps(claims_for(A_ISS, AUD)).encode(),
        json.dumps(claims_for(A_ISS, AUD)).encode("utf-16"),
        json.dumps(claims_for(A_ISS, AUD))[:-1].encode() + b', "\\u0073ub": "root"}',
        json.dumps(claims_for(A_ISS, AUD))[:-1].encode() + b', "\\u0073cope": "admin"}',
        _payload_with('"sub": "a", "exp": NaN', exp=DROP),
        _payload_with('"sub": "a", "exp": Infinity', exp=DROP),
        _payload_with('"sub": "a", "exp": 1e400', exp=DROP),
        _payload_with('"sub": "a", "nbf": -Infinity'),
        _payload_with('"sub": "a", "exp": 1' + "0" * 4000, exp=DROP),
        _payload_with('"sub": "a", "x": ' + "[" * 2000 + "]" * 2000),
        _payload_with('"sub": "a", "aud": ["x\\u0000", "api\\u0000"]', aud=DROP),
    ],
    ids=[
        "bom",
        "utf16",
        "escaped-dup-sub",
        "escaped-dup-scope",
        "nan",
        "infinity",
        "1e400",
        "minus-infinity-nbf",
        "4000-digit-exp",
        "deep-nesting",
        "aud-with-nul",
    ],
)
def test_json_edge_cases_are_invalid_tokens(gw: GatewayProcess, payload: bytes) -> None:
    started = time.monotonic()
    refused(gw, mint_raw(A, payload), 401, "invalid_token")
    assert time.monotonic() - started < 1.0
    forwarded(gw, tok_a())


def test_huge_header_with_deep_nesting_is_cheap(gw: GatewayProcess) -> None:
    header = b'{"alg": "ES256", "kid": "a-1", "x": ' + b"[" * 4000 + b"]" * 4000 + b"}"
    started = time.monotonic()
    for _ in range(20):
        refused(gw, mint_raw(A, claims_for(A_ISS, AUD), header), 401, "invalid_token")
    assert time.monotonic() - started < 3.0
    forwarded(gw, tok_a())


class TrickleJWKS:
    """A JWKS endpoint that sends its head, then one byte every 0.1 s, forever."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        try:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            while not self.stopped.is_set():
                conn.sendall(b"X-Pad: y\r\n")
                time.sleep(0.1)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


def test_jwks_server_that_trickles_its_head_answers_503_in_time(gw: GatewayProcess) -> None:
    trickle = TrickleJWKS()
    try:
        signer = Signer.generate("ES256", "tr-1")
        iss = "https://trickle.example/"
        add_issuer(gw, issuer=iss, jwks_uri=f"http://127.0.0.1:{trickle.port}/jwks", audience=AUD)
        tok = mint_raw(signer, claims_for(iss, AUD))
        wait_until(lambda: status(gw, tok) == 503, timeout=10)
        started = time.monotonic()
        refused(gw, tok, 503, "temporarily_unavailable")
        assert time.monotonic() - started < 3.0
        forwarded(gw, tok_a())  # other issuers unaffected
    finally:
        trickle.stop()


def test_no_token_bytes_in_audit_or_logs(
    gw: GatewayProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    marker = secrets.token_hex(6)
    tokens = [
        tok_a(jti=marker),  # allowed
        tok_a(jti=marker, exp=int(time.time()) - 5),  # expired
        mint_raw(A, UNWRITABLE["sub-lone-surrogate"]),  # the 500 path
        tok_a(jti=marker, iss="https://unknown.example/"),
        mint_raw(Signer.generate("ES256", "a-1"), claims_for(A_ISS, AUD, jti=marker)),
    ]
    for tok in tokens:
        send(gw.port, request(b"/jwt/x", bearer(tok)))
    text = json.dumps(gw.audit_events()) + caplog.text
    for tok in tokens:
        for piece in tok.split("."):
            if len(piece) > 20:
                assert piece not in text


def test_own_jwks_never_publishes_private_members(gw: GatewayProcess) -> None:
    runner = CliRunner()
    for alg in ("ES256", "RS256", "EdDSA"):
        result = runner.invoke(
            cli, ["signing-key", "rotate", "--alg", alg, "--config", str(gw.config)]
        )
        assert result.exit_code == 0, result.output

    def body() -> dict[str, Any]:
        response = send(gw.port, request(b"/.well-known/jwks.json"))
        assert response.status == 200
        return response.json()

    wait_until(lambda: len(body()["keys"]) >= 4, timeout=8)
    for jwk in body()["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi", "oth", "k"} & set(jwk), jwk
        assert jwk["kty"] in ("OKP", "EC", "RSA")


def test_master_key_rotation_interrupted_after_prepare_still_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    runner = CliRunner()
    directory = tmp_path / "d"
    assert runner.invoke(cli, ["init", "--dir", str(directory)]).exit_code == 0
    config = str(directory / "restguard.toml")
    asyncio.run(_opens(config))  # the first signing key
    assert runner.invoke(cli, ["signing-key", "rotate", "--config", config]).exit_code == 0
    key = directory / "master.key"
    before = key.read_bytes()

    def crash(*args: Any, **kwargs: Any) -> int:
        raise OSError("killed before the re-seal")

    with monkeypatch.context() as m:
        m.setattr("restguard.cli.master_key.reseal_all", crash)
        with pytest.raises(OSError):
            runner.invoke(cli, ["master-key", "rotate", "--config", config], catch_exceptions=False)
    nxt = next_key_path(key)
    assert nxt.exists() and stat.S_IMODE(nxt.stat().st_mode) == 0o600
    assert key.read_bytes() == before
    asyncio.run(_opens(config))  # opens mid-rotation
    # a signing key made mid-rotation is sealed with the next key; finishing keeps it
    assert runner.invoke(cli, ["signing-key", "rotate", "--config", config]).exit_code == 0
    done = runner.invoke(cli, ["master-key", "rotate", "--config", config, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["resumed"] is True
    assert not nxt.exists() and key.read_bytes() != before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not any(p.name.endswith(".tmp") for p in directory.iterdir())
    asyncio.run(_opens(config))
    assert os.environ.get(MASTER_KEY_ENV) is None
