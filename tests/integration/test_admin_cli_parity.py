"""The CLI (``restguard apikey ... --json``) and the admin REST API (``/api/apikeys``) give the
same results for the same operations: the same listing of one data dir, changes made through
one seen through the other, the same output fields (the API adds ``etag``), the same errors;
and a property test applies random sequences of operations to two fresh data dirs, one
through each, and finds the same outcomes and listings (modulo ids and times).

The API runs on a real admin listener (``run_servers`` in a background thread); the CLI runs
in-process through click's CliRunner on the same data dir (SQLite), as an operator would
run it beside a serving restguard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from restguard.cli.init import bootstrap_admin_key
from restguard.cli.main import cli
from restguard.manage.apikeys import BOOTSTRAP_NAME
from tests.harness import GatewayProcess, RecordingUpstream

KEY_FIELDS = {"id", "name", "key", "scopes", "expires_at"}
ROTATED_FIELDS = KEY_FIELDS | {"old_id", "grace_ends_at"}
UNKNOWN = "nosuchkey000"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv("RESTGUARD_MASTER_KEY", raising=False)


@dataclass
class Outcome:
    """What one operation gave: ``ok`` and its JSON, or the error text (and HTTP status)."""

    ok: bool
    data: Any = None
    error: str = ""
    status: int = 0


@dataclass
class Cli:
    config: str
    runner: CliRunner = field(default_factory=CliRunner)

    def __call__(self, *args: str) -> Outcome:
        result = self.runner.invoke(cli, [*args, "--config", self.config], catch_exceptions=False)
        if result.exit_code == 0:
            return Outcome(True, json.loads(result.stdout) if "--json" in args else None)
        assert result.exit_code == 1, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith("Error: "), line
        return Outcome(False, error=line.removeprefix("Error: "))

    def create(self, name: str, *scopes: str, expires_in: str | None = None) -> Outcome:
        args = [f"--scope={s}" for s in scopes]
        if expires_in:
            args.append(f"--expires-in={expires_in}")
        return self("apikey", "create", "--json", f"--name={name}", *args)

    def listing(self) -> list[dict[str, Any]]:
        out = self("apikey", "list", "--json")
        assert out.ok
        rows: list[dict[str, Any]] = out.data
        return rows

    def revoke(self, key_id: str) -> Outcome:
        return self("apikey", "revoke", "--json", key_id)

    def rotate(self, key_id: str, grace: str | None = None) -> Outcome:
        extra = [f"--grace={grace}"] if grace else []
        return self("apikey", "rotate", "--json", *extra, key_id)


@dataclass
class Api:
    url: str
    key: str
    session: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, body: Any = None) -> Outcome:
        r = self.session.request(
            method, self.url + path, headers={"X-API-Key": self.key}, json=body, timeout=10
        )
        data = r.json()
        if r.status_code < 300:
            return Outcome(True, data, status=r.status_code)
        return Outcome(False, data, data["error_description"], r.status_code)

    def create(self, name: str, *scopes: str, expires_in: str | None = None) -> Outcome:
        body: dict[str, Any] = {"name": name, "scopes": list(scopes)}
        if expires_in:
            body["expires_in"] = expires_in
        return self.call("POST", "/api/apikeys", body)

    def listing(self) -> list[dict[str, Any]]:
        out = self.call("GET", "/api/apikeys?limit=1000")
        assert out.ok and out.data["next"] is None
        rows: list[dict[str, Any]] = out.data["items"]
        return rows

    def get(self, key_id: str) -> Outcome:
        return self.call("GET", f"/api/apikeys/{key_id}")

    def revoke(self, key_id: str) -> Outcome:
        return self.call("POST", f"/api/apikeys/{key_id}/revoke")

    def rotate(self, key_id: str, grace: str | None = None) -> Outcome:
        body = {"grace": grace} if grace else None
        return self.call("POST", f"/api/apikeys/{key_id}/rotate", body)


@dataclass
class Both:
    """One data dir, served, and the CLI on it."""

    cli: Cli
    api: Api
    admin_id: str


def serve(directory: Path) -> tuple[GatewayProcess, RecordingUpstream, dict[str, Any]]:
    """A running restguard on a new data dir, and its bootstrap admin key."""
    upstream = RecordingUpstream()
    gateway = GatewayProcess(directory, upstream)
    boot = bootstrap_admin_key(gateway.config)
    gateway.start()
    return gateway, upstream, boot


@pytest.fixture
def both(tmp_path: Path) -> Iterator[Both]:
    gateway, upstream, boot = serve(tmp_path / "d")
    try:
        yield Both(Cli(str(gateway.config)), Api(gateway.admin_url, boot["key"]), boot["id"])
    finally:
        gateway.stop()
        upstream.stop()


def without_etag(data: dict[str, Any]) -> dict[str, Any]:
    assert "etag" in data
    return {k: v for k, v in data.items() if k != "etag"}


def same_listing(both: Both) -> list[dict[str, Any]]:
    """The CLI's listing and the API's are the same keys, fields and values (the API adds
    ``etag``); the admin key's ``last_used_at`` is the API's own bookkeeping, so it may move
    between the two reads."""
    via_api = [without_etag(row) for row in both.api.listing()]
    via_cli = both.cli.listing()
    for rows in (via_api, via_cli):
        for row in rows:
            if row["id"] == both.admin_id:
                row["last_used_at"] = "(the admin key's bookkeeping)"
    assert via_cli == via_api
    return via_cli


# --- explicit cases on one data dir -------------------------------------------------------


def test_keys_made_through_either_list_the_same_through_both(both: Both) -> None:
    by_cli = both.cli.create("from-cli", "a", "b", expires_in="30d")
    by_api = both.api.create("from-api", "a", expires_in="1h")
    plain = both.api.create("plain")
    assert by_cli.ok and by_api.ok and plain.ok
    rows = same_listing(both)
    ids = [both.admin_id, by_cli.data["id"], by_api.data["id"], plain.data["id"]]
    assert [r["id"] for r in rows] == ids
    assert [r["name"] for r in rows] == [BOOTSTRAP_NAME, "from-cli", "from-api", "plain"]
    assert [r["state"] for r in rows] == ["active"] * 4
    # create's output: the same fields, but the API's etag
    assert set(by_cli.data) == KEY_FIELDS
    assert set(without_etag(by_api.data)) == KEY_FIELDS
    for made in (by_cli, by_api, plain):
        one = both.api.get(made.data["id"])
        assert one.ok
        row = next(r for r in rows if r["id"] == made.data["id"])
        assert without_etag(one.data) == row
        assert {k: row[k] for k in ("name", "scopes", "expires_at")} == {
            k: made.data[k] for k in ("name", "scopes", "expires_at")
        }


def test_a_revocation_through_one_shows_through_the_other(both: Both) -> None:
    by_cli = both.cli.create("from-cli").data
    by_api = both.api.create("from-api").data
    through_api = both.api.revoke(by_cli["id"])
    assert through_api.ok and through_api.data["state"] == "revoked"
    through_cli = both.cli.revoke(by_api["id"])
    assert through_cli.ok and through_cli.data["state"] == "revoked"
    assert set(through_cli.data) == set(without_etag(through_api.data))
    rows = {r["id"]: r for r in same_listing(both)}
    assert rows[by_cli["id"]] == without_etag(through_api.data)
    assert rows[by_api["id"]] == through_cli.data
    assert without_etag(both.api.get(by_api["id"]).data) == through_cli.data
    # revoking again is the same no-op through both
    again_cli, again_api = both.cli.revoke(by_cli["id"]), both.api.revoke(by_api["id"])
    assert again_cli.data == rows[by_cli["id"]]
    assert without_etag(again_api.data) == rows[by_api["id"]]


@pytest.mark.parametrize("grace", [None, "1h"])
def test_rotations_give_the_same_fields_and_show_through_both(
    both: Both, grace: str | None
) -> None:
    by_cli = both.cli.create("from-cli", "s", expires_in="30d").data
    by_api = both.api.create("from-api", "s", expires_in="30d").data
    rotated_by_api = both.api.rotate(by_cli["id"], grace)
    rotated_by_cli = both.cli.rotate(by_api["id"], grace)
    assert rotated_by_api.ok and rotated_by_api.status == 201 and rotated_by_cli.ok
    assert set(rotated_by_cli.data) == ROTATED_FIELDS
    assert set(without_etag(rotated_by_api.data)) == ROTATED_FIELDS
    pairs = ((by_cli, rotated_by_api.data), (by_api, rotated_by_cli.data))
    for old, new in pairs:
        assert new["old_id"] == old["id"] and new["id"] != old["id"]
        assert {k: new[k] for k in ("name", "scopes", "expires_at")} == {
            k: old[k] for k in ("name", "scopes", "expires_at")
        }
    rows = {r["id"]: r for r in same_listing(both)}
    for old, new in pairs:
        assert rows[old["id"]]["state"] == ("grace" if grace else "revoked")
        assert rows[old["id"]]["revoked_at"] == new["grace_ends_at"]
        assert rows[new["id"]]["state"] == "active"


def test_errors_are_the_same_through_both(both: Both) -> None:
    message = f"no API key has the id '{UNKNOWN}'"
    for cli_out, api_out in (
        (both.cli.revoke(UNKNOWN), both.api.revoke(UNKNOWN)),
        (both.cli.rotate(UNKNOWN), both.api.rotate(UNKNOWN)),
        (both.cli.rotate(UNKNOWN, "1h"), both.api.rotate(UNKNOWN, "1h")),
        (both.cli.revoke(UNKNOWN), both.api.get(UNKNOWN)),
    ):
        assert not cli_out.ok and cli_out.error == message
        assert not api_out.ok and api_out.status == 404
        assert api_out.data["error"] == "not_found"
        assert message in api_out.error
    # a revoked key cannot be rotated, through either
    gone = both.cli.create("gone").data["id"]
    assert both.cli.revoke(gone).ok
    cli_out, api_out = both.cli.rotate(gone), both.api.rotate(gone)
    assert not cli_out.ok and not api_out.ok and api_out.status == 409
    assert cli_out.error == f"API key '{gone}' is revoked; create a new one"
    assert cli_out.error in api_out.error
    # and the refusals changed nothing
    assert [r["id"] for r in same_listing(both)] == [both.admin_id, gone]


# --- the same operations on two fresh data dirs ---------------------------------------------

NAMES = st.sampled_from(["svc", "ci", "backup job"])
SCOPES = st.lists(st.sampled_from(["a", "b", "notes:read"]), max_size=2, unique=True)
CREATE = st.tuples(st.just("create"), NAMES, SCOPES, st.sampled_from([None, "30d"]))
OPERATIONS = st.tuples(  # a create first: the others need a key
    CREATE,
    st.lists(
        st.one_of(
            CREATE,
            st.tuples(st.just("revoke"), st.integers(1, 3)),
            st.tuples(st.just("rotate"), st.integers(1, 3), st.sampled_from([None, "1h"])),
            st.tuples(st.just("unknown"), st.sampled_from(["revoke", "rotate"])),
        ),
        max_size=5,
    ),
).map(lambda ops: [ops[0], *ops[1]])


class World:
    """One data dir, changed through one interface; keys are named by creation order."""

    def __init__(self, side: Cli | Api, admin_id: str) -> None:
        self.side, self.ids = side, [admin_id]

    def apply(self, op: tuple[Any, ...]) -> tuple[Any, ...]:
        """The outcome of ``op``: its kind, ok or error, and the answer or error text in the
        terms of ``shape`` (ids as creation indexes)."""
        kind = op[0]
        if kind == "create":
            out = self.side.create(op[1], *op[2], expires_in=op[3])
        elif kind == "unknown":
            out = getattr(self.side, op[1])(UNKNOWN)
        else:
            key_id = self.ids[max(1, len(self.ids) - op[1])]  # the op[1]-th newest key
            out = self.side.revoke(key_id) if kind == "revoke" else self.side.rotate(key_id, op[2])
        if not out.ok:
            return (kind, "error", self.anonymous(out.error.removeprefix("id: ")))
        if "key" in out.data:
            self.ids.append(out.data["id"])
        return (kind, "ok", self.shape(out.data))

    def anonymous(self, text: str) -> str:
        for n, key_id in enumerate(self.ids):
            text = text.replace(key_id, f"#{n}")
        return text

    def shape(self, data: dict[str, Any]) -> tuple[Any, ...]:
        """A record or new key without its key and etag; ids as creation indexes; an end
        (expiry, revocation, grace) as whole minutes from now (0, 60, 43200); a start
        (created, last used) as whether it is set."""
        now = datetime.now(UTC)
        shaped: list[tuple[str, Any]] = []
        for k, v in data.items():
            if k in ("key", "etag"):
                continue
            if k in ("id", "old_id"):
                v = self.anonymous(v)
            elif k in ("created_at", "last_used_at"):
                v = v is not None
            elif k.endswith("_at") and v is not None:
                v = round((datetime.fromisoformat(v) - now).total_seconds() / 60)
            shaped.append((k, v))
        return tuple(sorted(shaped))

    def listing(self) -> list[tuple[Any, ...]]:
        return [self.shape(r) for r in self.side.listing() if r["id"] != self.ids[0]]


@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(operations=OPERATIONS)
@example(  # every path at least once: grace, rotating a key in grace, a revoked one
    operations=[
        ("create", "svc", ["a", "b"], "30d"),
        ("rotate", 1, "1h"),
        ("rotate", 2, None),
        ("create", "ci", [], None),
        ("revoke", 1),
        ("rotate", 1, "1h"),
        ("revoke", 3),
        ("unknown", "revoke"),
        ("unknown", "rotate"),
    ]
)
def test_the_same_operations_give_the_same_results_through_either(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[Any, ...]]
) -> None:
    gateway, upstream, boot = serve(tmp_path_factory.mktemp("api") / "d")
    try:
        cli_dir = tmp_path_factory.mktemp("cli") / "d"
        runner = CliRunner()
        init = runner.invoke(cli, ["init", "--dir", str(cli_dir)], catch_exceptions=False)
        assert init.exit_code == 0, init.output
        side = Cli(str(cli_dir / "restguard.toml"), runner)
        (cli_admin,) = [r["id"] for r in side.listing() if r["name"] == BOOTSTRAP_NAME]
        through_cli = World(side, cli_admin)
        through_api = World(Api(gateway.admin_url, boot["key"]), boot["id"])
        for op in operations:
            assert through_cli.apply(op) == through_api.apply(op), op
        assert through_cli.listing() == through_api.listing()
    finally:
        gateway.stop()
        upstream.stop()
