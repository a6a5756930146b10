"""The Effective Block Analyzer and the LoRA plot values on a Flux model: 19 + 38 block lists
(LBW's 61 slots, `FLUXALL`), D/S ranges, and SD lists refused by name. Expected block lists are
written out here, not taken from lib_merge."""
from __future__ import annotations

import dataclasses

import pytest

from lib_merge.arch.flux import FLUX1
from lib_merge.errors import ParseError
from lib_merge.lora.presets import DEFAULT_BOOK
from lib_merge.xy.analyzer import analyzer_spec
from lib_merge.xy.blocks import select
from lib_merge.xy.lbw_plot import Mode, PlotArgs, build_plot, resolve_value

D = [f"D{i:02d}" for i in range(19)]
S = [f"S{i:02d}" for i in range(38)]
SLOTS = ["CLIP", "T5", "IN", *D, *S, "OUT"]
PROMPT = "a cat <lora:style:1:lbw=XYZ>"


@pytest.mark.parametrize("text, want", [
    ("FLUXALL", SLOTS), ("61ALL", SLOTS), ("fluxall", SLOTS),
    ("D00-D18", D), ("S00-S37", S), ("S37-S00", S), ("D05 S10 OUT", ["D05", "S10", "OUT"]),
    ("NOT IN S00-S37", ["CLIP", "T5", *D, "OUT"]), ("CLIP T5", ["CLIP", "T5"]), ("D17-D18, s36-s37", D[17:] + S[36:]),
])
def test_flux_block_lists(text, want):
    spec = analyzer_spec("0,1", text, layout=61)
    assert list(spec.blocks) == want and spec.layout.count == 61 and spec.renders == 1 + len(want)


def test_each_render_lowers_one_slot_of_61():
    spec = analyzer_spec("0.2,1", "D07 S20", layout=61)
    w = spec.weights_for("D07")
    assert len(w) == 61 and w[3 + 7] == 0.2 and w.count(1.0) == 60
    assert spec.weights_for("S20")[3 + 19 + 20] == 0.2
    assert spec.baseline_weights == (1.0,) * 61


def test_selection_text_round_trips():
    assert select(" ".join(SLOTS), tuple(SLOTS), "x").text == "FLUXALL"
    sel = select("D00-D18 OUT", tuple(SLOTS), "x")
    assert sel.text == "D00-D18 OUT" and select(sel.text, tuple(SLOTS), "x") == sel


@pytest.mark.parametrize("text, match", [
    ("IN04", "IN04 is not one of these 61 blocks"),
    ("D19", "unknown block 'D19'"),
    ("17ALL", "is the SD1/SD2 LoRA layout, not these 61 blocks|17ALL"),
])
def test_sd_blocks_on_flux_are_named_in_the_error(text, match):
    with pytest.raises(ParseError, match=match):
        select(text, tuple(SLOTS), "Blocks")


def test_the_analyzer_plot_on_a_flux_model():
    args = PlotArgs(mode=Mode.ANALYZER)
    plot = build_plot(args, FLUX1, DEFAULT_BOOK, PROMPT)  # empty blocks: every slot of the loaded model
    assert plot.spec.layout.count == 61 and list(plot.spec.blocks) == SLOTS
    plot = build_plot(dataclasses.replace(args, blocks="S00-S37"), FLUX1, DEFAULT_BOOK, PROMPT)
    assert list(plot.spec.blocks) == S
    with pytest.raises(ParseError, match="SD1/SD2 LoRA layout, but the loaded model is Flux.1"):
        build_plot(dataclasses.replace(args, blocks="17ALL"), FLUX1, DEFAULT_BOOK, PROMPT)


def test_xyz_axis_values_on_flux():
    assert resolve_value("FLUXALL", FLUX1, DEFAULT_BOOK).weights == (1.0,) * 61
    vals = [round(i / 100, 2) for i in range(61)]
    assert resolve_value(",".join(map(str, vals)), FLUX1, DEFAULT_BOOK).weights == tuple(vals)
    with pytest.raises(ParseError, match="SD1/SD2 LoRA layout, but the loaded model is Flux.1"):
        resolve_value(",".join(["1"] * 17), FLUX1, DEFAULT_BOOK)
