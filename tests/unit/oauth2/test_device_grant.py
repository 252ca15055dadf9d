"""oauth2/grants/device_code.py and device_authorization.py: RFC 8628 §3.1-3.5 against an
in-memory store -- every state of a device code as the token endpoint answers it, and the
device authorization response. (The SQL store's atomicity: tests/integration.)"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from restguard.clock import FixedClock
from restguard.keys.hashing import token_digest
from restguard.keys.jws_sign import PrivateSigningKey
from restguard.keys.signing import LiveKey, SigningKeys
from restguard.oauth2.access_tokens import AccessTokens
from restguard.oauth2.device_authorization import DeviceAuthorizationEndpoint
from restguard.oauth2.device_codes import USER_CODE_ALPHABET, new_device_code
from restguard.oauth2.errors import OAuthError
from restguard.oauth2.grants.device_code import DeviceCodeGrant
from restguard.oauth2.http import EndpointRequest
from restguard.oauth2.refresh_tokens import RefreshTokens
from restguard.store.errors import DuplicateRecord
from restguard.store.ports import DeviceCodeRecord, OAuthClientRecord, RefreshTokenRecord
from tests.unit.fakes import T0

ISSUER = "http://127.0.0.1:8080"
KEY = PrivateSigningKey.generate("k1", "ES256")
KEYS = SigningKeys([LiveKey("k1", KEY, KEY.public_jwk(), T0)])
TOKENS = AccessTokens(KEYS, ISSUER, ISSUER, FixedClock(T0))


class Codes:
    """An in-memory ``DeviceCodeStore`` (single-threaded: atomic by construction)."""

    def __init__(self) -> None:
        self.rows: dict[bytes, DeviceCodeRecord] = {}

    async def insert(self, record: DeviceCodeRecord) -> None:
        if any(
            r.user_code == record.user_code and r.status == "pending" for r in self.rows.values()
        ):
            raise DuplicateRecord("user code")
        self.rows[record.device_code_hash] = record

    async def get(self, device_code_hash: bytes) -> DeviceCodeRecord | None:
        return self.rows.get(device_code_hash)

    async def by_user_code(self, user_code: str, now: Any) -> DeviceCodeRecord | None:
        for r in self.rows.values():
            if r.user_code == user_code and r.status == "pending" and r.expires_at > now:
                return r
        return None

    async def _set(self, user_code: str, at: Any, **fields: Any) -> bool:
        found = await self.by_user_code(user_code, at)
        if found is None:
            return False
        self.rows[found.device_code_hash] = replace(found, **fields)
        return True

    async def approve(
        self, user_code: str, *, user_id: str, subject: str, scopes: Any, at: Any
    ) -> bool:
        return await self._set(
            user_code,
            at,
            status="approved",
            user_id=user_id,
            subject=subject,
            granted_scopes=scopes,
        )

    async def deny(self, user_code: str, at: Any) -> bool:
        return await self._set(user_code, at, status="denied")

    async def poll(self, device_code_hash: bytes, at: Any, *, step: int) -> bool:
        r = self.rows[device_code_hash]
        fast = r.last_polled_at is not None and at < r.last_polled_at + timedelta(
            seconds=r.interval
        )
        self.rows[device_code_hash] = replace(
            r, last_polled_at=at, interval=r.interval + step if fast else r.interval
        )
        return fast

    async def consume(self, device_code_hash: bytes, at: Any) -> bool:
        r = self.rows[device_code_hash]
        if r.status != "approved":
            return False
        self.rows[device_code_hash] = replace(r, status="used", used_at=at)
        return True


class Families:
    def __init__(self) -> None:
        self.started: list[RefreshTokenRecord] = []

    async def start_family(self, first: RefreshTokenRecord) -> None:
        self.started.append(first)


def client(cid: str = "rg_ci_tv", grants: tuple[str, ...] = ("device_code",)) -> OAuthClientRecord:
    return OAuthClientRecord(
        client_id=cid,
        name="TV",
        secret_hash=None,
        grants=grants,
        redirect_uris=(),
        scopes=("notes:read", "notes:write"),
        token_format="jwt",
        created_at=T0,
    )


TV = client()


@pytest.fixture
def codes() -> Codes:
    return Codes()


async def issue(codes: Codes, **fields: Any) -> str:
    code = new_device_code()
    record = DeviceCodeRecord(
        device_code_hash=token_digest(code),
        user_code="BCDFGHJK",
        client_id=TV.client_id,
        scopes=("notes:read",),
        created_at=T0,
        expires_at=T0 + timedelta(seconds=600),
        interval=5,
    )
    await codes.insert(replace(record, **fields))
    return code


def grant(codes: Codes, families: Families | None = None) -> DeviceCodeGrant:
    return DeviceCodeGrant(codes, TOKENS, RefreshTokens(families or Families()))  # type: ignore[arg-type]


async def error(g: DeviceCodeGrant, code: str, at: Any, who: OAuthClientRecord = TV) -> str:
    with pytest.raises(OAuthError) as caught:
        await g(who, {"device_code": code}, at)
    assert caught.value.status == 400
    return caught.value.error


async def test_pending_then_slow_down_then_approved_once(codes: Codes) -> None:
    g, code = grant(codes), await issue(codes)
    assert await error(g, code, T0) == "authorization_pending"
    assert await error(g, code, T0 + timedelta(seconds=4)) == "slow_down"
    assert codes.rows[token_digest(code)].interval == 10  # RFC 8628 §3.5: +5 s, and it stays
    assert await error(g, code, T0 + timedelta(seconds=13)) == "slow_down"
    assert codes.rows[token_digest(code)].interval == 15
    later = T0 + timedelta(seconds=30)
    assert await error(g, code, later) == "authorization_pending"
    await codes.approve("BCDFGHJK", user_id="u1", subject="alice", scopes=("notes:read",), at=later)
    at = later + timedelta(seconds=15)
    issued = await g(TV, {"device_code": code}, at)
    assert issued.scope == "notes:read" and issued.refresh_token is None
    assert await error(g, code, at + timedelta(seconds=20)) == "invalid_grant"  # once only


async def test_denied_is_access_denied(codes: Codes) -> None:
    g, code = grant(codes), await issue(codes)
    await codes.deny("BCDFGHJK", T0)
    assert await error(g, code, T0) == "access_denied"


async def test_expired_is_expired_token(codes: Codes) -> None:
    g, code = grant(codes), await issue(codes)
    assert await error(g, code, T0 + timedelta(seconds=600)) == "expired_token"


async def test_another_clients_code_is_invalid_grant_and_no_poll(codes: Codes) -> None:
    g, code = grant(codes), await issue(codes)
    assert await error(g, code, T0, client("rg_ci_other")) == "invalid_grant"
    assert codes.rows[token_digest(code)].last_polled_at is None
    assert await error(g, code, T0) == "authorization_pending"  # the owner is not slowed


@pytest.mark.parametrize("code", ["rg_dc_" + "A" * 43, "nonsense", "rg_ac_" + "A" * 43])
async def test_unknown_codes_are_invalid_grant(codes: Codes, code: str) -> None:
    assert await error(grant(codes), code, T0) == "invalid_grant"


async def test_a_missing_device_code_is_invalid_request(codes: Codes) -> None:
    with pytest.raises(OAuthError) as caught:
        await grant(codes)(TV, {}, T0)
    assert caught.value.error == "invalid_request"


async def test_a_refresh_family_when_the_client_may_refresh(codes: Codes) -> None:
    families = Families()
    g, code = (
        grant(codes, families),
        await issue(
            codes,
            status="approved",
            user_id="u1",
            subject="alice",
            granted_scopes=("notes:read", "gone:scope"),
        ),
    )
    tv = client(grants=("device_code", "refresh_token"))
    issued = await g(tv, {"device_code": code}, T0)
    assert issued.refresh_token is not None and issued.refresh_token.startswith("rg_rt_")
    assert issued.scope == "notes:read"  # a scope the client lost since is not issued
    (family,) = families.started
    assert (family.client_id, family.user_id, family.subject) == (TV.client_id, "u1", "alice")


# --- POST /oauth2/device_authorization --------------------------------------------------------


class Clients:
    def __init__(self, *records: OAuthClientRecord) -> None:
        self.records = {r.client_id: r for r in records}

    async def get(self, client_id: str) -> OAuthClientRecord | None:
        return self.records.get(client_id)


def endpoint(codes: Codes, *records: OAuthClientRecord) -> DeviceAuthorizationEndpoint:
    return DeviceAuthorizationEndpoint(Clients(*records), codes, ISSUER)  # type: ignore[arg-type]


async def authorize(
    ep: DeviceAuthorizationEndpoint, body: str
) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
    form = (b"content-type", b"application/x-www-form-urlencoded")
    response = await ep(
        EndpointRequest("POST", "/oauth2/device_authorization", (form,), body.encode()), T0
    )
    return response.status, json.loads(response.body), dict(response.headers)


async def test_the_device_authorization_response(codes: Codes) -> None:
    status, body, headers = await authorize(
        endpoint(codes, TV), f"client_id={TV.client_id}&scope=notes:read"
    )
    assert status == 200 and headers[b"cache-control"] == b"no-store"
    assert set(body) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert body["verification_uri"] == ISSUER + "/device"
    shown = body["user_code"]
    assert (
        len(shown) == 9
        and shown[4] == "-"
        and set(shown.replace("-", "")) <= set(USER_CODE_ALPHABET)
    )
    complete = urlsplit(body["verification_uri_complete"])
    assert complete.path == "/device" and parse_qs(complete.query) == {"user_code": [shown]}
    assert (body["expires_in"], body["interval"]) == (600, 5)
    (stored,) = codes.rows.values()
    assert stored.device_code_hash == token_digest(body["device_code"])  # only the hash
    assert stored.user_code == shown.replace("-", "") and stored.scopes == ("notes:read",)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ("scope=notes:read", 401, "invalid_client"),
        ("client_id=rg_ci_nobody", 401, "invalid_client"),
        ("client_id=rg_ci_tv&scope=admin", 400, "invalid_scope"),
        ("client_id=rg_ci_web", 400, "unauthorized_client"),
        ("client_id=rg_ci_tv&client_id=rg_ci_tv", 400, "invalid_request"),
    ],
)
async def test_device_authorization_errors(
    codes: Codes, body: str, status: int, error: str
) -> None:
    web = client("rg_ci_web", grants=("authorization_code",))
    got_status, got, headers = await authorize(endpoint(codes, TV, web), body)
    assert (got_status, got["error"]) == (status, error)
    assert headers[b"cache-control"] == b"no-store" and not codes.rows


async def test_every_scope_of_the_client_without_a_scope_parameter(codes: Codes) -> None:
    await authorize(endpoint(codes, TV), f"client_id={TV.client_id}")
    (stored,) = codes.rows.values()
    assert stored.scopes == ("notes:read", "notes:write")
