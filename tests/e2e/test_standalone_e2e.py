"""End to end: `python -m lib_merge ui` driven in headless Chromium (Debian's /usr/bin/chromium via
Playwright's Python package; no browser download).

Picks two tiny models, a preset and an elemental line, merges and saves, then checks the file's
recorded recipe and the recipe the page shows; a bad weight string must show its error in the page.
Run with `python -m pytest -m e2e tests/e2e` in a Python that has gradio and playwright
(`.ci/ui_check.sh --e2e` does it under gradio 3.41.2 and 4.40.0). Set BLOCKMERGE_SCREENSHOT=PATH to
save a screenshot of the tab.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from lib_merge.arch import SD1
from lib_merge.merge.inspect import describe
from lib_merge.merge.presets import PresetBook
from lib_merge.merge.weights import tokens_for
from tests.flux_synth import write_flux
from tests.synth import write_checkpoint

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")
ELEMENTAL = "OUT05 OUT08:attn1:0.88"
TIMEOUT_MS = 60_000


def _missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (apt-get install -y chromium chromium-driver)"
    for mod, hint in (("playwright", "pip install playwright (no `playwright install`: Debian's chromium is used)"),
                      ("gradio", "pip install gradio==4.40.0, or run .ci/ui_check.sh --e2e")):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed ({hint})"
    return None


if _missing():
    pytest.skip(_missing(), allow_module_level=True)


def _free_port() -> int:
    if os.environ.get("BLOCKMERGE_E2E_PORT"):  # a shared machine's assigned port
        return int(os.environ["BLOCKMERGE_E2E_PORT"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    models, out, data = base / "models", base / "out", base / "data"
    for d in (models, out, data):
        d.mkdir()
    write_checkpoint(models / "A.safetensors", "sd1", seed=1)
    write_checkpoint(models / "B.safetensors", "sd1", seed=2)
    write_flux(models / "F.safetensors", 3)  # Flux.1 dev, real key names and block counts, tiny widths
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", BLOCKMERGE_CACHE_DIR=str(base / "cache"),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "lib_merge", "ui", "--models-dir", str(models), "--output-dir",
                             str(out), "--data-dir", str(data), "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the ui server exited with {proc.returncode}:\n"
                                     + (base / "server.log").read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the ui server did not answer within 120 s")
            time.sleep(0.5)
        yield {"url": url, "models": models, "out": out, "data": data, "log": base / "server.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def only_local(route):
        url = route.request.url
        if url.startswith(LOCAL):
            route.continue_()
        else:  # nothing leaves the machine during the test
            outside.append(url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(TIMEOUT_MS)
        pg.route("**/*", only_local)
        pg.goto(server["url"])
        pg.wait_for_selector("#blockmerge_merge_save")
        pg.outside_requests = outside
        yield pg
        browser.close()
    # gradio's own page template links a CDN script (iframe-resizer) and Google Fonts; the app adds nothing
    unexpected = [u for u in outside if "cdnjs.cloudflare.com" not in u and "fonts.g" not in u]
    assert not unexpected, f"the page tried to reach outside 127.0.0.1: {unexpected}"


def pick(pg, elem_id: str, option: str) -> None:
    pg.click(f"#{elem_id} input")
    pg.click(f"#{elem_id} [data-testid='dropdown-option'][aria-label='{option}']")
    pg.wait_for_function("([id, v]) => document.querySelector(`#${id} input`).value === v", arg=[elem_id, option])


def textarea(elem_id: str) -> str:
    return f"#{elem_id} textarea"


def wait_status(pg, text: str) -> str:
    pg.wait_for_function("t => (document.querySelector('#blockmerge_status')?.innerText || '').includes(t)", arg=text)
    return pg.inner_text("#blockmerge_status")


def test_merge_with_preset_and_elemental(page, server):
    pg = page
    pick(pg, "blockmerge_model_a", "A.safetensors")
    pick(pg, "blockmerge_model_b", "B.safetensors")
    pick(pg, "blockmerge_preset", "GRAD_V")
    pg.wait_for_function("s => document.querySelector(s).value === 'GRAD_V'", arg=textarea("blockmerge_alpha_blocks"))
    # the preset reached the sliders too: GRAD_V is 1 at IN00 and 0 at M00
    pg.wait_for_function("() => document.querySelector('#blockmerge_mbw_IN00 input[type=number]').value === '1'")
    assert pg.input_value("#blockmerge_mbw_M00 input[type=number]") == "0"
    pg.fill(textarea("blockmerge_elemental"), ELEMENTAL)
    pg.fill(textarea("blockmerge_name"), "e2e_merge")
    pg.click("#blockmerge_merge_save")
    status = wait_status(pg, "Saved")
    assert "e2e_merge.safetensors" in status

    path = server["out"] / "e2e_merge.safetensors"
    assert path.is_file()
    recipe = describe(str(path))["recipe"]
    assert recipe["models"] == ["A.safetensors", "B.safetensors"]
    assert recipe["method"] == "weight_sum" and recipe["elemental"] == ELEMENTAL
    assert recipe["alpha_blocks"] == ",".join(tokens_for("GRAD_V", SD1, PresetBook(), "GRAD_V"))
    pg.wait_for_function("s => document.querySelector(s).value.length > 0", arg=textarea("blockmerge_recipe"))
    shown = json.loads(pg.input_value(textarea("blockmerge_recipe")))
    assert shown == recipe

    shot = os.environ.get("BLOCKMERGE_SCREENSHOT")
    if shot:
        pg.screenshot(path=shot, full_page=True)


def test_compare_shows_the_heatmap_and_table(page, server):
    pg = page  # models A and B are picked by the test above
    pg.click("#blockmerge_compare_box")  # open the accordion
    pg.click("#blockmerge_compare_run")
    pg.wait_for_function("() => (document.querySelector('#blockmerge_compare_status')?.innerText || '')"
                         ".includes('Compared')")
    pg.wait_for_function("() => { const i = document.querySelector('#blockmerge_compare_image img'); "
                         "return i && i.naturalWidth > 400; }")
    table = pg.input_value(textarea("blockmerge_compare_table"))
    assert "A vs B: cosine similarity" in table and "OUT11" in table


def test_recipe_from_file_loads_back(page, server):
    pg = page
    pg.fill(textarea("blockmerge_elemental"), "")
    pg.click("#blockmerge_file_box")  # open the accordion
    pg.set_input_files("#blockmerge_file_drop input[type=file]", str(server["out"] / "e2e_merge.safetensors"))
    pg.wait_for_function("s => document.querySelector(s).value.includes('OUT05 OUT08:attn1:0.88')",
                         arg=textarea("blockmerge_file_recipe"))
    pg.click("#blockmerge_file_load")
    wait_status(pg, "Loaded the file's recipe")
    assert pg.input_value(textarea("blockmerge_elemental")) == ELEMENTAL


def test_bad_weight_string_shows_the_error(page, server):
    pg = page
    before = sorted(os.listdir(server["out"]))
    pg.fill(textarea("blockmerge_alpha_blocks"), "0,1,0.5,1,1")
    pg.fill(textarea("blockmerge_name"), "never_written")
    pg.click("#blockmerge_merge_save")
    status = wait_status(pg, "has 5 values")
    # the same message as a toast (gr.Warning), in both gradio versions' markup
    pg.wait_for_function("t => Array.from(document.querySelectorAll('.toast-body'))"
                         ".some(e => e.innerText.includes(t))", arg="has 5 values")
    assert "26 values" in status and "Fix:" in status and "Traceback" not in status
    assert sorted(os.listdir(server["out"])) == before
    assert "Traceback" not in server["log"].read_text(errors="replace")


FAKE_TXT2IMG = """
<div id="txt2img_prompt"><textarea>a cat, <lora:x:1:1:lbw=OUTS></textarea></div>
<div id="txt2img_neg_prompt"><textarea>blurry</textarea></div>
<div id="txt2img_seed"><input type="number" value="1234"></div>
<div id="txt2img_steps"><input type="number" value="12"><input type="range" value="12"></div>
<div id="txt2img_cfg_scale"><input type="number" value="5.5"></div>
<div id="txt2img_width"><input type="number" value="640"></div>
<div id="txt2img_height"><input type="number" value="768"></div>
<div id="txt2img_sampling"><input value="DPM++ 2M"></div>
<div id="txt2img_scheduler"><input value="Karras"></div>
<div id="txt2img_batch_size"><input type="number" value="2"></div>
"""


def test_javascript_reads_the_txt2img_fields(page):
    """javascript/blockmerge.js on a page with the webui's txt2img element ids -> GenSettings."""
    from lib_merge.ui.actions import gen_settings

    pg = page
    pg.add_script_tag(path=os.path.join(ROOT, "javascript", "blockmerge.js"))
    pg.evaluate("html => { const d = document.createElement('div'); d.id = 'fake_txt2img'; d.innerHTML = html; "
                "document.body.appendChild(d); }", FAKE_TXT2IMG)
    raw = pg.evaluate("() => JSON.stringify(window.blockmergeTxt2imgSettings())")
    s = gen_settings(raw)
    assert (s.prompt, s.negative_prompt, s.seed, s.steps, s.cfg_scale) == ("a cat, <lora:x:1:1:lbw=OUTS>", "blurry",
                                                                           1234, 12, 5.5)
    assert (s.width, s.height, s.sampler_name, s.scheduler, s.batch_size) == (640, 768, "DPM++ 2M", "Karras", 2)
    pg.evaluate("() => document.getElementById('fake_txt2img').remove()")


