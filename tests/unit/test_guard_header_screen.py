"""guard: an authenticator that reads only certain headers (``ReadsHeaders``) is not asked
about a request that carries none of them. That skip is exact only if such an authenticator
finds nothing (no credential, no error, no carrier) without those headers, and names no other
header as a carrier: checked here for every one the gateway wires, on arbitrary requests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard.cli.init import write_data_dir
from restguard.config import load
from restguard.credentials.apikey import generate_key
from restguard.credentials.base import Authenticator, ReadsHeaders
from restguard.types import RequestView
from restguard.wiring import open_runtime

NAMES = [
    b"authorization",
    b"x-api-key",
    b"signature",
    b"signature-input",
    b"host",
    b"content-type",
    b"x-auth-token",
    b"cookie",
    b"proxy-authorization",
    b"x-other",
]
VALUES = [
    generate_key()[1].encode(),
    b"Bearer " + generate_key()[1].encode(),
    b"ApiKey " + generate_key()[1].encode(),
    b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln",
    b"Bearer rg_at_" + b"A" * 49,
    b'OAuth oauth_consumer_key="ck", oauth_signature="x"',
    b"Basic dXNlcjpwYXNz",
    b'sig1=("@method");created=1;keyid="k"',
    b"sig1=:AAAA:",
    b"application/x-www-form-urlencoded",
    b"",
]
HEADER = st.tuples(
    st.sampled_from(NAMES),
    st.one_of(st.sampled_from(VALUES), st.binary(max_size=40)),
)
QUERY = st.sampled_from([b"", b"a=1", b"oauth_consumer_key=ck&oauth_signature=x"])


@pytest.fixture(scope="module")
def authenticators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Authenticator]]:
    """Every authenticator the gateway wires, from a ``restguard init`` data directory."""
    config = write_data_dir(
        tmp_path_factory.mktemp("screen") / "data", upstream="http://127.0.0.1:9"
    )

    async def build() -> list[Authenticator]:
        runtime = await open_runtime(load(config))
        runtime.close()  # (extract and carriers need nothing the runtime runs)
        return list(runtime.guard.authenticators.values())

    found = asyncio.run(build())
    assert {a.method for a in found if isinstance(a, ReadsHeaders)} >= {
        "api_key",
        "jwt",
        "oauth2",
        "signature",
    }
    yield found


def _outcome(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except Exception as exc:  # (what is asked: that nothing is found, raised included)
        return exc


@settings(max_examples=300, deadline=None)
@given(headers=st.lists(HEADER, max_size=6), query=QUERY)
def test_without_its_headers_a_header_reader_finds_nothing(
    authenticators: list[Authenticator],
    headers: list[tuple[bytes, bytes]],
    query: bytes,
) -> None:
    for a in authenticators:
        if not isinstance(a, ReadsHeaders):
            continue
        kept = tuple((n, v) for n, v in headers if n not in a.header_names)
        view = RequestView("GET", "/notes/1", query, kept, "127.0.0.1", raw_path=b"/notes/1")
        assert _outcome(lambda: a.extract(view)) is None, a.method
        assert _outcome(lambda: a.carriers(view)) == (), a.method


@settings(max_examples=300, deadline=None)
@given(headers=st.lists(HEADER, max_size=6), query=QUERY)
def test_a_header_reader_names_only_its_own_headers_as_carriers(
    authenticators: list[Authenticator],
    headers: list[tuple[bytes, bytes]],
    query: bytes,
) -> None:
    view = RequestView("GET", "/notes/1", query, tuple(headers), "127.0.0.1")
    for a in authenticators:
        if isinstance(a, ReadsHeaders):
            assert set(a.carriers(view)) <= a.header_names, a.method


def test_a_screened_authenticator_is_not_asked(tmp_path: Path) -> None:
    """Through the guard: a request with only a Host header asks no header reader."""
    config = write_data_dir(tmp_path / "data", upstream="http://127.0.0.1:9")

    async def main() -> None:
        runtime = await open_runtime(load(config))
        try:
            asked: list[str] = []
            for a in runtime.guard.authenticators.values():
                if isinstance(a, ReadsHeaders):
                    a.carriers = lambda view, m=a.method: asked.append(m) or ()  # type: ignore[method-assign,misc]
            view = RequestView("GET", "/health", b"", ((b"host", b"gw"),), "127.0.0.1")
            await runtime.guard.decide(view)
            assert asked == []
        finally:
            runtime.close()

    asyncio.run(main())


# --- the three request checks, skipped for a request without any name they judge ------------

SCREEN_NAMES = [
    b"content-type",
    b"content-encoding",
    b"x-http-method-override",
    b"x-http-method",
    b"x-method-override",
    b"x-original-url",
    b"x-rewrite-url",
    b"content-length",
    b"transfer-encoding",
    b"x-other",
]
SCREEN_VALUES = [
    b"application/x-www-form-urlencoded",
    b"multipart/form-data",
    b"multipart/form-data; boundary=x",
    b"text/plain; charset=utf-7",
    b"gzip",
    b"identity",
    b"",
    b"DELETE",
    b"/admin",
]


def _checks_outcome(headers: tuple[tuple[bytes, bytes], ...]) -> object:
    from restguard.authz.request_checks import check_headers
    from restguard.errors import AuthError
    from restguard.wire.forms import check_encoding, content_type

    try:
        check_headers(RequestView("GET", "/", headers=headers))
        content_type(headers)
        check_encoding(headers)
    except AuthError as exc:
        return type(exc)
    return None


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(SCREEN_NAMES), st.sampled_from(SCREEN_VALUES)), max_size=4)
)
def test_request_checks_pass_every_request_the_screen_skips(
    headers: list[tuple[bytes, bytes]],
) -> None:
    """``Guard.decide`` runs ``check_headers``, ``content_type`` and ``check_encoding`` only for a
    request carrying a name in ``_SCREENED``: every other request must pass all three."""
    from restguard.guard import _SCREENED

    if {name for name, _ in headers}.isdisjoint(_SCREENED):
        assert _checks_outcome(tuple(headers)) is None
