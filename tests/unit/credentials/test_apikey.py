"""credentials/apikey.py: key format, extraction from a request, authentication and caching."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from restguard.clock import FixedClock
from restguard.credentials.apikey import (
    MAX_KEY_CHARS,
    PREFIX,
    ApiKeyAuthenticator,
    generate_key,
    new_record,
    parse_key,
)
from restguard.credentials.base import AuthContext, Credential
from restguard.errors import InvalidCredential, InvalidRequest
from restguard.keys.hashing import token_digest
from restguard.types import Principal, RequestView
from tests.unit.fakes import T0, FakeApiKeyStore

KEY_SHAPE = re.compile(r"^rg_ak_[0-9a-z]{12}_[0-9A-Za-z]{49}$")
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-"


# --- format ---------------------------------------------------------------------------------------


def test_generate_and_parse_round_trip() -> None:
    seen = set()
    for _ in range(50):
        key_id, key = generate_key()
        assert KEY_SHAPE.match(key), key
        assert key.startswith(PREFIX + key_id + "_")
        assert parse_key(key) == key_id
        seen.add(key)
    assert len(seen) == 50


def test_generate_with_a_given_id() -> None:
    key_id, key = generate_key("abcdefghij01")
    assert key_id == "abcdefghij01"
    assert parse_key(key) == "abcdefghij01"


def test_checksum_catches_every_single_character_change() -> None:
    _, key = generate_key()
    changed = 0
    for position in range(len(key)):
        for replacement in ALPHABET:
            if replacement == key[position]:
                continue
            typo = key[:position] + replacement + key[position + 1 :]
            with pytest.raises(InvalidCredential):
                parse_key(typo)
            changed += 1
    assert changed == len(key) * (len(ALPHABET) - 1)


def test_checksum_catches_swapped_neighbours() -> None:
    _, key = generate_key()
    body_start = len(PREFIX) + 13
    for i in range(body_start, len(key) - 1):
        if key[i] == key[i + 1]:
            continue
        swapped = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
        with pytest.raises(InvalidCredential):
            parse_key(swapped)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda k: k[:-1],
        lambda k: k + "A",
        lambda k: k + "\n",
        lambda k: " " + k,
        lambda k: k.upper(),
        lambda k: k.replace("rg_ak_", "rg_at_"),
        lambda k: "",
    ],
)
def test_malformed_keys_are_invalid_credentials(mutate: object) -> None:
    # A malformed key is an invalid credential (401 invalid_token), like a wrong one.
    _, key = generate_key()
    with pytest.raises(InvalidCredential) as caught:
        parse_key(mutate(key))  # type: ignore[operator]
    err = caught.value
    assert (err.status, err.error) == (401, "invalid_token")
    assert err.description == InvalidCredential.default_description
    assert err.debug == "api key syntax or checksum"


def test_new_record_stores_only_a_digest() -> None:
    record, key = new_record("svc", ("a", "b"), T0, 3600)
    assert record.key_hash == token_digest(key)
    assert key not in repr(record)
    assert record.scopes == ("a", "b")
    assert record.created_at == T0
    assert record.expires_at == T0 + timedelta(hours=1)
    assert new_record("svc", (), T0, None)[0].expires_at is None
    # durations may be fractional now ("250ms")
    assert new_record("svc", (), T0, 0.25)[0].expires_at == T0 + timedelta(milliseconds=250)


# --- extraction -----------------------------------------------------------------------------------


def view(*headers: tuple[str, str], query: bytes = b"") -> RequestView:
    return RequestView(
        "GET",
        "/notes",
        query,
        tuple((k.lower().encode(), v.encode()) for k, v in headers),
        "192.0.2.1",
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def keys() -> FakeApiKeyStore:
    return FakeApiKeyStore()


@pytest.fixture
def auth(keys: FakeApiKeyStore, clock: FixedClock) -> ApiKeyAuthenticator:
    return ApiKeyAuthenticator(keys, clock)


@pytest.mark.parametrize(
    ("name", "template"),
    [
        ("Authorization", "ApiKey {}"),
        ("Authorization", "apikey {}"),
        ("Authorization", "APIKEY  {}"),
        ("X-API-Key", "{}"),
        ("x-api-key", " {}\t"),
    ],
)
def test_extract_from_either_header(auth: ApiKeyAuthenticator, name: str, template: str) -> None:
    key_id, key = generate_key()
    credential = auth.extract(view((name, template.format(key))))
    assert credential is not None
    assert credential.method == "api_key"
    assert credential.secret == key
    assert credential.credential_id == key_id
    assert credential.headers == (name.lower().encode(),)
    assert key not in repr(credential)


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (("Authorization", "Bearer abc"),),
        (("Authorization", "Basic dXNlcjpwdw=="),),
        (("X-Api-Keys", "x"),),
    ],
)
def test_extract_none_without_an_api_key(
    auth: ApiKeyAuthenticator, headers: tuple[tuple[str, str], ...]
) -> None:
    assert auth.extract(view(*headers)) is None


def test_extract_other_scheme_with_x_api_key(auth: ApiKeyAuthenticator) -> None:
    key_id, key = generate_key()
    credential = auth.extract(view(("Authorization", "Bearer x"), ("X-API-Key", key)))
    assert credential is not None and credential.credential_id == key_id
    assert credential.headers == (b"x-api-key",)


def test_extract_both_headers_is_invalid(auth: ApiKeyAuthenticator) -> None:
    _, key = generate_key()
    with pytest.raises(InvalidRequest, match="one header"):
        auth.extract(view(("Authorization", "ApiKey " + key), ("X-API-Key", key)))


@pytest.mark.parametrize("name", ["X-API-Key", "Authorization"])
def test_extract_repeated_header_is_invalid(auth: ApiKeyAuthenticator, name: str) -> None:
    _, key = generate_key()
    value = key if name == "X-API-Key" else "ApiKey " + key
    with pytest.raises(InvalidRequest, match="must not be repeated"):
        auth.extract(view((name, value), (name, value)))


@pytest.mark.parametrize(
    ("value", "debug"),
    [
        ("", "api key syntax or checksum"),
        ("ApiKey", "api key syntax or checksum"),
        ("rg_ak_short", "api key syntax or checksum"),
        ("x" * (MAX_KEY_CHARS + 1), "api key too long"),
        ("rg_ak_\u00e9", "api key not ascii"),
    ],
)
def test_extract_malformed_key_is_an_invalid_credential(
    auth: ApiKeyAuthenticator, value: str, debug: str
) -> None:
    raw = RequestView("GET", "/", b"", ((b"x-api-key", value.encode("utf-8")),), "")
    with pytest.raises(InvalidCredential) as caught:
        auth.extract(raw)
    assert caught.value.status == 401
    assert caught.value.debug == debug


@pytest.mark.parametrize(
    "value",
    [
        "ApiKey",
        "ApiKey ",
        "ApiKey rg_ak_short",
        "apikey " + "x" * (MAX_KEY_CHARS + 1),
        "Bearer rg_ak_short",
        "Bearer rg_ak_",
    ],
)
def test_extract_malformed_key_in_authorization_is_an_invalid_credential(
    auth: ApiKeyAuthenticator, value: str
) -> None:
    with pytest.raises(InvalidCredential):
        auth.extract(view(("Authorization", value)))


def test_the_key_length_cap_is_inclusive(auth: ApiKeyAuthenticator) -> None:
    # MAX_KEY_CHARS characters get as far as the syntax check; one more is refused before it.
    with pytest.raises(InvalidCredential) as caught:
        auth.extract(view(("X-API-Key", "x" * MAX_KEY_CHARS)))
    assert caught.value.debug == "api key syntax or checksum"


def test_extraction_leaves_the_query_to_the_guard(auth: ApiKeyAuthenticator) -> None:
    # The query check moved to the guard (every route, not only api-key ones): extraction
    # looks at headers only.
    key_id, key = generate_key()
    query = b"api_key=" + key.encode()
    credential = auth.extract(view(("X-API-Key", key), query=query))
    assert credential is not None and credential.credential_id == key_id
    assert auth.extract(view(query=query)) is None


# --- Authorization: Bearer rg_ak_... ------------------------------------------------------------


@pytest.mark.parametrize("template", ["Bearer {}", "bearer {}", "BEARER {}", "Bearer  {}\t"])
def test_extract_bearer_api_key(auth: ApiKeyAuthenticator, template: str) -> None:
    key_id, key = generate_key()
    credential = auth.extract(view(("Authorization", template.format(key))))
    assert credential is not None
    assert (credential.method, credential.secret, credential.credential_id) == (
        "api_key",
        key,
        key_id,
    )
    assert credential.headers == (b"authorization",)


@pytest.mark.parametrize(
    "value",
    ["Bearer eyJhbGciOiJFZERTQSJ9.e30.sig", "Bearer rg_at_abc", "Bearer xrg_ak_abc", "Bearer"],
)
def test_other_bearer_tokens_are_not_api_keys(auth: ApiKeyAuthenticator, value: str) -> None:
    assert auth.extract(view(("Authorization", value))) is None
    assert auth.carriers(view(("Authorization", value))) == ()


def test_bearer_key_and_x_api_key_together_is_invalid(auth: ApiKeyAuthenticator) -> None:
    _, key = generate_key()
    with pytest.raises(InvalidRequest, match="one header"):
        auth.extract(view(("Authorization", "Bearer " + key), ("X-API-Key", key)))


# --- carriers: every header holding an API key, used or not -------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((), ()),
        ((("Accept", "*/*"),), ()),
        ((("X-API-Key", "{key}"),), (b"x-api-key",)),
        ((("X-API-Key", "not-a-key"),), (b"x-api-key",)),
        ((("X-API-Key", ""),), (b"x-api-key",)),
        ((("Authorization", "ApiKey {key}"),), (b"authorization",)),
        ((("Authorization", "apikey garbage"),), (b"authorization",)),
        ((("Authorization", "Bearer {key}"),), (b"authorization",)),
        ((("Authorization", "Bearer rg_ak_malformed"),), (b"authorization",)),
        ((("Authorization", "Basic dXNlcjpwdw=="),), ()),
        (
            (("Authorization", "Bearer {key}"), ("X-API-Key", "{key}")),
            (b"authorization", b"x-api-key"),
        ),
        ((("Authorization", "Bearer jwt"), ("X-API-Key", "{key}")), (b"x-api-key",)),
        # a repeated field is ambiguous: both kinds go, whatever they hold
        ((("X-API-Key", "a"), ("X-API-Key", "b")), (b"authorization", b"x-api-key")),
        ((("Authorization", "Basic a"), ("Authorization", "b")), (b"authorization", b"x-api-key")),
    ],
)
def test_carriers(
    auth: ApiKeyAuthenticator,
    headers: tuple[tuple[str, str], ...],
    expected: tuple[bytes, ...],
) -> None:
    _, key = generate_key()
    filled = tuple((name, value.format(key=key)) for name, value in headers)
    assert auth.carriers(view(*filled)) == expected


# --- authentication -------------------------------------------------------------------------------


def ctx(clock: FixedClock) -> AuthContext:
    return AuthContext(clock.now(), "192.0.2.1")


def credential_for(auth: ApiKeyAuthenticator, key: str) -> Credential:
    credential = auth.extract(view(("X-API-Key", key)))
    assert credential is not None
    return credential


async def test_authenticate_ok(
    auth: ApiKeyAuthenticator, keys: FakeApiKeyStore, clock: FixedClock
) -> None:
    record, key = keys.add("notes:read", "notes:write", name="billing")
    principal = await auth.authenticate(credential_for(auth, key), ctx(clock))
    assert isinstance(principal, Principal)
    assert principal.subject == "billing"
    assert principal.client_id == record.id
    assert principal.scopes == frozenset({"notes:read", "notes:write"})
    assert principal.auth_method == "api_key"


async def test_unknown_id(auth: ApiKeyAuthenticator, clock: FixedClock) -> None:
    _, key = generate_key()
    with pytest.raises(InvalidCredential) as caught:
        await auth.authenticate(credential_for(auth, key), ctx(clock))
    assert caught.value.debug == "unknown api key id"
    assert caught.value.description == InvalidCredential.default_description


async def test_wrong_secret(
    auth: ApiKeyAuthenticator, keys: FakeApiKeyStore, clock: FixedClock
) -> None:
    record, _ = keys.add("a")
    _, other = generate_key(record.id)  # same id, different secret, valid checksum
    with pytest.raises(InvalidCredential) as caught:
        await auth.authenticate(credential_for(auth, other), ctx(clock))
    assert caught.value.debug == "api key secret mismatch"
    assert caught.value.description == InvalidCredential.default_description


async def test_a_key_checked_once_is_checked_again_whenever_its_stored_digest_changes(
    auth: ApiKeyAuthenticator, keys: FakeApiKeyStore, clock: FixedClock
) -> None:
    """A key found to match its record is not hashed again while that record is cached, but
    any other secret for the same id still is (and fails), and a record whose digest changed
    (re-read after the cache's second) is checked afresh: the old key then fails."""
    import dataclasses

    record, key = keys.add("a")
    _, other = generate_key(record.id)
    credential = credential_for(auth, key)
    for _ in range(2):
        assert (await auth.authenticate(credential, ctx(clock))).client_id == record.id
        with pytest.raises(InvalidCredential) as caught:
            await auth.authenticate(credential_for(auth, other), ctx(clock))
        assert caught.value.debug == "api key secret mismatch"
    _, replaced = generate_key(record.id)
    keys.records[record.id] = dataclasses.replace(record, key_hash=token_digest(replaced))
    clock.advance(1)
    with pytest.raises(InvalidCredential) as caught:
        await auth.authenticate(credential, ctx(clock))
    assert caught.value.debug == "api key secret mismatch"
    assert (await auth.authenticate(credential_for(auth, replaced), ctx(clock))).subject


async def test_revoked(auth: ApiKeyAuthenticator, keys: FakeApiKeyStore, clock: FixedClock) -> None:
    _, key = keys.add("a", revoked_at=T0)
    with pytest.raises(InvalidCredential) as caught:
        await auth.authenticate(credential_for(auth, key), ctx(clock))
    assert caught.value.debug == "api key revoked"


async def test_revoked_in_the_future_is_a_grace_period(
    auth: ApiKeyAuthenticator, keys: FakeApiKeyStore, clock: FixedClock
) -> None:
    record, key = keys.add("a", revoked_at=T0 + timedelta(hours=1))
    credential = credential_for(auth, key)
    principal = await auth.authenticate(credential, ctx(clock))
    assert principal.client_id == record.id
    clock.advance(3600)
    with pytest.raises(InvalidCredential, match="not valid"):
        await auth.authenticate(credential, ctx(clock))


async def test_expired(auth: ApiKeyAuthenticator, keys: FakeApiKeyStore, clock: FixedClock) -> None:
    _, key = keys.add("a", expires_in=60)
    credential = credential_for(auth, key)
    await auth.authenticate(credential, ctx(clock))
    clock.advance(59)
    await auth.authenticate(credential, ctx(clock))
    clock.advance(1)
    with pytest.raises(InvalidCredential) as caught:
        await auth.authenticate(credential, ctx(clock))
    assert caught.value.debug == "api key expired"


async def test_cache_serves_for_less_than_a_second_then_sees_revocation(
    auth: ApiKeyAuthenticator, keys: FakeApiKeyStore, clock: FixedClock
) -> None:
    record, key = keys.add("a")
    credential = credential_for(auth, key)
    await auth.authenticate(credential, ctx(clock))
    assert keys.gets == 1
    await keys.revoke(record.id, clock.now())
    clock.advance(0.999)
    await auth.authenticate(credential, ctx(clock))  # served from the cache
    assert keys.gets == 1
    clock.advance(0.001)  # one second after the fetch: the revocation is seen
    with pytest.raises(InvalidCredential):
        await auth.authenticate(credential, ctx(clock))
    assert keys.gets == 2


async def test_cache_ttl_zero_reads_every_time(keys: FakeApiKeyStore, clock: FixedClock) -> None:
    auth = ApiKeyAuthenticator(keys, clock, cache_ttl=0)
    _, key = keys.add("a")
    credential = credential_for(auth, key)
    for _ in range(3):
        await auth.authenticate(credential, ctx(clock))
    assert keys.gets == 3


async def test_unknown_ids_are_not_cached_as_valid(
    auth: ApiKeyAuthenticator, keys: FakeApiKeyStore, clock: FixedClock
) -> None:
    record, key = keys.add("a")
    credential = credential_for(auth, key)
    await auth.authenticate(credential, ctx(clock))
    del keys.records[record.id]
    clock.advance(1)
    with pytest.raises(InvalidCredential):
        await auth.authenticate(credential, ctx(clock))
    with pytest.raises(InvalidCredential):  # not resurrected from a stale cache entry
        await auth.authenticate(credential, ctx(clock))


async def test_cache_size_is_bounded(keys: FakeApiKeyStore, clock: FixedClock) -> None:
    auth = ApiKeyAuthenticator(keys, clock, cache_size=2)
    creds = [credential_for(auth, keys.add("a")[1]) for _ in range(3)]
    for c in creds:
        await auth.authenticate(c, ctx(clock))
    assert keys.gets == 3
    await auth.authenticate(creds[0], ctx(clock))  # evicted (the oldest entry)
    assert keys.gets == 4
    await auth.authenticate(creds[2], ctx(clock))  # still cached
    assert keys.gets == 4


async def test_last_used_is_noted_at_most_once_a_minute(
    keys: FakeApiKeyStore, clock: FixedClock
) -> None:
    noted: list[tuple[str, datetime]] = []
    auth = ApiKeyAuthenticator(
        keys, clock, touch_interval=60, usage=lambda i, at: noted.append((i, at))
    )
    record, key = keys.add("a")
    credential = credential_for(auth, key)
    await auth.authenticate(credential, ctx(clock))
    assert noted == [(record.id, T0)]
    for _ in range(5):
        clock.advance(10)
        await auth.authenticate(credential, ctx(clock))
    assert len(noted) == 1  # 50 s later: still once
    clock.advance(10)
    await auth.authenticate(credential, ctx(clock))
    assert noted[-1] == (record.id, T0 + timedelta(seconds=60))
    assert len(noted) == 2
    assert keys.touches == []  # never written on the decision path: the bookkeeper writes


async def test_failed_authentication_notes_no_use(keys: FakeApiKeyStore, clock: FixedClock) -> None:
    noted: list[tuple[str, datetime]] = []
    auth = ApiKeyAuthenticator(keys, clock, usage=lambda i, at: noted.append((i, at)))
    _, key = keys.add("a", revoked_at=T0)
    with pytest.raises(InvalidCredential):
        await auth.authenticate(credential_for(auth, key), ctx(clock))
    assert noted == []


@pytest.mark.parametrize("ttl", [2, 1.01, -0.1])
def test_cache_ttl_over_one_second_is_refused(
    keys: FakeApiKeyStore, clock: FixedClock, ttl: float
) -> None:
    with pytest.raises(ValueError, match="1 s"):
        ApiKeyAuthenticator(keys, clock, cache_ttl=ttl)


def test_challenge(auth: ApiKeyAuthenticator) -> None:
    assert auth.challenge(None) == 'ApiKey realm="restguard"'
    assert auth.challenge(InvalidCredential()) == 'ApiKey realm="restguard"'


def test_identity_header_values_with_control_characters_fail_closed() -> None:
    from restguard.errors import ServerError
    from restguard.gateway.identity import _value

    assert _value("reader ü") == "reader ü".encode()
    with pytest.raises(ServerError):
        _value("a\r\nX-Restguard-Subject: root")
