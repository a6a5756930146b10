"""End to end: the LoRA block-weight accordion (presets, elemental, weight maker, tag check, and the
XY plot / analyzer settings) in headless Chromium, under the installed gradio (.ci/ui_check.sh --e2e:
3.41.2 and 4.40.0). Every button clicked and every dropdown changed in each of its tabs, with no Gradio
error on the page and no traceback in the server's log; the buttons also do their job (files written,
a preset line made, a tag checked).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.e2e.test_standalone_e2e import CHROMIUM, CHROMIUM_ARGS, LOCAL, ROOT, TIMEOUT_MS

pytestmark = pytest.mark.e2e
P = "blockmerge_lbw_txt2img"
TABS = ("Presets", "Elemental", "Weight maker", "Check a tag")


def _port() -> int:
    for port in (*range(8900, 8950), 0):  # this project's test ports first, any free one after
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise AssertionError("no free port")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("lbw_e2e")
    port = _port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "e2e", "lbw_app.py"), str(base), str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the page's server exited with {proc.returncode}:\n"
                                     + (base / "server.log").read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the page's server did not answer within 120 s")
            time.sleep(0.5)
        yield {"url": url, "dir": base, "log": base / "server.log"}
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

    def only_local(route):
        (route.continue_ if route.request.url.startswith(LOCAL) else route.abort)()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1200})
        pg.set_default_timeout(TIMEOUT_MS)
        pg.route("**/*", only_local)
        pg.goto(server["url"])
        pg.wait_for_selector(f"#{P}_accordion")
        yield pg
        browser.close()


def _tab(pg, name: str) -> None:
    pg.click(f"#lbw_page .tab-nav button:text-is('{name}')")


def test_every_control_of_the_accordion_without_an_error(page, server):
    from tests.e2e.clicker import change_every_dropdown, click_every_button, settle
    pg = page
    pg.click(f"#{P}_accordion .label-wrap")
    pg.wait_for_selector(f"#{P}_plot_mode", state="visible")
    failures = []
    for mode in ("XY plot", "Effective Block Analyzer", "XY plot"):
        pg.click(f"#{P}_plot_mode label:has-text('{mode}')")
        settle(pg)
        failures += change_every_dropdown(pg, "#lbw_page")
    assert pg.is_visible(f"#{P}_x_type"), "the XY plot settings did not show"
    buttons = {"Presets": ("presets_load", "presets_save"), "Elemental": ("elemental_load", "elemental_save"),
               "Weight maker": ("maker_make", "maker_add"), "Check a tag": ("check",)}
    for name in TABS:
        _tab(pg, name)
        for b in buttons[name]:  # the tab shows its buttons (and the accordion stays open)
            pg.wait_for_selector(f"#{P}_{b}", state="visible")
        clicked: list[str] = []
        failures += click_every_button(pg, "#lbw_page", clicked=clicked)
        assert set(f"{P}_{b}" for b in buttons[name]) <= set(clicked), (name, clicked)
    assert failures == []
    assert "Traceback" not in server["log"].read_text(errors="replace")
    # the buttons did their jobs: both files saved as shown, a preset line made and added
    assert (server["dir"] / "lbw_presets.txt").is_file() and (server["dir"] / "lbwe_presets.txt").is_file()
    _tab(pg, "Weight maker")
    line = pg.input_value(f"#{P}_maker_line textarea")
    assert line.startswith("MY_PRESET:") and len(line.split(":")[1].split(",")) == 17, line


def test_a_bad_tag_is_a_message_not_an_error(page, server):
    from tests.e2e.clicker import errors, settle
    pg = page
    _tab(pg, "Check a tag")
    pg.fill(f"#{P}_check_tag textarea", "<lora:x:1:1:lbw=NO_SUCH_PRESET>")
    pg.click(f"#{P}_check")
    settle(pg)
    pg.wait_for_function("() => document.body.innerText.includes('NO_SUCH_PRESET')")
    assert errors(pg, "#lbw_page") == []
    assert "Traceback" not in server["log"].read_text(errors="replace")
