"""restguard's OAuth 1.0a client: ``OAuth1Auth`` with httpx (sync and async, through
``httpx.MockTransport``) and requests (a prepared request) for HMAC-SHA1, HMAC-SHA256, PLAINTEXT
and RSA-SHA1. Every signed request is checked twice: by restguard's own verifier
(``rfc5849.collect`` + ``rfc5849_algorithms.verify``) and by oauthlib's
``SignatureOnlyEndpoint``, an implementation we did not write."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint

import restguard.client
from restguard.client import OAuth1Auth
from restguard.wire.rfc5849 import OAuthRequest, SignatureInvalid, collect, parse_authorization
from restguard.wire.rfc5849_algorithms import signer, verify

CONSUMER_KEY = "ck_4f0c9n2k7q1m8x3v5b6z"
CONSUMER_SECRET = "Vb3qXk0c2LwZ8m1N5p7R9s4T6u8W0y2A4c6E8g0I2k4"
TOKEN = "rg_ot_2mQx7Lb9Vn4Kc8Zp1Rw6"
TOKEN_SECRET = "t0k3n-s3cr3t+&=/é"  # characters §3.6 must encode in the key
CLIENTS = ["httpx", "httpx-async", "requests"]
METHODS = ["HMAC-SHA1", "HMAC-SHA256", "PLAINTEXT", "RSA-SHA1"]
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- sending: what each client puts on the wire --------------------------------------------------


@dataclass(frozen=True)
class Sent:
    method: str
    url: str
    headers: dict[str, str]  # lower-case names
    body: bytes


def _from_httpx(request: httpx.Request) -> Sent:
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Sent(request.method, str(request.url), headers, request.content)


def _send_httpx(auth: OAuth1Auth, method: str, url: str, **kwargs: Any) -> Sent:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(answer), auth=auth) as client:
        assert client.request(method, url, **kwargs).status_code == 200
    (request,) = seen
    return _from_httpx(request)


async def _send_httpx_async(auth: OAuth1Auth, method: str, url: str, **kwargs: Any) -> Sent:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), auth=auth) as client:
        assert (await client.request(method, url, **kwargs)).status_code == 200
    (request,) = seen
    return _from_httpx(request)


def _send_requests(auth: OAuth1Auth, method: str, url: str, **kwargs: Any) -> Sent:
    if "content" in kwargs:
        kwargs["data"] = kwargs.pop("content")
    prepared = requests.Request(method, url, **kwargs).prepare()
    assert auth(prepared) is prepared
    body = prepared.body or b""
    assert isinstance(body, bytes), "a signed body is sent as the bytes that were signed"
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    return Sent(str(prepared.method), str(prepared.url), headers, body)


def send(client: str, auth: OAuth1Auth, method: str, url: str, **kwargs: Any) -> Sent:
    """Send one request through ``client`` with ``auth``; what went out."""
    if client == "httpx":
        return _send_httpx(auth, method, url, **kwargs)
    if client == "httpx-async":
        return asyncio.run(_send_httpx_async(auth, method, url, **kwargs))
    return _send_requests(auth, method, url, **kwargs)


# --- verifying: restguard's verifier and oauthlib's ----------------------------------------------


def _is_form(sent: Sent) -> bool:
    return sent.headers.get("content-type", "").split(";")[0].strip().lower() == FORM


def restguard_verify(
    sent: Sent,
    *,
    consumer_secret: str | None = CONSUMER_SECRET,
    token_secret: str | None = None,
    rsa_public_key: rsa.RSAPublicKey | None = None,
) -> OAuthRequest:
    """The server's view (Host, path and query as received): collect, then verify; raises
    ``SignatureInvalid`` on a mismatch."""
    parts = urlsplit(sent.url)
    request = collect(
        sent.method,
        parts.scheme,
        sent.headers.get("host") or parts.netloc,
        parts.path,
        parts.query.encode("ascii"),
        [(b"authorization", sent.headers["authorization"].encode("ascii"))],
        sent.body,
        _is_form(sent),
    )
    verify(
        request.signature_method,
        request.base_string,
        request.signature,
        consumer_secret=consumer_secret,
        token_secret=token_secret,
        rsa_public_key=rsa_public_key,
    )
    return request


class _Validator(RequestValidator):
    """oauthlib's defaults (alphanumeric nonces of 20 to 30 characters, a 600 s timestamp
    window) except the consumer key format (restguard's have an ``_``) and the storage."""

    def __init__(self, client_secret: str, token_secret: str, rsa_pem: str, https: bool) -> None:
        super().__init__()
        self._client_secret, self._token_secret, self._rsa_pem = (
            client_secret,
            token_secret,
            rsa_pem,
        )
        self._https = https

    @property
    def enforce_ssl(self) -> bool:
        return self._https

    def check_client_key(self, client_key: str) -> bool:
        return client_key == CONSUMER_KEY

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key == CONSUMER_KEY

    def validate_timestamp_and_nonce(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self._client_secret

    def get_access_token_secret(self, client_key: str, token: str, request: Any) -> str:
        return self._token_secret

    def get_rsa_key(self, client_key: str, request: Any) -> str:
        return self._rsa_pem


def oauthlib_verifies(
    sent: Sent,
    *,
    consumer_secret: str = CONSUMER_SECRET,
    token_secret: str = "",
    rsa_public_key: rsa.RSAPublicKey | None = None,
) -> bool:
    pem = ""
    if rsa_public_key is not None:
        pem = rsa_public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    https = sent.url.startswith("https://")
    endpoint = SignatureOnlyEndpoint(_Validator(consumer_secret, token_secret, pem, https))
    valid, _ = endpoint.validate_request(
        sent.url, sent.method, sent.body.decode("utf-8"), dict(sent.headers)
    )
    return bool(valid)


def make_auth(method: str, key: rsa.RSAPrivateKey, **kwargs: Any) -> OAuth1Auth:
    if method == "RSA-SHA1":
        return OAuth1Auth(
            CONSUMER_KEY,
            signature_method=method,
            rsa_signer=signer("RSA-SHA1", rsa_private_key=key),
            **kwargs,
        )
    return OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, signature_method=method, **kwargs)


def both_verify(sent: Sent, method: str, key: rsa.RSAPrivateKey, token_secret: str = "") -> None:
    public = key.public_key() if method == "RSA-SHA1" else None
    secret = None if method == "RSA-SHA1" else CONSUMER_SECRET
    restguard_verify(sent, consumer_secret=secret, token_secret=token_secret, rsa_public_key=public)
    assert oauthlib_verifies(sent, token_secret=token_secret, rsa_public_key=public)


def protocol(sent: Sent) -> dict[str, str]:
    parsed = parse_authorization(sent.headers["authorization"].encode("ascii"))
    assert parsed is not None
    return {name: value for name, value, _, _ in parsed[1]}


# --- every method, every client ------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("method", METHODS)
def test_each_method_signs_what_both_verifiers_accept(
    client: str, method: str, rsa_key: rsa.RSAPrivateKey
) -> None:
    auth = make_auth(method, rsa_key, token=TOKEN, token_secret=TOKEN_SECRET)
    got = send(client, auth, "GET", "https://api.example.com/photos?size=original&file=vacation")
    assert got.headers["authorization"].startswith("OAuth ")
    oauth = protocol(got)
    assert oauth["oauth_signature_method"] == method
    assert oauth["oauth_consumer_key"] == CONSUMER_KEY and oauth["oauth_token"] == TOKEN
    assert oauth["oauth_version"] == "1.0"
    both_verify(got, method, rsa_key, TOKEN_SECRET)

    posted = send(
        client,
        auth,
        "POST",
        "https://api.example.com/notes?draft=1",
        data={"text": "a b+c", "tag": "é✓"},
    )
    collected = restguard_verify(
        posted,
        consumer_secret=None if method == "RSA-SHA1" else CONSUMER_SECRET,
        token_secret=TOKEN_SECRET,
        rsa_public_key=rsa_key.public_key() if method == "RSA-SHA1" else None,
    )
    assert ("text", "a b+c") in collected.params and ("tag", "é✓") in collected.params
    both_verify(posted, method, rsa_key, TOKEN_SECRET)
    if method != "PLAINTEXT":  # (PLAINTEXT signs no base string: a wrong secret is the test)
        with pytest.raises(SignatureInvalid):
            restguard_verify(
                replace(posted, method="PUT"),
                consumer_secret=None if method == "RSA-SHA1" else CONSUMER_SECRET,
                token_secret=TOKEN_SECRET,
                rsa_public_key=rsa_key.public_key() if method == "RSA-SHA1" else None,
            )


@pytest.mark.parametrize("client", CLIENTS)
def test_a_wrong_secret_does_not_verify(client: str) -> None:
    for method in ("HMAC-SHA1", "HMAC-SHA256", "PLAINTEXT"):
        auth = OAuth1Auth(
            CONSUMER_KEY,
            CONSUMER_SECRET,
            token=TOKEN,
            token_secret=TOKEN_SECRET,
            signature_method=method,
        )
        got = send(client, auth, "GET", "https://api.example.com/a")
        with pytest.raises(SignatureInvalid):
            restguard_verify(got, token_secret="another")
        with pytest.raises(SignatureInvalid):
            restguard_verify(got, consumer_secret="another", token_secret=TOKEN_SECRET)
        assert not oauthlib_verifies(got, token_secret="another")
        assert not oauthlib_verifies(got, consumer_secret="another", token_secret=TOKEN_SECRET)


def test_rsa_sha1_with_another_key_does_not_verify(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    got = send("httpx", make_auth("RSA-SHA1", rsa_key), "GET", "https://api.example.com/a")
    restguard_verify(got, consumer_secret=None, rsa_public_key=rsa_key.public_key())
    with pytest.raises(SignatureInvalid):
        restguard_verify(got, consumer_secret=None, rsa_public_key=other.public_key())
    assert not oauthlib_verifies(got, rsa_public_key=other.public_key())


# --- what is signed: form bodies yes, other bodies no --------------------------------------------


def _tamper(sent: Sent, old: bytes, new: bytes) -> Sent:
    assert old in sent.body
    return replace(sent, body=sent.body.replace(old, new))


@pytest.mark.parametrize("client", CLIENTS)
def test_a_form_body_is_signed(client: str) -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, token=TOKEN, token_secret=TOKEN_SECRET)
    got = send(
        client, auth, "POST", "https://api.example.com/pay", data={"amount": "10", "to": "bob"}
    )
    assert got.headers["content-type"] == FORM
    collected = restguard_verify(got, token_secret=TOKEN_SECRET)
    assert ("amount", "10") in collected.params and ("to", "bob") in collected.params
    assert oauthlib_verifies(got, token_secret=TOKEN_SECRET)
    tampered = _tamper(got, b"amount=10", b"amount=99")
    with pytest.raises(SignatureInvalid):
        restguard_verify(tampered, token_secret=TOKEN_SECRET)
    assert not oauthlib_verifies(tampered, token_secret=TOKEN_SECRET)
    added = replace(got, body=got.body + b"&to=mallory")
    with pytest.raises(SignatureInvalid):
        restguard_verify(added, token_secret=TOKEN_SECRET)
    assert not oauthlib_verifies(added, token_secret=TOKEN_SECRET)


@pytest.mark.parametrize("client", CLIENTS)
def test_the_form_media_type_is_matched_case_insensitively_without_parameters(
    client: str,
) -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)
    got = send(
        client,
        auth,
        "POST",
        "https://api.example.com/pay",
        content=b"amount=10&note=a+b%21",
        headers={"Content-Type": "Application/X-WWW-Form-Urlencoded ; charset=UTF-8"},
    )
    collected = restguard_verify(got)
    assert ("amount", "10") in collected.params and ("note", "a b!") in collected.params
    with pytest.raises(SignatureInvalid):
        restguard_verify(_tamper(got, b"amount=10", b"amount=11"))


