"""RFC 9421 signed requests: the Appendix B vectors, strict parsing, the base, the algorithms,
and interop both ways with the ``http-message-signatures`` package."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
)
from http_message_signatures import InvalidSignature as PeerInvalidSignature
from http_message_signatures.algorithms import ED25519, HMAC_SHA256
from hypothesis import given
from hypothesis import strategies as st

from restguard.wire import rfc8941_serialize, rfc9421, rfc9421_algorithms
from restguard.wire.rfc8941 import InnerList, Item, StructuredFieldError
from restguard.wire.rfc9421 import (
    Message,
    SignatureBaseError,
    SignatureInvalid,
    parse_signature,
    parse_signature_input,
    signature_base,
)
from restguard.wire.rfc9421_algorithms import (
    sign_request,
    verify_ecdsa_p256_sha256,
    verify_ed25519,
    verify_hmac_sha256,
)


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# RFC 9421 Appendix B.1.5, test-shared-secret.
SHARED_SECRET = base64.b64decode(
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ=="
)
# RFC 9421 Appendix B.1.4, test-key-ed25519 (its JWK's "d" and "x").
ED25519_PRIVATE = ed25519.Ed25519PrivateKey.from_private_bytes(
    _b64url("n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU")
)
ED25519_PUBLIC_RAW = _b64url("JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs")
# RFC 9421 Appendix B.1.2, test-key-rsa-pss (public): B.2.1-B.2.3 are RSA-PSS, which
# restguard does not accept, but the published signatures prove the bases byte for byte.
RSA_PSS_PUBLIC = load_pem_public_key(b"""-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2
+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+
oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq
gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W
Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4
aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI
2wIDAQAB
-----END PUBLIC KEY-----
""")

# RFC 9421 Appendix B.2: POST /foo?param=Value&Pet=dog to example.com over https.
B2 = Message(
    method="POST",
    scheme="https",
    authority="example.com",
    path="/foo",
    query=b"param=Value&Pet=dog",
    headers=(
        (b"host", b"example.com"),
        (b"date", b"Tue, 20 Apr 2021 02:07:55 GMT"),
        (b"content-type", b"application/json"),
        (
            b"content-digest",
            b"sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdV"
            b"LvRwEmTHWXvJwew==:",
        ),
        (b"content-length", b"18"),
    ),
)


def _one(value: bytes) -> rfc9421.SignatureInput:
    parsed = parse_signature_input([value])
    assert len(parsed) == 1
    return next(iter(parsed.values()))


def _rsa_pss_verify(signature_b64: str, base: bytes) -> None:
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)  # RFC 9421 §3.3.1
    RSA_PSS_PUBLIC.verify(base64.b64decode(signature_b64), base, pss, hashes.SHA512())


# --- Appendix B vectors ------------------------------------------------------------------


def test_b21_minimal_signature_base() -> None:
    sig = _one(
        b'sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"'
    )
    base = signature_base(sig, B2)
    assert base == (
        b'"@signature-params": ();created=1618884473;keyid="test-key-rsa-pss"'
        b';nonce="b3k2pp5k7z-50gnwp.yemd"'
    )
    assert (sig.created, sig.keyid, sig.nonce, sig.alg, sig.expires) == (
        1618884473,
        "test-key-rsa-pss",
        "b3k2pp5k7z-50gnwp.yemd",
        None,
        None,
    )
    _rsa_pss_verify(
        "d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRx"
        "f8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2"
        "VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5Tm"
        "cAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==",
        base,
    )


def test_b22_selective_covered_components_base() -> None:
    sig = _one(
        b'sig-b22=("@authority" "content-digest");created=1618884473;keyid="test-key-rsa-pss"'
    )
    base = signature_base(sig, B2)
    assert base == (
        b'"@authority": example.com\n'
        b'"content-digest": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiY'
        b"llu7BNNyealdVLvRwEmTHWXvJwew==:\n"
        b'"@signature-params": ("@authority" "content-digest");created=1618884473'
        b';keyid="test-key-rsa-pss"'
    )
    _rsa_pss_verify(
        "Fee1uy9YGZq5UUwwYU6vz4dZNvfw3GYrFl1L6YlVIyUMuWswWDNSvql4dVtSeidYjYZUm7SBCENIb5KYy2ByoC3bI"
        "+7gydd2i4OAT5lyDtmeapnAa8uP/b9xUpg+VSPElbBs6JWBIQsd+nMdHDe+ls/IwVMwXktC37SqsnbNyhNp6kcvcW"
        "pevjzFcD2VqdZleUz4jN7P+W5A3wHiMGfIjIWn36KXNB+RKyrlGnIS8yaBBrom5rcZWLrLbtg6VlrH1+/07RV+kgT"
        "h/l10h8qgpl9zQHu7mWbDKTq0tJ8K4ywcPoC4s2I4rU88jzDKDGdTTQFZoTVZxZmuTM1FvHfzIw==",
        base,
    )


def test_b23_full_coverage_base_including_query() -> None:
    sig = _one(
        b'sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest"'
        b' "content-length");created=1618884473;keyid="test-key-rsa-pss"'
    )
    base = signature_base(sig, B2)
    assert base.split(b"\n")[:4] == [
        b'"date": Tue, 20 Apr 2021 02:07:55 GMT',
        b'"@method": POST',
        b'"@path": /foo',
        b'"@query": ?param=Value&Pet=dog',
    ]
    _rsa_pss_verify(
        "bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRR"
        "U5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFk"
        "h/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8L"
        "ZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==",
        base,
    )


B25_INPUT = (
    b'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"'
)
B25_SIGNATURE = b"sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"


def test_b25_hmac_sha256_verifies() -> None:
    sig = parse_signature_input([B25_INPUT])["sig-b25"]
    base = signature_base(sig, B2)
    assert base == (
        b'"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
        b'"@authority": example.com\n'
        b'"content-type": application/json\n'
        b'"@signature-params": ("date" "@authority" "content-type");created=1618884473'
        b';keyid="test-shared-secret"'
    )
    verify_hmac_sha256(SHARED_SECRET, base, parse_signature([B25_SIGNATURE])["sig-b25"])
    with pytest.raises(SignatureInvalid):
        verify_hmac_sha256(SHARED_SECRET, base + b" ", parse_signature([B25_SIGNATURE])["sig-b25"])
    with pytest.raises(SignatureInvalid):
        verify_hmac_sha256(SHARED_SECRET[:-1], base, parse_signature([B25_SIGNATURE])["sig-b25"])


def test_b25_hmac_sha256_verifies_with_a_key_keyed_once() -> None:
    """``HmacSha256Key`` (what the verifier keeps per app): RFC 9421's B.2.5 example verifies,
    again and again from the same keyed state (each check starts from a copy: an earlier
    check's bytes never leak into the next), and a changed base or another key is refused."""
    sig = parse_signature_input([B25_INPUT])["sig-b25"]
    base = signature_base(sig, B2)
    signature = parse_signature([B25_SIGNATURE])["sig-b25"]
    key = rfc9421_algorithms.HmacSha256Key(SHARED_SECRET)
    for _ in range(3):
        with pytest.raises(SignatureInvalid):
            verify_hmac_sha256(key, base + b" ", signature)
        verify_hmac_sha256(key, base, signature)
        assert rfc9421_algorithms.verify_signature("hmac-sha256", key, base, signature) is None
    with pytest.raises(SignatureInvalid):
        verify_hmac_sha256(rfc9421_algorithms.HmacSha256Key(SHARED_SECRET[:-1]), base, signature)
    assert SHARED_SECRET.hex() not in repr(key) and "secret" in repr(key)
    with pytest.raises(ValueError, match="empty"):
        rfc9421_algorithms.HmacSha256Key(b"")


def test_b25_hmac_sha256_signs_the_same_bytes() -> None:
    signature_input, signature = sign_request(
        B2,
        label="sig-b25",
        keyid="test-shared-secret",
        alg="hmac-sha256",
        key=SHARED_SECRET,
        components=["date", "@authority", "content-type"],
        created=1618884473,
        include_alg=False,
    )
    assert (signature_input, signature) == (B25_INPUT, B25_SIGNATURE)


B26_INPUT = (
    b'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    b';created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE = (
    b"sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPp"
    b"BKRCw==:"
)


def test_b26_ed25519_verifies_and_signs() -> None:
    public = ed25519.Ed25519PublicKey.from_public_bytes(ED25519_PUBLIC_RAW)
    assert ED25519_PRIVATE.public_key() == public
    sig = parse_signature_input([B26_INPUT])["sig-b26"]
    base = signature_base(sig, B2)
    assert base == (
        b'"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
        b'"@method": POST\n'
        b'"@path": /foo\n'
        b'"@authority": example.com\n'
        b'"content-type": application/json\n'
        b'"content-length": 18\n'
        b'"@signature-params": ("date" "@method" "@path" "@authority" "content-type"'
        b' "content-length");created=1618884473;keyid="test-key-ed25519"'
    )
    verify_ed25519(public, base, parse_signature([B26_SIGNATURE])["sig-b26"])
    with pytest.raises(SignatureInvalid):
        verify_ed25519(
            public, base.replace(b"POST", b"PUT"), parse_signature([B26_SIGNATURE])["sig-b26"]
        )
    signed = sign_request(
        B2,
        label="sig-b26",
        keyid="test-key-ed25519",
        alg="ed25519",
        key=ED25519_PRIVATE,
        components=["date", "@method", "@path", "@authority", "content-type", "content-length"],
        created=1618884473,
        include_alg=False,
    )
    assert signed == (B26_INPUT, B26_SIGNATURE)  # Ed25519 is deterministic


# --- ECDSA P-256 (§3.3.4: r || s, not DER) -------------------------------------------------


def test_ecdsa_p256_round_trip_uses_raw_r_s() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    signature_input, signature = sign_request(
        B2,
        keyid="k1",
        alg="ecdsa-p256-sha256",
        key=private,
        components=["@method", "@authority", "@path", "content-digest"],
        created=1618884473,
        nonce="n-1",
    )
    sig = parse_signature_input([signature_input])["sig1"]
    raw = parse_signature([signature])["sig1"]
    assert len(raw) == 64 and sig.alg == "ecdsa-p256-sha256"
    base = signature_base(sig, B2)
    verify_ecdsa_p256_sha256(private.public_key(), base, raw)
    with pytest.raises(SignatureInvalid):
        verify_ecdsa_p256_sha256(private.public_key(), base + b"x", raw)
    # the same signature in DER is refused: not 64 bytes (or, by chance, not r||s)
    der = private.sign(base, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(SignatureInvalid):
        verify_ecdsa_p256_sha256(private.public_key(), base, der)
    r, s = decode_dss_signature(der)
    verify_ecdsa_p256_sha256(
        private.public_key(), base, r.to_bytes(32, "big") + s.to_bytes(32, "big")
    )
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureInvalid):
        verify_ecdsa_p256_sha256(other.public_key(), base, raw)


def test_ecdsa_refuses_a_key_of_another_curve() -> None:
    with pytest.raises(ValueError):
        verify_ecdsa_p256_sha256(ec.generate_private_key(ec.SECP384R1()).public_key(), b"", b"")


def test_verify_signature_dispatches_by_the_keys_algorithm() -> None:
    sig = parse_signature_input([B25_INPUT])["sig-b25"]
    raw = parse_signature([B25_SIGNATURE])["sig-b25"]
    rfc9421_algorithms.verify_signature("hmac-sha256", SHARED_SECRET, signature_base(sig, B2), raw)
    with pytest.raises(ValueError):
        rfc9421_algorithms.verify_signature("rsa-pss-sha512", SHARED_SECRET, b"", raw)
    with pytest.raises(ValueError):
        verify_hmac_sha256(b"", b"", raw)
    assert set(rfc9421.ALGORITHMS) >= rfc9421.SUPPORTED_ALGORITHMS


# --- parsing ---------------------------------------------------------------------------


def test_parse_reads_every_registered_parameter() -> None:
    sig = _one(
        b'a=("@method" "x-y";bs "@query-param";name="Pet");created=1;expires=2;nonce="n"'
        b';alg="ed25519";keyid="k";tag="t";ext=?1'
    )
    assert sig.label == "a"
    assert sig.components == (
        ("@method", ()),
        ("x-y", (("bs", True),)),
        ("@query-param", (("name", "Pet"),)),
    )
    assert (sig.created, sig.expires, sig.nonce, sig.alg, sig.keyid, sig.tag) == (
        1,
        2,
        "n",
        "ed25519",
        "k",
        "t",
    )
    assert sig.params_value == (
        '("@method" "x-y";bs "@query-param";name="Pet");created=1;expires=2;nonce="n"'
        ';alg="ed25519";keyid="k";tag="t";ext'
    )
    assert sig.covers("@method") and sig.covers("x-y", (("bs", True),)) and not sig.covers("x-y")


def test_params_value_is_the_canonical_serialization() -> None:
    sig = _one(b'sig1=(  "@method"   "@path" );created=1;keyid="k";flag=?1')
    assert sig.params_value == '("@method" "@path");created=1;keyid="k";flag'


def test_multiple_field_lines_and_labels() -> None:
    parsed = parse_signature_input([b'a=("@method");created=1', b'b=("@path");created=2'])
    assert list(parsed) == ["a", "b"] and parsed["b"].created == 2
    signatures = parse_signature([b"a=:AAAA:", b"b=:AQ==:"])
    assert signatures == {"a": b"\0\0\0", "b": b"\1"}


@pytest.mark.parametrize(
    "value",
    [
        b'a=("@method");created=1, a=("@path");created=1',  # duplicate label
        b'a=("@method");created=1;created=2',  # duplicate parameter
        b'a=("@method";bs;bs);created=1',  # duplicate component parameter
        b'a=("@method" "@method");created=1',  # §2: a component listed twice
        b'a=("x";sf;key="k" "x";key="k";sf);created=1',  # the same, parameters reordered
        b'a=("@signature-params");created=1',  # §2.3: never covered
        b"a=(method);created=1",  # a token, not an sf-string
        b"a=(1);created=1",
        b'a="@method";created=1',  # not an inner list
        b'a=("@method")',  # no created
        b'a=("@method");created="1"',  # wrong types
        b'a=("@method");created=-1',
        b'a=("@method");created=1;expires=?1',
        b'a=("@method");created=1;keyid=k',  # a token keyid
        b'a=("@method");created=1;alg=1',
        b'a=("@method");created=1;nonce=:AA==:',
        b'a=("@method");created=1;tag=?0',
        b'a=("@method";req);created=1',  # §2.4: req is for responses
        b'a=("date";req);created=1',
        b'a=("date";tr);created=1',  # trailers are not read
        b'a=("date";foo);created=1',  # an unknown component parameter
        b'a=("date";sf=?0);created=1',  # a flag that is not true
        b'a=("date";key=k);created=1',  # key must be an sf-string
        b'a=("date";bs;sf);created=1',  # §2.1.3
        b'a=("@query-param");created=1',  # §2.2.8: name required
        b'a=("@query-param";name=x);created=1',
        b'a=("@query-param";name="x";bs);created=1',
        b'a=("@status");created=1',  # §2.2.9: responses only
        b'a=("@unknown");created=1',
        b'a=("Content-Type");created=1',  # §2.1: component names are lower-case
        b'a=("@Method");created=1',
        b'a=("");created=1',
        b'a=("x y");created=1',
        b'a=("@method");created=1.5',
        b'a=("@method");created=1,',
    ],
)
def test_malformed_or_unsupported_signature_input_is_refused(value: bytes) -> None:
    with pytest.raises(StructuredFieldError):
        parse_signature_input([value])


def test_an_absent_field_parses_as_no_signatures() -> None:
    assert parse_signature_input([]) == {}
    assert parse_signature([]) == {}


def test_a_label_repeated_across_field_lines_is_refused() -> None:
    with pytest.raises(StructuredFieldError):
        parse_signature_input([b'a=("@method");created=1', b'a=("@path");created=1'])
    with pytest.raises(StructuredFieldError):
        parse_signature([b"a=:AA==:", b"a=:AQ==:"])


@pytest.mark.parametrize("value", [b"a=AA==", b'a="AA=="', b"a=(:AA==:)", b"a=:A!:", b"a=:AA==:,"])
def test_malformed_signature_is_refused(value: bytes) -> None:
    with pytest.raises(StructuredFieldError):
        parse_signature([value])


def test_oversized_fields_are_refused_before_parsing() -> None:
    big = b'a=("@method");created=1;keyid="' + b"k" * 9000 + b'"'
    with pytest.raises(StructuredFieldError):
        parse_signature_input([big])
    with pytest.raises(StructuredFieldError):
        parse_signature([b"a=:" + b"A" * 9000 + b":"])


# --- the base ----------------------------------------------------------------------------


def _msg(headers: tuple[tuple[bytes, bytes], ...] = (), query: bytes = b"", **kw: str) -> Message:
    fields = {"method": "GET", "scheme": "https", "authority": "example.com", "path": "/p"} | kw
    return Message(query=query, headers=headers, **fields)


def _base(components: str, msg: Message) -> list[bytes]:
    sig = _one(b"s=(" + components.encode() + b");created=1")
    return signature_base(sig, msg).split(b"\n")[:-1]


def test_derived_components() -> None:
    msg = _msg(
        method="POST",
        scheme="HTTPS",
        authority="WWW.Example.com:443",
        path="/a%2Fb",
        query=b"x=1&y=2",
    )
    assert _base(
        '"@method" "@scheme" "@authority" "@path" "@query" "@target-uri" "@request-target"', msg
    ) == [
        b'"@method": POST',
        b'"@scheme": https',
        b'"@authority": www.example.com',
        b'"@path": /a%2Fb',
        b'"@query": ?x=1&y=2',
        b'"@target-uri": https://www.example.com/a%2Fb?x=1&y=2',
        b'"@request-target": /a%2Fb?x=1&y=2',
    ]
    plain = _msg(scheme="http", authority="example.com:8080", path="")
    assert _base('"@authority" "@path" "@query" "@target-uri"', plain) == [
        b'"@authority": example.com:8080',
        b'"@path": /',
        b'"@query": ?',  # §2.2.7: no query is "?" alone
        b'"@target-uri": http://example.com:8080/',
    ]
    assert _base('"@authority"', _msg(scheme="http", authority="example.com:80")) == [
        b'"@authority": example.com'
    ]


def test_query_param_examples_from_section_2_2_8() -> None:
    msg = _msg(query=b"param=value&foo=bar&baz=batman&qux=")
    assert _base(
        '"@query-param";name="baz" "@query-param";name="qux" "@query-param";name="param"', msg
    ) == [
        b'"@query-param";name="baz": batman',
        b'"@query-param";name="qux": ',
        b'"@query-param";name="param": value',
    ]
    encoded = _msg(
        query=b"var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace"
        b"&fa%C3%A7ade%22%3A%20=something"
    )
    assert _base(
        '"@query-param";name="var" "@query-param";name="bar" '
        '"@query-param";name="fa%C3%A7ade%22%3A%20"',
        encoded,
    ) == [
        b'"@query-param";name="var": this%20is%20a%20big%0Amultiline%20value',
        b'"@query-param";name="bar": with%20plus%20whitespace',
        b'"@query-param";name="fa%C3%A7ade%22%3A%20": something',
    ]
    for query in (b"a=1", b"Pet=1&Pet=2"):  # absent, then repeated (§2.2.8: MUST NOT)
        with pytest.raises(SignatureBaseError):
            _base('"@query-param";name="Pet"', _msg(query=query))


SECTION_2_1 = (
    (b"host", b"www.example.com"),
    (b"date", b"Tue, 20 Apr 2021 02:07:56 GMT"),
    (b"x-ows-header", b"   Leading and trailing whitespace.   "),
    (b"cache-control", b"max-age=60"),
    (b"cache-control", b"   must-revalidate"),
    (b"example-dict", b" a=1,    b=2;x=1;y=2,   c=(a   b   c)"),
    (b"x-empty-header", b""),
)


def test_field_values_per_section_2_1() -> None:
    assert _base(
        '"host" "date" "x-ows-header" "cache-control" "example-dict" "x-empty-header"',
        _msg(SECTION_2_1),
    ) == [
        b'"host": www.example.com',
        b'"date": Tue, 20 Apr 2021 02:07:56 GMT',
        b'"x-ows-header": Leading and trailing whitespace.',
        b'"cache-control": max-age=60, must-revalidate',  # multiple field lines
        b'"example-dict": a=1,    b=2;x=1;y=2,   c=(a   b   c)',
        b'"x-empty-header": ',
    ]


def test_dictionary_member_key_per_section_2_1_2() -> None:
    msg = _msg(((b"example-dict", b"  a=(1 2), b=3, c=4;aa=bb, d=(5 6);valid"),))
    assert _base(
        '"example-dict";key="a" "example-dict";key="d" '
        '"example-dict";key="b" "example-dict";key="c"',
        msg,
    ) == [
        b'"example-dict";key="a": (1 2)',
        b'"example-dict";key="d": (5 6);valid',
        b'"example-dict";key="b": 3',
        b'"example-dict";key="c": 4;aa=bb',
    ]
    with pytest.raises(SignatureBaseError):
        _base('"example-dict";key="z"', msg)
    with pytest.raises(SignatureBaseError):
        _base('"x";key="a"', _msg(((b"x", b"not a dictionary!"),)))


def test_byte_sequence_wrapping_per_section_2_1_3() -> None:
    msg = _msg(((b"example-header", b"value, with, lots"), (b"example-header", b"of, commas")))
    assert _base('"example-header";bs', msg) == [
        b'"example-header";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:'
    ]
    assert _base('"example-header"', msg) == [b'"example-header": value, with, lots, of, commas']


def test_sf_reserializes_known_dictionary_fields_only() -> None:
    msg = _msg(
        ((b"content-digest", b"sha-256=:AA==:,   sha-512=:AQ==:"), (b"example-dict", b"a=1"))
    )
    assert _base('"content-digest";sf', msg) == [
        b'"content-digest";sf: sha-256=:AA==:, sha-512=:AQ==:'
    ]
    with pytest.raises(SignatureBaseError):
        _base('"example-dict";sf', msg)  # its structured type is unknown here


def test_a_missing_covered_field_is_an_error() -> None:
    with pytest.raises(SignatureBaseError):
        _base('"content-digest"', _msg(((b"date", b"x"),)))


def test_an_at_named_header_never_satisfies_a_derived_component() -> None:
    msg = _msg(((b"@method", b"DELETE"), (b"@path", b"/admin")), method="GET", path="/p")
    assert _base('"@method" "@path"', msg) == [b'"@method": GET', b'"@path": /p']
    signed_input, signed = sign_request(
        msg, keyid="k", alg="hmac-sha256", key=b"secret", components=["@method"], created=1
    )
    forged = _msg(((b"@method", b"GET"),), method="DELETE")
    sig = parse_signature_input([signed_input])["sig1"]
    with pytest.raises(SignatureInvalid):
        verify_hmac_sha256(
            b"secret", signature_base(sig, forged), parse_signature([signed])["sig1"]
        )


def test_component_names_are_matched_in_lower_case_against_lower_case_fields() -> None:
    # Field names in a Message are lower-case; a signer's "Content-Type" is refused, and the
    # client helper lower-cases names for its caller.
    signature_input, _ = sign_request(
        _msg(((b"content-type", b"text/plain"),)),
        keyid="k",
        alg="hmac-sha256",
        key=b"s",
        components=["Content-Type"],
        created=1,
    )
    assert signature_input.startswith(b'sig1=("content-type")')
    with pytest.raises(StructuredFieldError):
        parse_signature_input([b's=("Content-Type");created=1'])


def test_control_characters_and_non_ascii_cannot_enter_the_base() -> None:
    for value in (b"a\nb", b"a\rb", b"caf\xc3\xa9", b"a\x00"):
        with pytest.raises(SignatureBaseError):
            _base('"x"', _msg(((b"x", value),)))
    assert _base('"x";bs', _msg(((b"x", b"caf\xc3\xa9"),))) == [b'"x";bs: :Y2Fmw6k=:']
    with pytest.raises(SignatureBaseError):
        _base('"@path"', _msg(path="/a\nb"))
    for component, fields in (("@path", {"path": "/café"}), ("@authority", {"authority": "é.com"})):
        with pytest.raises(SignatureBaseError):
            _base(f'"{component}"', _msg(**fields))


# --- interop with the http-message-signatures package ---------------------------------------


def _requests_message(body: bytes | None = None) -> requests.PreparedRequest:
    request = requests.Request(
        "POST" if body is not None else "GET",
        "https://api.example.com/v1/items?limit=10&sort=name",
        headers={"Date": "Tue, 20 Apr 2021 02:07:55 GMT", "Content-Type": "application/json"},
        data=body,
    )
    return request.prepare()


def _as_message(prepared: requests.PreparedRequest) -> Message:
    headers = tuple(
        (name.lower().encode(), value.encode() if isinstance(value, str) else value)
        for name, value in prepared.headers.items()
    )
    path, _, query = (prepared.path_url or "/").partition("?")
    return Message(
        method=str(prepared.method),
        scheme="https",
        authority="api.example.com",
        path=path,
        query=query.encode(),
        headers=headers,
    )


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "ed25519"])
def test_interop_the_package_signs_and_restguard_verifies(algorithm: str) -> None:
    peer_alg, private, public = (
        (HMAC_SHA256, SHARED_SECRET, SHARED_SECRET)
        if algorithm == "hmac-sha256"
        else (ED25519, ED25519_PRIVATE, ED25519_PRIVATE.public_key())
    )
    resolver = MappingKeyResolver(public_keys={"k1": public}, private_keys={"k1": private})
    body = b'{"hello": "world"}'
    prepared = _requests_message(body)
    HTTPMessageSigner(signature_algorithm=peer_alg, key_resolver=resolver).sign(
        prepared,
        key_id="k1",
        created=datetime.now(UTC),
        nonce="n-0001",
        label="peer",
        covered_component_ids=("@method", "@authority", "@path", "@query", "@target-uri", "date"),
        body=body,  # adds Content-Digest and covers it
    )
    msg = _as_message(prepared)
    sig = parse_signature_input([v for k, v in msg.headers if k == b"signature-input"])["peer"]
    raw = parse_signature([v for k, v in msg.headers if k == b"signature"])["peer"]
    assert sig.alg == algorithm and sig.nonce == "n-0001" and sig.covers("content-digest")
    rfc9421_algorithms.verify_signature(algorithm, public, signature_base(sig, msg), raw)
    from restguard.wire.rfc9530 import digest_problem

    assert digest_problem([v for k, v in msg.headers if k == b"content-digest"], body) is None


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "ed25519"])
def test_interop_restguard_signs_and_the_package_verifies(algorithm: str) -> None:
    peer_alg, private, public = (
        (HMAC_SHA256, SHARED_SECRET, SHARED_SECRET)
        if algorithm == "hmac-sha256"
        else (ED25519, ED25519_PRIVATE, ED25519_PRIVATE.public_key())
    )
    from restguard.wire.rfc9530 import content_digest

    body = b'{"hello": "world"}'
    prepared = _requests_message(body)
    prepared.headers["Content-Digest"] = content_digest(body)
    signature_input, signature = sign_request(
        _as_message(prepared),
        keyid="k1",
        alg=algorithm,
        key=private,
        components=[
            "@method",
            "@authority",
            "@path",
            "@query",
            ("@query-param", (("name", "sort"),)),
            "@target-uri",
            "content-digest",
            "content-type",
        ],
        created=int(time.time()),
        expires=int(time.time()) + 300,
        nonce="n-0002",
        tag="restguard",
    )
    prepared.headers["Signature-Input"] = signature_input.decode()
    prepared.headers["Signature"] = signature.decode()
    resolver = MappingKeyResolver(public_keys={"k1": public}, private_keys={})
    verifier = HTTPMessageVerifier(signature_algorithm=peer_alg, key_resolver=resolver)
    (result,) = verifier.verify(prepared, max_age=timedelta(minutes=5), body=body)
    assert result.label == "sig1" and result.parameters["nonce"] == "n-0002"
    # and a changed request does not verify for the package either
    prepared.headers["Content-Type"] = "text/plain"
    with pytest.raises(PeerInvalidSignature):
        verifier.verify(prepared, max_age=timedelta(minutes=5))


