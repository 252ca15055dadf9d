"""credentials/apps.py: key ids, hmac secrets, public keys from PEM (and every PEM refused),
sealing, rotation, and the key the verifier gets back (``verification_key``)."""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519

from restguard.credentials.apps import (
    ALGORITHMS,
    ECDSA_P256_SHA256,
    ED25519,
    HMAC_SHA256,
    MAX_PEM_BYTES,
    check_app,
    decode_secret,
    encode_secret,
    is_active,
    is_key_id,
    new_app,
    new_key_id,
    public_key_der,
    public_key_pem,
    rotated_app,
    secret_purpose,
    verification_key,
)
from restguard.keys.sealing import Sealer, SealError
from restguard.wire.rfc9421_algorithms import HmacSha256Key, verify_hmac_sha256
from tests.signature_support import keyed_with

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
SEALER = Sealer(b"\x01" * 32)


def public_pem(key: object) -> bytes:
    public = key.public_key()  # type: ignore[attr-defined]
    return bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def private_pem(key: object, fmt: serialization.PrivateFormat) -> bytes:
    return bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, fmt, serialization.NoEncryption()
        )
    )


# --- ids and secrets -----------------------------------------------------------------------------


def test_key_ids_are_public_and_unguessable() -> None:
    ids = {new_key_id() for _ in range(200)}
    assert len(ids) == 200
    for key_id in ids:
        assert re.fullmatch(r"app_[0-9a-z]{16}", key_id)
        assert is_key_id(key_id)
    for bad in ("app_", "app_ABCDEFGHIJKLMNOP", "rg_ak_0123456789abcdef", "app_0123456789abcdef0"):
        assert not is_key_id(bad)


def test_hmac_secret_is_base64url_of_32_random_bytes() -> None:
    seen = set()
    for _ in range(50):
        record, secret = new_app("svc", ["a"], HMAC_SHA256, None, now=T0, sealer=SEALER)
        assert secret is not None and re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)  # no padding
        key = base64.urlsafe_b64decode(secret + "=")
        assert len(key) == 32 and decode_secret(secret) == key
        assert keyed_with(verification_key(record, SEALER), key)  # the decoded bytes key it
        seen.add(secret)
    assert len(seen) == 50


@pytest.mark.parametrize(
    "text",
    ["", "A" * 42, "A" * 44, "A" * 42 + "=", "A" * 42 + "+", "A" * 42 + "B"],  # B: spare bits
)
def test_decode_secret_refuses_what_is_not_32_bytes_of_base64url(text: str) -> None:
    with pytest.raises(ValueError, match="43 characters of base64url"):
        decode_secret(text)


def test_encode_decode_round_trip() -> None:
    for key in (b"\x00" * 32, b"\xff" * 32, bytes(range(32))):
        assert decode_secret(encode_secret(key)) == key


# --- hmac apps: sealed --------------------------------------------------------------------------


def test_hmac_app_record_is_sealed_never_plain() -> None:
    record, secret = new_app("svc", ["a", "b", "a"], HMAC_SHA256, None, now=T0, sealer=SEALER)
    assert secret is not None
    key = decode_secret(secret)
    assert record.key_id.startswith("app_") and record.alg == HMAC_SHA256
    assert record.name == "svc" and record.scopes == ("a", "b") and record.created_at == T0
    assert record.public_key is None and record.revoked_at is None
    assert record.sealed_secret is not None
    assert key not in record.sealed_secret and secret.encode() not in record.sealed_secret
    assert SEALER.open(record.sealed_secret, secret_purpose(record.key_id)) == key


def test_a_sealed_secret_opens_only_for_its_app_and_master_key() -> None:
    record, _ = new_app("svc", ["a"], HMAC_SHA256, None, now=T0, sealer=SEALER)
    moved = replace(record, key_id=new_key_id())  # a sealed value copied to another app
    with pytest.raises(SealError):
        verification_key(moved, SEALER)
    with pytest.raises(SealError):
        verification_key(record, Sealer(b"\x02" * 32))
    # during a master-key rotation the old key still opens it
    assert verification_key(record, Sealer(b"\x02" * 32, also=(b"\x01" * 32,)))


