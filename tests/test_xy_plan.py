"""Axes and the plan of cells: concrete settings, dedupe, merge-key grouping, running, errors."""
from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from lib_merge.arch.blocks import SDXL
from lib_merge.errors import ParseError
from lib_merge.merge.recipe import Recipe
from lib_merge.xy import (AxisKind, LoraContext, LoraSettings, MergeContext, MergeSettings, PlotKind, apply_to_recipe,
                          axis_kind, choices, parse_axis, plan_cells, run_cells)
from lib_merge.xy.axes import LORA_AXES, MERGE_AXES

L12 = LoraContext(layout=12)
CALCS = ("normal", "cosine_a", "train_difference")
M = MergeContext(arch=SDXL, calc_modes=CALCS, models=("a.safetensors", "b.safetensors", "c.safetensors"))


def ax(kind, text, ctx, name="X axis"):
    return parse_axis(kind, text, ctx, name)


def positions(cells):
    return sorted(p for c in cells for p in c.positions)


# --- axes -----------------------------------------------------------------------------------------------

def test_ids_labels_and_choices():
    assert [i for _, i in choices(PlotKind.LORA)] == ["none", "block_id", "values", "seed", "original_weights",
                                                       "elements"]
    merge_ids = [i for _, i in choices(PlotKind.MERGE)]
    assert merge_ids[:5] == ["none", "alpha", "beta", "alpha_beta", "seed"] and "pinpoint_adjust" in merge_ids
    assert axis_kind("Block ID") is AxisKind.BLOCK_ID and axis_kind("calc_mode") is AxisKind.CALC_MODE
    with pytest.raises(ParseError, match="unknown axis 'alfa'.*did you mean 'alpha'.*Fix:"):
        axis_kind("alfa")
    with pytest.raises(ParseError, match="^Z axis: unknown axis 'sead'.*did you mean 'seed'.*Fix:"):
        parse_axis("sead", "1", L12, "Z axis")
    assert parse_axis("none", "whatever", L12) is None
    with pytest.raises(ParseError, match="'alpha' is not an axis of the lora plot"):
        parse_axis("alpha", "0", L12)
    assert set(LORA_AXES) & set(MERGE_AXES) == {AxisKind.NONE, AxisKind.SEED}


