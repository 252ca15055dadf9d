"""Review of commit 8187851: the credential screen's memo (``carriers._Screened``) and the
Bearer token's per-tuple memo (``credentials.bearer._read``).

Each test asserts the secure / faithful behaviour: a passing test is an attack that failed.

* audit attribution: an opaque access token's ``credential_id`` once it has been verified
  (a fresh ``extract`` names its client; the memo kept the first, unverified answer: oauth2's
  ``extract`` is now not ``stable_extract``, so it is asked afresh);
* memory: a set of many empty credential headers (0 value bytes) must cost no more than the
  bound (it counted value bytes only: ~129 KB kept per request, ~500 MiB for a full memo;
  the bound now counts every field and caps their number);
* differential checks of the memo against the unscreened guard: cross-request interleaving,
  list-vs-tuple headers, a list mutated between calls, repeated headers, long values, eviction,
  own tokens vs external JWTs on jwt/oauth2 routes.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace

import pytest

from restguard import carriers as carriers_module
from restguard.authz.policy import Policy, Route, compile_pattern
from restguard.authz.ratelimit import MemoryRateLimiter
from restguard.clock import FixedClock
from restguard.credentials.apikey import generate_key
from restguard.credentials.jwt import JwtAuthenticator, JwtIssuer, StaticKeys
from restguard.credentials.oauth2 import OAuth2Authenticator
from restguard.credentials.opaque_tokens import new_token
from restguard.errors import AuthError
from restguard.guard import Guard
from restguard.types import RequestView
from tests.attacks.conftest import Keys
from tests.attacks.test_review_hotpath import guards  # noqa: F401  (the fixture)
from tests.attacks.wire import assert_forwarded, request, send
from tests.harness import GatewayProcess
from tests.unit.credentials.test_jwt import ISS, mint
from tests.unit.credentials.test_oauth2 import OWN, Clients, Ring
from tests.unit.fakes import T0
from tests.unit.keys.jwt_helpers import ED

Header = tuple[bytes, bytes]
_SEG, _SUB = compile_pattern("/**")
ANY = Route(0, "/**", frozenset({"GET", "POST"}), _segments=_SEG, _subtree=_SUB)
NOTES = Route(0, "/notes/{id}", frozenset({"GET"}))


def _outcome(call: object) -> object:
    try:
        result = call()  # type: ignore[operator]
    except AuthError as exc:
        return ("err", type(exc).__name__, exc.status, exc.error)
    if hasattr(result, "credential_id"):
        return ("ok", result.method, result.secret, result.credential_id, result.headers)
    return ("ok", result)


def _view(headers: object, method: str = "GET") -> RequestView:
    return RequestView(method, "/notes/1", b"", headers, "127.0.0.1", raw_path=b"/notes/1")  # type: ignore[arg-type]


def _same(screened: Guard, plain: Guard, view: RequestView, route: Route = NOTES) -> None:
    assert set(screened._carriers(view)) == set(plain._carriers(view)), view
    assert _outcome(lambda: screened._extract(view, route)) == _outcome(
        lambda: plain._extract(view, route)
    ), view


# --- 1. audit attribution of an opaque access token --------------------------------------------


class _Opaque:
    """An opaque-token store holding one token of client ``rg_ci_abc``."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def find(self, token: str) -> object:
        if token != self.token:
            return None
        return SimpleNamespace(
            client_id="rg_ci_abc",
            subject="alice",
            scopes=(),
            jti="j1",
            created_at=T0,
            expires_at=T0 + timedelta(hours=1),
        )


def _oauth2_guard(token: str, events: list[object], *, screen: bool) -> Guard:
    clock = FixedClock(T0)
    auth = OAuth2Authenticator(
        Ring(),
        Clients(),
        clock,
        issuer=OWN,
        audience=OWN,
        opaque=_Opaque(token),  # type: ignore[arg-type]
    )
    guard = Guard(
        Policy([ANY]), {"oauth2": auth}, clock, MemoryRateLimiter(), sinks=[events.append]
    )
    if not screen:
        guard._reads = dict.fromkeys(guard._reads)  # type: ignore[assignment]
        guard._carrier_reads = tuple((m, a, None) for m, a, _ in guard._carrier_reads)
    return guard


