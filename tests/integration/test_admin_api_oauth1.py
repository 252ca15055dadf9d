"""The admin REST API's OAuth 1.0a consumers (``/api/oauth1/consumers``) and token credentials
(``/api/oauth1/tokens``), through HTTP: a consumer created with its secret shown once (and an
RSA public key as PEM text) signs requests the gateway's own OAuth 1.0a verifier accepts;
revoking it (or one token) stops it at once; listings page and filter and never show a secret.
Bad input is 400 naming the field and changes nothing; every change has its audit line, which
never holds a secret; the CLI sees the same."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from restguard.cli.main import cli
from restguard.client import OAuth1Auth
from restguard.credentials.base import AuthContext
from restguard.credentials.oauth1_consumers import consumer_secret
from restguard.credentials.oauth1_tokens import (
    new_temporary_credentials,
    new_token_credentials,
    new_verifier,
)
from restguard.errors import AuthError
from restguard.keys.sealing import open_sealer
from restguard.store.ports import OAuth1TokenRecord, UserRecord
from restguard.types import RequestView
from tests.integration.admin_support import AdminClient, open_admin

ALICE = "rg_us_alice00000000000"
BOB = "rg_us_bob0000000000000"


class Admin(AdminClient):
    async def consumers(self) -> list[dict[str, Any]]:
        r = await self.get("/api/oauth1/consumers", params={"limit": "1000"})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    async def tokens(self, **params: str) -> list[dict[str, Any]]:
        r = await self.get("/api/oauth1/tokens", params={"limit": "1000", **params})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    async def gateway_accepts(self, auth: httpx.Auth) -> bool:
        """Whether the gateway's OAuth 1.0a method takes a request signed with ``auth`` now
        (two-legged requests admitted, as on a route with ``oauth1_two_legged``)."""
        authenticator = self.runtime.guard.authenticators["oauth1"]
        authenticator.drop_cached()  # type: ignore[attr-defined]
        view = await signed_view(auth)
        credential = authenticator.extract(view)
        assert credential is not None
        ctx = AuthContext(self.runtime.clock.now(), "::1", view, oauth1_two_legged=True)
        try:
            await authenticator.authenticate(credential, ctx)
        except AuthError:
            return False
        return True

    async def grant(self, consumer_key: str, user_id: str = ALICE) -> tuple[OAuth1TokenRecord, str]:
        """What the provider does: temporary credentials, authorized by ``user_id``,
        exchanged for token credentials; the token credentials and their secret."""
        store, now = self.runtime.store, datetime.now(UTC)
        seal = open_sealer(self.runtime.settings.master_key_path)
        name = user_id.removeprefix("rg_us_").rstrip("0")
        if await store.users.get(user_id) is None:
            await store.users.insert(UserRecord(user_id, name, "$argon2id$x", ("a",), now))
        consumer = await store.oauth1_consumers.get(consumer_key)
        assert consumer is not None
        temp, _ = new_temporary_credentials(consumer, "oob", now=now, sealer=seal)
        await store.oauth1_tokens.insert(temp)
        _, digest = new_verifier()
        assert await store.oauth1_tokens.authorize(
            temp.token,
            user_id=user_id,
            subject=name,
            scopes=consumer.scopes,
            verifier_hash=digest,
            at=now,
        )
        authorized = await store.oauth1_tokens.get(temp.token)
        assert authorized is not None
        access, secret = new_token_credentials(authorized, now=now, sealer=seal)
        assert await store.oauth1_tokens.exchange(temp.token, digest, access, now) == "exchanged"
        return access, secret


async def signed_view(auth: httpx.Auth) -> RequestView:
    """The request ``auth`` signs, as the gateway sees it."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
        await client.get("http://gw.example/notes")
    (request,) = seen
    headers = tuple((name.lower(), value) for name, value in request.headers.raw)
    return RequestView("GET", "/notes", headers=headers, raw_path=b"/notes", body=b"")


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    async with open_admin(tmp_path, Admin) as a:
        yield a


def audit_changes(admin: Admin) -> list[dict[str, Any]]:
    admin.runtime.audit.flush()  # type: ignore[union-attr]
    lines = [json.loads(line) for line in admin.audit.read_text().splitlines()]
    return [line for line in lines if (line["detail"] or "").startswith("admin ")]


