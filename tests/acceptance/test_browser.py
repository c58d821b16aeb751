"""The web console in a real browser: Debian's Chromium driven by Playwright, against a real console.

The page (opsconsole/static/ui) logs in with the one-time ticket link, runs a REPL in
xterm.js over the websocket and fetches text dumps, all under the server's strict CSP; any
CSP violation the page causes fails the test. The screenshot of the terminal lands in
test-artifacts/terminal.png.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from opsconsole.console import Console
from testkit import REPO
from testkit.support import FakeClock, Operator, call, login_token

ROOT = REPO
ARTIFACTS = ROOT / "test-artifacts"
VENDOR = ROOT / "opsconsole" / "static" / "vendor"
CHROMIUM = Path("/usr/bin/chromium")
# Playwright's own browser builds cannot be downloaded here; Debian's Chromium is used, with
# the switches that keep it from calling home (this machine refuses those connections).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000
USED_LINK = "This link is used or expired; run `opsconsole open URL` again."

# Collects every CSP violation the page reports, before any of the page's own scripts run.
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`);
});
"""


def chromium_or_skip() -> Path:
    """Debian's Chromium; its absence skips loudly on a laptop and fails in CI."""
    if CHROMIUM.exists():
        return CHROMIUM
    reason = (
        f"!!! BROWSER TEST NOT RUN: {CHROMIUM} is missing. Install it with "
        "`apt-get install chromium` (.ci/run does) !!!"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = chromium_or_skip()
    missing = [f for f in ("xterm.js", "xterm.css", "addon-fit.js") if not (VENDOR / f).is_file()]
    assert not missing, f"{VENDOR} lacks {missing}: reinstall (`pip install -e .`) to run build_web"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page whose CSP violations, console errors and uncaught exceptions are kept."""

    def __init__(self, browser: Browser) -> None:
        self.page: Page = browser.new_context().new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.page.add_init_script(CSP_PROBE)
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def csp_violations(self) -> list[str]:
        reported = self.page.evaluate("window.__cspViolations")
        logged = [m for m in self.console_errors if "Content Security Policy" in m]
        return [*map(str, reported), *logged]

    def screen_rows(self) -> list[str]:
        """The terminal's visible rows as text (the DOM renderer draws one div per row)."""
        return [row.rstrip() for row in self.page.locator(".xterm-rows > div").all_inner_texts()]

    def wait_for_row(self, predicate_text: str, timeout: float = TIMEOUT_MS / 1000) -> list[str]:
        """Wait until some row, stripped, equals ``predicate_text``; returns the rows."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.screen_rows()
            if any(row.strip() == predicate_text for row in rows):
                return rows
            if time.monotonic() > deadline:
                pytest.fail(f"no terminal row reads {predicate_text!r}; the screen:\n" + "\n".join(rows))
            self.page.wait_for_timeout(100)


def ticket_url(console: Console, op: Operator, clock: FakeClock) -> str:
    """What `opsconsole open URL` does: a bearer login, then a one-time link."""
    token = login_token(console.url, op, clock())
    status, body = call(console.url, "POST", "/ops/auth/ticket", token=token)
    assert status == 200, body
    assert body["url"] == f"{console.url}/ops/ui/#ticket={body['ticket']}"
    return str(body["url"])


def test_terminal_and_dumps_in_chromium(
    browser: Browser, console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    w = Watched(browser)
    page = w.page
    page.goto(ticket_url(console, operators["alice"], clock))

    # Redeemed: the header names the operator and the ticket left the address bar.
    expect(page.locator("#who")).to_have_text("alice (operator)")
    assert "ticket" not in page.url
    expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator(".xterm-rows")).not_to_be_empty()

    page.locator("#terminal .xterm").click()
    page.keyboard.type("1+1")
    page.keyboard.press("Enter")
    rows = w.wait_for_row("2")
    assert any("1+1" in row for row in rows), rows

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "terminal.png"))

    page.get_by_role("button", name="threads", exact=True).click()
    expect(page.locator("#dump-output")).to_contain_text("MainThread")
    expect(page.locator("#dump-title")).to_contain_text("threads")

    assert w.csp_violations() == []
    assert w.page_errors == []
    assert w.console_errors == []

    # Log out: the hint replaces the console, and the cookie no longer works.
    page.get_by_role("button", name="log out").click()
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#console")).to_be_hidden()
    page.reload()
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login")).to_contain_text("opsconsole open URL")


def test_a_used_link_shows_the_login_hint(
    browser: Browser, console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    url = ticket_url(console, operators["alice"], clock)
    first = Watched(browser)
    first.page.goto(url)
    expect(first.page.locator("#who")).to_have_text("alice (operator)")

    second = Watched(browser)  # a fresh context: no cookie, only the spent ticket
    second.page.goto(url)
    expect(second.page.locator("#login-lead")).to_have_text(USED_LINK)
    expect(second.page.locator("#console")).to_be_hidden()
    assert "ticket" not in second.page.url
    assert second.csp_violations() == []
    assert second.page_errors == []