@pytest.mark.parametrize("client", CLIENTS)
def test_a_json_body_is_not_signed(client: str) -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, token=TOKEN, token_secret=TOKEN_SECRET)
    # a body that reads as a form, but is not one: its "parameters" must not be signed
    got = send(
        client,
        auth,
        "POST",
        "https://api.example.com/notes",
        content=b"amount=10&to=bob",
        headers={"Content-Type": "application/json"},
    )
    collected = restguard_verify(got, token_secret=TOKEN_SECRET)
    assert {name for name, _ in collected.params} <= set(protocol(got))
    assert oauthlib_verifies(got, token_secret=TOKEN_SECRET)
    # not covered: a changed body still verifies (RFC 5849 signs no other body)
    changed = _tamper(got, b"amount=10", b"amount=99")
    restguard_verify(changed, token_secret=TOKEN_SECRET)

    real_json = send(client, auth, "POST", "https://api.example.com/notes", json={"a": "b c"})
    collected = restguard_verify(real_json, token_secret=TOKEN_SECRET)
    assert {name for name, _ in collected.params} <= set(protocol(real_json))
    assert oauthlib_verifies(real_json, token_secret=TOKEN_SECRET)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_multipart_body_is_not_signed(client: str) -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)
    got = send(
        client,
        auth,
        "POST",
        "https://api.example.com/upload",
        files={"file": ("a.txt", b"amount=10")},
        data={"title": "x"},
    )
    assert got.headers["content-type"].startswith("multipart/form-data")
    collected = restguard_verify(got)
    assert {name for name, _ in collected.params} <= set(protocol(got))
    assert oauthlib_verifies(got)


