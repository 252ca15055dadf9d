"""guard.py: policy -> the route's authenticators -> scopes -> Principal, with decision events."""

from __future__ import annotations

import json

import pytest

from restguard.audit import DecisionEvent
from restguard.authz.policy import Policy, Route, compile_pattern
from restguard.authz.ratelimit import MemoryRateLimiter
from restguard.clock import FixedClock
from restguard.credentials.apikey import ApiKeyAuthenticator, generate_key
from restguard.credentials.base import AuthContext, Credential
from restguard.errors import (
    AuthError,
    InsufficientScope,
    InvalidCredential,
    InvalidRequest,
    MissingCredential,
    NotFound,
    RateLimited,
)
from restguard.guard import Decision, Guard, check_headers
from restguard.types import ANONYMOUS, Principal, RequestView, verified_principal
from tests.unit.fakes import T0, FakeApiKeyStore

API_KEY_CHALLENGE = 'ApiKey realm="restguard"'
BEARER_CHALLENGE = 'Bearer realm="restguard"'


class BearerStub:
    """A second authenticator ("jwt"): ``Authorization: Bearer good-<name>`` is valid."""

    method = "jwt"

    def extract(self, view: RequestView) -> Credential | None:
        value = view.single_header(b"authorization")
        if value is None or not value.startswith(b"Bearer "):
            return None
        token = value[len(b"Bearer ") :].decode()
        return Credential(self.method, token, "bearer:" + token[:4], (b"authorization",))

    async def authenticate(self, credential: Credential, ctx: AuthContext) -> Principal:
        if not credential.secret.startswith("good-"):
            raise InvalidCredential(debug="bad bearer")
        return verified_principal(
            subject=credential.secret[5:],
            client_id="jwt-client",
            scopes={"notes:read"},
            auth_method="jwt",
        )

    def challenge(self, error: AuthError | None) -> str:
        if error is None:
            return BEARER_CHALLENGE
        return BEARER_CHALLENGE + f', error="{error.error}"'


def route(index: int, path: str, methods: tuple[str, ...], **fields: object) -> Route:
    segments, subtree = compile_pattern(path)
    return Route(index, path, frozenset(methods), _segments=segments, _subtree=subtree, **fields)  # type: ignore[arg-type]


ROUTES = [
    route(0, "/public/**", ("GET", "POST"), public=True),
    route(1, "/public-limited", ("GET",), public=True, rate_limit=(2, 60.0)),
    route(2, "/notes/{id}", ("GET",), scopes=("notes:read",)),
    route(3, "/notes/**", ("POST",), scopes=("notes:write",), auth=("api_key",)),
    route(4, "/limited", ("GET",), rate_limit=(3, 60.0)),
    route(5, "/multi", ("GET",), scopes=("a", "b")),
    route(6, "/jwt-only", ("GET",), auth=("jwt",)),
    route(7, "/nothing-available", ("GET",), auth=("oauth1",)),
]


class Env:
    def __init__(self, failed_attempts: tuple[int, float] = (3, 60.0)) -> None:
        self.clock = FixedClock(T0)
        self.keys = FakeApiKeyStore()
        self.events: list[DecisionEvent] = []
        self.guard = Guard(
            Policy(ROUTES),
            {"api_key": ApiKeyAuthenticator(self.keys, self.clock), "jwt": BearerStub()},
            self.clock,
            MemoryRateLimiter(),
            sinks=[self.events.append],
            failed_attempts=failed_attempts,
        )

    async def decide(
        self,
        method: str,
        path: str,
        *headers: tuple[str, str],
        client: str = "192.0.2.1",
        query: bytes = b"",
    ) -> Decision:
        view = RequestView(
            method,
            path,
            query,
            tuple((k.lower().encode(), v.encode()) for k, v in headers),
            client,
        )
        return await self.guard.decide(view)

    async def refused(
        self, kind: type[AuthError], method: str, path: str, *headers: tuple[str, str], **kw: str
    ) -> AuthError:
        with pytest.raises(kind) as caught:
            await self.decide(method, path, *headers, **kw)  # type: ignore[arg-type]
        return caught.value


@pytest.fixture
def env() -> Env:
    return Env()


# --- public routes --------------------------------------------------------------------------------


