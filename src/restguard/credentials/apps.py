"""Signing apps: clients that sign every request (RFC 9421 HTTP Message Signatures) with their
own key. This module makes and checks the records ``restguard app create|rotate`` stores and
gives the verifier an app's key; verifying signatures is ``credentials/signature.py``'s work.

* ``key_id``: ``app_`` and 16 characters of ``[0-9a-z]`` (82 bits): public -- clients send it
  as the signature's ``keyid`` parameter (RFC 9421 §2.3), and it appears in logs and in
  ``X-Restguard-Client-Id`` -- yet unguessable, so ids cannot be enumerated.
* ``alg`` (RFC 9421 §3.3, the HTTP Signature Algorithms registry): fixed per app, so the
  verifier never takes it from the request (§3.3.7; a request's ``alg`` parameter must match).

  - ``hmac-sha256`` (§3.3.3): restguard draws the secret, 32 random bytes, and shows it once as
    base64url without padding (the contract: the HMAC key is the decoded bytes). The verifier
    needs the key itself, so it is stored sealed by the master key (purpose
    ``app-secret:<key_id>``: a sealed value cannot be moved to another app), never hashed.
  - ``ed25519`` (§3.3.6) and ``ecdsa-p256-sha256`` (§3.3.4): the client keeps its private key;
    restguard stores the public key from a PEM file as DER SubjectPublicKeyInfo. A key of the
    wrong type or curve, an RSA key, or a private key is refused: restguard never takes a
    private key, so one pasted by mistake is not stored (the message says to keep it secret).

``new_app`` and ``rotated_app`` raise ``ValueError("--option: problem")`` for what cannot be
honoured, like ``oauth2.clients.new_client``.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)

from restguard.credentials.apikey import check_name
from restguard.keys.sealing import Sealer
from restguard.store.ports import AppRecord
from restguard.wire.rfc9421_algorithms import HmacSha256Key
from restguard.wire.scope import scope_problem

HMAC_SHA256: Final = "hmac-sha256"
ED25519: Final = "ed25519"
ECDSA_P256_SHA256: Final = "ecdsa-p256-sha256"
#: RFC 9421 §6.2.2 names, in the order ``--alg`` offers them (the first is the default).
ALGORITHMS: Final = (HMAC_SHA256, ED25519, ECDSA_P256_SHA256)
PUBLIC_KEY_ALGORITHMS: Final = (ED25519, ECDSA_P256_SHA256)

ID_PREFIX: Final = "app_"
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_LEN = 16
_KEY_ID = re.compile(r"app_[0-9a-z]{16}")
#: RFC 9421 §3.3.3 asks for a key of at least the hash's output size: 256 bits.
SECRET_BYTES: Final = 32
_SECRET_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")
#: A public key's PEM is a few hundred bytes; anything far larger is not one.
MAX_PEM_BYTES: Final = 16 * 1024
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_KEEP_PRIVATE = (
    "never give restguard (or anyone) a private key: keep it with the client that signs, and "
    "pass the public half, e.g. 'openssl pkey -in private.pem -pubout -out public.pem'"
)

VerificationKey = HmacSha256Key | Ed25519PublicKey | EllipticCurvePublicKey


def new_key_id() -> str:
    return ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LEN))


def is_key_id(text: str) -> bool:
    """Whether ``text`` has the form of an app's key_id (safe to log: ids are public)."""
    return _KEY_ID.fullmatch(text) is not None


def secret_purpose(key_id: str) -> str:
    """The sealing purpose (associated data) of an hmac-sha256 app's secret."""
    return f"app-secret:{key_id}"


def encode_secret(key: bytes) -> str:
    """The secret as shown to the user: base64url of the HMAC key, without padding."""
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def decode_secret(text: str) -> bytes:
    """The HMAC key a shown secret stands for (what a client signs with); ValueError if
    ``text`` is not the base64url of 32 bytes."""
    if not _SECRET_TEXT.fullmatch(text):
        raise ValueError("an app secret is 43 characters of base64url (32 bytes)")
    try:
        key = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):
        raise ValueError("an app secret is 43 characters of base64url (32 bytes)") from None
    if len(key) != SECRET_BYTES or encode_secret(key) != text:  # (the last char's spare bits)
        raise ValueError("an app secret is 43 characters of base64url (32 bytes)")
    return key