def public_pem(private: Any) -> str:
    return str(
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


RSA_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = public_pem(RSA_PRIVATE)
WEAK_PEM = public_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
ED_PEM = public_pem(ed25519.Ed25519PrivateKey.generate())
PRIVATE_PEM = RSA_PRIVATE.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode("ascii")


async def make(admin: Admin, **body: Any) -> dict[str, Any]:
    r = await admin.post(
        "/api/oauth1/consumers", {"name": "billing", "scopes": ["notes:read"], **body}
    )
    assert r.status_code == 201, r.text
    return r.json()


# --- consumers: create ---------------------------------------------------------------------------


async def test_create_shows_the_secret_once_and_the_consumer_signs(admin: Admin) -> None:
    r = await admin.post(
        "/api/oauth1/consumers",
        {"name": "billing", "scopes": ["notes:read"], "callback": "https://a.example/cb"},
    )
    assert r.status_code == 201, r.text
    data = r.json()
    assert set(data) == {
        "consumer_key",
        "consumer_secret",
        "name",
        "scopes",
        "callback",
        "signature_methods",
        "created_at",
        "rsa_public_key_sha256",
        "etag",
    }
    assert data["callback"] == "https://a.example/cb"
    assert data["signature_methods"] == ["HMAC-SHA1", "HMAC-SHA256", "PLAINTEXT"]
    assert r.headers["location"] == f"/api/oauth1/consumers/{data['consumer_key']}"
    assert r.headers["etag"] == data["etag"]
    record = await admin.runtime.store.oauth1_consumers.get(data["consumer_key"])
    assert record is not None
    seal = open_sealer(admin.runtime.settings.master_key_path)
    assert consumer_secret(record, seal) == data["consumer_secret"]
    assert await admin.gateway_accepts(OAuth1Auth(data["consumer_key"], data["consumer_secret"]))
    assert not await admin.gateway_accepts(OAuth1Auth(data["consumer_key"], "x" * 43))
    one = await admin.get(f"/api/oauth1/consumers/{data['consumer_key']}")
    assert one.status_code == 200 and one.headers["etag"] == data["etag"]
    assert one.json()["state"] == "active" and "consumer_secret" not in one.json()
    assert data["consumer_secret"] not in one.text
    assert data["consumer_secret"] not in (await admin.get("/api/oauth1/consumers")).text


async def test_create_with_an_rsa_key_and_chosen_methods(admin: Admin) -> None:
    data = await make(admin, rsa_public_key=RSA_PEM)
    assert "RSA-SHA1" in data["signature_methods"] and data["rsa_public_key_sha256"]
    only = await make(admin, rsa_public_key=RSA_PEM, signature_methods=["rsa-sha1"])
    assert only["signature_methods"] == ["RSA-SHA1"]
    listed = {c["consumer_key"]: c for c in await admin.consumers()}
    assert listed[only["consumer_key"]]["rsa_public_key_sha256"] == data["rsa_public_key_sha256"]
    hmac = await make(admin, signature_methods=["HMAC-SHA256"])
    assert hmac["signature_methods"] == ["HMAC-SHA256"] and hmac["callback"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["a"]}, "name"),
        ({"name": "n"}, "scopes"),
        ({"name": "", "scopes": ["a"]}, "name"),
        ({"name": 5, "scopes": ["a"]}, "name"),
        ({"name": "x" * 201, "scopes": ["a"]}, "name"),
        ({"name": "n", "scopes": []}, "scopes"),
        ({"name": "n", "scopes": "a"}, "scopes"),
        ({"name": "n", "scopes": ["a,b"]}, "scopes"),
        ({"name": "n", "scopes": ["a"] * 101}, "scopes"),
        ({"name": "n", "scopes": ["a"], "callback": "http://a.example/cb"}, "callback"),
        ({"name": "n", "scopes": ["a"], "callback": "oob"}, "callback"),
        ({"name": "n", "scopes": ["a"], "callback": 5}, "callback"),
        ({"name": "n", "scopes": ["a"], "signature_methods": ["MD5"]}, "signature_methods"),
        ({"name": "n", "scopes": ["a"], "signature_methods": "HMAC-SHA1"}, "signature_methods"),
        ({"name": "n", "scopes": ["a"], "signature_methods": ["RSA-SHA1"]}, "signature_methods"),
        (
            {
                "name": "n",
                "scopes": ["a"],
                "rsa_public_key": RSA_PEM,
                "signature_methods": ["PLAINTEXT"],
            },
            "rsa_public_key",
        ),
        ({"name": "n", "scopes": ["a"], "rsa_public_key": WEAK_PEM}, "rsa_public_key"),
        ({"name": "n", "scopes": ["a"], "rsa_public_key": ED_PEM}, "rsa_public_key"),
        ({"name": "n", "scopes": ["a"], "rsa_public_key": "nope"}, "rsa_public_key"),
        ({"name": "n", "scopes": ["a"], "rsa_public_key": 1}, "rsa_public_key"),
        ({"name": "n", "scopes": ["a"], "consumer_secret": "x"}, "consumer_secret"),
    ],
)
async def test_bad_create_input_is_400_naming_the_field_and_changes_nothing(
    admin: Admin, body: dict[str, Any], field: str
) -> None:
    before = await admin.consumers()
    r = await admin.post("/api/oauth1/consumers", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.json()["field"] == field
    assert r.json()["error_description"].startswith(f"{field}: ")
    assert await admin.consumers() == before


async def test_a_private_key_is_refused_and_never_echoed_or_stored(admin: Admin) -> None:
    r = await admin.post(
        "/api/oauth1/consumers", {"name": "n", "scopes": ["a"], "rsa_public_key": PRIVATE_PEM}
    )
    assert r.status_code == 400 and r.json()["field"] == "rsa_public_key"
    assert "private key" in r.json()["error_description"]
    line = PRIVATE_PEM.splitlines()[1]
    assert line not in r.text
    assert await admin.consumers() == []
    admin.runtime.audit.flush()  # type: ignore[union-attr]
    assert line not in admin.audit.read_text()


# --- consumers: list, read, revoke ---------------------------------------------------------------


async def test_consumer_pages_and_filters(admin: Admin) -> None:
    made = [await make(admin, name=f"c{i}") for i in range(5)]
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await admin.get("/api/oauth1/consumers", params=params)).json()
        assert len(page["items"]) <= 2
        seen += [c["consumer_key"] for c in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [m["consumer_key"] for m in made]
    named = (await admin.get("/api/oauth1/consumers", params={"name": "c2"})).json()["items"]
    assert [c["consumer_key"] for c in named] == [made[2]["consumer_key"]]
    await admin.post(f"/api/oauth1/consumers/{made[4]['consumer_key']}/revoke")
    revoked = (await admin.get("/api/oauth1/consumers", params={"state": "revoked"})).json()
    assert [c["consumer_key"] for c in revoked["items"]] == [made[4]["consumer_key"]]


async def test_revoking_a_consumer_stops_it_and_its_tokens(admin: Admin) -> None:
    data = await make(admin)
    other = await make(admin, name="other")
    access, secret = await admin.grant(data["consumer_key"])
    kept, _ = await admin.grant(other["consumer_key"])
    three_legged = OAuth1Auth(
        data["consumer_key"], data["consumer_secret"], token=access.token, token_secret=secret
    )
    assert await admin.gateway_accepts(three_legged)
    r = await admin.post(f"/api/oauth1/consumers/{data['consumer_key']}/revoke")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "revoked" and r.json()["revoked_at"]
    assert r.headers["etag"] == r.json()["etag"] != data["etag"]
    assert data["consumer_secret"] not in r.text
    assert not await admin.gateway_accepts(three_legged)
    assert not await admin.gateway_accepts(
        OAuth1Auth(data["consumer_key"], data["consumer_secret"])
    )
    states = {t["token"]: t["state"] for t in await admin.tokens()}
    assert states == {access.token: "revoked", kept.token: "active"}
    again = await admin.post(f"/api/oauth1/consumers/{data['consumer_key']}/revoke")
    assert again.status_code == 200 and again.json()["revoked_at"] == r.json()["revoked_at"]


async def test_unknown_ids_are_404(admin: Admin) -> None:
    for path in (
        "/api/oauth1/consumers/ck_nosuch",
        "/api/oauth1/tokens/rg_ot_nosuch",
    ):
        r = await admin.get(path)
        assert r.status_code == 404 and r.json()["error"] == "not_found", path
        r = await admin.post(f"{path}/revoke")
        assert r.status_code == 404, path
    assert (await admin.get("/api/oauth1/consumers/a.b")).status_code == 404
    r = await admin.client.delete("/api/oauth1/tokens", headers=admin.auth())
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/oauth1/consumers", "state=dead", "state"),
        ("/api/oauth1/consumers", "after=ck_nosuch", "after"),
        ("/api/oauth1/consumers", "limit=0", "limit"),
        ("/api/oauth1/consumers", "user=alice", "user"),
        ("/api/oauth1/tokens", "state=used", "state"),
        ("/api/oauth1/tokens", "user=nobody", "user"),
        ("/api/oauth1/tokens", "user=", "user"),
        ("/api/oauth1/tokens", "after=rg_ot_nosuch", "after"),
        ("/api/oauth1/tokens", "limit=1001", "limit"),
        ("/api/oauth1/tokens", "bogus=1", "bogus"),
    ],
)
async def test_bad_queries_are_400_naming_the_parameter(
    admin: Admin, path: str, query: str, field: str
) -> None:
    r = await admin.get(f"{path}?{query}")
    assert r.status_code == 400 and r.json()["field"] == field, r.text
    assert r.json()["error_description"].startswith(f"{field}: ")