async def test_public_route_gives_the_anonymous_principal(env: Env) -> None:
    decision = await env.decide("GET", "/public/anything")
    assert decision.principal is ANONYMOUS
    assert decision.principal.auth_method == "none"
    assert decision.principal.scopes == frozenset()
    assert decision.route.index == 0
    assert decision.credential_headers == ()


async def test_public_route_ignores_a_presented_credential(env: Env) -> None:
    _, unknown = generate_key()
    decision = await env.decide("POST", "/public/x", ("X-API-Key", unknown))
    assert decision.principal is ANONYMOUS
    assert env.keys.gets == 0


async def test_authenticate_returns_the_principal(env: Env) -> None:
    record, key = env.keys.add("notes:read", name="reader")
    view = RequestView("GET", "/notes/1", b"", ((b"x-api-key", key.encode()),), "192.0.2.1")
    principal = await env.guard.authenticate(view)
    assert (principal.subject, principal.client_id) == ("reader", record.id)
    assert await env.guard.authenticate(RequestView("GET", "/public/x")) is ANONYMOUS


# --- missing and invalid credentials --------------------------------------------------------------


async def test_missing_credential_gets_one_challenge_per_available_method(env: Env) -> None:
    err = await env.refused(MissingCredential, "GET", "/notes/1")
    assert err.status == 401
    # route 2 accepts every method; only api_key and jwt exist here, in route.auth order
    assert err.challenges == (API_KEY_CHALLENGE, BEARER_CHALLENGE)


async def test_missing_credential_challenges_follow_the_route(env: Env) -> None:
    err = await env.refused(MissingCredential, "POST", "/notes/1")
    assert err.challenges == (API_KEY_CHALLENGE,)
    err = await env.refused(MissingCredential, "GET", "/jwt-only")
    assert err.challenges == (BEARER_CHALLENGE,)


async def test_route_accepting_only_an_unavailable_method(env: Env) -> None:
    _, key = env.keys.add("notes:read")
    err = await env.refused(MissingCredential, "GET", "/nothing-available", ("X-API-Key", key))
    assert err.challenges == ()


async def test_credential_of_a_method_the_route_refuses_is_missing(env: Env) -> None:
    err = await env.refused(
        MissingCredential, "POST", "/notes/1", ("Authorization", "Bearer good-alice")
    )
    assert err.challenges == (API_KEY_CHALLENGE,)


async def test_invalid_credential_gets_challenges(env: Env) -> None:
    _, unknown = generate_key()
    err = await env.refused(InvalidCredential, "GET", "/notes/1", ("X-API-Key", unknown))
    assert err.challenges == (API_KEY_CHALLENGE, BEARER_CHALLENGE)
    err = await env.refused(InvalidCredential, "GET", "/notes/1", ("Authorization", "Bearer nope"))
    # the failing method's challenge carries the error
    assert err.challenges == (API_KEY_CHALLENGE, BEARER_CHALLENGE + ', error="invalid_token"')


async def test_two_credentials_are_refused(env: Env) -> None:
    _, key = env.keys.add("notes:read")
    err = await env.refused(
        InvalidRequest,
        "GET",
        "/notes/1",
        ("X-API-Key", key),
        ("Authorization", "Bearer good-alice"),
    )
    assert err.status == 400


async def test_second_method_works(env: Env) -> None:
    decision = await env.decide("GET", "/notes/1", ("Authorization", "Bearer good-alice"))
    assert decision.principal.subject == "alice"
    assert decision.principal.auth_method == "jwt"
    assert decision.credential_headers == (b"authorization",)


async def test_unknown_route_is_not_found_before_any_credential_check(env: Env) -> None:
    _, key = generate_key()
    await env.refused(NotFound, "GET", "/admin", ("X-API-Key", key))
    await env.refused(NotFound, "DELETE", "/notes/1", ("X-API-Key", key))
    assert env.keys.gets == 0


# --- scopes ---------------------------------------------------------------------------------------


async def test_scope_check(env: Env) -> None:
    record, key = env.keys.add("notes:read", name="reader")
    decision = await env.decide("GET", "/notes/1", ("X-API-Key", key))
    assert decision.principal.client_id == record.id
    assert decision.credential_headers == (b"x-api-key",)
    err = await env.refused(InsufficientScope, "POST", "/notes/1", ("X-API-Key", key))
    assert err.status == 403
    assert err.scope == "notes:write"  # type: ignore[attr-defined]