def test_hmac_needs_the_sealer() -> None:
    with pytest.raises(TypeError, match="Sealer"):
        new_app("svc", ["a"], HMAC_SHA256, None, now=T0, sealer=None)


def test_hmac_refuses_a_public_key() -> None:
    pem = public_pem(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match=r"^--public-key: an hmac-sha256 app has a secret"):
        new_app("svc", ["a"], HMAC_SHA256, pem, now=T0, sealer=SEALER)


# --- public-key apps -----------------------------------------------------------------------------


def test_ed25519_app_keeps_the_public_key_only() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    record, secret = new_app("svc", ["a"], ED25519, public_pem(private), now=T0, sealer=None)
    assert secret is None and record.sealed_secret is None and record.alg == ED25519
    public = verification_key(record, SEALER)
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(private.sign(b"base"), b"base")  # the key the client signs with
    assert record.public_key == private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public_key_pem(record) == public_pem(private).decode()


def test_ecdsa_p256_app() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    record, secret = new_app(
        "svc", ["a"], ECDSA_P256_SHA256, public_pem(private), now=T0, sealer=SEALER
    )
    assert secret is None and record.sealed_secret is None
    public = verification_key(record, SEALER)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    public.verify(
        private.sign(b"base", ec.ECDSA(hashes.SHA256())), b"base", ec.ECDSA(hashes.SHA256())
    )


def test_public_key_pem_with_surrounding_text_and_crlf() -> None:
    pem = public_pem(ed25519.Ed25519PrivateKey.generate())
    der = public_key_der(ED25519, pem)
    assert public_key_der(ED25519, b"my key:\r\n" + pem.replace(b"\n", b"\r\n")) == der


@pytest.mark.parametrize("alg", [ED25519, ECDSA_P256_SHA256])
def test_public_key_algorithms_need_a_public_key(alg: str) -> None:
    with pytest.raises(ValueError, match=f"^--public-key: an {alg} app needs the path"):
        new_app("svc", ["a"], alg, None, now=T0, sealer=SEALER)


WRONG_KEYS = [
    pytest.param(
        ED25519,
        lambda: public_pem(ec.generate_private_key(ec.SECP256R1())),
        "EC key on the curve secp256r1, but --alg ed25519 needs an Ed25519 key; for this key "
        "use --alg ecdsa-p256-sha256",
        id="p256-for-ed25519",
    ),
    pytest.param(
        ECDSA_P256_SHA256,
        lambda: public_pem(ed25519.Ed25519PrivateKey.generate()),
        "an Ed25519 key, but --alg ecdsa-p256-sha256 needs a P-256",
        id="ed25519-for-ecdsa",
    ),
    pytest.param(
        ECDSA_P256_SHA256,
        lambda: public_pem(ec.generate_private_key(ec.SECP384R1())),
        "an EC key on the curve secp384r1, but --alg ecdsa-p256-sha256 needs a P-256",
        id="p384",
    ),
    pytest.param(
        ECDSA_P256_SHA256,
        lambda: public_pem(ec.generate_private_key(ec.SECP256K1())),
        "curve secp256k1",
        id="secp256k1",
    ),
    pytest.param(
        ED25519,
        lambda: public_pem(rsa.generate_private_key(65537, 2048)),
        "an RSA key \\(2048 bits\\), but --alg ed25519 needs an Ed25519 key; RSA is not offered",
        id="rsa",
    ),
    pytest.param(
        ED25519,
        lambda: public_pem(ed448.Ed448PrivateKey.generate()),
        "but --alg ed25519 needs an Ed25519 key",
        id="ed448",
    ),
    pytest.param(
        ED25519,
        lambda: public_pem(x25519.X25519PrivateKey.generate()),
        "but --alg ed25519 needs an Ed25519 key",
        id="x25519",
    ),
]


