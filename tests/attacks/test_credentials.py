"""Credential attacks: missing, malformed, guessed, revoked, expired, misplaced, duplicated and
over-used API keys; and the identity the upstream receives (a JWT it can verify itself)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
import pytest
from click.testing import CliRunner

from restguard.cli.main import cli
from restguard.credentials.apikey import generate_key
from restguard.store.sql import open_store
from tests.attacks.conftest import Keys
from tests.attacks.sockets import send_from
from tests.attacks.wire import (
    api_key,
    assert_forwarded,
    assert_json_error,
    assert_refused,
    request,
    send,
)
from tests.harness import GatewayProcess, RecordingUpstream

# The default route accepts every method this build has: one challenge each (CONTRACT 401).
CHALLENGES = [
    'ApiKey realm="restguard"',
    'Signature realm="restguard"',
    'Bearer realm="restguard"',
    'OAuth realm="restguard"',
]


def bearer_apikey(key: str) -> tuple[bytes, bytes]:
    return (b"Authorization", b"ApiKey " + key.encode())


def bearer(key: str) -> tuple[bytes, bytes]:
    """``Authorization: Bearer rg_ak_...``: the prefix tells an API key from a JWT."""
    return (b"Authorization", b"Bearer " + key.encode())


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    """This module's shared gateway, with a failed-attempt limit its many deliberate 401s
    (every 401 counts toward the lockout) cannot reach; the lockout itself is tested on a
    gateway with the default limit (``fresh_gw``)."""
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("credentials") / "gw",
        upstream,
        extra={"failed_attempts": '"10000/minute"'},
    ).start()
    yield gateway
    gateway.stop()


def revoke_in_store(gw: GatewayProcess, key_id: str) -> None:
    async def act() -> None:
        store = open_store(gw.settings.database_url)
        try:
            await store.api_keys.revoke(key_id, datetime.now(UTC))
        finally:
            store.close()

    asyncio.run(act())


# --- missing and malformed ------------------------------------------------------------------------


def test_missing_credential(gw: GatewayProcess, keys: Keys) -> None:
    response = assert_refused(gw, request(b"/notes/1"), 401, "unauthorized")
    assert response.values("WWW-Authenticate") == CHALLENGES
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")


def test_empty_credential(gw: GatewayProcess, keys: Keys) -> None:
    # An empty key is either a malformed request (400) or a malformed credential (401
    # invalid_token): the contract allows both readings; it is never forwarded.
    for header in ((b"X-API-Key", b""), (b"Authorization", b"ApiKey ")):
        response = send(gw.port, request(b"/notes/1", header))
        assert response.status in (400, 401), response.status
        expected = "invalid_request" if response.status == 400 else "invalid_token"
        assert_json_error(response, response.status, expected)
    assert gw.upstream.requests == []
    assert_forwarded(gw, request(b"/notes/1", bearer_apikey(keys.reader)), b"/notes/1")


def _flip(key: str, index: int) -> str:
    c = key[index]
    return key[:index] + ("b" if c == "a" else "a") + key[index + 1 :]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda k: "rg_xx_" + k[6:], id="wrong-prefix"),
        pytest.param(lambda k: k[:-1], id="too-short"),
        pytest.param(lambda k: k + "a", id="too-long"),
        pytest.param(lambda k: _flip(k, 30), id="one-char-flipped-in-secret"),
        pytest.param(lambda k: _flip(k, 8), id="one-char-flipped-in-id"),
        pytest.param(lambda k: _flip(k, len(k) - 1), id="one-char-flipped-in-checksum"),
        pytest.param(lambda k: k.upper(), id="upper-cased"),
        pytest.param(lambda k: "x" * 5000, id="huge"),
        pytest.param(lambda k: k[:20] + "\u00e9" + k[21:], id="non-ascii"),
    ],
)
def test_malformed_api_key(gw: GatewayProcess, keys: Keys, mangle) -> None:
    # CONTRACT: a key of the wrong shape, too long, not ASCII or with a bad checksum is an
    # invalid credential (RFC 6750 invalid_token covers malformed tokens): 401 with the
    # ApiKey challenge, not 400.
    bad = mangle(keys.reader).encode("utf-8")
    for header in ((b"X-API-Key", bad), (b"Authorization", b"ApiKey " + bad)):
        response = assert_refused(gw, request(b"/notes/1", header), 401, "invalid_token")
        assert response.values("WWW-Authenticate") == CHALLENGES
    # As a Bearer token it is an invalid (or, without the rg_ak_ prefix, an unknown) credential.
    assert_refused(gw, request(b"/notes/1", (b"Authorization", b"Bearer " + bad)), 401, None)
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")


# --- guessed, revoked, expired --------------------------------------------------------------------


def test_unknown_key_id_with_valid_checksum(gw: GatewayProcess, keys: Keys) -> None:
    _, forged = generate_key()
    response = assert_refused(gw, request(b"/notes/1", api_key(forged)), 401, "invalid_token")
    assert response.values("WWW-Authenticate") == CHALLENGES
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")


def test_wrong_secret_for_known_id(gw: GatewayProcess, keys: Keys) -> None:
    _, forged = generate_key(key_id=keys.writer_id)
    assert forged != keys.writer and forged.split("_")[2] == keys.writer_id
    assert_refused(gw, request(b"/notes/1", api_key(forged)), 401, "invalid_token")
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.writer)), b"/notes/1")


def test_revoked_key(gw: GatewayProcess, keys: Keys) -> None:
    key_id, key = gw.issue_key("notes:read", name="soon-revoked")
    result = CliRunner().invoke(cli, ["apikey", "revoke", key_id, "--config", str(gw.config)])
    assert result.exit_code == 0, result.output
    assert_refused(gw, request(b"/notes/1", api_key(key)), 401, "invalid_token")
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")


def test_expired_key(gw: GatewayProcess) -> None:
    _, key = gw.issue_key("notes:read", name="short-lived", expires_in=1)
    assert_forwarded(gw, request(b"/notes/1", api_key(key)), b"/notes/1")  # twin: still valid
    time.sleep(1.2)
    assert_refused(gw, request(b"/notes/1", api_key(key)), 401, "invalid_token")


def test_revocation_takes_effect_within_one_second(gateway_on: GatewayProcess) -> None:
    gw = gateway_on
    key_id, key = gw.issue_key("notes:read", name="revoked-while-cached")
    assert_forwarded(gw, request(b"/notes/1", api_key(key)), b"/notes/1")  # now cached
    revoke_in_store(gw, key_id)
    time.sleep(1.1)
    assert_refused(gw, request(b"/notes/1", api_key(key)), 401, "invalid_token")
    assert_refused(gw, request(b"/notes/1", bearer_apikey(key)), 401, "invalid_token")


# --- misplaced and duplicated ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [b"api_key={k}", b"apikey={k}", b"X-API-Key={k}", b"anything={k}", b"a=1&token={k}&b=2"],
)
def test_key_in_query_string(gw: GatewayProcess, keys: Keys, query: bytes) -> None:
    target = b"/notes/1?" + query.replace(b"{k}", keys.reader.encode())
    # Even alongside a valid header key: a key in a URL leaks into logs, so it is never accepted
    # and never forwarded.
    assert_refused(gw, request(target), 400)
    assert_refused(gw, request(target, api_key(keys.reader)), 400)
    assert keys.reader not in gw.settings.audit_path.read_text()  # nor in the decision log
    assert_forwarded(gw, request(b"/notes/1?a=1&b=2", api_key(keys.reader)), b"/notes/1?a=1&b=2")


def test_key_in_both_headers(gw: GatewayProcess, keys: Keys) -> None:
    data = request(b"/notes/1", api_key(keys.reader), bearer_apikey(keys.reader))
    assert_refused(gw, data, 400)
    data = request(b"/notes/1", api_key(keys.reader), bearer_apikey(keys.writer))
    assert_refused(gw, data, 400)
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")
    assert_forwarded(gw, request(b"/notes/1", bearer_apikey(keys.reader)), b"/notes/1")


def test_repeated_api_key_header(gw: GatewayProcess, keys: Keys) -> None:
    assert_refused(gw, request(b"/notes/1", api_key(keys.reader), api_key(keys.writer)), 400)
    assert_refused(gw, request(b"/notes/1", api_key(keys.reader), api_key(keys.reader)), 400)
    data = request(b"/notes/1", bearer_apikey(keys.reader), bearer_apikey(keys.writer))
    assert_refused(gw, data, 400)
    assert_forwarded(gw, request(b"/notes/1", api_key(keys.writer)), b"/notes/1")


@pytest.mark.parametrize("scheme", [b"ApiKey", b"apikey", b"APIKEY", b"aPiKeY"])
def test_authorization_scheme_is_case_insensitive(
    gw: GatewayProcess, keys: Keys, scheme: bytes
) -> None:
    # RFC 9110 §11.1: auth schemes are case-insensitive. The twin of every Authorization attack.
    data = request(b"/notes/1", (b"Authorization", scheme + b" " + keys.reader.encode()))
    _, seen = assert_forwarded(gw, data, b"/notes/1")
    assert seen.header("X-Restguard-Subject") == "reader"
    assert seen.header("Authorization") is None


def test_api_key_as_bearer_token(gw: GatewayProcess, keys: Keys) -> None:
    # CONTRACT: Authorization: Bearer rg_ak_... is an API key (the prefix tells it from a JWT).
    _, seen = assert_forwarded(gw, request(b"/notes/1", bearer(keys.reader)), b"/notes/1")
    assert seen.header("X-Restguard-Subject") == "reader"
    assert seen.header("X-Restguard-Auth-Method") == "api_key"
    assert seen.header("Authorization") is None
    # The scheme is case-insensitive (RFC 9110 §11.1) and the key still has to be valid.
    data = request(b"/notes/1", (b"Authorization", b"bEaReR " + keys.reader.encode()))
    assert_forwarded(gw, data, b"/notes/1")
    _, forged = generate_key(key_id=keys.reader_id)
    response = assert_refused(gw, request(b"/notes/1", bearer(forged)), 401, "invalid_token")
    assert response.values("WWW-Authenticate") == CHALLENGES
    # Bearer and another header at once are two credentials: 400.
    assert_refused(gw, request(b"/notes/1", bearer(keys.reader), api_key(keys.reader)), 400)


def test_api_key_under_another_scheme(gw: GatewayProcess, keys: Keys) -> None:
    for scheme in (b"Basic", b"ApiKeys", b"Token"):
        data = request(b"/notes/1", (b"Authorization", scheme + b" " + keys.reader.encode()))
        assert_refused(gw, data, 401, error=None)
    assert_forwarded(gw, request(b"/notes/1", bearer_apikey(keys.reader)), b"/notes/1")


# --- scopes ---------------------------------------------------------------------------------------


def test_wrong_scope(gw: GatewayProcess, keys: Keys) -> None:
    data = request(b"/notes/1", api_key(keys.reader), (b"Content-Length", b"2"), method=b"PUT")
    response = assert_refused(gw, data + b"{}", 403, "insufficient_scope")
    assert response.json()["scope"] == "notes:write"
    data = request(b"/notes/1", api_key(keys.writer), (b"Content-Length", b"2"), method=b"PUT")
    _, seen = assert_forwarded(gw, data + b"{}", b"/notes/1", method="PUT")
    assert seen.body == b"{}"


def test_key_without_scopes_on_scoped_route(gw: GatewayProcess, keys: Keys) -> None:
    _, key = gw.issue_key(name="no-scopes")
    response = assert_refused(gw, request(b"/notes/1", api_key(key)), 403, "insufficient_scope")
    assert response.json()["scope"] == "notes:read"
    # Twin: a route with no scopes takes it.
    assert_forwarded(gw, request(b"/limited", api_key(key)), b"/limited")


# --- what the upstream receives -------------------------------------------------------------------


def test_credential_is_stripped_before_the_upstream(gw: GatewayProcess, keys: Keys) -> None:
    for header in (api_key(keys.reader), bearer_apikey(keys.reader), bearer(keys.reader)):
        _, seen = assert_forwarded(gw, request(b"/notes/1", header), b"/notes/1")
        assert seen.header("X-API-Key") is None
        assert seen.header("Authorization") is None
        assert keys.reader.encode() not in b"".join(v for _, v in seen.headers)
        assert keys.reader.encode() not in seen.target + seen.body


def test_credential_is_kept_on_forward_credentials_route(gw: GatewayProcess, keys: Keys) -> None:
    _, seen = assert_forwarded(gw, request(b"/fwd/x", api_key(keys.reader)), b"/fwd/x")
    assert seen.header("X-API-Key") == keys.reader
    _, seen = assert_forwarded(gw, request(b"/fwd/x", bearer_apikey(keys.reader)), b"/fwd/x")
    assert seen.header("Authorization") == "ApiKey " + keys.reader
    assert seen.header("X-Restguard-Subject") == "reader"
    _, seen = assert_forwarded(gw, request(b"/fwd/x", bearer(keys.reader)), b"/fwd/x")
    assert seen.header("Authorization") == "Bearer " + keys.reader


def test_upstream_can_verify_identity_token(gw: GatewayProcess, keys: Keys) -> None:
    _, seen = assert_forwarded(gw, request(b"/notes/1", api_key(keys.reader)), b"/notes/1")
    token = seen.header("X-Restguard-Identity")
    assert token
    jwks = httpx.get(gw.url + "/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(token)["kid"]
    [key] = [k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid]
    claims = jwt.decode(
        token,
        key=key,
        algorithms=["EdDSA"],
        issuer=gw.settings.server.public_url,
        options={"require": ["iss", "sub", "iat", "exp", "jti"]},
    )
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    assert claims["iss"] == gw.settings.server.public_url
    assert claims["sub"] == "reader"
    assert claims["client_id"] == keys.reader_id
    assert claims["scope"] == "notes:read"
    assert claims["auth_method"] == "api_key"
    assert claims["jti"]
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert claims["iat"] <= time.time() + 5
    # A forged token (signed by anyone else) does not verify against the gateway's JWKS.
    forged = token.rsplit(".", 1)[0] + "." + "A" * 86
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key=key, algorithms=["EdDSA"], issuer=gw.settings.server.public_url)


# --- brute force and rate limits (their own gateway: the limits are per client address) -----------


@pytest.fixture
def fresh_gw(tmp_path: Path, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path / "gw", upstream).start()
    yield gateway
    gateway.stop()


def test_brute_force_is_blocked_after_failed_attempt_limit(fresh_gw: GatewayProcess) -> None:
    gw = fresh_gw
    key_id, key = gw.issue_key("notes:read", name="victim")
    assert gw.settings.server.failed_attempts == (30, 60.0)  # the default: 30/minute
    assert_forwarded(gw, request(b"/notes/1", api_key(key)), b"/notes/1")  # twin, before
    for _ in range(30):
        _, guess = generate_key(key_id=key_id)
        assert_refused(gw, request(b"/notes/1", api_key(guess)), 401, "invalid_token")
    _, guess = generate_key(key_id=key_id)
    response = assert_refused(gw, request(b"/notes/1", api_key(guess)), 429, "rate_limited")
    assert int(response.header("Retry-After") or 0) >= 1
    # The lockout refuses failing attempts only: the owner's valid key still works, from this
    # address (a stranger behind the same proxy or NAT cannot lock it out) and from another.
    assert_forwarded(gw, request(b"/notes/1", api_key(key)), b"/notes/1")
    assert_other_address_unaffected(gw, key)


def assert_other_address_unaffected(gw: GatewayProcess, key: str) -> None:
    """CONTRACT: nothing a stranger does refuses a credential's valid use from another address
    (127.0.0.2 is another client on loopback)."""
    before = len(gw.upstream.requests)
    response = send_from(gw.port, request(b"/notes/1", api_key(key)), "127.0.0.2")
    assert response.status == 200, (response.status, response.body[:200])
    assert len(gw.upstream.requests) == before + 1


MALFORMED_KEYS = [
    lambda k, i: k[:-1],
    lambda k, i: k + "a",
    lambda k, i: _flip(k, len(k) - 1 - i % 6),  # bad checksum
    lambda k, i: "rg_xx_" + k[6:],
    lambda k, i: f"garbage-{i}",
    lambda k, i: k.upper(),
    lambda k, i: "x" * (200 + i),
]


def test_malformed_keys_count_toward_the_lockout(fresh_gw: GatewayProcess) -> None:
    # CONTRACT: every 401 counts, so a stream of garbage keys ends in 429 like one of guesses.
    gw = fresh_gw
    _, key = gw.issue_key("notes:read", name="victim")
    assert_forwarded(gw, request(b"/notes/1", api_key(key)), b"/notes/1")  # twin, before
    for i in range(30):
        bad = MALFORMED_KEYS[i % len(MALFORMED_KEYS)](key, i)
        header = api_key(bad) if i % 2 else bearer_apikey(bad)
        assert_refused(gw, request(b"/notes/1", header), 401, "invalid_token")
    response = assert_refused(gw, request(b"/notes/1", api_key("garbage")), 429, "rate_limited")
    assert int(response.header("Retry-After") or 0) >= 1
    assert_forwarded(gw, request(b"/notes/1", api_key(key)), b"/notes/1")  # valid: still passes
    assert_other_address_unaffected(gw, key)


def test_missing_credentials_count_toward_the_lockout(fresh_gw: GatewayProcess) -> None:
    # CONTRACT: every 401 counts, "missing" ones too (a scanner probing protected routes).
    gw = fresh_gw
    _, key = gw.issue_key("notes:read", name="victim")
    assert_forwarded(gw, request(b"/notes/1", api_key(key)), b"/notes/1")  # twin, before
    for i in range(30):
        assert_refused(gw, request(b"/notes/%d" % i), 401, "unauthorized")
    response = assert_refused(gw, request(b"/notes/1"), 429, "rate_limited")
    assert int(response.header("Retry-After") or 0) >= 1
    assert_forwarded(gw, request(b"/notes/1", api_key(key)), b"/notes/1")  # valid: still passes
    assert_other_address_unaffected(gw, key)


def test_rate_limited_route(fresh_gw: GatewayProcess) -> None:
    gw = fresh_gw
    _, key = gw.issue_key(name="busy")
    for _ in range(3):
        assert_forwarded(gw, request(b"/limited", api_key(key)), b"/limited")
    response = assert_refused(gw, request(b"/limited", api_key(key)), 429, "rate_limited")
    assert int(response.header("Retry-After") or 0) >= 1
    assert len(gw.upstream.requests) == 3
    # The limit is per credential: another key still gets through.
    _, other = gw.issue_key(name="idle")
    assert_forwarded(gw, request(b"/limited", api_key(other)), b"/limited")


def test_refusals_are_json_never_plain_text(gw: GatewayProcess) -> None:
    # A grab-bag sanity check over the parser-level refusals (uvicorn's default is text/plain).
    for data in (
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello on the plain-text port
    ):
        response = send(gw.port, data)
        assert_json_error(response, 400, "invalid_request")
    # Versions other than 1.0 and 1.1 get 505 (test_http_versions.py); the HTTP/2 preface is
    # also a malformed request line, so either refusal is right for it.
    assert_json_error(send(gw.port, b"GET /notes/1 HTTP/9.9\r\n\r\n"), 505)
    response = send(gw.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # HTTP/2 prior knowledge
    assert response.status in (400, 505), response.status
    assert_json_error(response, response.status)
    assert gw.upstream.requests == []