# --- the URL as sent -----------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_query_parameters_with_spaces_plus_unicode_and_repeated_names(client: str) -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, token=TOKEN, token_secret=TOKEN_SECRET)
    # built by the client from pairs ...
    pairs = [("q", "a b"), ("q", "x+y"), ("name", "zoë ✓"), ("q", "a b"), ("empty", "")]
    got = send(client, auth, "GET", "https://api.example.com/search", params=pairs)
    collected = restguard_verify(got, token_secret=TOKEN_SECRET)
    # (httpx groups a repeated name's values together: the order is the client's business)
    assert sorted(p for p in collected.params if not p[0].startswith("oauth_")) == sorted(pairs)
    assert oauthlib_verifies(got, token_secret=TOKEN_SECRET)
    # ... and written raw in the URL: "+" is a space, %2B a plus, a name without "=", a path
    # with an escaped UTF-8 character
    url = "https://api.example.com/caf%C3%A9/s?q=a+b&q=a%2Bb&q=%E2%9C%93&flag&q=a+b"
    got = send(client, auth, "GET", url)
    assert got.url == url
    collected = restguard_verify(got, token_secret=TOKEN_SECRET)
    assert collected.base_uri == "https://api.example.com/caf%C3%A9/s"
    assert [p for p in collected.params if not p[0].startswith("oauth_")] == [
        ("q", "a b"),
        ("q", "a+b"),
        ("q", "✓"),
        ("flag", ""),
        ("q", "a b"),
    ]
    assert oauthlib_verifies(got, token_secret=TOKEN_SECRET)
    with pytest.raises(SignatureInvalid):
        restguard_verify(
            replace(got, url=url.replace("q=a%2Bb", "q=a+b")), token_secret=TOKEN_SECRET
        )


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("url", "base_uri"),
    [
        ("https://api.example.com:8443/v1/x?a=1", "https://api.example.com:8443/v1/x"),
        ("https://API.Example.com:443/v1/x?a=1", "https://api.example.com/v1/x"),
        ("http://api.example.com:8080/v1/x", "http://api.example.com:8080/v1/x"),
        ("http://api.example.com:80/v1/x", "http://api.example.com/v1/x"),
        ("https://api.example.com", "https://api.example.com/"),
        ("http://[::1]:8080/v1/x", "http://[::1]:8080/v1/x"),
    ],
)
def test_the_port_is_signed_unless_it_is_the_default(client: str, url: str, base_uri: str) -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)
    got = send(client, auth, "GET", url)
    collected = restguard_verify(got)
    assert collected.base_uri == base_uri
    assert oauthlib_verifies(got)
    # the same request to another port does not verify
    parts = urlsplit(got.url)
    host = str(parts.hostname)
    netloc = f"[{host}]:9" if ":" in host else f"{host}:9"
    headers = {k: v for k, v in got.headers.items() if k != "host"}
    elsewhere = replace(got, url=urlunsplit(parts._replace(netloc=netloc)), headers=headers)
    with pytest.raises(SignatureInvalid):
        restguard_verify(elsewhere)
    assert not oauthlib_verifies(elsewhere)


