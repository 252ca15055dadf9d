"""The admin console in Chromium, on a real admin listener (uvicorn, as ``restguard serve``
runs it): sign in with the bootstrap admin key, create an API key and see it once, use it at
the gateway, revoke it, and watch the dashboard count the denied request. No page breaks its
Content-Security-Policy. Screenshots go to tests/artifacts/browser/."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from restguard.cli.init import bootstrap_admin_key
from tests.browser.support import Screenshot, csp_violations
from tests.harness import GatewayProcess, RecordingUpstream

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET"]
scopes = ["notes:read"]
"""

#: (a page replaced while a wait reads it: read again, as a person would)
STALE = (StaleElementReferenceException,)


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[tuple[GatewayProcess, str]]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("browser-admin") / "gw", upstream, routes=ROUTES
    )
    admin_key = bootstrap_admin_key(gateway.config)["key"]
    gateway.start()
    yield gateway, admin_key
    gateway.stop()


def status_of(url: str, key: str) -> int:
    request = urllib.request.Request(url, headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def text_of(browser: webdriver.Chrome, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def test_sign_in_create_see_once_revoke_and_watch_the_dashboard(
    browser: webdriver.Chrome, gw: tuple[GatewayProcess, str], screenshot: Screenshot
) -> None:
    gateway, admin_key = gw
    wait = WebDriverWait(browser, 10, ignored_exceptions=STALE)
    browser.get(gateway.admin_url + "/")
    wait.until(lambda d: d.find_elements(By.ID, "key"))
    assert browser.current_url == gateway.admin_url + "/login"
    assert csp_violations(browser) == []
    screenshot("login")
    browser.find_element(By.ID, "key").send_keys(admin_key + Keys.ENTER)
    wait.until(lambda d: d.find_elements(By.ID, "denied-total"))
    assert csp_violations(browser) == []
    denied_before = int(text_of(browser, "denied-total"))
    cookies = {c["name"]: c for c in browser.get_cookies()}
    session = cookies["restguard_admin"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"

    browser.find_element(By.LINK_TEXT, "API keys").click()
    wait.until(lambda d: d.find_elements(By.ID, "name"))
    browser.find_element(By.ID, "name").send_keys("browser test")
    browser.find_element(By.ID, "scopes").send_keys("notes:read")
    browser.find_element(By.XPATH, "//button[text()='Create key']").click()
    wait.until(lambda d: d.find_elements(By.ID, "new-secret"))
    key = text_of(browser, "new-secret")
    assert key.startswith("rg_ak_")
    assert csp_violations(browser) == []
    screenshot("created")
    assert status_of(gateway.url + "/notes/1", key) == 200

    browser.refresh()  # the GET of the listing: the key is not shown again
    wait.until(lambda d: d.find_elements(By.ID, "apikeys"))
    assert key not in browser.page_source
    browser.find_element(By.XPATH, "//button[@aria-label='Revoke browser test']").click()
    # (the page is replaced: read its source, not an element that may go stale)
    wait.until(lambda d: " revoked.</p>" in d.page_source)
    screenshot("revoked")
    deadline = time.monotonic() + 5  # the key cache holds a record up to a second
    while status_of(gateway.url + "/notes/1", key) != 401:
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.2)

    browser.find_element(By.LINK_TEXT, "Dashboard").click()
    wait.until(lambda d: d.find_elements(By.ID, "denied-total"))
    assert int(text_of(browser, "denied-total")) > denied_before
    assert browser.find_elements(By.CSS_SELECTOR, "svg[role=img]")
    assert csp_violations(browser) == []
    screenshot("dashboard")

    browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
    wait.until(lambda d: d.find_elements(By.ID, "key"))
    browser.get(gateway.admin_url + "/apikeys")
    wait.until(lambda d: d.find_elements(By.ID, "key"))
    assert browser.current_url == gateway.admin_url + "/login"