def new_secret() -> tuple[bytes, str]:
    """A fresh HMAC key and its text, shown once."""
    key = secrets.token_bytes(SECRET_BYTES)
    return key, encode_secret(key)


def is_active(record: AppRecord, now: datetime) -> bool:
    """Not revoked at ``now`` (a revocation in the future is a rotation's grace)."""
    return record.revoked_at is None or record.revoked_at > now


def _key_kind(key: object) -> str:
    if isinstance(key, Ed25519PublicKey):
        return "an Ed25519 key"
    if isinstance(key, EllipticCurvePublicKey):
        return f"an EC key on the curve {key.curve.name}"
    if isinstance(key, RSAPublicKey):
        return f"an RSA key ({key.key_size} bits)"
    return f"a {type(key).__name__.removeprefix('_')}"


def public_key_der(alg: str, pem: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of the one public key in ``pem`` when it suits ``alg``;
    ``ValueError("--public-key: ...")`` otherwise (the message never quotes the file)."""
    if alg not in PUBLIC_KEY_ALGORITHMS:
        raise ValueError(
            f"--public-key: an {alg} app has a secret that restguard generates, not a public "
            f"key; drop --public-key, or use --alg {' or --alg '.join(PUBLIC_KEY_ALGORITHMS)}"
        )
    if len(pem) > MAX_PEM_BYTES:
        raise ValueError(
            f"--public-key: the file is larger than {MAX_PEM_BYTES // 1024} KiB; "
            "it is not a PEM public key"
        )
    labels = [m.group(1).decode("ascii") for m in _PEM_BEGIN.finditer(pem)]
    if any("PRIVATE" in label for label in labels) or b"PRIVATE KEY" in pem:
        raise ValueError(f"--public-key: the file holds a private key; {_KEEP_PRIVATE}")
    if not labels:
        raise ValueError(
            "--public-key: the file is not PEM; expected '-----BEGIN PUBLIC KEY-----' (e.g. "
            "from 'openssl pkey -in private.pem -pubout')"
        )
    if len(labels) > 1:
        raise ValueError(
            "--public-key: the file holds several PEM blocks; give a file with exactly one "
            "public key"
        )
    if labels[0] != "PUBLIC KEY":
        raise ValueError(
            f"--public-key: the file holds a '{labels[0]}', not a 'PUBLIC KEY' (a "
            "SubjectPublicKeyInfo); for a certificate, extract its key with "
            "'openssl x509 -in cert.pem -pubkey -noout'"
        )
    try:
        key = load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(
            "--public-key: the file does not hold a readable public key (a damaged PEM block?)"
        ) from None
    if not _suits(alg, key):
        want = "an Ed25519 key" if alg == ED25519 else "a P-256 (secp256r1, prime256v1) EC key"
        hint = ""
        if isinstance(key, Ed25519PublicKey):
            hint = f"; for this key use --alg {ED25519}"
        elif isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1):
            hint = f"; for this key use --alg {ECDSA_P256_SHA256}"
        elif isinstance(key, RSAPublicKey):
            hint = (
                "; RSA is not offered: make an Ed25519 key ('openssl genpkey -algorithm ed25519')"
            )
        raise ValueError(f"--public-key: {_key_kind(key)}, but --alg {alg} needs {want}{hint}")
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _suits(alg: str, key: object) -> bool:
    if alg == ED25519:
        return isinstance(key, Ed25519PublicKey)
    if alg == ECDSA_P256_SHA256:
        return isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1)
    return False


def check_app(
    name: str, scopes: Iterable[str], alg: str, public_key_pem: bytes | None
) -> tuple[tuple[str, ...], bytes | None]:
    """The scopes (repeats counted once, in the order first given) and the DER public key (None
    for hmac-sha256) of an app ``new_app`` would make; ``ValueError("--option: problem")``.
    Needs no master key: the CLI checks its options with it before opening anything."""
    try:
        check_name(name)
    except ValueError as exc:
        raise ValueError(f"--name: {exc}") from None
    scope_list = _scopes(scopes)
    if alg not in ALGORITHMS:
        raise ValueError(f"--alg: '{alg}' is not one of {', '.join(ALGORITHMS)}")
    if alg == HMAC_SHA256:
        if public_key_pem is not None:
            public_key_der(alg, public_key_pem)  # raises: says why
        return scope_list, None
    if public_key_pem is None:
        raise ValueError(
            f"--public-key: an {alg} app needs the path of its PEM public key (the client "
            "keeps the private key)"
        )
    return scope_list, public_key_der(alg, public_key_pem)


def _scopes(values: Iterable[str]) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(values))
    if not scopes:
        raise ValueError("--scope: give at least one scope the app may use; repeat for more")
    for scope in scopes:
        problem = scope_problem(scope)
        if problem:
            raise ValueError(f"--scope: {problem}: repeat --scope for each one")
    return scopes


def _credential(key_id: str, alg: str, sealer: Sealer | None) -> tuple[bytes | None, str | None]:
    """(sealed secret, shown secret) of a new credential: a fresh sealed secret for hmac."""
    if alg != HMAC_SHA256:
        return None, None
    if sealer is None:
        raise TypeError("an hmac-sha256 app's secret is sealed: pass the master key's Sealer")
    key, text = new_secret()
    return sealer.seal(key, secret_purpose(key_id)), text


def new_app(
    name: str,
    scopes: Iterable[str],
    alg: str,
    public_key_pem: bytes | None,
    *,
    now: datetime,
    sealer: Sealer | None,
) -> tuple[AppRecord, str | None]:
    """A record to store and the secret to show once (None for a public-key app);
    ``ValueError("--option: problem")`` for a bad name, scope, algorithm or key (``check_app``).
    ``sealer`` seals an hmac-sha256 app's secret (it may be None for a public-key app)."""
    scope_list, public_key = check_app(name, scopes, alg, public_key_pem)
    key_id = new_key_id()
    sealed, secret = _credential(key_id, alg, sealer)
    return AppRecord(key_id, name, alg, scope_list, sealed, public_key, now), secret


def rotated_app(
    old: AppRecord, public_key_pem: bytes | None, *, now: datetime, sealer: Sealer | None
) -> tuple[AppRecord, str | None]:
    """The record that replaces ``old`` (a new key_id and credential; the same name, scopes
    and algorithm) and its secret to show once; a public-key app needs its new public key,
    which must differ from the old one. ``ValueError("--public-key: ...")``."""
    if old.alg == HMAC_SHA256:
        if public_key_pem is not None:
            raise ValueError(
                "--public-key: an hmac-sha256 app gets a new secret from restguard; drop "
                "--public-key"
            )
        public_key = None
    else:
        if public_key_pem is None:
            raise ValueError(
                f"--public-key: rotating an {old.alg} app needs the path of its new PEM public "
                "key (the client keeps the new private key)"
            )
        public_key = public_key_der(old.alg, public_key_pem)
        if public_key == old.public_key:
            raise ValueError(
                "--public-key: this is the app's current public key; rotation needs a new key pair"
            )
    key_id = new_key_id()
    sealed, secret = _credential(key_id, old.alg, sealer)
    record = AppRecord(key_id, old.name, old.alg, old.scopes, sealed, public_key, now)
    return record, secret


def verification_key(record: AppRecord, sealer: Sealer) -> VerificationKey:
    """What verifies the app's signatures: the HMAC key (keyed once) for hmac-sha256, else the
    public key, checked against the app's algorithm. ``SealError`` if the secret does not open with
    this master key; ``ValueError`` for a record that is not consistent (a damaged store)."""
    if record.alg == HMAC_SHA256:
        if record.sealed_secret is None:
            raise ValueError(f"app {record.key_id}: hmac-sha256 without a sealed secret")
        key = sealer.open(record.sealed_secret, secret_purpose(record.key_id))
        if len(key) != SECRET_BYTES:
            raise ValueError(f"app {record.key_id}: the secret is not {SECRET_BYTES} bytes")
        return HmacSha256Key(key)
    if record.alg not in PUBLIC_KEY_ALGORITHMS or record.public_key is None:
        raise ValueError(f"app {record.key_id}: {record.alg} without a public key")
    public = load_der_public_key(record.public_key)
    if record.alg == ED25519 and isinstance(public, Ed25519PublicKey):
        return public
    if (
        record.alg == ECDSA_P256_SHA256
        and isinstance(public, EllipticCurvePublicKey)
        and isinstance(public.curve, SECP256R1)
    ):
        return public
    raise ValueError(f"app {record.key_id}: the public key does not suit {record.alg}")


def public_key_pem(record: AppRecord) -> str | None:
    """The app's public key as PEM text (nothing secret), None for hmac-sha256."""
    if record.public_key is None:
        return None
    key = load_der_public_key(record.public_key)
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")