def test_opaque_token_requests_are_attributed_to_their_client_as_without_the_memo() -> None:
    """Request 1 and request 2 carry the same opaque access token. The audit line of each
    names the token's client (``oauth2:rg_ci_abc``, named once verified: ``attributed``), with
    the memo as without it; a memo that kept request 1's unverified answer (``oauth2:opaque``)
    would name no client at all."""
    token = new_token()

    def run(screen: bool) -> list[object]:
        events: list[object] = []
        guard = _oauth2_guard(token, events, screen=screen)

        async def go() -> None:
            for _ in range(2):
                headers = ((b"authorization", b"Bearer " + token.encode()),)
                view = RequestView("GET", "/x", b"", headers, "127.0.0.1", raw_path=b"/x")
                await guard.decide(view)

        asyncio.run(go())
        return [getattr(e, "credential_id", None) for e in events]

    fresh = run(screen=False)
    assert fresh == ["oauth2:rg_ci_abc", "oauth2:rg_ci_abc"]  # (the reference behaviour)
    assert run(screen=True) == fresh


# --- 2. memory: the bound counts every field, not value bytes only ---------------------------


def test_one_remembered_set_costs_about_its_documented_size(
    guards: tuple[Guard, Guard],  # noqa: F811
) -> None:
    """A request may carry ~1200 empty ``Signature`` fields within the 16 KB header limit
    (``name: \\r\\n`` is 13 bytes): 0 value bytes, so the set is remembered, with every field.
    4096 such sets (one unauthenticated request each, any route the policy matches) would
    hold ~4096 x (the cost of one): the bound is 4096 sets of at most 4 KB (each field
    counted with its own cost) and 8 fields."""
    screened, _ = guards
    screened._screened.clear()
    n = (16 * 1024) // len(b"signature: \r\n") - 2

    def request(i: int) -> RequestView:
        # (as a parser gives them: a name object per field)
        fields = tuple((b"SIGNATURE".lower(), b"") for _ in range(n))
        return _view((*fields, (b"x-api-key", b"k%d" % i)))

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(8):
            screened._carriers(request(i))
        screened._carriers(_view(((b"x-api-key", b"z"),)))  # (drops the last-tuple reference)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_set = (after - before) / 8
    total = per_set * carriers_module._SCREENED_SIZE
    screened._screened.clear()
    # at most 4 KB per set, fields counted; allow 3x that for keys and answers
    assert per_set <= 3 * carriers_module._SCREENED_MAX_BYTES, (
        f"{per_set:.0f} bytes per remembered set, ~{total / 2**20:.0f} MiB for a full memo"
    )


# --- 3. differential checks (expected to hold) -------------------------------------------------

_K1, _K2 = generate_key()[1].encode(), generate_key()[1].encode()
OWN_JWS = (
    b"eyJhbGciOiJIUzI1NiJ9."
    b"eyJpc3MiOiAiaHR0cDovLzEyNy4wLjAuMTo4MDgwIiwgImNsaWVudF9pZCI6ICJjMSJ9.c2ln"
)
EXT_JWS = b"eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"
REQUESTS: list[tuple[Header, ...]] = [
    ((b"x-api-key", _K1),),
    ((b"x-api-key", _K2),),
    ((b"authorization", b"Bearer " + _K1),),
    ((b"authorization", b"ApiKey " + _K2),),
    ((b"authorization", b"Bearer " + OWN_JWS),),
    ((b"authorization", b"Bearer " + EXT_JWS),),
    ((b"authorization", b"Bearer rg_at_" + b"A" * 49),),
    ((b"authorization", b"Bearer " + EXT_JWS), (b"x-api-key", _K1)),
    ((b"x-api-key", _K1), (b"authorization", b"Bearer " + EXT_JWS)),
    ((b"x-api-key", _K1), (b"x-api-key", _K1)),
    ((b"authorization", b"Bearer " + _K1), (b"authorization", b"Bearer " + _K1)),
    ((b"signature", b"sig1=:AAAA:"),),
    ((b"signature", b"sig1=:AAAA:"), (b"signature-input", b'sig1=("@method")')),
    ((b"signature-input", b'sig1=("@method")'), (b"x-api-key", _K2)),
    ((b"authorization", b"Bearer a.b.c.d"),),
    ((b"authorization", b"Bearer " + b"a" * 9000 + b".b.c"),),
    ((b"x-api-key", b"k" * 9000),),
    ((b"x-api-key", _K1), (b"x-other", b"Bearer " + _K2)),
    ((b"x-api-key", _K1), (b"x-auth-token", _K2)),
    ((b"Authorization", b"Bearer " + _K1),),
    ((b"authorization", b"Bearer\t" + _K2), (b"cookie", b"s=1")),
]


