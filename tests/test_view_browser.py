"""The live view in a real browser: Debian's headless Chromium driven by playwright (no browser download),
watching a simulated run that another process writes, paced through the virtual clock.

Screenshots go to $QBS_LAB_SCREENSHOTS when set (to look at), else to the test's tmp_path.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from tests.view_support import free_port, get, paced_run, view_server

CHROMIUM = "/usr/bin/chromium"


def _points(page) -> int:  # type: ignore[no-untyped-def]
    text = page.inner_text("#bartext")
    m = re.match(r"(\d+) / (\d+) points", text)
    return int(m.group(1)) if m else -1


def test_page_draws_the_run_live_and_asks_nothing_beyond_loopback(tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "headless Chromium from Debian's packages: apt-get install -y chromium"
    shots = Path(os.environ.get("QBS_LAB_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data"
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    requests: list[str] = []
    with view_server(data, port), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            page.on("request", lambda req: requests.append(req.url))
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(origin + "/")
            page.wait_for_selector("#runs")
            run = paced_run(data, speed=50)
            try:
                # the run appears and the heat map and line cuts draw while it goes
                page.wait_for_function(
                    "document.querySelector('#title .st-running') !== null", timeout=60_000
                )
                page.wait_for_function(
                    "document.querySelectorAll('#heat .heatmaplayer image').length > 0"
                    " && document.querySelectorAll('#cuts .scatterlayer .trace').length > 0",
                    timeout=60_000,
                )
                counts = []
                markers = []
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and run.poll() is None:
                    if page.query_selector("#title .st-running") is not None:
                        counts.append(_points(page))
                        markers.append(page.locator("#cuts .scatterlayer .point").count())
                    if len(counts) == 6:
                        page.screenshot(path=str(shots / "view-during.png"), full_page=True)
                    page.wait_for_timeout(400)
                out = run.communicate(timeout=60)[0]
            finally:
                if run.poll() is None:
                    run.kill()
            assert run.returncode == 0, out
            page.wait_for_function("document.querySelector('#title .st-completed') !== null", timeout=30_000)
            page.wait_for_timeout(1500)  # the last redraw
            page.screenshot(path=str(shots / "view-after.png"), full_page=True)

            # new points arrived on the page while the run progressed, never going back
            seen = [c for c in counts if c >= 0]
            assert seen == sorted(seen) and len(set(seen)) >= 3, counts
            assert len(set(markers)) >= 3 and max(markers) > min(markers), markers
            assert _points(page) == 27
            # after the run: one line cut per isotherm plus the crossing with its error bars,
            # the collapse, and the crossing's numbers with units
            legend = page.locator("#cuts .legend").text_content() or ""
            assert "T = 60 mK" in legend and "T = 240 mK" in legend and "crossing (3 isotherms)" in legend
            assert page.locator("#cuts .errorbar").count() >= 1
            assert page.locator("#collapse .scatterlayer .trace").count() == 3
            online = page.inner_text("#online")
            assert re.search(r"Bc = 11\.\d+ ± [\d.]+ mT", online.replace("\n", " ")), online
            assert "kΩ" in page.inner_text("#now") or " Ω" in page.inner_text("#now")
            run_row = get(port, "/api/runs")[0]
            assert page.inner_text("#elapsed") != "–" and run_row["status"] == "completed"
            assert errors == []
        finally:
            browser.close()
    # every request the page made went to the viewer on 127.0.0.1 (plotly.min.js included)
    assert requests and all(u.startswith(origin + "/") for u in requests), sorted(set(requests))
    assert any(u.endswith("/static/plotly.min.js") for u in requests)
