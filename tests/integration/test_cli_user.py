"""``restguard user create|list|remove`` through click's CliRunner (and one real process), on a
data dir from ``init``: the password from stdin, never printed and never stored in plain text,
``--json`` as exactly one document, every refusal one clear message (exit 2 naming the option,
1 for a refused action, never a traceback)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from restguard.cli.init import write_data_dir
from restguard.cli.main import cli
from restguard.config import load
from restguard.oauth2.users import PASSWORD_HASHER, LoginChecker, LoginFailed
from restguard.store.ports import UserRecord
from restguard.wiring import open_store_for

PASSWORD = "Tr0ub4dor&3 horse"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv("RESTGUARD_MASTER_KEY", raising=False)


@pytest.fixture
def config(tmp_path: Path) -> str:
    return str(write_data_dir(tmp_path / "data"))


def invoke(*args: str, stdin: str | bytes | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    return result


def one_document(result: Result) -> Any:
    """stdout is exactly one JSON document (json.loads refuses anything after it)."""
    assert result.exit_code == 0, (result.output, result.stderr)
    return json.loads(result.stdout)


def create(
    config: str, *extra: str, username: str = "alice", password: str | bytes = PASSWORD + "\n"
) -> Result:
    return invoke(
        "user", "create", "--config", config, "--username", username, *extra, stdin=password
    )


def listing(config: str) -> list[dict[str, Any]]:
    rows = one_document(invoke("user", "list", "--config", config, "--json"))
    assert isinstance(rows, list)
    return rows


def stored(config: str) -> list[UserRecord]:
    async def read() -> list[UserRecord]:
        store = open_store_for(load(Path(config)))
        try:
            return await store.users.list()
        finally:
            store.close()

    return asyncio.run(read())


def can_log_in(config: str, username: str, password: str) -> bool:
    async def check() -> bool:
        store = open_store_for(load(Path(config)))
        try:
            await LoginChecker(store.users).check(username, password, datetime.now(UTC))
        except LoginFailed:
            return False
        finally:
            store.close()
        return True

    return asyncio.run(check())


# --- create --------------------------------------------------------------------------------------


def test_create_json_is_one_complete_document(config: str) -> None:
    doc = one_document(
        create(
            config,
            "--password-stdin",
            "--scope",
            "notes:read",
            "--scope",
            "notes:write",
            "--json",
            username="Alice@Example.com",
        )
    )
    assert list(doc) == ["user_id", "username", "scopes", "created_at"]
    assert re.fullmatch(r"rg_us_[0-9a-z]{16}", doc["user_id"])
    assert doc["username"] == "alice@example.com"  # stored lower-cased
    assert doc["scopes"] == ["notes:read", "notes:write"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["created_at"])
    [record] = stored(config)
    assert record.user_id == doc["user_id"]
    assert record.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD_HASHER.verify(record.password_hash, PASSWORD)  # the newline is not in it
    assert can_log_in(config, "ALICE@example.com", PASSWORD)
    assert not can_log_in(config, "alice@example.com", PASSWORD + "\n")


def test_create_for_people(config: str) -> None:
    result = create(config, "--password-stdin", "--scope", "notes:read")
    assert result.exit_code == 0, result.output
    [row] = listing(config)
    assert f"user created: {row['user_id']} (alice)" in result.output
    assert "scopes: notes:read" in result.output
    assert PASSWORD not in result.output


@pytest.mark.parametrize(
    ("stdin", "password"),
    [
        (PASSWORD, PASSWORD),  # no newline at all
        (PASSWORD + "\r\n", PASSWORD),  # CR LF is the line ending
        (f"  {PASSWORD}  \nsecond line\n", f"  {PASSWORD}  "),  # only the line ending goes
        ("pässwörd ünïcode\n".encode(), "pässwörd ünïcode"),  # UTF-8 bytes
    ],
    ids=["no-newline", "crlf", "spaces-kept", "utf-8"],
)
def test_password_is_the_first_line_of_stdin(
    config: str, stdin: str | bytes, password: str
) -> None:
    one_document(create(config, "--password-stdin", "--scope", "a", "--json", password=stdin))
    [record] = stored(config)
    assert PASSWORD_HASHER.verify(record.password_hash, password)


def test_password_is_never_printed_nor_stored_in_plain_text(config: str) -> None:
    created = create(config, "--password-stdin", "--scope", "a", "--json")
    listed = invoke("user", "list", "--config", config)
    listed_json = invoke("user", "list", "--config", config, "--json")
    removed = invoke("user", "remove", "alice", "--config", config, "--json")
    for result in (created, listed, listed_json, removed):
        assert result.exit_code == 0
        assert PASSWORD not in result.output and PASSWORD not in result.stderr
        assert "argon2" not in result.output  # nor the hash
    assert create(config, "--password-stdin", "--scope", "a", username="bob").exit_code == 0
    data_dir = Path(config).parent
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") for p in files)
    for path in files:  # the database, its WAL and journal, the config, the key
        content = path.read_bytes()
        assert PASSWORD.encode() not in content, path
        assert PASSWORD.encode("utf-16-le") not in content, path


# --- list and remove ------------------------------------------------------------------------------


def test_list_never_shows_a_hash(config: str) -> None:
    docs = [
        one_document(create(config, "--password-stdin", "--scope", "a", "--json", username=name))
        for name in ("alice", "bob")
    ]
    rows = listing(config)
    assert [r["user_id"] for r in rows] == [d["user_id"] for d in docs]  # oldest first
    for row in rows:
        assert set(row) == {
            "user_id",
            "username",
            "scopes",
            "created_at",
            "state",
            "failed_logins",
            "locked_until",
        }
        assert (row["state"], row["failed_logins"], row["locked_until"]) == ("active", 0, None)
    table = invoke("user", "list", "--config", config)
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split() == ["USER_ID", "USERNAME", "SCOPES", "CREATED_AT", "STATE"]
    assert docs[0]["user_id"] in lines[1] and "alice" in lines[1] and "active" in lines[1]
    assert "$argon2" not in json.dumps(rows) + table.output


def test_list_empty(config: str) -> None:
    assert listing(config) == []
    result = invoke("user", "list", "--config", config)
    assert result.exit_code == 0 and "USER_ID" in result.output and "(none)" in result.output


@pytest.mark.parametrize("by", ["id", "username", "USERNAME"])
@pytest.mark.parametrize("as_json", [True, False])
def test_remove(config: str, by: str, as_json: bool) -> None:
    kept = one_document(create(config, "--password-stdin", "--scope", "a", "--json", username="k"))
    gone = one_document(create(config, "--password-stdin", "--scope", "a", "--json"))
    key = {"id": gone["user_id"], "username": "alice", "USERNAME": "Alice"}[by]
    result = invoke("user", "remove", key, "--config", config, *(["--json"] * as_json))
    if as_json:
        doc = one_document(result)
        assert doc["user_id"] == gone["user_id"] and doc["username"] == "alice"
        assert "password_hash" not in doc
    else:
        assert result.exit_code == 0
        assert f"user {gone['user_id']} (alice) removed." in result.output
    assert [r["user_id"] for r in listing(config)] == [kept["user_id"]]
    assert not can_log_in(config, "alice", PASSWORD)
    again = invoke("user", "remove", key, "--config", config)
    assert again.exit_code == 1


@pytest.mark.parametrize("as_json", [True, False])
def test_remove_unknown(config: str, as_json: bool) -> None:
    result = invoke("user", "remove", "nobody", "--config", config, *(["--json"] * as_json))
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert "no user has the id or username 'nobody'" in line


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [True, False])
def test_duplicate_username_is_refused_whatever_its_case(config: str, as_json: bool) -> None:
    first = one_document(create(config, "--password-stdin", "--scope", "a", "--json"))
    result = create(
        config,
        "--password-stdin",
        "--scope",
        "b",
        *(["--json"] * as_json),
        username="ALICE",
        password="another password\n",
    )
    assert result.exit_code == 1 and result.stdout == ""
    [line] = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert "a user named 'alice' already exists" in line
    [record] = stored(config)
    assert record.user_id == first["user_id"] and record.scopes == ("a",)
    assert PASSWORD_HASHER.verify(record.password_hash, PASSWORD)  # the first one's


BAD = [
    (("--username", "", "--password-stdin", "--scope", "a"), PASSWORD, "--username"),
    (("--username", "zoë", "--password-stdin", "--scope", "a"), PASSWORD, "--username"),
    (("--username", "al ice", "--password-stdin", "--scope", "a"), PASSWORD, "--username"),
    (("--username", "-x", "--password-stdin", "--scope", "a"), PASSWORD, "--username"),
    (("--username", "rg_us_x", "--password-stdin", "--scope", "a"), PASSWORD, "--username"),
    (("--username", "a", "--password-stdin", "--scope", "a b"), PASSWORD, "--scope"),
    (("--username", "a", "--password-stdin", "--scope", "a"), "short\n", "--password-stdin"),
    (("--username", "a", "--password-stdin", "--scope", "a"), "", "--password-stdin"),
    (("--username", "a", "--password-stdin", "--scope", "a"), "\n" + PASSWORD, "--password-stdin"),
    (("--username", "a", "--password-stdin", "--scope", "a"), " " * 10, "--password-stdin"),
    (("--username", "a", "--password-stdin", "--scope", "a"), "x" * 1025, "--password-stdin"),
    (("--username", "a", "--password-stdin", "--scope", "a"), "é" * 5000, "--password-stdin"),
    (("--username", "a", "--password-stdin", "--scope", "a"), b"\xff" * 9, "--password-stdin"),
    (("--username", "a", "--scope", "a"), PASSWORD, "--password-stdin"),  # not given
    (("--password-stdin", "--scope", "a"), PASSWORD, "--username"),  # missing
]


@pytest.mark.parametrize(("args", "stdin", "option"), BAD, ids=lambda v: repr(v)[:60])
@pytest.mark.parametrize("as_json", [False, True])
def test_validation_errors(
    config: str, args: tuple[str, ...], stdin: str | bytes, option: str, as_json: bool
) -> None:
    result = invoke(
        "user", "create", "--config", config, *args, *(["--json"] * as_json), stdin=stdin
    )
    assert result.exit_code == 2, (result.output, result.stderr)
    assert result.stdout == ""
    errors = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert option in errors[0], errors[0]
    assert listing(config) == []


def test_help_says_where_the_password_comes_from() -> None:
    result = invoke("user", "create", "--help")
    assert result.exit_code == 0
    assert "stdin" in result.output and "terminal" in result.output
    assert "lower-cased" in result.output


def test_real_process_json(config: str) -> None:
    """The installed entry point, as a script runs it: the password piped in."""
    base = [sys.executable, "-m", "restguard.cli", "user"]
    argv = ["--username", "svc", "--password-stdin", "--scope", "notes:read", "--json"]
    created = subprocess.run(
        [*base, "create", "--config", config, *argv],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert doc["username"] == "svc"
    listed = subprocess.run(
        [*base, "list", "--json", "--config", config], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert [r["user_id"] for r in json.loads(listed.stdout)] == [doc["user_id"]]


def test_consents_listed_and_revoked_with_their_refresh_tokens(config: str) -> None:
    """`user consents` shows what a user allowed; `user revoke-consent` forgets it (one client,
    then all) and revokes the refresh-token families issued under it."""
    from restguard.store.ports import RefreshTokenRecord

    created = create(config, "--password-stdin", "--scope", "notes:read", "--json")
    user_id = one_document(created)["user_id"]
    now = datetime.now(UTC)

    async def seed() -> None:
        store = open_store_for(load(Path(config)))
        try:
            for client in ("rg_ci_aaaaaaaaaaaaaaaa", "rg_ci_bbbbbbbbbbbbbbbb"):
                await store.consents.grant(user_id, client, ("notes:read",), now)
                await store.refresh_tokens.start_family(
                    RefreshTokenRecord(
                        client.encode(),
                        "fam-" + client,
                        client,
                        user_id,
                        "alice",
                        ("notes:read",),
                        now,
                        now,
                        "jti-" + client,
                        now,
                    )
                )
        finally:
            store.close()

    asyncio.run(seed())
    rows = one_document(invoke("user", "consents", "alice", "--config", config, "--json"))
    assert [(r["client_id"], r["scopes"]) for r in rows] == [
        ("rg_ci_aaaaaaaaaaaaaaaa", ["notes:read"]),
        ("rg_ci_bbbbbbbbbbbbbbbb", ["notes:read"]),
    ]
    one = invoke(
        "user",
        "revoke-consent",
        user_id,
        "--client",
        "rg_ci_aaaaaaaaaaaaaaaa",
        "--config",
        config,
        "--json",
    )
    assert one_document(one) == {
        "user_id": user_id,
        "client_id": "rg_ci_aaaaaaaaaaaaaaaa",
        "consents_revoked": 1,
        "token_families_revoked": 1,
    }
    rows = one_document(invoke("user", "consents", "ALICE", "--config", config, "--json"))
    assert [r["client_id"] for r in rows] == ["rg_ci_bbbbbbbbbbbbbbbb"]
    people = invoke("user", "revoke-consent", "alice", "--config", config)
    assert people.exit_code == 0 and "1 consent(s), 1 refresh token family" in people.output
    assert one_document(invoke("user", "consents", "alice", "--config", config, "--json")) == []
    unknown = invoke("user", "consents", "bob", "--config", config)
    assert unknown.exit_code == 1 and "no user has the id or username 'bob'" in unknown.output


def test_create_without_scopes_as_the_contract_allows(config: str) -> None:
    result = invoke(
        "user",
        "create",
        "--config",
        config,
        "--username",
        "bo",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "may grant no scope" in result.stderr
    assert stored(config)[0].scopes == ()


def test_remove_revokes_the_oauth1_tokens_the_user_authorized(config: str) -> None:
    """`user remove` also revokes the OAuth 1.0a token credentials the user authorized."""
    from datetime import timedelta

    from restguard.credentials.oauth1_consumers import OOB, new_consumer
    from restguard.credentials.oauth1_tokens import (
        is_live,
        new_temporary_credentials,
        new_token_credentials,
        new_verifier,
    )
    from restguard.keys.sealing import Sealer

    created = create(config, "--password-stdin", "--scope", "notes:read", "--json")
    user_id = one_document(created)["user_id"]
    now = datetime.now(UTC)
    sealer = Sealer(b"\x01" * 32)

    async def grant() -> str:
        store = open_store_for(load(Path(config)))
        try:
            owner, _ = new_consumer("svc", ["notes:read"], now=now, sealer=sealer)
            await store.oauth1_consumers.insert(owner)
            temp, _ = new_temporary_credentials(owner, OOB, now=now, sealer=sealer)
            await store.oauth1_tokens.insert(temp)
            _, digest = new_verifier()
            assert await store.oauth1_tokens.authorize(
                temp.token,
                user_id=user_id,
                subject="alice",
                scopes=("notes:read",),
                verifier_hash=digest,
                at=now + timedelta(seconds=1),
            )
            authorized = await store.oauth1_tokens.get(temp.token)
            assert authorized is not None
            access, _ = new_token_credentials(authorized, now=now, sealer=sealer)
            assert await store.oauth1_tokens.exchange(temp.token, digest, access, now) == (
                "exchanged"
            )
            return access.token
        finally:
            store.close()

    async def live(token: str) -> bool:
        store = open_store_for(load(Path(config)))
        try:
            record = await store.oauth1_tokens.get(token)
            return record is not None and is_live(record, datetime.now(UTC))
        finally:
            store.close()

    token = asyncio.run(grant())
    assert asyncio.run(live(token))
    assert invoke("user", "remove", "alice", "--config", config).exit_code == 0
    assert not asyncio.run(live(token))
