"""Packaging: what each install brings and needs (the client without the server's dependencies,
PostgreSQL as an extra with a message naming it), the distribution's metadata and licence."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from restguard.cli.init import write_data_dir

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: Extras whose packages a client application may load: its own, and the test tools (requests).
CLIENT_SIDE_EXTRAS = {"client", "test"}


def _top_level_modules(distribution: str) -> set[str]:
    def norm(name: str) -> str:
        return name.lower().replace("_", "-")

    names = {
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if any(norm(d) == norm(distribution) for d in dists)
    }
    assert names, f"{distribution} is not installed, so it cannot be blocked"
    return names


def server_modules() -> set[str]:
    """Top-level modules of every requirement a client does not ask for: the base dependencies
    and the server-side extras (postgres, fastapi), read from the installed distribution's
    metadata, so that a dependency added later is covered without editing this test."""
    meta = importlib.metadata.metadata("restguard")
    server_extras = {""} | set(meta.get_all("Provides-Extra") or []) - CLIENT_SIDE_EXTRAS
    client = {Requirement(r).name for r in PYPROJECT["project"]["optional-dependencies"]["client"]}
    blocked: set[str] = {"starlette"}  # fastapi's framework, not named by restguard itself
    for raw in meta.get_all("Requires-Dist") or []:
        req = Requirement(raw)
        if req.name in client:
            continue
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in server_extras):
            blocked |= _top_level_modules(req.name)
    return blocked


def python(
    code: str, *, blocked: Iterable[str] = (), args: tuple[str, ...] = (), stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where importing any of ``blocked`` fails, as it
    would where the package is not installed."""
    prelude = f"import sys\nfor _name in {sorted(blocked)!r}:\n    sys.modules[_name] = None\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTGUARD_")}
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


# --- restguard[client] --------------------------------------------------------------------------


def test_the_server_modules_are_what_a_client_does_not_need() -> None:
    blocked = server_modules()
    for module in ("sqlalchemy", "alembic", "psycopg", "uvloop", "httptools", "uvicorn"):
        assert module in blocked
    for module in ("fastapi", "starlette", "click", "prometheus_client", "cryptography"):
        assert module in blocked
    assert "httpx" not in blocked and "requests" not in blocked