def test_interleaved_clients_get_their_own_answers(guards: tuple[Guard, Guard]) -> None:  # noqa: F811
    """Many clients' requests interleaved, each asked several times in new tuples, the same
    tuple, and as lists: never another request's credential, carriers or refusal."""
    screened, plain = guards
    for _ in range(3):
        for headers in REQUESTS + REQUESTS[::-1]:
            view = _view(headers)
            _same(screened, plain, view)
            _same(screened, plain, view)  # (the same tuple: the identity fast path)
            _same(screened, plain, _view(list(headers)))
            _same(screened, plain, _view(tuple(list(headers))))


def test_a_list_changed_between_calls_is_read_again(guards: tuple[Guard, Guard]) -> None:  # noqa: F811
    screened, plain = guards
    headers: list[Header] = [(b"x-api-key", _K1)]
    view = _view(headers)
    _same(screened, plain, view)
    headers[0] = (b"x-api-key", _K2)
    _same(screened, plain, view)
    headers.append((b"authorization", b"Bearer " + EXT_JWS))
    _same(screened, plain, view)
    headers[:] = [(b"authorization", b"Bearer " + EXT_JWS), (b"authorization", b"x")]
    _same(screened, plain, view)
    headers[:] = []
    _same(screened, plain, view)


def test_repeated_and_two_credentials_stay_refused_after_a_clean_one(
    guards: tuple[Guard, Guard],  # noqa: F811
) -> None:
    screened, _ = guards
    single = _view(((b"x-api-key", _K1),))
    assert _outcome(lambda: screened._extract(single, NOTES))[0] == "ok"
    for headers in (
        ((b"x-api-key", _K1), (b"x-api-key", _K1)),
        ((b"x-api-key", _K1), (b"authorization", b"Bearer " + EXT_JWS)),
        ((b"x-api-key", _K1), (b"authorization", b"ApiKey " + _K2)),
        ((b"authorization", b"Bearer " + EXT_JWS), (b"authorization", b"Bearer " + EXT_JWS)),
    ):
        for _ in range(3):
            assert _outcome(lambda h=headers: screened._extract(_view(h), NOTES))[0] == "err"
            assert b"x-api-key" in screened._carriers(_view(headers)) or b"authorization" in (
                screened._carriers(_view(headers))
            )


def test_eviction_mid_request_keeps_answers_right(guards: tuple[Guard, Guard]) -> None:  # noqa: F811
    screened, plain = guards
    screened._screened.clear()
    view = _view(((b"x-api-key", _K1),))
    _same(screened, plain, view)
    for n in range(carriers_module._SCREENED_SIZE + 5):
        screened._carriers(_view(((b"x-api-key", b"k%d" % n),)))
    _same(screened, plain, view)
    _same(screened, plain, _view(((b"x-api-key", _K1),)))


