"""OAuth 1.0a consumers (RFC 5849 §1.1: the "client"): the records ``restguard oauth1 consumer
create`` stores and what the provider and the verifier need of them. Verifying signatures and
running the flow are other modules' work.

* ``consumer_key``: ``ck_`` and 20 characters of ``[0-9a-z]`` (103 bits): public -- sent as
  ``oauth_consumer_key`` with every request and forwarded as ``X-Restguard-Client-Id`` -- yet
  unguessable, so keys cannot be enumerated.
* ``consumer_secret``: 32 random bytes, shown once as base64url without padding (43 characters,
  all RFC 3986 unreserved, so the §3.6 percent-encoding of the §3.4.2 HMAC key leaves it as it
  is). The server needs the secret itself to verify HMAC-SHA1/HMAC-SHA256 and PLAINTEXT (§3.4.2,
  §3.4.4: "the client secret" is part of the key), so it is stored sealed by the master key
  (purpose ``oauth1-consumer-secret:<consumer_key>``: a sealed value cannot be moved to another
  consumer), never hashed. ``consumer_secret`` gives the text back: the text is the key material.
* ``signature_methods``: an explicit allowed set per consumer, stored, checked by the verifier
  (a request's ``oauth_signature_method`` outside it is refused). By default HMAC-SHA1,
  HMAC-SHA256 and PLAINTEXT, plus RSA-SHA1 when an RSA public key is registered (§3.4.3: "the
  client has established its RSA public key with the server"). PLAINTEXT "MUST NOT be used over
  an insecure channel" (§3.4.4 and §4.1): the verifier accepts it over HTTPS only.
* ``rsa_public_key``: from a PEM file, an RSA key of 2048 to 8192 bits with a public exponent of
  at least 65537, stored as DER SubjectPublicKeyInfo. A private key, another key type, a
  certificate or a short key is refused (the message never quotes the file).
* ``callback``: the registered callback URI, optional. RFC 5849 §2.1 lets the client send any
  absolute URI as ``oauth_callback``, or ``oob`` "if a callback URI has been established via
  other means"; restguard binds it like an OAuth 2.0 redirect URI (RFC 9700 §4.1.1, exact
  match): with a registered callback the request's ``oauth_callback`` must be exactly it or
  ``oob``; without one, only ``oob`` (the verifier is shown to the user, who types it into the
  client). A registered callback is absolute, without a fragment, over https, or http to a
  loopback IP literal, or a private-use scheme for native apps (RFC 8252 §7.1, §7.3); it may
  have a query (§2.2: the server appends ``oauth_token`` and ``oauth_verifier`` to it).

``new_consumer`` raises ``ValueError("--option: problem")`` for what cannot be honoured, like
``apps.new_app``.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Final
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)

from restguard.credentials.apikey import check_name
from restguard.credentials.apps import MAX_PEM_BYTES
from restguard.keys.sealing import Sealer
from restguard.store.ports import OAuth1ConsumerRecord
from restguard.wire.callback_uri import MAX_CHARS, callback_uri_problem
from restguard.wire.scope import scope_problem

HMAC_SHA1: Final = "HMAC-SHA1"
HMAC_SHA256: Final = "HMAC-SHA256"
RSA_SHA1: Final = "RSA-SHA1"
PLAINTEXT: Final = "PLAINTEXT"
#: RFC 5849 §3.4 method names (HMAC-SHA256 is the common extension), in the order offered.
SIGNATURE_METHODS: Final = (HMAC_SHA1, HMAC_SHA256, RSA_SHA1, PLAINTEXT)
#: What a consumer without an RSA key may use unless ``--signature-method`` narrows it.
DEFAULT_METHODS: Final = (HMAC_SHA1, HMAC_SHA256, PLAINTEXT)
#: ``oauth_callback``'s value for "no redirect" (RFC 5849 §2.1, case sensitive).
OOB: Final = "oob"

ID_PREFIX: Final = "ck_"
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_LEN = 20
_CONSUMER_KEY = re.compile(r"ck_[0-9a-z]{20}")
SECRET_BYTES: Final = 32
_SECRET_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")

MIN_RSA_BITS: Final = 2048
#: Larger keys only make each verification slower (the cost grows with the square of the size).
MAX_RSA_BITS: Final = 8192
MIN_RSA_EXPONENT: Final = 65537
MAX_CALLBACK_CHARS: Final = MAX_CHARS
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_PUBLIC_LABELS = ("PUBLIC KEY", "RSA PUBLIC KEY")
_KEEP_PRIVATE = (
    "never give restguard (or anyone) a private key: keep it with the consumer that signs, and "
    "pass the public half, e.g. 'openssl pkey -in private.pem -pubout -out public.pem'"
)
# Printable ASCII without space, '"', '<', '>', '\\', '^', '`', '{', '|', '}' (RFC 3986).


def new_consumer_key() -> str:
    return ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LEN))


def is_consumer_key(text: str) -> bool:
    """Whether ``text`` has the form of a consumer_key (safe to log: keys are public)."""
    return _CONSUMER_KEY.fullmatch(text) is not None


def secret_purpose(consumer_key: str) -> str:
    """The sealing purpose (associated data) of a consumer's secret."""
    return f"oauth1-consumer-secret:{consumer_key}"


