"""The CLI as scripts use it, through real ``restguard`` processes: where --config may stand,
--json output that is complete and exactly one JSON document, audit --tail, the version three
ways, and shell completion as the README documents it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest

from restguard.cli.init import write_data_dir
from restguard.cli.main import cli
from restguard.credentials.apikey import parse_key
from tests.harness import free_port

BIN = Path(sys.executable).parent
RESTGUARD = str(BIN / "restguard")
VERSION = importlib.metadata.version("restguard")

#: Commands that do not take --json yet, each with the reason; the test below fails once one of
#: them gains it, so this list cannot go stale.
JSON_GAPS: dict[str, str] = {}


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RESTGUARD_")}
    return {**base, "PYTHONUNBUFFERED": "1", **extra}


def run(
    *args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [RESTGUARD, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env(**(extra_env or {})),
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def one_document(done: subprocess.CompletedProcess[str]) -> Any:
    """stdout is exactly one JSON document (json.loads refuses anything after it)."""
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_data_dir(tmp_path / "data")


# --- --config before or after the subcommand, $RESTGUARD_CONFIG, ./restguard.toml -------------


def test_config_before_and_after_the_subcommand(config: Path, tmp_path: Path) -> None:
    before = one_document(run("--config", str(config), "apikey", "create", "--name", "b", "--json"))
    after = one_document(run("apikey", "create", "--name", "a", "--json", "--config", str(config)))
    from_env = one_document(
        run(
            "apikey", "create", "--name", "e", "--json", extra_env={"RESTGUARD_CONFIG": str(config)}
        )
    )
    from_cwd = one_document(run("apikey", "create", "--name", "c", "--json", cwd=config.parent))
    listed = one_document(run("--config", str(config), "apikey", "list", "--json"))
    assert {row["id"]: row["name"] for row in listed} == {
        before["id"]: "b",
        after["id"]: "a",
        from_env["id"]: "e",
        from_cwd["id"]: "c",
    }
    # --config wins over $RESTGUARD_CONFIG, before the subcommand too
    other = write_data_dir(tmp_path / "other")
    elsewhere = run(
        "--config",
        str(other),
        "apikey",
        "list",
        "--json",
        extra_env={"RESTGUARD_CONFIG": str(config)},
    )
    assert one_document(elsewhere) == []


def test_config_given_twice(config: Path, tmp_path: Path) -> None:
    same = run("--config", str(config), "apikey", "list", "--json", "--config", str(config))
    assert one_document(same) == []
    other = tmp_path / "other.toml"
    done = run("--config", str(config), "apikey", "list", "--config", str(other))
    assert done.returncode == 2
    assert "--config is given twice" in done.stderr and done.stdout == ""


def test_config_before_a_command_that_reads_none(config: Path, tmp_path: Path) -> None:
    done = run("--config", str(config), "quickstart", "--dir", str(tmp_path / "qs"))
    assert done.returncode == 2
    assert "'restguard quickstart' reads no configuration; drop --config" in done.stderr
    assert not (tmp_path / "qs").exists()
    # version reads none either, but a wrapper that always passes --config must not break it
    assert run("--config", str(config), "version").stdout == f"restguard {VERSION}\n"


def test_missing_config_before_the_subcommand_is_one_clear_line(tmp_path: Path) -> None:
    done = run("--config", str(tmp_path / "none.toml"), "apikey", "list", "--json")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "none.toml" in done.stderr and "does not exist" in done.stderr


# --- --json: complete, and exactly one document -----------------------------------------------


def test_apikey_json_is_complete(config: Path) -> None:
    created = one_document(
        run(
            "apikey",
            "create",
            "--config",
            str(config),
            "--name",
            "billing",
            "--scope",
            "notes:read",
            "--expires-in",
            "30d",
            "--json",
        )
    )
    assert set(created) == {"id", "name", "key", "scopes", "expires_at"}
    assert (created["name"], created["scopes"]) == ("billing", ["notes:read"])
    assert parse_key(created["key"]) == created["id"]

    before = datetime.now(UTC).replace(microsecond=0)
    rotated = one_document(
        run("apikey", "rotate", created["id"], "--grace", "1h", "--config", str(config), "--json")
    )
    assert set(rotated) == {"id", "name", "key", "scopes", "expires_at", "old_id", "grace_ends_at"}
    assert rotated["old_id"] == created["id"] and rotated["id"] != created["id"]
    assert parse_key(rotated["key"]) == rotated["id"]
    assert (rotated["name"], rotated["scopes"], rotated["expires_at"]) == (
        "billing",
        ["notes:read"],
        created["expires_at"],
    )
    grace_ends = datetime.fromisoformat(rotated["grace_ends_at"].replace("Z", "+00:00"))
    assert before + timedelta(hours=1) <= grace_ends <= datetime.now(UTC) + timedelta(hours=1)
    listed = {
        row["id"]: row
        for row in one_document(run("--config", str(config), "apikey", "list", "--json"))
    }
    assert listed[created["id"]]["revoked_at"] == rotated["grace_ends_at"]

    # the key in its grace has a successor: it is not rotated again, and that says why
    again = run("apikey", "rotate", created["id"], "--grace", "2h", "--config", str(config))
    assert again.returncode == 1 and "rotated already" in again.stderr, again.stderr
    assert again.stdout == ""


@pytest.mark.parametrize(
    "command",
    [
        ("version",),
        ("migrate",),
        ("apikey", "list"),
        ("apikey", "create", "--name", "n", "--scope", "a"),
        ("apikey", "revoke", "{id}"),
        ("apikey", "rotate", "{id}"),
        ("audit",),
        ("audit", "--tail", "0"),
    ],
    ids=lambda c: " ".join(c),
)
def test_json_prints_exactly_one_document(config: Path, command: tuple[str, ...]) -> None:
    key = one_document(run("--config", str(config), "apikey", "create", "--name", "k", "--json"))
    argv = [part.format(id=key["id"]) for part in command]
    done = run("--config", str(config), *argv, "--json")
    document = one_document(done)
    assert isinstance(document, dict | list)


def test_every_command_takes_json() -> None:
    def leaves(command: click.Command, path: tuple[str, ...]) -> list[tuple[str, click.Command]]:
        if isinstance(command, click.Group):
            return [
                leaf
                for name, sub in sorted(command.commands.items())
                for leaf in leaves(sub, (*path, name))
            ]
        return [(" ".join(path), command)]

    found = leaves(cli, ())
    assert {"apikey create", "apikey rotate", "audit", "serve", "quickstart", "version"} <= {
        name for name, _ in found
    }
    for name, command in found:
        flags = {opt for param in command.params for opt in getattr(param, "opts", [])}
        if name in JSON_GAPS:
            assert "--json" not in flags, f"{name} takes --json now: remove it from JSON_GAPS"
        else:
            assert "--json" in flags, f"restguard {name} has no --json"


def test_serve_json_is_one_document_once_listening(config: Path) -> None:
    port, admin = free_port(), free_port()
    text = config.read_text()
    text = text.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
    config.write_text(text.replace('listen = "127.0.0.1:8081"', f'listen = "127.0.0.1:{admin}"'))
    proc = subprocess.Popen(
        [RESTGUARD, "serve", "--config", str(config), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        document: dict[str, Any] | None = None
        deadline = time.monotonic() + 30
        while document is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"serve exited: {proc.stderr.read() if proc.stderr else ''}"
            lines.append(line)
            try:
                document = json.loads("".join(lines))
            except json.JSONDecodeError:
                continue
        assert document is not None
        assert document["gateway"] == f"http://127.0.0.1:{port}"
        assert document["admin"] == f"http://127.0.0.1:{admin}"
        assert document["routes"] == 3 and document["pid"] == proc.pid
        with urllib.request.urlopen(f"{document['admin']}/healthz", timeout=5) as answer:
            assert answer.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert rest == ""  # nothing after the one document
    assert "Traceback" not in err


# --- audit --tail -------------------------------------------------------------------------------


def _decisions(config: Path, count: int) -> None:
    audit_log = config.parent / "audit.log"
    with audit_log.open("a") as f:
        for i in range(count):
            f.write(json.dumps({"time": f"t{i}", "outcome": "allow", "status": 200 + i}) + "\n")
        f.write("not json\n")


def test_audit_tail(config: Path) -> None:
    _decisions(config, 3)
    zero = run("audit", "--config", str(config), "--tail", "0")
    assert (zero.returncode, zero.stdout) == (0, "")
    assert one_document(run("audit", "--config", str(config), "--tail", "0", "--json")) == []
    two = one_document(run("audit", "--config", str(config), "--tail", "2", "--json"))
    assert [event["status"] for event in two] == [201, 202]  # the broken line is no decision
    every = one_document(run("audit", "--config", str(config), "--json"))
    assert [event["status"] for event in every] == [200, 201, 202]
    human = run("audit", "--config", str(config), "-n", "1")
    assert human.stdout.count("\n") == 1 and " 202 " in human.stdout


@pytest.mark.parametrize("tail", ["-1", "-5", "x"])
def test_audit_bad_tail_is_a_usage_error(config: Path, tail: str) -> None:
    _decisions(config, 1)
    done = run("audit", "--config", str(config), "--tail", tail)
    assert done.returncode == 2
    assert "--tail" in done.stderr and done.stdout == ""


def test_audit_without_a_log_json_is_an_empty_list(config: Path) -> None:
    done = run("audit", "--config", str(config), "--json")
    assert one_document(done) == []
    assert "no decisions logged yet" in done.stderr


#: Runs a command with SIGINT at its default action: a test run started in the background of
#: a shell without job control inherits SIGINT ignored, and so would ``audit --follow`` (as a
#: Unix command should), so Ctrl-C could not be tested.
WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def test_audit_follow_json_streams_one_object_per_line(config: Path) -> None:
    _decisions(config, 2)
    follow = [RESTGUARD, "audit", "--config", str(config), "--follow", "--tail", "1", "--json"]
    with subprocess.Popen(
        [sys.executable, "-c", WITH_SIGINT, *follow],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    ) as proc:
        try:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["status"] == 201
            with (config.parent / "audit.log").open("a") as f:
                f.write(json.dumps({"outcome": "deny", "status": 401}) + "\n")
            assert json.loads(proc.stdout.readline())["status"] == 401
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    assert proc.returncode == 0, err  # Ctrl-C ends the stream cleanly


# --- the version, three ways --------------------------------------------------------------------


def test_version_three_ways() -> None:
    expected = f"restguard {VERSION}\n"
    assert run("version").stdout == expected
    assert run("--version").stdout == expected
    for args in (("version",), ("--version",)):
        module = subprocess.run(
            [sys.executable, "-m", "restguard", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env(),
        )
        assert (module.returncode, module.stdout) == (0, expected), module.stderr
    assert one_document(run("version", "--json")) == {"version": VERSION}


def test_python_m_restguard_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "restguard", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env(),
    )
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: restguard ")
    assert "apikey" in done.stdout and "quickstart" in done.stdout


# --- shell completion, as the README documents it -----------------------------------------------


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_as_documented(tmp_path: Path) -> None:
    script = """
        eval "$(_RESTGUARD_COMPLETE=bash_source restguard)"
        complete_words() {  # what bash does on <Tab>: the words so far, then the function
            COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
            _restguard_completion restguard; echo "${COMPREPLY[*]}"
        }
        complete -p restguard
        complete_words restguard apik
        complete_words restguard apikey r
        complete_words restguard audit --t
    """
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env=env(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "complete -o nosort -F _restguard_completion restguard",
        "apikey",
        "revoke rotate",
        "--tail",
    ]


def test_init_json_names_what_it_wrote(tmp_path: Path) -> None:
    upstream = "http://127.0.0.1:9100"
    done = run("init", "--dir", str(tmp_path / "d"), "--upstream", upstream, "--json")
    assert done.returncode == 0, done.stderr
    written = one_document(done)
    admin = written.pop("admin_key")
    assert written == {
        "config": str(tmp_path / "d" / "restguard.toml"),
        "master_key": str(tmp_path / "d" / "master.key"),
        "database": str(tmp_path / "d" / "restguard.db"),
        "upstream": upstream,
    }
    # the bootstrap admin key, printed once as "apikey create --json" prints a key
    assert set(admin) == {"id", "name", "key", "scopes", "expires_at"}
    assert admin["scopes"] == ["restguard:admin"] and admin["expires_at"] is None
    assert admin["key"].startswith(f"rg_ak_{admin['id']}_")
    for path in ("config", "master_key", "database"):
        assert Path(written[path]).exists()
