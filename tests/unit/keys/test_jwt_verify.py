"""keys/jwt_verify.py: every rule with a failing and a passing case, and one named test per
known JWT attack that applies to the verifier itself (the gateway-level twins, asserting the
upstream received nothing, come with the wiring)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from restguard.errors import InvalidCredential
from restguard.keys.jose import b64decode
from restguard.keys.jwt_verify import (
    HEADER_CACHE_SIZE,
    MAX_LEEWAY,
    JWTVerifier,
    KeySet,
    Rules,
    TokenInvalid,
    UnusableKey,
    VerificationKey,
    VerifiedToken,
    verify,
)
from tests.unit.keys.jwt_helpers import (
    ALL_KEYS,
    AUDIENCE,
    DROP,
    EC,
    ED,
    ISSUER,
    NOW,
    RSA,
    RULES,
    Signer,
    T,
    b64,
    claims,
    mint,
)

KEYS = KeySet([k.verification_key() for k in ALL_KEYS])


def ok(token: str, rules: Rules = RULES, keys: KeySet = KEYS) -> VerifiedToken:
    return verify(token, keys, rules, NOW)


def bad(token: object, detail: str, rules: Rules = RULES, keys: KeySet = KEYS) -> None:
    with pytest.raises(TokenInvalid) as info:
        verify(token, keys, rules, NOW)  # type: ignore[arg-type]
    assert detail in info.value.detail, info.value.detail


def resign(key: Signer, signing_input: str) -> str:
    return signing_input + "." + b64(key.sign(signing_input.encode()))


# --- the happy path, per algorithm -----------------------------------------------------------


@pytest.mark.parametrize("key", ALL_KEYS, ids=lambda k: k.alg)
def test_valid_token_verifies_per_algorithm(key: Signer) -> None:
    verified = ok(mint(key))
    assert verified.alg == key.alg and verified.kid == key.kid
    assert verified.claims["sub"] == "user-1" and verified.subject == "user-1"
    assert verified.issuer == ISSUER and verified.expires_at == T + 300
    assert verified.header["kid"] == key.kid


def test_token_invalid_is_a_generic_invalid_token_401() -> None:
    with pytest.raises(TokenInvalid) as info:
        ok(mint(EC, claims(exp=T - 10)))
    err = info.value
    assert isinstance(err, InvalidCredential) and err.status == 401
    assert err.error == "invalid_token"
    assert err.description == InvalidCredential.default_description  # detail never shown
    assert err.debug == "token expired"


def test_verified_token_is_made_by_verify_only() -> None:
    with pytest.raises(TypeError):
        VerifiedToken(object(), {}, {}, EC.verification_key())


def test_verified_token_is_read_only() -> None:
    verified = ok(mint(EC))
    with pytest.raises(TypeError):
        verified.claims["sub"] = "admin"  # type: ignore[index]


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        verify(mint(EC), KEYS, RULES, datetime(2026, 1, 1))


# --- keys: parsed once, algorithm from the key ----------------------------------------------


def test_key_algorithms_come_from_the_key_type() -> None:
    assert [k.verification_key().alg for k in ALL_KEYS] == ["EdDSA", "ES256", "RS256"]


def test_key_alg_must_match_the_key_type() -> None:
    for key, wrong in ((EC, "RS256"), (RSA, "ES256"), (ED, "ES256"), (EC, "HS256")):
        with pytest.raises(UnusableKey):
            VerificationKey.from_jwk(key.jwk(alg=wrong))
    assert VerificationKey.from_jwk(EC.jwk(alg="ES256")).alg == "ES256"


def test_ed25519_key_may_name_the_fully_specified_alg() -> None:
    key = VerificationKey.from_jwk(ED.jwk(alg="Ed25519"))
    keys = KeySet([key])
    assert ok(mint(ED, alg="Ed25519"), keys=keys).alg == "Ed25519"
    bad(mint(ED), "not the key's", keys=keys)  # EdDSA header, Ed25519 key


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": b64(b"secret" * 8)},
        {**EC.jwk(), "use": "enc"},
        {**EC.jwk(), "key_ops": ["encrypt"]},
        {**EC.jwk(), "d": b64(b"\x01" * 32)},
        {**EC.jwk(), "crv": "P-384"},
        {**ED.jwk(), "crv": "Ed448"},
        {**EC.jwk(), "x": EC.jwk()["x"] + "="},
        {**EC.jwk(), "y": b64(b"\x00" * 32)},  # not on the curve
        {**ED.jwk(), "x": b64(b"\x01" * 31)},
        {"kty": "RSA", "n": b64(rsa.generate_private_key(65537, 1024).public_key().public_numbers().n.to_bytes(128, "big")), "e": "AQAB"},  # noqa: E501
        {"kty": "EC"},
        "not a dict",
    ],
    ids=["oct", "use-enc", "key-ops", "private", "p384", "ed448", "padded", "off-curve",
         "short-x", "rsa-1024", "no-coordinates", "not-a-dict"],
)  # fmt: skip
def test_unusable_keys_are_refused_at_construction(jwk: object) -> None:
    with pytest.raises(UnusableKey):
        VerificationKey.from_jwk(jwk)  # type: ignore[arg-type]


def test_key_set_from_jwks_skips_unusable_keys_and_says_why() -> None:
    jwks = {"keys": [EC.jwk(), {"kty": "oct", "k": "AAAA", "kid": "hs"}, RSA.jwk(use="enc")]}
    keys = KeySet.from_jwks(jwks)
    assert len(keys) == 1 and keys.select("ec-1") is not None
    assert len(keys.skipped) == 2 and "'hs'" in keys.skipped[0]
    with pytest.raises(UnusableKey):
        KeySet.from_jwks({"keys": "nope"})


def test_key_set_refuses_duplicate_kids() -> None:
    with pytest.raises(UnusableKey):
        KeySet([EC.verification_key(), EC.verification_key()])


# --- rules: unsafe settings refused ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"issuer": ""},
        {"audience": ""},
        {"leeway": MAX_LEEWAY + 1},
        {"leeway": -1},
        {"leeway": True},
        {"typ": ""},
        {"max_token_bytes": 0},
        {"max_token_bytes": 10**6},
    ],
)
def test_rules_refuse_unsafe_settings(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"issuer": ISSUER, "audience": AUDIENCE}
    with pytest.raises(ValueError):
        Rules(**{**base, **kwargs})  # type: ignore[arg-type]
    assert Rules(ISSUER, AUDIENCE, leeway=MAX_LEEWAY).leeway == MAX_LEEWAY


# --- size and shape --------------------------------------------------------------------------


def test_size_cap_applies_before_parsing() -> None:
    token = mint(EC, claims(pad="x" * 5000))
    assert ok(token, Rules(ISSUER, AUDIENCE, max_token_bytes=len(token)))
    bad(token, "longer than", Rules(ISSUER, AUDIENCE, max_token_bytes=len(token) - 1))
    bad("a" * 100_000, "longer than")  # not even a JWS: the cap answers first


@pytest.mark.parametrize(
    "shape",
    ["", "a.b", "a.b.c.d", "a..c", ".b.c", "a.b.", "a.b.c.d.e"],
)
def test_not_exactly_three_non_empty_parts(shape: str) -> None:
    bad(shape, "three base64url parts")


def test_token_must_be_a_string() -> None:
    bad(mint(EC).encode(), "not a string")


@pytest.mark.parametrize("stray", [" ", "\n", "+", "/", "=", "é", "\x00"])
def test_stray_characters_anywhere_are_rejected(stray: str) -> None:
    token = mint(EC)
    h, p, s = token.split(".")
    for variant in (f"{h}{stray}.{p}.{s}", f"{h}.{p}{stray}.{s}", f"{h}.{p}.{s}{stray}"):
        bad(variant, "three base64url parts")
    assert ok(token)


def test_trailing_newline_is_rejected() -> None:  # re's '$' would have let it through
    bad(mint(EC) + "\n", "three base64url parts")


# --- header rules ----------------------------------------------------------------------------


def test_header_must_be_a_json_object() -> None:
    for header in (b"[]", b'"x"', b"1", b"null", b"{", b""):
        if header:
            bad(mint(EC, header=header), "header is not")
    assert ok(mint(EC, header={"alg": "ES256", "kid": "ec-1"}))


def test_header_must_be_utf8() -> None:
    utf16 = json.dumps({"alg": "ES256", "kid": "ec-1"}).encode("utf-16")
    bad(mint(EC, header=utf16), "not valid JSON")
    latin1 = b'{"alg":"ES256","kid":"ec-1","x":"\xe9"}'
    bad(mint(EC, header=latin1), "not valid JSON")
    assert ok(mint(EC, header='{"alg":"ES256","kid":"ec-1","x":"é"}'.encode()))


def test_header_with_bom_is_rejected() -> None:
    bad(mint(EC, header=b'\xef\xbb\xbf{"alg":"ES256","kid":"ec-1"}'), "not valid JSON")


def test_header_alg_missing_or_not_a_string() -> None:
    bad(mint(EC, alg=DROP), "'alg' missing")
    bad(mint(EC, alg=["ES256"]), "'alg' missing")


def test_kid_selects_the_key() -> None:
    assert ok(mint(RSA)).kid == "rsa-1"
    bad(mint(EC, kid="rsa-1"), "not the key's")  # ES256 header, RSA key
    bad(mint(EC, kid="ec-2"), "no key for this 'kid'")


def test_kid_must_be_a_short_string() -> None:
    bad(mint(EC, kid=1), "'kid' is not a short string")
    bad(mint(EC, kid="k" * 257), "'kid' is not a short string")


def test_kid_null_is_not_an_absent_kid() -> None:
    # A one-key set answers a token without kid with its only key; "kid": null is a non-string
    # kid (RFC 7515 §4.1.4) and was taken for an absent one.
    bad(mint(EC, kid=None), "'kid' is not a short string", keys=EC.keyset())
    assert ok(mint(EC, kid=DROP), keys=EC.keyset())


def test_no_kid_only_with_exactly_one_key() -> None:
    token = mint(EC, kid=DROP)
    bad(token, "no 'kid' in header")
    assert ok(token, keys=EC.keyset())


def test_typ_checked_when_required() -> None:
    rules = Rules(ISSUER, AUDIENCE, typ="at+jwt")
    for typ in ("at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"):
        assert ok(mint(EC, typ=typ), rules)
    for typ in ("JWT", "jwt", "application/jwt", "at+jwt ", "x-application/at+jwt", DROP):
        bad(mint(EC, typ=typ), "'typ'", rules)
    assert ok(mint(EC, typ="JWT"))  # not required: any string


def test_typ_must_be_a_string() -> None:
    bad(mint(EC, typ=1), "'typ' is not a string")


def test_cty_nested_jwt_is_rejected() -> None:
    bad(mint(EC, cty="JWT"), "'cty'")
    bad(mint(EC, cty=5), "'cty'")
    assert ok(mint(EC, cty="example"))


def test_b64_false_is_rejected() -> None:
    bad(mint(EC, b64=False), "'b64'")


# --- claims rules ----------------------------------------------------------------------------


def test_exp_required() -> None:
    bad(mint(EC, claims(exp=DROP)), "'exp' missing")


def test_exp_in_the_past_or_now_is_expired() -> None:
    bad(mint(EC, claims(exp=T)), "expired")
    bad(mint(EC, claims(exp=T - 1)), "expired")
    assert ok(mint(EC, claims(exp=T + 1)))


def test_fractional_exp_counts_from_its_whole_second() -> None:
    bad(mint(EC, claims(exp=T + 0.5)), "expired")
    assert ok(mint(EC, claims(exp=T + 1.5)))


def test_leeway_applies_to_exp_nbf_iat() -> None:
    rules = Rules(ISSUER, AUDIENCE, leeway=30)
    assert ok(mint(EC, claims(exp=T - 29)), rules)
    bad(mint(EC, claims(exp=T - 30)), "expired", rules)
    assert ok(mint(EC, claims(nbf=T + 30, iat=T + 30)), rules)
    bad(mint(EC, claims(nbf=T + 31)), "'nbf'", rules)
    bad(mint(EC, claims(iat=T + 31)), "'iat'", rules)


def test_nbf_honoured() -> None:
    bad(mint(EC, claims(nbf=T + 1)), "'nbf'")
    assert ok(mint(EC, claims(nbf=T)))


def test_iat_in_the_future_rejected() -> None:
    bad(mint(EC, claims(iat=T + 1)), "'iat'")
    assert ok(mint(EC, claims(iat=T - 100)))


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [str(T + 100), True, None, [T + 100], {"t": T + 100}])
def test_times_must_be_numbers(name: str, value: object) -> None:
    bad(mint(EC, claims(**{name: value})), f"'{name}' is not a number")


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_times_must_be_finite(name: str) -> None:
    payload = json.dumps(claims()).encode()[:-1] + f', "{name}": 1e400}}'.encode()
    payload = payload.replace(f'"exp": {T + 300}, '.encode(), b"") if name == "exp" else payload
    bad(mint(EC, payload), "not finite")


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["huge", "huge-negative"])
def test_times_beyond_a_float_are_not_finite(name: str, value: int) -> None:
    # An integer NumericDate too large for a float made math.isfinite raise OverflowError:
    # a 500 at the gateway instead of a 401.
    bad(mint(EC, claims(**{name: value})), "not finite")


def test_json_constants_are_rejected() -> None:
    payload = json.dumps(claims()).encode()[:-1] + b', "nbf": NaN}'
    bad(mint(EC, payload), "not valid JSON")


def test_iss_exact() -> None:
    for iss in (ISSUER.rstrip("/"), ISSUER.upper(), ISSUER + " ", [ISSUER], None, DROP):
        bad(mint(EC, claims(iss=iss)), "'iss'")
    assert ok(mint(EC, claims(iss=ISSUER)))


def test_aud_string_or_array_containing_the_audience() -> None:
    assert ok(mint(EC, claims(aud=AUDIENCE)))
    assert ok(mint(EC, claims(aud=["other", AUDIENCE])))
    for aud in (AUDIENCE + "/", "other", [], ["other"], DROP, None, {"a": AUDIENCE}):
        bad(mint(EC, claims(aud=aud)), "'aud'")
    bad(mint(EC, claims(aud=[AUDIENCE, 1])), "non-string")


@pytest.mark.parametrize("name", ["sub", "jti"])
def test_sub_and_jti_must_be_strings(name: str) -> None:
    bad(mint(EC, claims(**{name: 42})), f"'{name}' is not a string")
    assert ok(mint(EC, claims(**{name: "x"})))


def test_payload_must_be_a_json_object() -> None:
    for payload in (b"[]", b"1", b'"claims"', b"null"):
        bad(mint(EC, payload), "payload is not a JSON object")


# --- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ALL_KEYS, ids=lambda k: k.alg)
def test_signature_from_another_key_is_rejected(key: Signer) -> None:
    impostor = Signer(key.alg, _fresh(key.alg), key.kid)
    bad(mint(impostor), "bad signature")


def _fresh(alg: str) -> object:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(65537, 2048)


@pytest.mark.parametrize("key", ALL_KEYS, ids=lambda k: k.alg)
def test_signature_over_other_claims_is_rejected(key: Signer) -> None:
    h, _, s = mint(key).split(".")
    _, p, _ = mint(key, claims(sub="admin")).split(".")
    bad(f"{h}.{p}.{s}", "bad signature")


@pytest.mark.parametrize("key", ALL_KEYS, ids=lambda k: k.alg)
def test_signature_of_the_wrong_length_is_rejected(key: Signer) -> None:
    token = mint(key)
    h, p, s = token.split(".")
    sig = base64.urlsafe_b64decode(s + "==")
    detail = "octets" if key is not RSA else "modulus length"
    longer, shorter = b64(sig + bytes(1)), b64(sig[:-1])
    bad(f"{h}.{p}.{longer}", detail)
    bad(f"{h}.{p}.{shorter}", detail)


def test_es256_der_signature_is_rejected() -> None:
    from cryptography.hazmat.primitives import hashes

    h, p, _ = mint(EC).split(".")
    der = EC.private.sign(f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))
    bad(f"{h}.{p}.{b64(der)}", "64 octets")


# --- attacks (RFC 8725 §2 and the issue's "Bad input" list) ----------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "", " none"])
def test_attack_alg_none_in_its_spellings(alg: str) -> None:
    header = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": "ec-1"}).encode())
    payload = b64(json.dumps(claims()).encode())
    bad(f"{header}.{payload}.", "three base64url parts")  # no signature at all
    bad(f"{header}.{payload}.{b64(b'x')}", "not the key's")  # any signature
    bad(mint(EC, kid=DROP, alg=alg), "not the key's", keys=EC.keyset())


@pytest.mark.parametrize("key", ALL_KEYS, ids=lambda k: k.alg)
@pytest.mark.parametrize("hs", ["HS256", "HS384", "HS512"])
def test_attack_key_confusion_public_key_as_hmac_secret(key: Signer, hs: str) -> None:
    pub = key.private.public_key()
    secrets = [json.dumps(key.jwk()).encode()]
    if key is ED:
        secrets.append(pub.public_bytes(Encoding.Raw, PublicFormat.Raw))
    else:
        secrets.append(pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[hs]
    for secret in secrets:
        signing_input = (
            b64(json.dumps({"alg": hs, "kid": key.kid}).encode())
            + "."
            + b64(json.dumps(claims()).encode())
        )
        mac = hmac.new(secret, signing_input.encode(), digest).digest()
        bad(f"{signing_input}.{b64(mac)}", "not the key's")
    assert ok(mint(key))  # the valid twin


@pytest.mark.parametrize(("signer", "claimed"), [(EC, "RS256"), (RSA, "ES256"), (ED, "ES256")])
def test_attack_algorithm_substitution_between_key_types(signer: Signer, claimed: str) -> None:
    bad(mint(signer, alg=claimed), "not the key's")


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 0), (0, 1), (1, 0)],
    ids=["psychic-r-s-zero", "r-zero", "s-zero"],
)
def test_attack_zero_ecdsa_signatures(r: int, s: int) -> None:
    h, p, _ = mint(EC).split(".")
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    bad(f"{h}.{p}.{b64(sig)}", "out of range")
    assert ok(mint(EC))


def test_attack_psychic_signature_r_s_equal_to_the_order() -> None:
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    h, p, s = mint(EC).split(".")
    sig = base64.urlsafe_b64decode(s + "==")
    r0, s0 = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    for rr, ss in ((n, n), (n, s0), (r0 + n, s0) if r0 + n < 2**256 else (n, 1)):
        forged = rr.to_bytes(32, "big") + ss.to_bytes(32, "big")
        bad(f"{h}.{p}.{b64(forged)}", "out of range")


def test_attack_malleable_ecdsa_high_s_is_a_different_token_but_not_a_forgery() -> None:
    """(r, n - s) is valid ECDSA for the same message: a second encoding of the same token.
    It forges nothing (the claims are the signer's), so it verifies; a cache or replay check
    must therefore key on the claims (jti), never on the token's bytes."""
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    h, p, s = mint(EC).split(".")
    sig = base64.urlsafe_b64decode(s + "==")
    r0, s0 = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    twin = b64(r0.to_bytes(32, "big") + (n - s0).to_bytes(32, "big"))
    assert ok(f"{h}.{p}.{twin}").claims == ok(f"{h}.{p}.{s}").claims


@pytest.mark.parametrize("where", [0, 1, 2])
def test_attack_non_canonical_base64_trailing_bits(where: int) -> None:
    for filler in range(4):  # lengths with unused trailing bits in the header and payload
        token = mint(ED, claims(f="x" * filler), f="y" * filler)
        parts = token.split(".")
        if all(len(x) % 4 in (2, 3) for x in parts):
            break
    assert ok(token)
    original = parts[where]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(original[-1])
    parts[where] = original[:-1] + alphabet[last ^ 1]  # same octets, different text
    assert base64.urlsafe_b64decode(parts[where] + "==") == base64.urlsafe_b64decode(
        original + "=="
    )
    bad(".".join(parts), "canonical base64url")


@pytest.mark.parametrize("where", [0, 1, 2])
def test_attack_padded_base64(where: int) -> None:
    parts = mint(ED).split(".")
    parts[where] += "=" * (-len(parts[where]) % 4 or 4)
    bad(".".join(parts), "three base64url parts")


def test_attack_standard_base64_alphabet() -> None:
    payload = b64(json.dumps(claims(sub="??>>??>>")).encode())
    token = resign(EC, b64(json.dumps({"alg": "ES256", "kid": "ec-1"}).encode()) + "." + payload)
    assert ok(token)
    h, p, s = token.split(".")
    std = p.replace("-", "+").replace("_", "/")
    assert std != p
    bad(f"{h}.{std}.{s}", "three base64url parts")


def test_attack_impossible_base64_length() -> None:
    h, p, s = mint(EC).split(".")
    bad(f"{h}.{p}A.{s}" if len(p) % 4 == 0 else f"{h}.{p + 'A' * (5 - len(p) % 4)}.{s}", "base64")


def test_attack_duplicate_claims() -> None:
    exp = f'"exp": {T + 300}'
    base = f'{{"iss": "{ISSUER}", "aud": "{AUDIENCE}", {exp}, "sub": "user-1"'
    bad(mint(EC, (base + ', "sub": "admin"}').encode()), "duplicate")
    bad(mint(EC, (base + f', "exp": {T + 10**6}}}').encode()), "duplicate")
    nested = base + ', "ctx": {"role": "user", "role": "admin"}}'
    bad(mint(EC, nested.encode()), "duplicate")
    assert ok(mint(EC, (base + "}").encode()))


def test_attack_duplicate_header_members() -> None:
    header = b'{"alg": "ES256", "kid": "ec-1", "kid": "ec-1"}'
    bad(mint(EC, header=header), "duplicate")
    header = b'{"alg": "ES256", "alg": "none", "kid": "ec-1"}'
    bad(mint(EC, header=header), "duplicate")


def test_attack_non_numeric_times() -> None:
    bad(mint(EC, claims(exp="9999999999")), "'exp' is not a number")
    bad(mint(EC, claims(exp=True)), "'exp' is not a number")
    bad(mint(EC, claims(nbf="0")), "'nbf' is not a number")


def test_attack_expired_not_yet_valid_missing_exp() -> None:
    bad(mint(EC, claims(exp=T - 1)), "expired")
    bad(mint(EC, claims(nbf=T + 3600)), "'nbf'")
    bad(mint(EC, claims(exp=DROP)), "'exp' missing")
    assert ok(mint(EC, claims(exp=T + 60, nbf=T - 60, iat=T - 60)))


def test_attack_issuer_and_audience_look_alikes() -> None:
    for iss in ("https://issuer.example", "https://issuer.example/.", "https://issuer.example.evil/",
                "https://\u0131ssuer.example/", "https://issuer.example/\u200b"):  # fmt: skip
        bad(mint(EC, claims(iss=iss)), "'iss'")
    for aud in ("https://api.example/", "https://api.example.evil", "https://API.example",
                ["https://api.example.evil"], "https://api.example\x00"):  # fmt: skip
        bad(mint(EC, claims(aud=aud)), "'aud'")


def test_attack_oversize_token() -> None:
    bad(mint(EC, claims(pad="x" * 10_000)), "longer than")
    bad("." * 9000, "longer than")


def test_attack_typ_confusion() -> None:
    """An ID token (typ JWT) replayed where an access token (at+jwt, RFC 9068) is expected."""
    rules = Rules(ISSUER, AUDIENCE, typ="at+jwt")
    bad(mint(EC, typ="JWT"), "'typ'", rules)
    bad(mint(EC, typ=DROP), "'typ'", rules)
    bad(mint(EC, typ="at+jwt", cty="JWT"), "'cty'", rules)
    assert ok(mint(EC, typ="at+jwt"), rules)


@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["http://example.com/x"], [], "exp"])
def test_attack_unknown_crit(crit: object) -> None:
    bad(mint(EC, crit=crit), "'crit'")


