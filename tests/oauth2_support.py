"""Helpers for the authorization-code tests: clients and users written to a gateway's store,
and a resource owner driving the login and consent pages over HTTP (requests, cookies kept),
the way a browser without JavaScript would."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from restguard.oauth2.clients import new_client
from restguard.oauth2.users import new_user
from restguard.store.sql import open_store
from tests.harness import GatewayProcess

REDIRECT = "http://127.0.0.1:9/cb"


def _store_call(gw: GatewayProcess, work: Any) -> Any:
    async def run() -> Any:
        store = open_store(gw.settings.database_url)
        try:
            return await work(store)
        finally:
            store.close()

    return asyncio.run(run())


@dataclass
class Client:
    id: str
    secret: str | None
    redirect_uri: str


def add_client(
    gw: GatewayProcess,
    *scopes: str,
    public: bool = False,
    grants: Iterable[str] = ("authorization_code", "refresh_token"),
    redirect_uris: Iterable[str] = (REDIRECT,),
    name: str = "Notes app",
) -> Client:
    uris = tuple(redirect_uris)
    record, secret = new_client(
        name=name,
        scopes=scopes,
        grants=tuple(grants),
        redirect_uris=uris,
        public=public,
        now=datetime.now(UTC),
    )
    _store_call(gw, lambda store: store.oauth2_clients.insert(record))
    return Client(record.client_id, secret, uris[0] if uris else "")


def add_user(gw: GatewayProcess, username: str, password: str, *scopes: str) -> None:
    record = new_user(username, password, scopes, now=datetime.now(UTC))
    _store_call(gw, lambda store: store.users.insert(record))


def pkce() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Form:
    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)
    checkboxes: list[tuple[str, str, bool]] = field(default_factory=list)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # name, value, text


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._button: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms:
            kind = a.get("type", "text")
            if kind == "checkbox":
                self.forms[-1].checkboxes.append((a["name"], a["value"], "checked" in a))
            elif "name" in a:
                self.forms[-1].inputs[a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms:
            self._button = [a.get("name", ""), a.get("value", ""), ""]

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button[2] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None and self.forms:
            name, value, text = self._button
            self.forms[-1].buttons.append((name, value, text.strip()))
            self._button = None


def forms(page: str) -> list[Form]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms


class ResourceOwner:
    """A user at a browser: follows the gateway's own redirects, stops at the client's."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.gw = gw
        self.http = requests.Session()

    def go(self, url: str) -> requests.Response:
        """GET ``url`` and follow redirects within the gateway; return the last response (a
        page, or the redirect to the client)."""
        response = self.http.get(urljoin(self.gw.url, url), allow_redirects=False, timeout=10)
        return self._follow(response)

    def _follow(self, response: requests.Response) -> requests.Response:
        while response.status_code in (302, 303) and self._ours(response.headers["location"]):
            response = self.http.get(
                urljoin(self.gw.url, response.headers["location"]),
                allow_redirects=False,
                timeout=10,
            )
        return response

    def _ours(self, location: str) -> bool:
        return location.startswith("/") or location.startswith(self.gw.url + "/")

    def submit(self, form: Form, fields: dict[str, Any]) -> requests.Response:
        data = {**form.inputs, **fields}
        response = self.http.post(
            urljoin(self.gw.url, form.action), data=data, allow_redirects=False, timeout=10
        )
        return self._follow(response)

    def login(self, page: requests.Response, username: str, password: str) -> requests.Response:
        (form,) = forms(page.text)
        assert form.action == "/login"
        return self.submit(form, {"username": username, "password": password})

    def consent(
        self, page: requests.Response, scopes: Iterable[str] | None = None, decision: str = "allow"
    ) -> requests.Response:
        (form,) = forms(page.text)
        assert form.action == "/consent"
        chosen = [v for _, v, checked in form.checkboxes if checked] if scopes is None else scopes
        return self.submit(form, {"scope": list(chosen), "decision": decision})

    def authorize(
        self,
        client: Client,
        username: str,
        password: str,
        *,
        scope: str,
        state: str = "xyz",
        challenge: str,
        grant: Iterable[str] | None = None,
    ) -> dict[str, list[str]]:
        """The whole front channel: authorize, sign in if asked, consent if asked; the query of
        the redirect to the client."""
        query = {
            "response_type": "code",
            "client_id": client.id,
            "redirect_uri": client.redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        page = self.go("/oauth2/authorize?" + requests.compat.urlencode(query))
        if page.status_code == 200 and forms(page.text)[0].action == "/login":
            page = self.login(page, username, password)
        if page.status_code == 200 and forms(page.text)[0].action == "/consent":
            page = self.consent(page, grant)
        return redirect_query(page, client)

    # --- the device flow (RFC 8628 §3.3) ---------------------------------------------------
    def enter_user_code(self, page: requests.Response, user_code: str) -> requests.Response:
        (form,) = forms(page.text)
        assert form.action == "/device" and "user_code" in form.inputs, page.text[:300]
        return self.submit(form, {"user_code": user_code})

    def decide_device(
        self, page: requests.Response, scopes: Iterable[str] | None = None, decision: str = "allow"
    ) -> requests.Response:
        (form,) = forms(page.text)
        assert form.action == "/device" and "device" in form.inputs, page.text[:300]
        chosen = [v for _, v, checked in form.checkboxes if checked] if scopes is None else scopes
        return self.submit(form, {"scope": list(chosen), "decision": decision})

    def approve_device(
        self,
        url: str,
        username: str,
        password: str,
        *,
        user_code: str | None = None,
        scopes: Iterable[str] | None = None,
        decision: str = "allow",
    ) -> requests.Response:
        """Open ``url`` (``verification_uri`` or ``..._complete``), sign in if asked, enter
        ``user_code`` (or keep the prefilled one), confirm: the last page."""
        page = self.go(url)
        if page.status_code == 200 and forms(page.text)[0].action == "/login":
            page = self.login(page, username, password)
        assert page.status_code == 200, (page.status_code, page.text[:300])
        if user_code is None:
            user_code = forms(page.text)[0].inputs["user_code"]
        page = self.enter_user_code(page, user_code)
        assert page.status_code == 200, (page.status_code, page.text[:300])
        return self.decide_device(page, scopes, decision)


def device_authorization(
    gw: GatewayProcess, client: Client, scope: str | None = None
) -> dict[str, Any]:
    """``POST /oauth2/device_authorization`` (RFC 8628 §3.1) with requests."""
    data = {"client_id": client.id} if client.secret is None else {}
    if scope is not None:
        data["scope"] = scope
    auth = None if client.secret is None else (client.id, client.secret)
    r = requests.post(gw.url + "/oauth2/device_authorization", data=data, auth=auth, timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def redirect_query(response: requests.Response, client: Client) -> dict[str, list[str]]:
    assert response.status_code == 303, (response.status_code, response.text[:300])
    location = response.headers["location"]
    assert location.startswith(client.redirect_uri + "?"), location
    return parse_qs(urlsplit(location).query)