def test_sliders_and_text_follow_each_other(page):
    pg = page
    pg.fill(textarea("blockmerge_alpha_blocks"), "FLAT_25")  # typing moves the sliders
    pg.wait_for_function("() => document.querySelector('#blockmerge_mbw_IN05 input[type=number]').value === '0.25'")
    box = "#blockmerge_mbw_IN05 input[type=number]"
    pg.fill(box, "0.8")
    pg.press(box, "Tab")  # leaving the number box releases the slider: the text follows
    pg.wait_for_function("s => document.querySelector(s).value.includes(',')", arg=textarea("blockmerge_alpha_blocks"))
    values = pg.input_value(textarea("blockmerge_alpha_blocks")).split(",")
    assert len(values) == 26 and values[0] == "0" and values[6] == "0.8" and values[1] == "0.25"


def visible(pg, elem_id: str) -> bool:
    return pg.evaluate("id => { const e = document.getElementById(id); return !!e && e.offsetParent !== null; }",
                       elem_id)


def test_flux_model_a_shows_61_sliders_that_follow_the_text(page):
    pg = page
    pick(pg, "blockmerge_model_a", "F.safetensors")  # model A is Flux.1: the layout switches to its 61 sliders
    pg.wait_for_function("() => { const e = document.getElementById('blockmerge_mbw_D07'); "
                         "return !!e && e.offsetParent !== null; }")
    assert visible(pg, "blockmerge_mbw_S37") and visible(pg, "blockmerge_mbw_CLIP")
    assert not visible(pg, "blockmerge_mbw_IN05") and not visible(pg, "blockmerge_mbw_BASE")
    pg.fill(textarea("blockmerge_alpha_blocks"), "FLUXALL")  # typing moves the Flux sliders
    pg.wait_for_function("() => document.querySelector('#blockmerge_mbw_S20 input[type=number]').value === '1'")
    box = "#blockmerge_mbw_S20 input[type=number]"
    pg.fill(box, "0.3")
    pg.press(box, "Tab")
    pg.wait_for_function("s => document.querySelector(s).value.split(',').length === 61",
                         arg=textarea("blockmerge_alpha_blocks"))
    values = pg.input_value(textarea("blockmerge_alpha_blocks")).split(",")
    assert values[3 + 19 + 20] == "0.3" and values.count("1") == 60  # S20 is slot 42 of CLIP, T5, IN, D.., S.., OUT
    pick(pg, "blockmerge_model_a", "A.safetensors")  # back to SD1: its 26 sliders again
    pg.wait_for_function("() => document.getElementById('blockmerge_mbw_IN05').offsetParent !== null")
    assert not visible(pg, "blockmerge_mbw_D07")


def test_every_button_and_dropdown_without_an_error(page, server):
    """Every control of the standalone app, clicked or changed once: no Gradio error on the page (the
    "Error" badge of 3.41, the error toast of 4.x) and no traceback in the server's log."""
    from tests.e2e.clicker import change_every_dropdown, click_every_button
    pg = page
    pick(pg, "blockmerge_model_a", "A.safetensors")
    pick(pg, "blockmerge_model_b", "B.safetensors")
    pg.fill(textarea("blockmerge_alpha_blocks"), "")
    pg.fill(textarea("blockmerge_name"), "clicked")
    assert click_every_button(pg, "body") == []
    assert change_every_dropdown(pg, "body") == []
    assert "Traceback" not in server["log"].read_text(errors="replace")