@pytest.mark.parametrize("member", ["jku", "x5u", "jwk", "x5c"])
def test_attack_header_names_its_own_key(member: str) -> None:
    attacker = _fresh("ES256")
    value: object = {
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "jwk": Signer("ES256", attacker, "ec-1").jwk(),
        "x5c": ["MIIB"],
    }[member]
    forged = Signer("ES256", attacker, "ec-1")
    bad(mint(forged, **{member: value}), "names its own key")
    bad(mint(EC, **{member: value}), "names its own key")  # even when the key is right
    assert ok(mint(EC))


@pytest.mark.parametrize(
    "kid",
    ["../../x", "../../../../dev/null", "/etc/passwd", "ec-1' OR '1'='1", "ec-1\x00",
     "ec-1/../ec-1", "*", "%2e%2e%2f", " ec-1", "EC-1"],
)  # fmt: skip
def test_attack_kid_traversal_and_injection_selects_nothing(kid: str) -> None:
    bad(mint(EC, kid=kid), "no key for this 'kid'")


def test_attack_deeply_nested_json() -> None:
    rules = Rules(ISSUER, AUDIENCE, max_token_bytes=16384)
    bad(mint(EC, b"[" * 1500 + b"]" * 1500), "payload is not", rules)
    bad(mint(EC, b'{"a":' * 1500 + b"1" + b"}" * 1500), "payload is not", rules)
    bad(mint(EC, header=b'{"a":' * 1500 + b"1" + b"}" * 1500), "header is not", rules)


