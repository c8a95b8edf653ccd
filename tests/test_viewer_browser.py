"""The viewer's page in a real headless browser: Debian's chromium (``.ci/run`` installs it), driven by
Playwright. A separate process logs through the ``viewer`` exporter; the page must show its events live, filter
them, and show one event's data and stack."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evlog.viewer import ViewerServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)"
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

APP = """
import evlog

evlog.configure(exporters={{"viewer": {{"url": {url!r}}}}})
for i in range(5):
    evlog.log_event("page_view", category="ui", message=f"page {{i}}", data={{"page": f"/p/{{i}}"}})
evlog.log_event("cart_warning", level="warning", category="shop", message="cart nearly full")
evlog.log_event("debug_tick", level="debug", category="internal")


def charge_card(order):
    raise RuntimeError("card declined")


try:
    charge_card(42)
except RuntimeError:
    evlog.capture_exception(data={{"order_id": 42, "amount": "19.99"}}, user=evlog.User(id="user-7"))
assert evlog.flush(10)
"""


@pytest.fixture
def viewer() -> Iterator[ViewerServer]:
    with ViewerServer(port=0) as server:
        yield server


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        # A fresh profile each time (Playwright passes it as --user-data-dir).
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, viewport={"width": 1400, "height": 900}
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def _log_from_another_process(url: str, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP.format(url=url)))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_the_page_shows_filters_and_details_events_live(viewer: ViewerServer, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto(viewer.url)
    expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    _log_from_another_process(viewer.url, tmp_path)
    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(8, timeout=10_000)

    page.select_option("#filter-level", "warning")
    expect(rows).to_have_count(2)  # the warning and the exception (error)
    page.select_option("#filter-level", "")
    page.fill("#filter-category", "shop")
    expect(rows).to_have_count(1)
    page.fill("#filter-category", "")
    page.fill("#filter-name", "page_view")
    expect(rows).to_have_count(5)
    page.fill("#filter-name", "")
    page.fill("#filter-text", "/p/3")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("page 3")

    page.fill("#filter-text", "declined")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("card declined")
    rows.first.click()
    detail = page.locator("#detail")
    expect(detail).to_contain_text('"order_id": 42')
    expect(detail).to_contain_text("user-7")
    expect(detail).to_contain_text("RuntimeError: card declined")
    expect(detail).to_contain_text("in charge_card")
    expect(page.locator("#processes")).to_contain_text("viewer")

    shot = tmp_path / "viewer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def _post_burst(viewer: ViewerServer, first: int, count: int) -> None:
    events = [
        {
            "name": f"burst_{i % 20}",
            "level": ("debug", "info", "warning", "error")[i % 4],
            "category": "load",
            "message": f"event {i}",
            "timestamp": "2026-01-01T00:00:00.000000+00:00",
            "data": {"i": i, "padding": "x" * 100},
        }
        for i in range(first, first + count)
    ]
    body = json.dumps({"process": {"pid": 1, "name": "load"}, "stats": {}, "events": events}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", viewer.port, timeout=10)
    try:
        conn.request("POST", "/ingest", body=body, headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 200
    finally:
        conn.close()


@pytest.mark.slow
def test_the_page_keeps_up_with_thousands_of_events_and_keeps_the_newest(viewer: ViewerServer, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(viewer.url)
    expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    for second in range(10):  # 10,000 events, as fast as they can be sent
        _post_burst(viewer, second * 1000, 1000)
        started = time.perf_counter()
        page.evaluate("1")  # the page's main thread answers: it is not frozen
        assert time.perf_counter() - started < 1.0
    expect(page.locator("#count")).to_have_text("10000 events received", timeout=15_000)
    expect(page.locator("#shown")).to_contain_text("5000 matching of 5000 kept")
    expect(page.locator("#events tbody tr")).to_have_count(500)
    expect(page.locator("#events tbody tr").first).to_contain_text("event 9999")
    page.fill("#filter-text", "event 5000")
    expect(page.locator("#events tbody tr")).to_have_count(1, timeout=2_000)
