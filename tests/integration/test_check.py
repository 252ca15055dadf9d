"""``restguard check``: validates what ``serve`` validates, starts nothing, lists every problem
(exit 1), or says "configuration OK" (exit 0). Through the CLI's main and as a real process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from restguard import wiring
from restguard.cli.init import write_data_dir
from restguard.cli.main import cli
from restguard.config import load
from restguard.keys.sealing import generate_master_key
from restguard.store.sql import migrate, pending
from restguard.wiring import open_runtime

RESTGUARD = [sys.executable, "-m", "restguard.cli"]
PROBLEM_FIELDS = {"file", "key", "problem", "fix", "line"}
BROKEN_ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]

[[routes]]
path = "/notes/{id}"
methods = ["GET"]
scopes = ["notes:read"]

[[routes]]
path = "/orders/:id"
methods = ["GET"]
scopes = ["orders:read, orders:write"]
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv("RESTGUARD_MASTER_KEY", raising=False)


def check(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["check", "--config", str(config), *args])


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    """The line holding ``needle`` (a table header: the line that is exactly it)."""
    lines = path.read_text().splitlines()
    exact = needle.startswith("[")
    found = [i for i, line in enumerate(lines, 1) if (line == needle if exact else needle in line)]
    return found[nth - 1]


def test_a_good_configuration(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d")
    result = check(config)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"configuration OK: {config}")
    assert "routes     3 (1 public)" in result.stdout
    assert "upstream   http://127.0.0.1:9000" in result.stdout
    assert "gateway 127.0.0.1:8080, admin 127.0.0.1:8081" in result.stdout
    assert result.stderr == ""


def test_a_good_configuration_with_tls(tmp_path: Path) -> None:
    from tests.pki import Pki

    config = write_data_dir(tmp_path / "d")
    cert, key = Pki(tmp_path / "pki").pair()
    text = config.read_text().replace('public_url = "http://', 'public_url = "https://')
    text = text.replace('# tls_cert = "cert.pem"', f'tls_cert = "{cert}"')
    config.write_text(text.replace('# tls_key = "key.pem"', f'tls_key = "{key}"'))
    result = check(config)
    assert result.exit_code == 0, result.output
    assert "gateway 127.0.0.1:8080 (TLS), admin 127.0.0.1:8081" in result.stdout


def test_json_for_a_good_configuration(tmp_path: Path) -> None:
    result = check(write_data_dir(tmp_path / "d"), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"ok": True, "problems": []}


def test_every_problem_is_listed_with_its_line(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d", routes=BROKEN_ROUTES)
    text = config.read_text().replace('url = "http://127.0.0.1:9000"', 'url = "localhost:9000"')
    config.write_text(text.replace('connect_timeout = "5s"', 'connect_timeout = "250ms"'))
    result = check(config)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "configuration has 4 problems"
    expected = [
        ("upstream.url", line_of(config, 'url = "localhost:9000"')),
        ("routes[2]", line_of(config, "[[routes]]", 2)),
        ("routes[3].path", line_of(config, "/orders/:id")),
        ("routes[3].scopes", line_of(config, "orders:read, orders:write")),
    ]
    for problem, (key, line) in zip(lines[:-1], expected, strict=True):
        assert problem.startswith(f"{config}:{line}: {key}: "), problem
        assert ". Fix: " in problem
    assert "write '/orders/{id}'" in lines[2]
    assert 'write "http://localhost:9000"' in lines[0]


def test_json_lists_every_problem_as_one_document(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d", routes=BROKEN_ROUTES)
    result = check(config, "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert set(document) == {"ok", "problems"}
    assert [p["key"] for p in document["problems"]] == [
        "routes[2]",
        "routes[3].path",
        "routes[3].scopes",
    ]
    for p in document["problems"]:
        assert set(p) == PROBLEM_FIELDS
        assert p["file"] == str(config) and isinstance(p["line"], int)


def test_a_missing_file(tmp_path: Path) -> None:
    result = check(tmp_path / "none.toml", "--json")
    assert result.exit_code == 1
    [problem] = json.loads(result.stdout)["problems"]
    assert problem["key"] == "(file)" and problem["line"] is None


def test_the_config_env_variable_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_data_dir(tmp_path / "d")
    monkeypatch.setenv("RESTGUARD_CONFIG", str(config))
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 0 and str(config) in result.stdout


def test_routes_this_version_cannot_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # every method the contract names is served now; a build without one (as oauth1 was
    # missing before issue 11) refuses a route that accepts only it
    monkeypatch.delitem(wiring.AUTHENTICATORS, "oauth1")
    routes = '[[routes]]\npath = "/x"\nmethods = ["GET"]\nauth = ["oauth1"]\n'
    config = write_data_dir(tmp_path / "d", routes=routes)
    result = check(config)
    assert result.exit_code == 1
    assert f"{config}:{line_of(config, 'auth = ')}: routes[1].auth: none of oauth1" in result.stderr


def test_a_missing_master_key(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d")
    (config.parent / "master.key").unlink()
    result = check(config)
    assert result.exit_code == 1
    assert ": keys.master_key: " in result.stderr and "no master key" in result.stderr


def test_a_master_key_readable_by_others(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d")
    (config.parent / "master.key").chmod(0o644)
    result = check(config)
    assert result.exit_code == 1 and "chmod 600" in result.stderr


def test_a_master_key_that_does_not_open_the_data_directory(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d")

    async def first_start() -> None:  # what 'serve' does once: the signing key is made
        (await open_runtime(load(config))).close()

    asyncio.run(first_start())
    assert check(config).exit_code == 0
    key = config.parent / "master.key"
    key.unlink()
    generate_master_key(key)
    result = check(config)
    assert result.exit_code == 1
    assert "keys.master_key: this master key does not open" in result.stderr


def test_the_database_must_answer(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d")
    text = config.read_text().replace(
        'database = "sqlite:///restguard.db"', 'database = "postgresql://rg@127.0.0.1:1/rg"'
    )
    config.write_text(text)
    result = check(config, "--json")
    assert result.exit_code == 1
    [problem] = json.loads(result.stdout)["problems"]
    assert problem["key"] == "storage.database"
    assert "does not answer" in problem["problem"]
    assert problem["line"] == line_of(config, "database = ")


def test_the_audit_file_must_be_writable(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d")
    config.write_text(config.read_text().replace('path = "audit.log"', 'path = "no/such/a.log"'))
    result = check(config)
    assert result.exit_code == 1 and ": audit.path: cannot open" in result.stderr


def test_nothing_is_created_or_migrated(tmp_path: Path, database_url: str) -> None:
    config = write_data_dir(tmp_path / "d")
    config.write_text(
        config.read_text().replace(
            'database = "sqlite:///restguard.db"', f'database = "{database_url}"'
        )
    )
    result = check(config)
    assert result.exit_code == 0, result.output
    if database_url.startswith("sqlite"):
        assert "not created yet" in result.stdout
        assert not Path(database_url.removeprefix("sqlite:///")).exists()
        migrate(database_url)
        assert "schema current" in check(config).stdout
        return
    todo = pending(database_url)
    assert todo and f"{len(todo)} migration(s) pending" in result.stdout
    assert pending(database_url) == todo  # still pending: check migrates nothing
    migrate(database_url)
    assert "schema current" in check(config).stdout


def test_a_postgres_password_is_not_shown(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d")
    url = "postgresql://postgres:s3cret@127.0.0.1:5432/rg_no_such_db"
    config.write_text(
        config.read_text().replace('database = "sqlite:///restguard.db"', f'database = "{url}"')
    )
    result = check(config)
    assert "s3cret" not in result.output


def test_help_says_what_is_checked_and_the_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["check", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "exit 0, or 1 with every problem listed" in text
    assert "master key" in text and "database" in text and "--json" in text
    assert "check" in CliRunner().invoke(cli, ["--help"]).stdout


def test_as_a_real_process(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d", routes=BROKEN_ROUTES)
    proc = subprocess.run(
        [*RESTGUARD, "check", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(json.loads(proc.stdout)["problems"]) == 3
    good = write_data_dir(tmp_path / "good")
    proc = subprocess.run(
        [*RESTGUARD, "check", "--config", str(good)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "configuration OK" in proc.stdout


def test_serve_names_the_first_problem_and_points_at_check(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d", routes=BROKEN_ROUTES)
    result = CliRunner().invoke(cli, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    [message] = result.stderr.strip().splitlines()
    assert message.startswith(f"Error: {config}:{line_of(config, '[[routes]]', 2)}: routes[2]: ")
    assert message.endswith("(2 more: 'restguard check' lists them all)")