# --- token, two-legged, callback, verifier, realm ------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_two_legged_requests_carry_no_token(client: str) -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)
    got = send(client, auth, "GET", "https://api.example.com/a")
    oauth = protocol(got)
    assert "oauth_token" not in oauth
    assert set(oauth) == {
        "oauth_consumer_key",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_nonce",
        "oauth_version",
        "oauth_signature",
    }
    assert restguard_verify(got, token_secret="").token is None
    assert oauthlib_verifies(got, token_secret="")
    with pytest.raises(SignatureInvalid):  # the key is "secret&": no token secret in it
        restguard_verify(got, token_secret=TOKEN_SECRET)


@pytest.mark.parametrize("client", CLIENTS)
def test_callback_and_verifier_are_sent_and_signed(client: str) -> None:
    callback = "https://client.example/cb?x=1&y=a b"
    # a temporary credential request: the callback, no token
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, callback=callback)
    got = send(client, auth, "POST", "https://api.example.com/oauth1/initiate")
    assert protocol(got)["oauth_callback"] == callback
    collected = restguard_verify(got)
    assert ("oauth_callback", callback) in collected.params
    assert oauthlib_verifies(got)
    # the token request: the temporary credentials and the verifier
    auth = OAuth1Auth(
        CONSUMER_KEY, CONSUMER_SECRET, token="rg_or_x", token_secret="tmp", verifier="v3r1f13r"
    )
    got = send(client, auth, "POST", "https://api.example.com/oauth1/token")
    oauth = protocol(got)
    assert oauth["oauth_verifier"] == "v3r1f13r" and oauth["oauth_token"] == "rg_or_x"
    assert "oauth_callback" not in oauth
    collected = restguard_verify(got, token_secret="tmp")
    assert ("oauth_verifier", "v3r1f13r") in collected.params
    assert oauthlib_verifies(got, token_secret="tmp")
    # the verifier is covered: another one breaks the signature
    forged = got.headers["authorization"].replace('oauth_verifier="v3r1f13r"', 'oauth_verifier="x"')
    assert forged != got.headers["authorization"]
    with pytest.raises(SignatureInvalid):
        restguard_verify(
            replace(got, headers={**got.headers, "authorization": forged}), token_secret="tmp"
        )


