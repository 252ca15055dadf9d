"""OAuth 1.0a's resource-owner authorization (RFC 5849 §2.2) in Chromium: a consumer (driven by
requests-oauthlib) sends the person to ``/oauth1/authorize``; they sign in with the keyboard,
untick the write scope, click Allow and land on the consumer's callback with ``oauth_token`` and
``oauth_verifier`` -- the redirect after the form POST is allowed by the page's ``form-action``
(Chromium enforces it on redirects). Then they see and revoke the connection on
``/oauth1/tokens``. No page breaks its Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from requests_oauthlib import OAuth1Session
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from restguard.credentials.oauth1_consumers import new_consumer
from restguard.keys.sealing import open_sealer
from tests.browser.support import Screenshot, csp_violations, landing_page
from tests.harness import GatewayProcess, RecordingUpstream
from tests.oauth2_support import _store_call, add_user

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["oauth1"]
"""


@pytest.fixture(scope="module")
def callback() -> Iterator[str]:
    """The consumer's callback: a page on 127.0.0.1 that says the person is back."""
    with landing_page("/oauth1/cb", "Back at the consumer") as url:
        yield url


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("browser-oauth1") / "gw", upstream, routes=ROUTES
    ).start()
    add_user(gateway, "alice", "correct horse battery", "notes:read", "notes:write")
    yield gateway
    gateway.stop()


def test_authorize_a_subset_land_on_the_callback_then_revoke(
    browser: webdriver.Chrome, gw: GatewayProcess, callback: str, screenshot: Screenshot
) -> None:
    record, secret = new_consumer(
        "Notes sync",
        ["notes:read", "notes:write"],
        callback=callback,
        now=datetime.now(UTC),
        sealer=open_sealer(gw.settings.base_dir / gw.settings.master_key_path),
    )
    _store_call(gw, lambda store: store.oauth1_consumers.insert(record))
    oauth = OAuth1Session(record.consumer_key, client_secret=secret, callback_uri=callback)
    oauth.fetch_request_token(gw.url + "/oauth1/request_token")
    browser.get(oauth.authorization_url(gw.url + "/oauth1/authorize"))

    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.NAME, "password"))
    assert "Notes sync" in browser.find_element(By.TAG_NAME, "h1").text
    assert csp_violations(browser) == []
    browser.switch_to.active_element.send_keys("alice")
    browser.switch_to.active_element.send_keys(Keys.TAB)
    browser.switch_to.active_element.send_keys("correct horse battery" + Keys.ENTER)

    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.NAME, "decision"))
    boxes = {b.get_attribute("value"): b for b in browser.find_elements(By.NAME, "scope")}
    assert set(boxes) == {"notes:read", "notes:write"}
    boxes["notes:write"].click()
    screenshot("consent")
    assert csp_violations(browser) == []
    browser.find_element(By.CSS_SELECTOR, "button[name=decision][value=allow]").click()

    WebDriverWait(browser, 10).until(lambda d: d.current_url.startswith(callback))
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "landed"))
    landed = parse_qs(urlsplit(browser.current_url).query)
    assert set(landed) == {"oauth_token", "oauth_verifier"}
    oauth.parse_authorization_response(browser.current_url)
    tokens = oauth.fetch_access_token(gw.url + "/oauth1/access_token")
    assert oauth.get(gw.url + "/notes/1").status_code == 200

    browser.get(gw.url + "/oauth1/tokens")
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.TAG_NAME, "h1"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Connected applications"
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "Notes sync" in text and "read your notes" in text
    assert "read and change your notes" not in text  # (not granted)
    screenshot("connections")
    assert csp_violations(browser) == []
    browser.find_element(By.XPATH, "//button[text()='Revoke']").click()
    WebDriverWait(browser, 10).until(lambda d: "no longer has access" in d.page_source)
    assert tokens["oauth_token"] not in browser.page_source
    assert csp_violations(browser) == []
