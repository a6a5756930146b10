"""The block-weight editor: sliders <-> text both ways, layouts, presets to pick and to save."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import torch

from lib_merge.arch import SD1, SDXL
from lib_merge.arch.flux_layouts import FLUX_TINY, checkpoint
from lib_merge.io.safetensors_io import save_tensors
from tests.flux_synth import write_flux
from lib_merge.errors import MergeError, ParseError
from lib_merge.merge.presets import PresetBook
from lib_merge.ui import mbw
from lib_merge.merge.weights import tokens_for

IDX = {b: i for i, b in enumerate(mbw.SLIDER_BLOCKS)}
SDXL_ONLY_HIDDEN = {"IN09", "IN10", "IN11", "OUT09", "OUT10", "OUT11"}


# Flux.1's 61 slots as SuperMerger's BLOCKIDFLUX and LBW list them (NEO_FLUX.md B2), written out here
FLUX_SLOTS = ("CLIP", "T5", "IN", *(f"D{i:02d}" for i in range(19)), *(f"S{i:02d}" for i in range(38)), "OUT")
N = 26 + 61


def test_layouts():
    assert mbw.SLIDER_BLOCKS[:26] == SD1.blocks and mbw.SLIDER_BLOCKS[26:] == FLUX_SLOTS and len(FLUX_SLOTS) == 61
    assert mbw.shown_blocks("flux") == frozenset(FLUX_SLOTS)
    assert tuple(b for b in mbw.SLIDER_BLOCKS if b in mbw.shown_blocks("flux")) == FLUX_SLOTS
    assert mbw.shown_blocks("sd1") == frozenset(SD1.blocks)
    assert set(SD1.blocks) - mbw.shown_blocks("sdxl") == SDXL_ONLY_HIDDEN
    # the sliders SDXL shows are its blocks in its own order
    assert tuple(b for b in mbw.SLIDER_BLOCKS if b in mbw.shown_blocks("sdxl")) == SDXL.blocks


def test_text_to_sliders_values_and_blanks():
    vals = [i / 100 for i in range(26)]
    text = ",".join(str(v) for v in vals)
    assert mbw.text_to_sliders(text, "sd1") == vals + [None] * 61
    no_base = mbw.text_to_sliders(",".join(str(v) for v in vals[1:]), "sd1")
    assert no_base[0] is None and no_base[1:26] == vals[1:]
    rnd = mbw.text_to_sliders("R," + ",".join(["0.5"] * 25), "sd1")
    assert rnd[0] is None and rnd[1:26] == [0.5] * 25
    assert mbw.text_to_sliders("   ", "sd1") == [None] * N


def test_text_to_sliders_sdxl():
    vals = [i / 10 for i in range(20)]
    out = mbw.text_to_sliders(",".join(map(str, vals)), "sdxl")
    assert [out[IDX[b]] for b in SDXL.blocks] == vals
    assert all(out[IDX[b]] is None for b in SDXL_ONLY_HIDDEN)
    # a 26-value string on SDXL drops IN09-IN11 and OUT09-OUT11
    sd = [i / 100 for i in range(26)]
    out = mbw.text_to_sliders(",".join(map(str, sd)), "sdxl")
    assert [out[IDX[b]] for b in SDXL.blocks] == [sd[IDX[b]] for b in SDXL.blocks]


def test_text_to_sliders_presets():
    out = mbw.text_to_sliders("GRAD_V", "sd1")
    assert out[:26] == [float(t) for t in tokens_for("GRAD_V", SD1, PresetBook(), "x")]
    assert out[IDX["IN00"]] == 1.0 and out[IDX["M00"]] == 0.0
    book = PresetBook({"MINE": ",".join(["0.25"] * 20)})
    out = mbw.text_to_sliders("MINE", "sdxl", book)
    assert [out[IDX[b]] for b in SDXL.blocks] == [0.25] * 20


def test_text_to_sliders_errors_name_the_problem():
    with pytest.raises(ParseError, match="has 5 values but SD1.x takes 26 values"):
        mbw.text_to_sliders("0,1,0.5,1,1", "sd1")
    with pytest.raises(ParseError, match="unknown preset 'GRADV'.*did you mean 'GRAD_V'"):
        mbw.text_to_sliders("GRADV", "sd1")
    with pytest.raises(ParseError, match="value 3 \\(IN01\\).*'y' is not a number"):
        mbw.text_to_sliders("0,1,y" + ",0" * 23, "sd1")


def test_sliders_to_text():
    vals = [round(i * 0.04 - 0.5, 2) for i in range(26)] + [9.0] * 61  # the Flux sliders are not read
    text = mbw.sliders_to_text(vals, "sd1")
    assert text.split(",")[0] == "-0.5" and len(text.split(",")) == 26
    xl = mbw.sliders_to_text(vals, "sdxl").split(",")
    assert xl == [mbw._num(vals[IDX[b]]) for b in SDXL.blocks]
    with pytest.raises(ValueError):
        mbw.sliders_to_text(vals[:26], "sdxl")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-100, 200).map(lambda i: i / 100), min_size=N, max_size=N),
       st.sampled_from(mbw.EDITOR_ARCHS))
def test_sliders_text_round_trip(values, arch_id):
    back = mbw.text_to_sliders(mbw.sliders_to_text(values, arch_id), arch_id)
    shown = mbw.shown_blocks(arch_id)
    for block, v, b in zip(mbw.SLIDER_BLOCKS, values, back):
        assert b == (v if block in shown else None)


def test_describe_text():
    assert mbw.describe_text("", "sd1").startswith("Empty")
    assert mbw.describe_text("GRAD_V", "sd1") == "preset GRAD_V, 26 values for SD1.x."
    assert "BASE takes the plain alpha" in mbw.describe_text(",".join(["1"] * 19), "sdxl")
    assert "2 random" in mbw.describe_text("R,U" + ",0" * 24, "sd1")
    bad = mbw.describe_text("0,1,0.5,1,1", "sd1")
    assert bad.startswith("⚠") and "has 5 values" in bad


def test_preset_names_follow_the_layout():
    book = PresetBook()
    sd1, xl = mbw.preset_names(book, "sd1"), mbw.preset_names(book, "sdxl")
    assert "GRAD_V" in sd1 and "GRAD_V_XL" not in sd1
    assert "GRAD_V" in xl and "GRAD_V_XL" in xl


def test_save_preset_round_trip(tmp_path):
    path = str(tmp_path / "sub" / "presets.txt")
    msg = mbw.save_preset(path, "MINE", "GRAD_V", "sd1")
    assert "MINE saved" in msg and "26 values" in msg
    book = PresetBook.from_file(path)
    assert book.lookup("MINE", SD1.blocks) == tokens_for("GRAD_V", SD1, PresetBook(), "x")
    assert mbw.text_to_sliders("MINE", "sd1", book) == mbw.text_to_sliders("GRAD_V", "sd1")


def test_save_preset_replaces_and_keeps_other_lines(tmp_path):
    path = tmp_path / "presets.txt"
    path.write_text("preset_name\tpreset_weights\n# mine\nOTHER:1,1\nMINE\t0,0\nLAST:0.5 # note\n")
    msg = mbw.save_preset(str(path), "MINE", ",".join(["0.5"] * 20), "sdxl")
    assert "MINE replaced" in msg
    lines = path.read_text().splitlines()
    assert lines == ["preset_name\tpreset_weights", "# mine", "OTHER:1,1", "MINE\t" + ",".join(["0.5"] * 20),
                     "LAST:0.5 # note"]


@pytest.mark.parametrize("name, text, match", [
    ("", "GRAD_V", "has no name"),
    ("MY PRESET", "GRAD_V", "cannot be a preset name"),
    ("a:b", "GRAD_V", "cannot be a preset name"),
    ("0.5", "GRAD_V", "cannot be a preset name"),
    ("R", "GRAD_V", "cannot be a preset name"),
    ("GRAD_V", "GRAD_A", "is a built-in preset"),
    ("MINE", "", "weights field is empty"),
    ("MINE", "0,1,2", "has 3 values"),
])
def test_save_preset_refuses(tmp_path, name, text, match):
    path = tmp_path / "p.txt"
    with pytest.raises(MergeError, match=match):
        mbw.save_preset(str(path), name, text, "sd1")
    assert not path.exists()


def test_save_preset_refuses_to_rewrite_an_unreadable_file(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("this line is not a preset\n")
    with pytest.raises(ParseError, match="line 1"):
        mbw.save_preset(str(path), "MINE", "GRAD_V", "sd1")
    assert path.read_text() == "this line is not a preset\n"


def test_detect_editor_arch(sd1_models, sdxl_models, tmp_path):
    assert mbw.detect_editor_arch(sd1_models[0]) == ("sd1", "SD1.x")
    assert mbw.detect_editor_arch(sdxl_models[0]) == ("sdxl", "SDXL")
    write_flux(tmp_path / "dev.safetensors", 1)
    write_flux(tmp_path / "chroma.safetensors", 2, variant="chroma", all_in_one=False)
    assert mbw.detect_editor_arch(str(tmp_path / "dev.safetensors")) == ("flux", "Flux.1 dev")
    assert mbw.detect_editor_arch(str(tmp_path / "chroma.safetensors")) == ("flux", "Chroma")
    # 3 double + 4 single blocks: not Flux.1's counts, so no slider layout fits (its weights are typed)
    save_tensors(str(tmp_path / "small.safetensors"), {k: torch.zeros(s) for k, s in checkpoint(FLUX_TINY).items()})
    layout, label = mbw.detect_editor_arch(str(tmp_path / "small.safetensors"))
    assert layout is None and "3 double + 4 single" in label


# --- Flux.1: 61 sliders ---------------------------------------------------------------------------

FIDX = {b: 26 + i for i, b in enumerate(FLUX_SLOTS)}


def test_flux_text_to_sliders():
    vals = [i / 100 for i in range(61)]
    out = mbw.text_to_sliders(",".join(map(str, vals)), "flux")
    assert out[:26] == [None] * 26  # SD's sliders are left alone
    assert (out[FIDX["CLIP"]], out[FIDX["T5"]], out[FIDX["IN"]]) == (0.0, 0.01, 0.02)
    assert out[FIDX["D00"]] == 0.03 and out[FIDX["D18"]] == 0.21
    assert out[FIDX["S00"]] == 0.22 and out[FIDX["S37"]] == 0.59 and out[FIDX["OUT"]] == 0.6
    no_clip = mbw.text_to_sliders(",".join(map(str, vals[1:])), "flux")  # 60 values: CLIP takes the plain alpha
    assert no_clip[FIDX["CLIP"]] is None and no_clip[FIDX["T5"]] == 0.01 and no_clip[FIDX["OUT"]] == 0.6
    assert mbw.text_to_sliders("FLUXALL", "flux")[26:] == [1.0] * 61  # LBW's FLUXALL: 61 ones
    rnd = mbw.text_to_sliders(",".join(["0.5"] * 10 + ["R"] + ["0.5"] * 50), "flux")
    assert rnd[FIDX["D07"]] is None and rnd[FIDX["D06"]] == 0.5


def test_flux_counts_and_presets_are_checked():
    with pytest.raises(ParseError, match="has 26 values but Flux.1 takes 61 values"):
        mbw.text_to_sliders(",".join(["1"] * 26), "flux")
    with pytest.raises(ParseError, match="has 61 values but SD1.x takes 26"):
        mbw.text_to_sliders("FLUXALL".replace("FLUXALL", ",".join(["1"] * 61)), "sd1")
    with pytest.raises(ParseError, match="preset 'FLUXALL' is for Flux only, not SD1.x"):
        mbw.text_to_sliders("FLUXALL", "sd1")
    assert "61 values for Flux.1" in mbw.describe_text("FLUXALL", "flux")
    assert mbw.describe_text(",".join(["1"] * 26), "flux").startswith("⚠")


def test_flux_sliders_to_text():
    values = [0.0] * 26 + [round(0.01 * i, 2) for i in range(61)]
    text = mbw.sliders_to_text(values, "flux").split(",")
    assert len(text) == 61 and text[:3] == ["0", "0.01", "0.02"] and text[3 + 7] == "0.1" and text[-1] == "0.6"
    assert mbw.sliders_to_text(values, "sd1") == ",".join(["0"] * 26)  # the SD layout writes SD's sliders only


def test_flux_preset_names_and_saving(tmp_path):
    book = PresetBook()
    flux, sd1 = mbw.preset_names(book, "flux"), mbw.preset_names(book, "sd1")
    assert "FLUXALL" in flux and "GRAD_V" not in flux and "ALL_R_XL" not in flux
    assert "FLUXALL" not in sd1 and "GRAD_V" in sd1
    path = str(tmp_path / "presets.txt")
    text = ",".join(["0"] * 3 + ["1"] * 19 + ["0.5"] * 38 + ["0"])
    assert "61 values for Flux.1" in mbw.save_preset(path, "DOUBLES", text, "flux")
    book = PresetBook.from_file(path)
    assert "DOUBLES" in mbw.preset_names(book, "flux") and "DOUBLES" not in mbw.preset_names(book, "sd1")
    out = mbw.text_to_sliders("DOUBLES", "flux", book)
    assert out[FIDX["D00"]] == 1.0 and out[FIDX["S05"]] == 0.5 and out[FIDX["OUT"]] == 0.0