# --- tokens --------------------------------------------------------------------------------------


async def test_tokens_list_filter_read_and_revoke_without_a_secret(admin: Admin) -> None:
    one = await make(admin, name="one")
    two = await make(admin, name="two")
    a1, s1 = await admin.grant(one["consumer_key"])
    a2, s2 = await admin.grant(two["consumer_key"])
    b1, _ = await admin.grant(one["consumer_key"], BOB)
    rows = await admin.tokens()
    assert [t["token"] for t in rows] == [a1.token, a2.token, b1.token]
    assert rows[0]["user_id"] == ALICE and rows[0]["subject"] == "alice"
    assert s1 not in json.dumps(rows) and s2 not in json.dumps(rows)
    assert [t["token"] for t in await admin.tokens(user="alice")] == [a1.token, a2.token]
    assert [t["token"] for t in await admin.tokens(user=ALICE)] == [a1.token, a2.token]
    assert [t["token"] for t in await admin.tokens(consumer=one["consumer_key"])] == [
        a1.token,
        b1.token,
    ]
    page = (await admin.get("/api/oauth1/tokens", params={"limit": "2"})).json()
    assert page["next"] == a2.token
    signer = OAuth1Auth(
        one["consumer_key"], one["consumer_secret"], token=a1.token, token_secret=s1
    )
    assert await admin.gateway_accepts(signer)
    got = await admin.get(f"/api/oauth1/tokens/{a1.token}")
    assert got.status_code == 200 and got.json()["state"] == "active"
    assert s1 not in got.text
    r = await admin.post(f"/api/oauth1/tokens/{a1.token}/revoke")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert r.headers["etag"] == r.json()["etag"] != got.headers["etag"]
    assert not await admin.gateway_accepts(signer)
    assert [t["token"] for t in await admin.tokens(state="revoked")] == [a1.token]
    assert [t["token"] for t in await admin.tokens(state="active")] == [a2.token, b1.token]