def encode_secret(raw: bytes) -> str:
    """A secret as shown (and signed with): base64url of its bytes, without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_secret(text: str) -> bytes:
    """The 32 bytes a shown secret stands for; ValueError unless ``text`` is their base64url."""
    problem = "an OAuth 1.0a secret is 43 characters of base64url (32 bytes)"
    if not _SECRET_TEXT.fullmatch(text):
        raise ValueError(problem)
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):
        raise ValueError(problem) from None
    if len(raw) != SECRET_BYTES or encode_secret(raw) != text:  # (the last char's spare bits)
        raise ValueError(problem)
    return raw


def new_secret() -> tuple[bytes, str]:
    """Fresh secret bytes and their text, shown once."""
    raw = secrets.token_bytes(SECRET_BYTES)
    return raw, encode_secret(raw)


def open_secret(sealed: bytes, purpose: str, sealer: Sealer) -> str:
    """The text of a sealed secret; ``SealError`` if it does not open with this master key
    (or under this purpose), ``ValueError`` if what opens is not a secret of ours."""
    raw = sealer.open(sealed, purpose)
    if len(raw) != SECRET_BYTES:
        raise ValueError(f"{purpose}: the secret is not {SECRET_BYTES} bytes")
    return encode_secret(raw)


_OWN_PARAMETER: Final = re.compile(r"(?:^|&)oauth_(?:token|verifier)(?:=|&|$)")


def is_active(record: OAuth1ConsumerRecord, now: datetime) -> bool:
    """Not revoked at ``now``."""
    return record.revoked_at is None or record.revoked_at > now


# --- callbacks -----------------------------------------------------------------------------------


def callback_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a registered callback URI, or None (``wire/callback_uri.py``;
    ``oob`` is what a consumer without one uses)."""
    if uri == OOB:
        return "'oob' is what a consumer without a registered callback uses: omit the option"
    problem = callback_uri_problem(uri, what="a callback", rfc="RFC 5849 §2.1")
    if problem is None and _OWN_PARAMETER.search(urlsplit(uri).query):
        return (
            f"{uri!r}: its query must not carry oauth_token or oauth_verifier (restguard "
            "appends them, RFC 5849 §2.2)"
        )
    return problem


def oauth_callback_problem(record: OAuth1ConsumerRecord, oauth_callback: str) -> str | None:
    """Why a temporary-credential request's ``oauth_callback`` (RFC 5849 §2.1) is refused for
    this consumer, or None: it must be ``oob`` or exactly the registered callback."""
    if oauth_callback == OOB or (record.callback is not None and oauth_callback == record.callback):
        return None
    if record.callback is None:
        return "the consumer has no registered callback: oauth_callback must be 'oob'"
    return "oauth_callback must be the consumer's registered callback URI or 'oob'"


# --- RSA public keys -----------------------------------------------------------------------------


