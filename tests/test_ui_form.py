"""The tab's form: labels <-> ids, the dict form of the history, recipe and output path building."""
from __future__ import annotations

import os

import pytest

from lib_merge.errors import MergeError, ParseError, RecipeError
from lib_merge.ui import labels
from lib_merge.ui.form import UI_FIELDS, ZERO_ADJUST, FormValues, adjust_text, build_recipe, output_path
from lib_merge.ui.standalone import StandaloneHost


@pytest.fixture
def host(sd1_models):
    return StandaloneHost(os.path.dirname(sd1_models[0]))


def test_ui_values_round_trip_through_labels():
    form = FormValues(model_a="A.safetensors", mode="add_difference", calc="train_difference", select="exclude",
                      select_text="IN00 VAE", dtype="fp16", seed=7, adjust=(1, 0, 0, 0, 0, 0, 0, -2.5))
    shown = form.to_ui()
    assert len(shown) == len(UI_FIELDS) + 8
    by_name = dict(zip(UI_FIELDS, shown))
    assert by_name["mode"] == "Add difference" and by_name["calc"] == "Train difference"
    assert by_name["select"] == "Exclude" and by_name["dtype"] == "fp16" and by_name["model_b"] is None
    assert FormValues.from_ui(shown) == form


def test_from_ui_takes_ids_too_and_rejects_unknown_labels():
    values = FormValues().to_ui()
    values[UI_FIELDS.index("mode")] = "sum_twice"  # an id is accepted (API callers, saved forms)
    assert FormValues.from_ui(values).mode == "sum_twice"
    values[UI_FIELDS.index("mode")] = "Weighted summ"
    with pytest.raises(MergeError, match="unknown merge mode 'Weighted summ'.*Weight sum"):
        FormValues.from_ui(values)
    with pytest.raises(ValueError):
        FormValues.from_ui(values[:-1])


def test_from_dict_is_tolerant():
    form = FormValues.from_dict({"alpha": "0.7", "seed": 3.0, "overwrite": 1, "adjust": [1, 2], "beta": "x",
                                 "gamma": float("nan"), "no_such_field": 1, "elemental": None})
    assert form.alpha == 0.7 and form.seed == 3 and form.overwrite is True
    assert form.adjust == ZERO_ADJUST and form.beta == 0.25 and form.gamma == 0.3 and form.elemental == ""
    again = FormValues.from_dict(FormValues(alpha=0.1, adjust=(1,) * 8).to_dict())
    assert again == FormValues(alpha=0.1, adjust=(1.0,) * 8)


def test_build_recipe_passes_what_the_method_uses(host, sd1_models):
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors", model_c="C.safetensors", alpha=0.3,
                      alpha_blocks=" GRAD_V ", elemental="OUT05:attn1:0.5", select="include", select_text="IN00-IN03",
                      seed=-1, adjust=(0, 0, 0, 1, 0, 0, 0, 0), dtype="bf16", prune=True, merge_vae=True)
    r = build_recipe(form, host)
    assert r.models == tuple(sd1_models[:2])  # weight sum: C is left out
    assert (r.mode, r.calc, r.alpha, r.alpha_blocks, r.seed) == ("weight_sum", "normal", 0.3, "GRAD_V", None)
    assert (r.include, r.exclude, r.adjust, r.dtype, r.prune, r.merge_vae) == ("IN00-IN03", "", "0,0,0,1,0,0,0,0",
                                                                             "bf16", True, True)
    r = build_recipe(form.replace(calc="extract", mode="weight_sum", select="none", seed=5), host)
    assert r.models == tuple(sd1_models) and r.mode is None and r.include == "" and r.seed == 5
    assert build_recipe(form.replace(calc="self"), host).models == (sd1_models[0],)


def test_build_recipe_mistakes(host, tmp_path):
    with pytest.raises(RecipeError, match="no model A is picked"):
        build_recipe(FormValues(model_b="B.safetensors"), host)
    with pytest.raises(RecipeError, match="Add difference needs model C. Fix: pick model C"):
        build_recipe(FormValues(model_a="A.safetensors", model_b="B.safetensors", mode="add_difference"), host)
    with pytest.raises(RecipeError, match="needs model B and C"):
        build_recipe(FormValues(model_a="A.safetensors", calc="extract"), host)
    with pytest.raises(MergeError, match="gone from"):
        build_recipe(FormValues(model_a="A.safetensors", model_b="nope.safetensors"), host)
    with pytest.raises(RecipeError, match="X range"):
        build_recipe(FormValues(model_a="A.safetensors", model_b="B.safetensors", x_low=1, x_high=0), host)


def test_presets_file_only_when_it_exists(host, tmp_path):
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors")
    assert build_recipe(form, host, str(tmp_path / "none.txt")).presets_file == ""
    (tmp_path / "p.txt").write_text("MINE:1\n")
    assert build_recipe(form, host, str(tmp_path / "p.txt")).presets_file == str(tmp_path / "p.txt")


def test_output_path(host, tmp_path):
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors")
    r = build_recipe(form, host)
    assert output_path(form, r, str(tmp_path)) == str(tmp_path / "A_B_weight_sum.safetensors")
    assert output_path(form.replace(name=" mine "), r, "/o") == "/o/mine.safetensors"
    assert output_path(form.replace(name="v1.5-mix.safetensors"), r, "/o") == "/o/v1.5-mix.safetensors"
    for bad in ("../up", "sub/x", ".."):
        with pytest.raises(MergeError, match="not a plain file name"):
            output_path(form.replace(name=bad), r, "/o")
    with pytest.raises(MergeError, match="not .ckpt"):
        output_path(form.replace(name="x.ckpt"), r, "/o")


def test_adjust_text():
    assert adjust_text(ZERO_ADJUST) == ""
    assert adjust_text((0.1, 0, 0, 0, 0, 0, 0, -10)) == "0.1,0,0,0,0,0,0,-10"


def test_core_messages_are_worded_for_the_tab():
    e = ParseError("--alpha-blocks has 5 values but SD1.x takes 26 values",
                   "pass --overwrite or use --mode add_difference")
    assert labels.user_message(e) == ("alpha block weights has 5 values but SD1.x takes 26 values. "
                                      "Fix: tick Overwrite or use merge mode add_difference")


def test_label_tables_are_unique_and_cover_every_id():
    from lib_merge.methods import CALCS, MODES
    assert set(labels.MODE_LABELS) == set(MODES) and set(labels.CALC_LABELS) == set(CALCS)
    for table in (labels.MODE_LABELS, labels.CALC_LABELS, labels.SELECT_LABELS, labels.DTYPE_LABELS):
        assert len(set(table.values())) == len(table)
    assert [n for n, _ in labels.ADJUST] == list(labels.ADJUST_HINTS)
