"""credentials/signature.py in-process: what it claims, what it needs read, the authority it
rebuilds, failing closed without the request, and the app cache's one-second revocation."""

from __future__ import annotations

import base64
import dataclasses
import time
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard.credentials.apps import new_app
from restguard.credentials.base import AuthContext
from restguard.credentials.signature import (
    AppCache,
    SignatureAuthenticator,
    _authority,
    _normal_authority,
)
from restguard.errors import InvalidCredential
from restguard.keys.sealing import Sealer
from restguard.store.ports import AppRecord
from restguard.types import RequestView
from restguard.wire import rfc9421, rfc9421_algorithms
from tests.unit.fakes import T0

SEALER = Sealer(b"m" * 32)
RECORD, SECRET = new_app("billing", ("w",), "hmac-sha256", None, now=T0, sealer=SEALER)
assert SECRET is not None
KEY = base64.urlsafe_b64decode(SECRET + "=")


class Apps:
    def __init__(self) -> None:
        self.records: dict[str, AppRecord] = {RECORD.key_id: RECORD}
        self.reads = 0

    async def get(self, key_id: str) -> AppRecord | None:
        self.reads += 1
        return self.records.get(key_id)


class Nonces:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    async def use(self, key_id: str, nonce: str, expires_at: Any, now: Any) -> bool:
        if (key_id, nonce) in self.seen:
            return False
        self.seen.add((key_id, nonce))
        return True


def auth(apps: Apps | None = None, ttl: float = 0) -> SignatureAuthenticator:
    cache = AppCache(apps or Apps(), SEALER, ttl=ttl)
    return SignatureAuthenticator(cache, Nonces(), public_url="https://api.example.com")


def view(*headers: tuple[bytes, bytes], body: bytes | None = None, **kw: Any) -> RequestView:
    base = RequestView(
        "GET", "/notes/1", headers=((b"host", b"gw.test"), *headers), raw_path=b"/notes/1"
    )
    return base._replace(body=body, **kw)


def signed_view(nonce: str = "n1", **kw: Any) -> RequestView:
    msg = rfc9421.Message("GET", "http", "gw.test", "/notes/1", b"", ((b"host", b"gw.test"),))
    sig_input, sig = rfc9421_algorithms.sign_request(
        msg,
        keyid=RECORD.key_id,
        alg="hmac-sha256",
        key=KEY,
        components=("@method", "@authority", "@path"),
        created=int(T0.timestamp()),
        nonce=nonce,
    )
    return view((b"signature-input", sig_input), (b"signature", sig), **kw)


def test_claims_only_signed_requests_and_needs_their_body() -> None:
    a = auth()
    assert a.extract(view()) is None and a.carriers(view()) == ()
    with pytest.raises(InvalidCredential):  # half a signature
        a.extract(view((b"signature", b"sig1=:AAAA:")))
    signed = signed_view()
    assert a.extract(signed) is not None
    assert a.carriers(signed) == (b"signature-input", b"signature")
    # every signed request has its body read first (HTTP/2 announces none); an absent body
    # costs nothing, and whether there is one is judged from what was read
    assert a.body_limit(signed) > 0
    assert a.body_limit(view((b"content-length", b"5"))) == 0  # unsigned: not read early


async def test_verifies_and_fails_closed_without_the_request() -> None:
    a = auth()
    signed = signed_view()
    credential = a.extract(signed)
    assert credential is not None
    principal = await a.authenticate(credential, AuthContext(T0, "c", signed))
    assert (principal.subject, principal.client_id) == ("billing", RECORD.key_id)
    with pytest.raises(InvalidCredential):  # an adapter that passed no view
        await a.authenticate(credential, AuthContext(T0, "c"))
    with pytest.raises(InvalidCredential):  # the same nonce again
        await a.authenticate(credential, AuthContext(T0, "c", signed))


