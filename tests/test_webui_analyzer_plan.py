"""The LoRA block-weight script's plot arguments and plans (lib_merge/webui/lbw_plot.py), no webui needed."""
from __future__ import annotations

import pytest

from lib_merge.arch.blocks import SD1, SDXL
from lib_merge.errors import ParseError
from lib_merge.lora.presets import PresetBook
from lib_merge.xy.lbw_plot import (DEFAULTS, FIELDS, Mode, PlotArgs, apply_override, build_plot, from_args,
                                      infotext, layout_for, resolve_value, split_xyz_values)
from lib_merge.xy import LoraSettings

PROMPT = "a girl <lora:mine:1:1:lbw=XYZ>"


def test_args_are_positional_after_enabled_and_default_when_missing():
    assert FIELDS[:4] == ("mode", "range", "blocks", "seeds") and FIELDS[-1] == "layout" and len(FIELDS) == 14
    assert from_args([]) == DEFAULTS and DEFAULTS.mode is Mode.OFF
    a = from_args(["Effective Block Analyzer", "0,1", "12ALL"])
    assert (a.mode, a.range, a.blocks, a.seeds, a.threshold) == (Mode.ANALYZER, "0,1", "12ALL", 1, 20.0)
    assert from_args(["analyzer", None, None, 3]).seeds == 3 and from_args(["xy"]).mode is Mode.XY
    assert from_args(["XY plot"] + [None] * 20).x_type == "values"  # extra trailing args are ignored
    with pytest.raises(ParseError, match="unknown"):
        from_args(["sideways"])


def test_seed_001_plan_is_thirteen_renders_per_seed():
    plot = build_plot(from_args(["analyzer", "0,1", "12ALL"]), SDXL, PresetBook(), PROMPT)
    assert plot.spec.layout.count == 12 and len(plot.spec.blocks) == 12
    assert plot.outer.lbw == "1,1,1,1,1,1,1,1,1,1,1,1"
    assert len(plot.planned(100)) == 13
    assert plot.extra_renders(100, [100]) == 12  # the generation's own image is the baseline
    two = build_plot(from_args(["analyzer", "0,1", "12ALL", 2]), SDXL, PresetBook(), PROMPT)
    assert len(two.planned(100)) == 26 and two.extra_renders(100, [100]) == 25
    assert two.extra_renders(100, [100, 101]) == 24  # batch count 2: both baselines are done


def test_blocks_default_to_the_models_layout_and_ids_use_it():
    sd = build_plot(from_args(["analyzer"]), SD1, PresetBook(), PROMPT)
    assert sd.spec.layout.count == 17 and len(sd.spec.blocks) == 17
    ids = build_plot(from_args(["analyzer", "0.5,1", "NOT BASE M00"]), SDXL, PresetBook(), PROMPT)
    assert ids.spec.layout.count == 12 and "BASE" not in ids.spec.blocks and len(ids.spec.blocks) == 10
    assert ids.spec.weights_for("OUT01") == (1,) * 7 + (0.5,) + (1,) * 4


@pytest.mark.parametrize("args,arch,message", [
    (["analyzer", "0,1", "17ALL"], SDXL, "SD1/SD2 LoRA layout, but the loaded model is SDXL"),
    (["analyzer", "0", "12ALL"], SDXL, "exactly two numbers"),
    (["analyzer", "0,1", "OUT09"], SDXL, "not one of these 12 blocks"),
    (["analyzer", "0,1", "12ALL", 0], SDXL, "number of seeds"),
    (["xy", None, None, None, None, None, None, "none", "", "none", "", "none", ""], SD1, "no axis"),
    (["xy", None, None, None, None, None, None, "Block ID", "OUT03", "none", ""], SD1, "no values axis"),
])
def test_mistakes_are_caught_before_anything_renders(args, arch, message):
    with pytest.raises(ParseError, match=message):
        build_plot(from_args(args), arch, PresetBook(), PROMPT)


def test_a_prompt_without_the_placeholder_is_refused():
    with pytest.raises(ParseError, match="lbw=XYZ"):
        build_plot(from_args(["analyzer"]), SD1, PresetBook(), "<lora:mine:1:1:lbw=ALL>")