def rsa_public_key_der(pem: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of the one RSA public key in ``pem`` (``PUBLIC KEY`` or
    PKCS #1 ``RSA PUBLIC KEY``), 2048 to 8192 bits, exponent at least 65537;
    ``ValueError("--rsa-public-key: ...")`` otherwise (the message never quotes the file)."""
    opt = "--rsa-public-key"
    if len(pem) > MAX_PEM_BYTES:
        raise ValueError(
            f"{opt}: the file is larger than {MAX_PEM_BYTES // 1024} KiB; "
            "it is not a PEM public key"
        )
    labels = [m.group(1).decode("ascii") for m in _PEM_BEGIN.finditer(pem)]
    if any("PRIVATE" in label for label in labels) or b"PRIVATE KEY" in pem:
        raise ValueError(f"{opt}: the file holds a private key; {_KEEP_PRIVATE}")
    if not labels:
        raise ValueError(
            f"{opt}: the file is not PEM; expected '-----BEGIN PUBLIC KEY-----' (e.g. from "
            "'openssl pkey -in private.pem -pubout')"
        )
    if len(labels) > 1:
        raise ValueError(
            f"{opt}: the file holds several PEM blocks; give a file with exactly one public key"
        )
    if labels[0] not in _PUBLIC_LABELS:
        raise ValueError(
            f"{opt}: the file holds a '{labels[0]}', not a 'PUBLIC KEY'; for a certificate, "
            "extract its key with 'openssl x509 -in cert.pem -pubkey -noout'"
        )
    try:
        key = load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(
            f"{opt}: the file does not hold a readable public key (a damaged PEM block?)"
        ) from None
    if not isinstance(key, RSAPublicKey):
        kind = type(key).__name__.removeprefix("_")
        raise ValueError(f"{opt}: a {kind}, but RSA-SHA1 (RFC 5849 §3.4.3) needs an RSA key")
    _check_rsa(key, opt)
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _check_rsa(key: RSAPublicKey, opt: str) -> None:
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(
            f"{opt}: an RSA key of {key.key_size} bits is too short; use at least "
            f"{MIN_RSA_BITS} bits ('openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:3072')"
        )
    if key.key_size > MAX_RSA_BITS:
        raise ValueError(f"{opt}: an RSA key of {key.key_size} bits; at most {MAX_RSA_BITS}")
    if key.public_numbers().e < MIN_RSA_EXPONENT:
        raise ValueError(
            f"{opt}: the RSA key's public exponent is {key.public_numbers().e}; use 65537"
        )


def rsa_public_key(record: OAuth1ConsumerRecord) -> RSAPublicKey | None:
    """The consumer's RSA public key (what verifies RSA-SHA1, RFC 5849 §3.4.3), None if it
    registered none; ``ValueError`` for a stored key that is not a fitting RSA key."""
    if record.rsa_public_key is None:
        return None
    key = load_der_public_key(record.rsa_public_key)
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"consumer {record.consumer_key}: the stored public key is not RSA")
    _check_rsa(key, f"consumer {record.consumer_key}")
    return key


def rsa_public_key_pem(record: OAuth1ConsumerRecord) -> str | None:
    """The consumer's RSA public key as PEM text (nothing secret), None without one."""
    key = rsa_public_key(record)
    if key is None:
        return None
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")


# --- consumers -----------------------------------------------------------------------------------


def signature_methods(chosen: Iterable[str], *, has_rsa_key: bool) -> tuple[str, ...]:
    """The allowed set, in ``SIGNATURE_METHODS`` order: ``chosen`` (case-insensitive, repeats
    once) or, when empty, the default (``DEFAULT_METHODS``, plus RSA-SHA1 with an RSA key).
    ``ValueError("--signature-method: ...")``."""
    wanted = {m.upper() for m in chosen}
    if not wanted:
        wanted = set(DEFAULT_METHODS) | ({RSA_SHA1} if has_rsa_key else set())
    unknown = sorted(wanted - set(SIGNATURE_METHODS))
    if unknown:
        raise ValueError(
            f"--signature-method: '{unknown[0]}' is not one of {', '.join(SIGNATURE_METHODS)}"
        )
    if RSA_SHA1 in wanted and not has_rsa_key:
        raise ValueError(
            "--signature-method: RSA-SHA1 needs the consumer's RSA public key: add "
            "--rsa-public-key PEM_PATH"
        )
    if has_rsa_key and RSA_SHA1 not in wanted:
        raise ValueError(
            "--rsa-public-key: the key is only used by RSA-SHA1: add --signature-method RSA-SHA1 "
            "or drop --rsa-public-key"
        )
    return tuple(m for m in SIGNATURE_METHODS if m in wanted)


def check_consumer(
    name: str,
    scopes: Iterable[str],
    callback: str | None,
    rsa_public_key_pem: bytes | None,
    methods: Iterable[str] = (),
) -> tuple[tuple[str, ...], tuple[str, ...], bytes | None]:
    """The scopes (repeats once, first order), the allowed signature methods and the DER RSA
    public key of a consumer ``new_consumer`` would make; ``ValueError("--option: problem")``.
    Needs no master key: the CLI checks its options with it before opening anything."""
    try:
        check_name(name)
    except ValueError as exc:
        raise ValueError(f"--name: {exc}") from None
    scope_list = tuple(dict.fromkeys(scopes))
    if not scope_list:
        raise ValueError("--scope: give at least one scope the consumer may be granted")
    for scope in scope_list:
        problem = scope_problem(scope)
        if problem:
            raise ValueError(f"--scope: {problem}: repeat --scope for each one")
    if callback is not None:
        problem = callback_problem(callback)
        if problem:
            raise ValueError(f"--callback: {problem}")
    der = None if rsa_public_key_pem is None else rsa_public_key_der(rsa_public_key_pem)
    return scope_list, signature_methods(methods, has_rsa_key=der is not None), der


def new_consumer(
    name: str,
    scopes: Iterable[str],
    *,
    callback: str | None = None,
    rsa_public_key_pem: bytes | None = None,
    methods: Iterable[str] = (),
    now: datetime,
    sealer: Sealer,
) -> tuple[OAuth1ConsumerRecord, str]:
    """A record to store and the consumer secret to show once (sealed into the record by
    ``sealer``); ``ValueError("--option: problem")`` (``check_consumer``)."""
    scope_list, allowed, der = check_consumer(name, scopes, callback, rsa_public_key_pem, methods)
    consumer_key = new_consumer_key()
    raw, text = new_secret()
    record = OAuth1ConsumerRecord(
        consumer_key=consumer_key,
        name=name,
        sealed_secret=sealer.seal(raw, secret_purpose(consumer_key)),
        scopes=scope_list,
        callback=callback,
        signature_methods=allowed,
        rsa_public_key=der,
        created_at=now,
    )
    return record, text


def consumer_secret(record: OAuth1ConsumerRecord, sealer: Sealer) -> str:
    """The consumer secret's text (the "client shared-secret" of RFC 5849 §3.4.2's HMAC key);
    ``SealError`` if it does not open with this master key."""
    return open_secret(record.sealed_secret, secret_purpose(record.consumer_key), sealer)
