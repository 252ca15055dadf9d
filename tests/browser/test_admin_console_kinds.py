"""The admin console's records pages in Chromium, on a real admin listener (uvicorn, as
``restguard serve`` runs it): create an OAuth 2.0 client (its secret shown once), revoke it,
and find both changes on the audit log page with its "admin changes only" filter. No page
breaks its Content-Security-Policy. Screenshots go to tests/artifacts/browser/."""

from __future__ import annotations

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

#: (a page replaced while a wait reads it: read again, as a person would)
STALE = (StaleElementReferenceException,)


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[tuple[GatewayProcess, str]]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("browser-admin-kinds") / "gw", upstream)
    admin_key = bootstrap_admin_key(gateway.config)["key"]
    gateway.start()
    yield gateway, admin_key
    gateway.stop()


def test_create_and_revoke_an_oauth2_client_and_find_both_in_the_audit_log(
    browser: webdriver.Chrome, gw: tuple[GatewayProcess, str], screenshot: Screenshot
) -> None:
    gateway, admin_key = gw
    wait = WebDriverWait(browser, 10, ignored_exceptions=STALE)
    browser.get(gateway.admin_url + "/login")
    wait.until(lambda d: d.find_elements(By.ID, "key"))
    browser.find_element(By.ID, "key").send_keys(admin_key + Keys.ENTER)
    wait.until(lambda d: d.find_elements(By.ID, "denied-total"))
    assert csp_violations(browser) == []

    browser.find_element(By.LINK_TEXT, "OAuth 2.0 clients").click()
    wait.until(lambda d: d.find_elements(By.ID, "clients"))
    assert csp_violations(browser) == []
    screenshot("clients")
    browser.find_element(By.ID, "name").send_keys("browser client")
    browser.find_element(By.ID, "scopes").send_keys("notes:read")
    browser.find_element(By.ID, "grant_client_credentials").click()
    browser.find_element(By.XPATH, "//button[text()='Create client']").click()
    wait.until(lambda d: d.find_elements(By.ID, "new-secret"))
    secret = browser.find_element(By.ID, "new-secret").text
    assert len(secret) >= 32
    assert csp_violations(browser) == []
    screenshot("created")

    browser.find_element(By.LINK_TEXT, "OAuth 2.0 clients").click()  # a GET of the listing
    wait.until(
        lambda d: "browser client" in d.page_source and not d.find_elements(By.ID, "new-secret")
    )
    assert secret not in browser.page_source  # shown once
    assert csp_violations(browser) == []
    browser.find_element(By.XPATH, "//button[@aria-label='Revoke browser client']").click()
    # (the page is replaced: read its source, not an element that may go stale)
    wait.until(lambda d: " revoked.</p>" in d.page_source)
    assert not browser.find_elements(By.XPATH, "//button[@aria-label='Revoke browser client']")
    assert csp_violations(browser) == []
    screenshot("revoked")

    browser.find_element(By.LINK_TEXT, "Audit log").click()
    wait.until(lambda d: d.find_elements(By.ID, "admin"))
    assert csp_violations(browser) == []
    browser.find_element(By.ID, "admin").click()
    browser.find_element(By.XPATH, "//button[text()='Filter']").click()
    # (the click starts a navigation: wait for the filtered page before reading anything, and
    # read the page's source, a snapshot, not an element's text: an element found just as a
    # page is replaced fails as stale, or in Chromium as "Node ... does not belong to the
    # document", which is not a StaleElementReferenceException)
    wait.until(lambda d: "admin=true" in d.current_url and d.find_elements(By.ID, "audit"))

    def both_listed(d: webdriver.Chrome) -> bool:
        source = d.page_source
        if "oauth2-client.create" in source and "oauth2-client.revoke" in source:
            return True
        d.refresh()  # a GET with the filter: lines reach the file within a quarter second
        return False

    WebDriverWait(browser, 10, poll_frequency=0.5, ignored_exceptions=STALE).until(both_listed)
    assert "admin=true" in browser.current_url
    table = browser.find_element(By.ID, "audit").text
    assert table.index("oauth2-client.revoke") < table.index("oauth2-client.create")  # newest
    assert "(console)" in table and secret not in browser.page_source
    assert csp_violations(browser) == []
    screenshot("audit")
