"""Opaque access tokens (``rg_at_``): their form and checksum, and the oauth2 method verifying
them through the store -- unknown, expired, altered, revoked or of a revoked client refused;
a verified one remembered, its client and revocation still checked every time."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restguard.clock import FixedClock
from restguard.credentials.oauth2 import ClientCache, OAuth2Authenticator, RevocationList
from restguard.credentials.opaque_tokens import OpaqueTokens, new_token, well_formed
from restguard.errors import InvalidCredential
from restguard.oauth2.access_tokens import AccessTokens
from restguard.store.ports import AccessTokenRecord
from tests.unit.credentials.test_oauth2 import CLIENT, OWN, Clients, Ring, decide
from tests.unit.fakes import T0, FakeRevokedTokenStore

OPAQUE_CLIENT = dataclasses.replace(CLIENT, token_format="opaque")


class Store:
    def __init__(self) -> None:
        self.rows: dict[bytes, AccessTokenRecord] = {}
        self.reads = 0

    async def insert(self, record: AccessTokenRecord) -> None:
        self.rows[record.token_hash] = record

    async def get(self, token_hash: bytes) -> AccessTokenRecord | None:
        self.reads += 1
        return self.rows.get(token_hash)


def test_form_and_checksum() -> None:
    token = new_token()
    assert token.startswith("rg_at_") and len(token) == 6 + 43 + 6
    assert well_formed(token)
    assert not well_formed(token[:-1])
    assert not well_formed(token + "A")
    assert not well_formed("rg_at_" + "A" * 49)


@given(st.integers(min_value=6, max_value=54), st.sampled_from("0aZ9"))
def test_any_changed_character_fails_the_checksum(position: int, char: str) -> None:
    token = new_token()
    changed = token[:position] + char + token[position + 1 :]
    if changed != token:
        assert not well_formed(changed)


async def setup() -> tuple[OAuth2Authenticator, AccessTokens, Store, Clients, RevocationList]:
    store, clients, clock = Store(), Clients(), FixedClock(T0)
    clients.records[OPAQUE_CLIENT.client_id] = OPAQUE_CLIENT
    revoked = FakeRevokedTokenStore()
    revocations = RevocationList(revoked, clock)
    await revocations.refresh()
    auth = OAuth2Authenticator(
        Ring(),
        ClientCache(clients, ttl=0),
        clock,
        issuer=OWN,
        audience=OWN,
        revocations=revocations,
        opaque=OpaqueTokens(store),
    )
    tokens = AccessTokens(Ring().current, OWN, OWN, clock, opaque=OpaqueTokens(store))
    return auth, tokens, store, clients, revocations


async def test_issued_verified_and_remembered() -> None:
    auth, tokens, store, clients, _ = await setup()
    issued = await tokens.issue_for(OPAQUE_CLIENT, subject="alice", scopes=("a",))
    assert issued.access_token.startswith("rg_at_") and issued.scope == "a"
    (stored,) = store.rows.values()
    assert stored.token_hash == hashlib.sha256(issued.access_token.encode()).digest()
    principal = await decide(auth, issued.access_token)
    assert (principal.subject, principal.client_id, principal.scopes) == (
        "alice",
        "rg_ci_abc",
        frozenset({"a"}),
    )
    reads = store.reads
    await decide(auth, issued.access_token)
    assert store.reads == reads  # remembered
    facts = await auth.verified(issued.access_token, T0)
    assert facts.claims["sub"] == "alice" and facts.claims["iss"] == OWN
    assert facts.claims["exp"] == int((T0 + timedelta(seconds=900)).timestamp())
    # a client revoked: refused although remembered
    clients.records[CLIENT.client_id] = dataclasses.replace(OPAQUE_CLIENT, revoked_at=T0)
    with pytest.raises(InvalidCredential):
        await decide(auth, issued.access_token, T0 + timedelta(seconds=2))


async def test_jwt_clients_still_get_jwts() -> None:
    _, tokens, store, _, _ = await setup()
    issued = await tokens.issue_for(CLIENT, subject="alice", scopes=("a",))
    assert issued.access_token.count(".") == 2 and not store.rows


async def test_revoked_by_jti() -> None:
    auth, tokens, store, _, revocations = await setup()
    issued = await tokens.issue_for(OPAQUE_CLIENT, subject="alice", scopes=("a",))
    await decide(auth, issued.access_token)
    revocations.add(next(iter(store.rows.values())).jti)
    with pytest.raises(InvalidCredential):
        await decide(auth, issued.access_token)


@pytest.mark.parametrize("kind", ["unknown", "altered", "expired"])
async def test_refused(kind: str) -> None:
    auth, tokens, store, _, _ = await setup()
    issued = await tokens.issue_for(OPAQUE_CLIENT, subject="alice", scopes=("a",))
    token, now = issued.access_token, T0
    if kind == "unknown":
        token = new_token()
    elif kind == "altered":
        token = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    else:
        now = T0 + timedelta(seconds=900)
    reads = store.reads
    with pytest.raises(InvalidCredential):
        await decide(auth, token, now)
    if kind == "altered":
        assert store.reads == reads  # refused by its checksum, before any lookup
