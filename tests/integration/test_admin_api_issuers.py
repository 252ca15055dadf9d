"""``/api/issuers`` of the admin REST API, through HTTP: an issuer added is trusted by the
gateway's ``jwt`` method and removed it is not; bad input (400 naming the field), 404, 409 and
412 change nothing; pages and filters; the audit line of every change; parity with
``restguard issuer``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from restguard.cli.main import cli
from restguard.credentials.base import AuthContext
from restguard.errors import AuthError
from restguard.types import RequestView
from tests.integration.admin_support import AdminClient, open_admin
from tests.jwt_support import JWKSServer, Signer, claims_for, jwks_of, mint_pyjwt

ISS = "https://idp.example/"
AUD = "https://api.example"
KEYS = (Signer.generate("EdDSA", "ed-1"), Signer.generate("ES256", "ec-1"))


class Admin(AdminClient):
    async def issuers(self) -> list[dict[str, Any]]:
        r = await self.get("/api/issuers", params={"limit": "1000"})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    async def jwt_accepted(self, token: str) -> bool:
        """Whether the running gateway's ``jwt`` method takes ``token`` now."""
        authenticator = self.runtime.guard.authenticators["jwt"]
        view = RequestView("GET", "/x", headers=((b"authorization", f"Bearer {token}".encode()),))
        try:
            credential = authenticator.extract(view)
            assert credential is not None
            await authenticator.authenticate(
                credential, AuthContext(self.runtime.clock.now(), "::1", view)
            )
        except AuthError:
            return False
        return True

    async def eventually(self, token: str, accepted: bool, timeout: float = 5.0) -> float:
        """Seconds until the gateway's verdict on ``token`` is ``accepted``."""
        start = time.monotonic()
        while await self.jwt_accepted(token) != accepted:
            assert time.monotonic() - start < timeout, f"still not {accepted} after {timeout} s"
            await asyncio.sleep(0.05)
        return time.monotonic() - start


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
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    async with open_admin(tmp_path, Admin) as a:
        yield a


def body_for(jwks: JWKSServer, **over: Any) -> dict[str, Any]:
    return {"issuer": ISS, "jwks_uri": jwks.url("/jwks"), "audience": AUD, **over}


async def add(admin: Admin, jwks: JWKSServer, **over: Any) -> dict[str, Any]:
    r = await admin.post("/api/issuers", body_for(jwks, **over))
    assert r.status_code == 201, r.text
    return r.json()


def audit_lines(admin: Admin) -> list[dict[str, Any]]:
    admin.runtime.audit.flush()  # type: ignore[union-attr]
    return [json.loads(line) for line in admin.audit.read_text().splitlines()]


def changes(admin: Admin) -> list[str]:
    return [x["detail"] for x in audit_lines(admin) if (x["detail"] or "").startswith("admin ")]


def schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return doc["components"]["schemas"][name]  # type: ignore[no-any-return]