async def test_a_revoked_app_is_refused_within_the_cache_time() -> None:
    apps = Apps()
    a = auth(apps, ttl=1.0)
    first = signed_view("a")
    credential = a.extract(first)
    assert credential is not None
    await a.authenticate(credential, AuthContext(T0, "c", first))
    apps.records[RECORD.key_id] = dataclasses.replace(RECORD, revoked_at=T0)
    time.sleep(1.05)
    later = signed_view("b")
    with pytest.raises(InvalidCredential):
        await a.authenticate(credential, AuthContext(T0 + timedelta(seconds=1), "c", later))


async def test_an_apps_changed_scopes_are_its_principals_once_its_record_is_read_again() -> None:
    apps = Apps()
    a = auth(apps, ttl=0)  # (every request reads the record again)

    async def scopes(nonce: str) -> frozenset[str]:
        signed = signed_view(nonce)
        credential = a.extract(signed)
        assert credential is not None
        return (await a.authenticate(credential, AuthContext(T0, "c", signed))).scopes

    assert await scopes("s1") == await scopes("s2") == frozenset({"w"})
    apps.records[RECORD.key_id] = dataclasses.replace(RECORD, scopes=("r",))
    assert await scopes("s3") == frozenset({"r"})


@pytest.mark.parametrize(
    ("given", "scheme", "expected"),
    [
        ("GW.Test", "http", "gw.test"),
        ("gw.test:80", "http", "gw.test"),
        ("gw.test:443", "https", "gw.test"),
        ("gw.test:8080", "http", "gw.test:8080"),
        ("[::1]:8080", "http", "[::1]:8080"),
        ("[::1]", "https", "[::1]"),
        ("gw.test:x", "http", ""),
        ("user@gw.test", "http", ""),
        ("", "http", ""),
    ],
)
def test_authority_normalised_as_rfc_9110_says(given: str, scheme: str, expected: str) -> None:
    assert _normal_authority(given, scheme) == expected


async def test_behind_a_trusted_proxy_the_public_authority_is_signed() -> None:
    a = auth()
    msg = rfc9421.Message(
        "GET", "https", "api.example.com", "/notes/1", b"", ((b"host", b"internal"),)
    )
    sig_input, sig = rfc9421_algorithms.sign_request(
        msg,
        keyid=RECORD.key_id,
        alg="hmac-sha256",
        key=KEY,
        components=("@method", "@authority", "@path"),
        created=int(T0.timestamp()),
        nonce="p1",
    )
    proxied = RequestView(
        "GET",
        "/notes/1",
        headers=((b"host", b"internal"), (b"signature-input", sig_input), (b"signature", sig)),
        via_trusted_proxy=True,
        raw_path=b"/notes/1",
    )
    credential = a.extract(proxied)
    assert credential is not None
    assert (await a.authenticate(credential, AuthContext(T0, "c", proxied))).subject == "billing"
    direct = proxied._replace(via_trusted_proxy=False)
    with pytest.raises(InvalidCredential):  # the same signature sent straight: Host differs
        await auth().authenticate(credential, AuthContext(T0, "c", direct))  # (fresh nonces)


async def test_a_route_can_require_more_components_and_name_its_label() -> None:
    signed = signed_view("r1")
    credential = auth().extract(signed)
    assert credential is not None
    more = AuthContext(T0, "c", signed, signature_components=("content-type",))
    with pytest.raises(InvalidCredential):  # content-type not covered
        await auth().authenticate(credential, more)
    other_label = AuthContext(T0, "c", signed, signature_label="sig2")
    with pytest.raises(InvalidCredential):  # sig1 is not the route's label
        await auth().authenticate(credential, other_label)
    same_label = AuthContext(T0, "c", signed, signature_label="sig1")
    assert (await auth().authenticate(credential, same_label)).subject == "billing"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.binary(max_size=300), st.sampled_from([b"GW.test:80", b"[::1]:443"])),
            st.sampled_from(["http", "https"]),
        ),
        max_size=20,
    )
)
def test_remembered_authorities_are_what_is_computed(hosts: list[tuple[bytes, str]]) -> None:
    for host, scheme in hosts + hosts:  # (the second time from the memo)
        assert _authority(host, scheme) == _normal_authority(host.decode("latin-1"), scheme)
