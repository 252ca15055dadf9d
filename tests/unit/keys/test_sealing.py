"""keys/sealing.py: AES-GCM envelope under the master key; master key loading."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest

from restguard.keys.sealing import (
    MASTER_KEY_ENV,
    MasterKeyError,
    Sealer,
    SealError,
    finish_rotation,
    generate_master_key,
    load_master_key,
    next_key_path,
    open_sealer,
    prepare_rotation,
)


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(secrets.token_bytes(32))


@pytest.mark.parametrize("plaintext", [b"", b"x", b"\x00" * 1000, "é".encode()])
def test_round_trip(sealer: Sealer, plaintext: bytes) -> None:
    sealed = sealer.seal(plaintext, "app:1")
    assert sealed.startswith(b"rg1")
    assert len(plaintext) < 8 or plaintext not in sealed
    assert sealer.open(sealed, "app:1") == plaintext


def test_each_seal_is_fresh(sealer: Sealer) -> None:
    assert sealer.seal(b"same", "p") != sealer.seal(b"same", "p")


def test_wrong_purpose(sealer: Sealer) -> None:
    sealed = sealer.seal(b"secret", "signing-key:a")
    with pytest.raises(SealError):
        sealer.open(sealed, "signing-key:b")


def test_every_tampered_byte_is_detected(sealer: Sealer) -> None:
    sealed = sealer.seal(b"a secret worth protecting", "p")
    for i in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[i] ^= 0x01
        with pytest.raises(SealError):
            sealer.open(bytes(tampered), "p")


@pytest.mark.parametrize("cut", [0, 3, 15, 30])
def test_truncated_values_are_refused(sealer: Sealer, cut: int) -> None:
    sealed = sealer.seal(b"", "p")  # 3 + 12 + 16 bytes
    with pytest.raises(SealError):
        sealer.open(sealed[:cut], "p")


def test_other_master_key(sealer: Sealer) -> None:
    sealed = sealer.seal(b"secret", "p")
    with pytest.raises(SealError):
        Sealer(secrets.token_bytes(32)).open(sealed, "p")


def test_same_master_key_opens(tmp_path: Path) -> None:
    raw = secrets.token_bytes(32)
    assert Sealer(raw).open(Sealer(raw).seal(b"v", "p"), "p") == b"v"


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_sealer_refuses_a_bad_length(length: int) -> None:
    with pytest.raises(MasterKeyError):
        Sealer(b"k" * length)


# --- the master key file --------------------------------------------------------------------------


def test_generate_writes_mode_0600_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    generate_master_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    key = load_master_key(path)
    assert len(key) == 32
    assert path.read_text().strip() == b64(key)
    assert load_master_key(path) == key


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    generate_master_key(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        generate_master_key(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    generate_master_key(path)
    os.chmod(path, mode)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_key(path)


def test_mode_0400_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    generate_master_key(path)
    os.chmod(path, 0o400)
    assert len(load_master_key(path)) == 32


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="restguard init"):
        load_master_key(tmp_path / "none.key")


@pytest.mark.parametrize(
    "content",
    [b"", b"short\n", b64(secrets.token_bytes(16)).encode(), b64(secrets.token_bytes(33)).encode()],
)
def test_bad_file_content(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(MasterKeyError, match="base64url of 32 bytes"):
        load_master_key(path)


def test_env_var_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = secrets.token_bytes(32)
    monkeypatch.setenv(MASTER_KEY_ENV, b64(raw))
    assert load_master_key(tmp_path / "does-not-exist.key") == raw
    path = tmp_path / "master.key"
    generate_master_key(path)
    os.chmod(path, 0o644)  # not even read
    assert load_master_key(path) == raw


def test_env_var_with_padding_and_whitespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = secrets.token_bytes(32)
    monkeypatch.setenv(MASTER_KEY_ENV, " " + base64.urlsafe_b64encode(raw).decode() + "\n")
    assert load_master_key(tmp_path / "x") == raw


@pytest.mark.parametrize("value", ["abc", b64(secrets.token_bytes(31)), "!" * 43])
def test_env_var_bad_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, value)
    with pytest.raises(MasterKeyError, match=MASTER_KEY_ENV):
        load_master_key(tmp_path / "x")


# --- master-key rotation: the .next file ----------------------------------------------------------


def test_sealer_opens_with_any_of_its_keys_and_seals_with_the_first() -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    by_old = Sealer(old).seal(b"a", "p")
    both = Sealer(new, also=(old,))
    assert both.open(by_old, "p") == b"a"
    assert Sealer(new).open(both.seal(b"b", "p"), "p") == b"b"
    with pytest.raises(SealError):
        Sealer(old).open(both.seal(b"b", "p"), "p")


def test_prepare_writes_next_durably_and_finish_renames(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    generate_master_key(path)
    current, nxt, resumed = prepare_rotation(path)
    assert not resumed and current == load_master_key(path) and nxt != current
    pending = next_key_path(path)
    assert pending.name == "master.key.next"
    assert pending.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob("*.tmp"))
    sealer = open_sealer(path)  # pending: seals with next, opens with both
    assert Sealer(nxt).open(sealer.seal(b"x", "p"), "p") == b"x"
    assert sealer.open(Sealer(current).seal(b"y", "p"), "p") == b"y"
    # an interrupted rotation resumes with the same next key
    assert prepare_rotation(path) == (current, nxt, True)
    finish_rotation(path)
    assert load_master_key(path) == nxt and not pending.exists()
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_crash_while_writing_next_leaves_the_old_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "master.key"
    generate_master_key(path)
    key = load_master_key(path)

    def crash(*args: object) -> None:
        raise OSError("power cut")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", crash)
        with pytest.raises(OSError):
            prepare_rotation(path)
    assert not next_key_path(path).exists()
    assert open_sealer(path).open(Sealer(key).seal(b"v", "p"), "p") == b"v"
    _, nxt, resumed = prepare_rotation(path)  # the leftover temporary file is replaced
    assert not resumed and len(nxt) == 32


def test_a_damaged_next_key_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    generate_master_key(path)
    prepare_rotation(path)
    next_key_path(path).write_text("garbage\n")
    with pytest.raises(MasterKeyError, match="pending key"):
        open_sealer(path)
    os.chmod(next_key_path(path), 0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        open_sealer(path)


def test_rotation_is_refused_with_the_key_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "master.key"
    monkeypatch.setenv(MASTER_KEY_ENV, b64(secrets.token_bytes(32)))
    with pytest.raises(MasterKeyError, match="cannot rewrite"):
        prepare_rotation(path)
    assert not next_key_path(path).exists()
