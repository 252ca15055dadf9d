"""``/api/users`` on the admin listener, through HTTP: a user created here can log in (the
store's password check), a removed one cannot; the password is never echoed, listed, audited
or put in an error; every bad input is 400 naming the field and changes nothing; 404, 409,
412, consents listed and revoked, the audit line of every change, and the same records as
``restguard user``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from restguard.cli.main import cli
from restguard.oauth2.users import LoginChecker, LoginFailed
from restguard.store.ports import RefreshTokenRecord
from restguard.tokens import redact
from tests.integration.admin_support import AdminClient, open_admin

BASE = "/api/users"
PASSWORD = "correct horse battery staple"


class Admin(AdminClient):
    async def users(self) -> list[dict[str, Any]]:
        r = await self.get(BASE, params={"limit": "1000"})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    async def can_log_in(self, username: str, password: str) -> bool:
        """The store's password check (the login page's)."""
        checker = LoginChecker(self.runtime.store.users)
        try:
            await checker.check(username, password, self.runtime.clock.now())
        except LoginFailed:
            return False
        return True


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    async with open_admin(tmp_path, Admin) as a:
        yield a


async def make(admin: Admin, **body: Any) -> dict[str, Any]:
    r = await admin.post(
        BASE, {"username": "alice", "password": PASSWORD, "scopes": ["notes:read"], **body}
    )
    assert r.status_code == 201, r.text
    return r.json()


def audit_lines(admin: Admin) -> list[dict[str, Any]]:
    admin.runtime.audit.flush()  # type: ignore[union-attr]
    if not admin.audit.exists():
        return []
    return [json.loads(line) for line in admin.audit.read_text().splitlines()]


def changes(admin: Admin) -> list[str]:
    return [x["detail"] for x in audit_lines(admin) if (x["detail"] or "").startswith("admin ")]


def same_changes(seen: list[str], expected: list[str]) -> bool:
    """The audit log redacts every ``rg_xx_`` token in a line's detail, public ids
    (``rg_us_``) included: each expected line, as written or as redacted."""
    return len(seen) == len(expected) and all(
        s in (e, redact(e)) for s, e in zip(seen, expected, strict=True)
    )


# --- create --------------------------------------------------------------------------------


async def test_a_created_user_can_log_in_and_the_password_is_never_shown(admin: Admin) -> None:
    r = await admin.post(
        BASE, {"username": "Alice", "password": PASSWORD, "scopes": ["notes:read", "notes:read"]}
    )
    assert r.status_code == 201, r.text
    data = r.json()
    assert list(data) == ["user_id", "username", "scopes", "created_at", "etag"]
    assert data["user_id"].startswith("rg_us_") and data["username"] == "alice"
    assert data["scopes"] == ["notes:read"]
    assert r.headers["location"] == f"{BASE}/{data['user_id']}"
    assert r.headers["etag"] == data["etag"]
    assert PASSWORD not in r.text and "argon2" not in r.text
    # the real effect: the store's password check accepts it (any case of the name)
    assert await admin.can_log_in("alice", PASSWORD)
    assert await admin.can_log_in("ALICE", PASSWORD)
    assert not await admin.can_log_in("alice", PASSWORD + "!")
    record = await admin.runtime.store.users.by_username("alice")
    assert record is not None and record.password_hash.startswith("$argon2id$")
    one = await admin.get(f"{BASE}/{data['user_id']}")
    assert one.status_code == 200 and one.headers["etag"] == data["etag"]
    assert set(one.json()) == {
        "user_id",
        "username",
        "scopes",
        "created_at",
        "state",
        "failed_logins",
        "locked_until",
        "etag",
    }
    assert one.json()["state"] == "active"
    assert one.json()["failed_logins"] == 1  # the wrong password above
    by_name = await admin.get(f"{BASE}/ALICE")
    assert by_name.status_code == 200 and by_name.json()["user_id"] == data["user_id"]
    listing = await admin.get(BASE)
    assert PASSWORD not in listing.text and "argon2" not in listing.text


async def test_a_user_without_scopes_as_the_cli_allows(admin: Admin) -> None:
    r = await admin.post(BASE, {"username": "bob", "password": PASSWORD})
    assert r.status_code == 201 and r.json()["scopes"] == []
    assert await admin.can_log_in("bob", PASSWORD)


ALICE = {"username": "alice", "password": PASSWORD}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": PASSWORD}, "username"),
        ({"username": "alice"}, "password"),
        ({**ALICE, "username": ""}, "username"),
        ({**ALICE, "username": 5}, "username"),
        ({**ALICE, "username": "zoë"}, "username"),
        ({**ALICE, "username": "al ice"}, "username"),
        ({**ALICE, "username": "-x"}, "username"),
        ({**ALICE, "username": "rg_us_x"}, "username"),
        ({**ALICE, "username": "a" * 65}, "username"),
        ({**ALICE, "password": "short"}, "password"),
        ({**ALICE, "password": ""}, "password"),
        ({**ALICE, "password": " " * 10}, "password"),
        ({**ALICE, "password": "x" * 1025}, "password"),
        ({**ALICE, "password": "tab\there!!"}, "password"),
        ({**ALICE, "password": 12345678}, "password"),
        ({**ALICE, "password": None}, "password"),
        ({**ALICE, "scopes": "a b"}, "scopes"),
        ({**ALICE, "scopes": ["a b"]}, "scopes"),
        ({**ALICE, "scopes": [1]}, "scopes"),
        ({**ALICE, "password_hash": "$argon2id$x"}, "password_hash"),
        ({**ALICE, "user_id": "rg_us_0000000000000000"}, "user_id"),
    ],
)
async def test_bad_fields_are_400_naming_the_field_and_change_nothing(
    admin: Admin, body: dict[str, Any], field: str
) -> None:
    before = await admin.users()
    r = await admin.post(BASE, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.json()["field"] == field
    assert r.json()["error_description"].startswith(f"{field}: ")
    password = body.get("password")
    if isinstance(password, str) and password.strip():
        assert password not in r.text  # never echoed
    assert await admin.users() == before
    assert changes(admin) == []


async def test_a_refused_password_is_never_echoed(admin: Admin) -> None:
    for secret in ("s3cr3t!", "tab\tpassword-x", "p" * 1025):
        r = await admin.post(BASE, {"username": "carol", "password": secret})
        assert r.status_code == 400 and r.json()["field"] == "password"
        assert secret not in r.text and secret[:7] not in r.text
    assert await admin.users() == []


async def test_a_duplicate_username_is_409_whatever_its_case(admin: Admin) -> None:
    first = await make(admin)
    before = await admin.users()
    r = await admin.post(BASE, {"username": "ALICE", "password": "another password"})
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "conflict" and r.json()["field"] == "username"
    assert "already exists" in r.json()["error_description"]
    assert "another password" not in r.text
    assert await admin.users() == before
    assert await admin.can_log_in("alice", PASSWORD)  # the first one's
    assert not await admin.can_log_in("alice", "another password")
    assert same_changes(changes(admin), [f"admin user.create {first['user_id']}"])


# --- who gets in ---------------------------------------------------------------------------


async def test_no_key_is_401_and_a_non_admin_key_is_403(admin: Admin) -> None:
    made = await make(admin)
    uid = made["user_id"]
    calls = (
        ("GET", BASE, None),
        ("POST", BASE, {"username": "eve", "password": PASSWORD}),
        ("GET", f"{BASE}/{uid}", None),
        ("DELETE", f"{BASE}/{uid}", None),
        ("GET", f"{BASE}/{uid}/consents", None),
        ("POST", f"{BASE}/{uid}/revoke-consent", None),
    )
    for method, path, body in calls:
        r = await admin.client.request(method, path, json=body)
        assert r.status_code == 401, (method, path)
        assert "ApiKey" in r.headers["www-authenticate"]
    plain = await admin.post("/api/apikeys", {"name": "reader", "scopes": ["notes:read"]})
    key = plain.json()["key"]
    for method, path, body in calls:
        r = await admin.client.request(method, path, json=body, headers=admin.auth(key))
        assert r.status_code == 403, (method, path)
        assert r.json()["error"] == "insufficient_scope"
    assert [u["user_id"] for u in await admin.users()] == [uid]
    assert await admin.can_log_in("alice", PASSWORD)


# --- read, list ----------------------------------------------------------------------------


async def test_unknown_users_paths_and_methods(admin: Admin) -> None:
    for path in (f"{BASE}/nobody", f"{BASE}/rg_us_0000000000000000", f"{BASE}/nobody/consents"):
        r = await admin.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"] == "not_found" and r.json()["field"] == "id"
    assert (await admin.delete(f"{BASE}/nobody")).status_code == 404
    assert (await admin.post(f"{BASE}/nobody/revoke-consent")).status_code == 404
    assert (await admin.get(f"{BASE}/-x")).status_code == 404
    r = await admin.delete(BASE)
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    r = await admin.post(f"{BASE}/nobody")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, HEAD"


async def test_pages_and_filters(admin: Admin) -> None:
    made = [
        await make(admin, username=f"u{i}", scopes=["even" if i % 2 else "odd"]) for i in range(5)
    ]
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await admin.get(BASE, params=params)).json()
        assert len(page["items"]) <= 2
        seen += [u["user_id"] for u in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [m["user_id"] for m in made]
    odd = (await admin.get(BASE, params={"scope": "odd"})).json()["items"]
    assert [u["username"] for u in odd] == ["u0", "u2", "u4"]
    named = (await admin.get(BASE, params={"username": "U3"})).json()["items"]
    assert [u["user_id"] for u in named] == [made[3]["user_id"]]
    active = (await admin.get(BASE, params={"state": "active"})).json()["items"]
    assert len(active) == 5
    assert (await admin.get(BASE, params={"state": "locked"})).json()["items"] == []
    for query, field in (
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("state=gone", "state"),
        ("after=rg_us_nobody", "after"),
        ("password=x", "password"),
        ("username=a&username=b", "username"),
    ):
        r = await admin.get(f"{BASE}?{query}")
        assert r.status_code == 400 and r.json()["field"] == field, query


# --- remove --------------------------------------------------------------------------------


async def test_remove_by_id_or_username_and_the_user_can_no_longer_log_in(admin: Admin) -> None:
    kept = await make(admin, username="kept")
    gone = await make(admin)
    r = await admin.delete(f"{BASE}/Alice")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["user_id"] == gone["user_id"] and data["username"] == "alice"
    assert "password_hash" not in data and r.headers["etag"] == data["etag"]
    assert not await admin.can_log_in("alice", PASSWORD)
    assert await admin.can_log_in("kept", PASSWORD)
    assert [u["user_id"] for u in await admin.users()] == [kept["user_id"]]
    assert (await admin.delete(f"{BASE}/{gone['user_id']}")).status_code == 404
    r = await admin.delete(f"{BASE}/{kept['user_id']}")
    assert r.status_code == 200 and await admin.users() == []
    assert same_changes(
        changes(admin),
        [
            f"admin user.create {kept['user_id']}",
            f"admin user.create {gone['user_id']}",
            f"admin user.remove {gone['user_id']}",
            f"admin user.remove {kept['user_id']}",
        ],
    )
    for line in audit_lines(admin):
        if (line["detail"] or "").startswith("admin "):
            assert line["credential_id"] == admin.key_id and line["auth_method"] == "api_key"
    assert PASSWORD not in admin.audit.read_text()


async def test_remove_honours_if_match(admin: Admin) -> None:
    made = await make(admin)
    path = f"{BASE}/{made['user_id']}"
    etag = (await admin.get(path)).headers["etag"]
    assert etag == made["etag"]
    r = await admin.delete(path, headers={"If-Match": '"stale"'})
    assert r.status_code == 412 and r.json()["error"] == "precondition_failed"
    assert (await admin.delete(path, headers={"If-Match": "nonsense"})).status_code == 400
    assert await admin.can_log_in("alice", PASSWORD)
    assert len(await admin.users()) == 1
    assert (await admin.delete(path, headers={"If-Match": f'"x", {etag}'})).status_code == 200
    assert not await admin.can_log_in("alice", PASSWORD)
    again = await make(admin)
    assert again["etag"] != etag  # a new user: a new tag
    star = await admin.delete(f"{BASE}/{again['user_id']}", headers={"If-Match": "*"})
    assert star.status_code == 200
    assert (await admin.delete(path, headers={"If-Match": "*"})).status_code == 404


# --- consents ------------------------------------------------------------------------------


async def seed_consents(admin: Admin, user_id: str) -> list[str]:
    store = admin.runtime.store
    now = admin.runtime.clock.now()
    clients = ["rg_ci_aaaaaaaaaaaaaaaa", "rg_ci_bbbbbbbbbbbbbbbb"]
    for client in clients:
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
    return clients


async def test_consents_listed_and_revoked_with_their_refresh_tokens(admin: Admin) -> None:
    made = await make(admin)
    uid = made["user_id"]
    a, b = await seed_consents(admin, uid)
    r = await admin.get(f"{BASE}/alice/consents")
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["next"] is None
    assert [(c["client_id"], c["scopes"]) for c in page["items"]] == [
        (a, ["notes:read"]),
        (b, ["notes:read"]),
    ]
    first = (await admin.get(f"{BASE}/{uid}/consents", params={"limit": "1"})).json()
    assert [c["client_id"] for c in first["items"]] == [a] and first["next"] == a
    rest = (await admin.get(f"{BASE}/{uid}/consents", params={"after": a})).json()
    assert [c["client_id"] for c in rest["items"]] == [b]
    r = await admin.post(f"{BASE}/{uid}/revoke-consent", {"client_id": a})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "user_id": uid,
        "username": "alice",
        "client_id": a,
        "consents_revoked": 1,
        "token_families_revoked": 1,
    }
    family = await admin.runtime.store.refresh_tokens.get(a.encode())
    assert family is not None and family.family_revoked_at is not None
    left = (await admin.get(f"{BASE}/{uid}/consents")).json()["items"]
    assert [c["client_id"] for c in left] == [b]
    r = await admin.post(f"{BASE}/ALICE/revoke-consent")  # every application
    assert r.status_code == 200 and r.json()["consents_revoked"] == 1
    assert r.json()["client_id"] is None and r.json()["token_families_revoked"] == 1
    assert (await admin.get(f"{BASE}/{uid}/consents")).json()["items"] == []
    bad = await admin.post(f"{BASE}/{uid}/revoke-consent", {"client_id": 5})
    assert bad.status_code == 400 and bad.json()["field"] == "client_id"
    bad = await admin.post(f"{BASE}/{uid}/revoke-consent", {"client": a})
    assert bad.status_code == 400 and bad.json()["field"] == "client"
    assert same_changes(
        changes(admin),
        [
            f"admin user.create {uid}",
            f"admin user.revoke-consent {uid} {a}",
            f"admin user.revoke-consent {uid}",
        ],
    )


async def test_remove_forgets_consents_and_revokes_refresh_tokens(admin: Admin) -> None:
    made = await make(admin)
    a, _ = await seed_consents(admin, made["user_id"])
    assert (await admin.delete(f"{BASE}/alice")).status_code == 200
    assert await admin.runtime.store.consents.list(made["user_id"]) == []
    family = await admin.runtime.store.refresh_tokens.get(a.encode())
    assert family is not None and family.family_revoked_at is not None


# --- the CLI and the API -------------------------------------------------------------------


async def test_cli_and_api_show_the_same_users(
    admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    monkeypatch.delenv("RESTGUARD_MASTER_KEY", raising=False)
    api_made = await make(admin)

    def invoke(*args: str, stdin: str | None = None) -> Any:
        result = CliRunner().invoke(
            cli, [*args, "--config", str(admin.config), "--json"], input=stdin
        )
        assert result.exit_code == 0, (result.output, result.stderr)
        return json.loads(result.stdout)

    cli_made = await asyncio.to_thread(
        invoke,
        "user",
        "create",
        "--username",
        "bob",
        "--password-stdin",
        "--scope",
        "notes:write",
        stdin=PASSWORD + "\n",
    )
    assert list(cli_made) == [k for k in api_made if k != "etag"]
    cli_rows = await asyncio.to_thread(invoke, "user", "list")
    api_rows = await admin.users()
    assert cli_rows == [{k: v for k, v in row.items() if k != "etag"} for row in api_rows]
    assert [u["username"] for u in api_rows] == ["alice", "bob"]
    assert await admin.can_log_in("bob", PASSWORD)
    # the CLI refuses what the API refuses, for the same reason
    r = await admin.post(BASE, {"username": "BOB", "password": PASSWORD})
    assert r.status_code == 409


async def test_the_openapi_document_describes_every_endpoint(admin: Admin) -> None:
    doc = (await admin.client.get("/api/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths[BASE]) == {"get", "post"}
    assert set(paths[f"{BASE}/{{id}}"]) == {"get", "delete"}
    assert set(paths[f"{BASE}/{{id}}/consents"]) == {"get"}
    assert set(paths[f"{BASE}/{{id}}/revoke-consent"]) == {"post"}
    assert {"404", "412"} <= set(paths[f"{BASE}/{{id}}"]["delete"]["responses"])
    assert "409" in paths[BASE]["post"]["responses"]
    schemas = doc["components"]["schemas"]
    for name in ("User", "NewUser", "CreateUser", "Consent", "RevokedConsent"):
        assert schemas[name]["additionalProperties"] is False
    assert schemas["CreateUser"]["properties"]["password"]["writeOnly"] is True
    made = await make(admin)
    assert set(made) == set(schemas["NewUser"]["properties"])
    one = (await admin.get(f"{BASE}/{made['user_id']}")).json()
    assert set(one) == set(schemas["User"]["properties"]) == set(schemas["User"]["required"])
