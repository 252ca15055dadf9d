"""credentials/jwt_issuers.py: what ``issuer add`` accepts, and the directory that keeps the jwt
authenticator's issuers in step with the store (added, removed, store outages, first load)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from restguard.clock import FixedClock
from restguard.credentials.jwt import JwtAuthenticator, KeySource, StaticKeys
from restguard.credentials.jwt_issuers import (
    IssuerDirectory,
    algorithm_names,
    check_issuer,
    new_issuer,
)
from restguard.errors import BackendUnavailable, InvalidCredential
from restguard.keys.jwt_verify import KeySet
from restguard.store.ports import IssuerRecord
from tests.unit.credentials.test_jwt import AUD, ISS, auth, bearer, mint
from tests.unit.fakes import T0
from tests.unit.keys.jwt_helpers import EC, ED

OWN = "http://127.0.0.1:8080"


def record(**over: Any) -> IssuerRecord:
    args: dict[str, Any] = {
        "issuer": ISS,
        "jwks_uri": "https://tenant.example.com/.well-known/jwks.json",
        "audience": AUD,
        "now": T0,
        "own_issuer": OWN,
    }
    return new_issuer(**(args | over))


# --- what issuer add accepts ----------------------------------------------------------------------


def test_a_new_issuer_has_every_default() -> None:
    rec = record()
    assert rec.issuer == ISS and rec.audience == AUD and rec.created_at == T0
    assert rec.algorithms == ("EdDSA", "ES256", "RS256")
    assert (rec.scope_claim, rec.typ, rec.leeway) == ("scope", None, 0.0)
    assert len(rec.id) == 12 and rec.id.isalnum() and rec.id != record().id


@pytest.mark.parametrize(
    ("over", "option"),
    [
        ({"issuer": ""}, "--issuer"),
        ({"issuer": "tenant.example.com"}, "--issuer"),
        ({"issuer": "ftp://tenant.example.com/"}, "--issuer"),
        ({"issuer": "http://tenant.example.com/"}, "--issuer"),  # http only on loopback
        ({"issuer": "https://tenant.example.com/?x=1"}, "--issuer"),
        ({"issuer": "https://tenant.example.com/#x"}, "--issuer"),
        ({"issuer": "https://tenant.example.com/ a"}, "--issuer"),
        ({"issuer": "https://tenänt.example.com/"}, "--issuer"),
        ({"issuer": "https://x.example/" + "a" * 120}, "--issuer"),
        ({"issuer": OWN}, "--issuer"),  # restguard's own tokens are oauth2's
        ({"issuer": OWN + "/"}, "--issuer"),
        ({"jwks_uri": "http://tenant.example.com/jwks"}, "--jwks-uri"),
        ({"jwks_uri": "https://user:pw@tenant.example.com/jwks"}, "--jwks-uri"),
        ({"jwks_uri": "not a url"}, "--jwks-uri"),
        ({"audience": ""}, "--audience"),
        ({"audience": " api"}, "--audience"),
        ({"audience": "a\nb"}, "--audience"),
        ({"algorithms": ["HS256"]}, "--alg"),
        ({"algorithms": ["none"]}, "--alg"),
        ({"scope_claim": "roles"}, "--scope-claim"),
        ({"typ": "at jwt"}, "--typ"),
        ({"leeway": 61}, "--leeway"),
        ({"leeway": -1}, "--leeway"),
    ],
)
def test_bad_options_are_refused_naming_the_option(over: dict[str, Any], option: str) -> None:
    with pytest.raises(ValueError, match="^" + option + ": "):
        record(**over)


def test_loopback_issuers_may_use_http_for_tests_and_sidecars() -> None:
    assert check_issuer("http://127.0.0.1:9999/realms/dev") == "http://127.0.0.1:9999/realms/dev"
    assert check_issuer("http://localhost/") == "http://localhost/"


def test_algorithm_spellings() -> None:
    assert algorithm_names(["ed25519", "ES256", "rs256", "EdDSA"]) == ("EdDSA", "ES256", "RS256")
    assert algorithm_names([]) == ("EdDSA", "ES256", "RS256")


# --- the directory --------------------------------------------------------------------------------


class FakeIssuerStore:
    def __init__(self) -> None:
        self.records: list[IssuerRecord] = []
        self.down = False
        self.reads = 0

    async def insert(self, rec: IssuerRecord) -> None:
        self.records.append(rec)

    async def list(self) -> list[IssuerRecord]:
        self.reads += 1
        if self.down:
            raise BackendUnavailable(debug="store down")
        return list(self.records)

    async def remove(self, issuer_id: str) -> IssuerRecord:
        rec = next(r for r in self.records if r.id == issuer_id)
        self.records.remove(rec)
        return rec


class Source(StaticKeys):
    """Static keys that remember whether the directory started and closed them."""

    closed = False

    def close(self) -> None:
        self.closed = True


def directory(store: FakeIssuerStore) -> tuple[JwtAuthenticator, IssuerDirectory, list[Source]]:
    made: list[Source] = []

    def sources(rec: IssuerRecord) -> KeySource:
        made.append(Source(KeySet([ED.verification_key(), EC.verification_key()])))
        return made[-1]

    jwt = JwtAuthenticator(None, FixedClock(T0), own_issuer=OWN)
    found = IssuerDirectory(store, jwt.set_issuers, FixedClock(T0), sources=sources)
    jwt.follow(found)
    return jwt, found, made


async def test_issuers_are_unknown_until_read_then_follow_the_store() -> None:
    store = FakeIssuerStore()
    jwt, found, made = directory(store)
    with pytest.raises(BackendUnavailable):  # not read yet: fail closed, 503
        await auth(jwt, mint(ED))

    await found.refresh()  # no issuer: a token is an invalid one
    with pytest.raises(InvalidCredential):
        await auth(jwt, mint(ED))

    store.records.append(record())
    await found.refresh()
    assert (await auth(jwt, mint(ED))).subject == "user-1"
    await found.refresh()  # nothing changed: the same source, not a new one
    assert len(made) == 1

    store.records.clear()
    await found.refresh()
    with pytest.raises(InvalidCredential):
        await auth(jwt, mint(ED))


async def test_a_store_outage_keeps_the_last_issuers() -> None:
    store = FakeIssuerStore()
    store.records.append(record())
    jwt, found, _ = directory(store)
    await found.refresh()
    store.down = True
    with pytest.raises(BackendUnavailable):
        await found.refresh()
    assert (await auth(jwt, mint(ED))).subject == "user-1"


async def test_the_background_task_applies_changes_and_close_stops_it() -> None:
    store = FakeIssuerStore()
    jwt = JwtAuthenticator(None, FixedClock(T0), own_issuer=OWN)
    found = IssuerDirectory(
        store,
        jwt.set_issuers,
        FixedClock(T0),
        sources=lambda rec: StaticKeys(KeySet([ED.verification_key()])),
        interval=0.01,
    )
    jwt.follow(found)
    store.down = True
    await jwt.start()  # the first read fails: logged, not raised
    assert not found.loaded
    store.down = False
    store.records.append(record())
    for _ in range(200):
        await asyncio.sleep(0.01)
        if found.loaded:
            break
    assert (await auth(jwt, mint(ED))).subject == "user-1"
    jwt.close()
    reads = store.reads
    await asyncio.sleep(0.05)
    assert store.reads == reads


async def test_removed_issuers_have_their_key_source_closed() -> None:
    store = FakeIssuerStore()
    store.records.append(record())
    _, found, made = directory(store)
    await found.refresh()
    store.records.clear()
    await found.refresh()
    assert made[0].closed


def test_restguard_own_tokens_are_left_to_oauth2() -> None:
    jwt = JwtAuthenticator([], FixedClock(T0), own_issuer=OWN)
    assert jwt.extract(bearer(mint(ED, iss=OWN))) is None
    credential = jwt.extract(bearer(mint(ED, iss=OWN + "/")))  # not exactly it: jwt's (401)
    assert credential is not None and credential.credential_id == "jwt:" + OWN + "/"