async def test_if_match_refuses_stale_changes(admin: Admin) -> None:
    data = await make(admin)
    access, _ = await admin.grant(data["consumer_key"])
    token_path = f"/api/oauth1/tokens/{access.token}"
    consumer_path = f"/api/oauth1/consumers/{data['consumer_key']}"
    token_tag = (await admin.get(token_path)).headers["etag"]
    consumer_tag = (await admin.get(consumer_path)).headers["etag"]
    assert consumer_tag == data["etag"]
    # revoking the consumer revokes the token: the token's tag read before is stale
    ok = await admin.post(f"{consumer_path}/revoke", headers={"If-Match": consumer_tag})
    assert ok.status_code == 200
    before = await admin.tokens()
    for path, tag in ((token_path, token_tag), (consumer_path, consumer_tag)):
        r = await admin.post(f"{path}/revoke", headers={"If-Match": tag})
        assert r.status_code == 412, path
        assert r.json()["error"] == "precondition_failed" and r.json()["field"] == "If-Match"
    assert await admin.tokens() == before
    bad = await admin.post(f"{token_path}/revoke", headers={"If-Match": "nonsense"})
    assert bad.status_code == 400 and bad.json()["field"] == "If-Match"
    fresh = (await admin.get(token_path)).headers["etag"]
    assert (
        await admin.post(f"{token_path}/revoke", headers={"If-Match": fresh})
    ).status_code == 200


# --- who gets in ---------------------------------------------------------------------------------


