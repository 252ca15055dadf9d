"""Envelope sealing of recoverable secrets with the master key (AES-256-GCM, pyca).

A sealing key is derived from the master key with HKDF-SHA256, so the master key itself is never
used directly. Each sealed value is ``b"rg1" || nonce(12) || ciphertext+tag`` with a caller-given
``purpose`` as associated data: a value sealed for one purpose (say, one key id) cannot be moved
to another row and unsealed there.

Master-key rotation (``restguard master-key rotate``) is crash-safe in three steps: the new key
is written durably to ``<master key>.next`` (``prepare_rotation``), every sealed value is
re-sealed under it in one database transaction, then ``.next`` is renamed over the master key
(``finish_rotation``). While a ``.next`` exists, ``open_sealer`` opens values with either key and
seals with the next one, so the data directory opens after a crash at any step, and running the
command again finishes the rotation with the same next key.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from collections.abc import Sequence
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
    return _read_key_file(path)


def _read_key_file(path: Path) -> bytes:
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


def _aead(master_key: bytes) -> AESGCM:
    if len(master_key) != MASTER_KEY_BYTES:
        raise MasterKeyError("the master key must be 32 bytes")
    sub = HKDF(hashes.SHA256(), 32, salt=None, info=b"restguard sealing v1").derive(master_key)
    return AESGCM(sub)


class Sealer:
    """Seals secrets under a key derived from the master key; opens them with it or, during a
    master-key rotation, with one of the ``also`` keys."""

    def __init__(self, master_key: bytes, *, also: Sequence[bytes] = ()) -> None:
        self._aead = _aead(master_key)
        self._openers = (self._aead, *(_aead(k) for k in also))

    def seal(self, plaintext: bytes, purpose: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, purpose.encode())

    def open(self, sealed: bytes, purpose: str) -> bytes:
        """The plaintext; ``SealError`` if tampered with, for another purpose or another key."""
        if not sealed.startswith(_VERSION) or len(sealed) < len(_VERSION) + _NONCE + 16:
            raise SealError("not a sealed value")
        nonce = sealed[len(_VERSION) : len(_VERSION) + _NONCE]
        for aead in self._openers:
            try:
                return aead.decrypt(nonce, sealed[len(_VERSION) + _NONCE :], purpose.encode())
            except InvalidTag:
                continue
        raise SealError("the sealed value does not open with this master key")


# --- master-key rotation --------------------------------------------------------------------------


def next_key_path(path: Path) -> Path:
    """Where a rotation keeps the next master key until it replaces ``path``."""
    return path.with_name(path.name + ".next")


def _next_key(path: Path) -> bytes | None:
    """The pending next master key, if a rotation left one."""
    nxt = next_key_path(path)
    if not nxt.exists():
        return None
    try:
        return _read_key_file(nxt)
    except MasterKeyError as exc:
        raise MasterKeyError(
            f"{exc}; it is a master-key rotation's pending key: restore it, or remove it if "
            "'restguard master-key rotate' never reported re-sealing"
        ) from None


def open_sealer(path: Path) -> Sealer:
    """The data directory's ``Sealer``: from ``$RESTGUARD_MASTER_KEY`` or ``path``; while a
    rotation is pending (``<path>.next`` exists) it seals with the next key and opens with
    both."""
    current = load_master_key(path)
    if os.environ.get(MASTER_KEY_ENV):
        return Sealer(current)
    pending = _next_key(path)
    return Sealer(current) if pending is None else Sealer(pending, also=(current,))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_rotation(path: Path) -> tuple[bytes, bytes, bool]:
    """``(current, next, resumed)``: the master key in ``path`` and the key to rotate to. A
    pending ``.next`` is reused (values may be sealed with it already: ``resumed``); else a
    fresh key is written to ``.next`` durably (temporary file, fsync, rename, fsync of the
    directory) before anything is sealed with it. Refused with ``$RESTGUARD_MASTER_KEY``."""
    if os.environ.get(MASTER_KEY_ENV):
        raise MasterKeyError(
            f"the master key comes from {MASTER_KEY_ENV}, which restguard cannot rewrite; to "
            f"rotate, write it to a mode-0600 file named by [keys] master_key, unset "
            f"{MASTER_KEY_ENV}, run 'restguard master-key rotate', then set {MASTER_KEY_ENV} "
            "to the file's new content (or keep using the file)"
        )
    current = _read_key_file(path)
    pending = _next_key(path)
    if pending is not None:
        return current, pending, True
    fresh = secrets.token_bytes(MASTER_KEY_BYTES)
    nxt = next_key_path(path)
    tmp = nxt.with_name(nxt.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.urlsafe_b64encode(fresh).rstrip(b"=") + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, nxt)
    _fsync_dir(nxt.parent)
    return current, fresh, False


def finish_rotation(path: Path) -> None:
    """Make the next key the master key (an atomic rename, then fsync of the directory). Only
    once every sealed value is sealed with it."""
    os.replace(next_key_path(path), path)
    _fsync_dir(path.parent)
