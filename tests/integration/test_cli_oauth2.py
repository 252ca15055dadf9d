"""``restguard oauth2 client create|list|revoke`` through click's CliRunner (and one real
process), on a data dir from ``init``: human and ``--json`` output (exactly one JSON document on
stdout), the secret shown once and stored only hashed, every validation error as one clear
message (exit 2 naming the option, 1 for a refused action, never a traceback)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from restguard.cli.init import write_data_dir
from restguard.cli.main import cli
from restguard.config import load
from restguard.keys.hashing import token_digest
from restguard.oauth2.clients import secret_matches
from restguard.store.ports import OAuthClientRecord
from restguard.wiring import open_store_for

WEB = "https://app.example/cb"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv("RESTGUARD_MASTER_KEY", raising=False)


@pytest.fixture
def config(tmp_path: Path) -> str:
    return str(write_data_dir(tmp_path / "data"))


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    return result


def one_document(result: Result) -> Any:
    """stdout is exactly one JSON document (json.loads refuses anything after it)."""
    assert result.exit_code == 0, (result.output, result.stderr)
    return json.loads(result.stdout)


WEB_APP = ("--grant", "authorization_code", "--grant", "refresh_token", "--redirect-uri", WEB)


def create(config: str, *extra: str, name: str = "notes web app") -> Result:
    return invoke("oauth2", "client", "create", "--config", config, "--name", name, *extra)


def listing(config: str) -> list[dict[str, Any]]:
    rows = one_document(invoke("oauth2", "client", "list", "--config", config, "--json"))
    assert isinstance(rows, list)
    return rows


def stored(config: str) -> list[OAuthClientRecord]:
    async def read() -> list[OAuthClientRecord]:
        store = open_store_for(load(Path(config)))
        try:
            return await store.oauth2_clients.list()
        finally:
            store.close()

    return asyncio.run(read())


# --- create --------------------------------------------------------------------------------------


def test_create_json_is_one_complete_document(config: str) -> None:
    doc = one_document(
        create(
            config,
            "--scope",
            "notes:read",
            "--scope",
            "notes:write",
            *WEB_APP,
            "--redirect-uri",
            "http://127.0.0.1:8400/cb",
            "--token-format",
            "jwt",
            "--json",
        )
    )
    assert list(doc) == [
        "client_id",
        "client_secret",
        "name",
        "public",
        "grants",
        "redirect_uris",
        "scopes",
        "token_format",
        "created_at",
    ]
    assert re.fullmatch(r"rg_ci_[0-9a-z]{16}", doc["client_id"])
    assert re.fullmatch(r"rg_cs_[0-9A-Za-z]{43}", doc["client_secret"])
    assert doc["name"] == "notes web app" and doc["public"] is False
    assert doc["grants"] == ["authorization_code", "refresh_token"]
    assert doc["redirect_uris"] == [WEB, "http://127.0.0.1:8400/cb"]
    assert doc["scopes"] == ["notes:read", "notes:write"]
    assert doc["token_format"] == "jwt"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["created_at"])
    [record] = stored(config)
    assert record.client_id == doc["client_id"]
    assert record.secret_hash == token_digest(doc["client_secret"])  # only the hash is kept
    assert secret_matches(record, doc["client_secret"])


def test_create_public_client(config: str) -> None:
    doc = one_document(
        create(config, "--scope", "notes:read", "--grant", "device_code", "--public", "--json")
    )
    assert doc["client_secret"] is None and doc["public"] is True
    assert doc["token_format"] == "jwt" and doc["redirect_uris"] == []
    [record] = stored(config)
    assert record.secret_hash is None


def test_create_for_people(config: str) -> None:
    result = create(config, "--scope", "notes:read", *WEB_APP)
    assert result.exit_code == 0, result.output
    [row] = listing(config)
    assert f"OAuth 2.0 client created: {row['client_id']} (notes web app" in result.output
    [secret] = re.findall(r"client_secret: (rg_cs_\S+)", result.output)
    assert secret_matches(stored(config)[0], secret)
    assert "shown once" in result.output
    assert WEB in result.output


def test_create_public_for_people(config: str) -> None:
    result = create(
        config,
        "--scope",
        "a",
        "--grant",
        "authorization_code",
        "--redirect-uri",
        "com.example.app:/cb",
        "--public",
    )
    assert result.exit_code == 0, result.output
    assert "rg_cs_" not in result.output and "PKCE" in result.output


def test_config_before_the_subcommand(config: str) -> None:
    result = invoke(
        "--config",
        config,
        "oauth2",
        "client",
        "create",
        "--name",
        "svc",
        "--scope",
        "a",
        "--grant",
        "client_credentials",
        "--json",
    )
    assert one_document(result)["grants"] == ["client_credentials"]


# --- list and revoke -----------------------------------------------------------------------------


def test_list_never_shows_a_secret(config: str) -> None:
    docs = [
        one_document(create(config, "--scope", "a", *WEB_APP, "--json", name=f"app {i}"))
        for i in range(2)
    ]
    rows = listing(config)
    assert [r["client_id"] for r in rows] == [d["client_id"] for d in docs]  # oldest first
    for row in rows:
        assert row["state"] == "active" and row["revoked_at"] is None
        assert "client_secret" not in row and "secret_hash" not in row
    table = invoke("oauth2", "client", "list", "--config", config)
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split() == ["CLIENT_ID", "NAME", "TYPE", "GRANTS", "SCOPES", "STATE"]
    assert docs[0]["client_id"] in lines[1] and "confidential" in lines[1]
    everything = json.dumps(rows) + table.output
    for doc in docs:
        assert doc["client_secret"] not in everything
    assert "rg_cs_" not in everything


def test_list_empty(config: str) -> None:
    assert listing(config) == []
    result = invoke("oauth2", "client", "list", "--config", config)
    assert result.exit_code == 0 and "CLIENT_ID" in result.output and "(none)" in result.output


@pytest.mark.parametrize("as_json", [True, False])
def test_revoke(config: str, as_json: bool) -> None:
    kept = one_document(create(config, "--scope", "a", *WEB_APP, "--json", name="kept"))
    gone = one_document(create(config, "--scope", "a", *WEB_APP, "--json", name="gone"))
    args = ("oauth2", "client", "revoke", gone["client_id"], "--config", config)
    result = invoke(*args, *(["--json"] * as_json))
    if as_json:
        doc = one_document(result)
        assert doc["client_id"] == gone["client_id"] and doc["state"] == "revoked"
        assert doc["revoked_at"] and "client_secret" not in doc
    else:
        assert result.exit_code == 0
        assert f"OAuth 2.0 client {gone['client_id']} (gone) revoked." in result.output
    states = {r["client_id"]: r["state"] for r in listing(config)}
    assert states == {kept["client_id"]: "active", gone["client_id"]: "revoked"}
    first = next(r for r in listing(config) if r["client_id"] == gone["client_id"])
    again = one_document(invoke(*args, "--json"))  # revoking twice keeps the first time
    assert again["revoked_at"] == first["revoked_at"]


@pytest.mark.parametrize("as_json", [True, False])
def test_revoke_unknown_id(config: str, as_json: bool) -> None:
    result = invoke(
        "oauth2", "client", "revoke", "rg_ci_nosuch", "--config", config, *(["--json"] * as_json)
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert "no OAuth 2.0 client has the id 'rg_ci_nosuch'" in line


# --- validation errors ---------------------------------------------------------------------------

BAD_OPTIONS = [
    (("--name", "", "--scope", "a", *WEB_APP), "--name"),
    (("--name", "a\nb", "--scope", "a", *WEB_APP), "--name"),
    (("--name", "n", "--scope", "a b", *WEB_APP), "--scope"),
    (("--name", "n", "--scope", "a,b", *WEB_APP), "--scope"),
    (("--name", "n", "--scope", "a", "--grant", "password"), "--grant"),
    (("--name", "n", "--scope", "a", "--grant", "implicit", "--redirect-uri", WEB), "--grant"),
    (("--name", "n", "--scope", "a", "--grant", "client_credentials", "--public"), "--grant"),
    (("--name", "n", "--scope", "a", "--grant", "refresh_token"), "--grant"),
    (("--name", "n", "--scope", "a", "--grant", "authorization_code"), "--redirect-uri"),
    (
        ("--name", "n", "--scope", "a", "--grant", "device_code", "--redirect-uri", WEB),
        "--redirect-uri",
    ),
    (
        (
            "--name",
            "n",
            "--scope",
            "a",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "https://app.example/cb#x",
        ),
        "--redirect-uri",
    ),
    (
        (
            "--name",
            "n",
            "--scope",
            "a",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "http://app.example/cb",
        ),
        "--redirect-uri",
    ),
    (
        (
            "--name",
            "n",
            "--scope",
            "a",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "https://*.app.example/cb",
        ),
        "--redirect-uri",
    ),
    (
        ("--name", "n", "--scope", "a", "--grant", "authorization_code", "--redirect-uri", "/cb"),
        "--redirect-uri",
    ),
    (
        (
            "--name",
            "n",
            "--scope",
            "a",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "https://app.example/a b",
        ),
        "--redirect-uri",
    ),
    (("--name", "n", "--scope", "a", *WEB_APP, "--token-format", "paseto"), "--token-format"),
    (("--name", "n", "--grant", "client_credentials"), "--scope"),  # missing
    (("--name", "n", "--scope", "a"), "--grant"),  # missing
    (("--scope", "a", "--grant", "client_credentials"), "--name"),  # missing
]


@pytest.mark.parametrize(("args", "option"), BAD_OPTIONS, ids=lambda v: repr(v)[:70])
@pytest.mark.parametrize("as_json", [False, True])
def test_validation_errors(config: str, args: tuple[str, ...], option: str, as_json: bool) -> None:
    result = invoke(
        "oauth2", "client", "create", "--config", config, *args, *(["--json"] * as_json)
    )
    assert result.exit_code == 2, (result.output, result.stderr)
    assert result.stdout == ""
    errors = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert option in errors[0], errors[0]
    assert listing(config) == []


def test_a_missing_config_is_one_error_line(tmp_path: Path) -> None:
    result = invoke("oauth2", "client", "list", "--config", str(tmp_path / "absent.toml"), "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert len([x for x in result.stderr.splitlines() if x.startswith("Error:")]) == 1


def test_real_process_json(config: str) -> None:
    """The installed entry point, as a script runs it: stdout parses as one document."""
    base = [sys.executable, "-m", "restguard.cli", "oauth2", "client"]
    created = subprocess.run(
        [
            *base,
            "create",
            "--config",
            config,
            "--name",
            "svc",
            "--scope",
            "notes:read",
            "--grant",
            "client_credentials",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert doc["client_secret"].startswith("rg_cs_")
    listed = subprocess.run(
        [*base, "list", "--json", "--config", config], capture_output=True, text=True, timeout=60
    )
    assert [row["client_id"] for row in json.loads(listed.stdout)] == [doc["client_id"]]
    assert doc["client_secret"] not in listed.stdout
    revoked = subprocess.run(
        [*base, "revoke", doc["client_id"], "--json", "--config", config],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(revoked.stdout)["state"] == "revoked"
    assert "Traceback" not in created.stderr + listed.stderr + revoked.stderr
