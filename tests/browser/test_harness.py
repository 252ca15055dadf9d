"""The browser harness end to end, against a tiny stdlib HTTP server with a strict CSP.

The form page allows nothing but its own inline style (by hash) and posting to itself, as
restguard's login and consent pages will: a typed value must arrive by keyboard submission
with no CSP report. The script page's inline script is not allowed, so csp_violations must
report it (the helper can fail).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.support import Screenshot, csp_violations

STYLE = "body { font-family: sans-serif; margin: 2em; } label { display: block; }"
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action 'self'"

FORM_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title>
<style>{STYLE}</style></head>
<body><form method="post" action="/submit">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="off">
<button type="submit">Continue</button>
</form></body></html>
"""
DONE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Received</title></head>
<body><p id="done">received</p></body></html>
"""
SCRIPT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Script</title></head>
<body><p id="p">static</p><script>document.getElementById("p").textContent = "ran";</script>
</body></html>
"""


@dataclass
class FormSite:
    url: str
    posted: list[dict[str, list[str]]] = field(default_factory=list)


@pytest.fixture(scope="module")
def site() -> Iterator[FormSite]:
    """A stdlib HTTP server on 127.0.0.1 (ephemeral port) in a thread; records POST bodies."""
    posted: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Security-Policy", CSP)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            pages = {"/form": FORM_PAGE, "/script": SCRIPT_PAGE}
            if self.path in pages:
                self._send(200, pages[self.path])
            else:
                self._send(404, "")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            posted.append(parse_qs(self.rfile.read(length).decode()))
            self._send(200, DONE_PAGE)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FormSite(f"http://127.0.0.1:{server.server_address[1]}", posted)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_form_typed_and_submitted_with_enter_under_a_strict_csp(
    browser: webdriver.Chrome, site: FormSite, screenshot: Screenshot
) -> None:
    browser.get(f"{site.url}/form")
    field_ = browser.find_element(By.ID, "username")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=username]").text == "Username"
    # The hashed inline style applied (unhashed, CSP would leave "Times New Roman").
    body = browser.find_element(By.TAG_NAME, "body")
    assert body.value_of_css_property("font-family") == "sans-serif"
    field_.send_keys("alice" + Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "done"))

    assert site.posted == [{"username": ["alice"]}]
    png = screenshot()
    assert png.is_file() and png.stat().st_size > 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert csp_violations(browser) == []


def test_csp_violations_reports_a_blocked_inline_script(
    browser: webdriver.Chrome, site: FormSite
) -> None:
    browser.get(f"{site.url}/script")
    assert browser.find_element(By.ID, "p").text == "static"  # the script did not run
    violations = csp_violations(browser)
    assert len(violations) == 1, violations
    assert "inline script" in violations[0] and "script-src" in violations[0]
