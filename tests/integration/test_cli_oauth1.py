"""``restguard oauth1 consumer create|list|revoke`` and ``restguard oauth1 token list|revoke``
through click's CliRunner, on a data dir from ``init``: human and ``--json`` output (exactly one
JSON document), the consumer secret shown once and stored only sealed (the database files never
hold it), RSA keys checked, token credentials listed and revoked without a secret, revoking a
consumer revoking its tokens, and ``master-key rotate`` re-sealing consumer and token secrets."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from restguard.cli.init import write_data_dir
from restguard.cli.main import cli
from restguard.config import load
from restguard.credentials.oauth1_consumers import consumer_secret
from restguard.credentials.oauth1_tokens import (
    new_temporary_credentials,
    new_token_credentials,
    new_verifier,
    token_secret,
)
from restguard.keys.sealing import MASTER_KEY_ENV, Sealer, SealError, load_master_key
from restguard.store.ports import OAuth1ConsumerRecord, OAuth1TokenRecord, Store, UserRecord
from restguard.wiring import open_store_for

T = TypeVar("T")
CREATED_FIELDS = [
    "consumer_key",
    "consumer_secret",
    "name",
    "scopes",
    "callback",
    "signature_methods",
    "created_at",
]
LISTED_FIELDS = [
    "consumer_key",
    "name",
    "scopes",
    "callback",
    "signature_methods",
    "rsa_public_key_sha256",
    "state",
    "created_at",
    "revoked_at",
]
TOKEN_FIELDS = [
    "token",
    "consumer_key",
    "user_id",
    "subject",
    "scopes",
    "state",
    "created_at",
    "expires_at",
    "revoked_at",
]
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
ALICE = "rg_us_alice00000000000"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)


@pytest.fixture
def config(tmp_path: Path) -> str:
    return str(write_data_dir(tmp_path / "data"))


@pytest.fixture(scope="module")
def rsa_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("keys") / "rsa.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    return result


def one_document(result: Result) -> Any:
    assert result.exit_code == 0, (result.output, result.stderr)
    return json.loads(result.stdout)


def create(config: str, *extra: str, name: str = "billing") -> Result:
    return invoke("oauth1", "consumer", "create", "--config", config, "--name", name, *extra)


def create_json(config: str, *extra: str, name: str = "billing") -> dict[str, Any]:
    doc = one_document(create(config, "--scope", "notes:read", *extra, "--json", name=name))
    assert isinstance(doc, dict)
    return doc


def consumers(config: str) -> list[dict[str, Any]]:
    rows = one_document(invoke("oauth1", "consumer", "list", "--config", config, "--json"))
    assert isinstance(rows, list)
    return rows


def tokens(config: str, *extra: str) -> list[dict[str, Any]]:
    rows = one_document(invoke("oauth1", "token", "list", "--config", config, "--json", *extra))
    assert isinstance(rows, list)
    return rows


def with_store(config: str, action: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        store = open_store_for(load(Path(config)))
        try:
            return await action(store)
        finally:
            store.close()

    return asyncio.run(go())


def stored(config: str) -> dict[str, OAuth1ConsumerRecord]:
    return {r.consumer_key: r for r in with_store(config, lambda s: s.oauth1_consumers.list())}


def sealer(config: str) -> Sealer:
    return Sealer(load_master_key(load(Path(config)).master_key_path))


def database_bytes(config: str) -> bytes:
    """Every byte of the SQLite database, its WAL included."""
    directory = Path(config).parent
    return b"".join(p.read_bytes() for p in sorted(directory.glob("restguard.db*")))


def grant(config: str, consumer_key: str, user_id: str = ALICE) -> tuple[OAuth1TokenRecord, str]:
    """What the provider will do: temporary credentials, authorized by ``user_id``, exchanged
    for token credentials; the token credentials and their secret."""
    seal = sealer(config)

    async def go(store: Store) -> tuple[OAuth1TokenRecord, str]:
        if await store.users.get(user_id) is None:
            name = user_id.removeprefix("rg_us_").rstrip("0")
            await store.users.insert(UserRecord(user_id, name, "$argon2id$x", ("a",), now))
        consumer = await store.oauth1_consumers.get(consumer_key)
        assert consumer is not None
        temp, _ = new_temporary_credentials(consumer, "oob", now=now, sealer=seal)
        await store.oauth1_tokens.insert(temp)
        _, digest = new_verifier()
        assert await store.oauth1_tokens.authorize(
            temp.token,
            user_id=user_id,
            subject=user_id.removeprefix("rg_us_").rstrip("0"),
            scopes=consumer.scopes,
            verifier_hash=digest,
            at=now,
        )
        authorized = await store.oauth1_tokens.get(temp.token)
        assert authorized is not None
        access, secret = new_token_credentials(authorized, now=now, sealer=seal)
        assert await store.oauth1_tokens.exchange(temp.token, digest, access, now) == "exchanged"
        return access, secret

    now = datetime.now(UTC)
    return with_store(config, go)


# --- consumer create -----------------------------------------------------------------------------


def test_create_json_and_the_secret_is_only_stored_sealed(config: str) -> None:
    doc = create_json(
        config,
        "--scope",
        "notes:write",
        "--scope",
        "notes:read",
        "--callback",
        "https://a.example/cb",
    )
    assert list(doc) == CREATED_FIELDS
    assert re.fullmatch(r"ck_[0-9a-z]{20}", doc["consumer_key"])
    assert doc["name"] == "billing" and doc["callback"] == "https://a.example/cb"
    assert doc["scopes"] == ["notes:read", "notes:write"]
    assert doc["signature_methods"] == ["HMAC-SHA1", "HMAC-SHA256", "PLAINTEXT"]
    assert re.fullmatch(ISO, doc["created_at"])
    secret = doc["consumer_secret"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    raw = base64.urlsafe_b64decode(secret + "=")
    record = stored(config)[doc["consumer_key"]]
    assert consumer_secret(record, sealer(config)) == secret  # the verifier gets it back
    everything = database_bytes(config)
    assert secret.encode() not in everything and raw not in everything
    assert base64.b64encode(raw) not in everything and raw.hex().encode() not in everything


def test_create_for_people_shows_the_secret_once(config: str) -> None:
    result = create(config, "--scope", "a")
    assert result.exit_code == 0, result.output
    [row] = consumers(config)
    assert f"Consumer created: {row['consumer_key']} (billing)" in result.output
    [secret] = re.findall(r"consumer_secret: +(\S+)", result.output)
    assert consumer_secret(stored(config)[row["consumer_key"]], sealer(config)) == secret
    assert "none (oob only)" in result.output and "shown once" in result.output


def test_create_with_an_rsa_key(config: str, rsa_pem: str) -> None:
    doc = create_json(config, "--rsa-public-key", rsa_pem)
    assert doc["signature_methods"] == ["HMAC-SHA1", "HMAC-SHA256", "RSA-SHA1", "PLAINTEXT"]
    record = stored(config)[doc["consumer_key"]]
    assert record.rsa_public_key is not None
    [row] = consumers(config)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", row["rsa_public_key_sha256"])
    only = create_json(
        config, "--rsa-public-key", rsa_pem, "--signature-method", "rsa-sha1", name="rsa-only"
    )
    assert only["signature_methods"] == ["RSA-SHA1"]
    human = create(config, "--scope", "a", "--rsa-public-key", rsa_pem, name="people")
    assert human.exit_code == 0 and "RSA public key:    SHA-256 " in human.output


def test_create_with_chosen_signature_methods(config: str) -> None:
    doc = create_json(config, "--signature-method", "HMAC-SHA256")
    assert doc["signature_methods"] == ["HMAC-SHA256"]
    assert stored(config)[doc["consumer_key"]].signature_methods == ("HMAC-SHA256",)


def test_config_before_the_subcommand(config: str) -> None:
    result = invoke(
        "--config", config, "oauth1", "consumer", "create", "--name", "n", "--scope", "a", "--json"
    )
    assert one_document(result)["name"] == "n"


def test_create_refuses_a_wrong_master_key_and_seals_nothing(
    config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, "A" * 43)
    result = create(config, "--scope", "a")
    assert result.exit_code == 1 and "does not open" in result.output
    monkeypatch.delenv(MASTER_KEY_ENV)
    assert stored(config) == {}


def test_a_private_key_is_refused_and_never_echoed(config: str, tmp_path: Path) -> None:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "private.pem"
    path.write_bytes(pem)
    result = create(config, "--scope", "a", "--rsa-public-key", str(path))
    assert result.exit_code == 2
    assert "--rsa-public-key: the file holds a private key; never give restguard" in result.stderr
    assert pem.splitlines()[1].decode() not in result.output
    assert stored(config) == {}
    assert pem.splitlines()[1] not in database_bytes(config)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--name", "", "--scope", "a"), "--name: must not be empty"),
        (("--name", "n", "--scope", "a,b"), "--scope: 'a,b' has a comma"),
        (("--name", "n"), "Missing option '--scope'"),
        (("--name", "n", "--scope", "a", "--callback", "http://a.example/cb"), "--callback: "),
        (("--name", "n", "--scope", "a", "--callback", "oob"), "omit the option"),
        (("--name", "n", "--scope", "a", "--signature-method", "MD5"), "'MD5' is not one of"),
        (("--name", "n", "--scope", "a", "--signature-method", "RSA-SHA1"), "RSA-SHA1 needs"),
        (("--name", "n", "--scope", "a", "--rsa-public-key", "/nonexistent.pem"), "cannot read"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    config: str, extra: tuple[str, ...], message: str
) -> None:
    result = invoke("oauth1", "consumer", "create", "--config", config, *extra)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert stored(config) == {}


def test_weak_and_foreign_keys_are_refused(config: str, tmp_path: Path) -> None:
    weak = tmp_path / "weak.pem"
    weak.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    result = create(config, "--scope", "a", "--rsa-public-key", str(weak))
    assert result.exit_code == 2 and "1024 bits is too short" in result.stderr
    ed = tmp_path / "ed.pem"
    ed.write_bytes(
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    result = create(config, "--scope", "a", "--rsa-public-key", str(ed))
    assert result.exit_code == 2 and "needs an RSA key" in result.stderr
    assert stored(config) == {}


# --- consumer list and revoke --------------------------------------------------------------------


def test_list_never_shows_a_secret(config: str, rsa_pem: str) -> None:
    one = create_json(config, name="one")
    two = create_json(config, "--rsa-public-key", rsa_pem, name="two")
    rows = consumers(config)
    assert [r["consumer_key"] for r in rows] == [one["consumer_key"], two["consumer_key"]]
    assert all(list(r) == LISTED_FIELDS and r["state"] == "active" for r in rows)
    text = json.dumps(rows)
    assert one["consumer_secret"] not in text and two["consumer_secret"] not in text
    human = invoke("oauth1", "consumer", "list", "--config", config)
    assert human.exit_code == 0 and one["consumer_key"] in human.output
    assert one["consumer_secret"] not in human.output


def test_list_empty(config: str) -> None:
    assert consumers(config) == []
    assert invoke("oauth1", "consumer", "list", "--config", config).exit_code == 0


@pytest.mark.parametrize("as_json", [True, False])
def test_revoking_a_consumer_revokes_its_tokens(config: str, as_json: bool) -> None:
    doc = create_json(config)
    other = create_json(config, name="other")
    access, _ = grant(config, doc["consumer_key"])
    kept, _ = grant(config, other["consumer_key"])
    args = ["oauth1", "consumer", "revoke", doc["consumer_key"], "--config", config]
    result = invoke(*args, *(["--json"] if as_json else []))
    if as_json:
        revoked = one_document(result)
        assert list(revoked) == LISTED_FIELDS and revoked["state"] == "revoked"
        assert doc["consumer_secret"] not in result.output
    else:
        assert result.exit_code == 0
        assert (
            f"Consumer {doc['consumer_key']} (billing) revoked, with its tokens." in result.output
        )
    states = {t["token"]: t["state"] for t in tokens(config)}
    assert states == {access.token: "revoked", kept.token: "active"}
    assert [r["state"] for r in consumers(config)] == ["revoked", "active"]


def test_revoke_unknown_consumer(config: str) -> None:
    result = invoke("oauth1", "consumer", "revoke", "ck_nosuch", "--config", config)
    assert result.exit_code == 1
    assert "no consumer has the consumer_key 'ck_nosuch'" in result.stderr


# --- token list and revoke -----------------------------------------------------------------------


def test_token_list_filters_and_never_shows_a_secret(config: str) -> None:
    one = create_json(config, name="one")["consumer_key"]
    two = create_json(config, name="two")["consumer_key"]
    a1, s1 = grant(config, one)
    a2, s2 = grant(config, two)
    b1, _ = grant(config, one, "rg_us_bob0000000000000")
    rows = tokens(config)
    assert [r["token"] for r in rows] == [a1.token, a2.token, b1.token]  # no temporary ones
    assert all(list(r) == TOKEN_FIELDS and r["state"] == "active" for r in rows)
    assert rows[0]["user_id"] == ALICE and rows[0]["subject"] == "alice"
    assert rows[0]["consumer_key"] == one and rows[0]["scopes"] == ["notes:read"]
    assert s1 not in json.dumps(rows) and s2 not in json.dumps(rows)
    assert [r["token"] for r in tokens(config, "--user", ALICE)] == [a1.token, a2.token]
    assert [r["token"] for r in tokens(config, "--user", "Alice")] == [a1.token, a2.token]
    assert [r["token"] for r in tokens(config, "--consumer", one)] == [a1.token, b1.token]
    assert [r["token"] for r in tokens(config, "--user", "bob", "--consumer", two)] == []
    human = invoke("oauth1", "token", "list", "--config", config)
    assert human.exit_code == 0 and a1.token in human.output and s1 not in human.output
    unknown = invoke("oauth1", "token", "list", "--config", config, "--user", "nobody")
    assert unknown.exit_code == 1 and "no user has the id or username 'nobody'" in unknown.stderr
    database = database_bytes(config)
    assert s1.encode() not in database and s2.encode() not in database


def test_token_revoke(config: str) -> None:
    key = create_json(config)["consumer_key"]
    a1, s1 = grant(config, key)
    a2, _ = grant(config, key)
    result = invoke("oauth1", "token", "revoke", a1.token, "--config", config, "--json")
    doc = one_document(result)
    assert list(doc) == TOKEN_FIELDS and doc["state"] == "revoked" and s1 not in result.output
    assert re.fullmatch(ISO, doc["revoked_at"])
    human = invoke("oauth1", "token", "revoke", a2.token, "--config", config)
    assert human.exit_code == 0 and f"Token {a2.token} (alice) revoked." in human.output
    assert [r["state"] for r in tokens(config)] == ["revoked", "revoked"]
    unknown = invoke("oauth1", "token", "revoke", "rg_ot_nosuch", "--config", config)
    assert unknown.exit_code == 1 and "no OAuth 1.0a token 'rg_ot_nosuch'" in unknown.stderr


# --- the master key ------------------------------------------------------------------------------


def test_master_key_rotate_reseals_consumer_and_token_secrets(config: str) -> None:
    doc = create_json(config)
    access, secret = grant(config, doc["consumer_key"])
    old_sealer = sealer(config)
    before = stored(config)[doc["consumer_key"]]
    out = one_document(invoke("master-key", "rotate", "--config", config, "--json"))
    # the consumer's secret, the temporary credentials' and the token credentials'
    assert out["resealed"] == 3
    new_sealer = sealer(config)
    after = stored(config)[doc["consumer_key"]]
    assert after.sealed_secret != before.sealed_secret
    assert consumer_secret(after, new_sealer) == doc["consumer_secret"]
    with pytest.raises(SealError):
        consumer_secret(after, old_sealer)
    got = with_store(config, lambda s: s.oauth1_tokens.get(access.token))
    assert got is not None and got.sealed_secret != access.sealed_secret
    assert token_secret(got, new_sealer) == secret
    with pytest.raises(SealError):
        token_secret(got, old_sealer)
    later = create_json(config, name="later")
    assert (
        consumer_secret(stored(config)[later["consumer_key"]], new_sealer)
        == (later["consumer_secret"])
    )
