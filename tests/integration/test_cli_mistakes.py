"""Issue 7, "no silent mistakes", where the CLI is involved: each is a clear usage error (exit 2,
one "Error:" line, never a traceback) and nothing is written."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from restguard.cli.init import write_data_dir
from restguard.cli.main import cli

RESTGUARD = [sys.executable, "-m", "restguard.cli"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv("RESTGUARD_MASTER_KEY", raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def usage_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [line] = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    return line


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("localhost:9000", 'write "http://localhost:9000"'),
        ("127.0.0.1:9000", 'write "http://127.0.0.1:9000"'),
        ("api.internal", 'write "http://api.internal"'),
    ],
)
def test_init_upstream_without_a_scheme(tmp_path: Path, given: str, hint: str) -> None:
    line = usage_error(invoke("init", "--dir", str(tmp_path / "d"), "--upstream", given))
    assert "--upstream" in line and "no scheme" in line and hint in line
    assert not (tmp_path / "d").exists()  # nothing written


@pytest.mark.parametrize(
    ("given", "word"),
    [("ftp://h:9000", "http(s) URL"), ("http://h:9000/api", "path"), ("http://h:0", "port")],
)
def test_init_upstream_must_be_an_upstream_url(tmp_path: Path, given: str, word: str) -> None:
    line = usage_error(invoke("init", "--dir", str(tmp_path / "d"), "--upstream", given))
    assert word in line


def test_init_upstream_written_as_given_loads(tmp_path: Path) -> None:
    result = invoke("init", "--dir", str(tmp_path / "d"), "--upstream", "http://localhost:9000/")
    assert result.exit_code == 0, result.output
    assert 'url = "http://localhost:9000"\n' in (tmp_path / "d" / "restguard.toml").read_text()


@pytest.fixture
def config(tmp_path: Path) -> str:
    return str(write_data_dir(tmp_path / "d"))


@pytest.mark.parametrize(
    ("scope", "word"),
    [("notes:read,notes:write", "comma"), ("notes:read notes:write", "white space")],
)
def test_apikey_scope_with_a_comma_or_space(config: str, scope: str, word: str) -> None:
    result = invoke("apikey", "create", "--config", config, "--name", "n", "--scope", scope)
    line = usage_error(result)
    assert "--scope" in line and word in line and "repeat --scope" in line
    listed = invoke("apikey", "list", "--config", config, "--json")
    assert json.loads(listed.stdout) == []  # no key was made


def test_apikey_expires_in_milliseconds(config: str) -> None:
    before = datetime.now(UTC)
    result = invoke(
        "apikey", "create", "--config", config, "--name", "n", "--expires-in", "1500ms", "--json"
    )
    assert result.exit_code == 0, result.output
    expires = datetime.fromisoformat(json.loads(result.stdout)["expires_at"])
    assert before <= expires + timedelta(seconds=1) <= before + timedelta(seconds=4)


def test_apikey_rotate_grace_in_milliseconds(config: str) -> None:
    created = invoke("apikey", "create", "--config", config, "--name", "n", "--json")
    key_id = json.loads(created.stdout)["id"]
    result = invoke("apikey", "rotate", key_id, "--config", config, "--grace", "250ms")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("given", ["999999999d", "36501d", "99999999999999999999999s"])
def test_an_overflowing_expires_in_is_a_clear_error(config: str, given: str) -> None:
    result = invoke("apikey", "create", "--config", config, "--name", "n", "--expires-in", given)
    line = usage_error(result)
    assert f"'{given}' is too long; at most 36500d" in line


def test_an_overflowing_expires_in_as_a_real_process(config: str) -> None:
    args = ["apikey", "create", "--config", config, "--name", "n", "--expires-in", "999999999d"]
    proc = subprocess.run(
        [*RESTGUARD, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("Error:")]
    assert errors == [
        "Error: Invalid value for '--expires-in': '999999999d' is too long; at most 36500d"
    ]
