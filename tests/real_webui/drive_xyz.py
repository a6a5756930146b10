"""The webui's own X/Y/Z plot with BlockMerge's "Merge alpha" axis, in a REAL A1111 1.10.1 or Forge (dfdcbab6)
(not run in CI). The axis merges the Block Merge tab's last recipe, so the tab's Merge and load runs first
(models A and B, then Restore); then txt2img through the webui's API with the script "x/y/z plot",
X type "Merge alpha" (its index read from the page's own dropdown in /config), X values "0, 1", 64x64,
2 steps. Checks: the grid's infotext names the axis, the cells say which merge they are, the alpha 0 cell
is pixel for pixel the plain image of model A rendered after the plot (the merge keeps A's VAE, so alpha 1 is
not B's plain image), alpha 1 differs from alpha 0, and no traceback in the console.

    python tests/real_webui/drive_xyz.py http://127.0.0.1:7860 LOG
"""
from __future__ import annotations

import base64
import io
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import tests.real_webui.drive_a1111 as d  # noqa: E402
from tests.e2e.clicker import settle  # noqa: E402
from tests.real_webui.drive_a1111 import api, check, log_size, log_tail, open_tab  # noqa: E402

ELEM = "script_txt2img_xyz_plot_x_type"


def axis_index(label: str) -> int:
    _, config = api("/config")
    for comp in config["components"]:
        if comp.get("props", {}).get("elem_id") == ELEM:
            choices = [c[0] if isinstance(c, list) else c for c in comp["props"]["choices"]]
            return choices.index(label)
    raise AssertionError(f"no {ELEM} in /config")


def image(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=np.int16)


def main() -> int:
    d.URL = sys.argv[1]
    d.LOG = sys.argv[2] if len(sys.argv) > 2 else ""
    from playwright.sync_api import sync_playwright
    _, models = api("/sdapi/v1/sd-models")
    names = sorted(m["title"] for m in models if m["title"].startswith("random-sd15"))
    start = log_size()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(600_000)
        open_tab(pg, names)
        pg.fill("#blockmerge_name textarea", "xyz_base")
        pg.click("#blockmerge_merge_load")
        pg.wait_for_function("() => /Loaded|✗/.test(document.querySelector('#blockmerge_status')?.innerText || '')")
        pg.click("#blockmerge_restore")
        settle(pg)
        browser.close()
    x = axis_index("Merge alpha")
    args = [x, "0, 1", [], 0, "", [], 0, "", [], True, True, False, False, False, False, False, 0, False]
    body = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler",
            "script_name": "x/y/z plot", "script_args": args}
    code, out = api("/sdapi/v1/txt2img", body)
    check(code == 200, f"txt2img with the X/Y/Z plot: {code} {str(out)[:200]}")
    info = json.loads(out["info"])
    texts = info["infotexts"]
    check("X Type: Merge alpha" in texts[0] and 'X Values: "0, 1"' in texts[0], f"grid infotext: {texts[0][-200:]!r}")
    check(any("XYZ: alpha 0" in t for t in texts) and any("XYZ: alpha 1" in t for t in texts), "cells name their merge")
    cells = [image(b) for b in out["images"] if image(b).shape[:2] == (64, 64)]
    # alpha 0 is model A whole (the merge keeps A's VAE): the plain image of A, selected by override, pixel for pixel
    out = d.txt2img("a cat", seed=5, sampler_name="Euler", override_settings={"sd_model_checkpoint": names[0]})
    plain = image(out["images"][0])
    check(len(cells) == 2 and np.array_equal(cells[0], plain),
          f"the alpha 0 cell is the plain image of model A ({names[0]}), pixel for pixel "
          "(the plot's merges are gone afterwards)")
    check(len(cells) == 2 and not np.array_equal(cells[1], cells[0]), "alpha 1 cell differs")
    check("Traceback" not in log_tail(start), "no traceback in the console")
    return 1 if d.failed else 0


if __name__ == "__main__":
    sys.exit(main())