async def test_no_key_is_401_and_a_key_without_the_admin_scope_is_403(admin: Admin) -> None:
    data = await make(admin)
    access, _ = await admin.grant(data["consumer_key"])
    calls = [
        ("GET", "/api/oauth1/consumers", None),
        ("POST", "/api/oauth1/consumers", {"name": "x", "scopes": ["a"]}),
        ("GET", f"/api/oauth1/consumers/{data['consumer_key']}", None),
        ("POST", f"/api/oauth1/consumers/{data['consumer_key']}/revoke", None),
        ("GET", "/api/oauth1/tokens", None),
        ("GET", f"/api/oauth1/tokens/{access.token}", None),
        ("POST", f"/api/oauth1/tokens/{access.token}/revoke", None),
    ]
    for method, path, body in calls:
        r = await admin.client.request(method, path, json=body)
        assert r.status_code == 401, (method, path)
    plain = await admin.post("/api/apikeys", {"name": "plain", "scopes": ["notes:read"]})
    key = plain.json()["key"]
    for method, path, body in calls:
        r = await admin.client.request(method, path, json=body, headers=admin.auth(key))
        assert r.status_code == 403, (method, path)
    assert [c["state"] for c in await admin.consumers()] == ["active"]
    assert [t["state"] for t in await admin.tokens()] == ["active"]


# --- audit, CLI parity, the document -------------------------------------------------------------


async def test_every_change_is_audited_without_a_secret(admin: Admin) -> None:
    data = await make(admin)
    access, secret = await admin.grant(data["consumer_key"])
    await admin.post(f"/api/oauth1/tokens/{access.token}/revoke")
    await admin.post(f"/api/oauth1/consumers/{data['consumer_key']}/revoke")
    await admin.post("/api/oauth1/consumers", {"name": "", "scopes": ["a"]})  # refused
    changes = audit_changes(admin)
    digest = hashlib.sha256(access.token.encode()).hexdigest()[:16]
    assert [c["detail"] for c in changes] == [
        f"admin oauth1-consumer.create {data['consumer_key']}",
        f"admin oauth1-token.revoke {data['consumer_key']} token sha256:{digest}",
        f"admin oauth1-consumer.revoke {data['consumer_key']}",
    ]
    for change in changes:
        assert change["credential_id"] == admin.key_id and change["auth_method"] == "api_key"
    text = admin.audit.read_text()
    assert data["consumer_secret"] not in text and secret not in text


async def test_cli_and_api_agree(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer the CLI makes is what the API lists, and the other way round (the CLI runs
    its own event loop: in a thread)."""
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    config = str(admin.config)

    def invoke(*args: str) -> Any:
        result = CliRunner().invoke(cli, [*args, "--config", config, "--json"])
        assert result.exit_code == 0, (result.output, result.stderr)
        return json.loads(result.stdout)

    made = await asyncio.to_thread(
        invoke, "oauth1", "consumer", "create", "--name", "from-cli", "--scope", "a"
    )
    api_made = await make(admin, name="from-api")
    cli_list = await asyncio.to_thread(invoke, "oauth1", "consumer", "list")
    api_list = await admin.consumers()
    keys = [c["consumer_key"] for c in api_list]
    assert keys == [made["consumer_key"], api_made["consumer_key"]]
    assert cli_list == [{k: v for k, v in c.items() if k != "etag"} for c in api_list]
    assert await admin.gateway_accepts(OAuth1Auth(made["consumer_key"], made["consumer_secret"]))
    access, _ = await admin.grant(api_made["consumer_key"])
    cli_tokens = await asyncio.to_thread(invoke, "oauth1", "token", "list")
    api_tokens = await admin.tokens()
    assert [t["token"] for t in api_tokens] == [access.token]
    assert cli_tokens == [{k: v for k, v in t.items() if k != "etag"} for t in api_tokens]


async def test_the_openapi_document_describes_every_endpoint(admin: Admin) -> None:
    doc = (await admin.client.get("/api/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths["/api/oauth1/consumers"]) == {"get", "post"}
    assert set(paths["/api/oauth1/tokens"]) == {"get"}
    for path, verb in (
        ("/api/oauth1/consumers/{id}", "get"),
        ("/api/oauth1/consumers/{id}/revoke", "post"),
        ("/api/oauth1/tokens/{id}", "get"),
        ("/api/oauth1/tokens/{id}/revoke", "post"),
    ):
        assert set(paths[path]) == {verb}
        assert "404" in paths[path][verb]["responses"]
    schemas = doc["components"]["schemas"]
    for name in ("OAuth1Consumer", "NewOAuth1Consumer", "CreateOAuth1Consumer", "OAuth1Token"):
        assert schemas[name]["additionalProperties"] is False
