"""The Gradio side of the webui entry files: the LoRA block-weight accordion and the tab registration.

Runs where gradio is installed (CI builds it under gradio 3.41.2 and 4.x); skipped elsewhere.
"""
from __future__ import annotations

import builtins
import json

import pytest

gr = pytest.importorskip("gradio")

from lib_merge.errors import ParseError  # noqa: E402
from tests.webui_double.fixtures import a1111_fixture, forge_fixture, webui_fixture  # noqa: F401  (fixtures)


class Files:
    def __init__(self):
        self.saved = []

    def read_lbw(self):
        return "A:1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1\n"

    def read_lbwe(self):
        return "X:::1\n"

    def save_lbw(self, text):
        self.saved.append(text)
        return "saved"

    def save_lbwe(self, text):
        return "saved"

    def check(self, tag, arch):
        return {"tag": tag, "arch": arch}


def test_accordion_builds_and_returns_the_switch():
    from lib_merge.ui.lbw_accordion import MAX_BLOCKS, build_lbw_accordion
    with gr.Blocks() as demo:
        enabled = build_lbw_accordion(Files(), tab="txt2img")
    assert isinstance(enabled, gr.Checkbox) and enabled.value is True
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"blockmerge_lbw_txt2img_enabled", "blockmerge_lbw_txt2img_presets", f"blockmerge_lbw_txt2img_w{MAX_BLOCKS - 1}"} <= ids


def test_preset_line():
    from lib_merge.ui.lbw_accordion import preset_line
    assert preset_line("MINE", 12, [1, 0.5, 0, 0.25, 1, 1, 1, 1, 1, 1, 1, 1, 9, 9]) == "MINE:1,0.5,0,0.25,1,1,1,1,1,1,1,1"
    with pytest.raises(ParseError, match="has a space"):
        preset_line("my preset", 12, [1] * 12)
    with pytest.raises(ParseError, match="13 is not a block layout"):
        preset_line("X", 13, [1] * 26)


def test_script_ui_gives_enable_then_the_plot_arguments_and_reads_infotext(webui):
    from lib_merge.xy.lbw_plot import FIELDS
    cls = webui.lbw_class()
    s = cls()
    with gr.Blocks():
        args = s.ui(False)
    assert len(args) == 1 + len(FIELDS) and args[0].value is True  # API order: enabled first
    component, read = s.infotext_fields[0]
    assert read({}) is True and read({"LBW": "off"}) is False and s.paste_field_names[0] == "LBW"


def test_tab_is_registered_and_a_missing_tab_module_gives_a_message(webui, monkeypatch):
    webui.add_checkpoint("A.safetensors", seed=1)
    webui.load_scripts()
    tabs = webui.script_callbacks.ui_tabs_callback()
    assert [(t, i) for _, t, i in tabs] == [("Block Merge", "blockmerge")]
    real_import = builtins.__import__

    def no_tab(name, *a, **kw):
        if name.endswith("merge_tab") or (a and a[2] and "merge_tab" in a[2]):
            raise ImportError("No module named 'lib_merge.ui.merge_tab'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tab)
    (blocks, title, _), = webui.script_callbacks.ui_tabs_callback()
    monkeypatch.setattr(builtins, "__import__", real_import)
    text = json.dumps([getattr(b, "value", "") for b in blocks.blocks.values()], default=str)
    assert title == "Block Merge" and "could not be loaded" in text
