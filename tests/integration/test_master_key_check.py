"""A data directory is bound to its master key (``keys/master_check.py``): a key that does not
belong to it never seals anything into it -- on a fresh directory, on one made before the check
existed, when several instances start at once, and across a master-key rotation."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import delete, select

from restguard.cli.main import cli
from restguard.clock import SystemClock
from restguard.config import load
from restguard.keys.master_check import CHECK_PURPOSE, WrongMasterKey, ensure_master_key
from restguard.keys.sealing import (
    MASTER_KEY_ENV,
    MasterKeyError,
    Sealer,
    SealError,
    generate_master_key,
    load_master_key,
    next_key_path,
)
from restguard.store.ports import Store
from restguard.store.sql import make_engine, migrate, open_store
from restguard.store.sql.tables import apps, master_key_check, signing_keys
from restguard.wiring import open_runtime

WRONG = "A" * 43  # a well-formed master key that belongs to no data directory here


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(cli, list(args), catch_exceptions=False)


def init(runner: CliRunner, directory: Path) -> str:
    result = invoke(runner, "init", "--dir", str(directory))
    assert result.exit_code == 0, result.output
    return str(directory / "restguard.toml")


def url_of(config: str) -> str:
    return load(Path(config)).database_url


def snapshot(url: str) -> dict[str, list[Any]]:
    """Every sealed row: what a refused key must leave exactly as it was."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "signing_keys": sorted(map(tuple, conn.execute(select(signing_keys)).all())),
                "apps": sorted(map(tuple, conn.execute(select(apps)).all())),
                "check": [bytes(v) for v in conn.scalars(select(master_key_check.c.sealed))],
            }
    finally:
        engine.dispose()


def check_row(url: str) -> bytes | None:
    rows = snapshot(url)["check"]
    assert len(rows) <= 1
    return rows[0] if rows else None


def forget_check(url: str) -> None:
    """Make the data directory look like one made before the master-key check existed."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(delete(master_key_check))
    finally:
        engine.dispose()


def opens(config: str) -> str:
    """Open the runtime as serve does; sign and verify; the signing kid."""

    async def go() -> str:
        runtime = await open_runtime(load(Path(config)), clock=SystemClock())
        try:
            assert runtime.keys.verify(runtime.keys.sign({"sub": "x"})) == {"sub": "x"}
            return runtime.keys.signer.kid
        finally:
            runtime.close()

    return asyncio.run(go())


def refused_by_open_runtime(config: str) -> str:
    with pytest.raises(MasterKeyError) as caught:
        opens(config)
    return str(caught.value)


def sealer_of(config: str) -> Sealer:
    return Sealer(load_master_key(load(Path(config)).master_key_path))


# --- a fresh data directory ----------------------------------------------------------------------


def test_init_binds_the_data_directory_to_its_master_key(runner: CliRunner, tmp_path: Path) -> None:
    config = init(runner, tmp_path / "d")
    sealed = check_row(url_of(config))
    assert sealed is not None
    assert sealer_of(config).open(sealed, CHECK_PURPOSE)
    with pytest.raises(SealError):
        Sealer(secrets.token_bytes(32)).open(sealed, CHECK_PURPOSE)
    assert snapshot(url_of(config))["signing_keys"] == []


def test_init_binds_to_the_environment_key_when_it_is_set(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key every command will use: $RESTGUARD_MASTER_KEY wins over the file."""
    env = tmp_path / "env.key"
    generate_master_key(env)
    monkeypatch.setenv(MASTER_KEY_ENV, env.read_text().strip())
    result = invoke(runner, "init", "--dir", str(tmp_path / "d"))
    assert result.exit_code == 0 and MASTER_KEY_ENV in result.output
    config = str(tmp_path / "d" / "restguard.toml")
    opens(config)
    monkeypatch.delenv(MASTER_KEY_ENV)
    assert "does not open" in refused_by_open_runtime(config)


def test_init_refuses_a_malformed_environment_key_before_writing_anything(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, "not a key")
    result = runner.invoke(cli, ["init", "--dir", str(tmp_path / "d")])
    assert result.exit_code == 1 and MASTER_KEY_ENV in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "d" / "restguard.toml").exists()


def _signing_key_rotate(runner: CliRunner, config: str) -> str:
    result = runner.invoke(cli, ["signing-key", "rotate", "--config", config])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3
    return result.output


def _master_key_rotate(runner: CliRunner, config: str) -> str:
    result = runner.invoke(cli, ["master-key", "rotate", "--config", config])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def _serve(runner: CliRunner, config: str) -> str:
    return refused_by_open_runtime(config)