_NAMES = st.sampled_from(["@method", "@path", "@query-param", "content-digest", "x-a"])
_PARAMS = st.lists(
    st.tuples(st.sampled_from(["key", "name", "sf", "bs"]), st.sampled_from([True, "a", "b"])),
    max_size=2,
    unique_by=lambda kv: kv[0],
).map(tuple)


@given(st.lists(st.tuples(_NAMES, _PARAMS), max_size=5), _NAMES, _PARAMS)
def test_covers_is_exactly_name_and_parameter_set(
    components: list[tuple[str, tuple[tuple[str, object], ...]]],
    name: str,
    params: tuple[tuple[str, object], ...],
) -> None:
    """``covers`` (with its shortcut for the parameterless question) answers as the plain
    definition does: some component has this name and the same parameters in any order."""
    member = rfc8941_serialize.serialize_inner_list(
        InnerList(tuple(Item(n, p) for n, p in components), (("created", 0),))
    )
    try:
        sig = rfc9421.parse_signature_input([f"sig1={member}".encode()])["sig1"]
    except rfc9421.StructuredFieldError:
        return  # (not a component list the parser accepts: covers is never asked)
    expected = any(
        n == name and sorted(p, key=repr) == sorted(params, key=repr) for n, p in components
    )
    assert sig.covers(name, params) is expected