def test_lora_values_numbers_ranges_presets_lists():
    a = ax("values", '0, 0.5-1 [2], ALL, NONE, "1,1,1,1,1,1,1,0.8,1,1,1,1"', L12)
    assert [v.label for v in a.values] == ["0", "0.5", "1", "ALL", "NONE", "1,1,1,1,1,1,1,0.8,1,1,1,1"]
    assert a.values[0].value == 0 and a.values[3].value == (1.0,) * 12 and a.values[4].value == (0.0,) * 12
    assert a.values[5].value[7] == 0.8
    # a 17-value SD1 preset in its own layout: the values users know
    ins = ax("original_weights", "INS", LoraContext(layout=17)).values[0].value
    assert ins == (1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize("kind, text, ctx, needle", [
    ("values", '"1,1,1"', L12, "has 3 values, the plot's LoRA takes 12"),
    ("values", "BOGUS", L12, "is not a number, a range or a preset"),
    ("values", "ALLL", L12, "did you mean 'ALL'"),
    ("values", '"1,1,1,1,1,1,1,x,1,1,1,1"', L12, "entry 8 (OUT01)"),
    ("seed", "1.5", L12, "not a whole number"),
    ("block_id", "IN03", L12, "IN03 is not one of these 12 blocks"),
    ("elements", "IN04:attn", L12, "BLOCKS:ELEMENTS:RATIO"),
    ("alpha", "0.5, x", M, "value 2 ('x') is neither a number nor a range"),
    ("alpha", "0-1 [0]", M, "value 1 ('0-1 [0]') asks for 0 values"),
    ("alpha_beta", "0,1,2", M, "not alpha,beta"),
    ("mbw_alpha", '"1,2"', M, "has 2 values"),
    ("model_a", "d.safetensors", M, "not a known model"),
    ("pinpoint_blocks", "IN09", M, "IN09 is not one of these 20 blocks"),
    ("pinpoint_element", "IN04::", M, "ratio"),
    ("adjust", "1 2 3", M, "has 3 numbers, adjust takes 8"),
    ("pinpoint_adjust", "CONTRAST:1", M, "unknown adjust parameter"),
    ("pinpoint_adjust", "CONT:x", M, "value"),
    ("calc_mode", "cosine", M, "not a calc mode"),
])
def test_axis_errors_name_axis_and_position(kind, text, ctx, needle):
    with pytest.raises(ParseError) as e:
        ax(kind, text, ctx, "Y axis")
    msg = str(e.value)
    assert needle in msg and msg.startswith("Y axis (") and "Fix:" in msg


def test_merge_axis_values():
    assert [v.value for v in ax("alpha_beta", "0,0.5 0.1,0.3 0.4", M).values] == [(0, 0.5), (0.1, 0.3), (0.4, 0.4)]
    assert [v.value for v in ax("alpha_beta", "0-1 [3]", M).values] == [(0, 0), (0.5, 0.5), (1, 1)]
    mbw = ax("mbw_alpha", "GRAD_V\n" + ",".join(["0.5"] * 20), M)
    assert [v.value for v in mbw.values] == ["GRAD_V", ",".join(["0.5"] * 20)]
    assert ax("adjust", '"0,0,0,2,0,0,0,0", 1 1 1 1 1 1 1 1', M).values[0].value == (0, 0, 0, 2, 0, 0, 0, 0)
    assert [v.value for v in ax("pinpoint_adjust", "CONT:2, bri=-1, COL3", M).values] == \
        [("CONT", 2.0), ("BRI", -1.0), ("COL3", None)]
    assert [v.value for v in ax("prompt", "a cat, sitting\na dog", M).values] == ["a cat, sitting", "a dog"]
    assert [v.value for v in ax("seed", "1-3, -1", M).values] == [1, 2, 3, -1]


def test_calc_modes_default_to_the_registered_ones():
    assert ax("calc_mode", "normal, cosine_a", MergeContext()).values[1].value == "cosine_a"


# --- LoRA plans -----------------------------------------------------------------------------------------

def test_block_id_applies_values_to_the_named_blocks_only():
    x = ax("values", "0, 0.5", L12)
    y = ax("block_id", "OUT01, IN04-IN05, NOT BASE", L12, "Y axis")
    cells = plan_cells(x, y, context=L12)
    assert len(cells) == 6 and positions(cells) == [(i, j, 0) for i in range(2) for j in range(3)]
    by_pos = {c.positions[0]: c.settings for c in cells}
    assert by_pos[(0, 0, 0)].lbw == "1,1,1,1,1,1,1,0,1,1,1,1"  # seed 001: OUT01 at 0
    assert by_pos[(1, 1, 0)].weights == (1, 0.5, 0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    assert by_pos[(1, 2, 0)].weights == (1,) + (0.5,) * 11
    assert all(c.merge_key is None and c.baseline is None for c in cells)


def test_values_list_gives_named_blocks_its_own_value_and_original_weights():
    ctx = LoraContext(layout=12, original=(0.5,) * 12)
    x = ax("values", '"0,1,2,3,4,5,6,7,8,9,10,11"', ctx)
    y = ax("block_id", "OUT01 OUT02", ctx)
    (cell,) = plan_cells(x, y, context=ctx)
    assert cell.settings.weights == (0.5,) * 7 + (7, 8) + (0.5,) * 3
    z = ax("original_weights", "NONE, ALL", ctx)
    cells = plan_cells(ax("values", "0.25", ctx), ax("block_id", "BASE", ctx), z, context=ctx)
    assert [c.settings.weights for c in cells] == [(0.25,) + (0.0,) * 11, (0.25,) + (1.0,) * 11]


def test_seed_and_elements_reach_the_settings():
    cells = plan_cells(ax("seed", "7, 8", L12), ax("elements", "IN04:attn:0\nOUT01:proj:0.5", L12), context=L12)
    assert [(c.settings.seed, c.settings.elements) for c in cells] == \
        [(7, "IN04:attn:0"), (8, "IN04:attn:0"), (7, "OUT01:proj:0.5"), (8, "OUT01:proj:0.5")]
    assert cells[0].settings.weights == (1.0,) * 12  # no values axis: the original weights


def test_identical_cells_render_once():
    x = ax("values", "0, 1, 0", L12)
    y = ax("block_id", "OUT01, OUT01", L12, "Y axis")
    cells = plan_cells(x, y, context=L12)
    assert len(cells) == 2
    assert cells[0].positions == ((0, 0, 0), (2, 0, 0), (0, 1, 0), (2, 1, 0))
    assert positions(cells) == [(i, j, 0) for i in range(3) for j in range(2)]
    # value 1 on any block equals the original weights: one render for the whole column
    one = plan_cells(ax("values", "1", L12), ax("block_id", "BASE, OUT01, NOT M00", L12), context=L12)
    assert len(one) == 1 and len(one[0].positions) == 3


def test_block_id_needs_values_and_axes_are_used_once():
    with pytest.raises(ParseError, match="Block ID.*no values axis.*Fix:"):
        plan_cells(ax("block_id", "OUT01", L12), ax("seed", "1", L12), context=L12)
    with pytest.raises(ParseError, match="X axis and Y axis are both seed"):
        plan_cells(ax("seed", "1", L12), ax("seed", "2", L12, "Y axis"), context=L12)
    with pytest.raises(ParseError, match="more than 10000"):
        plan_cells(ax("seed", "1-200", L12), ax("values", "0-1 [100]", L12), context=L12)


# --- merge plans ----------------------------------------------------------------------------------------

def test_cells_differing_by_seed_or_prompt_share_a_merge_and_are_consecutive():
    x = ax("alpha", "0.3, 0.5, 0.7", M)
    y = ax("seed", "1, 2", M)
    z = ax("prompt", "a cat\na dog", M)
    cells = plan_cells(x, y, z, context=M)
    assert len(cells) == 12
    keys = [c.merge_key for c in cells]
    assert keys == [MergeSettings(alpha=a) for a in (0.3, 0.5, 0.7) for _ in range(4)]
    assert [(c.settings.seed, c.settings.prompt) for c in cells[:4]] == \
        [(1, "a cat"), (2, "a cat"), (1, "a dog"), (2, "a dog")]
    assert positions(cells) == sorted((i, j, k) for i in range(3) for j in range(2) for k in range(2))


def test_run_cells_merges_once_per_key_and_stops():
    cells = plan_cells(ax("seed", "1, 2, 3", M), ax("alpha", "0, 1", M, "Y axis"), context=M)
    merged, rendered = [], []
    result = run_cells(cells, lambda s: rendered.append(s) or f"img{len(rendered)}", prepare=merged.append)
    assert merged == [MergeSettings(alpha=0.0), MergeSettings(alpha=1.0)]
    assert len(rendered) == 6 and not result.partial and len(result.images) == 6
    calls = []
    stopped = run_cells(cells, lambda s: "img", prepare=calls.append, should_stop=lambda: len(calls) == 2)
    assert stopped.partial and len(stopped.images) == 3 and len(calls) == 2  # stopped right after merge 2
    none = run_cells(cells, lambda s: None)
    assert none.partial and not none.images
    seen = []
    run_cells(cells, lambda s: "img", progress=lambda d, t, m: seen.append((d, t)))
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)


def test_pinpoint_blocks_apply_the_ratio_to_named_blocks():
    x = ax("pinpoint_blocks", "IN04, OUT01 OUT02, NOT BASE-OUT07", M)
    y = ax("alpha", "0, 1", M, "Y axis")
    cells = plan_cells(x, y, context=M)
    by_pos = {c.positions[0]: c.settings for c in cells}
    assert by_pos[(0, 0, 0)] == MergeSettings(alpha_pins=(("IN04", 0.0),))
    assert by_pos[(1, 1, 0)].alpha_pins == (("OUT01", 1.0), ("OUT02", 1.0))
    assert by_pos[(2, 1, 0)].alpha_pins == (("OUT08", 1.0),)
    ab = plan_cells(ax("pinpoint_blocks", "M00", M), ax("alpha_beta", "0.1,0.2", M), context=M)
    assert ab[0].settings == MergeSettings(alpha_pins=(("M00", 0.1),), beta_pins=(("M00", 0.2),))
    with pytest.raises(ParseError, match="pinpoint blocks.*needs an alpha"):
        plan_cells(ax("pinpoint_blocks", "M00", M), ax("seed", "1", M), context=M)


def test_effective_elemental_checker_plans_baselines_first():
    x = ax("effective_elemental", "IN04:attn1:0, OUT01:attn2:0", M)
    y = ax("alpha", "0.3, 0.5", M, "Y axis")
    cells = plan_cells(x, y, context=M)
    base = {MergeSettings(alpha=0.3), MergeSettings(alpha=0.5)}
    assert {c.settings for c in cells if not c.positions} == base
    for i, c in enumerate(cells):
        if c.positions:
            assert c.baseline in base and c.baseline == MergeSettings(alpha=c.settings.alpha)
            assert c.baseline in [b.settings for b in cells[:i]]  # rendered before it
    assert len(cells) == 6
    with pytest.raises(ParseError, match="use one of them"):
        plan_cells(x, ax("pinpoint_element", "IN04:attn1:0", M), context=M)


def test_pinpoint_element_adjust_calc_models():
    cells = plan_cells(ax("pinpoint_element", "OUT01:attn2:0.5", M), ax("adjust", '"0,0,0,2,0,0,0,0"', M),
                       ax("calc_mode", "cosine_a", M), context=M)
    s = cells[0].settings
    assert (s.elemental_add, s.adjust, s.calc) == ("OUT01:attn2:0.5", (0, 0, 0, 2, 0, 0, 0, 0), "cosine_a")
    pa = plan_cells(ax("pinpoint_adjust", "CONT, BRI", M), ax("alpha", "1, 3", M), context=M)
    assert [c.settings.adjust_pin for c in pa] == [("CONT", 1.0), ("BRI", 1.0), ("CONT", 3.0), ("BRI", 3.0)]
    assert {c.settings.alpha for c in pa} == {None}  # the alpha axis fed the adjust parameter, not alpha
    pa = plan_cells(ax("pinpoint_adjust", "CONT:2, BRI:-1", M), ax("alpha", "0.5", M), context=M)
    assert [(c.settings.adjust_pin, c.settings.alpha) for c in pa] == [(("CONT", 2.0), 0.5), (("BRI", -1.0), 0.5)]
    with pytest.raises(ParseError, match="mixes NAME:value entries with bare names"):
        plan_cells(ax("pinpoint_adjust", "BRI, CONT:1", M), ax("alpha", "1", M), context=M)
    with pytest.raises(ParseError, match="without a value and no alpha axis"):
        plan_cells(ax("pinpoint_adjust", "BRI", M), ax("seed", "1", M), context=M)
    models = plan_cells(ax("model_b", "b.safetensors, c.safetensors", M), context=M)
    assert [c.settings.model_b for c in models] == ["b.safetensors", "c.safetensors"]


def test_apply_to_recipe_writes_pins_into_full_weight_strings():
    recipe = Recipe(models=("a", "b"), alpha=0.4, adjust="0,0,0,1,0,0,0,0", elemental="IN04:attn1:0")
    s = MergeSettings(alpha_pins=(("OUT01", 1.0),), model_c="c", elemental_add="OUT01:attn2:0.5",
                      adjust_pin=("BRI", 2.0), calc="cosine_a", seed=5, prompt="ignored")
    r = apply_to_recipe(s, recipe, SDXL)
    toks = r.alpha_blocks.split(",")
    assert len(toks) == 20 and toks[SDXL.block_index["OUT01"]] == "1" and toks.count("0.4") == 19
    assert r.models == ("a", "b", "c") and r.calc == "cosine_a"
    assert r.elemental == "IN04:attn1:0\nOUT01:attn2:0.5" and r.adjust == "0,0,0,1,2,0,0,0"
    r2 = apply_to_recipe(MergeSettings(alpha=0.9, alpha_blocks="GRAD_V", beta_pins=(("BASE", 0.0),)), recipe, SDXL)
    assert r2.alpha == 0.9 and r2.alpha_blocks == "GRAD_V" and r2.beta_blocks.split(",")[0] == "0"
    with pytest.raises(ParseError, match="no model B"):
        apply_to_recipe(MergeSettings(model_c="c"), Recipe(models=("a",)), SDXL)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([k for k in AxisKind if k is not AxisKind.NONE]),
       st.text(alphabet='0123456789.-+[]() ,"\nabINOUTALLCONT:=', max_size=25))
