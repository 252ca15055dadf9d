"""Browser-test helpers: start Debian's headless Chromium, save screenshots, read CSP reports.

Selenium is pointed at ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` by path, so its
Selenium Manager (which would look up, and may download, a browser and a driver) never runs:
``DriverFinder`` skips it when the ``Service`` names the driver, and ``start_chromium`` also
replaces its entry point with one that fails, so a future Selenium that consulted it anyway
would fail the tests instead of touching the network. ``scripts/test`` installs both packages.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol
from unittest import mock

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.selenium_manager import SeleniumManager

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGE_LOAD_TIMEOUT_S = 30
WINDOW_SIZE = (1200, 900)
# No background traffic, no first-run UI, no updates: the browser talks only to the pages
# a test opens. --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot
# start. --disable-dev-shm-usage: a container's /dev/shm is often 64 MB.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"


class Screenshot(Protocol):
    """The ``screenshot`` fixture: saves the viewport as <test name>[-suffix].png."""

    def __call__(self, suffix: str = "") -> Path: ...


def missing_binaries() -> list[str]:
    """The browser binaries that are not installed (scripts/test installs them)."""
    return [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]


def _selenium_manager_forbidden(*_args: object, **_kwargs: object) -> dict[str, str]:
    raise AssertionError(
        "Selenium Manager was asked for a browser or driver; tests/browser must name "
        f"{CHROMIUM} and {CHROMEDRIVER} instead"
    )


def start_chromium(user_data_dir: Path) -> webdriver.Chrome:
    """Headless Chromium with a fresh profile in ``user_data_dir`` and the browser log on."""
    # Selenium Manager's usage statistics: off, should anything ever start it.
    os.environ["SE_AVOID_STATS"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument(f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}")
    # Console messages (CSP violations among them) for csp_violations().
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER)
    with mock.patch.object(SeleniumManager, "binary_paths", _selenium_manager_forbidden):
        driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    return driver


def browser_log(driver: webdriver.Chrome) -> list[str]:
    """The console messages logged since the last call (chromedriver drains the log on read)."""
    entries: list[dict[str, object]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [str(entry["message"]) for entry in entries]


def csp_violations(driver: webdriver.Chrome) -> list[str]:
    """Console messages about the Content Security Policy since the last read of the log.

    Chromium logs one message per blocked script, style, image, form target... (156 says
    "<url> 2 Executing inline script violates the following Content Security Policy directive
    ..."; older releases "Refused to execute inline script because it violates the following
    Content Security Policy directive ..."). Reading drains the log, so a page's violations
    are counted once.
    """
    return [message for message in browser_log(driver) if "Content Security Policy" in message]


def save_screenshot(driver: webdriver.Chrome, directory: Path, name: str) -> Path:
    """Save the current viewport as ``directory/<name>.png`` (name made file-safe)."""
    directory.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "screenshot"
    path = directory / f"{safe}.png"
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"chromedriver could not save a screenshot to {path}")
    return path


@contextmanager
def landing_page(path: str, text: str) -> Iterator[str]:
    """A client's page on 127.0.0.1 (a redirect URI, a callback): every GET answers a page with
    ``<p id=landed>text</p>``. Yields its URL, ``http://127.0.0.1:PORT`` + ``path``."""
    body = f"<!doctype html><title>{text}</title><p id=landed>{text}</p>".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
