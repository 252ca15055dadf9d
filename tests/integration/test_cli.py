"""The ``restguard`` command line, through click's CliRunner, on a data dir from ``init``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from restguard.audit import DecisionEvent, JsonLinesAudit
from restguard.cli.main import cli
from restguard.clock import SystemClock
from restguard.config import load
from restguard.credentials.apikey import ApiKeyAuthenticator, parse_key
from restguard.credentials.base import AuthContext
from restguard.errors import InvalidCredential
from restguard.store.bookkeeping import UsageBook
from restguard.store.sql import open_store
from restguard.types import Principal, RequestView
from restguard.wiring import open_runtime

NEW_KEY_FIELDS = {"id", "name", "key", "scopes", "expires_at"}
ROTATED_KEY_FIELDS = NEW_KEY_FIELDS | {"old_id", "grace_ends_at"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv("RESTGUARD_MASTER_KEY", raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def data_dir(tmp_path: Path, runner: CliRunner) -> Path:
    directory = tmp_path / "data"
    result = invoke(runner, "init", "--dir", str(directory))
    assert result.exit_code == 0, result.output
    return directory


@pytest.fixture
def config(data_dir: Path) -> str:
    return str(data_dir / "restguard.toml")


@pytest.fixture
def db_config(tmp_path: Path, runner: CliRunner, database_url: str) -> Iterator[str]:
    """A data dir whose config points at ``database_url`` (SQLite or the real PostgreSQL)."""
    directory = tmp_path / "data"
    assert invoke(runner, "init", "--dir", str(directory)).exit_code == 0
    path = directory / "restguard.toml"
    text = path.read_text()
    assert 'database = "sqlite:///restguard.db"' in text
    path.write_text(
        text.replace('database = "sqlite:///restguard.db"', f'database = "{database_url}"')
    )
    assert load(path).database_url == database_url
    yield str(path)


def create(runner: CliRunner, config: str, *args: str) -> dict[str, Any]:
    result = invoke(runner, "apikey", "create", "--config", config, "--json", *args)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


BOOTSTRAP = "bootstrap admin"


def listing(runner: CliRunner, config: str) -> dict[str, dict[str, Any]]:
    """The keys listed, but the bootstrap admin key ``init`` issued."""
    result = invoke(runner, "apikey", "list", "--config", config, "--json")
    assert result.exit_code == 0, result.output
    return {row["id"]: row for row in json.loads(result.stdout) if row["name"] != BOOTSTRAP}


def authenticate(config: str, key: str) -> Principal:
    """Check a printed key against the store the config names, as the gateway would."""
    settings = load(Path(config))

    async def check() -> Principal:
        store = open_store(settings.database_url)
        book = UsageBook(store.api_keys.touch)  # the gateway's bookkeeper, flushed at once
        try:
            auth = ApiKeyAuthenticator(store.api_keys, SystemClock(), usage=book.record)
            view = RequestView("GET", "/", b"", ((b"x-api-key", key.encode()),), "")
            credential = auth.extract(view)
            assert credential is not None
            principal = await auth.authenticate(credential, AuthContext(datetime.now(UTC), ""))
            await book.flush()
            return principal
        finally:
            store.close()

    return asyncio.run(check())


# --- init -----------------------------------------------------------------------------------------


def test_init_writes_a_valid_data_dir(tmp_path: Path, runner: CliRunner) -> None:
    directory = tmp_path / "new" / "dir"
    result = invoke(runner, "init", "--dir", str(directory))
    assert result.exit_code == 0, result.output
    config = directory / "restguard.toml"
    assert f"wrote {config}" in result.output
    assert "restguard apikey create" in result.output
    settings = load(config)
    assert settings.database_url == f"sqlite:///{directory.resolve() / 'restguard.db'}"
    assert (directory / "restguard.db").is_file()
    key = directory / "master.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_text().strip()) == 43
    # the starter config is commented for people
    assert config.read_text().count("\n#") >= 10
    assert [r.path for r in settings.routes] == ["/health", "/notes/**", "/notes/**"]


def test_init_writes_tls_settings_to_uncomment(tmp_path: Path, runner: CliRunner) -> None:
    from tests.pki import Pki

    directory = tmp_path / "d"
    assert invoke(runner, "init", "--dir", str(directory)).exit_code == 0
    config = directory / "restguard.toml"
    text = config.read_text()
    server = text[text.index("[server]\n") : text.index("[admin]\n")]
    assert '\n# tls_cert = "cert.pem"\n# tls_key = "key.pem"\n' in server
    assert "TLS 1.2+" in server and "TLS-terminating proxy" in server
    assert not load(config).server.tls
    # uncommented, with the files in place and public_url made https://, it loads
    pki = Pki(directory)
    pki.pair("cert")
    (directory / "cert.crt").rename(directory / "cert.pem")
    (directory / "cert.key").rename(directory / "key.pem")
    text = text.replace("# tls_cert", "tls_cert").replace("# tls_key", "tls_key")
    config.write_text(text.replace('public_url = "http://', 'public_url = "https://'))
    server_settings = load(config).server
    assert server_settings.tls_cert == directory.resolve() / "cert.pem"
    assert server_settings.tls_key == directory.resolve() / "key.pem"


def test_init_refuses_an_existing_config(data_dir: Path, runner: CliRunner) -> None:
    config = data_dir / "restguard.toml"
    before = config.read_text()
    key_before = (data_dir / "master.key").read_bytes()
    result = runner.invoke(cli, ["init", "--dir", str(data_dir)])
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert "Traceback" not in result.output
    assert config.read_text() == before
    assert (data_dir / "master.key").read_bytes() == key_before


def test_init_refuses_an_existing_master_key(tmp_path: Path, runner: CliRunner) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "master.key").write_text("x")
    result = runner.invoke(cli, ["init", "--dir", str(directory)])
    assert result.exit_code == 1
    assert "master.key already exists" in result.output
    assert not (directory / "restguard.toml").exists()


# --- apikey ---------------------------------------------------------------------------------------


def test_create_json_prints_exactly_the_new_key(runner: CliRunner, config: str) -> None:
    before = datetime.now(UTC)
    data = create(
        runner, config, "--name", "n", "--scope", "a", "--scope", "b", "--expires-in", "30d"
    )
    assert set(data) == NEW_KEY_FIELDS
    assert parse_key(data["key"]) == data["id"]
    assert data["name"] == "n"
    assert data["scopes"] == ["a", "b"]
    expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(days=30) - timedelta(seconds=2) <= expires
    assert expires <= datetime.now(UTC) + timedelta(days=30)
    principal = authenticate(config, data["key"])
    assert (principal.subject, principal.client_id) == ("n", data["id"])
    assert principal.scopes == frozenset({"a", "b"})


def test_create_without_expiry_or_scopes(runner: CliRunner, config: str) -> None:
    data = create(runner, config, "--name", "plain")
    assert data["scopes"] == [] and data["expires_at"] is None


def test_create_dedupes_repeated_scopes(runner: CliRunner, config: str) -> None:
    data = create(runner, config, "--name", "n", "--scope", "a", "--scope", "a")
    assert data["scopes"] == ["a"]


def test_create_human_output_shows_the_key_once(runner: CliRunner, config: str) -> None:
    result = invoke(
        runner, "apikey", "create", "--config", config, "--name", "ci", "--scope", "notes:read"
    )
    assert result.exit_code == 0, result.output
    keys = re.findall(r"rg_ak_[0-9a-z]{12}_[0-9A-Za-z]{49}", result.output)
    assert len(keys) == 1
    assert result.output.count(keys[0]) == 1
    assert "shown once" in result.output
    assert "notes:read" in result.output
    assert "never" in result.output  # no expiry
    assert "\x1b[" not in result.output  # no colour when not on a terminal


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--expires-in", "10x"), "not a duration"),
        (("--expires-in", "0d"), "not a duration"),
        (("--scope", "bad scope"), "has white space"),
        (("--scope", "a,b"), "has a comma"),
        (("--scope", ""), "not a valid scope"),
    ],
)
def test_create_usage_errors(
    runner: CliRunner, config: str, args: tuple[str, ...], message: str
) -> None:
    result = runner.invoke(cli, ["apikey", "create", "--config", config, "--name", "n", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Usage:" in result.output
    assert listing(runner, config) == {}


def test_create_requires_a_name(runner: CliRunner, config: str) -> None:
    assert runner.invoke(cli, ["apikey", "create", "--config", config]).exit_code == 2
    result = runner.invoke(cli, ["apikey", "create", "--config", config, "--name", "  "])
    assert result.exit_code == 2
    assert listing(runner, config) == {}


def test_list_never_shows_a_secret(runner: CliRunner, config: str) -> None:
    first = create(runner, config, "--name", "first", "--scope", "a")
    second = create(runner, config, "--name", "second", "--expires-in", "1h")
    rows = listing(runner, config)
    assert set(rows) == {first["id"], second["id"]}
    for data in (first, second):
        row = rows[data["id"]]
        assert row["state"] == "active"
        assert "key" not in row and "key_hash" not in row
    assert rows[first["id"]]["name"] == "first"
    assert rows[first["id"]]["scopes"] == ["a"]
    assert rows[second["id"]]["expires_at"] is not None
    for fmt in ((), ("--json",)):
        out = invoke(runner, "apikey", "list", "--config", config, *fmt).output
        for data in (first, second):
            assert data["key"] not in out
            assert data["key"][19:40] not in out  # not even part of the secret
            assert data["id"] in out


def test_list_human_table(runner: CliRunner, config: str) -> None:
    (bootstrap,) = invoke(runner, "apikey", "list", "--config", config).output.splitlines()[1:]
    assert bootstrap.split()[1:5] == ["bootstrap", "admin", "restguard:admin", "active"]
    data = create(runner, config, "--name", "svc", "--scope", "x:y")
    out = invoke(runner, "apikey", "list", "--config", config).output
    header, _, row = out.splitlines()[:3]
    assert header.split() == ["ID", "NAME", "SCOPES", "STATE", "EXPIRES_AT", "LAST_USED_AT"]
    assert row.split()[:4] == [data["id"], "svc", "x:y", "active"]
    # columns are aligned: every column starts at the header's offset
    assert row.index("svc") == header.index("NAME")


def test_list_shows_last_used(runner: CliRunner, config: str) -> None:
    data = create(runner, config, "--name", "n")
    assert listing(runner, config)[data["id"]]["last_used_at"] is None
    authenticate(config, data["key"])
    assert listing(runner, config)[data["id"]]["last_used_at"] is not None


def test_list_shows_expired(runner: CliRunner, config: str) -> None:
    data = create(runner, config, "--name", "n", "--expires-in", "1s")
    # expires_at is printed to the second; the stored value has microseconds
    deadline = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
    while datetime.now(UTC) <= deadline + timedelta(seconds=1):
        time.sleep(0.05)
    assert listing(runner, config)[data["id"]]["state"] == "expired"


def test_revoke(runner: CliRunner, config: str) -> None:
    keep = create(runner, config, "--name", "keep")
    gone = create(runner, config, "--name", "gone")
    result = invoke(runner, "apikey", "revoke", "--config", config, gone["id"])
    assert result.exit_code == 0
    assert f"{gone['id']} (gone) revoked" in result.output
    rows = listing(runner, config)
    assert rows[gone["id"]]["state"] == "revoked"
    assert rows[gone["id"]]["revoked_at"] is not None
    assert rows[keep["id"]]["state"] == "active"
    with pytest.raises(InvalidCredential):
        authenticate(config, gone["key"])
    authenticate(config, keep["key"])


def test_revoke_json(runner: CliRunner, config: str) -> None:
    data = create(runner, config, "--name", "n")
    result = invoke(runner, "apikey", "revoke", "--config", config, "--json", data["id"])
    row = json.loads(result.stdout)
    assert row["id"] == data["id"] and row["state"] == "revoked"
    assert data["key"] not in result.output


def test_revoke_unknown_id(runner: CliRunner, config: str) -> None:
    result = runner.invoke(cli, ["apikey", "revoke", "--config", config, "nosuchkey000"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: no API key has the id 'nosuchkey000'"


def test_rotate_without_grace_revokes_at_once(runner: CliRunner, config: str) -> None:
    old = create(runner, config, "--name", "svc", "--scope", "a", "--expires-in", "30d")
    before = datetime.now(UTC).replace(microsecond=0)
    result = invoke(runner, "apikey", "rotate", "--config", config, "--json", old["id"])
    assert result.exit_code == 0, result.output
    new = json.loads(result.stdout)
    assert set(new) == ROTATED_KEY_FIELDS
    assert new["id"] != old["id"] and new["key"] != old["key"]
    assert parse_key(new["key"]) == new["id"]
    assert (new["name"], new["old_id"]) == ("svc", old["id"])
    grace_ends = datetime.fromisoformat(new["grace_ends_at"].replace("Z", "+00:00"))
    assert before <= grace_ends <= datetime.now(UTC)  # no --grace: the old key stopped now
    assert new["scopes"] == ["a"]
    assert new["expires_at"] == old["expires_at"]  # same name, scopes and expiry
    rows = listing(runner, config)
    assert rows[old["id"]]["state"] == "revoked"
    assert rows[new["id"]]["state"] == "active"
    assert rows[new["id"]]["name"] == "svc"
    with pytest.raises(InvalidCredential):
        authenticate(config, old["key"])
    assert authenticate(config, new["key"]).client_id == new["id"]


def test_rotate_with_grace(runner: CliRunner, config: str) -> None:
    old = create(runner, config, "--name", "svc")
    result = invoke(
        runner, "apikey", "rotate", "--config", config, "--grace", "1h", "--json", old["id"]
    )
    new = json.loads(result.stdout)
    rows = listing(runner, config)
    assert rows[old["id"]]["state"] == "grace"
    revoked_at = datetime.fromisoformat(rows[old["id"]]["revoked_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < revoked_at - datetime.now(UTC) <= timedelta(hours=1)
    assert (new["old_id"], new["grace_ends_at"]) == (old["id"], rows[old["id"]]["revoked_at"])
    assert rows[new["id"]]["state"] == "active"
    assert authenticate(config, old["key"]).client_id == old["id"]  # still works
    assert authenticate(config, new["key"]).client_id == new["id"]


def test_rotate_human_output(runner: CliRunner, config: str) -> None:
    old = create(runner, config, "--name", "svc")
    result = invoke(runner, "apikey", "rotate", "--config", config, old["id"])
    assert f"rotated from {old['id']}" in result.output
    assert len(re.findall(r"rg_ak_[0-9a-z]{12}_[0-9A-Za-z]{49}", result.output)) == 1


def test_rotate_errors(runner: CliRunner, config: str) -> None:
    result = runner.invoke(cli, ["apikey", "rotate", "--config", config, "nosuchkey000"])
    assert result.exit_code == 1
    assert "no API key has the id 'nosuchkey000'" in result.output
    old = create(runner, config, "--name", "svc")
    invoke(runner, "apikey", "revoke", "--config", config, old["id"])
    result = runner.invoke(cli, ["apikey", "rotate", "--config", config, old["id"]])
    assert result.exit_code == 1
    assert "is revoked" in result.output
    result = runner.invoke(cli, ["apikey", "rotate", "--config", config, "--grace", "1y", "x"])
    assert result.exit_code == 2


def test_config_from_environment(
    runner: CliRunner, config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESTGUARD_CONFIG", config)
    result = invoke(runner, "apikey", "create", "--name", "env", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] in listing(runner, config)


# --- the same on each database backend ------------------------------------------------------------


def test_apikey_lifecycle_on_each_backend(runner: CliRunner, db_config: str) -> None:
    a = create(runner, db_config, "--name", "a", "--scope", "s1", "--expires-in", "30d")
    b = create(runner, db_config, "--name", "b")
    assert authenticate(db_config, a["key"]).scopes == frozenset({"s1"})
    assert invoke(runner, "apikey", "revoke", "--config", db_config, a["id"]).exit_code == 0
    rotated = json.loads(
        invoke(
            runner, "apikey", "rotate", "--config", db_config, "--grace", "1h", "--json", b["id"]
        ).stdout
    )
    rows = listing(runner, db_config)
    assert {k: v["state"] for k, v in rows.items()} == {
        a["id"]: "revoked",
        b["id"]: "grace",
        rotated["id"]: "active",
    }
    assert authenticate(db_config, rotated["key"]).subject == "b"
    with pytest.raises(InvalidCredential):
        authenticate(db_config, a["key"])
    result = runner.invoke(cli, ["apikey", "revoke", "--config", db_config, "nosuchkey000"])
    assert result.exit_code == 1


def test_migrate_on_each_backend(runner: CliRunner, db_config: str) -> None:
    first = invoke(runner, "migrate", "--config", db_config)
    assert first.exit_code == 0
    if "postgresql" in load(Path(db_config)).database_url:
        assert "applied" in first.output  # a fresh PostgreSQL database
    second = invoke(runner, "migrate", "--config", db_config)
    assert second.exit_code == 0
    assert second.output.strip() == "the database schema is up to date"


# --- migrate --------------------------------------------------------------------------------------


def test_migrate_applies_then_says_up_to_date(runner: CliRunner, data_dir: Path) -> None:
    path = data_dir / "restguard.toml"
    path.write_text(path.read_text().replace("sqlite:///restguard.db", "sqlite:///fresh.db"))
    first = invoke(runner, "migrate", "--config", str(path))
    assert first.exit_code == 0
    assert re.search(r"applied \d+ migration\(s\): ", first.output), first.output
    assert (data_dir / "fresh.db").is_file()
    second = invoke(runner, "migrate", "--config", str(path))
    assert second.output.strip() == "the database schema is up to date"


# --- audit ----------------------------------------------------------------------------------------


def _event(**fields: Any) -> DecisionEvent:
    base: dict[str, Any] = {
        "time": "2030-01-01T00:00:00.000+00:00",
        "method": "GET",
        "path": "/notes/1",
        "route": "/notes/**",
        "outcome": "allow",
        "status": 200,
        "error": None,
        "auth_method": "api_key",
        "credential_id": "abcdefghij01",
        "client": "192.0.2.1",
        "detail": None,
        "duration_ms": 0.5,
    }
    base.update(fields)
    return DecisionEvent(**base)


def test_audit_prints_decisions(runner: CliRunner, config: str) -> None:
    settings = load(Path(config))
    assert settings.audit_path is not None
    sink = JsonLinesAudit(settings.audit_path)
    sink(_event())
    sink(
        _event(
            outcome="deny",
            status=401,
            error="invalid_token",
            credential_id="zzzzzzzzzzzz",
            detail="api key revoked",
            path="/notes/2",
        )
    )
    sink.close()
    with settings.audit_path.open("a") as f:
        f.write("not json\n")
    assert settings.audit_path.stat().st_mode & 0o777 == 0o600
    result = invoke(runner, "audit", "--config", config)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 2  # the broken line is skipped
    assert "allow" in lines[0] and "200" in lines[0] and "GET /notes/1" in lines[0]
    assert "cred=abcdefghij01" in lines[0]
    assert "deny" in lines[1] and "401" in lines[1] and "error=invalid_token" in lines[1]
    assert "(api key revoked)" in lines[1]
    tail = invoke(runner, "audit", "--config", config, "--tail", "1", "--json")
    assert [event["status"] for event in json.loads(tail.stdout)] == [401]


def test_audit_shows_real_decisions(runner: CliRunner, config: str) -> None:
    key = create(runner, config, "--name", "n", "--scope", "notes:read")["key"]
    settings = load(Path(config))

    async def decide() -> None:
        runtime = await open_runtime(settings)
        try:
            ok = RequestView("GET", "/notes/1", b"", ((b"x-api-key", key.encode()),), "192.0.2.5")
            await runtime.guard.decide(ok)
            with pytest.raises(Exception):
                await runtime.guard.decide(RequestView("GET", "/admin", client="192.0.2.5"))
        finally:
            runtime.close()

    asyncio.run(decide())
    result = invoke(runner, "audit", "--config", config, "--json")
    events = json.loads(result.stdout)
    assert [(e["outcome"], e["status"], e["path"]) for e in events] == [
        ("allow", 200, "/notes/1"),
        ("deny", 404, "/admin"),
    ]
    assert key not in result.output and key[19:] not in result.output


def test_audit_without_a_log(runner: CliRunner, config: str) -> None:
    result = invoke(runner, "audit", "--config", config)
    assert result.exit_code == 0
    assert "no decisions logged yet" in result.output


def test_audit_turned_off(runner: CliRunner, data_dir: Path) -> None:
    path = data_dir / "restguard.toml"
    path.write_text(path.read_text().replace('path = "audit.log"', 'path = ""'))
    result = runner.invoke(cli, ["audit", "--config", str(path)])
    assert result.exit_code == 1
    assert "audit.path is empty" in result.output


# --- broken configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("apikey", "list"),
        ("apikey", "create", "--name", "n"),
        ("apikey", "revoke", "abc"),
        ("apikey", "rotate", "abc"),
        ("migrate",),
        ("audit",),
    ],
)
def test_broken_config_gives_one_clear_line(
    runner: CliRunner, data_dir: Path, command: tuple[str, ...]
) -> None:
    path = data_dir / "restguard.toml"
    path.write_text(path.read_text().replace('methods = ["GET"]', 'methods = ["get"]', 1))
    result = runner.invoke(cli, [*command, "--config", str(path)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    line = lines[0]
    text = path.read_text().splitlines()
    number = text.index('methods = ["get"]') + 1
    assert line.startswith(f"Error: {path.resolve()}:{number}: routes[1].methods: ")
    assert "'get' is not a supported method" in line
    assert "Fix: use upper-case names" in line
    assert "Traceback" not in result.output


def test_unparseable_upstream_url_gives_one_clear_line(runner: CliRunner, data_dir: Path) -> None:
    path = data_dir / "restguard.toml"
    text = path.read_text()
    path.write_text(re.sub(r'(?m)^url = ".*"$', 'url = "http://[::1"', text, count=1))
    result = runner.invoke(cli, ["apikey", "list", "--config", str(path)])
    assert result.exit_code == 1
    assert "upstream.url" in result.output
    assert not isinstance(result.exception, ValueError)


def test_missing_config(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["apikey", "list", "--config", str(tmp_path / "none.toml")])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "restguard init" in result.output


def test_unreadable_master_key_is_reported(runner: CliRunner, data_dir: Path) -> None:
    os.chmod(data_dir / "master.key", 0o644)
    settings = load(data_dir / "restguard.toml")

    async def start() -> None:
        runtime = await open_runtime(settings)
        runtime.close()

    with pytest.raises(Exception, match="chmod 600"):
        asyncio.run(start())


def test_help_and_version(runner: CliRunner) -> None:
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    for command in ("quickstart", "init", "serve", "migrate", "apikey", "audit"):
        assert command in result.output
    assert invoke(runner, "--version").output == "restguard 0.1.0\n"


@pytest.mark.parametrize(
    "name", ["", "   ", "a\r\nX-Restguard-Subject: root", "tab\there", "x" * 201]
)
def test_apikey_name_that_could_break_headers_is_refused(name: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from restguard.cli.init import write_data_dir
    from restguard.cli.main import cli

    config = write_data_dir(tmp_path / "d")
    result = CliRunner().invoke(
        cli, ["apikey", "create", "--config", str(config), "--name", name, "--scope", "a"]
    )
    assert result.exit_code == 2, result.output
    assert "--name" in result.output
    listed = CliRunner().invoke(cli, ["apikey", "list", "--config", str(config), "--json"])
    assert listed.output.strip() == "[]"