def _app_create(runner: CliRunner, config: str) -> str:
    """An hmac-sha256 app's secret is sealed: a wrong key must not seal it."""
    args = ["app", "create", "--name", "n", "--scope", "a", "--config", config]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3
    return result.output


ACTIONS: dict[str, Callable[[CliRunner, str], str]] = {
    "signing-key rotate": _signing_key_rotate,
    "serve": _serve,
    "master-key rotate": _master_key_rotate,
    "app create": _app_create,
}


@pytest.mark.parametrize("how", ["file", "env"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_wrong_master_key_seals_nothing_into_a_fresh_data_directory(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str, how: str
) -> None:
    config = init(runner, tmp_path / "d")
    url = url_of(config)
    key = tmp_path / "d" / "master.key"
    right = key.read_bytes()
    before = snapshot(url)
    if how == "env":
        monkeypatch.setenv(MASTER_KEY_ENV, WRONG)
    else:
        key.unlink()
        generate_master_key(key)
    wrong_file = key.read_bytes()
    message = ACTIONS[action](runner, config)
    assert "does not open" in message
    assert snapshot(url) == before  # nothing sealed, nothing re-sealed
    assert key.read_bytes() == wrong_file and not next_key_path(key).exists()
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    key.write_bytes(right)
    opens(config)  # the right key still opens the data directory


def test_the_attackers_sequence_leaves_the_data_directory_openable(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """init, a wrong key's rotate (refused), a wrong key's serve (refused), then the right key."""
    config = init(runner, tmp_path / "d")
    monkeypatch.setenv(MASTER_KEY_ENV, WRONG)
    _signing_key_rotate(runner, config)
    refused_by_open_runtime(config)
    monkeypatch.delenv(MASTER_KEY_ENV)
    kid = opens(config)
    out = invoke(runner, "signing-key", "rotate", "--config", config)
    assert out.exit_code == 0, out.output
    assert opens(config) != kid


# --- a data directory made before the check existed --------------------------------------------


def test_a_legacy_data_directory_is_bound_on_first_use_with_the_right_key(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = init(runner, tmp_path / "d")
    url = url_of(config)
    kid = opens(config)  # serve made the first signing key
    forget_check(url)
    before = snapshot(url)
    assert before["check"] == [] and len(before["signing_keys"]) == 1

    monkeypatch.setenv(MASTER_KEY_ENV, WRONG)
    assert f"signing key {kid}" in refused_by_open_runtime(config)
    assert "does not open" in _signing_key_rotate(runner, config)
    checked = runner.invoke(cli, ["check", "--config", config])
    assert checked.exit_code == 1 and "keys.master_key: this master key does not open" in (
        checked.output
    )
    assert snapshot(url) == before  # nothing written by a wrong key
    monkeypatch.delenv(MASTER_KEY_ENV)

    checked = runner.invoke(cli, ["check", "--config", config])
    assert checked.exit_code == 0, checked.output
    assert snapshot(url) == before  # check writes nothing

    assert opens(config) == kid  # first use with the right key binds it
    sealed = check_row(url)
    assert sealed is not None and sealer_of(config).open(sealed, CHECK_PURPOSE)
    monkeypatch.setenv(MASTER_KEY_ENV, WRONG)
    assert "master-key check" in refused_by_open_runtime(config)


def test_a_legacy_data_directory_checks_app_secrets_too(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a check value, an hmac app's sealed secret is what a first binding checks a
    master key against (``reseal.SEALED_COLUMNS``): a wrong key is refused, naming it."""
    config = init(runner, tmp_path / "d")
    url = url_of(config)
    made = invoke(
        runner, "app", "create", "--name", "n", "--scope", "a", "--json", "--config", config
    )
    assert made.exit_code == 0, made.output
    key_id = json.loads(made.stdout)["key_id"]
    forget_check(url)
    before = snapshot(url)
    assert before["check"] == [] and before["signing_keys"] == [] and len(before["apps"]) == 1
    monkeypatch.setenv(MASTER_KEY_ENV, WRONG)
    assert f"app secret {key_id}" in _app_create(runner, config)
    assert f"app secret {key_id}" in refused_by_open_runtime(config)
    assert snapshot(url) == before
    monkeypatch.delenv(MASTER_KEY_ENV)
    out = invoke(runner, "master-key", "rotate", "--config", config, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["resealed"] == 1  # the app's secret
    sealed = check_row(url)
    assert sealed is not None and sealer_of(config).open(sealed, CHECK_PURPOSE)


def test_a_legacy_data_directory_gets_its_check_from_master_key_rotate(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = init(runner, tmp_path / "d")
    url = url_of(config)
    opens(config)
    forget_check(url)
    out = invoke(runner, "master-key", "rotate", "--config", config, "--json")
    assert out.exit_code == 0, out.output
    sealed = check_row(url)
    assert sealed is not None and sealer_of(config).open(sealed, CHECK_PURPOSE)  # the new key
    opens(config)


# --- several instances at once ----------------------------------------------------------------


class _Gated:
    """A ``Store`` whose master-key check waits, after reading, until every instance has read:
    they all find no check value and all try to write one."""

    def __init__(self, store: Store, gate: asyncio.Barrier) -> None:
        self.inner, self.gate = store, gate
        self.master_key_check = self

    async def get(self) -> bytes | None:
        value = await self.inner.master_key_check.get()
        await self.gate.wait()
        return value

    async def put_if_absent(self, sealed: bytes) -> bytes:
        return await self.inner.master_key_check.put_if_absent(sealed)

    async def sealed_secrets(self) -> list[tuple[str, bytes]]:
        return await self.inner.master_key_check.sealed_secrets()


async def _first_use(url: str, sealers: list[Sealer]) -> list[BaseException | None]:
    stores = [open_store(url, timeout=10) for _ in sealers]
    gate = asyncio.Barrier(len(sealers))
    try:
        return await asyncio.gather(
            *(
                ensure_master_key(cast(Store, _Gated(store, gate)), sealer)
                for store, sealer in zip(stores, sealers, strict=True)
            ),
            return_exceptions=True,
        )
    finally:
        for store in stores:
            store.close()


INSTANCES = 6


def test_concurrent_first_use_with_one_key_writes_one_check(database_url: str) -> None:
    migrate(database_url)
    key = secrets.token_bytes(32)
    results = asyncio.run(_first_use(database_url, [Sealer(key) for _ in range(INSTANCES)]))
    assert results == [None] * INSTANCES
    sealed = check_row(database_url)
    assert sealed is not None and Sealer(key).open(sealed, CHECK_PURPOSE)


def test_concurrent_first_use_with_different_keys_binds_exactly_one(database_url: str) -> None:
    migrate(database_url)
    keys = [secrets.token_bytes(32) for _ in range(INSTANCES)]
    results = asyncio.run(_first_use(database_url, [Sealer(k) for k in keys]))
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    assert all(isinstance(r, WrongMasterKey) for r in results if r is not None), results
    sealed = check_row(database_url)
    assert sealed is not None and Sealer(keys[winners[0]]).open(sealed, CHECK_PURPOSE)


# --- master-key rotation -----------------------------------------------------------------------


def test_master_key_rotate_reseals_the_check(runner: CliRunner, tmp_path: Path) -> None:
    config = init(runner, tmp_path / "d")
    url = url_of(config)
    opens(config)
    old = sealer_of(config)
    out = invoke(runner, "master-key", "rotate", "--config", config, "--json")
    assert out.exit_code == 0, out.output
    assert '"resealed": 1' in out.output  # the signing key; the check is not a secret
    sealed = check_row(url)
    assert sealed is not None and sealer_of(config).open(sealed, CHECK_PURPOSE)
    with pytest.raises(SealError):
        old.open(sealed, CHECK_PURPOSE)
    opens(config)


def test_master_key_rotate_crash_window_opens_with_either_key(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = init(runner, tmp_path / "d")
    url = url_of(config)
    opens(config)
    key = load(Path(config)).master_key_path
    current = load_master_key(key)

    def crash(path: Path) -> None:
        raise OSError("killed between the commit and the rename")

    with monkeypatch.context() as m:
        m.setattr("restguard.cli.master_key.finish_rotation", crash)
        with pytest.raises(OSError, match="killed"):
            runner.invoke(cli, ["master-key", "rotate", "--config", config], catch_exceptions=False)
    nxt = load_master_key(next_key_path(key))
    sealed = check_row(url)
    assert sealed is not None and Sealer(nxt).open(sealed, CHECK_PURPOSE)  # re-sealed
    assert load_master_key(key) == current
    opens(config)  # .next pending: either key opens
    assert runner.invoke(cli, ["check", "--config", config]).exit_code == 0
    assert check_row(url) == sealed
    out = invoke(runner, "master-key", "rotate", "--config", config, "--json")
    assert out.exit_code == 0 and '"resumed": true' in out.output, out.output
    assert load_master_key(key) == nxt and not next_key_path(key).exists()
    opens(config)
