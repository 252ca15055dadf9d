"""credentials/oauth1_consumers.py and oauth1_tokens.py: consumer keys, secrets sealed and
opened again, callback rules (registration and a request's ``oauth_callback``), RSA public keys
from PEM (and every PEM refused), signature-method sets, and the temporary and token
credentials the provider will store."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from restguard.credentials.oauth1_consumers import (
    DEFAULT_METHODS,
    HMAC_SHA1,
    HMAC_SHA256,
    OOB,
    PLAINTEXT,
    RSA_SHA1,
    callback_problem,
    check_consumer,
    consumer_secret,
    decode_secret,
    encode_secret,
    is_active,
    is_consumer_key,
    new_consumer,
    new_consumer_key,
    oauth_callback_problem,
    rsa_public_key,
    rsa_public_key_der,
    rsa_public_key_pem,
    secret_purpose,
    signature_methods,
)
from restguard.credentials.oauth1_tokens import (
    ACCESS,
    TEMPORARY,
    TEMPORARY_TTL,
    is_live,
    new_temporary_credentials,
    new_token,
    new_token_credentials,
    new_verifier,
    state,
    token_secret,
    verifier_hash,
    verifier_matches,
)
from restguard.credentials.oauth1_tokens import secret_purpose as token_purpose
from restguard.keys.sealing import Sealer, SealError

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
SEALER = Sealer(b"\x01" * 32)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: object, fmt: serialization.PublicFormat | None = None) -> bytes:
    public = key.public_key()  # type: ignore[attr-defined]
    return bytes(
        public.public_bytes(
            serialization.Encoding.PEM, fmt or serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def consumer(**options: object) -> tuple[object, str]:
    return new_consumer("svc", ["notes:read"], now=T0, sealer=SEALER, **options)  # type: ignore[arg-type]


# --- keys and secrets ----------------------------------------------------------------------------


def test_consumer_keys_are_ck_and_20_lowercase_alphanumerics() -> None:
    keys = {new_consumer_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(re.fullmatch(r"ck_[0-9a-z]{20}", k) and is_consumer_key(k) for k in keys)
    for bad in ("ck_short", "CK_" + "a" * 20, "ck_" + "A" * 20, "ck_" + "a" * 21, "app_x"):
        assert not is_consumer_key(bad)


def test_new_consumer_seals_a_32_byte_secret_shown_once_as_base64url() -> None:
    record, secret = new_consumer(
        "svc", ["b", "a", "b"], callback="https://app.example/cb", now=T0, sealer=SEALER
    )
    assert is_consumer_key(record.consumer_key)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    raw = base64.urlsafe_b64decode(secret + "=")
    assert len(raw) == 32 and decode_secret(secret) == raw and encode_secret(raw) == secret
    assert secret.encode() not in record.sealed_secret and raw not in record.sealed_secret
    assert consumer_secret(record, SEALER) == secret  # the verifier gets the text back
    assert record.scopes == ("b", "a")  # repeats once, first order
    assert record.callback == "https://app.example/cb"
    assert record.signature_methods == DEFAULT_METHODS and record.rsa_public_key is None
    assert record.created_at == T0 and record.revoked_at is None
    other, other_secret = new_consumer("svc", ["a"], now=T0, sealer=SEALER)
    assert other.consumer_key != record.consumer_key and other_secret != secret


def test_a_sealed_secret_opens_only_with_its_key_and_for_its_consumer() -> None:
    record, _ = new_consumer("svc", ["a"], now=T0, sealer=SEALER)
    with pytest.raises(SealError):
        consumer_secret(record, Sealer(b"\x02" * 32))
    moved = replace(record, consumer_key=new_consumer_key())  # copied to another consumer
    with pytest.raises(SealError):
        consumer_secret(moved, SEALER)
    assert secret_purpose(record.consumer_key) == f"oauth1-consumer-secret:{record.consumer_key}"
    short = replace(
        record, sealed_secret=SEALER.seal(b"x" * 16, secret_purpose(record.consumer_key))
    )
    with pytest.raises(ValueError, match="not 32 bytes"):
        consumer_secret(short, SEALER)


@pytest.mark.parametrize("text", ["", "a" * 42, "a" * 44, "+" * 43, "a" * 42 + "B"])
def test_decode_secret_refuses_what_is_not_32_bytes_of_base64url(text: str) -> None:
    with pytest.raises(ValueError, match="43 characters of base64url"):
        decode_secret(text)


def test_is_active() -> None:
    record, _ = new_consumer("svc", ["a"], now=T0, sealer=SEALER)
    assert is_active(record, T0)
    revoked = replace(record, revoked_at=T0)
    assert not is_active(revoked, T0) and is_active(revoked, T0 - timedelta(seconds=1))


# --- callbacks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb",
        "https://app.example:8443/oauth/cb?state=1",  # a query: the server appends to it
        "http://127.0.0.1:8080/cb",
        "http://[::1]:9000/cb",
        "com.example.app:/cb",
    ],
)
def test_callbacks_accepted(uri: str) -> None:
    assert callback_problem(uri) is None
    record, _ = new_consumer("svc", ["a"], callback=uri, now=T0, sealer=SEALER)
    assert record.callback == uri


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "must not be empty"),
        ("oob", "omit the option"),
        ("/cb", "must be an absolute URI"),
        ("http://app.example/cb", "must be https://"),
        ("http://localhost:8080/cb", "must be https://"),
        ("https://app.example/cb#x", "fragment"),
        ("https://*.example/cb", "wildcards"),
        ("https://user:pw@app.example/cb", "user information"),
        ("https://app.example/a b", "printable ASCII"),
        ("https://app.example/%zz", "percent-encoded"),
        ("https://app.example:port/", "not a valid URI"),
        ("https:///cb", "has no host"),
        ("javascript:alert(1)", "the scheme must be"),
        ("com.example.app:cb", "needs a path"),
        ("https://app.example/" + "a" * 2000, "longer than 2000"),
    ],
)
def test_callbacks_refused(uri: str, message: str) -> None:
    problem = callback_problem(uri)
    assert problem is not None and message in problem
    with pytest.raises(ValueError, match=r"^--callback: "):
        new_consumer("svc", ["a"], callback=uri, now=T0, sealer=SEALER)


def test_oauth_callback_must_be_the_registered_one_or_oob() -> None:
    registered, _ = new_consumer(
        "svc", ["a"], callback="https://app.example/cb", now=T0, sealer=SEALER
    )
    assert oauth_callback_problem(registered, "https://app.example/cb") is None
    assert oauth_callback_problem(registered, OOB) is None
    for other in ("https://app.example/cb/", "https://APP.example/cb", "https://evil.example/cb"):
        assert "registered callback URI or 'oob'" in (
            oauth_callback_problem(registered, other) or ""
        )
    assert oauth_callback_problem(registered, "OOB") is not None  # case sensitive (§2.1)
    bare, _ = new_consumer("svc", ["a"], now=T0, sealer=SEALER)
    assert oauth_callback_problem(bare, OOB) is None
    assert "must be 'oob'" in (oauth_callback_problem(bare, "https://app.example/cb") or "")


# --- RSA public keys -----------------------------------------------------------------------------


def test_rsa_public_key_round_trip_and_rsa_sha1_is_allowed(rsa_key: rsa.RSAPrivateKey) -> None:
    record, _ = new_consumer(
        "svc", ["a"], rsa_public_key_pem=public_pem(rsa_key), now=T0, sealer=SEALER
    )
    assert record.signature_methods == (HMAC_SHA1, HMAC_SHA256, RSA_SHA1, PLAINTEXT)
    key = rsa_public_key(record)
    assert key is not None
    signature = rsa_key.sign(b"base string", padding.PKCS1v15(), hashes.SHA1())
    key.verify(signature, b"base string", padding.PKCS1v15(), hashes.SHA1())
    assert rsa_public_key_pem(record) == public_pem(rsa_key).decode()
    bare, _ = new_consumer("svc", ["a"], now=T0, sealer=SEALER)
    assert rsa_public_key(bare) is None and rsa_public_key_pem(bare) is None


def test_a_pkcs1_rsa_public_key_is_accepted_too(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = public_pem(rsa_key, serialization.PublicFormat.PKCS1)
    assert pem.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    assert rsa_public_key_der(pem) == rsa_public_key_der(public_pem(rsa_key))


def test_a_1024_bit_rsa_key_is_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="1024 bits is too short; use at least 2048"):
        rsa_public_key_der(public_pem(weak))


def test_a_small_public_exponent_is_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=3, key_size=2048)
    with pytest.raises(ValueError, match="public exponent is 3"):
        rsa_public_key_der(public_pem(weak))


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_a_private_key_is_refused_and_never_quoted(
    rsa_key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat
) -> None:
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    with pytest.raises(ValueError, match="holds a private key; never give restguard") as caught:
        rsa_public_key_der(pem)
    assert pem.splitlines()[1].decode() not in str(caught.value)
    with pytest.raises(ValueError, match="private key"):
        new_consumer("svc", ["a"], rsa_public_key_pem=pem, now=T0, sealer=SEALER)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: public_pem(ed25519.Ed25519PrivateKey.generate()), "needs an RSA key"),
        (lambda: public_pem(ec.generate_private_key(ec.SECP256R1())), "needs an RSA key"),
        (lambda: b"not pem at all", "is not PEM"),
        (lambda: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "CERTIFICATE"),
        (
            lambda: b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "not hold a readable public key",
        ),
        (lambda: b"-----BEGIN PUBLIC KEY-----\n" * 2, "several PEM blocks"),
        (lambda: b"x" * (16 * 1024 + 1), "larger than 16 KiB"),
    ],
)
def test_other_keys_and_files_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=r"^--rsa-public-key: ") as caught:
        rsa_public_key_der(make())  # type: ignore[operator]
    assert message in str(caught.value)


# --- signature methods ---------------------------------------------------------------------------


def test_signature_method_sets(rsa_key: rsa.RSAPrivateKey) -> None:
    assert signature_methods([], has_rsa_key=False) == DEFAULT_METHODS
    assert signature_methods(["hmac-sha256", "HMAC-SHA1", "hmac-sha1"], has_rsa_key=False) == (
        HMAC_SHA1,
        HMAC_SHA256,
    )
    assert signature_methods(["RSA-SHA1"], has_rsa_key=True) == (RSA_SHA1,)
    with pytest.raises(ValueError, match="'MD5' is not one of"):
        signature_methods(["md5"], has_rsa_key=False)
    with pytest.raises(ValueError, match="RSA-SHA1 needs the consumer's RSA public key"):
        signature_methods(["RSA-SHA1"], has_rsa_key=False)
    with pytest.raises(ValueError, match=r"^--rsa-public-key: the key is only used by RSA-SHA1"):
        signature_methods(["HMAC-SHA1"], has_rsa_key=True)
    record, _ = new_consumer(
        "svc",
        ["a"],
        rsa_public_key_pem=public_pem(rsa_key),
        methods=["RSA-SHA1"],
        now=T0,
        sealer=SEALER,
    )
    assert record.signature_methods == (RSA_SHA1,)


@pytest.mark.parametrize(
    ("name", "scopes", "message"),
    [
        ("", ["a"], "--name: must not be empty"),
        ("a\nb", ["a"], "--name: must not contain control characters"),
        ("n", [], "--scope: give at least one scope"),
        ("n", ["a,b"], "--scope: 'a,b' has a comma"),
    ],
)
def test_check_consumer_names_the_option(name: str, scopes: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_consumer(name, scopes, None, None)


# --- temporary and token credentials -------------------------------------------------------------


def test_tokens_carry_their_kind() -> None:
    assert re.fullmatch(r"rg_or_[0-9A-Za-z]{32}", new_token(TEMPORARY))
    assert re.fullmatch(r"rg_ot_[0-9A-Za-z]{32}", new_token(ACCESS))
    with pytest.raises(ValueError, match="temporary or access"):
        new_token("refresh")


def test_temporary_then_token_credentials() -> None:
    record, _ = new_consumer("svc", ["a", "b"], now=T0, sealer=SEALER)
    temp, temp_secret = new_temporary_credentials(record, OOB, now=T0, sealer=SEALER)
    assert temp.kind == TEMPORARY and temp.token.startswith("rg_or_")
    assert temp.consumer_key == record.consumer_key and temp.callback == OOB
    assert temp.scopes == ("a", "b") and temp.expires_at == T0 + TEMPORARY_TTL
    assert temp.user_id is None and temp.verifier_hash is None
    assert token_secret(temp, SEALER) == temp_secret and decode_secret(temp_secret)
    assert temp_secret.encode() not in temp.sealed_secret
    with pytest.raises(SealError):  # sealed for this token only
        token_secret(replace(temp, token=new_token(TEMPORARY)), SEALER)
    assert token_purpose(temp.token) == f"oauth1-token-secret:{temp.token}"
    with pytest.raises(ValueError, match="may not be granted the scope 'c'"):
        new_temporary_credentials(record, OOB, now=T0, sealer=SEALER, scopes=("a", "c"))
    with pytest.raises(ValueError, match="authorized temporary credentials"):
        new_token_credentials(temp, now=T0, sealer=SEALER)

    verifier, digest = new_verifier()
    assert re.fullmatch(r"[0-9A-Za-z]{22}", verifier) and digest == verifier_hash(verifier)
    authorized = replace(
        temp, user_id="rg_us_1", subject="alice", scopes=("a",), verifier_hash=digest
    )
    assert verifier_matches(verifier, authorized)
    assert not verifier_matches(verifier + "x", authorized) and not verifier_matches(
        "é", authorized
    )
    assert not verifier_matches(verifier, temp)
    access, access_secret = new_token_credentials(authorized, now=T0, sealer=SEALER)
    assert access.kind == ACCESS and access.token.startswith("rg_ot_")
    assert (access.user_id, access.subject, access.scopes) == ("rg_us_1", "alice", ("a",))
    assert access.consumer_key == record.consumer_key and access.expires_at is None
    assert token_secret(access, SEALER) == access_secret != temp_secret


def test_token_states() -> None:
    record, _ = new_consumer("svc", ["a"], now=T0, sealer=SEALER)
    temp, _ = new_temporary_credentials(record, OOB, now=T0, sealer=SEALER)
    assert is_live(temp, T0) and state(temp, T0) == "active"
    later = T0 + TEMPORARY_TTL
    assert not is_live(temp, later) and state(temp, later) == "expired"
    used = replace(temp, used_at=T0)
    assert not is_live(used, T0) and state(used, T0) == "used"
    revoked = replace(temp, revoked_at=T0)
    assert not is_live(revoked, T0) and state(revoked, T0) == "revoked"
