"""guard.py: policy -> the route's authenticators -> scopes -> Principal, with decision events."""

from __future__ import annotations

import json

import pytest

from restguard.audit import DecisionEvent
from restguard.authz.policy import AmbiguousPath, Policy, Route, compile_pattern
from restguard.authz.ratelimit import MemoryRateLimiter
from restguard.authz.request_checks import check_headers, check_query
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
from restguard.guard import Decision, Guard
from restguard.types import ANONYMOUS, Principal, RequestView, verified_principal
from tests.unit.fakes import T0, FakeApiKeyStore

API_KEY_CHALLENGE = 'ApiKey realm="restguard"'
BEARER_CHALLENGE = 'Bearer realm="restguard"'


class BearerStub:
    """A second authenticator ("jwt"): ``Authorization: Bearer good-<name>`` is valid."""

    method = "jwt"
    presentation = "a token in 'Authorization: Bearer <token>'"

    @staticmethod
    def _token(view: RequestView) -> bytes | None:
        value = view.single_header(b"authorization")
        if value is None or not value.startswith(b"Bearer "):
            return None
        token = value[len(b"Bearer ") :]
        return None if token.startswith(b"rg_ak_") else token  # an API key, not a JWT

    def extract(self, view: RequestView) -> Credential | None:
        token = self._token(view)
        if token is None:
            return None
        text = token.decode()
        return Credential(self.method, text, "bearer:" + text[:4], (b"authorization",))

    def carriers(self, view: RequestView) -> tuple[bytes, ...]:
        return (b"authorization",) if self._token(view) is not None else ()

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
            MemoryRateLimiter(self.clock.monotonic),
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


API_KEY_FORMS = (
    "an API key in 'Authorization: Bearer <key>', 'Authorization: ApiKey <key>' or "
    "'X-API-Key: <key>'"
)


@pytest.mark.parametrize(
    ("method", "path", "headers", "description"),
    [
        ("POST", "/notes/1", (), f"This route needs a credential: send {API_KEY_FORMS}."),
        (
            "GET",
            "/notes/1",
            (),
            f"This route needs a credential: send {API_KEY_FORMS}, or "
            "a token in 'Authorization: Bearer <token>'.",
        ),
        (
            "POST",
            "/notes/1",
            (("Authorization", "Bearer good-alice"),),
            f"This route does not accept jwt credentials; send {API_KEY_FORMS}.",
        ),
        (
            "GET",
            "/jwt-only",
            (("X-API-Key", "rg_ak_typo"),),
            "This route does not accept api_key credentials; "
            "send a token in 'Authorization: Bearer <token>'.",
        ),
        (
            "POST",
            "/notes/1",
            (("Authorization", "Basic dXNlcjpwdw=="),),
            f"This route does not accept the Authorization scheme 'Basic'; send {API_KEY_FORMS}.",
        ),
        (
            "POST",
            "/notes/1",
            (("Authorization", "Token abc"),),
            f"This route does not accept the Authorization scheme 'Token'; send {API_KEY_FORMS}.",
        ),
        (
            "POST",
            "/notes/1",
            (("Authorization", "{key}"),),  # a key without a scheme: never echoed
            "This route does not accept the Authorization scheme in this header; "
            f"send {API_KEY_FORMS}.",
        ),
        (
            "POST",
            "/notes/1",
            (("X-Auth-Token", "{key}"),),
            f"A credential in the x-auth-token header is not read; send {API_KEY_FORMS}.",
        ),
    ],
)
async def test_missing_credential_says_what_the_route_accepts_and_why_nothing_was_read(
    env: Env, method: str, path: str, headers: tuple[tuple[str, str], ...], description: str
) -> None:
    _, key = env.keys.add("notes:read", "notes:write")
    sent = tuple((k, v.replace("{key}", key)) for k, v in headers)
    err = await env.refused(MissingCredential, method, path, *sent)
    assert err.description == description
    assert key not in err.description and "rg_ak_" not in err.description


