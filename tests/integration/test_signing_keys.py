"""Signing-key rotation and master-key rotation on SQLite and the real PostgreSQL: the store's
one-transaction rotate, re-sealing, crash windows, and the ``signing-key`` / ``master-key``
commands."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from restguard.cli.main import cli
from restguard.clock import SystemClock
from restguard.config import load
from restguard.keys.sealing import (
    MASTER_KEY_ENV,
    Sealer,
    finish_rotation,
    generate_master_key,
    load_master_key,
    next_key_path,
    open_sealer,
    prepare_rotation,
)
from restguard.keys.signing import MAX_TOKEN_LIFETIME, new_signing_key, open_keys, purpose
from restguard.store.errors import DuplicateRecord
from restguard.store.sql import SqlStore
from restguard.store.sql.reseal import reseal_all
from restguard.wiring import open_runtime

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)


# --- the store ------------------------------------------------------------------------------------


async def test_rotate_inserts_and_retires_the_others_in_one_go(store: SqlStore) -> None:
    sealer = Sealer(secrets.token_bytes(32))
    a = new_signing_key(sealer, T0)
    b = new_signing_key(sealer, T0 + timedelta(minutes=1), "ES256")
    await store.signing_keys.insert(a)
    at = T0 + timedelta(hours=1)
    await store.signing_keys.rotate(b, at)
    got = {r.kid: r for r in await store.signing_keys.list()}
    assert got[a.kid].retired_at == at and got[b.kid].retired_at is None
    assert got[b.kid] == b
    # a later rotation keeps the earlier retirement and retires b
    c = new_signing_key(sealer, T0 + timedelta(minutes=2), "RS256")
    await store.signing_keys.rotate(c, at + timedelta(minutes=2))
    got = {r.kid: r for r in await store.signing_keys.list()}
    assert got[a.kid].retired_at == at
    assert got[b.kid].retired_at == at + timedelta(minutes=2)
    assert [r.kid for r in await store.signing_keys.list()] == [c.kid, b.kid, a.kid]


async def test_rotate_with_a_clashing_kid_changes_nothing(store: SqlStore) -> None:
    sealer = Sealer(secrets.token_bytes(32))
    a = new_signing_key(sealer, T0)
    await store.signing_keys.insert(a)
    with pytest.raises(DuplicateRecord):
        await store.signing_keys.rotate(a, T0 + timedelta(hours=1))
    assert await store.signing_keys.list() == [a]


async def test_rotate_refuses_a_naive_time(store: SqlStore) -> None:
    sealer = Sealer(secrets.token_bytes(32))
    with pytest.raises(ValueError, match="naive"):
        await store.signing_keys.rotate(new_signing_key(sealer, T0), datetime(2030, 1, 1))
    assert await store.signing_keys.list() == []


# --- re-sealing and its crash windows -------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    generate_master_key(path)
    return path


async def seeded(store: SqlStore, key_file: Path) -> list[str]:
    sealer = Sealer(load_master_key(key_file))
    kids = []
    for i, alg in enumerate(("EdDSA", "ES256", "RS256")):
        rec = new_signing_key(sealer, T0 + timedelta(seconds=i), alg)
        await store.signing_keys.rotate(rec, T0 + timedelta(hours=1))
        kids.append(rec.kid)
    return kids


async def assert_opens(store: SqlStore, sealer: Sealer) -> None:
    records = await store.signing_keys.list()
    keys = open_keys(records, sealer, T0)
    assert len(keys.keys) == 3
    assert keys.verify(keys.sign({"sub": "x"})) == {"sub": "x"}


async def test_reseal_then_rename(store: SqlStore, key_file: Path) -> None:
    await seeded(store, key_file)
    before = {r.kid: r.sealed_private for r in await store.signing_keys.list()}
    current, nxt, _ = prepare_rotation(key_file)
    assert reseal_all(store.engine, Sealer(nxt, also=(current,)), Sealer(nxt)) == 3
    finish_rotation(key_file)
    after = {r.kid: r.sealed_private for r in await store.signing_keys.list()}
    assert all(after[k] != before[k] for k in before)
    await assert_opens(store, Sealer(load_master_key(key_file)))
    with pytest.raises(Exception, match="does not open"):
        await assert_opens(store, Sealer(current))


async def test_a_crash_mid_transaction_changes_nothing(store: SqlStore, key_file: Path) -> None:
    await seeded(store, key_file)
    before = await store.signing_keys.list()
    current, nxt, _ = prepare_rotation(key_file)

    class Crashing(Sealer):
        calls = 0

        def seal(self, plaintext: bytes, purpose: str) -> bytes:
            Crashing.calls += 1
            if Crashing.calls == 2:
                raise RuntimeError("killed")
            return super().seal(plaintext, purpose)

    with pytest.raises(RuntimeError, match="killed"):
        reseal_all(store.engine, Sealer(nxt, also=(current,)), Crashing(nxt))
    assert await store.signing_keys.list() == before  # rolled back
    await assert_opens(store, open_sealer(key_file))  # .next pending: both keys open
    # a new secret sealed meanwhile uses the next key; running again finishes with it
    assert prepare_rotation(key_file) == (current, nxt, True)
    assert reseal_all(store.engine, Sealer(nxt, also=(current,)), Sealer(nxt)) == 3
    finish_rotation(key_file)
    await assert_opens(store, Sealer(load_master_key(key_file)))


async def test_a_crash_before_the_rename_still_opens(
    store: SqlStore, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seeded(store, key_file)
    current, nxt, _ = prepare_rotation(key_file)
    reseal_all(store.engine, Sealer(nxt, also=(current,)), Sealer(nxt))
    with monkeypatch.context() as m:
        m.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("power cut")))
        with pytest.raises(OSError):
            finish_rotation(key_file)
    assert load_master_key(key_file) == current  # the old file is still there
    await assert_opens(store, open_sealer(key_file))
    # the value mid-rotation sealed with the next key survives the finish
    extra = new_signing_key(open_sealer(key_file), T0 + timedelta(seconds=9))
    await store.signing_keys.insert(extra)
    assert prepare_rotation(key_file)[2] is True
    assert reseal_all(store.engine, Sealer(nxt, also=(current,)), Sealer(nxt)) == 4
    finish_rotation(key_file)
    sealer = Sealer(load_master_key(key_file))
    assert sealer.open(
        next(r for r in await store.signing_keys.list() if r.kid == extra.kid).sealed_private,
        purpose(extra.kid),
    )


# --- the commands ---------------------------------------------------------------------------------


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path, runner: CliRunner, database_url: str) -> Iterator[str]:
    directory = tmp_path / "data"
    assert invoke(runner, "init", "--dir", str(directory)).exit_code == 0
    path = directory / "restguard.toml"
    text = path.read_text()
    path.write_text(text.replace('"sqlite:///restguard.db"', f'"{database_url}"'))
    yield str(path)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_signing_key_rotate_and_list(runner: CliRunner, config: str) -> None:
    assert as_json(invoke(runner, "signing-key", "list", "--config", config, "--json")) == []
    first = as_json(invoke(runner, "signing-key", "rotate", "--config", config, "--json"))
    assert set(first) == {"kid", "alg", "created_at", "previous"}
    assert first["alg"] == "EdDSA" and first["previous"] == []
    second = as_json(
        invoke(runner, "--config", config, "signing-key", "rotate", "--alg", "es256", "--json")
    )
    assert second["alg"] == "ES256"
    [prev] = second["previous"]
    assert prev["kid"] == first["kid"]
    retire = datetime.fromisoformat(prev["retired_at"].replace("Z", "+00:00"))
    assert timedelta(0) < retire - datetime.now(UTC) <= timedelta(seconds=MAX_TOKEN_LIFETIME)
    rows = as_json(invoke(runner, "signing-key", "list", "--config", config, "--json"))
    assert [(r["kid"], r["alg"], r["status"]) for r in rows] == [
        (second["kid"], "ES256", "signing"),
        (first["kid"], "EdDSA", "published"),
    ]
    assert set(rows[0]) == {"kid", "alg", "status", "created_at", "retired_at"}
    assert "sealed" not in json.dumps(rows) and '"d"' not in json.dumps(rows)
    human = invoke(runner, "signing-key", "list", "--config", config)
    assert "STATUS" in human.output and "signing" in human.output
    assert f"published until {prev['retired_at']}" in human.output


@pytest.mark.parametrize("alg", ["RS256", "ed25519", "EdDSA", "Es256"])
def test_signing_key_rotate_accepts_each_spelling(
    runner: CliRunner, tmp_path: Path, alg: str
) -> None:
    directory = tmp_path / "d"
    assert invoke(runner, "init", "--dir", str(directory)).exit_code == 0
    config = str(directory / "restguard.toml")
    result = invoke(runner, "signing-key", "rotate", "--alg", alg, "--config", config)
    assert result.exit_code == 0, result.output
    assert "signs from now on" in result.output


def test_signing_key_rotate_refuses_an_unknown_alg(runner: CliRunner, tmp_path: Path) -> None:
    directory = tmp_path / "d"
    invoke(runner, "init", "--dir", str(directory))
    result = invoke(
        runner, "signing-key", "rotate", "--alg", "HS256", "--config", str(directory / "x.toml")
    )
    assert result.exit_code == 2
    assert "EdDSA, ES256 or RS256" in result.output and "Traceback" not in result.output


def test_signing_key_rotate_refuses_the_wrong_master_key(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "d"
    invoke(runner, "init", "--dir", str(directory))
    config = str(directory / "restguard.toml")
    as_json(invoke(runner, "signing-key", "rotate", "--config", config, "--json"))
    wrong = "A" * 43
    monkeypatch.setenv(MASTER_KEY_ENV, wrong)
    result = invoke(runner, "signing-key", "rotate", "--config", config)
    assert result.exit_code == 1
    assert "does not open" in result.output and "Traceback" not in result.output
    monkeypatch.delenv(MASTER_KEY_ENV)
    assert len(as_json(invoke(runner, "signing-key", "list", "--config", config, "--json"))) == 1


def check_opens(config: str) -> str:
    """Open the runtime as serve does; sign and verify; the signing kid."""

    async def go() -> str:
        runtime = await open_runtime(load(Path(config)), clock=SystemClock())
        try:
            token = runtime.keys.sign({"sub": "x"})
            assert runtime.keys.verify(token) == {"sub": "x"}
            return runtime.keys.signer.kid
        finally:
            runtime.close()

    return asyncio.run(go())


def test_master_key_rotate(runner: CliRunner, config: str) -> None:
    kid = check_opens(config)  # serve creates the first key
    for alg in ("ES256", "RS256"):
        as_json(invoke(runner, "signing-key", "rotate", "--alg", alg, "--config", config, "--json"))
    settings = load(Path(config))
    old = load_master_key(settings.master_key_path)
    out = as_json(invoke(runner, "master-key", "rotate", "--config", config, "--json"))
    assert out == {"master_key": str(settings.master_key_path), "resealed": 3, "resumed": False}
    new = load_master_key(settings.master_key_path)
    assert new != old and not next_key_path(settings.master_key_path).exists()
    assert settings.master_key_path.stat().st_mode & 0o777 == 0o600
    assert old.hex() not in json.dumps(out)
    assert check_opens(config) != kid
    human = invoke(runner, "master-key", "rotate", "--config", config)
    assert "3 stored secret(s) re-sealed" in human.output


def test_master_key_rotate_interrupted_before_the_rename(
    runner: CliRunner, config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_opens(config)
    settings = load(Path(config))

    def crash(path: Path) -> None:
        raise OSError("killed between the commit and the rename")

    with monkeypatch.context() as m:
        m.setattr("restguard.cli.master_key.finish_rotation", crash)
        with pytest.raises(OSError, match="killed"):
            runner.invoke(cli, ["master-key", "rotate", "--config", config], catch_exceptions=False)
    assert next_key_path(settings.master_key_path).exists()
    check_opens(config)  # the data directory opens
    check = invoke(runner, "check", "--config", config)
    assert check.exit_code == 0, check.output
    out = as_json(invoke(runner, "master-key", "rotate", "--config", config, "--json"))
    assert out["resumed"] is True and out["resealed"] == 1
    assert not next_key_path(settings.master_key_path).exists()
    check_opens(config)


def test_master_key_rotate_refuses_the_environment_key(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "d"
    invoke(runner, "init", "--dir", str(directory))
    key = (directory / "master.key").read_text().strip()
    monkeypatch.setenv(MASTER_KEY_ENV, key)
    result = invoke(runner, "master-key", "rotate", "--config", str(directory / "restguard.toml"))
    assert result.exit_code == 1
    assert MASTER_KEY_ENV in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3
    assert not next_key_path(directory / "master.key").exists()
    assert key not in result.output


def test_help_texts(runner: CliRunner) -> None:
    top = invoke(runner, "--help").output
    assert "signing-key" in top and "master-key" in top
    rotate = invoke(runner, "signing-key", "rotate", "--help").output
    assert "EdDSA|ES256|RS256" in rotate and "--json" in rotate and "--config" in rotate
    assert "--json" in invoke(runner, "master-key", "rotate", "--help").output


def test_master_key_rotate_refuses_a_key_that_does_not_open_the_data(
    runner: CliRunner, tmp_path: Path
) -> None:
    directory = tmp_path / "d"
    invoke(runner, "init", "--dir", str(directory))
    config = str(directory / "restguard.toml")
    check_opens(config)
    key = directory / "master.key"
    key.unlink()
    generate_master_key(key)  # not the key the data directory was made with
    before = key.read_bytes()
    result = invoke(runner, "master-key", "rotate", "--config", config)
    assert result.exit_code == 1
    assert "does not open" in result.output and "nothing was changed" in result.output
    assert key.read_bytes() == before and not next_key_path(key).exists()