@pytest.fixture
def jwt_oauth2() -> Iterator[tuple[Guard, Guard, str, str]]:
    from restguard.oauth2.access_tokens import AccessTokens

    def build(screen: bool) -> Guard:
        clock = FixedClock(T0)
        ring = Ring()
        auth = OAuth2Authenticator(ring, Clients(), clock, issuer=OWN, audience=OWN)
        jwt = JwtAuthenticator(
            [JwtIssuer(ISS, "https://api.example.com", StaticKeys(ED.keyset()))],
            clock,
            own_issuer=OWN,
        )
        guard = Guard(Policy([ANY]), {"jwt": jwt, "oauth2": auth}, clock, MemoryRateLimiter())
        guard._tokens = AccessTokens(ring.current, OWN, OWN, clock)  # type: ignore[attr-defined]
        if not screen:
            guard._reads = dict.fromkeys(guard._reads)  # type: ignore[assignment]
            guard._carrier_reads = tuple((m, a, None) for m, a, _ in guard._carrier_reads)
        return guard

    screened, plain = build(True), build(False)
    own = screened._tokens.issue(  # type: ignore[attr-defined]
        client_id="rg_ci_abc", subject="rg_ci_abc", scopes=()
    ).access_token
    external = mint(ED, aud="https://api.example.com")
    yield screened, plain, own, external


def test_own_tokens_and_external_jwts_go_to_their_methods(
    jwt_oauth2: tuple[Guard, Guard, str, str],
) -> None:
    screened, plain, own, external = jwt_oauth2
    routes = [
        ANY,
        Route(0, "/**", frozenset({"GET"}), auth=("jwt",), _segments=_SEG, _subtree=_SUB),
        Route(0, "/**", frozenset({"GET"}), auth=("oauth2",), _segments=_SEG, _subtree=_SUB),
        Route(0, "/**", frozenset({"GET"}), auth=("oauth2", "jwt"), _segments=_SEG, _subtree=_SUB),
    ]

    async def go() -> None:
        for token in (own, external, own, external):
            view = RequestView(
                "GET", "/x", b"", ((b"authorization", b"Bearer " + token.encode()),), "c"
            )
            for route in routes + routes[::-1]:
                _same(screened, plain, view, route)
            a = await screened.authenticate(view)
            b = await plain.authenticate(view)
            assert (a.auth_method, a.subject) == (b.auth_method, b.subject)

    asyncio.run(go())


# --- 4. on the wire ----------------------------------------------------------------------------


def test_gateway_memory_per_request_of_empty_credential_fields_stays_small(
    gw: GatewayProcess,
) -> None:
    """Unauthenticated GETs to a public route, each with ~1200 empty ``Signature`` fields (within
    the 16 KB header limit) and a distinct ``X-Api-Key``: each leaves one remembered set behind.
    With 4096 sets the documented cost is 4096 x 8 KB = 32 MiB; here it is ~130 KB per set."""
    n = 1200
    count = 120

    def one(i: int) -> bytes:
        fields = [(b"Signature", b"")] * n + [(b"X-Api-Key", b"k%d" % i)]
        return request(b"/public/memo", *fields)

    warm = send(gw.port, one(-1))
    assert warm.status in (200, 401, 502), warm.status
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            send(gw.port, one(i))
        time.sleep(0.5)  # (the audit batch is written)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_request = (after - before) / count
    assert per_request <= 3 * carriers_module._SCREENED_MAX_BYTES, (
        f"{per_request:.0f} bytes kept per request; x4096 = "
        f"{per_request * carriers_module._SCREENED_SIZE / 2**20:.0f} MiB"
    )


def test_gateway_strips_credentials_remembered_or_not(gw: GatewayProcess, keys: Keys) -> None:
    """The same credential headers twice (the second answered from the memo), then with a
    second credential: stripped both times on a public route, refused with two."""
    fields = ((b"X-API-Key", keys.reader.encode()),)
    for _ in range(3):
        _, seen = assert_forwarded(gw, request(b"/public/a", *fields), b"/public/a")
        assert keys.reader.encode() not in b"".join(v for _, v in seen.headers)
        assert all(name.lower() != b"x-api-key" for name, _ in seen.headers)
    two = (*fields, (b"Authorization", b"ApiKey " + keys.writer.encode()))
    for _ in range(2):
        response = send(gw.port, request(b"/notes/1", *two))
        assert response.status in (400, 401), response.status
