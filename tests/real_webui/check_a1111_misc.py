"""Three more things of issue 9 in a REAL A1111 1.10.1 (not run in CI), through the webui's API and UI:
the webui's own checkpoint metadata viewer reads a merged file's recipe; the Settings section is
there and saves; the LoRA Block Weight XY plot (the accordion's plot, `alwayson_scripts` args) renders
its grid with lbw=XYZ in the grid's infotext.

    python tests/real_webui/check_a1111_misc.py http://127.0.0.1:7860 LOG
"""
from __future__ import annotations

import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import tests.real_webui.drive_a1111 as d  # noqa: E402
from tests.real_webui.drive_a1111 import api, check, log_size, log_tail  # noqa: E402


def main() -> int:
    _, models = api("/sdapi/v1/sd-models")
    names = sorted(m["title"] for m in models if m["title"].startswith("random-sd15"))
    start = log_size()
    name = f"meta_{os.getpid()}"
    code, out = api("/blockmerge/v1/merge", {"recipe": {"models": names[:2], "alpha_blocks": "GRAD_V"}, "output": name})
    check(code == 200, f"REST merge {name}: {code}")
    api("/sdapi/v1/refresh-checkpoints", {})
    q = urllib.parse.urlencode({"page": "checkpoints", "tabname": "txt2img", "name": name})
    api(f"/sd_extra_networks/get-single-card?{q}")  # the card fills the page's metadata, as the UI does
    q = urllib.parse.urlencode({"page": "checkpoints", "item": name})
    _, meta = api(f"/sd_extra_networks/metadata?{q}")
    shown = json.loads(meta.get("metadata", "{}"))
    recipe = json.loads(shown.get("sd_merge_recipe", "{}")) if isinstance(shown.get("sd_merge_recipe"), str) \
        else shown.get("sd_merge_recipe", {})
    check(recipe.get("type") == "blockmerge" and recipe.get("alpha_blocks", "").startswith("0.0,1.0"),
          f"the webui's metadata viewer shows the recipe: {str(shown)[:160]!r}")
    _, opts = api("/sdapi/v1/options")
    ours = {k: v for k, v in opts.items() if k.startswith("blockmerge_")}
    check({"blockmerge_data_dir", "blockmerge_default_dtype", "blockmerge_lbw_keep_in_memory"} <= set(ours),
          f"Settings section registered: {sorted(ours)}")
    code, _ = api("/sdapi/v1/options", {"blockmerge_default_dtype": "bf16"})
    _, opts = api("/sdapi/v1/options")
    check(code == 200 and opts["blockmerge_default_dtype"] == "bf16", "a BlockMerge setting saves")
    api("/sdapi/v1/options", {"blockmerge_default_dtype": ours["blockmerge_default_dtype"]})
    # the LoRA XY plot: X = values 0,1 of the LoRA tagged lbw=XYZ, Y = none
    args = [True, "xy", "0,1", "", 1, 20, "#000000", False, "values", "0,1", "none", "", "none", "", "auto"]
    body = {"prompt": "a cat <lora:random-lora:1:1:lbw=XYZ>", "steps": 2, "width": 64, "height": 64, "seed": 3,
            "alwayson_scripts": {"LoRA Block Weight": {"args": args}}}
    code, res = api("/sdapi/v1/txt2img", body)
    infos = json.loads(res.get("info", "{}")).get("infotexts", []) if code == 200 else []
    grid = [i for i in infos if "LBW plot" in i]
    check(code == 200 and len(res.get("images", [])) >= 2 and grid and "lbw=XYZ" in grid[0],
          f"LoRA XY plot: {len(res.get('images', []))} images, grid infotext {grid[0][:120] if grid else None!r}")
    check("Traceback" not in log_tail(start), "no traceback in the console")
    return 1 if d.failed else 0


if __name__ == "__main__":
    sys.exit(main())
