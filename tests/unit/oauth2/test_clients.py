"""oauth2/clients.py: what ``oauth2 client create`` accepts (RFC 6749, RFC 9700, RFC 8252), the
record it makes, and the secret checks."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from restguard.keys.hashing import token_digest
from restguard.oauth2.clients import (
    DEVICE_CODE_URN,
    GRANTS,
    MAX_REDIRECT_URI_CHARS,
    TOKEN_FORMATS,
    is_active,
    new_client,
    redirect_uri_problem,
    secret_matches,
)
from restguard.store.ports import OAuthClientRecord
from tests.unit.fakes import T0

WEB = "https://app.example/callback"


def make(**over: Any) -> tuple[OAuthClientRecord, str | None]:
    args: dict[str, Any] = {
        "name": "notes web app",
        "scopes": ("notes:read",),
        "grants": ("authorization_code",),
        "redirect_uris": (WEB,),
        "public": False,
        "token_format": "jwt",
        "now": T0,
    }
    return new_client(**(args | over))


def refused(option: str, **over: Any) -> str:
    with pytest.raises(ValueError) as caught:
        make(**over)
    message = str(caught.value)
    assert message.startswith(f"{option}: "), message
    return message


# --- the record ----------------------------------------------------------------------------------


def test_confidential_client_record_and_secret() -> None:
    record, secret = make(
        scopes=("notes:read", "notes:write", "notes:read"),
        grants=("authorization_code", "refresh_token", "authorization_code"),
        redirect_uris=(WEB, "http://127.0.0.1:8400/cb", WEB),
        token_format="jwt",
    )
    assert secret is not None and re.fullmatch(r"rg_cs_[0-9A-Za-z]{43}", secret)
    assert re.fullmatch(r"rg_ci_[0-9a-z]{16}", record.client_id)
    assert record.secret_hash == token_digest(secret)
    assert secret.encode() not in repr(record).encode()
    assert record.name == "notes web app"
    assert record.grants == ("authorization_code", "refresh_token")  # repeats count once
    assert record.redirect_uris == (WEB, "http://127.0.0.1:8400/cb")
    assert record.scopes == ("notes:read", "notes:write")
    assert record.token_format == "jwt"
    assert record.created_at == T0 and record.revoked_at is None
    assert secret_matches(record, secret)
    assert is_active(record, T0)


def test_public_client_has_no_secret() -> None:
    record, secret = make(public=True, grants=("authorization_code", "refresh_token"))
    assert secret is None and record.secret_hash is None
    assert not secret_matches(record, "")
    assert not secret_matches(record, "rg_cs_" + "a" * 43)


def test_each_client_gets_its_own_id_and_secret() -> None:
    made = [make() for _ in range(20)]
    assert len({r.client_id for r, _ in made}) == 20
    assert len({s for _, s in made}) == 20


def test_defaults_are_confidential_and_jwt() -> None:
    record, secret = new_client("svc", ("a",), ("client_credentials",), now=T0)
    assert secret is not None and record.token_format == "jwt" == TOKEN_FORMATS[0]
    assert record.redirect_uris == ()


@pytest.mark.parametrize(
    ("grants", "uris", "public"),
    [
        (("client_credentials",), (), False),
        (("device_code",), (), True),
        (("device_code", "refresh_token"), (), False),
        (
            ("authorization_code", "client_credentials", "refresh_token", "device_code"),
            (WEB,),
            False,
        ),
        (("authorization_code",), ("com.example.app:/oauth2redirect",), True),
    ],
)
def test_grant_combinations_accepted(
    grants: tuple[str, ...], uris: tuple[str, ...], public: bool
) -> None:
    record, _ = make(grants=grants, redirect_uris=uris, public=public)
    assert record.grants == grants


def test_device_code_urn_is_stored_by_its_short_name() -> None:
    record, _ = make(grants=(DEVICE_CODE_URN, "device_code"), redirect_uris=())
    assert record.grants == ("device_code",)


def test_secret_matches_only_the_secret() -> None:
    record, secret = make()
    assert secret is not None
    _, other_secret = make()
    assert other_secret is not None
    assert not secret_matches(record, other_secret)
    assert not secret_matches(record, secret[:-1])
    assert not secret_matches(record, secret + "x")
    assert not secret_matches(record, secret[:-1] + "\u00e9")  # non-ASCII: no match, no error


def test_is_active_follows_revoked_at() -> None:
    record, _ = make()
    assert not is_active(replace(record, revoked_at=T0), T0)
    assert is_active(replace(record, revoked_at=T0 + timedelta(seconds=1)), T0)  # grace


# --- what is refused -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "a\nb", "tab\there", "nul\x00"])
def test_bad_names(name: str) -> None:
    refused("--name", name=name)


def test_names_like_api_keys() -> None:
    assert make(name="x" * 200)[0].name == "x" * 200
    assert make(name="Café app ✓")[0].name == "Café app ✓"


@pytest.mark.parametrize(
    "grants",
    [
        (),
        ("password",),  # RFC 9700 §2.4: must not be used
        ("implicit",),  # RFC 9700 §2.1.2
        ("token",),
        ("Authorization_Code",),
        ("urn:ietf:params:oauth:grant-type:jwt-bearer",),
    ],
)
def test_bad_grants(grants: tuple[str, ...]) -> None:
    message = refused("--grant", grants=grants, redirect_uris=())
    for name in GRANTS:
        assert name in message


def test_public_client_cannot_use_client_credentials() -> None:
    message = refused("--grant", grants=("client_credentials",), redirect_uris=(), public=True)
    assert "confidential" in message and "--public" in message


@pytest.mark.parametrize("grants", [("refresh_token",), ("client_credentials", "refresh_token")])
def test_refresh_token_needs_a_grant_that_issues_one(grants: tuple[str, ...]) -> None:
    refused("--grant", grants=grants, redirect_uris=())


@pytest.mark.parametrize(
    "scopes",
    [(), ("",), ("a b",), ("a,b",), ('say"hi',), ("back\\slash",), ("caf\u00e9",), ("a\n",)],
)
def test_bad_scopes(scopes: tuple[str, ...]) -> None:
    refused("--scope", scopes=scopes)


def test_authorization_code_needs_a_redirect_uri() -> None:
    message = refused("--redirect-uri", redirect_uris=())
    assert "authorization_code" in message


@pytest.mark.parametrize("grants", [("client_credentials",), ("device_code",)])
def test_redirect_uris_only_with_authorization_code(grants: tuple[str, ...]) -> None:
    message = refused("--redirect-uri", grants=grants)
    assert "authorization_code" in message


@pytest.mark.parametrize("token_format", ["paseto", "Opaque", ""])
def test_bad_token_format(token_format: str) -> None:
    message = refused("--token-format", token_format=token_format)
    assert "jwt or opaque" in message


# --- redirect URIs -------------------------------------------------------------------------------

GOOD_URIS = [
    WEB,
    "https://app.example:8443/cb?tenant=a&x=%2F",  # a query is allowed (RFC 6749 §3.1.2)
    "https://app.example",
    "https://[2001:db8::1]/cb",
    "http://127.0.0.1/cb",  # loopback IP literals (RFC 8252 §7.3)
    "http://127.0.0.1:49152/oauth/cb",
    "http://127.8.9.10:8080/",
    "http://[::1]:8080/cb",
    "com.example.app:/oauth2redirect/example-provider",  # RFC 8252 §7.1
    "com.example.app://cb",
    "https://app.example/" + "a" * (MAX_REDIRECT_URI_CHARS - len("https://app.example/")),
]

BAD_URIS = [
    "",
    "/callback",  # relative (RFC 6749 §3.1.2: absolute)
    "app.example/cb",
    "//app.example/cb",
    "https://app.example/cb#frag",  # fragment (RFC 6749 §3.1.2)
    "https://app.example/cb#",
    "http://app.example/cb",  # http only to loopback
    "http://localhost:8080/cb",  # RFC 8252 §8.3: NOT RECOMMENDED
    "http://127.0.0.1.nip.io/cb",
    "http://0x7f000001/cb",
    "https://*.app.example/cb",  # wildcards
    "https://app.example/*",
    "https://app.example/a b",  # spaces and controls
    "https://app.example/a\tb",
    "https://app.example/a\nb",
    "https://app.example/a\x00",
    " https://app.example/cb",
    "https://app.example/caf\u00e9",  # must be percent-encoded
    "https://app.example/%zz",
    "https://app.example/<script>",
    "https://user:pw@app.example/cb",
    "https://app.example@evil.example/cb",
    "https:///cb",
    "https://app.example:99999/cb",
    "https://app.example:port/cb",
    "myapp:/cb",  # a private-use scheme without a dot
    "myapp://cb",
    "com.example.app:cb",  # no path
    "com..example:/cb",
    "javascript:alert(1)",
    "data:text/html,hi",
    "file:///etc/passwd",
    "ftp://app.example/cb",
    "urn:ietf:wg:oauth:2.0:oob",  # out-of-band: deprecated, not a redirect
    "https://app.example/" + "a" * (MAX_REDIRECT_URI_CHARS + 1 - len("https://app.example/")),
]


@pytest.mark.parametrize("uri", GOOD_URIS, ids=lambda u: u[:50])
def test_good_redirect_uris(uri: str) -> None:
    assert redirect_uri_problem(uri) is None
    assert make(redirect_uris=(uri,))[0].redirect_uris == (uri,)  # kept exactly as given


@pytest.mark.parametrize("uri", BAD_URIS, ids=lambda u: repr(u[:50]))
def test_bad_redirect_uris(uri: str) -> None:
    assert redirect_uri_problem(uri)
    message = refused("--redirect-uri", redirect_uris=(WEB, uri))
    assert message.isprintable() and len(message) < 400  # one line, never the whole 2000 chars


def test_stored_redirect_uris_never_hold_a_space() -> None:
    """The store keeps them space-separated: every accepted one must read back alone."""
    for uri in GOOD_URIS:
        assert not any(c.isspace() for c in uri)
