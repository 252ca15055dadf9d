"""Known JWT attacks against the ``jwt`` method, end to end through the real gateway.

Every attack is refused -- 401 ``invalid_token`` with the generic description and the
``Bearer ... error="invalid_token"`` challenge, unless the contract says 503 (no keys to be had)
-- and the upstream receives nothing (``assert_refused``); each has a valid twin that is
forwarded (``assert_forwarded``). The issuers live in the gateway's database and their keys on a
JWKS server on 127.0.0.1 (``tests/jwt_support.py``).

Decisions recorded here (see also ``keys/jwt_verify.py``'s module doc):

* A high-S ES256 signature (s' = n - s of a valid one) is ACCEPTED: RFC 7518 §3.4 does not ask for
  low-S, signers built on OpenSSL produce high-S half of the time, and a second encoding of a
  token someone already holds grants nothing more than the token itself (restguard keys nothing
  on the token's bytes). A DER signature, r or s out of [1, n-1] (psychic signatures) and
  Ed25519's non-canonical S are refused.
* ``typ`` is compared case-insensitively with an optional ``application/`` prefix (RFC 7515
  §4.1.9, RFC 8725 §3.11): ``at+jwt``, ``AT+JWT`` and ``application/at+jwt`` pass an issuer that
  requires ``at+jwt``; ``JWT``, ``application/jwt``, none and anything else do not.
* A header naming its own key (``jku``, ``x5u``, ``jwk``, ``x5c``) is refused outright, even when
  the token is signed by the issuer's real key; nothing it points to is fetched.
* An ``exp`` in the far future (1e300) is a valid NumericDate: accepted (no maximum lifetime).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID

from restguard.cli.main import cli
from restguard.errors import InvalidCredential
from tests.attacks.wire import assert_forwarded, assert_refused, request, send
from tests.harness import GatewayProcess, Received, RecordingUpstream
from tests.jwt_support import (
    DROP,
    P256_ORDER,
    JWKSServer,
    Signer,
    add_issuer,
    b64,
    bearer,
    claims_for,
    jwks_of,
    mint_raw,
    part,
    wait_until,
)

ROUTES = """\
[[routes]]
path = "/jwt/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["jwt"]