@pytest.mark.parametrize(
    ("accepted", "refused"),
    [
        # an sf-token equals the sf-string of its text, and hashes alike
        (b'sig1=("content-digest");created=1', b"sig1=(content-digest);created=1"),
        # ?1 (True) equals 1 and hashes alike; sf takes only a Boolean
        (b'sig1=("x-a";sf);created=1', b'sig1=("x-a";sf=1);created=1'),
        (b'sig1=("x-a";bs);created=1', b'sig1=("x-a";bs=1);created=1'),
    ],
)
def test_a_checked_component_list_never_vouches_for_an_equal_one_of_other_types(
    accepted: bytes, refused: bytes
) -> None:
    """The component checks are remembered per parsed list (by identity, not by value), so a
    list equal to one checked before but of other types is still checked, and refused."""
    for _ in range(3):  # (checked, then remembered)
        parse_signature_input([accepted])
    with pytest.raises(StructuredFieldError):
        parse_signature_input([refused])


@given(st.lists(st.tuples(_NAMES, _PARAMS), max_size=5))
def test_parsing_the_same_input_again_gives_the_same_answer(
    components: list[tuple[str, tuple[tuple[str, object], ...]]],
) -> None:
    """Remembered component lists change no answer: the second parse of a text (from the
    memo) equals the first, errors included, and ``plain`` is the parameterless names."""
    member = rfc8941_serialize.serialize_inner_list(
        InnerList(tuple(Item(n, p) for n, p in components), (("created", 5), ("nonce", "n")))
    )
    value = f"sig1={member}".encode()
    answers = []
    for _ in range(2):
        try:
            answers.append(parse_signature_input([value]))
        except StructuredFieldError as exc:
            answers.append(str(exc))  # type: ignore[arg-type]
    assert answers[0] == answers[1]
    if isinstance(answers[0], dict):
        sig = answers[0]["sig1"]
        assert sig.plain == frozenset(n for n, p in sig.components if not p)
        assert [tuple(c) for c in sig.components] == [(n, tuple(p)) for n, p in components]