def test_xy_plot_dedupes_and_counts_the_outer_render():
    args = from_args(["xy", None, None, None, None, None, None, "values", "0,1", "Block ID", "IN04, OUT01"])
    plot = build_plot(args, SDXL, PresetBook(), PROMPT)
    assert len(plot.cells) == 3  # (1, IN04) and (1, OUT01) are the same render: all ones
    assert plot.extra_renders(7, [7]) == 2  # ... and that is the generation's own image
    z = build_plot(from_args(["xy", None, None, None, None, None, None, "values", "0,1", "Block ID", "OUT01",
                              "seed", "1, 2, 1"]), SDXL, PresetBook(), PROMPT)
    assert len(z.cells) == 4 and len(z.axes[2]) == 3


def test_random_seeds_on_a_seed_axis_are_fixed_once():
    plot = build_plot(from_args(["xy", None, None, None, None, None, None, "seed", "-1, 5", "none", ""]), SD1,
                      PresetBook(), PROMPT)
    seeds = [v.value for v in plot.axes[0].values]
    assert seeds[1] == 5 and seeds[0] != -1 and plot.axes[0].values[0].label == str(seeds[0])


def test_a_user_preset_named_xyz_is_the_xy_base():
    book = PresetBook.load("XYZ:1,1,1,1,1,1,1,0,1,1,1,1\n")
    plot = build_plot(from_args(["xy", None, None, None, None, None, None, "values", "0.5", "Block ID", "BASE"]), SDXL,
                      book, PROMPT)
    assert plot.outer.lbw == "1,1,1,1,1,1,1,0,1,1,1,1"
    assert plot.cells[0].settings.lbw == "0.5,1,1,1,1,1,1,0,1,1,1,1"


def test_xyz_axis_values_resolve_against_the_model():
    assert split_xyz_values('OUTD, "1,1,1,1,1,1,1,0.8,1,1,1,1"') == ["OUTD", "1,1,1,1,1,1,1,0.8,1,1,1,1"]
    assert resolve_value("1,1,1,1,1,1,1,0.8,1,1,1,1", SDXL, PresetBook()).lbw == "1,1,1,1,1,1,1,0.8,1,1,1,1"
    assert len(resolve_value("OUTD", SDXL, PresetBook()).weights) == 12
    assert len(resolve_value("OUTD", SD1, PresetBook()).weights) == 17
    book = PresetBook.load("MINE26:" + ",".join(["1"] * 26) + "\n")
    assert len(resolve_value("MINE26", SD1, book).weights) == 26  # the user's only list length for it
    with pytest.raises(ParseError, match="SD1/SD2 LoRA layout, but the loaded model is SDXL"):
        resolve_value(",".join(["1"] * 17), SDXL, PresetBook())
    with pytest.raises(ParseError, match="not a number, a range or a preset"):
        resolve_value("NOPE", SD1, PresetBook())


def test_an_override_replaces_the_placeholder_and_elements_name_the_xyz_preset():
    s = LoraSettings((1.0,) * 7 + (0.8,) + (1.0,) * 4)
    assert apply_override(PROMPT, s) == "a girl <lora:mine:1:1:lbw=1,1,1,1,1,1,1,0.8,1,1,1,1>"
    e = LoraSettings((1.0,) * 12, elements="IN05-OUT05:attn:0")
    assert apply_override(PROMPT + " <lora:other:1>", e).endswith(":lbwe=XYZ> <lora:other:1>")
    assert apply_override("<lora:mine:1:1:lbw=XYZ:lbwe=XYZ>", e) == "<lora:mine:1:1:lbw=1,1,1,1,1,1,1,1,1,1,1,1:lbwe=XYZ>"
    with pytest.raises(ParseError, match="lbwe=XYZ"):
        apply_override("<lora:mine:1:1:lbw=XYZ:lbwe=MINE>", e)


def test_layout_choice():
    assert layout_for("auto", SDXL) == 12 and layout_for("auto", SD1) == 17 and layout_for("26", SDXL) == 26
    with pytest.raises(ParseError, match="loaded model is SD1"):
        layout_for("12", SD1)


def test_grid_infotext_names_the_settings_that_matter():
    a = infotext(from_args(["analyzer", "0,1", "12ALL", 2]))
    assert a == {"LBW plot": "Effective Block Analyzer", "LBW plot range": "0,1", "LBW plot blocks": "12ALL",
                 "LBW plot seeds": "2", "LBW plot threshold": "20.0", "LBW plot colour": "#000000",
                 "LBW plot swap": "False", "LBW plot layout": "auto"}
    x = infotext(PlotArgs(mode=Mode.XY))
    assert x["LBW plot"] == "XY plot" and x["LBW plot Y type"] == "Block ID" and "LBW plot range" not in x
    assert len(x) == 8
