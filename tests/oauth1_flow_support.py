"""Helpers for the OAuth 1.0a provider tests: consumers written to a gateway's store, requests
signed by hand (every parameter's place, the nonce, the timestamp, the Host and the raw path
under the test's control) and the three legs of RFC 5849 §2 driven over HTTP.

The signatures are computed with oauthlib's RFC 5849 functions, not restguard's, so a test
never checks restguard against itself."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import requests
from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from restguard.credentials.oauth1_consumers import new_consumer
from restguard.keys.sealing import open_sealer
from tests.harness import GatewayProcess
from tests.oauth2_support import Form, ResourceOwner, _store_call, forms

CALLBACK = "http://127.0.0.1:9/oauth1/cb"
FORM = "application/x-www-form-urlencoded"
Where = Literal["header", "query", "body"]
Pairs = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Consumer:
    key: str
    secret: str
    callback: str | None
    name: str
    scopes: tuple[str, ...]


def add_consumer(
    gw: GatewayProcess,
    *scopes: str,
    name: str = "Notes sync",
    callback: str | None = CALLBACK,
    methods: Iterable[str] = (),
) -> Consumer:
    """A consumer written straight to the gateway's store (what ``oauth1 consumer create``
    does), with its secret."""
    record, secret = new_consumer(
        name=name,
        scopes=scopes,
        callback=callback,
        methods=tuple(methods),
        rsa_public_key_pem=None,
        now=datetime.now(UTC),
        sealer=open_sealer(gw.settings.base_dir / gw.settings.master_key_path),
    )
    _store_call(gw, lambda store: store.oauth1_consumers.insert(record))
    return Consumer(record.consumer_key, secret, callback, name, record.scopes)


@dataclass
class Signed:
    """One signed request, ready to send: method, request target, headers, body."""

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    oauth: dict[str, str] = field(default_factory=dict)

    def send(self, gw: GatewayProcess, **kw: Any) -> requests.Response:
        return requests.request(
            self.method,
            gw.url + self.target,
            headers=self.headers,
            data=self.body or None,
            allow_redirects=False,
            timeout=kw.pop("timeout", 20),
            **kw,
        )

    def raw(self, host: str) -> bytes:
        """The request byte for byte (``Host: host``, a Content-Length when there is a body)."""
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if self.body or self.method == "POST":
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def sign(
    consumer: Consumer,
    path: str,
    *,
    host: str,
    method: str = "POST",
    token: str | None = None,
    token_secret: str = "",
    oauth: dict[str, str] | None = None,
    query: Pairs = (),
    body: Pairs | None = None,
    header_params: Pairs = (),
    where: Where = "header",
    signature_method: str = "HMAC-SHA1",
    nonce: str | None = None,
    timestamp: int | None = None,
    content_type: str | None = FORM,
    scheme: str = "http",
    sign_body: bool = True,
    consumer_secret: str | None = None,
) -> Signed:
    """``method`` ``path`` signed by ``consumer`` (and ``token``), RFC 5849 §3.4.1 with
    oauthlib's functions. ``oauth`` adds protocol parameters (``oauth_callback``,
    ``oauth_verifier``); ``query``, ``body`` (form pairs) and ``header_params`` (non-protocol
    parameters put in the Authorization header) are signed where they are sent; the protocol
    parameters go ``where``. ``sign_body=False`` leaves the body out of the base string (a
    client that did not see a form)."""
    protocol = {
        "oauth_consumer_key": consumer.key,
        "oauth_signature_method": signature_method,
        "oauth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "oauth_nonce": nonce or secrets.token_hex(12),
        "oauth_version": "1.0",
        **({"oauth_token": token} if token is not None else {}),
        **(oauth or {}),
    }
    query_pairs = list(query) + (list(protocol.items()) if where == "query" else [])
    body_pairs = list(body or []) + (list(protocol.items()) if where == "body" else [])
    signed_pairs = list(query_pairs) + list(header_params)
    if sign_body:
        signed_pairs += body_pairs
    if where == "header":
        signed_pairs += list(protocol.items())
    base_uri = f"{scheme}://{host.lower()}{path}"
    if scheme == "http" and host.endswith(":80"):
        base_uri = f"{scheme}://{host[:-3].lower()}{path}"
    normalized = oauth_signature.normalize_parameters(signed_pairs)
    base = oauth_signature.signature_base_string(method, base_uri, normalized)
    keys = SimpleNamespace(
        client_secret=consumer.secret if consumer_secret is None else consumer_secret,
        resource_owner_secret=token_secret,
    )
    signers = {
        "HMAC-SHA1": oauth_signature.sign_hmac_sha1_with_client,
        "HMAC-SHA256": oauth_signature.sign_hmac_sha256_with_client,
        "PLAINTEXT": oauth_signature.sign_plaintext_with_client,
    }
    sig = signers[signature_method](base, keys)
    protocol["oauth_signature"] = sig
    headers: dict[str, str] = {}
    if where == "header":
        params = [*protocol.items(), *header_params]
        headers["Authorization"] = "OAuth " + ", ".join(
            f'{quote(k, safe="~")}="{quote(v, safe="~")}"' for k, v in params
        )
    elif header_params:
        raise ValueError("header_params go with where='header'")
    if where == "query":
        query_pairs = list(query) + list(protocol.items())
    if where == "body":
        body_pairs = list(body or []) + list(protocol.items())
    target = path + ("?" + urlencode(query_pairs, quote_via=quote) if query_pairs else "")
    raw_body = urlencode(body_pairs, quote_via=quote).encode() if body_pairs else b""
    if content_type is not None and (raw_body or method == "POST"):
        headers["Content-Type"] = content_type
    return Signed(method, target, headers, raw_body, dict(protocol))


def host_of(gw: GatewayProcess) -> str:
    return f"127.0.0.1:{gw.port}"


def form_answer(r: requests.Response) -> dict[str, str]:
    """A §2.1 / §2.3 answer: 200, form-encoded, never cached, each parameter once."""
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == FORM
    assert r.headers["cache-control"] == "no-store"
    parsed = parse_qs(r.text, keep_blank_values=True, strict_parsing=True)
    assert all(len(v) == 1 for v in parsed.values()), parsed
    return {k: v[0] for k, v in parsed.items()}


@dataclass(frozen=True)
class Temporary:
    token: str
    secret: str


def request_token(
    gw: GatewayProcess,
    consumer: Consumer,
    callback: str | None = None,
    *,
    scope: str | None = None,
    **kw: Any,
) -> requests.Response:
    """``POST /oauth1/request_token`` (§2.1); ``scope`` in the form body."""
    cb = callback if callback is not None else (consumer.callback or "oob")
    body = [("scope", scope)] if scope is not None else None
    oauth = {"oauth_callback": cb, **kw.pop("oauth", {})}
    return sign(
        consumer, "/oauth1/request_token", host=host_of(gw), oauth=oauth, body=body, **kw
    ).send(gw)


def temporary(
    gw: GatewayProcess, consumer: Consumer, callback: str | None = None, **kw: Any
) -> Temporary:
    got = form_answer(request_token(gw, consumer, callback, **kw))
    assert got["oauth_callback_confirmed"] == "true" and set(got) == {
        "oauth_token",
        "oauth_token_secret",
        "oauth_callback_confirmed",
    }, got
    return Temporary(got["oauth_token"], got["oauth_token_secret"])


def access_token(
    gw: GatewayProcess,
    consumer: Consumer,
    temp: Temporary,
    verifier: str | None,
    **kw: Any,
) -> requests.Response:
    """``POST /oauth1/access_token`` (§2.3) signed with the temporary credentials."""
    oauth = {} if verifier is None else {"oauth_verifier": verifier}
    return access_signed(consumer, temp, oauth, host_of(gw), **kw).send(gw)


def access_signed(
    consumer: Consumer, temp: Temporary, oauth: dict[str, str], host: str, **kw: Any
) -> Signed:
    return sign(
        consumer,
        kw.pop("path", "/oauth1/access_token"),
        host=host,
        token=kw.pop("token", temp.token),
        token_secret=kw.pop("token_secret", temp.secret),
        oauth={**oauth, **kw.pop("oauth", {})},
        **kw,
    )


def consent_page(
    owner: ResourceOwner, token: str, username: str, password: str
) -> requests.Response:
    """Open ``/oauth1/authorize?oauth_token=`` and sign in if asked: the page that follows."""
    page = owner.go("/oauth1/authorize?" + urlencode({"oauth_token": token}))
    if page.status_code == 200 and forms(page.text) and forms(page.text)[0].action == "/login":
        page = owner.login(page, username, password)
    return page


def consent_form(owner: ResourceOwner, token: str, username: str, password: str) -> Form:
    page = consent_page(owner, token, username, password)
    assert page.status_code == 200, (page.status_code, page.text[:300])
    (form,) = forms(page.text)
    assert form.action == "/oauth1/authorize", page.text[:300]
    return form


def decide(
    owner: ResourceOwner, form: Form, scopes: Iterable[str] | None = None, decision: str = "allow"
) -> requests.Response:
    chosen = [v for _, v, checked in form.checkboxes if checked] if scopes is None else scopes
    return owner.submit(form, {"scope": list(chosen), "decision": decision})


def verifier_from(r: requests.Response, consumer: Consumer, token: str) -> str:
    """The verifier the authorization gave: from the callback redirect (§2.2: appended to the
    callback's query, with oauth_token), or the oob page."""
    if consumer.callback is None or r.status_code == 200:
        assert r.status_code == 200, (r.status_code, r.text[:300])
        return r.text.split('<code id="verifier">')[1].split("</code>")[0]
    assert r.status_code == 303, (r.status_code, r.text[:300])
    location = r.headers["location"]
    assert location.startswith(consumer.callback + ("&" if "?" in consumer.callback else "?"))
    got = parse_qs(urlsplit(location).query)
    assert got["oauth_token"] == [token] and len(got["oauth_verifier"]) == 1, got
    return got["oauth_verifier"][0]


@dataclass(frozen=True)
class Authorized:
    temp: Temporary
    verifier: str


def authorized(
    gw: GatewayProcess,
    consumer: Consumer,
    owner: ResourceOwner,
    username: str,
    password: str,
    *,
    scopes: Iterable[str] | None = None,
    callback: str | None = None,
    scope: str | None = None,
) -> Authorized:
    """The first two legs: temporary credentials, authorized by ``username``."""
    temp = temporary(gw, consumer, callback, scope=scope)
    form = consent_form(owner, temp.token, username, password)
    r = decide(owner, form, scopes)
    return Authorized(temp, verifier_from(r, consumer, temp.token))


@dataclass(frozen=True)
class TokenCredentials:
    token: str
    secret: str


def three_legged(
    gw: GatewayProcess,
    consumer: Consumer,
    owner: ResourceOwner,
    username: str,
    password: str,
    **kw: Any,
) -> TokenCredentials:
    done = authorized(gw, consumer, owner, username, password, **kw)
    got = form_answer(access_token(gw, consumer, done.temp, done.verifier))
    assert set(got) == {"oauth_token", "oauth_token_secret"}, got
    return TokenCredentials(got["oauth_token"], got["oauth_token_secret"])


def protected(
    gw: GatewayProcess, consumer: Consumer, creds: TokenCredentials, path: str = "/notes/1"
) -> requests.Response:
    """A GET of a protected route signed with token credentials."""
    return sign(
        consumer,
        path,
        host=host_of(gw),
        method="GET",
        token=creds.token,
        token_secret=creds.secret,
        content_type=None,
    ).send(gw)