@pytest.mark.parametrize("client", CLIENTS)
def test_realm_is_sent_and_not_signed(client: str) -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, realm='Photos "2"')
    got = send(client, auth, "GET", "https://api.example.com/a")
    assert got.headers["authorization"].startswith('OAuth realm="Photos \\"2\\"", ')
    assert restguard_verify(got).realm == 'Photos "2"'
    assert oauthlib_verifies(got)


# --- PLAINTEXT only over TLS ---------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_plaintext_over_plain_http_is_refused(client: str) -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, signature_method="PLAINTEXT")
    with pytest.raises(ValueError, match="https:// only"):
        send(client, auth, "GET", "http://api.example.com/a")
    with pytest.raises(ValueError, match="https:// only"):
        send(client, auth, "GET", "http://127.0.0.1:8080/a")
    got = send(client, auth, "GET", "https://api.example.com/a")
    assert protocol(got)["oauth_signature"] == f"{CONSUMER_SECRET}&"
    # allowed explicitly (tests): signed, and oauthlib accepts it once told plain HTTP is fine
    insecure = OAuth1Auth(
        CONSUMER_KEY, CONSUMER_SECRET, signature_method="PLAINTEXT", allow_insecure_plaintext=True
    )
    got = send(client, insecure, "GET", "http://api.example.com/a")
    restguard_verify(got)
    assert oauthlib_verifies(got)
    # HMAC over plain HTTP is the server's business, not refused here
    got = send(client, OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET), "GET", "http://api.example.com/a")
    restguard_verify(got)


