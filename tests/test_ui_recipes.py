"""Back into the form: a merged file's recipe (ours and the webui merger's) and past merges."""
from __future__ import annotations

import json

import pytest

from lib_merge.errors import MergeError
from lib_merge.io.safetensors_io import read_header, save_tensors
from lib_merge.ui import actions
from lib_merge.ui.form import FormValues
from lib_merge.ui.recipes import form_from_history, form_from_recipe, recipe_from_file
from lib_merge.ui.state import TabState
from tests.synth import state_dict


def test_file_recipe_round_trips_into_the_form(host, tmp_path, models):
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors", model_c="C.safetensors",
                      mode="triple_sum", alpha=0.3, beta=0.2, alpha_blocks="GRAD_V", beta_blocks=",".join(["0.1"] * 25),
                      elemental="OUT05 OUT08:attn1:0.88\nIN04::0", select="exclude", select_text="IN00 attn2",
                      seed=11, x_low=-0.5, x_high=0.5, dtype="fp16", prune=True, merge_vae=True,
                      adjust=(1, 0, 0, 0, -2, 0, 0, 3.5), name="m")
    actions.merge_and_save(host, TabState(data_dir=str(tmp_path / "d")), form)
    fr = recipe_from_file(str(models / "m.safetensors"))
    assert "**m.safetensors**: SD1.x" in fr.summary and "blockmerge" in fr.summary
    assert json.loads(fr.recipe_json) == fr.recipe and fr.models and len(fr.models) == 3
    back, notes = form_from_recipe(fr.recipe, host, fr.models)
    assert notes == []
    # presets are recorded expanded; BASE of a 25-value list comes from beta; everything else as set
    assert back.alpha_blocks == fr.recipe["alpha_blocks"] and back.alpha_blocks.count(",") == 25
    assert back.beta_blocks.split(",")[1:] == ["0.1"] * 25
    assert back.replace(alpha_blocks="GRAD_V", beta_blocks=form.beta_blocks, name="m") == form


def test_file_without_recipe(tmp_path):
    save_tensors(str(tmp_path / "plain.safetensors"), state_dict("sd1", seed=4))
    fr = recipe_from_file(str(tmp_path / "plain.safetensors"))
    assert fr.recipe is None and fr.recipe_json == "" and "carries no merge recipe" in fr.summary
    with pytest.raises(MergeError, match="no recipe to load"):
        form_from_recipe(fr.recipe, None)
    with pytest.raises(MergeError, match="not found"):
        recipe_from_file(str(tmp_path / "nope.safetensors"))


def test_webui_merger_recipe(host, models):
    sha = {n: n.lower() * 8 for n in "ABC"}
    recipe = {"type": "webui", "primary_model_hash": sha["A"], "secondary_model_hash": sha["B"],
              "tertiary_model_hash": sha["C"], "interp_method": "Add difference", "multiplier": 0.7,
              "save_as_half": True, "custom_name": "x"}
    meta = {sha[n]: {"name": n, "legacy_hash": "00000000"} for n in "ABC"}
    form, notes = form_from_recipe(recipe, host, meta)
    assert (form.model_a, form.model_b, form.model_c, form.mode, form.alpha, form.dtype) == (
        "A.safetensors", "B.safetensors", "C.safetensors", "add_difference", 0.7, "fp16")
    assert notes == []
    other = {**recipe, "interp_method": "Weighted sum", "secondary_model_hash": "zz"}
    form, notes = form_from_recipe(other, host, meta)
    assert (form.model_a, form.model_b, form.model_c, form.mode) == ("A.safetensors", "", "", "weight_sum")
    assert notes == ["model B is not named in the file: pick it by hand"]
    with pytest.raises(MergeError, match="'No interpolation' has no equivalent"):
        form_from_recipe({**recipe, "interp_method": "No interpolation"}, host, meta)


def test_foreign_and_unusual_recipes(host):
    with pytest.raises(MergeError, match="written by supermerger, which the tab cannot load"):
        form_from_recipe({"type": "supermerger"}, host)
    with pytest.raises(MergeError, match="is a lora_bake, not a checkpoint merge"):
        form_from_recipe({"type": "blockmerge", "kind": "lora_bake"}, host)
    form, notes = form_from_recipe({"type": "blockmerge", "models": ["A.safetensors", "Z.safetensors"],
                                    "calc": "bogus", "mode": "bogus", "adjust": "1,2"}, host)
    assert (form.model_a, form.model_b, form.calc, form.mode) == ("A.safetensors", "", "normal", "weight_sum")
    assert notes[0].startswith("model Z.safetensors is not in the models list")
    assert "adjust '1,2' was not loaded" in notes[1]


def test_history_entry_into_the_form(host, tmp_path, models):
    st = TabState(data_dir=str(tmp_path / "d"))
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors", alpha_blocks="GRAD_V", name="h")
    out = actions.merge_and_save(host, st, form)
    back, notes = form_from_history(st.history.get(out.entry["id"]), host)
    assert back == form and notes == []
    (models / "B.safetensors").unlink()
    host.refresh()
    back, notes = form_from_history(out.entry, host)
    assert back == form.replace(model_b="") and "B.safetensors is no longer in the models list" in notes[0]


def test_recorded_metadata_is_what_the_webui_reads(host, tmp_path, models):
    actions.merge_and_save(host, TabState(data_dir=str(tmp_path / "d")),
                           FormValues(model_a="A.safetensors", model_b="B.safetensors", name="w"))
    _, meta = read_header(str(models / "w.safetensors"))
    assert set(json.loads(meta["sd_merge_models"])) == set(json.loads(meta["sd_merge_recipe"])["model_hashes"])