async def test_a_fallback_route_decides_what_no_policy_route_matches(env: Env) -> None:
    fallback = route(-1, "/x", ("GET",), scopes=("reports:read",))
    view = RequestView("GET", "/unrouted", b"", (), "192.0.2.1")
    with pytest.raises(NotFound):
        await env.guard.decide(view)
    with pytest.raises(MissingCredential):
        await env.guard.decide(view, fallback=fallback)
    _, reader = env.keys.add("notes:read")
    _, reporter = env.keys.add("reports:read")
    with_key = RequestView("GET", "/unrouted", b"", ((b"x-api-key", reader.encode()),), "192.0.2.1")
    with pytest.raises(InsufficientScope):
        await env.guard.decide(with_key, fallback=fallback)
    allowed = RequestView(
        "GET", "/unrouted", b"", ((b"x-api-key", reporter.encode()),), "192.0.2.1"
    )
    assert (await env.guard.decide(allowed, fallback=fallback)).route is fallback
    # a policy route that matches decides, not the fallback; an ambiguous path stays refused
    public = RequestView("GET", "/public/x", b"", (), "192.0.2.1")
    assert (await env.guard.decide(public, fallback=fallback)).route.index == 0
    with pytest.raises(AmbiguousPath):
        await env.guard.decide(RequestView("GET", "/PUBLIC/x"), fallback=fallback)


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
    assert badreq.detail == "credential in query string"
    for event in env.events:
        text = event.to_json()
        for part in secret_parts:
            assert part not in text


