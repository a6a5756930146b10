"""Drive the Block Merge tab and the LoRA block-weight script in a REAL A1111 1.10.1 or a real lllyasviel
Forge (dfdcbab6) (not run in CI).

Start the webui built by ../shared/harness/a1111 with this checkout in extensions/blockmerge and two
SD1.5 checkpoints, then, in a Python with playwright (e.g. the gradio-3.41.2 CI venv):

    python tests/real_webui/drive_a1111.py http://127.0.0.1:7860 /root/webui-lab/logs/a1111.log

It clicks every button and changes every dropdown of the tab (the XY plot's Run aside: it renders
dozens of images on a CPU), merges, loads, generates, restores, and checks the webui's own infotext,
REST wording and console through the webui's API. Prints one line per check and exits 1 on a failure.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.e2e.clicker import change_every_dropdown, click_every_button, settle  # noqa: E402

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7860"
LOG = sys.argv[2] if len(sys.argv) > 2 else ""
ROOT = "#tab_blockmerge"
SAVED = f"real_a1111_{os.getpid()}"  # a new name each run: the checkpoint-list check cannot pass on an old file
failed = 0


def check(ok: bool, what: str) -> None:
    global failed
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    failed += not ok


def api(path: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def log_tail(start: int) -> str:
    if not LOG:
        return ""
    with open(LOG, "rb") as f:  # byte offsets: the log holds tqdm's multi-byte bars
        f.seek(start)
        return f.read().decode("utf-8", "replace")


def log_size() -> int:
    return os.path.getsize(LOG) if LOG else 0


def txt2img(prompt: str, **kw) -> dict:
    code, out = api("/sdapi/v1/txt2img", {"prompt": prompt, "steps": 2, "width": 64, "height": 64, "seed": 1, **kw})
    assert code == 200, out
    return out


def errors_in(pg) -> list[str]:
    from tests.e2e.clicker import errors
    return errors(pg, ROOT)


def open_tab(pg, names: list[str], reload: bool = True) -> None:
    if reload:
        pg.goto(URL)
    pg.click("button:has-text('Block Merge')")
    pg.wait_for_selector("#blockmerge_merge_save")
    for elem, name in (("blockmerge_model_a", names[0]), ("blockmerge_model_b", names[1])):
        pg.click(f"#{elem} input")
        pg.click(f"#{elem} ul.options li:has-text('{name.split(' ')[0]}')")
        settle(pg)


def main() -> int:
    from playwright.sync_api import sync_playwright
    _, models = api("/sdapi/v1/sd-models")
    names = sorted(m["title"] for m in models if m["title"].startswith("random-sd15"))
    check(len(names) >= 2, f"two checkpoints listed: {names}")
    start = log_size()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(120_000)
        open_tab(pg, names)
        pg.fill("#blockmerge_name textarea", SAVED)
        # the XY plot's Run and Merge and generate render at the txt2img tab's size and steps (512x512, 20 steps:
        # minutes per image on a CPU); generation is checked through the API below
        fails = click_every_button(pg, ROOT, skip=("blockmerge_xy_run", "blockmerge_merge_generate"))
        check(not fails, f"every button of the tab clicked, no Error: {fails}")
        fails = change_every_dropdown(pg, ROOT)
        check(not fails, f"every dropdown of the tab changed, no Error: {fails}")
        # Merge and load on a fresh form: images say which merge they come from; Restore: model A again
        open_tab(pg, names)
        pg.fill("#blockmerge_name textarea", "in_memory_mix")
        pg.click("#blockmerge_merge_load")
        pg.wait_for_function("() => /Loaded|✗/.test(document.querySelector('#blockmerge_status')?.innerText || '')")
        check("Loaded" in pg.inner_text("#blockmerge_status"), f"Merge and load: {pg.inner_text('#blockmerge_status')[:300]!r}")
        info = json.loads(txt2img("a cat")["info"])["infotexts"][0]
        check("Model: in_memory_mix" in info and "BlockMerge recipe:" in info, f"infotext after Merge and load: {info[-400:]!r}")
        pg.click("#blockmerge_file_box .label-wrap")  # open "Recipe from file"
        pg.fill("#blockmerge_paste_text textarea", info)
        pg.fill("#blockmerge_elemental textarea", "")
        pg.click("#blockmerge_paste_load")
        pg.wait_for_function("() => (document.querySelector('#blockmerge_status')?.innerText || '').includes('recipe')")
        check("Loaded the image" in pg.inner_text("#blockmerge_status"), "pasted parameters load the recipe")
        pg.click("#blockmerge_restore")
        settle(pg)
        info = json.loads(txt2img("a cat")["info"])["infotexts"][0]
        check("in_memory_mix" not in info and "BlockMerge recipe" not in info, f"infotext after Restore: {info[-200:]!r}")
        pg.screenshot(path="/tmp/real_a1111_tab.png", full_page=True)
        browser.close()
    tail = log_tail(start)
    check("Traceback" not in tail, "no traceback in the webui console while driving the tab")
    _, models = api("/sdapi/v1/sd-models")
    check(any(SAVED in m["title"] for m in models), f"Merge and save: {SAVED} is in the webui's checkpoint list")
    # a bad lbw=: one console line, no traceback
    start = log_size()
    out = txt2img("a cat <lora:random-lora:1:1:lbw=NOPE>")
    info = json.loads(out["info"])
    tail = log_tail(start)
    check("unknown preset 'NOPE'" in info["extra_generation_params"].get("LBW error", ""), "bad lbw= reported in the infotext")
    check("Traceback" not in tail and "stopped the job" in tail, f"bad lbw=: one console line {tail.strip()[-300:]!r}")
    # REST wording
    code, body = api("/blockmerge/v1/merge", {"recipe": {"models": names[:2], "alpha_blocks": "1,2,3"}})
    check(code == 400 and '"alpha_blocks"' in body.get("error", "") and "--" not in body["error"]
          and body.get("fields") == ["alpha_blocks"], f"REST error in JSON words: {body}")
    # img2img, hires and batch count with lbw=
    img = txt2img("a cat <lora:random-lora:1:1:lbw=OUTD>", n_iter=2)
    texts = json.loads(img["info"])["infotexts"]
    check(len(img["images"]) >= 2 and len(texts) >= 2 and all("lbw=OUTD" in x for x in texts), "batch count 2 with lbw=")
    # Forge's API leaves hr_additional_modules None and its sample() then fails on `in None` (its own bug)
    hr = txt2img("a cat <lora:random-lora:1:1:lbw=INS>", enable_hr=True, hr_scale=1.5, hr_second_pass_steps=1,
                 denoising_strength=0.5, hr_upscaler="Latent", hr_additional_modules=["Use same choices"])
    check("lbw=INS" in json.loads(hr["info"])["infotexts"][0], "hires fix with lbw=")
    code, i2i = api("/sdapi/v1/img2img", {"init_images": [img["images"][0]], "prompt": "a cat <lora:random-lora:1:1:lbw=OUTS>",
                                          "steps": 2, "width": 64, "height": 64, "denoising_strength": 0.5})
    check(code == 200 and "lbw=OUTS" in json.loads(i2i["info"])["infotexts"][0], "img2img with lbw=")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