@pytest.mark.parametrize(("alg", "make", "message"), WRONG_KEYS)
def test_keys_of_the_wrong_kind_are_refused(alg: str, make: object, message: str) -> None:
    with pytest.raises(ValueError, match="^--public-key: .*" + message):
        public_key_der(alg, make())  # type: ignore[operator]


PRIVATE_KEYS = [
    pytest.param(
        lambda: private_pem(
            ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8
        ),
        id="pkcs8-ed25519",
    ),
    pytest.param(
        lambda: private_pem(
            ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.TraditionalOpenSSL
        ),
        id="sec1-ec",
    ),
    pytest.param(
        lambda: private_pem(
            ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.OpenSSH
        ),
        id="openssh",
    ),
    pytest.param(
        lambda: (
            private_pem(ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8)
            + public_pem(ed25519.Ed25519PrivateKey.generate())
        ),
        id="private-then-public",
    ),
    pytest.param(
        lambda: (
            public_pem(ed25519.Ed25519PrivateKey.generate())
            + private_pem(ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8)
        ),
        id="public-then-private",
    ),
]


@pytest.mark.parametrize("make", PRIVATE_KEYS)
@pytest.mark.parametrize("alg", [ED25519, ECDSA_P256_SHA256])
def test_a_private_key_is_refused_and_never_quoted(alg: str, make: object) -> None:
    pem: bytes = make()  # type: ignore[operator]
    with pytest.raises(ValueError) as caught:
        public_key_der(alg, pem)
    message = str(caught.value)
    assert message.startswith("--public-key: the file holds a private key; never give restguard")
    assert "openssl pkey" in message and "-pubout" in message
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    assert body[:20].decode() not in message


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (b"", "not PEM"),
        (b"garbage", "not PEM"),
        (b"\x00\xff" * 50, "not PEM"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not hold a readable"),
        (b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n", "not hold a readable"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "'CERTIFICATE'"),
        (b"-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n", "'RSA PUBLIC"),
        (b"x" * (MAX_PEM_BYTES + 1), "larger than 16 KiB"),
    ],
)
def test_garbage_is_refused(pem: bytes, message: str) -> None:
    with pytest.raises(ValueError, match="^--public-key: .*" + message):
        public_key_der(ED25519, pem)


def test_several_public_keys_are_refused() -> None:
    two = public_pem(ed25519.Ed25519PrivateKey.generate()) * 2
    with pytest.raises(ValueError, match="several PEM blocks"):
        public_key_der(ED25519, two)