async def test_every_sink_gets_every_event() -> None:
    first: list[DecisionEvent] = []
    second: list[DecisionEvent] = []
    clock = FixedClock(T0)
    guard = Guard(
        Policy(ROUTES),
        {},
        clock,
        MemoryRateLimiter(clock.monotonic),
        sinks=[first.append, second.append],
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
    _, unknown = generate_key()
    err = await env.refused(RateLimited, "GET", "/notes/1", ("X-API-Key", unknown))
    assert err.status == 429
    assert err.retry_after == 20  # type: ignore[attr-defined]
    assert err.headers == (("retry-after", "20"),)
    assert env.events[-1].status == 429
    # A valid credential is never refused by the lockout (a stranger behind the same proxy or
    # NAT must not lock its owner out); other clients are not affected; the lockout passes.
    await env.decide("GET", "/notes/1", ("X-API-Key", good))
    await env.decide("GET", "/notes/1", ("X-API-Key", good), client="192.0.2.99")
    await env.refused(RateLimited, "GET", "/notes/1")
    env.clock.advance(20)
    await env.refused(MissingCredential, "GET", "/notes/1")


async def test_clients_without_an_address_share_a_lockout_that_spares_valid_keys(env: Env) -> None:
    # (a Unix-socket server gives no address: failures add up, valid keys still pass)
    _, good = env.keys.add("notes:read")
    for _ in range(3):
        await env.refused(MissingCredential, "GET", "/notes/1", client="")
    await env.refused(RateLimited, "GET", "/notes/1", client="")
    await env.decide("GET", "/notes/1", ("X-API-Key", good), client="")


async def test_ipv6_clients_are_counted_per_64_so_a_prefix_holder_gets_one_count(
    env: Env,
) -> None:
    # One subscriber's /64 is 2^64 addresses: counted per address, each would be a new counter.
    _, good = env.keys.add("notes:read")
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:2:abcd::9"):
        await env.refused(MissingCredential, "GET", "/notes/1", client=host)
    await env.refused(RateLimited, "GET", "/notes/1", client="2001:db8:1:2:1:2:3:4")
    await env.refused(MissingCredential, "GET", "/notes/1", client="2001:db8:1:3::1")  # other /64
    await env.decide("GET", "/notes/1", ("X-API-Key", good), client="2001:db8:1:2::1")
    # an IPv4-mapped address is its IPv4 address
    for _ in range(3):
        await env.refused(MissingCredential, "GET", "/notes/1", client="::ffff:192.0.2.7")
    await env.refused(RateLimited, "GET", "/notes/1", client="192.0.2.7")


async def test_successes_and_non_401_refusals_do_not_count_as_failures(env: Env) -> None:
    _, good = env.keys.add("notes:read")
    for _ in range(10):
        await env.decide("GET", "/notes/1", ("X-API-Key", good))
        await env.refused(InsufficientScope, "POST", "/notes/1", ("X-API-Key", good))  # 403
        await env.refused(NotFound, "GET", "/nope", ("X-API-Key", "rg_ak_typo"))  # 404
        await env.refused(  # 400: two credentials
            InvalidRequest,
            "GET",
            "/notes/1",
            ("X-API-Key", good),
            ("Authorization", "Bearer good-alice"),
        )
        await env.refused(  # 400: a repeated credential header
            InvalidRequest, "GET", "/notes/1", ("X-API-Key", good), ("X-API-Key", good)
        )
        await env.refused(InvalidRequest, "GET", "/notes/1", query=b"api_key=x")  # 400
    await env.decide("GET", "/notes/1", ("X-API-Key", good))


@pytest.mark.parametrize(
    "failure",
    [
        (),  # missing credential
        (("X-API-Key", "rg_ak_typo"),),  # malformed
        (("Authorization", "ApiKey "),),  # malformed: empty
        (("Authorization", "Bearer rg_ak_typo"),),  # malformed, in a Bearer header
        (("X-API-Key", "x" * 200),),  # too long
        (("Authorization", "Bearer wrong"),),  # refused by another method
    ],
    ids=["missing", "malformed", "empty", "bearer-malformed", "too-long", "jwt-invalid"],
)
async def test_every_401_counts_toward_the_lockout(
    env: Env, failure: tuple[tuple[str, str], ...]
) -> None:
    _, good = env.keys.add("notes:read")
    for _ in range(3):
        err = await env.refused(AuthError, "GET", "/notes/1", *failure)
        assert err.status == 401
    err = await env.refused(RateLimited, "GET", "/notes/1", *failure)
    assert err.headers == (("retry-after", "20"),)
    await env.decide("GET", "/notes/1", ("X-API-Key", good))  # a valid key still passes


async def test_mixed_401s_add_up(env: Env) -> None:
    _, unknown = generate_key()
    await env.refused(MissingCredential, "GET", "/notes/1")
    await env.refused(InvalidCredential, "GET", "/notes/1", ("X-API-Key", "rg_ak_typo"))
    await env.refused(InvalidCredential, "GET", "/notes/1", ("X-API-Key", unknown))
    await env.refused(RateLimited, "GET", "/notes/1")


async def test_public_routes_stay_open_to_a_locked_out_client(env: Env) -> None:
    for _ in range(3):
        await env.refused(MissingCredential, "GET", "/notes/1")
    await env.refused(RateLimited, "GET", "/notes/1")
    assert (await env.decide("GET", "/public/x")).principal is ANONYMOUS


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
        ((b"x-http-method-override", b"DELETE"),),
        ((b"x-http-method", b"PUT"),),
        ((b"x-method-override", b"PATCH"),),
        ((b"x-original-url", b"/admin"),),
        ((b"x-rewrite-url", b"/admin"),),
        ((b"accept", b"*/*"), (b"x-http-method-override", b"")),
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
        # Connection naming a header restguard relies on: the token is ignored when forwarding
        # (gateway.headers), the request goes on
        ((b"connection", b"close, Authorization"),),
        ((b"connection", b"x-api-key"),),
        ((b"connection", b"keep-alive,X-Restguard-Subject"),),
        ((b"connection", b" Host\t"),),
        ((b"connection", b"content-length"),),
        # client-sent X-Restguard-* are removed before the decision (edge.view), not refused
        ((b"x-restguard-subject", b"admin"),),
    ],
)
def test_check_headers_accepts(headers: tuple[tuple[bytes, bytes], ...]) -> None:
    check_headers(hv(*headers))


async def test_guard_does_not_refuse_identity_headers(env: Env) -> None:
    # Removing them is the view's job (edge.view.clean_headers); the guard never sees them from
    # a real adapter, and does not turn them into a 400 if it does.
    decision = await env.decide("GET", "/public/x", ("X-Restguard-Subject", "admin"))
    assert decision.principal is ANONYMOUS
    assert env.events[-1].status == 200


async def test_guard_refuses_method_override_headers_on_every_matched_route(env: Env) -> None:
    err = await env.refused(
        InvalidRequest, "GET", "/public/x", ("X-HTTP-Method-Override", "DELETE")
    )
    assert "Method-override" in err.description
    assert env.events[-1].status == 400


# --- credentials in the query string: refused on every route -------------------------------------