def test_client_imports_without_the_servers_dependencies() -> None:
    blocked = server_modules()
    done = python(
        f"""
        import httpx, requests
        from restguard.client import ApiKeyAuth
        from restguard.credentials.apikey import generate_key

        _, key = generate_key()
        seen = []
        def answer(request):
            seen.append(request.headers["authorization"])
            return httpx.Response(200)
        with httpx.Client(transport=httpx.MockTransport(answer)) as client:
            assert client.get("http://api.test/notes", auth=ApiKeyAuth(key)).status_code == 200
        assert seen == ["ApiKey " + key], seen
        prepared = requests.Request("GET", "http://api.test/notes").prepare()
        assert ApiKeyAuth(key, header="x-api-key")(prepared).headers["X-API-Key"] == key
        from restguard.client import SignatureAuth  # RFC 9421 signing, without cryptography

        signed = requests.Request("POST", "http://api.test/notes", data=b"{{}}").prepare()
        SignatureAuth("app_0123456789abcdef", "A" * 43)(signed)
        assert signed.headers["Signature"].startswith("sig1=:")
        assert signed.headers["Content-Digest"].startswith("sha-256=:")
        loaded = sorted(
            name for name, module in sys.modules.items()
            if module is not None and name.split(".")[0] in {sorted(blocked)!r}
        )
        assert not loaded, loaded
        print("ok")
        """,
        blocked=blocked,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


def test_the_blocking_really_blocks() -> None:
    """The twin: code that needs a blocked module fails in the same harness."""
    done = python("import restguard.store.sql", blocked=server_modules())
    assert done.returncode == 1
    assert "ModuleNotFoundError" in done.stderr


# --- restguard[postgres] ------------------------------------------------------------------------

CLI = "from restguard.cli.main import main\nsys.argv = ['restguard', *sys.argv[1:]]\nmain()\n"


def _postgres_config(tmp_path: Path) -> Path:
    config = write_data_dir(tmp_path / "pg")
    text = config.read_text()
    config.write_text(
        text.replace(
            'database = "sqlite:///restguard.db"',
            'database = "postgresql://restguard:s3cret-pw@127.0.0.1:5432/restguard"',
        )
    )
    return config


@pytest.mark.parametrize(
    "command", [("migrate",), ("apikey", "list"), ("serve",), ("audit",)], ids=" ".join
)
def test_postgres_url_without_the_driver_names_the_extra(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    config = _postgres_config(tmp_path)
    done = python(CLI, blocked={"psycopg"}, args=(*command, "--config", str(config)))
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"Error: {config}: storage.database: a PostgreSQL URL needs the PostgreSQL driver "
        "(psycopg), which is not installed. Fix: pip install 'restguard[postgres]'\n"
    )
    assert done.stdout == ""


def test_postgres_url_without_the_driver_embedded(tmp_path: Path) -> None:
    """The same for an application that opens the runtime itself."""
    config = _postgres_config(tmp_path)
    done = python(
        f"""
        import asyncio
        from pathlib import Path
        from restguard.config import load
        from restguard.store.errors import DriverMissing
        from restguard.wiring import open_runtime

        try:
            asyncio.run(open_runtime(load(Path({str(config)!r}))))
        except DriverMissing as exc:
            print(exc)
        """,
        blocked={"psycopg"},
    )
    assert done.returncode == 0, done.stderr
    assert "restguard[postgres]" in done.stdout and "s3cret" not in done.stdout


def test_sqlite_needs_no_postgres_driver(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    init = python(CLI, blocked={"psycopg"}, args=("init", "--dir", str(directory)))
    assert init.returncode == 0, init.stderr
    config = str(directory / "restguard.toml")
    created = python(
        CLI,
        blocked={"psycopg"},
        args=("apikey", "create", "--name", "n", "--json", "--config", config),
    )
    assert created.returncode == 0, created.stderr
    listed = python(CLI, blocked={"psycopg"}, args=("apikey", "list", "--json", "--config", config))
    rows = [row for row in json.loads(listed.stdout) if row["name"] != "bootstrap admin"]
    assert [row["id"] for row in rows] == [json.loads(created.stdout)["id"]]


# --- metadata and licence -----------------------------------------------------------------------


def test_what_each_install_brings() -> None:
    meta = importlib.metadata.metadata("restguard")
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]

    def of(extra: str | None) -> set[str]:
        env = {"extra": extra or ""}
        return {r.name for r in requires if r.marker is None or r.marker.evaluate(env)}

    base = of(None)
    assert {"sqlalchemy", "uvicorn", "httptools", "click"} <= base  # the full server
    assert "psycopg" not in base and "httpx" not in base and "fastapi" not in base
    assert of("postgres") - base == {"psycopg"}
    assert of("client") - base == {"httpx"}
    assert of("fastapi") - base == {"fastapi"}
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    build = PYPROJECT["build-system"]["requires"]
    assert [Requirement(r).specifier.contains("77") for r in build] == [True]
    assert not any(Requirement(r).specifier.contains("76.9") for r in build)


def test_license_is_the_apache_license_text() -> None:
    text = (ROOT / "LICENSE").read_bytes()
    # The text apache.org publishes as LICENSE-2.0.txt (Debian ships it as common-licenses).
    assert (
        hashlib.md5(text, usedforsecurity=False).hexdigest() == "3b83ef96387f14655fc854ddc3c6bd57"
    )


def test_every_dependency_says_why_it_is_there() -> None:
    """The team rule: each requirement has a comment on its line, or sits directly under a
    comment (alone, or in a group of uncommented lines under one comment)."""
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    project = PYPROJECT["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
    for requirement in wanted:
        index = next(i for i, line in enumerate(lines) if f'"{requirement}"' in line)
        if "#" in lines[index].split(f'"{requirement}"', 1)[1]:
            continue
        above = index - 1
        while lines[above].strip().startswith('"') and "#" not in lines[above]:
            above -= 1
        assert lines[above].strip().startswith("#"), f"{requirement}: say why it is here"


def test_the_cli_runs_on_a_base_install_without_the_client_extras(tmp_path: Path) -> None:
    """`pip install restguard` has no httpx (the client extra): the whole CLI, `restguard sign`
    and `restguard oauth1 sign` included (they sign with the wire code and send with urllib),
    runs without it."""
    directory = tmp_path / "data"
    init = python(CLI, blocked={"httpx", "requests"}, args=("init", "--dir", str(directory)))
    assert init.returncode == 0, init.stderr
    secret = "A" * 43
    signed = python(
        CLI,
        blocked={"httpx", "requests"},
        args=("sign", "--key-id", "app_0000000000000000", "--secret-stdin", "--dry-run",
              "--json", "http://127.0.0.1:9/notes"),
        stdin=secret + "\n",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    headers = json.loads(signed.stdout)["headers"]
    assert {"Signature-Input", "Signature"} <= set(headers)
    oauth1 = python(
        CLI,
        blocked={"httpx", "requests"},
        args=("oauth1", "sign", "--consumer-key", "ck_00000000000000000000", "--token",
              "rg_ot_" + "0" * 32, "--secrets-stdin", "--dry-run", "--json", "-d", "a=1",
              "http://127.0.0.1:9/notes"),
        stdin=f"{secret}&{secret}\n",
    )  # fmt: skip
    assert oauth1.returncode == 0, oauth1.stderr
    assert json.loads(oauth1.stdout)["headers"]["Authorization"].startswith("OAuth ")