async def test_every_listed_scope_is_required(env: Env) -> None:
    _, only_a = env.keys.add("a")
    _, both = env.keys.add("b", "a", "c")
    err = await env.refused(InsufficientScope, "GET", "/multi", ("X-API-Key", only_a))
    assert err.scope == "a b"  # type: ignore[attr-defined]
    assert "missing b" in err.debug
    assert (await env.decide("GET", "/multi", ("X-API-Key", both))).route.index == 5


# --- decision events ------------------------------------------------------------------------------


async def test_allow_event(env: Env) -> None:
    record, key = env.keys.add("notes:read", name="reader")
    await env.decide("GET", "/notes/1", ("X-API-Key", key), client="198.51.100.7")
    (event,) = env.events
    assert event.outcome == "allow"
    assert event.status == 200
    assert event.error is None and event.detail is None
    assert (event.method, event.path, event.route) == ("GET", "/notes/1", "/notes/{id}")
    assert event.auth_method == "api_key"
    assert event.credential_id == record.id
    assert event.client == "198.51.100.7"
    assert event.time.startswith("2030-01-01T00:00:00.000")
    text = event.to_json()
    assert json.loads(text)["credential_id"] == record.id
    assert key not in text and key[19:] not in text and key[19:40] not in text


async def test_deny_events_never_carry_the_secret(env: Env) -> None:
    record, key = env.keys.add("notes:read")
    _, wrong = generate_key(record.id)  # right id, wrong secret
    secret_parts = [key[19:], wrong[19:], key[19:40], wrong[19:40]]
    await env.refused(InsufficientScope, "POST", "/notes/1", ("X-API-Key", key))
    await env.refused(InvalidCredential, "GET", "/notes/1", ("Authorization", "ApiKey " + wrong))
    await env.refused(MissingCredential, "GET", "/notes/1")
    await env.refused(NotFound, "GET", "/nope", ("X-API-Key", key))
    await env.refused(
        InvalidRequest, "GET", "/notes/1", ("X-API-Key", key), query=b"api_key=" + key.encode()
    )
    assert [e.status for e in env.events] == [403, 401, 401, 404, 400]
    assert all(e.outcome == "deny" for e in env.events)
    scope, invalid, missing, notfound, badreq = env.events
    assert (scope.error, scope.credential_id, scope.auth_method) == (
        "insufficient_scope",
        record.id,
        "api_key",
    )
    assert (invalid.error, invalid.credential_id, invalid.detail) == (
        "invalid_token",
        record.id,
        "api key secret mismatch",
    )
    assert (missing.error, missing.credential_id, missing.route) == (
        "unauthorized",
        None,
        "/notes/{id}",
    )
    assert (notfound.route, notfound.credential_id) == (None, None)
    assert badreq.detail == "api key in query string"
    for event in env.events:
        text = event.to_json()
        for part in secret_parts:
            assert part not in text


async def test_every_sink_gets_every_event() -> None:
    first: list[DecisionEvent] = []
    second: list[DecisionEvent] = []
    clock = FixedClock(T0)
    guard = Guard(
        Policy(ROUTES), {}, clock, MemoryRateLimiter(), sinks=[first.append, second.append]
    )
    await guard.decide(RequestView("GET", "/public/a"))
    with pytest.raises(NotFound):
        await guard.decide(RequestView("GET", "/b"))
    assert [e.status for e in first] == [200, 404]
    assert first == second


# --- failed attempts and rate limits --------------------------------------------------------------


async def test_failed_attempts_lock_the_client_out(env: Env) -> None:
    _, good = env.keys.add("notes:read")
    for _ in range(3):
        _, unknown = generate_key()
        await env.refused(InvalidCredential, "GET", "/notes/1", ("X-API-Key", unknown))
    err = await env.refused(RateLimited, "GET", "/notes/1", ("X-API-Key", good))
    assert err.status == 429
    assert err.retry_after == 20  # type: ignore[attr-defined]
    assert err.headers == (("retry-after", "20"),)
    assert env.events[-1].status == 429
    # Another client is not affected, and the locked-out one recovers.
    await env.decide("GET", "/notes/1", ("X-API-Key", good), client="192.0.2.99")
    env.clock.advance(20)
    await env.decide("GET", "/notes/1", ("X-API-Key", good))