QUERIES_WITH_CREDENTIALS = [
    b"api_key=x",
    b"apikey=x",
    b"API-KEY=x",
    b"x-api-key=",
    b"a=1&Api_Key=abc",
    b"api%5Fkey=x",  # the name is percent-decoded
    b"+api_key=x",  # and plus-decoded, then stripped
    b"token={key}",
    b"{key}",
    b"a=1&b={key}",
    b"a={key}&b=1",
    b"{key}=1",  # in a name
    b"t=Bearer+{key}",
    b"t=Bearer%20{key}",
    b"t={key_5f}",  # "_" written as %5F
    b"t={key_5f_lower}",
    b"t=rg_ak_",  # the prefix alone is enough
    b"t=x{key}",  # glued to other text
    b"t=%22{key}%22",
]


def _fill(query: bytes, key: str) -> bytes:
    return (
        query.replace(b"{key}", key.encode())
        .replace(b"{key_5f}", key.replace("_", "%5F").encode())
        .replace(b"{key_5f_lower}", key.replace("_", "%5f").encode())
    )


@pytest.mark.parametrize("query", QUERIES_WITH_CREDENTIALS)
def test_check_query_refuses_credentials(query: bytes) -> None:
    _, key = generate_key()
    with pytest.raises(InvalidRequest, match="never in the URL") as caught:
        check_query(_fill(query, key))
    assert caught.value.debug == "credential in query string"
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "query",
    [
        b"",
        b"page=2&key_name=x",
        b"api_key_id=7",  # not one of the names
        b"q=rg&r=ak",
        b"q=rg_a_b",
        b"q=org",
        b"sort=-created_at",
    ],
)
def test_check_query_accepts(query: bytes) -> None:
    check_query(query)


@pytest.mark.parametrize(
    "query", [b"_method=DELETE", b"a=1&_METHOD=PUT", b"%5Fmethod=DELETE", b"a=1;_method=x"]
)
def test_check_query_refuses_method_override(query: bytes) -> None:
    with pytest.raises(InvalidRequest, match="_method") as caught:
        check_query(query)
    assert caught.value.debug == "_method in query"


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/public/x", ()),  # public
        ("GET", "/unknown", ()),  # unmatched: 400, not 404
        ("DELETE", "/notes/1", ()),  # no route for the method
        ("GET", "/notes/1", (("X-API-Key", "{key}"),)),  # would be allowed otherwise
    ],
)
async def test_a_credential_in_the_query_is_refused_on_every_route(
    env: Env, method: str, path: str, headers: tuple[tuple[str, str], ...]
) -> None:
    _, key = env.keys.add("notes:read")
    filled = tuple((n, v.format(key=key)) for n, v in headers)
    err = await env.refused(InvalidRequest, method, path, *filled, query=b"api_key=" + key.encode())
    assert err.debug == "credential in query string"
    event = env.events[-1]
    assert (event.status, event.route, event.credential_id) == (400, None, None)
    assert env.keys.gets == 0
    assert key not in event.to_json()


async def test_method_override_in_the_query_is_refused_on_public_routes(env: Env) -> None:
    await env.refused(InvalidRequest, "POST", "/public/x", query=b"_method=DELETE")


# --- Authorization: Bearer rg_ak_... and malformed keys ------------------------------------------


async def test_bearer_api_key_is_accepted(env: Env) -> None:
    record, key = env.keys.add("notes:read")
    decision = await env.decide("GET", "/notes/1", ("Authorization", "Bearer " + key))
    assert decision.principal.client_id == record.id
    assert decision.principal.auth_method == "api_key"
    assert decision.credential_headers == (b"authorization",)
    # on a route accepting api_key only, too
    _, writer = env.keys.add("notes:write")
    decision = await env.decide("POST", "/notes/1", ("Authorization", "Bearer " + writer))
    assert decision.principal.auth_method == "api_key"


async def test_bearer_api_key_on_a_route_without_api_key_is_missing(env: Env) -> None:
    _, key = env.keys.add("notes:read")
    err = await env.refused(
        MissingCredential, "GET", "/jwt-only", ("Authorization", "Bearer " + key)
    )
    assert err.challenges == (BEARER_CHALLENGE,)


