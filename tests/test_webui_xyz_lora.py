"""The "LoRA block weight" axis of the webui's own X/Y/Z plot (lib_merge/webui/xyz_lora.py), in the double.

The X/Y/Z plot is the double's builtin_scripts/xyz_grid.py, loaded as the webui loads it; the cells
are its shallow copies of `p`, run through `process_images` with the LoRA block-weight script on.
"""
from __future__ import annotations

from contextlib import closing

import pytest

from lib_merge.errors import ParseError
from tests.test_webui_analyzer import PROMPT, SIZE, lbw, seed001
from tests.webui_double.fixtures import a1111_fixture, forge_fixture, webui_fixture  # noqa: F401  (fixtures)
from tests.webui_double.xyz import xyz_class

LABEL = "LoRA block weight"


def labels(w) -> list[str]:
    """The axis labels of the X/Y/Z plot loaded last (the one the UI builds from)."""
    module = next(d.module for d in reversed(w.scripts.scripts_data) if d.script_class.__module__ == "xyz_grid.py")
    return [o.label for o in module.axis_options]


def run_xyz(w, x_label, x_values, prompt=PROMPT, y=("Nothing", "")):
    """txt2img with the X/Y/Z plot selected and the LoRA block-weight script on (as the webui runs it)."""
    script = xyz_class(w)()
    script.ui(False)
    names = [o.label for o in script.current_axis_options]
    p = w.processing.StableDiffusionProcessingTxt2Img(prompt=prompt, **SIZE)
    runner, args = w.scripts.runner_with(w.lbw_class(), [True])
    p.scripts, p.script_args = runner, [1, *args[1:]]  # script_args[0]: the selected script (the X/Y/Z plot)
    w.shared.state.begin(job="txt2img")
    try:
        with closing(p):
            processed = script.run(p, names.index(x_label), x_values, None, names.index(y[0]), y[1], None,
                                   names.index("Nothing"), "", None)
    finally:
        w.shared.state.end()
    return p, processed, script


def test_the_axis_is_registered_once_across_reloads(webui):
    webui.start_ui()  # the webui's scripts, ours, then on_before_ui
    assert labels(webui).count(LABEL) == 1
    webui.script_callbacks.before_ui_callback()  # create_ui again without reloading the scripts
    assert labels(webui).count(LABEL) == 1
    webui.load_scripts()  # "Reload custom script bodies": our file runs again, callbacks stay
    webui.script_callbacks.before_ui_callback()
    assert labels(webui).count(LABEL) == 1
    from lib_merge.webui import xyz_lora
    ours = [c for c in webui.script_callbacks.callback_map["callbacks_before_ui"] if c.callback is xyz_lora.on_before_ui]
    assert len(ours) == 1
    webui.reload_ui()  # "Reload UI": a fresh xyz_grid.py module with a fresh axis list
    assert labels(webui).count(LABEL) == 1


def test_without_the_xyz_script_registering_says_so_and_does_nothing(webui):
    webui.load_scripts()
    from lib_merge.webui import xyz_lora
    assert xyz_lora.register() is False
    webui.script_callbacks.before_ui_callback()
    assert not webui.errors.reported


def test_apply_reaches_the_lora_block_weight_script(webui):
    seed001(webui)
    out01_off = "1,1,1,1,1,1,1,0,1,1,1,1"
    p, processed, script = run_xyz(webui, LABEL, f'NONE, ALL, "{out01_off}"')
    rendered = webui.processing.rendered
    assert not webui.errors.reported and len(rendered) == 3 and all(processed.images)
    assert [r["prompt"] for r in rendered] == [f"a girl <lora:mine:1:1:lbw={v}>" for v in
                                               ("0,0,0,0,0,0,0,0,0,0,0,0", "1,1,1,1,1,1,1,1,1,1,1,1", out01_off)]
    none, all_, off = (r["bands"] for r in rendered)
    assert all(lit == 0 for _, lit in none.values())  # NONE: the model's own weights everywhere
    assert off["OUT01"][1] == 0 < all_["OUT01"][1]
    assert {b: v for b, v in off.items() if b != "OUT01"} == {b: v for b, v in all_.items() if b != "OUT01"}
    assert script.labels[0] == [f"{LABEL}: NONE", f"{LABEL}: ALL", f"{LABEL}: {out01_off}"]
    assert "lbw=XYZ" in p.prompt  # the plot's own p is left as typed: only the cells' copies change


def test_the_grid_infotext_holds_the_prompt_as_typed_and_each_cell_its_own_weights(webui):
    """Pasting the grid's parameters back must re-run the plot: the grid's infotext (made by the
    X/Y/Z script from the first cell's p after its render) says lbw=XYZ and names the axis; each
    cell's image keeps the concrete weights it was rendered with."""
    seed001(webui)
    p, processed, script = run_xyz(webui, LABEL, "NONE, ALL")
    grid = script.grid_infotext
    assert "<lora:mine:1:1:lbw=XYZ>" in grid and f"X Type: {LABEL}" in grid and "X Values: " in grid
    zeros, ones = ",".join(["0"] * 12), ",".join(["1"] * 12)
    assert f"lbw={zeros}>" in processed.infotexts[0] and f"lbw={ones}>" in processed.infotexts[1]


def test_the_axis_combines_with_the_webuis_own_axes(webui):
    seed001(webui)
    p, processed, _ = run_xyz(webui, LABEL, "INS\nOUTD", y=("Seed", "5, 6"))
    rendered = webui.processing.rendered
    assert [(r["seed"], r["prompt"].split("lbw=")[1][:-1]) for r in rendered] == [
        (5, ",".join(str(int(v)) for v in _known("INS"))), (5, ",".join(str(int(v)) for v in _known("OUTD"))),
        (6, ",".join(str(int(v)) for v in _known("INS"))), (6, ",".join(str(int(v)) for v in _known("OUTD")))]


def _known(name):
    from lib_merge.lora.presets import known_form
    return known_form(name, 12)


@pytest.mark.parametrize("prompt,values,message", [
    ("a girl <lora:mine:1:1:lbw=ALL>", "NONE", "no LoRA tag in the prompt has lbw=XYZ"),
    (PROMPT, "NOPE", "is not a number, a range or a preset"),
    (PROMPT, '"' + ",".join(["1"] * 17) + '"', "SD1/SD2 LoRA layout, but the loaded model is SDXL"),
])
def test_confirm_refuses_before_any_render(webui, prompt, values, message):
    seed001(webui)
    with pytest.raises(ParseError, match=message):
        run_xyz(webui, LABEL, values, prompt=prompt)
    assert webui.processing.rendered == []


def test_cells_of_the_xyz_plot_never_start_an_accordion_plot(webui):
    """The accordion's analyzer left on while the X/Y/Z plot runs with our axis: the axis wins."""
    seed001(webui)
    script = xyz_class(webui)()
    script.ui(False)
    names = [o.label for o in script.current_axis_options]
    p = webui.processing.StableDiffusionProcessingTxt2Img(prompt=PROMPT, **SIZE)
    runner, args = webui.scripts.runner_with(webui.lbw_class(), [True, "Effective Block Analyzer", "0,1", "12ALL"])
    p.scripts, p.script_args = runner, [1, *args[1:]]
    webui.shared.state.begin()
    processed = script.run(p, names.index(LABEL), "ALL, NONE", None, 0, "", None, 0, "", None)
    assert len(webui.processing.rendered) == 2 and len(processed.images) == 2
    assert [r["prompt"] for r in webui.processing.rendered] == [f"a girl <lora:mine:1:1:{lbw([v] * 12)}>" for v in (1, 0)]