async def test_lockout_does_not_consult_the_store(env: Env) -> None:
    for _ in range(3):
        _, unknown = generate_key()
        await env.refused(InvalidCredential, "GET", "/notes/1", ("X-API-Key", unknown))
    gets = env.keys.gets
    _, unknown = generate_key()
    await env.refused(RateLimited, "GET", "/notes/1", ("X-API-Key", unknown))
    assert env.keys.gets == gets


async def test_successes_and_malformed_keys_do_not_count_as_failures(env: Env) -> None:
    _, good = env.keys.add("notes:read")
    for _ in range(10):
        await env.decide("GET", "/notes/1", ("X-API-Key", good))
        await env.refused(InvalidRequest, "GET", "/notes/1", ("X-API-Key", "rg_ak_typo"))
        await env.refused(InsufficientScope, "POST", "/notes/1", ("X-API-Key", good))
    await env.decide("GET", "/notes/1", ("X-API-Key", good))


async def test_route_rate_limit_is_per_credential(env: Env) -> None:
    _, first = env.keys.add()
    _, second = env.keys.add()
    for _ in range(3):
        await env.decide("GET", "/limited", ("X-API-Key", first))
    err = await env.refused(RateLimited, "GET", "/limited", ("X-API-Key", first))
    assert err.retry_after == 20  # type: ignore[attr-defined]
    assert err.debug == "route rate limit"
    await env.decide("GET", "/limited", ("X-API-Key", second), client="192.0.2.1")
    env.clock.advance(20)
    await env.decide("GET", "/limited", ("X-API-Key", first))


async def test_rate_limited_route_still_checks_credentials(env: Env) -> None:
    _, unknown = generate_key()
    await env.refused(InvalidCredential, "GET", "/limited", ("X-API-Key", unknown))
    await env.refused(MissingCredential, "GET", "/limited")


async def test_public_route_rate_limit_is_per_client_address(env: Env) -> None:
    for _ in range(2):
        await env.decide("GET", "/public-limited")
    await env.refused(RateLimited, "GET", "/public-limited")
    await env.decide("GET", "/public-limited", client="192.0.2.200")


# --- check_headers --------------------------------------------------------------------------------


def hv(*headers: tuple[bytes, bytes]) -> RequestView:
    return RequestView("GET", "/", b"", headers, "")


@pytest.mark.parametrize(
    "headers",
    [
        ((b"x-restguard-subject", b"admin"),),
        ((b"x-restguard-identity", b"x"),),
        ((b"x-restguard-", b""),),
        ((b"x-http-method-override", b"DELETE"),),
        ((b"x-http-method", b"PUT"),),
        ((b"x-method-override", b"PATCH"),),
        ((b"x-original-url", b"/admin"),),
        ((b"x-rewrite-url", b"/admin"),),
        ((b"connection", b"close, Authorization"),),
        ((b"connection", b"x-api-key"),),
        ((b"connection", b"keep-alive,X-Restguard-Subject"),),
        ((b"connection", b"Signature-Input"),),
        ((b"connection", b"content-digest"),),
        ((b"connection", b" Host\t"),),
        ((b"connection", b"content-length"),),
        ((b"connection", b"cookie"),),
        ((b"accept", b"*/*"), (b"connection", b"close"), (b"connection", b"content-type")),
    ],
)
def test_check_headers_refuses(headers: tuple[tuple[bytes, bytes], ...]) -> None:
    with pytest.raises(InvalidRequest):
        check_headers(hv(*headers))


@pytest.mark.parametrize(
    "headers",
    [
        (),
        ((b"connection", b"close"),),
        ((b"connection", b"keep-alive, upgrade"),),
        ((b"x-forwarded-for", b"1.2.3.4"),),
        ((b"x-restguardsubject", b"not the prefix"),),
        ((b"authorization", b"ApiKey x"),),
        ((b"accept", b"x-restguard-subject"),),
    ],
)
def test_check_headers_accepts(headers: tuple[tuple[bytes, bytes], ...]) -> None:
    check_headers(hv(*headers))


async def test_guard_refuses_identity_headers_even_on_public_routes(env: Env) -> None:
    err = await env.refused(InvalidRequest, "GET", "/public/x", ("X-Restguard-Subject", "admin"))
    assert "X-Restguard" in err.description
    assert env.events[-1].status == 400
