"""``restguard issuer add|list|remove`` through click's CliRunner (and one real process), on a
data dir from ``init``: human and ``--json`` output (exactly one JSON document on stdout), every
validation error as one clear message (exit 2 for a bad option, 1 for a refused action, never a
traceback), removal by id and by issuer URL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from restguard.cli.init import write_data_dir
from restguard.cli.main import cli
from restguard.config import load
from tests.jwt_support import JWKSServer, Signer, jwks_of

ISS = "https://idp.example/"
AUD = "https://api.example"
KEYS = (Signer.generate("EdDSA", "ed-1"), Signer.generate("ES256", "ec-1"))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv("RESTGUARD_MASTER_KEY", raising=False)


@pytest.fixture(scope="module")
def jwks() -> Iterator[JWKSServer]:
    server = JWKSServer()
    server.serve("/jwks", jwks_of(*KEYS))
    yield server
    server.stop()


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


def add(config: str, jwks: JWKSServer, *extra: str, iss: str = ISS) -> Result:
    return invoke(
        "issuer",
        "add",
        "--config",
        config,
        "--issuer",
        iss,
        "--jwks-uri",
        jwks.url("/jwks"),
        "--audience",
        AUD,
        *extra,
    )


def listing(config: str) -> list[dict[str, Any]]:
    rows = one_document(invoke("issuer", "list", "--config", config, "--json"))
    assert isinstance(rows, list)
    return rows


# --- add, list, remove ---


def test_add_json_is_one_complete_document(config: str, jwks: JWKSServer) -> None:
    doc = one_document(
        add(
            config,
            jwks,
            "--json",
            "--scope-claim",
            "scp",
            "--alg",
            "ES256",
            "--alg",
            "ed25519",
            "--typ",
            "at+jwt",
            "--leeway",
            "30s",
        )
    )
    assert doc["issuer"] == ISS and doc["audience"] == AUD
    assert doc["jwks_uri"] == jwks.url("/jwks")
    assert doc["algorithms"] == ["ES256", "EdDSA"]
    assert doc["scope_claim"] == "scp" and doc["typ"] == "at+jwt"
    assert doc["leeway_seconds"] == 30
    assert doc["jwks_keys"] == 2 and doc["jwks_problem"] is None
    assert isinstance(doc["id"], str) and doc["id"] and doc["created_at"]
    listed = {k: v for k, v in doc.items() if k not in ("jwks_keys", "jwks_problem")}
    assert listing(config) == [listed]


def test_add_defaults(config: str, jwks: JWKSServer) -> None:
    doc = one_document(add(config, jwks, "--json"))
    assert sorted(doc["algorithms"]) == ["ES256", "EdDSA", "RS256"]
    assert doc["scope_claim"] == "scope" and doc["typ"] is None and doc["leeway_seconds"] == 0


def test_add_for_people(config: str, jwks: JWKSServer) -> None:
    result = add(config, jwks)
    assert result.exit_code == 0, result.output
    [row] = listing(config)
    assert f"issuer added: {row['id']} ({ISS})" in result.output
    assert "2 usable key(s)" in result.output
    table = invoke("issuer", "list", "--config", config)
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["ID", "ISSUER", "AUDIENCE"]
    assert row["id"] in lines[1] and ISS in lines[1] and AUD in lines[1]


def test_add_with_an_unreachable_jwks_warns_but_adds(config: str) -> None:
    dead = "http://127.0.0.1:9/jwks"  # discard port: nothing listens
    result = invoke(
        "issuer",
        "add",
        "--config",
        config,
        "--issuer",
        ISS,
        "--jwks-uri",
        dead,
        "--audience",
        AUD,
        "--json",
    )
    doc = one_document(result)
    assert doc["jwks_keys"] is None and "connection" in doc["jwks_problem"]
    result = invoke(
        "issuer",
        "add",
        "--config",
        config,
        "--issuer",
        "https://b.example/",
        "--jwks-uri",
        dead,
        "--audience",
        AUD,
    )
    assert result.exit_code == 0
    assert "could not be read now" in result.output + result.stderr


def test_list_empty(config: str) -> None:
    assert listing(config) == []
    result = invoke("issuer", "list", "--config", config)
    assert result.exit_code == 0 and "ID" in result.output


@pytest.mark.parametrize("by", ["id", "issuer"])
@pytest.mark.parametrize("as_json", [True, False])
def test_remove(config: str, jwks: JWKSServer, by: str, as_json: bool) -> None:
    kept = one_document(add(config, jwks, "--json", iss="https://kept.example/"))
    gone = one_document(add(config, jwks, "--json"))
    target = gone["id"] if by == "id" else ISS
    result = invoke(
        "issuer", "remove", target, "--config", config, *(["--json"] if as_json else [])
    )
    if as_json:
        doc = one_document(result)
        assert doc["id"] == gone["id"] and doc["issuer"] == ISS
    else:
        assert result.exit_code == 0
        assert f"issuer {gone['id']} ({ISS}) removed." in result.output
    assert [row["id"] for row in listing(config)] == [kept["id"]]


@pytest.mark.parametrize("as_json", [True, False])
def test_remove_unknown_id(config: str, jwks: JWKSServer, as_json: bool) -> None:
    one_document(add(config, jwks, "--json"))
    result = invoke("issuer", "remove", "nosuchid", "--config", config, *(["--json"] * as_json))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no issuer has the id 'nosuchid'" in result.stderr
    # a look-alike of the issuer URL is not the issuer
    result = invoke("issuer", "remove", ISS.rstrip("/"), "--config", config)
    assert result.exit_code == 1
    assert len(listing(config)) == 1


def test_duplicate_issuer_is_a_clear_message(config: str, jwks: JWKSServer) -> None:
    one_document(add(config, jwks, "--json"))
    for extra in ((), ("--json",)):
        result = add(config, jwks, *extra)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert f"the issuer {ISS} is already trusted" in result.stderr
    assert len(listing(config)) == 1


# --- validation errors ---


def _add_args(jwks: JWKSServer, **over: str) -> list[str]:
    opts = {"--issuer": ISS, "--jwks-uri": jwks.url("/jwks"), "--audience": AUD} | over
    return [x for k, v in opts.items() for x in (k, v)]


BAD_OPTIONS = [
    ({"--issuer": "not a url"}, "--issuer"),
    ({"--issuer": "idp.example"}, "--issuer"),
    ({"--issuer": "ftp://idp.example/"}, "--issuer"),
    ({"--issuer": "http://idp.example/"}, "--issuer"),  # http only on loopback
    ({"--issuer": "https://idp.example/?tenant=a"}, "--issuer"),
    ({"--issuer": "https://idp.example/#x"}, "--issuer"),
    ({"--issuer": "https://idp.example/\u0456"}, "--issuer"),
    ({"--issuer": "https://idp.example/" + "x" * 200}, "--issuer"),
    ({"--jwks-uri": "http://idp.example/jwks"}, "--jwks-uri"),
    ({"--jwks-uri": "https://user:pw@idp.example/jwks"}, "--jwks-uri"),
    ({"--jwks-uri": "file:///etc/passwd"}, "--jwks-uri"),
    ({"--jwks-uri": "not a url"}, "--jwks-uri"),
    ({"--audience": ""}, "--audience"),
    ({"--audience": " api"}, "--audience"),
    ({"--alg": "HS256"}, "--alg"),
    ({"--alg": "none"}, "--alg"),
    ({"--alg": "PS256"}, "--alg"),
    ({"--scope-claim": "roles"}, "--scope-claim"),
    ({"--leeway": "61s"}, "--leeway"),
    ({"--leeway": "2m"}, "--leeway"),
    ({"--leeway": "soon"}, "--leeway"),
    ({"--typ": "at jwt"}, "--typ"),
]


@pytest.mark.parametrize(("over", "option"), BAD_OPTIONS, ids=lambda v: repr(v)[:60])
@pytest.mark.parametrize("as_json", [False, True])
def test_validation_errors(
    config: str, jwks: JWKSServer, over: dict[str, str], option: str, as_json: bool
) -> None:
    args = ["issuer", "add", "--config", config, *_add_args(jwks, **over)]
    result = invoke(*args, *(["--json"] * as_json))
    assert result.exit_code == 2, (result.output, result.stderr)
    assert result.stdout == ""
    errors = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert option in errors[0], errors[0]
    assert listing(config) == []


@pytest.mark.parametrize("public_url", ["http://127.0.0.1:8080", "http://127.0.0.1:8080/"])
def test_own_public_url_is_refused(config: str, jwks: JWKSServer, public_url: str) -> None:
    assert load(Path(config)).server.public_url.rstrip("/") == "http://127.0.0.1:8080"
    result = invoke(
        "issuer", "add", "--config", config, *_add_args(jwks, **{"--issuer": public_url})
    )
    assert result.exit_code == 2
    [line] = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert "--issuer" in line and "public_url" in line
    assert listing(config) == []


def test_loopback_http_issuer_is_allowed(config: str, jwks: JWKSServer) -> None:
    doc = one_document(add(config, jwks, "--json", iss="http://127.0.0.1:9999/realms/dev"))
    assert doc["issuer"] == "http://127.0.0.1:9999/realms/dev"


def test_missing_required_options(config: str) -> None:
    result = invoke("issuer", "add", "--config", config, "--issuer", ISS)
    assert result.exit_code == 2 and "Missing option" in result.stderr


def test_real_process_json(config: str, jwks: JWKSServer) -> None:
    """The installed entry point, as a script runs it: stdout parses as one document."""
    base = [sys.executable, "-m", "restguard.cli", "issuer"]
    added = subprocess.run(
        [*base, "add", "--config", config, *_add_args(jwks), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    doc = json.loads(added.stdout)
    listed = subprocess.run(
        [*base, "list", "--json", "--config", config], capture_output=True, text=True, timeout=60
    )
    assert [row["id"] for row in json.loads(listed.stdout)] == [doc["id"]]
    removed = subprocess.run(
        [*base, "remove", doc["id"], "--json", "--config", config],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(removed.stdout)["id"] == doc["id"]
    assert "Traceback" not in added.stderr + listed.stderr + removed.stderr