# --- per request: nonce and timestamp ------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_every_request_gets_a_fresh_nonce_and_the_current_time(client: str) -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)
    before = int(time.time())
    sent = [send(client, auth, "GET", "https://api.example.com/a") for _ in range(3)]
    after = int(time.time())
    nonces = [protocol(s)["oauth_nonce"] for s in sent]
    assert len(set(nonces)) == 3
    for nonce in nonces:  # what oauthlib-based servers accept by default
        assert len(nonce) == 22 and nonce.isascii() and nonce.isalnum()
    for s in sent:
        assert before <= int(protocol(s)["oauth_timestamp"]) <= after


# --- httpx: the body is read only when it is signed ----------------------------------------------


def test_httpx_reads_a_streamed_form_body_and_signs_it() -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)

    def chunks() -> Iterator[bytes]:
        yield b"amount=10"
        yield b"&to=bob"

    got = send(
        "httpx",
        auth,
        "POST",
        "https://api.example.com/pay",
        content=chunks(),
        headers={"Content-Type": FORM},
    )
    assert got.body == b"amount=10&to=bob"
    assert ("to", "bob") in restguard_verify(got).params
    assert oauthlib_verifies(got)


def test_httpx_leaves_a_streamed_non_form_body_unread() -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)

    def chunks() -> Iterator[bytes]:
        yield b"{}"

    request = httpx.Request("POST", "https://api.example.com/a", content=chunks())
    flow = auth.sync_auth_flow(request)
    assert next(flow) is request
    assert request.headers["authorization"].startswith("OAuth ")
    with pytest.raises(httpx.RequestNotRead):
        _ = request.content
    form = httpx.Request(
        "POST", "https://api.example.com/a", content=chunks(), headers={"Content-Type": FORM}
    )
    next(auth.sync_auth_flow(form))
    assert form.content == b"{}"  # read: its parameters are signed


async def test_httpx_async_leaves_a_streamed_non_form_body_unread() -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)

    async def chunks() -> Any:
        yield b"a=1"

    request = httpx.Request("POST", "https://api.example.com/a", content=chunks())
    flow = auth.async_auth_flow(request)
    assert await flow.__anext__() is request
    with pytest.raises(httpx.RequestNotRead):
        _ = request.content
    await flow.aclose()
    form = httpx.Request(
        "POST", "https://api.example.com/a", content=chunks(), headers={"Content-Type": FORM}
    )
    flow = auth.async_auth_flow(form)
    await flow.__anext__()
    await flow.aclose()
    assert form.content == b"a=1"
    sent = _from_httpx(form)
    assert ("a", "1") in restguard_verify(sent).params


# --- requests: bodies ----------------------------------------------------------------------------


def test_requests_sends_a_str_form_body_as_the_signed_bytes() -> None:
    prepared = requests.Request(
        "POST", "https://api.example.com/a", data="note=caf%C3%A9", headers={"Content-Type": FORM}
    ).prepare()
    assert isinstance(prepared.body, str)
    OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)(prepared)
    assert prepared.body == b"note=caf%C3%A9"
    assert prepared.headers["Content-Length"] == str(len(prepared.body))