@pytest.mark.parametrize(
    "header",
    [
        ("X-API-Key", "rg_ak_typo"),
        ("X-API-Key", "not a key at all"),
        ("Authorization", "ApiKey rg_ak_typo"),
        ("Authorization", "Bearer rg_ak_typo"),
        ("X-API-Key", "rg_ak_\u00e9"),
    ],
)
async def test_malformed_key_is_an_invalid_credential_with_challenges(
    env: Env, header: tuple[str, str]
) -> None:
    err = await env.refused(InvalidCredential, "GET", "/notes/1", header)
    assert (err.status, err.error) == (401, "invalid_token")
    assert err.challenges == (API_KEY_CHALLENGE, BEARER_CHALLENGE)
    assert env.keys.gets == 0  # refused on syntax alone
    event = env.events[-1]
    assert (event.status, event.error, event.credential_id) == (401, "invalid_token", None)
    assert event.detail is not None and "api key" in event.detail


async def test_malformed_key_on_a_route_not_accepting_api_keys_is_missing(env: Env) -> None:
    err = await env.refused(MissingCredential, "GET", "/jwt-only", ("X-API-Key", "rg_ak_typo"))
    assert err.challenges == (BEARER_CHALLENGE,)


# --- credential_headers: every carrier, on every route -------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((), set()),
        ((("X-API-Key", "{key}"),), {b"x-api-key"}),
        ((("X-API-Key", "garbage"),), {b"x-api-key"}),
        ((("Authorization", "ApiKey {key}"),), {b"authorization"}),
        ((("Authorization", "Bearer {key}"),), {b"authorization"}),
        ((("Authorization", "Bearer good-alice"),), {b"authorization"}),
        ((("Authorization", "Basic dXNlcjpwdw=="),), set()),
        ((("X-API-Key", "{key}"), ("Authorization", "Bearer x")), {b"x-api-key", b"authorization"}),
    ],
)
async def test_public_routes_report_every_credential_carrier(
    env: Env, headers: tuple[tuple[str, str], ...], expected: set[bytes]
) -> None:
    _, key = generate_key()
    filled = tuple((n, v.format(key=key)) for n, v in headers)
    decision = await env.decide("POST", "/public/x", *filled)
    assert decision.principal is ANONYMOUS
    assert set(decision.credential_headers) == expected
    assert env.keys.gets == 0  # reported, never checked


async def test_credential_headers_include_carriers_of_every_method(env: Env) -> None:
    # A JWT is the credential used; an API key header rides along: both are carriers (the
    # upstream gets neither unless the route forwards credentials).
    _, key = env.keys.add("notes:read")
    decision = await env.decide(
        "GET", "/jwt-only", ("Authorization", "Bearer good-alice"), ("X-API-Key", key)
    )
    assert decision.principal.auth_method == "jwt"
    # the route does not accept api_key, and the key is never checked: still a carrier
    assert set(decision.credential_headers) == {b"authorization", b"x-api-key"}
    assert env.keys.gets == 0


async def test_credential_headers_survive_a_repeated_header_on_public_routes(env: Env) -> None:
    decision = await env.decide("GET", "/public/x", ("X-API-Key", "a"), ("X-API-Key", "b"))
    assert {b"x-api-key", b"authorization"} <= set(decision.credential_headers)


# --- HEAD, ambiguous paths ------------------------------------------------------------------------


async def test_head_is_decided_as_get(env: Env) -> None:
    _, key = env.keys.add("notes:read")
    decision = await env.decide("HEAD", "/notes/1", ("X-API-Key", key))
    assert decision.route.index == 2
    assert env.events[-1].method == "HEAD"
    await env.refused(MissingCredential, "HEAD", "/notes/1")


@pytest.mark.parametrize("path", ["/Notes/1", "/notes/1/", "/LIMITED", "/multi/"])
async def test_ambiguous_path_is_a_bad_request(env: Env, path: str) -> None:
    _, key = env.keys.add("notes:read", "a", "b")
    err = await env.refused(AmbiguousPath, "GET", path, ("X-API-Key", key))
    assert err.status == 400
    assert env.keys.gets == 0
    assert (env.events[-1].status, env.events[-1].route) == (400, None)


# --- form bodies read before the decision ---------------------------------------------------------

FORM = ("Content-Type", "application/x-www-form-urlencoded")
MULTIPART_TYPE = ("Content-Type", "multipart/form-data; boundary=XyZ")


