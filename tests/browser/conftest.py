"""Fixtures for the browser tests: one headless Chromium per session, screenshots on disk.

``browser``     -- session-scoped ``selenium.webdriver.Chrome`` (headless Debian Chromium,
                   fresh profile); every test starts on about:blank with no cookies and an
                   empty browser log.
``screenshots`` -- the directory PNG artifacts go to: tests/artifacts/browser/ (gitignored).
``screenshot``  -- ``screenshot(suffix="") -> Path``: saves the browser's viewport there,
                   named after the running test.
Helpers (``csp_violations``, ``save_screenshot``) live in tests/browser/support.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from tests.browser.support import (
    ARTIFACTS,
    Screenshot,
    browser_log,
    missing_binaries,
    save_screenshot,
    start_chromium,
)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the session; quit at teardown."""
    missing = missing_binaries()
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: run scripts/test as root, or "
            "apt-get install chromium chromium-driver"
        )
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def _fresh_page(request: pytest.FixtureRequest) -> None:
    """Before each test that uses ``browser``: about:blank, no cookies, an empty log."""
    if "browser" not in request.fixturenames:
        return
    driver: webdriver.Chrome = request.getfixturevalue("browser")
    driver.get("about:blank")
    driver.delete_all_cookies()
    browser_log(driver)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """tests/artifacts/browser/, created on demand."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def screenshot(
    browser: webdriver.Chrome, screenshots: Path, request: pytest.FixtureRequest
) -> Screenshot:
    """``screenshot(suffix)`` saves the viewport as <test name>[-suffix].png."""

    def take(suffix: str = "") -> Path:
        name = request.node.name + (f"-{suffix}" if suffix else "")
        return save_screenshot(browser, screenshots, name)

    return take
