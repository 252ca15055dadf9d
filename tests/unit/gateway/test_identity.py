"""gateway/identity.py with types.verified_principal: every principal a verifier can make is
written to the upstream faithfully (one header each, the scopes read back as they were), and a
value that could not be is refused when the principal is made (401), never at writing time."""

from __future__ import annotations

import asyncio

import jwt as pyjwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from restguard.clock import FixedClock
from restguard.errors import InvalidCredential
from restguard.gateway.identity import IdentityHeaders
from restguard.guard import Decision
from restguard.keys.keyring import Keyring
from restguard.keys.sealing import Sealer
from restguard.keys.signing import IdentityMinter, load_signing_keys
from restguard.types import Principal, verified_principal
from tests.unit.fakes import T0, FakeSigningKeyStore

SEALER = Sealer(b"k" * 32)
CLOCK = FixedClock(T0)


def _headers() -> IdentityHeaders:
    async def build() -> Keyring:
        store = FakeSigningKeyStore()
        snapshot = await load_signing_keys(store, SEALER, CLOCK)  # type: ignore[arg-type]
        return Keyring(store, SEALER, CLOCK, snapshot)  # type: ignore[arg-type]

    return IdentityHeaders(IdentityMinter(asyncio.run(build()), "http://127.0.0.1:8080", CLOCK))


HEADERS = _headers()


def block(p: Principal) -> dict[bytes, bytes]:
    lines = HEADERS(Decision(route=None, principal=p)).split(b"\r\n")  # type: ignore[arg-type]
    assert lines[-1] == b""
    fields = [line.split(b": ", 1) for line in lines[:-1]]
    names = [name for name, _ in fields]
    assert len(names) == len(set(names))  # one line per header: nothing was split or injected
    return dict((name, value) for name, value in fields)


text = st.text(max_size=40)
scope = st.text(min_size=1, max_size=12)


@given(text, text, st.frozensets(scope, max_size=4), text)
def test_what_verifies_is_written_faithfully_and_the_rest_is_an_invalid_credential(
    subject: str, client_id: str, scopes: frozenset[str], issuer: str
) -> None:
    try:
        p = verified_principal(
            subject=subject, client_id=client_id, scopes=scopes, auth_method="jwt", issuer=issuer
        )
    except InvalidCredential:
        return
    got = block(p)
    assert got[b"x-restguard-subject"].decode() == subject
    assert got[b"x-restguard-client-id"].decode() == client_id
    written = got[b"x-restguard-scopes"].decode()
    assert frozenset(written.split(" ")) - {""} == scopes  # no scope splits into two
    assert got.get(b"x-restguard-subject-issuer", b"").decode() == issuer


@pytest.mark.parametrize(
    "bad",
    [
        {"subject": "alice\r\nX-Restguard-Scopes: admin"},
        {"subject": "a\x00b"},
        {"subject": "al\ud800ice"},
        {"client_id": "app\x7f"},
        {"client_id": "app\x85"},
        {"issuer": "https://a.example/\n"},
        {"scopes": {"x admin"}},
        {"scopes": {"admin\u00a0notes:read"}},
        {"scopes": {'a"b'}},
        {"scopes": {""}},
    ],
)
def test_values_that_cannot_be_headers_make_an_invalid_credential(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"subject": "s", "client_id": "c", "scopes": {"a"}} | bad
    with pytest.raises(InvalidCredential):
        verified_principal(auth_method="jwt", **args)  # type: ignore[arg-type]


def test_the_issuer_is_named_upstream_and_in_the_identity_token() -> None:
    a = verified_principal(subject="alice", client_id="", scopes=set(), auth_method="jwt")
    b = verified_principal(
        subject="alice", client_id="", scopes=set(), auth_method="jwt", issuer="https://b/"
    )
    got_a, got_b = block(a), block(b)
    assert b"x-restguard-subject-issuer" not in got_a
    assert got_b[b"x-restguard-subject-issuer"] == b"https://b/"
    claims = pyjwt.decode(got_b[b"x-restguard-identity"], options={"verify_signature": False})
    assert claims["sub_id"] == {"format": "iss_sub", "iss": "https://b/", "sub": "alice"}
    assert got_a[b"x-restguard-identity"] != got_b[b"x-restguard-identity"]
