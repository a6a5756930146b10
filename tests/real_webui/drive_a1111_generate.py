"""The two rendering buttons of the Block Merge tab in a REAL A1111 1.10.1 (not run in CI): Merge and
generate, and the XY plot's Run, with the txt2img tab set to 64x64 and 2 steps first (the tab reads
those settings in the browser). Run like drive_a1111.py:

    python tests/real_webui/drive_a1111_generate.py http://127.0.0.1:7860 LOG
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.real_webui.drive_a1111 import URL, api, check, errors_in, log_size, log_tail, open_tab  # noqa: E402
from tests.e2e.clicker import settle  # noqa: E402


def set_number(pg, elem: str, value: int) -> None:
    box = f"#{elem} input[type=number]"
    pg.fill(box, str(value))
    pg.press(box, "Enter")


def main() -> int:
    from playwright.sync_api import sync_playwright
    import tests.real_webui.drive_a1111 as d
    _, models = api("/sdapi/v1/sd-models")
    names = sorted(m["title"] for m in models if m["title"].startswith("random-sd15"))
    start = log_size()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(600_000)
        pg.goto(URL)
        pg.wait_for_selector("#txt2img_width")
        for elem, v in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_steps", 2)):
            set_number(pg, elem, v)
        open_tab(pg, names, reload=False)
        pg.click("#blockmerge_merge_generate")
        pg.wait_for_function("() => /Generated|✗/.test(document.querySelector('#blockmerge_status')?.innerText || '')")
        status = pg.inner_text("#blockmerge_status")
        check("Generated 1 image" in status and not errors_in(pg), f"Merge and generate: {status[-120:]!r}")
        pg.click("#blockmerge_xy .label-wrap")
        pg.fill("#blockmerge_xy_x_values textarea", "0, 1")
        pg.click("#blockmerge_xy_y_type input")
        pg.click("#blockmerge_xy_y_type ul.options li:has-text('none')")
        settle(pg)
        pg.click("#blockmerge_xy_run")
        pg.wait_for_function("() => /XY plot done|Stopped|✗/.test(document.querySelector('#blockmerge_xy_status')?.innerText || '')")
        status = pg.inner_text("#blockmerge_xy_status")
        check("XY plot done" in status and not errors_in(pg), f"XY plot Run: {status[-160:]!r}")
        browser.close()
    check("Traceback" not in log_tail(start), "no traceback in the console")
    return 1 if d.failed else 0


if __name__ == "__main__":
    sys.exit(main())
