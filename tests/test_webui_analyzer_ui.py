"""The plot part of the LoRA block-weight accordion under gradio (3.41.2 for A1111, 4.40 for Forge).

Skipped where gradio is not installed; run it in each gradio: `python -m pytest tests/test_webui_analyzer_ui.py`.
"""
from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio")

from lib_merge.xy.lbw_plot import DEFAULTS, FIELDS, INFOTEXT, Mode  # noqa: E402
from tests.test_webui_ui import Files  # noqa: E402
from tests.webui_double.fixtures import a1111_fixture, forge_fixture, webui_fixture  # noqa: F401,E402  (fixtures)


def _fns(demo):
    fns = demo.fns.values() if isinstance(demo.fns, dict) else demo.fns
    return [f.fn for f in fns if getattr(f, "fn", None) is not None]


def test_inputs_are_enabled_then_the_plot_fields_with_their_defaults():
    from lib_merge.ui.lbw_accordion import build_lbw_inputs
    with gr.Blocks() as demo:
        inputs = build_lbw_inputs(Files(), tab="txt2img")
    assert len(inputs) == 1 + len(FIELDS) and isinstance(inputs[0], gr.Checkbox)
    values = dict(zip(FIELDS, (c.value for c in inputs[1:])))
    assert values["mode"] == "off" and values["range"] == DEFAULTS.range and values["blocks"] == ""
    assert values["seeds"] == 1 and values["threshold"] == 20 and values["colour"] == "#000000"
    assert (values["x_type"], values["y_type"], values["z_type"]) == ("values", "Block ID", "none")
    assert values["layout"] == "auto"
    choices = [c if isinstance(c, str) else c[0] for c in inputs[1].choices]  # gradio 4 keeps (label, value)
    assert choices == ["off", "XY plot", "Effective Block Analyzer"]
    demo.get_config_file()  # what the browser gets: every component serialises in this gradio
    labels = [getattr(b, "label", None) for b in demo.blocks.values() if getattr(b, "label", None)]
    assert len(labels) == len(set(labels)), "ui-config.json keys components by label"
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"blockmerge_lbw_txt2img_plot_mode", "blockmerge_lbw_txt2img_range", "blockmerge_lbw_txt2img_blocks",
            "blockmerge_lbw_txt2img_z_values", "blockmerge_lbw_txt2img_plot_layout"} <= ids


def test_choosing_a_mode_shows_its_settings():
    from lib_merge.ui.lbw_accordion import build_lbw_inputs
    with gr.Blocks() as demo:
        build_lbw_inputs(Files(), tab="img2img")
    (show,) = [f for f in _fns(demo) if f.__name__ == "show"]
    for label, want in (("off", (False, False, False)), ("XY plot", (True, False, True)),
                        ("Effective Block Analyzer", (True, True, False))):
        assert tuple(u["visible"] for u in show(label)) == want


def test_script_ui_is_side_effect_free_and_reads_the_plot_from_infotext(webui):
    cls = webui.lbw_class()
    before = {k: len(v) for k, v in webui.script_callbacks.callback_map.items()}
    s = cls()
    for _ in range(2):  # the UI, then the API's init_default_script_args (twice per script)
        with gr.Blocks():
            args = s.ui(False)
    assert {k: len(v) for k, v in webui.script_callbacks.callback_map.items()} == before
    assert len(args) == 1 + len(FIELDS) and args[0].value is True
    fields = dict((getattr(c, "elem_id", None), read) for c, read in s.infotext_fields)
    mode = fields["blockmerge_lbw_txt2img_plot_mode"]
    assert mode({"LBW plot": "Effective Block Analyzer"}) == Mode.ANALYZER.label
    assert mode({}) == "off" and mode({"LBW plot": "???"}) == "off"  # any other image turns the plot off
    assert fields["blockmerge_lbw_txt2img_range"] == INFOTEXT["range"]
    assert set(s.paste_field_names) == {"LBW", *INFOTEXT.values()}
