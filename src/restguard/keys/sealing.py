"""Envelope sealing of recoverable secrets with the master key (AES-256-GCM, pyca).

A sealing key is derived from the master key with HKDF-SHA256, so the master key itself is never
used directly. Each sealed value is ``b"rg1" || nonce(12) || ciphertext+tag`` with a caller-given
``purpose`` as associated data: a value sealed for one purpose (say, one key id) cannot be moved
to another row and unsealed there.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASTER_KEY_ENV = "RESTGUARD_MASTER_KEY"
MASTER_KEY_BYTES = 32
_VERSION = b"rg1"
_NONCE = 12


class MasterKeyError(Exception):
    """The master key is missing, malformed or too widely readable; the message says the fix."""


class SealError(Exception):
    """A sealed value does not open with this master key and purpose."""


def generate_master_key(path: Path) -> None:
    """Write a fresh master key to ``path`` with mode 0600, refusing to overwrite one."""
    data = base64.urlsafe_b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).rstrip(b"=") + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _decode(text: str, source: str) -> bytes:
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != MASTER_KEY_BYTES:
        raise MasterKeyError(f"{source} is not a master key (base64url of 32 bytes)")
    return raw


def load_master_key(path: Path) -> bytes:
    """The master key from ``$RESTGUARD_MASTER_KEY`` or ``path`` (which must be mode 0600)."""
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        return _decode(env, MASTER_KEY_ENV)
    try:
        st = path.stat()
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise MasterKeyError(
            f"{path}: no master key; run 'restguard init' or set {MASTER_KEY_ENV}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MasterKeyError(f"{path}: cannot read the master key ({exc})") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(f"{path}: readable by others; run 'chmod 600 {path}'")
    return _decode(text, str(path))


class Sealer:
    """Seals and opens secrets under a key derived from the master key."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise MasterKeyError("the master key must be 32 bytes")
        sub = HKDF(hashes.SHA256(), 32, salt=None, info=b"restguard sealing v1").derive(master_key)
        self._aead = AESGCM(sub)

    def seal(self, plaintext: bytes, purpose: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, purpose.encode())

    def open(self, sealed: bytes, purpose: str) -> bytes:
        """The plaintext; ``SealError`` if tampered with, for another purpose or another key."""
        if not sealed.startswith(_VERSION) or len(sealed) < len(_VERSION) + _NONCE + 16:
            raise SealError("not a sealed value")
        nonce = sealed[len(_VERSION) : len(_VERSION) + _NONCE]
        try:
            return self._aead.decrypt(nonce, sealed[len(_VERSION) + _NONCE :], purpose.encode())
        except InvalidTag:
            raise SealError("the sealed value does not open with this master key") from None