def multipart(*names: str) -> bytes:
    parts = [
        b'--XyZ\r\nContent-Disposition: form-data; name="%s"\r\n\r\nv\r\n' % n.encode()
        for n in names
    ]
    return b"".join(parts) + b"--XyZ--\r\n"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (FORM, b"_method=DELETE"),
        (FORM, b"a=1&_Method=PUT"),
        (MULTIPART_TYPE, multipart("a", "_method")),
        (MULTIPART_TYPE, multipart("_METHOD")),
    ],
)
async def test_method_override_in_a_form_body_is_refused(
    env: Env, content_type: tuple[str, str], body: bytes
) -> None:
    view = RequestView(
        "POST", "/public/x", b"", ((b"content-type", content_type[1].encode()),), "192.0.2.1"
    )
    # The decision comes first, on the head alone (no client makes restguard buffer a body
    # before it is allowed); the body is judged once read, and its refusal recorded too.
    assert (await env.guard.decide(view)).principal is ANONYMOUS
    with pytest.raises(InvalidRequest, match="_method"):
        env.guard.check_body(view, body)
    assert [e.outcome for e in env.events] == ["allow", "deny"]
    assert env.events[-1].detail == "_method in form body"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (FORM, b"a=1&method=DELETE"),
        (MULTIPART_TYPE, multipart("a", "method")),
        (("Content-Type", "text/plain"), b"_method=DELETE"),  # not a form: nobody parses it so
    ],
)
async def test_ordinary_form_bodies_are_allowed(
    env: Env, content_type: tuple[str, str], body: bytes
) -> None:
    view = RequestView(
        "POST", "/public/x", b"", ((b"content-type", content_type[1].encode()),), "192.0.2.1"
    )
    assert (await env.guard.decide(view)).principal is ANONYMOUS
    env.guard.check_body(view, body)
    assert [e.outcome for e in env.events] == ["allow"]


@pytest.mark.parametrize(
    "value",
    [
        b"application/x-www-form-urlencoded;",  # does not parse strictly, names a form type
        b"text/plain; charset=utf-7",  # Django would decode the query in UTF-7
        b"application/json; charset=utf-16le",
        b"text/plain;charset=utf-7;",
        b"multipart/form-data; boundary=B; boundary=B",
    ],
)
async def test_ambiguous_content_types_are_refused_on_every_request(env: Env, value: bytes) -> None:
    view = RequestView("GET", "/public/x", b"", ((b"content-type", value),), "192.0.2.1")
    with pytest.raises(InvalidRequest):
        await env.guard.decide(view)
    ok = RequestView(
        "GET", "/public/x", b"", ((b"content-type", b"text/plain; charset=utf-8"),), "192.0.2.1"
    )
    assert (await env.guard.decide(ok)).principal is ANONYMOUS


# --- audit fields are redacted --------------------------------------------------------------------


async def test_audit_path_and_detail_never_carry_a_key(env: Env) -> None:
    _, key = env.keys.add("notes:read")
    secret = key.rsplit("_", 1)[1]
    await env.decide("GET", "/public/" + key)  # allowed: path redacted
    await env.refused(NotFound, "GET", "/nope/" + key)  # detail names the path
    await env.refused(NotFound, "GET", "/nope/" + key.replace("_", "%5F"))
    await env.refused(AmbiguousPath, "GET", "/Notes/" + key)
    await env.decide("GET", "/public/Bearer%20" + key)  # glued to a kept percent-encoding
    allowed, notfound, encoded, ambiguous, glued = env.events
    assert allowed.path == "/public/rg_ak_[redacted]"
    assert notfound.path == "/nope/rg_ak_[redacted]"
    assert notfound.detail == "no route for GET /nope/rg_ak_[redacted]"
    assert encoded.path == "/nope/rg_ak_[redacted]"
    assert ambiguous.detail is not None and "rg_ak_[redacted]" in ambiguous.detail
    assert glued.path == "/public/Bearer rg_ak_[redacted]"  # (decoded where a key was found)
    for event in env.events:
        assert secret not in event.to_json()


def test_refused_before_a_view_is_redacted_too(env: Env) -> None:
    _, key = generate_key()
    env.guard.refused(
        "GET", b"/a/" + key.encode() + b"/%zz?api_key=x", "192.0.2.1", InvalidRequest()
    )
    (event,) = env.events
    assert event.path == "/a/rg_ak_[redacted]/%zz"