async def invoke(args: list[str]) -> Result:
    """The CLI on the same data dir (in a thread: it runs its own event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, args)
    assert "Traceback" not in result.output
    return result


def token(iss: str = ISS) -> str:
    return mint_pyjwt(KEYS[0], claims_for(iss, AUD))


# --- add, read, list, remove: the gateway's real verdict -----------------------------------


async def test_an_added_issuer_is_trusted_and_a_removed_one_is_not(
    admin: Admin, jwks: JWKSServer
) -> None:
    doc = (await admin.client.get("/api/openapi.json")).json()
    assert not await admin.jwt_accepted(token())
    r = await admin.post("/api/issuers", body_for(jwks))
    assert r.status_code == 201, r.text
    data = r.json()
    assert set(data) == set(schema(doc, "NewIssuer")["required"])
    assert r.headers["location"] == f"/api/issuers/{data['id']}"
    assert r.headers["etag"] == data["etag"]
    assert data["issuer"] == ISS and data["audience"] == AUD
    assert data["jwks_keys"] == 2 and data["jwks_problem"] is None
    assert sorted(data["algorithms"]) == ["ES256", "EdDSA", "RS256"]
    assert data["scope_claim"] == "scope" and data["typ"] is None
    assert data["leeway_seconds"] == 0
    # every running instance takes it within a second (here: the admin's own runtime)
    assert await admin.eventually(token(), True) < 2
    one = await admin.get(f"/api/issuers/{data['id']}")
    assert one.status_code == 200 and one.headers["etag"] == data["etag"]
    shown = {k: v for k, v in data.items() if k not in ("jwks_keys", "jwks_problem")}
    assert one.json() == shown
    assert set(one.json()) == set(schema(doc, "Issuer")["required"])
    assert await admin.issuers() == [shown]
    gone = await admin.delete(f"/api/issuers/{data['id']}")
    assert gone.status_code == 200 and gone.json() == shown
    assert await admin.eventually(token(), False) < 2
    assert await admin.issuers() == []
    assert (await admin.get(f"/api/issuers/{data['id']}")).status_code == 404
    again = await admin.delete(f"/api/issuers/{data['id']}")
    assert again.status_code == 404 and again.json()["error"] == "not_found"


async def test_every_option_of_the_cli_is_a_field(admin: Admin, jwks: JWKSServer) -> None:
    data = await add(
        admin,
        jwks,
        scope_claim="scp",
        algorithms=["ES256", "ed25519"],
        typ="at+jwt",
        leeway="30s",
    )
    assert data["algorithms"] == ["ES256", "EdDSA"]
    assert data["scope_claim"] == "scp" and data["typ"] == "at+jwt"
    assert data["leeway_seconds"] == 30
    # the verifier applies them: typ at+jwt is required, EdDSA and ES256 only
    typed = mint_pyjwt(KEYS[1], claims_for(ISS, AUD, scp=["notes:read"]), typ="at+jwt")
    assert await admin.eventually(typed, True) < 2
    assert not await admin.jwt_accepted(mint_pyjwt(KEYS[1], claims_for(ISS, AUD)))


async def test_an_unreachable_jwks_is_reported_but_the_issuer_is_added(admin: Admin) -> None:
    r = await admin.post(
        "/api/issuers", {"issuer": ISS, "jwks_uri": "http://127.0.0.1:9/jwks", "audience": AUD}
    )
    assert r.status_code == 201, r.text
    assert r.json()["jwks_keys"] is None and r.json()["jwks_problem"]
    assert [i["issuer"] for i in await admin.issuers()] == [ISS]


# --- who gets in ---------------------------------------------------------------------------


async def test_no_key_is_401(admin: Admin, jwks: JWKSServer) -> None:
    data = await add(admin, jwks)
    for method, path in (
        ("GET", "/api/issuers"),
        ("POST", "/api/issuers"),
        ("GET", f"/api/issuers/{data['id']}"),
        ("DELETE", f"/api/issuers/{data['id']}"),
    ):
        r = await admin.client.request(method, path, json=body_for(jwks, issuer="https://b.ex/"))
        assert r.status_code == 401, (method, path)
        assert r.json()["error"] == "unauthorized"
    assert [i["id"] for i in await admin.issuers()] == [data["id"]]


async def test_a_key_without_the_admin_scope_is_403(admin: Admin, jwks: JWKSServer) -> None:
    r = await admin.post("/api/apikeys", {"name": "plain", "scopes": ["notes:read"]})
    plain = admin.auth(r.json()["key"])
    data = await add(admin, jwks)
    for method, path, body in (
        ("GET", "/api/issuers", None),
        ("POST", "/api/issuers", body_for(jwks, issuer="https://b.example/")),
        ("GET", f"/api/issuers/{data['id']}", None),
        ("DELETE", f"/api/issuers/{data['id']}", None),
    ):
        r = await admin.client.request(method, path, json=body, headers=plain)
        assert r.status_code == 403, (method, path)
        assert r.json()["error"] == "insufficient_scope"
    assert [i["id"] for i in await admin.issuers()] == [data["id"]]


# --- refusals change nothing ---------------------------------------------------------------

BAD_FIELDS = [
    ({"issuer": None}, "issuer"),
    ({"issuer": 5}, "issuer"),
    ({"issuer": "not a url"}, "issuer"),
    ({"issuer": "idp.example"}, "issuer"),
    ({"issuer": "ftp://idp.example/"}, "issuer"),
    ({"issuer": "http://idp.example/"}, "issuer"),  # http only on loopback
    ({"issuer": "https://idp.example/?tenant=a"}, "issuer"),
    ({"issuer": "https://idp.example/#x"}, "issuer"),
    ({"issuer": "https://idp.example/\u0456"}, "issuer"),
    ({"issuer": "https://idp.example/" + "x" * 200}, "issuer"),
    ({"issuer": "http://127.0.0.1:8080/"}, "issuer"),  # restguard's own public_url
    ({"jwks_uri": "http://idp.example/jwks"}, "jwks_uri"),
    ({"jwks_uri": "https://user:pw@idp.example/jwks"}, "jwks_uri"),
    ({"jwks_uri": "file:///etc/passwd"}, "jwks_uri"),
    ({"jwks_uri": ["https://idp.example/jwks"]}, "jwks_uri"),
    ({"audience": ""}, "audience"),
    ({"audience": " api"}, "audience"),
    ({"audience": ["a", "b"]}, "audience"),
    ({"algorithms": ["HS256"]}, "algorithms"),
    ({"algorithms": ["none"]}, "algorithms"),
    ({"algorithms": "ES256"}, "algorithms"),
    ({"algorithms": [1]}, "algorithms"),
    ({"algorithms": ["ES256"] * 9}, "algorithms"),
    ({"scope_claim": "roles"}, "scope_claim"),
    ({"scope_claim": 1}, "scope_claim"),
    ({"typ": "at jwt"}, "typ"),
    ({"typ": 5}, "typ"),
    ({"leeway": "61s"}, "leeway"),
    ({"leeway": "2m"}, "leeway"),
    ({"leeway": "soon"}, "leeway"),
    ({"leeway": 30}, "leeway"),
    ({"secret": "x"}, "secret"),
]


@pytest.mark.parametrize(("over", "field"), BAD_FIELDS, ids=lambda v: repr(v)[:50])
async def test_bad_fields_are_400_naming_the_field_and_change_nothing(
    admin: Admin, jwks: JWKSServer, over: dict[str, Any], field: str
) -> None:
    kept = await add(admin, jwks, issuer="https://kept.example/")
    before = await admin.issuers()
    r = await admin.post("/api/issuers", body_for(jwks, **over))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.json()["field"] == field
    assert r.json()["error_description"].startswith(f"{field}: ")
    assert await admin.issuers() == before
    assert [i["id"] for i in before] == [kept["id"]]
    assert changes(admin) == [f"admin issuer.add {kept['id']}"]


@pytest.mark.parametrize("missing", ["issuer", "jwks_uri", "audience"])
async def test_required_fields(admin: Admin, jwks: JWKSServer, missing: str) -> None:
    body = body_for(jwks)
    del body[missing]
    r = await admin.post("/api/issuers", body)
    assert r.status_code == 400 and r.json()["field"] == missing
    assert await admin.issuers() == []


async def test_a_duplicate_issuer_is_409_and_changes_nothing(
    admin: Admin, jwks: JWKSServer
) -> None:
    first = await add(admin, jwks)
    before = await admin.issuers()
    r = await admin.post("/api/issuers", body_for(jwks, audience="other"))
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "conflict" and r.json()["field"] == "issuer"
    assert f"the issuer {ISS} is already trusted" in r.json()["error_description"]
    assert await admin.issuers() == before
    assert changes(admin) == [f"admin issuer.add {first['id']}"]


async def test_if_match_guards_remove(admin: Admin, jwks: JWKSServer) -> None:
    data = await add(admin, jwks)
    path = f"/api/issuers/{data['id']}"
    for tag, status in (('"0123"', 412), ("W/" + data["etag"], 412), ("nonsense", 400)):
        r = await admin.delete(path, headers={"If-Match": tag})
        assert r.status_code == status, (tag, r.text)
        assert r.json()["field"] == "If-Match"
    assert (await admin.delete(path, headers={"If-Match": '"0123"'})).json()[
        "error"
    ] == "precondition_failed"
    assert len(await admin.issuers()) == 1
    assert await admin.eventually(token(), True) < 2  # still trusted
    ok = await admin.delete(path, headers={"If-Match": f'"x", {data["etag"]}'})
    assert ok.status_code == 200
    other = await add(admin, jwks, issuer="https://b.example/")
    star = await admin.delete(f"/api/issuers/{other['id']}", headers={"If-Match": "*"})
    assert star.status_code == 200
    assert await admin.issuers() == []


async def test_unknown_ids_paths_methods_and_parameters(admin: Admin, jwks: JWKSServer) -> None:
    data = await add(admin, jwks)
    assert (await admin.get("/api/issuers/nosuchid")).status_code == 404
    assert (await admin.delete("/api/issuers/nosuchid")).status_code == 404
    assert (await admin.get("/api/issuers/a_b")).status_code == 404
    r = await admin.client.delete("/api/issuers", headers=admin.auth())
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    r = await admin.post(f"/api/issuers/{data['id']}")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, HEAD"
    for query, field in (
        ("bogus=1", "bogus"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=nosuchid", "after"),
        ("after=12.", "after"),
        ("issuer=a&issuer=b", "issuer"),
    ):
        r = await admin.get(f"/api/issuers?{query}")
        assert r.status_code == 400 and r.json()["field"] == field, query
    r = await admin.delete(f"/api/issuers/{data['id']}?force=1")
    assert r.status_code == 400 and r.json()["field"] == "force"
    r = await admin.post("/api/issuers?x=1", body_for(jwks, issuer="https://b.example/"))
    assert r.status_code == 400 and r.json()["field"] == "x"
    assert [i["id"] for i in await admin.issuers()] == [data["id"]]


async def test_pages_cover_every_issuer_once_and_filters_apply(
    admin: Admin, jwks: JWKSServer
) -> None:
    made = [
        await add(admin, jwks, issuer=f"https://i{n}.example/", audience=f"aud{n % 2}")
        for n in range(7)
    ]
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "3", **({"after": after} if after else {})}
        page = (await admin.get("/api/issuers", params=params)).json()
        assert len(page["items"]) <= 3
        seen += [i["id"] for i in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [m["id"] for m in made]
    odd = (await admin.get("/api/issuers", params={"audience": "aud1"})).json()
    assert [i["issuer"] for i in odd["items"]] == [f"https://i{n}.example/" for n in (1, 3, 5)]
    one = (await admin.get("/api/issuers", params={"issuer": "https://i4.example/"})).json()
    assert [i["id"] for i in one["items"]] == [made[4]["id"]] and one["next"] is None
    # a cursor stays valid when the issuer it names is removed meanwhile
    first = (await admin.get("/api/issuers", params={"limit": "2"})).json()
    assert (await admin.delete(f"/api/issuers/{made[1]['id']}")).status_code == 200
    rest = (await admin.get("/api/issuers", params={"after": first["next"]})).json()
    assert [i["id"] for i in rest["items"]] == [m["id"] for m in made[2:]]


# --- the audit line of each change, and parity with the CLI --------------------------------


async def test_each_change_is_audited(admin: Admin, jwks: JWKSServer) -> None:
    data = await add(admin, jwks)
    await admin.delete(f"/api/issuers/{data['id']}")
    await admin.post("/api/issuers", body_for(jwks, issuer="bad"))  # refused: no line
    assert changes(admin) == [
        f"admin issuer.add {data['id']}",
        f"admin issuer.remove {data['id']}",
    ]
    for line in audit_lines(admin):
        if (line["detail"] or "").startswith("admin "):
            assert line["credential_id"] == admin.key_id and line["auth_method"] == "api_key"
    assert admin.key[19:] not in admin.audit.read_text()


async def test_cli_and_api_see_the_same_issuers(admin: Admin, jwks: JWKSServer) -> None:
    config = str(admin.config)
    by_api = await add(admin, jwks, algorithms=["RS256"])
    result = await invoke(
        [
            "issuer",
            "add",
            "--config",
            config,
            "--issuer",
            "https://cli.example/",
            "--jwks-uri",
            jwks.url("/jwks"),
            "--audience",
            AUD,
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    by_cli = json.loads(result.stdout)
    listed = await invoke(["issuer", "list", "--config", config, "--json"])
    rows = json.loads(listed.stdout)
    api_rows = await admin.issuers()
    assert [{k: v for k, v in r.items() if k != "etag"} for r in api_rows] == rows
    assert [r["id"] for r in rows] == [by_api["id"], by_cli["id"]]
    assert set(by_cli) == set(by_api) - {"etag"}
    # the CLI removes what the API added, by its issuer URL
    removed = await invoke(["issuer", "remove", ISS, "--config", config, "--json"])
    assert json.loads(removed.stdout)["id"] == by_api["id"]
    assert [i["id"] for i in await admin.issuers()] == [by_cli["id"]]
