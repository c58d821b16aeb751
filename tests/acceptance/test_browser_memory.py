"""The memory dashboard in real Chromium against a real console: the operator starts the leak
detector from the page, the charts fill from its history (the RSS line is looked for in the
chart's pixels), the report table lists classes, and a CPU profile becomes a flame graph —
all under the strict CSP. The screenshot lands in test-artifacts/memory.png.
"""

from __future__ import annotations

import threading

from playwright.sync_api import Browser, expect

from opsconsole.console import Console
from testkit.support import FakeClock, Operator
from tests.acceptance.test_browser import ARTIFACTS, VENDOR, Watched, ticket_url
from tests.acceptance.test_browser import browser as browser  # noqa: PLC0414 - the fixture, shared

# Counts pixels of the RSS series' stroke colour (memory.js COLOURS[0], #58a6ff) in the chart.
RSS_PIXELS = """
() => {
  const canvas = document.querySelector("#chart-memory canvas");
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - 88) < 12 && Math.abs(data[i + 1] - 166) < 12 && Math.abs(data[i + 2] - 255) < 12) {
      n++;
    }
  }
  return n;
}
"""


class DashboardBallast:
    """Grown in this (the host) process while the page watches, so the charts move."""


def _grow(stop: threading.Event, kept: list[DashboardBallast]) -> None:
    while not stop.wait(0.05):
        kept.extend(DashboardBallast() for _ in range(200))


def test_memory_dashboard_in_chromium(
    browser: Browser, console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    assert (VENDOR / "uPlot.iife.min.js").is_file(), "reinstall (`pip install -e .`) to run build_web"
    w = Watched(browser)
    page = w.page
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(ticket_url(console, operators["alice"], clock))
    expect(page.locator("#who")).to_have_text("alice (operator)")

    page.get_by_role("button", name="memory", exact=True).click()
    expect(page.locator("#memory")).to_be_visible()
    expect(page.locator("#console")).to_be_hidden()
    expect(page.locator("#leak-state")).to_have_text("leak detector: off")

    stop = threading.Event()
    kept: list[DashboardBallast] = []
    grower = threading.Thread(target=_grow, args=(stop, kept), name="host-grower", daemon=True)
    grower.start()
    try:
        page.locator("#leak-interval").fill("1")
        page.get_by_role("button", name="start detector").click()
        expect(page.locator("#leak-state")).to_contain_text("sampling every 1 s")
        page.wait_for_function("() => Number(document.getElementById('chart-memory').dataset.samples) >= 4")
        page.wait_for_function("() => Number(document.getElementById('chart-types').dataset.samples) >= 4")
    finally:
        stop.set()
        grower.join(5)
    assert page.evaluate(RSS_PIXELS) > 50, "the RSS line is not drawn"
    expect(page.locator("#leak-growth tbody tr").first).to_be_visible()
    assert f"{__name__}.DashboardBallast" in page.locator("#leak-growth tbody").inner_text()
    expect(page.locator("#chart-types .u-legend")).to_contain_text("DashboardBallast")

    page.locator("#flame-seconds").fill("1")
    page.get_by_role("button", name="profile", exact=True).click()
    page.wait_for_function("() => Number(document.getElementById('flame').dataset.frames || 0) > 1")
    expect(page.locator("#flame-state")).to_contain_text("samples")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "memory.png"), full_page=True)

    page.get_by_role("button", name="stop detector").click()
    expect(page.locator("#leak-state")).to_contain_text("stopped")
    assert not console.diagnostics.leak_detector.running
    page.get_by_role("button", name="terminal", exact=True).click()
    expect(page.locator("#console")).to_be_visible()

    assert w.csp_violations() == []
    assert w.page_errors == []
    assert w.console_errors == []


def test_a_link_with_view_memory_opens_on_the_dashboard(
    browser: Browser, console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    # README "The memory dashboard": what `opsconsole open URL --view memory` prints, the
    # one-time link plus `&view=memory`
    w = Watched(browser)
    page = w.page
    page.goto(ticket_url(console, operators["alice"], clock) + "&view=memory")
    expect(page.locator("#who")).to_have_text("alice (operator)")
    expect(page.locator("#memory")).to_be_visible()
    expect(page.locator("#console")).to_be_hidden()
    expect(page.get_by_role("button", name="memory", exact=True)).to_have_attribute("aria-pressed", "true")
    assert "ticket=" not in page.url  # the single-use ticket left the address bar all the same
    assert w.page_errors == [] and w.csp_violations() == []