def test_attack_huge_integer_claim() -> None:
    bad(mint(EC, ('{"exp": 1' + "0" * 5000 + "}").encode()), "not valid JSON")


def test_attack_header_only_swap_between_keys() -> None:
    """A valid RSA token's signature with a header naming the EC key."""
    _, p, s = mint(RSA).split(".")
    h2 = b64(json.dumps({"alg": "RS256", "kid": "ec-1"}).encode())
    bad(f"{h2}.{p}.{s}", "not the key's")


def test_expired_by_a_large_delta() -> None:
    bad(mint(EC, claims(exp=int((NOW - timedelta(days=365)).timestamp()))), "expired")


# --- base64url: the fast decoder against the reference -------------------------------------


@given(st.binary(max_size=200))
def test_b64decode_round_trips(data: bytes) -> None:
    assert b64decode(b64(data)) == data


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
def test_b64decode_accepts_exactly_the_canonical_encodings(text: str) -> None:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        canonical = None
    else:
        canonical = raw if b64(raw) == text else None
    if canonical is None:
        with pytest.raises(ValueError):
            b64decode(text)
    else:
        assert b64decode(text) == canonical


# --- JWTVerifier: the prepared, per-issuer verifier and its header cache ---------------------


def test_verifier_remembers_only_headers_of_signed_tokens() -> None:
    verifier = JWTVerifier(KEYS, RULES)
    token = mint(EC)
    h, _, s = token.split(".")
    forged = f"{h}.{mint(EC, claims(sub='admin')).split('.')[1]}.{s}"
    with pytest.raises(TokenInvalid):
        verifier.verify(forged, NOW)
    assert h not in verifier._headers  # a header enters only after its signature verified
    assert verifier.verify(token, NOW).subject == "user-1"
    assert h in verifier._headers
    with pytest.raises(TokenInvalid) as info:  # cached header: signature still checked
        verifier.verify(forged, NOW)
    assert info.value.detail == "bad signature"
    with pytest.raises(TokenInvalid) as info:  # and claims too
        verifier.verify(mint(EC, claims(exp=T - 1)), NOW)
    assert info.value.detail == "token expired"


def test_verifier_header_cache_is_bounded() -> None:
    verifier = JWTVerifier(KEYS, RULES)
    for i in range(HEADER_CACHE_SIZE * 3):
        verifier.verify(mint(EC, x=i), NOW)
        assert len(verifier._headers) <= HEADER_CACHE_SIZE


def test_verifier_cache_is_per_rules() -> None:
    """A header accepted under one issuer's rules is not accepted under stricter ones."""
    loose = JWTVerifier(KEYS, RULES)
    strict = JWTVerifier(KEYS, Rules(ISSUER, AUDIENCE, typ="at+jwt"))
    token = mint(EC, typ="JWT")
    assert loose.verify(token, NOW)
    with pytest.raises(TokenInvalid):
        strict.verify(token, NOW)
    with pytest.raises(TypeError):
        JWTVerifier(KEYS, None)  # type: ignore[arg-type]


def test_verifier_with_new_keys_forgets_old_keys() -> None:
    verifier = JWTVerifier(KEYS, RULES)
    assert verifier.verify(mint(EC), NOW)
    rotated = verifier.with_keys(RSA.keyset())
    assert rotated.verify(mint(RSA), NOW)
    with pytest.raises(TokenInvalid):
        rotated.verify(mint(EC), NOW)