[[routes]]
path = "/any/**"
methods = ["GET"]
scopes = ["notes:read"]
"""

ISS = "https://idp.example/"
AUD = "api"
OTHER_ISS = "https://other.example/"
TYPED_ISS = "https://typed.example/"
LONG_ISS = "https://long.example/" + "x" * (120 - len("https://long.example/"))
GENERIC = InvalidCredential.default_description
INVALID_CHALLENGE = ['Bearer realm="restguard", error="invalid_token"']

ED = Signer.generate("EdDSA", "ed-1")
EC = Signer.generate("ES256", "ec-1")
RS = Signer.generate("RS256", "rs-1")
OTHER = Signer.generate("ES256", "b-1")  # the other issuer's only key
TYPED = Signer.generate("EdDSA", "t-1")
LONG = Signer.generate("ES256", "l-1")
EVIL = Signer.generate("ES256", "evil-1")  # the attacker's own key


@pytest.fixture(scope="module")
def jwks() -> Iterator[JWKSServer]:
    server = JWKSServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream, jwks: JWKSServer
) -> Iterator[GatewayProcess]:
    """One gateway for the module, with a failed-attempt limit the many deliberate 401s cannot
    reach, trusting four issuers (all live before the first test)."""
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("jwt") / "gw",
        upstream,
        routes=ROUTES,
        extra={"failed_attempts": '"100000/minute"'},
    ).start()
    issuers = [
        (ISS, "/a/jwks", (ED, EC, RS), None),
        (OTHER_ISS, "/b/jwks", (OTHER,), None),
        (TYPED_ISS, "/typed/jwks", (TYPED,), "at+jwt"),
        (LONG_ISS, "/long/jwks", (LONG,), None),
    ]
    for iss, path, signers, typ in issuers:
        uri = jwks.serve(path, jwks_of(*signers))
        add_issuer(gateway, issuer=iss, jwks_uri=uri, audience=AUD, typ=typ)
    for iss, _, signers, typ in issuers:
        for signer in signers:
            token = mint_raw(signer, claims_for(iss, AUD), typ=typ or "JWT")
            wait_until(lambda t=token: status(gateway, t) == 200)
    yield gateway
    gateway.stop()


def status(gw: GatewayProcess, token: str | bytes, path: bytes = b"/jwt/x") -> int:
    return send(gw.port, request(path, bearer(token))).status


def token(signer: Signer = EC, iss: str = ISS, **claims: Any) -> str:
    return mint_raw(signer, claims_for(iss, AUD, **claims))


def refused(
    gw: GatewayProcess,
    tok: str | bytes,
    error: str | None = "invalid_token",
    status: int = 401,
    path: bytes = b"/jwt/x",
) -> None:
    """Refused with the generic ``invalid_token`` 401 (or ``status``/``error``); nothing sent."""
    response = assert_refused(gw, request(path, bearer(tok)), status, error)
    if status == 401 and error == "invalid_token":
        assert response.json()["error_description"] == GENERIC, response.body
        if path == b"/jwt/x":
            assert response.values("WWW-Authenticate") == INVALID_CHALLENGE


def forwarded(gw: GatewayProcess, tok: str | bytes, path: bytes = b"/jwt/x") -> Received:
    _, got = assert_forwarded(gw, request(path, bearer(tok)), path)
    assert got.header("authorization") is None
    assert got.header("x-restguard-auth-method") == "jwt"
    return got


# --- alg none and key confusion ---


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_with_a_signature_part(gw: GatewayProcess, alg: str) -> None:
    good = token()
    for kid in ("ec-1", DROP):
        header = {"alg": alg, "typ": "JWT"} | ({} if kid is DROP else {"kid": kid})
        unsigned = part(header) + "." + part(claims_for(ISS, AUD))
        refused(gw, unsigned + "." + good.rsplit(".", 1)[1])  # a real signature, elsewhere
        refused(gw, unsigned + ".AAAA")
    forwarded(gw, good)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_without_a_signature_part(gw: GatewayProcess, alg: str) -> None:
    unsigned = part({"alg": alg, "kid": "ec-1"}) + "." + part(claims_for(ISS, AUD))
    refused(gw, unsigned + ".")  # malformed: an invalid token (RFC 6750 §3.1)
    refused(gw, unsigned)
    forwarded(gw, token())


def _hs256(secret: bytes, header: dict[str, Any], payload: dict[str, Any], alg: str) -> str:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = part(header) + "." + part(payload)
    return signing_input + "." + b64(hmac.new(secret, signing_input.encode(), digest).digest())


def _secrets(signer: Signer) -> dict[str, bytes]:
    jwk = signer.jwk()
    return {
        "pem": signer.public_pem(),
        "pem-stripped": signer.public_pem().strip(),
        "der": signer.public_der(),
        "jwk-json": json.dumps(jwk).encode(),
        "jwk-compact": json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode(),
        "jwks-json": json.dumps(jwks_of(signer)).encode(),
    }


@pytest.mark.parametrize("signer", [RS, EC, ED], ids=lambda s: s.alg)
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_key_confusion_hmac_with_the_public_key(gw: GatewayProcess, signer: Signer, alg: str):
    header = {"alg": alg, "typ": "JWT", "kid": signer.kid}
    for secret in _secrets(signer).values():
        refused(gw, _hs256(secret, header, claims_for(ISS, AUD), alg))
    # the single-key issuer selects its only key for a token without kid: still refused
    for secret in _secrets(OTHER).values():
        forged = _hs256(secret, {"alg": alg, "typ": "JWT"}, claims_for(OTHER_ISS, AUD), alg)
        refused(gw, forged)
    forwarded(gw, token(signer))
    forwarded(gw, mint_raw(OTHER, claims_for(OTHER_ISS, AUD), kid=DROP))


@pytest.mark.parametrize(
    ("signer", "claimed"),
    [
        (EC, "RS256"),
        (EC, "EdDSA"),
        (EC, "ES384"),
        (EC, "ES256K"),
        (RS, "ES256"),
        (RS, "RS512"),
        (ED, "ES256"),
        (ED, "Ed25519"),
        (ED, "Ed448"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.alg,
)
def test_header_alg_differs_from_the_keys(gw: GatewayProcess, signer: Signer, claimed: str):
    refused(gw, mint_raw(signer, claims_for(ISS, AUD), alg=claimed))
    forwarded(gw, token(signer))


def test_rsa_pss_signature_under_ps256_with_an_rs256_key(gw: GatewayProcess) -> None:
    header = {"alg": "PS256", "typ": "JWT", "kid": RS.kid}
    signing_input = part(header) + "." + part(claims_for(ISS, AUD))
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    signature = RS.private.sign(signing_input.encode(), pss, hashes.SHA256())
    refused(gw, signing_input + "." + b64(signature))
    forwarded(gw, token(RS))


# --- kid ---


@pytest.mark.parametrize(
    "kid",
    [
        "../../dev/null",
        "/dev/null",
        "../../../../../../etc/passwd",
        "' OR '1'='1",
        "ec-1' --",
        'ec-1"; DROP TABLE issuers; --',
        "ec-1\x00",
        "ec-1 ",
        "EC-1",
        "",
        "k" * 257,
        "k" * 4000,
        "${jndi:ldap://127.0.0.1/a}",
    ],
    ids=lambda k: repr(k[:30]) + (f"+{len(k)}" if len(k) > 30 else ""),
)
def test_kid_traversal_and_injection(gw: GatewayProcess, kid: str) -> None:
    refused(gw, mint_raw(EC, claims_for(ISS, AUD), kid=kid))
    forwarded(gw, token())


@pytest.mark.parametrize("kid", [123, 0, True, ["ec-1"], {"kid": "ec-1"}, 1.5])
def test_kid_that_is_not_a_string(gw: GatewayProcess, kid: Any) -> None:
    refused(gw, mint_raw(EC, claims_for(ISS, AUD), kid=kid))
    forwarded(gw, token())


def test_kid_null(gw: GatewayProcess) -> None:
    # ``"kid": null`` is not a string (RFC 7515 §4.1.4): refused, even by the single-key issuer
    # that would select its only key for a token without any kid.
    refused(gw, mint_raw(EC, claims_for(ISS, AUD), kid=None))
    refused(gw, mint_raw(OTHER, claims_for(OTHER_ISS, AUD), kid=None))
    forwarded(gw, mint_raw(OTHER, claims_for(OTHER_ISS, AUD), kid=DROP))


def test_kid_of_another_issuers_key(gw: GatewayProcess) -> None:
    refused(gw, mint_raw(OTHER, claims_for(ISS, AUD), kid=OTHER.kid))  # not in ISS's JWKS
    refused(gw, mint_raw(OTHER, claims_for(ISS, AUD), kid=EC.kid))  # ISS's kid, other key
    refused(gw, mint_raw(EC, claims_for(OTHER_ISS, AUD), kid=EC.kid))  # and the other way
    refused(gw, mint_raw(EC, claims_for(OTHER_ISS, AUD), kid=DROP))
    forwarded(gw, mint_raw(OTHER, claims_for(OTHER_ISS, AUD)))
    forwarded(gw, token())


# --- a header that names its own key ---


def _self_signed_cert(signer: Signer) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(signer.private, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


@pytest.mark.parametrize("member", ["jku", "x5u", "jwk", "x5c"])
def test_header_names_its_own_key(gw: GatewayProcess, jwks: JWKSServer, member: str) -> None:
    evil_jwks = jwks.serve("/evil/jwks", jwks_of(EVIL))
    evil_cert = jwks.serve("/evil/cert.pem", b"-----BEGIN CERTIFICATE-----\n")
    value: Any = {
        "jku": evil_jwks,
        "x5u": evil_cert,
        "jwk": EVIL.jwk(),
        "x5c": [base64.b64encode(_self_signed_cert(EVIL)).decode()],
    }[member]
    before = jwks.count("/evil/jwks") + jwks.count("/evil/cert.pem")
    for kid in (EVIL.kid, EC.kid, DROP):  # the attacker's kid, the issuer's kid, none
        refused(gw, mint_raw(EVIL, claims_for(ISS, AUD), kid=kid, **{member: value}))
    # Documented: even the issuer's real key does not make such a header acceptable.
    refused(gw, mint_raw(EC, claims_for(ISS, AUD), **{member: value}))
    time.sleep(0.2)
    assert jwks.count("/evil/jwks") + jwks.count("/evil/cert.pem") == before, "fetched!"
    forwarded(gw, token())


# --- signatures ---


def _resign(tok: str, signature: bytes) -> str:
    return tok.rsplit(".", 1)[0] + "." + b64(signature)


def _rs(tok: str) -> tuple[int, int]:
    sig = base64.urlsafe_b64decode(tok.rsplit(".", 1)[1] + "==")
    return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")


def test_es256_zero_and_psychic_signatures(gw: GatewayProcess) -> None:
    good = token()
    r, s = _rs(good)
    n = P256_ORDER
    for bad_r, bad_s in ((0, 0), (0, s), (r, 0), (n, s), (r, n), (n, n), (r + n, s)):
        if bad_r >= 2**256 or bad_s >= 2**256:
            continue
        refused(gw, _resign(good, bad_r.to_bytes(32, "big") + bad_s.to_bytes(32, "big")))
    refused(gw, _resign(good, bytes(64)))
    refused(gw, _resign(good, b"\x00"))
    forwarded(gw, good)


def test_es256_der_signature_refused(gw: GatewayProcess) -> None:
    claims = claims_for(ISS, AUD)
    header = {"alg": "ES256", "typ": "JWT", "kid": EC.kid}
    signing_input = part(header) + "." + part(claims)
    refused(gw, signing_input + "." + b64(EC.sign_der(signing_input.encode())))
    # R || S with 33-octet (sign-padded) integers is not the JWS form either
    r, s = _rs(mint_raw(EC, claims, header))
    refused(gw, signing_input + "." + b64(r.to_bytes(33, "big") + s.to_bytes(33, "big")))
    forwarded(gw, mint_raw(EC, claims, header))


def test_es256_high_s_is_accepted_as_documented(gw: GatewayProcess) -> None:
    # Decision (module doc): RFC 7518 allows either S; half of all OpenSSL-made signatures are
    # high-S, so refusing them would refuse valid tokens. Both forms verify, to one principal.
    good = token(sub="high-s")
    r, s = _rs(good)
    flipped = _resign(good, r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big"))
    assert flipped != good
    a, b = forwarded(gw, good), forwarded(gw, flipped)
    assert a.header("x-restguard-subject") == b.header("x-restguard-subject") == "high-s"


def test_ed25519_zero_and_non_canonical_signatures(gw: GatewayProcess) -> None:
    good = token(ED)
    sig = base64.urlsafe_b64decode(good.rsplit(".", 1)[1] + "==")
    refused(gw, _resign(good, bytes(64)))
    refused(gw, _resign(good, sig[:63]))
    refused(gw, _resign(good, sig + b"\x00"))
    order = 2**252 + 27742317777372353535851937790883648493  # the group order L
    s = int.from_bytes(sig[32:], "little")
    refused(gw, _resign(good, sig[:32] + (s + order).to_bytes(32, "little")))  # S + L
    forwarded(gw, good)


def test_rs256_zero_and_wrong_length_signatures(gw: GatewayProcess) -> None:
    good = token(RS)
    sig = base64.urlsafe_b64decode(good.rsplit(".", 1)[1] + "==")
    refused(gw, _resign(good, bytes(256)))
    refused(gw, _resign(good, b"\x00" + sig))  # one leading zero octet more
    refused(gw, _resign(good, sig[1:]))
    forwarded(gw, good)


# --- time ---


@pytest.mark.parametrize(
    "over",
    [
        {"exp": -1},
        {"exp": 0},
        {"nbf": 120},
        {"iat": 120},
        {"exp": DROP},
    ],
    ids=["expired", "expires-now", "nbf-future", "iat-future", "no-exp"],
)
def test_time_claims(gw: GatewayProcess, over: dict[str, Any]) -> None:
    t = int(time.time())
    claims = {k: (v if v is DROP else t + v) for k, v in over.items()}
    refused(gw, token(**claims))
    forwarded(gw, token(nbf=t - 10, iat=t - 10, exp=t + 60))


@pytest.mark.parametrize(
    "value",
    ["9999999999", "", True, False, None, [9999999999], {"t": 9999999999}, 10**400, -(10**400)],
    ids=["string", "empty", "true", "false", "null", "array", "object", "huge-int", "-huge-int"],
)
@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_non_numeric_or_unrepresentable_times(gw: GatewayProcess, name: str, value: Any) -> None:
    refused(gw, token(**{name: value}))
    forwarded(gw, token())


def test_time_as_float_and_far_future(gw: GatewayProcess) -> None:
    t = time.time()
    forwarded(gw, token(exp=t + 300.5, iat=t - 0.5, nbf=t - 0.25))
    forwarded(gw, token(exp=1e300))  # documented: a valid NumericDate, no maximum lifetime
    refused(gw, token(exp=t - 0.5))
    raw = json.dumps(claims_for(ISS, AUD, exp=DROP)).encode()[:-1] + b', "exp": 1e400}'
    refused(gw, mint_raw(EC, raw))  # JSON's 1e400 is infinity


# --- audience and issuer look-alikes ---


@pytest.mark.parametrize(
    "aud",
    [
        "api2",
        "API",
        "api ",
        " api",
        "ap",
        "",
        ["api2"],
        ["API"],
        [],
        ["x", 1, "api"],
        {"api": 1},
        1,
        None,
        DROP,
        "api\x00",
        "\uff41\uff50\uff49",  # fullwidth
    ],
    ids=repr,
)
def test_audience_look_alikes(gw: GatewayProcess, aud: Any) -> None:
    refused(gw, token(aud=aud))
    forwarded(gw, token(aud=["x", "api"]))
    forwarded(gw, token(aud="api"))


@pytest.mark.parametrize(
    "iss",
    [
        "https://idp.example",
        "https://idp.example//",
        "https://IDP.example/",
        "HTTPS://idp.example/",
        "https://idp.example.evil/",
        "https://idp.example/evil",
        "https://idp.example:443/",
        "https://\u0456dp.example/",  # Cyrillic i (U+0456)
        "https://idp.example/\u200b",
        "https://idp.example/ ",
        "https://idp.example/\x00",
        "http://idp.example/",
    ],
    ids=repr,
)
def test_issuer_look_alikes(gw: GatewayProcess, iss: str) -> None:
    refused(gw, token(iss=iss))  # even signed with the issuer's own key
    forwarded(gw, token())


def test_issuer_extended_past_the_id_length(gw: GatewayProcess) -> None:
    # The audit id (and the issuer lookup) keeps 120 characters: a longer iss maps to LONG_ISS's
    # entry, and the exact comparison still refuses it.
    for suffix in ("x", "/evil", "\u0456"):
        refused(gw, mint_raw(LONG, claims_for(LONG_ISS + suffix, AUD)))
    refused(gw, mint_raw(LONG, claims_for(LONG_ISS[:-1], AUD)))
    forwarded(gw, mint_raw(LONG, claims_for(LONG_ISS, AUD)))


def test_other_issuers_token_with_this_issuers_iss(gw: GatewayProcess) -> None:
    refused(gw, mint_raw(OTHER, claims_for(ISS, AUD), kid=DROP))
    refused(gw, mint_raw(EVIL, claims_for(ISS, AUD), kid=EC.kid))
    forwarded(gw, token())


# --- typ and crit ---


@pytest.mark.parametrize(
    ("typ", "accepted"),
    [
        ("at+jwt", True),
        ("AT+JWT", True),
        ("application/at+jwt", True),
        ("Application/At+Jwt", True),
        ("JWT", False),
        ("jwt", False),
        ("application/jwt", False),
        (DROP, False),
        ("at+jwt ", False),
        ("at+jwt;q=1", False),
        ("x-application/at+jwt", False),
        ("application/application/at+jwt", False),
        ("", False),
        (1, False),
        (["at+jwt"], False),
    ],
    ids=repr,
)
def test_typ_for_an_issuer_that_requires_at_jwt(gw: GatewayProcess, typ: Any, accepted: bool):
    tok = mint_raw(TYPED, claims_for(TYPED_ISS, AUD), typ=typ)
    if accepted:
        forwarded(gw, tok)
    else:
        refused(gw, tok)
        forwarded(gw, mint_raw(TYPED, claims_for(TYPED_ISS, AUD), typ="at+jwt"))


def test_typ_is_free_where_not_required(gw: GatewayProcess) -> None:
    for typ in ("JWT", "at+jwt", DROP):
        forwarded(gw, mint_raw(EC, claims_for(ISS, AUD), typ=typ))
    refused(gw, mint_raw(EC, claims_for(ISS, AUD), typ=7))  # but it must be a string


@pytest.mark.parametrize(
    "crit",
    [
        {"crit": ["exp"]},
        {"crit": ["x-unknown"], "x-unknown": 1},
        {"crit": ["b64"], "b64": False},
        {"crit": []},
        {"crit": "exp"},
        {"b64": False},
        {"cty": "JWT"},
    ],
    ids=repr,
)
def test_crit_and_unsupported_header_extensions(gw: GatewayProcess, crit: dict[str, Any]):
    refused(gw, mint_raw(EC, claims_for(ISS, AUD), **crit))
    forwarded(gw, token())


# --- size and encoding ---


def _token_of_length(length: int) -> str:
    """A valid token of exactly ``length`` characters (a claim and a header member padded)."""
    base = len(mint_raw(EC, claims_for(ISS, AUD, pad=""), x=""))
    start = max(0, (length - base) * 3 // 4 - 8)
    for pad in range(start, start + 32):
        for extra in range(4):
            tok = mint_raw(EC, claims_for(ISS, AUD, pad="x" * pad), x="y" * extra)
            if len(tok) == length:
                return tok
    raise AssertionError(f"no token of {length} characters")


def test_oversize_token_just_over_the_cap(gw: GatewayProcess) -> None:
    # keys/jwt_verify: 8192 octets by default, checked before any parsing
    forwarded(gw, _token_of_length(8192))
    refused(gw, _token_of_length(8193))
    refused(gw, _token_of_length(15000))  # still inside the gateway's 16 KiB header block
    response = send(gw.port, request(b"/jwt/x", bearer(_token_of_length(70000))))
    assert response.status in (400, 401, 431), response.status  # the header block's cap
    assert len(gw.upstream.requests) == 1  # the at-cap twin only


def _malformed_shapes() -> dict[str, bytes]:
    good = token()
    h, p, s = good.split(".")
    std = good
    while "-" not in std and "_" not in std:  # a token whose base64url differs from base64
        std = token(jti=secrets.token_hex(8))
    jwe_header = part({"alg": "dir", "enc": "A256GCM"})
    return {
        "padded-header": f"{h}=.{p}.{s}".encode(),
        "padded-signature": f"{h}.{p}.{s}==".encode(),
        "standard-alphabet": std.replace("-", "+").replace("_", "/").encode(),
        "space-inside": f"{h}.{p[:10]} {p[10:]}.{s}".encode(),
        "tab-inside": f"{h}.\t{p}.{s}".encode(),
        "newline-folded": f"{h}.{p}\r\n .{s}".encode(),
        "trailing-dot": (good + ".").encode(),
        "leading-dot": ("." + good).encode(),
        "four-parts": (good + "." + s).encode(),
        "jwe-five-parts": f"{jwe_header}..{b64(b'iv')}.{p}.{b64(b'tag')}".encode(),
        "two-parts": f"{h}.{p}".encode(),
        "empty-payload": f"{h}..{s}".encode(),
        "non-ascii": f"{h}.{p}é.{s}".encode(),
        "comma-second-token": (good + "," + good).encode(),
    }


@pytest.mark.parametrize("shape", list(_malformed_shapes()))
def test_non_canonical_and_malformed_encodings(gw: GatewayProcess, shape: str) -> None:
    bad = _malformed_shapes()[shape]
    if shape == "newline-folded":  # obs-fold: a malformed request (CONTRACT 400)
        assert_refused(gw, request(b"/jwt/x", bearer(bad)), 400, "invalid_request")
    else:
        refused(gw, bad)
    forwarded(gw, token())


@pytest.mark.parametrize(
    "shape",
    [
        "padded-header",
        "standard-alphabet",
        "trailing-dot",
        "four-parts",
        "jwe-five-parts",
        "alg-none-no-signature",
    ],
)
def test_malformed_jws_on_a_jwt_only_route_is_invalid_token(gw: GatewayProcess, shape: str):
    shapes = _malformed_shapes()
    shapes["alg-none-no-signature"] = (
        part({"alg": "none"}) + "." + part(claims_for(ISS, AUD)) + "."
    ).encode()
    refused(gw, shapes[shape])


def test_non_canonical_trailing_bits(gw: GatewayProcess) -> None:
    good = token(ED)
    h, p, s = good.split(".")
    # 64 octets: 86 characters, the last carrying 4 unused bits; set one of them
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(s[-1]) | 1]
    assert base64.urlsafe_b64decode(s[:-1] + last + "==") == base64.urlsafe_b64decode(s + "==")
    refused(gw, f"{h}.{p}.{s[:-1]}{last}")
    forwarded(gw, good)


# --- duplicate members and type confusion ---


def test_duplicate_claims(gw: GatewayProcess) -> None:
    base = json.dumps(claims_for(ISS, AUD, sub=DROP))[:-1]
    for dup in (
        '"sub": "a", "sub": "b"',
        f'"iss": "https://evil.example/", "iss": "{ISS}"',
        '"aud": "x", "aud": "api"',
        '"scope": "x", "scope": "notes:read"',
        '"exp": 1, "exp": 99999999999',
    ):
        refused(gw, mint_raw(EC, (base + ", " + dup + "}").encode()))
    forwarded(gw, mint_raw(EC, (base + ', "sub": "a"}').encode()))


def test_duplicate_header_members(gw: GatewayProcess) -> None:
    payload = claims_for(ISS, AUD)
    for header in (
        b'{"alg": "none", "alg": "ES256", "kid": "ec-1"}',
        b'{"alg": "ES256", "alg": "ES256", "kid": "ec-1"}',
        b'{"alg": "ES256", "kid": "evil-1", "kid": "ec-1"}',
        b'{"alg": "ES256", "kid": "ec-1", "typ": "JWT", "typ": "at+jwt"}',
    ):
        refused(gw, mint_raw(EC, payload, header))
    forwarded(gw, mint_raw(EC, payload, b'{"alg": "ES256", "kid": "ec-1"}'))


@pytest.mark.parametrize(
    "over",
    [
        {"scope": ["notes:read"]},
        {"scope": {"notes:read": True}},
        {"scope": 1},
        {"sub": 42},
        {"sub": ["alice"]},
        {"sub": None},
        {"client_id": 7},
        {"client_id": DROP, "azp": ["app"]},
        {"iss": [ISS]},
        {"jti": 5},
    ],
    ids=repr,
)
def test_nested_json_type_confusion(gw: GatewayProcess, over: dict[str, Any]) -> None:
    refused(gw, token(**over))
    forwarded(gw, token())


# --- the JWKS endpoint itself ---


@dataclass
class BrokenIssuer:
    iss: str
    signer: Signer


def _await_decision(gw: GatewayProcess, tok: str) -> int:
    """Poll until the gateway knows the issuer (unknown: 401), then return the status."""
    seen: list[int] = []
    wait_until(lambda: seen.append(status(gw, tok)) or seen[-1] != 401, timeout=8)
    return seen[-1]


def _new_issuer(gw: GatewayProcess, jwks: JWKSServer, name: str, **endpoint: Any) -> BrokenIssuer:
    signer = Signer.generate("ES256", f"{name}-1")
    iss = f"https://{name}.example/"
    body = endpoint.pop("body", None) or jwks_of(signer)
    uri = jwks.serve(f"/{name}/jwks", body, **endpoint)
    add_issuer(gw, issuer=iss, jwks_uri=uri, audience=AUD)
    return BrokenIssuer(iss, signer)


def _padded_jwks(signer: Signer, size: int) -> bytes:
    doc = json.dumps({"keys": [signer.jwk()], "padding": ""}).encode()
    return doc.replace(b'"padding": ""', b'"padding": "' + b"x" * (size - len(doc)) + b'"')


def test_jwks_that_is_huge_answers_503(gw: GatewayProcess, jwks: JWKSServer) -> None:
    signer = Signer.generate("ES256", "huge-1")
    body = _padded_jwks(signer, 256 * 1024 + 1)
    assert len(body) == 256 * 1024 + 1
    huge = _new_issuer(gw, jwks, "huge", body=body)
    huge.signer = signer
    tok = mint_raw(signer, claims_for(huge.iss, AUD))
    assert _await_decision(gw, tok) == 503
    refused(gw, tok, error="temporarily_unavailable", status=503)
    # twin: the same document just under the cap is fine
    small_signer = Signer.generate("ES256", "big-1")
    big = _new_issuer(gw, jwks, "big", body=_padded_jwks(small_signer, 256 * 1024 - 16))
    forwarded_after_load(gw, mint_raw(small_signer, claims_for(big.iss, AUD)))


def forwarded_after_load(gw: GatewayProcess, tok: str) -> None:
    assert _await_decision(gw, tok) == 200
    forwarded(gw, tok)


def test_jwks_that_is_slow_answers_503(gw: GatewayProcess, jwks: JWKSServer) -> None:
    slow = _new_issuer(gw, jwks, "slow", delay=3.5)  # beyond the 2 s fetch timeout
    tok = mint_raw(slow.signer, claims_for(slow.iss, AUD))
    assert _await_decision(gw, tok) == 503
    started = time.monotonic()
    refused(gw, tok, error="temporarily_unavailable", status=503)
    assert time.monotonic() - started < 3.0  # never waits longer than the fetch timeout
    sluggish = _new_issuer(gw, jwks, "sluggish", delay=0.5)
    forwarded_after_load(gw, mint_raw(sluggish.signer, claims_for(sluggish.iss, AUD)))


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_jwks_that_redirects_answers_503(gw: GatewayProcess, jwks: JWKSServer, code: int) -> None:
    signer = Signer.generate("ES256", f"redir{code}-1")
    target = jwks.serve(f"/redirect-target-{code}", jwks_of(signer))
    name = f"redir{code}"
    issuer = _new_issuer(gw, jwks, name, status=code, location=target, body=b"")
    tok = mint_raw(signer, claims_for(issuer.iss, AUD))
    assert _await_decision(gw, tok) == 503
    refused(gw, tok, error="temporarily_unavailable", status=503)
    assert jwks.count(f"/{name}/jwks") >= 1
    assert jwks.count(f"/redirect-target-{code}") == 0, "followed a redirect"
    forwarded(gw, token())


def test_flood_of_random_kids_costs_one_fetch_per_2s(gw: GatewayProcess, jwks: JWKSServer):
    flood = _new_issuer(gw, jwks, "flood")
    forwarded_after_load(gw, mint_raw(flood.signer, claims_for(flood.iss, AUD)))
    gw.upstream.clear()
    path = "/flood/jwks"
    duration = 4.5
    results: list[int] = []
    lock = threading.Lock()
    start = time.monotonic()
    before = jwks.count(path)

    def attacker() -> None:
        while time.monotonic() - start < duration:
            kid = secrets.token_urlsafe(12)
            code = status(gw, mint_raw(flood.signer, claims_for(flood.iss, AUD), kid=kid))
            with lock:
                results.append(code)

    threads = [threading.Thread(target=attacker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    fetches = jwks.count(path) - before
    assert len(results) >= 50, len(results)
    assert set(results) == {401}
    # at most one refetch per 2 s: 0 s, 2 s, 4 s
    assert 1 <= fetches <= 3, fetches
    assert gw.upstream.requests == []
    forwarded(gw, mint_raw(flood.signer, claims_for(flood.iss, AUD)))


# --- removed issuers, restguard's own tokens, API keys ---


def test_token_of_a_removed_issuer_is_refused_within_a_second(
    gw: GatewayProcess, jwks: JWKSServer
) -> None:
    gone = _new_issuer(gw, jwks, "gone")
    tok = mint_raw(gone.signer, claims_for(gone.iss, AUD))
    forwarded_after_load(gw, tok)
    result = CliRunner().invoke(cli, ["issuer", "remove", gone.iss, "--config", str(gw.config)])
    assert result.exit_code == 0, result.output
    took = wait_until(lambda: status(gw, tok) == 401, timeout=3, interval=0.02)
    assert took < 1.2, took
    refused(gw, tok)
    forwarded(gw, token())


def test_restguards_own_token_on_a_jwt_only_route(gw: GatewayProcess) -> None:
    _, key = gw.issue_key("notes:read", name="own")
    _, got = assert_forwarded(gw, request(b"/any/x", (b"X-API-Key", key.encode())), b"/any/x")
    identity = got.header("x-restguard-identity")
    assert identity is not None
    # iss = public_url: oauth2's token, not jwt's; this route accepts jwt only
    response = assert_refused(gw, request(b"/jwt/x", bearer(identity)), 401, None)
    assert response.json()["error"] in ("unauthorized", "invalid_token")
    # a forgery claiming restguard's iss, signed by any key, is no better
    forged = mint_raw(EVIL, claims_for(gw.settings.server.public_url, AUD))
    assert_refused(gw, request(b"/jwt/x", bearer(forged)), 401, None)
    assert_refused(gw, request(b"/any/x", bearer(forged)), 401, None)
    forwarded(gw, token())


def test_api_key_as_bearer_on_a_jwt_only_route(gw: GatewayProcess) -> None:
    _, key = gw.issue_key("notes:read", name="bearer-key")
    for header in (
        bearer(key),
        (b"X-API-Key", key.encode()),
        (b"Authorization", b"ApiKey " + key.encode()),
    ):
        assert_refused(gw, request(b"/jwt/x", header), 401, None)
    _, got = assert_forwarded(gw, request(b"/any/x", bearer(key)), b"/any/x")
    assert got.header("x-restguard-auth-method") == "api_key"
    forwarded(gw, token())


def test_refusal_detail_goes_to_the_audit_log_only(gw: GatewayProcess) -> None:
    marker = "audit-" + secrets.token_hex(4)
    refused(gw, token(sub=marker, exp=int(time.time()) - 30))
    events = gw.audit_events()
    text = json.dumps(events)
    assert "token expired" in text
    assert token(sub=marker).split(".")[1] not in text  # never the credential itself
