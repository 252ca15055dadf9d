"""A person in Chromium (headless, no JavaScript needed by the pages): the client sends them to
restguard's authorization endpoint; they sign in with the keyboard, untick the write scope on
the consent page, click Allow, and land on the client's redirect URI with a code that redeems
for a read-only token. No page breaks its Content-Security-Policy. Screenshots of the login
page, the consent page and the landing page are kept in tests/artifacts/browser/."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.support import Screenshot, csp_violations, landing_page
from tests.harness import GatewayProcess, RecordingUpstream
from tests.oauth2_support import add_client, add_user, pkce

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["oauth2"]
"""


@pytest.fixture(scope="module")
def app() -> Iterator[str]:
    """The client's redirect URI: a page on 127.0.0.1 that says it received the code."""
    with landing_page("/callback", "Back at the app") as url:
        yield url


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("browser-oauth2") / "gw", upstream, routes=ROUTES
    ).start()
    add_user(gateway, "alice", "correct horse battery", "notes:read", "notes:write")
    yield gateway
    gateway.stop()


def test_sign_in_consent_to_a_subset_and_land_with_a_code(
    browser: webdriver.Chrome, gw: GatewayProcess, app: str, screenshot: Screenshot
) -> None:
    client = add_client(gw, "notes:read", "notes:write", public=True, redirect_uris=[app])
    verifier, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": app,
        "scope": "notes:read notes:write",
        "state": "s t&a=te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    browser.get(gw.url + "/oauth2/authorize?" + urlencode(query))

    # The login page: the username field has the focus (autofocus), labels name both fields.
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.NAME, "password"))
    assert browser.switch_to.active_element.get_attribute("name") == "username"
    labels = {e.text for e in browser.find_elements(By.TAG_NAME, "label")}
    assert {"Username", "Password"} <= labels
    screenshot("login")
    assert csp_violations(browser) == []
    browser.switch_to.active_element.send_keys("alice")
    browser.switch_to.active_element.send_keys(Keys.TAB)
    browser.switch_to.active_element.send_keys("correct horse battery" + Keys.ENTER)

    # The consent page: both scopes offered in plain words and ticked; untick the write one.
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.NAME, "decision"))
    boxes = {b.get_attribute("value"): b for b in browser.find_elements(By.NAME, "scope")}
    assert set(boxes) == {"notes:read", "notes:write"}
    assert all(b.is_selected() for b in boxes.values())
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "read your notes" in text and "read and change your notes" in text
    boxes["notes:write"].click()
    screenshot("consent")
    assert csp_violations(browser) == []
    allow = browser.find_element(By.CSS_SELECTOR, "button[name=decision][value=allow]")
    assert allow.text == "Allow"
    allow.click()

    # Back at the app, with a code, the state untouched and the issuer (RFC 9207).
    WebDriverWait(browser, 10).until(lambda d: d.current_url.startswith(app))
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "landed"))
    screenshot("landed")
    landed = parse_qs(urlsplit(browser.current_url).query)
    assert landed["state"] == ["s t&a=te"]
    assert landed["iss"] == [gw.settings.server.public_url]
    assert csp_violations(browser) == []

    token = httpx.post(
        gw.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": landed["code"][0],
            "redirect_uri": app,
            "client_id": client.id,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "notes:read"
    bearer = {"authorization": "Bearer " + token.json()["access_token"]}
    assert httpx.get(gw.url + "/notes/1", headers=bearer).status_code == 200