def test_requests_refuses_a_streamed_form_body() -> None:
    prepared = requests.Request(
        "POST", "https://api.example.com/a", data=iter([b"a=1"]), headers={"Content-Type": FORM}
    ).prepare()
    with pytest.raises(TypeError, match="not a stream"):
        OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)(prepared)
    # a streamed body that is not a form is not signed, so it is fine
    streamed = requests.Request("POST", "https://api.example.com/a", data=iter([b"{}"])).prepare()
    OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)(streamed)
    assert streamed.headers["Authorization"].startswith("OAuth ")


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_an_oauth_parameter_already_in_the_request_is_refused(client: str) -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET)
    with pytest.raises(ValueError, match="cannot sign"):
        send(client, auth, "GET", "https://api.example.com/a?oauth_token=x")


def test_an_rsa_signer_must_return_base64_text(rsa_key: rsa.RSAPrivateKey) -> None:
    raw = OAuth1Auth(CONSUMER_KEY, signature_method="RSA-SHA1", rsa_signer=lambda b: "not base64!")
    with pytest.raises(ValueError, match="base64"):
        send("requests", raw, "GET", "https://api.example.com/a")


def test_arguments_are_checked_at_construction(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="unsupported signature method"):
        OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, signature_method="HMAC-SHA512")
    with pytest.raises(ValueError, match="unsupported signature method"):
        OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, signature_method="hmac-sha1")
    for method in ("HMAC-SHA1", "HMAC-SHA256", "PLAINTEXT"):
        with pytest.raises(ValueError, match="consumer secret"):
            OAuth1Auth(CONSUMER_KEY, signature_method=method)
        with pytest.raises(ValueError, match="consumer secret"):
            OAuth1Auth(CONSUMER_KEY, "", signature_method=method)
    with pytest.raises(ValueError, match="token_secret without token"):
        OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, token_secret=TOKEN_SECRET)
    with pytest.raises(ValueError, match="two-legged"):
        OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, token="")
    with pytest.raises(ValueError, match="consumer_key"):
        OAuth1Auth("", CONSUMER_SECRET)
    with pytest.raises(ValueError, match="rsa_signer"):
        OAuth1Auth(CONSUMER_KEY, signature_method="RSA-SHA1")
    with pytest.raises(TypeError, match="not a key object"):
        OAuth1Auth(CONSUMER_KEY, signature_method="RSA-SHA1", rsa_signer=rsa_key)
    with pytest.raises(ValueError, match="for RSA-SHA1"):
        OAuth1Auth(
            CONSUMER_KEY, CONSUMER_SECRET, rsa_signer=signer("RSA-SHA1", rsa_private_key=rsa_key)
        )
    with pytest.raises(ValueError, match="control characters"):
        OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, realm="a\r\nb")
    # and what is fine: a token without a secret, RSA-SHA1 given the (unused) secrets
    OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, token=TOKEN)
    OAuth1Auth(
        CONSUMER_KEY,
        CONSUMER_SECRET,
        token=TOKEN,
        token_secret=TOKEN_SECRET,
        signature_method="RSA-SHA1",
        rsa_signer=signer("RSA-SHA1", rsa_private_key=rsa_key),
    )


def test_repr_shows_no_secret() -> None:
    auth = OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, token=TOKEN, token_secret=TOKEN_SECRET)
    text = repr(auth)
    assert CONSUMER_KEY in text and CONSUMER_SECRET not in text and TOKEN_SECRET not in text


# --- the client's contract -----------------------------------------------------------------------


def test_restguard_client_exports_oauth1_auth() -> None:
    assert "OAuth1Auth" in restguard.client.__all__
    assert restguard.client.OAuth1Auth is OAuth1Auth
    assert isinstance(OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET), httpx.Auth)


def test_importing_it_loads_no_cryptography() -> None:
    code = (
        "import sys, restguard.client.oauth1\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'cryptography']\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert done.returncode == 0, done.stderr
