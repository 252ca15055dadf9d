"""``restguard app create|list|revoke|rotate`` through click's CliRunner, on a data dir from
``init``, with real keys generated here: human and ``--json`` output (exactly one JSON document
on stdout), the hmac secret shown once and stored only sealed (the database files never hold it),
public keys checked, every error one clear message (exit 2 naming the option, 1 for a refused
action, never a traceback)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from restguard.cli.init import write_data_dir
from restguard.cli.main import cli
from restguard.config import load
from restguard.credentials.apps import decode_secret, verification_key
from restguard.keys.sealing import MASTER_KEY_ENV, Sealer, SealError, load_master_key
from restguard.store.ports import AppRecord
from restguard.wiring import open_store_for
from tests.signature_support import keyed_with

CREATED_FIELDS = ["key_id", "secret", "alg", "name", "scopes", "created_at"]
LISTED_FIELDS = [
    "key_id",
    "name",
    "alg",
    "scopes",
    "state",
    "public_key_sha256",
    "created_at",
    "revoked_at",
]
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)


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


def create(config: str, *extra: str, name: str = "billing") -> Result:
    return invoke("app", "create", "--config", config, "--name", name, *extra)


def create_json(config: str, *extra: str, name: str = "billing") -> dict[str, Any]:
    doc = one_document(create(config, "--scope", "notes:read", *extra, "--json", name=name))
    assert isinstance(doc, dict)
    return doc


def listing(config: str) -> list[dict[str, Any]]:
    rows = one_document(invoke("app", "list", "--config", config, "--json"))
    assert isinstance(rows, list)
    return rows


def stored(config: str) -> dict[str, AppRecord]:
    async def read() -> list[AppRecord]:
        store = open_store_for(load(Path(config)))
        try:
            return await store.apps.list()
        finally:
            store.close()

    return {r.key_id: r for r in asyncio.run(read())}


def sealer(config: str) -> Sealer:
    return Sealer(load_master_key(load(Path(config)).master_key_path))


def write_public(tmp_path: Path, private: Any, name: str = "public.pem") -> str:
    path = tmp_path / name
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


def der(private: Any) -> bytes:
    return bytes(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def database_bytes(config: str) -> bytes:
    """Every byte of the SQLite database, its WAL included."""
    directory = Path(config).parent
    return b"".join(p.read_bytes() for p in sorted(directory.glob("restguard.db*")))


# --- create --------------------------------------------------------------------------------------


def test_create_hmac_json_and_the_secret_is_only_stored_sealed(config: str) -> None:
    doc = create_json(config, "--scope", "notes:write", "--scope", "notes:read")
    assert list(doc) == CREATED_FIELDS
    assert re.fullmatch(r"app_[0-9a-z]{16}", doc["key_id"])
    assert doc["alg"] == "hmac-sha256" and doc["name"] == "billing"  # the default algorithm
    assert doc["scopes"] == ["notes:read", "notes:write"]  # repeats count once, first order
    assert re.fullmatch(ISO, doc["created_at"])
    secret = doc["secret"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    key = base64.urlsafe_b64decode(secret + "=")
    assert len(key) == 32 and decode_secret(secret) == key
    record = stored(config)[doc["key_id"]]
    assert record.public_key is None and record.sealed_secret is not None
    assert keyed_with(verification_key(record, sealer(config)), key)  # the key, back
    everything = database_bytes(config)
    assert secret.encode() not in everything and key not in everything
    assert base64.b64encode(key) not in everything and key.hex().encode() not in everything


def test_create_hmac_for_people_shows_the_secret_once(config: str) -> None:
    result = create(config, "--scope", "notes:read", "--alg", "hmac-sha256")
    assert result.exit_code == 0, result.output
    [app] = listing(config)
    assert f"App created: {app['key_id']} (billing, hmac-sha256)" in result.output
    [secret] = re.findall(r"secret: +(\S+)", result.output)
    record = stored(config)[app["key_id"]]
    assert keyed_with(verification_key(record, sealer(config)), decode_secret(secret))
    assert "shown once" in result.output and "Store the secret now" in result.output


def test_create_ed25519(config: str, tmp_path: Path) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    path = write_public(tmp_path, private)
    doc = create_json(config, "--alg", "ed25519", "--public-key", path)
    assert list(doc) == CREATED_FIELDS and doc["secret"] is None and doc["alg"] == "ed25519"
    record = stored(config)[doc["key_id"]]
    assert record.sealed_secret is None and record.public_key == der(private)
    public = verification_key(record, sealer(config))
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(private.sign(b"signature base"), b"signature base")


def test_create_ecdsa_p256_for_people(config: str, tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    path = write_public(tmp_path, private)
    result = create(
        config, "--scope", "a", "--alg", "ecdsa-p256-sha256", "--public-key", path, name="edge"
    )
    assert result.exit_code == 0, result.output
    [app] = listing(config)
    assert app["alg"] == "ecdsa-p256-sha256"
    assert stored(config)[app["key_id"]].public_key == der(private)
    assert f"App created: {app['key_id']} (edge, ecdsa-p256-sha256)" in result.output
    assert f"public key: SHA-256 {app['public_key_sha256']}" in result.output
    assert "secret:" not in result.output and "holds only the public key" in result.output


def test_config_before_the_subcommand(config: str) -> None:
    result = invoke("--config", config, "app", "create", "--name", "n", "--scope", "a", "--json")
    assert one_document(result)["alg"] == "hmac-sha256"


def test_create_refuses_a_wrong_master_key_and_seals_nothing(
    config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, "A" * 43)
    result = create(config, "--scope", "a")
    assert result.exit_code == 1
    assert "does not open" in result.output
    assert len(result.output.strip().splitlines()) <= 3
    monkeypatch.delenv(MASTER_KEY_ENV)
    assert stored(config) == {}


# --- create: refused options ---------------------------------------------------------------------


def private_file(tmp_path: Path) -> tuple[str, bytes]:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "private.pem"
    path.write_bytes(pem)
    return str(path), pem


def test_a_private_key_is_refused_and_never_echoed(config: str, tmp_path: Path) -> None:
    path, pem = private_file(tmp_path)
    result = create(config, "--scope", "a", "--alg", "ed25519", "--public-key", path)
    assert result.exit_code == 2
    assert "--public-key: the file holds a private key; never give restguard" in result.stderr
    assert "-pubout" in result.stderr
    body = pem.splitlines()[1].decode()
    assert body not in result.output
    assert stored(config) == {}
    assert pem.splitlines()[1] not in database_bytes(config)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--name", "", "--scope", "a"), "--name: must not be empty"),
        (("--name", "a\nb", "--scope", "a"), "--name: must not contain control characters"),
        (("--name", "n", "--scope", "a,b"), "--scope: 'a,b' has a comma"),
        (("--name", "n"), "Missing option '--scope'"),
        (("--name", "n", "--scope", "a", "--alg", "rsa-pss-sha512"), "'rsa-pss-sha512' is not"),
        (("--name", "n", "--scope", "a", "--alg", "ed25519"), "--public-key: an ed25519 app needs"),
        (
            ("--name", "n", "--scope", "a", "--alg", "ecdsa-p256-sha256"),
            "--public-key: an ecdsa-p256-sha256 app needs",
        ),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    config: str, extra: tuple[str, ...], message: str
) -> None:
    result = invoke("app", "create", "--config", config, *extra)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert message in result.stderr
    assert stored(config) == {}


def test_public_key_problems(config: str, tmp_path: Path) -> None:
    ed = write_public(tmp_path, ed25519.Ed25519PrivateKey.generate(), "ed.pem")
    p384 = write_public(tmp_path, ec.generate_private_key(ec.SECP384R1()), "p384.pem")
    rsa_key = write_public(tmp_path, rsa.generate_private_key(65537, 2048), "rsa.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key\n")
    cases = [
        (("--public-key", ed), "--public-key: an hmac-sha256 app has a secret"),
        (("--alg", "ecdsa-p256-sha256", "--public-key", ed), "an Ed25519 key, but --alg"),
        (("--alg", "ecdsa-p256-sha256", "--public-key", p384), "the curve secp384r1"),
        (("--alg", "ed25519", "--public-key", rsa_key), "RSA is not offered"),
        (("--alg", "ed25519", "--public-key", str(garbage)), "the file is not PEM"),
        (("--alg", "ed25519", "--public-key", str(tmp_path / "none.pem")), "cannot read"),
        (("--alg", "ed25519", "--public-key", str(tmp_path)), "is a directory"),
    ]
    for extra, message in cases:
        result = create(config, "--scope", "a", *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.stderr, (extra, result.stderr)
    assert stored(config) == {}


# --- list and revoke -----------------------------------------------------------------------------


def test_list_never_shows_a_secret(config: str, tmp_path: Path) -> None:
    hmac_app = create_json(config, name="one")
    ed_app = create_json(
        config,
        "--alg",
        "ed25519",
        "--public-key",
        write_public(tmp_path, ed25519.Ed25519PrivateKey.generate()),
        name="two",
    )
    rows = listing(config)
    assert [r["key_id"] for r in rows] == [hmac_app["key_id"], ed_app["key_id"]]  # oldest first
    for row in rows:
        assert list(row) == LISTED_FIELDS
        assert row["state"] == "active" and row["revoked_at"] is None
    assert rows[0]["public_key_sha256"] is None
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", rows[1]["public_key_sha256"])
    table = invoke("app", "list", "--config", config)
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split() == ["KEY_ID", "NAME", "ALG", "SCOPES", "STATE", "CREATED_AT"]
    assert hmac_app["key_id"] in lines[1] and "hmac-sha256" in lines[1]
    assert ed_app["key_id"] in lines[2] and "ed25519" in lines[2]
    assert hmac_app["secret"] not in json.dumps(rows) + table.output


def test_list_empty(config: str) -> None:
    assert listing(config) == []
    result = invoke("app", "list", "--config", config)
    assert result.exit_code == 0 and "KEY_ID" in result.output and "(none)" in result.output


@pytest.mark.parametrize("as_json", [True, False])
def test_revoke(config: str, as_json: bool) -> None:
    kept = create_json(config, name="kept")
    gone = create_json(config, name="gone")
    args = ("app", "revoke", gone["key_id"], "--config", config)
    result = invoke(*args, *(["--json"] * as_json))
    if as_json:
        doc = one_document(result)
        assert list(doc) == LISTED_FIELDS
        assert doc["key_id"] == gone["key_id"] and doc["state"] == "revoked"
        assert re.fullmatch(ISO, doc["revoked_at"])
    else:
        assert result.exit_code == 0
        assert f"App {gone['key_id']} (gone) revoked." in result.output
    states = {r["key_id"]: r["state"] for r in listing(config)}
    assert states == {kept["key_id"]: "active", gone["key_id"]: "revoked"}
    first = next(r for r in listing(config) if r["key_id"] == gone["key_id"])
    again = one_document(invoke(*args, "--json"))  # revoking twice keeps the first time
    assert again["revoked_at"] == first["revoked_at"]


@pytest.mark.parametrize("as_json", [True, False])
def test_revoke_unknown_key_id(config: str, as_json: bool) -> None:
    result = invoke("app", "revoke", "app_nosuch", "--config", config, *(["--json"] * as_json))
    assert result.exit_code == 1 and result.stdout == ""
    assert "no app has the key_id 'app_nosuch'" in result.stderr


# --- rotate --------------------------------------------------------------------------------------


def test_rotate_without_grace_stops_the_old_key_at_once(config: str) -> None:
    old = create_json(config, "--scope", "notes:write")
    before = datetime.now(UTC).replace(microsecond=0)
    doc = one_document(invoke("app", "rotate", old["key_id"], "--config", config, "--json"))
    assert list(doc) == [*CREATED_FIELDS, "old_id", "grace_ends_at"]
    assert doc["old_id"] == old["key_id"] and doc["key_id"] != old["key_id"]
    assert (doc["name"], doc["alg"], doc["scopes"]) == (old["name"], old["alg"], old["scopes"])
    assert doc["secret"] != old["secret"] and len(decode_secret(doc["secret"])) == 32
    ends = datetime.fromisoformat(doc["grace_ends_at"])
    assert before <= ends <= datetime.now(UTC)
    states = {r["key_id"]: r["state"] for r in listing(config)}
    assert states == {old["key_id"]: "revoked", doc["key_id"]: "active"}
    records = stored(config)
    assert keyed_with(
        verification_key(records[doc["key_id"]], sealer(config)), decode_secret(doc["secret"])
    )
    everything = database_bytes(config)
    assert doc["secret"].encode() not in everything
    assert decode_secret(doc["secret"]) not in everything


def test_rotate_with_grace(config: str) -> None:
    old = create_json(config)
    start = datetime.now(UTC)
    doc = one_document(
        invoke("app", "rotate", old["key_id"], "--grace", "1h", "--config", config, "--json")
    )
    ends = datetime.fromisoformat(doc["grace_ends_at"])
    ends_text = doc["grace_ends_at"]
    assert timedelta(minutes=59) < ends - start <= timedelta(hours=1)
    rows = {r["key_id"]: r for r in listing(config)}
    assert rows[old["key_id"]]["state"] == "grace"
    assert rows[old["key_id"]]["revoked_at"] == doc["grace_ends_at"]
    assert rows[doc["key_id"]]["state"] == "active"
    # both secrets open while the grace lasts: the old one is not touched
    records = stored(config)
    assert keyed_with(
        verification_key(records[old["key_id"]], sealer(config)), decode_secret(old["secret"])
    )
    table = invoke("app", "list", "--config", config)
    assert f"grace until {doc['grace_ends_at']}" in table.output
    # the old one has its successor: it is not rotated again (that would make a second one)
    again = invoke("app", "rotate", old["key_id"], "--grace", "2h", "--config", config)
    assert again.exit_code == 1 and "rotated already" in again.output, again.output
    assert "Traceback" not in again.output
    assert {r["key_id"] for r in listing(config)} == {old["key_id"], doc["key_id"]}
    assert {r["key_id"]: r for r in listing(config)}[old["key_id"]]["revoked_at"] == ends_text


def test_rotate_human_output(config: str) -> None:
    old = create_json(config)
    result = invoke("app", "rotate", old["key_id"], "--grace", "10m", "--config", config)
    assert result.exit_code == 0, result.output
    assert f"rotated from {old['key_id']}" in result.output
    assert f"old key_id: {old['key_id']} works until" in result.output
    assert "shown once" in result.output


def test_rotate_public_key_app(config: str, tmp_path: Path) -> None:
    first = ec.generate_private_key(ec.SECP256R1())
    old = create_json(
        config,
        "--alg",
        "ecdsa-p256-sha256",
        "--public-key",
        write_public(tmp_path, first, "first.pem"),
    )
    args = ("app", "rotate", old["key_id"], "--config", config)
    missing = invoke(*args)
    assert missing.exit_code == 2
    assert "--public-key: rotating an ecdsa-p256-sha256 app needs" in missing.stderr
    same = invoke(*args, "--public-key", write_public(tmp_path, first, "same.pem"))
    assert same.exit_code == 2 and "the app's current public key" in same.stderr
    wrong = invoke(
        *args,
        "--public-key",
        write_public(tmp_path, ed25519.Ed25519PrivateKey.generate(), "ed.pem"),
    )
    assert wrong.exit_code == 2 and "needs a P-256" in wrong.stderr
    private_path, _ = private_file(tmp_path)
    leaked = invoke(*args, "--public-key", private_path)
    assert leaked.exit_code == 2 and "never give restguard" in leaked.stderr
    assert [r["state"] for r in listing(config)] == ["active"]  # nothing changed
    second = ec.generate_private_key(ec.SECP256R1())
    doc = one_document(
        invoke(*args, "--grace", "5m", "--public-key", write_public(tmp_path, second), "--json")
    )
    assert doc["secret"] is None and doc["alg"] == "ecdsa-p256-sha256"
    assert doc["old_id"] == old["key_id"]
    assert stored(config)[doc["key_id"]].public_key == der(second)
    assert stored(config)[old["key_id"]].public_key == der(first)


def test_rotate_hmac_refuses_a_public_key(config: str, tmp_path: Path) -> None:
    old = create_json(config)
    path = write_public(tmp_path, ed25519.Ed25519PrivateKey.generate())
    result = invoke("app", "rotate", old["key_id"], "--public-key", path, "--config", config)
    assert result.exit_code == 2
    assert "--public-key: an hmac-sha256 app gets a new secret" in result.stderr
    assert len(listing(config)) == 1


def test_rotate_errors(config: str) -> None:
    unknown = invoke("app", "rotate", "app_nosuch", "--config", config)
    assert unknown.exit_code == 1 and "no app has the key_id 'app_nosuch'" in unknown.stderr
    old = create_json(config)
    invoke("app", "revoke", old["key_id"], "--config", config)
    revoked = invoke("app", "rotate", old["key_id"], "--config", config)
    assert revoked.exit_code == 1
    assert f"app '{old['key_id']}' is revoked; create a new one" in revoked.stderr
    bad = invoke("app", "rotate", old["key_id"], "--grace", "1y", "--config", config)
    assert bad.exit_code == 2 and "--grace" in bad.stderr and "not a duration" in bad.stderr
    assert len(listing(config)) == 1


# --- the master key ------------------------------------------------------------------------------


def test_master_key_rotate_reseals_app_secrets(config: str, tmp_path: Path) -> None:
    """An app's sealed secret still opens after ``restguard master-key rotate`` -- with the new
    master key only -- and public keys are left as they were."""
    hmac_app = create_json(config)
    ed_app = create_json(
        config,
        "--alg",
        "ed25519",
        "--public-key",
        write_public(tmp_path, ed25519.Ed25519PrivateKey.generate()),
    )
    old_sealer = sealer(config)
    before = stored(config)
    out = one_document(invoke("master-key", "rotate", "--config", config, "--json"))
    assert out["resealed"] == 1  # the app's secret (no signing key yet; public keys are none)
    after = stored(config)
    new_sealer = sealer(config)
    record = after[hmac_app["key_id"]]
    assert record.sealed_secret != before[hmac_app["key_id"]].sealed_secret
    assert keyed_with(verification_key(record, new_sealer), decode_secret(hmac_app["secret"]))
    with pytest.raises(SealError):
        verification_key(record, old_sealer)
    assert after[ed_app["key_id"]] == before[ed_app["key_id"]]
    # and apps made afterwards are sealed with the new key
    later = create_json(config, name="later")
    assert keyed_with(
        verification_key(stored(config)[later["key_id"]], new_sealer),
        decode_secret(later["secret"]),
    )