# --- names, scopes, algorithms -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "scopes", "alg", "message"),
    [
        ("", ["a"], HMAC_SHA256, "^--name: must not be empty"),
        ("a\nb", ["a"], HMAC_SHA256, "^--name: must not contain control"),
        ("x" * 201, ["a"], HMAC_SHA256, "^--name: must be at most 200"),
        ("svc", [], HMAC_SHA256, "^--scope: give at least one"),
        ("svc", ["a b"], HMAC_SHA256, "^--scope: "),
        ("svc", ["a,b"], HMAC_SHA256, "^--scope: 'a,b' has a comma"),
        ("svc", ["a"], "rsa-pss-sha512", "^--alg: 'rsa-pss-sha512' is not one of hmac-sha256"),
        ("svc", ["a"], "HMAC-SHA256", "^--alg: "),
    ],
)
def test_bad_options(name: str, scopes: list[str], alg: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_app(name, scopes, alg, None)
    with pytest.raises(ValueError, match=message):
        new_app(name, scopes, alg, None, now=T0, sealer=SEALER)


def test_algorithms_are_rfc_9421_names() -> None:
    assert ALGORITHMS == ("hmac-sha256", "ed25519", "ecdsa-p256-sha256")


# --- rotation and state --------------------------------------------------------------------------


def test_rotated_hmac_app_gets_a_new_id_and_secret() -> None:
    old, old_secret = new_app("svc", ["a", "b"], HMAC_SHA256, None, now=T0, sealer=SEALER)
    later = T0 + timedelta(days=1)
    new, secret = rotated_app(old, None, now=later, sealer=SEALER)
    assert secret is not None and secret != old_secret
    assert new.key_id != old.key_id and new.created_at == later and new.revoked_at is None
    assert (new.name, new.scopes, new.alg) == (old.name, old.scopes, old.alg)
    assert keyed_with(verification_key(new, SEALER), decode_secret(secret))
    with pytest.raises(ValueError, match=r"^--public-key: an hmac-sha256 app gets a new secret"):
        rotated_app(old, public_pem(ed25519.Ed25519PrivateKey.generate()), now=T0, sealer=SEALER)


def test_rotated_public_key_app_needs_a_new_key_of_its_kind() -> None:
    first = ec.generate_private_key(ec.SECP256R1())
    old, _ = new_app("svc", ["a"], ECDSA_P256_SHA256, public_pem(first), now=T0, sealer=None)
    with pytest.raises(ValueError, match="needs the path of its new PEM public key"):
        rotated_app(old, None, now=T0, sealer=None)
    with pytest.raises(ValueError, match="this is the app's current public key"):
        rotated_app(old, public_pem(first), now=T0, sealer=None)
    with pytest.raises(ValueError, match="needs a P-256"):
        rotated_app(old, public_pem(ed25519.Ed25519PrivateKey.generate()), now=T0, sealer=None)
    second = ec.generate_private_key(ec.SECP256R1())
    new, secret = rotated_app(old, public_pem(second), now=T0, sealer=None)
    assert secret is None and new.key_id != old.key_id and new.alg == ECDSA_P256_SHA256
    assert public_key_pem(new) == public_pem(second).decode()


def test_is_active_honours_a_grace_period() -> None:
    record, _ = new_app("svc", ["a"], HMAC_SHA256, None, now=T0, sealer=SEALER)
    assert is_active(record, T0)
    graced = replace(record, revoked_at=T0 + timedelta(hours=1))
    assert is_active(graced, T0) and not is_active(graced, T0 + timedelta(hours=1))


def test_inconsistent_records_are_refused_by_verification_key() -> None:
    hmac_app, _ = new_app("svc", ["a"], HMAC_SHA256, None, now=T0, sealer=SEALER)
    ed, _ = new_app(
        "svc", ["a"], ED25519, public_pem(ed25519.Ed25519PrivateKey.generate()), now=T0, sealer=None
    )
    for bad in (
        replace(hmac_app, sealed_secret=None),
        replace(ed, public_key=None),
        replace(ed, alg=ECDSA_P256_SHA256),  # an Ed25519 key stored for ecdsa
        replace(ed, alg="rsa-pss-sha512"),
    ):
        with pytest.raises(ValueError, match=f"app {bad.key_id}: "):
            verification_key(bad, SEALER)
    short = replace(hmac_app, sealed_secret=SEALER.seal(b"short", secret_purpose(hmac_app.key_id)))
    with pytest.raises(ValueError, match="not 32 bytes"):
        verification_key(short, SEALER)


def test_the_secret_signs_as_rfc_9421_hmac_sha256() -> None:
    """RFC 9421 §3.3.3: HMAC-SHA256 keyed with the shared secret's bytes."""
    record, secret = new_app("svc", ["a"], HMAC_SHA256, None, now=T0, sealer=SEALER)
    assert secret is not None
    key = verification_key(record, SEALER)
    assert isinstance(key, HmacSha256Key)
    base = b'"@method": GET\n"@signature-params": ("@method");keyid="x"'
    client = hmac.new(decode_secret(secret), base, "sha256").digest()
    verify_hmac_sha256(key, base, client)  # (raises SignatureInvalid if not)