def test_axis_fuzz_only_parse_errors(kind, text):
    ctx = L12 if kind in LORA_AXES else M
    try:
        a = parse_axis(kind, text, ctx)
        plan_cells(a, context=ctx)
    except ParseError:
        pass


def test_core_imports_only_numpy_and_pillow():
    """No webui, no gradio, and not torch either: plots, the analyzer and grids need numpy and Pillow."""
    code = ("import sys, lib_merge.xy, lib_merge.xy.analyzer, lib_merge.xy.grid, lib_merge.xy.chart\n"
            "from lib_merge.xy import *\n"
            "ctx = LoraContext(layout=12)\n"
            "plan_cells(parse_axis('values', '0,1', ctx), parse_axis('block_id', 'OUT01', ctx), context=ctx)\n"
            "analyzer_spec('0,1', '12ALL')\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('modules', 'modules_forge', 'gradio',"
            " 'matplotlib', 'torch'))\nassert not bad, bad\nprint('clean')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "clean", r.stderr


def test_settings_are_hashable_frozen_keys():
    s = LoraSettings((1.0, 0.0), 3)
    assert {s: 1}[LoraSettings((1.0, 0.0), 3)] == 1
    with pytest.raises(Exception):
        s.seed = 4  # type: ignore[misc]


def test_weights_go_into_the_lbw_xyz_tag_only():
    from lib_merge.xy import apply_to_prompt, check_prompt
    s = LoraSettings((1, 1, 1, 1, 1, 1, 1, 0.8, 1, 1, 1, 1))
    prompt = "1girl, <lora:mine:1:1:lbw=XYZ>, <lora:other:0.5>, lbw=XYZ in text, <lyco:x:1:lbw=XYZ:start=2>"
    assert apply_to_prompt(prompt, s) == ("1girl, <lora:mine:1:1:lbw=1,1,1,1,1,1,1,0.8,1,1,1,1>, <lora:other:0.5>, "
                                          "lbw=XYZ in text, <lyco:x:1:lbw=1,1,1,1,1,1,1,0.8,1,1,1,1:start=2>")
    for bad in ("<lora:mine:1:1>", "lbw=XYZ", "<lora:mine:1:1:lbw=XYZW>", ""):
        with pytest.raises(ParseError, match="lbw=XYZ.*Fix: tag the LoRA"):
            check_prompt(bad)
