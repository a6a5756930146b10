"""The buttons without a browser: merge and save / load / generate, Stop, errors, history records."""
from __future__ import annotations

import json
import os

import pytest
import torch

from lib_merge.errors import Cancelled, MergeError
from lib_merge.merge.inspect import describe
from lib_merge.ui import actions
from lib_merge.ui.form import FormValues
from lib_merge.ui.host import Generated, GenSettings
from lib_merge.ui.standalone import StandaloneHost
from lib_merge.ui.state import TabState


class WebuiLikeHost(StandaloneHost):
    """A host that can load and generate, recording what it was given."""
    name = "test"
    can_load = True
    can_generate = True

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.loaded: list = []
        self.generated: list = []

    def load_state_dict(self, state_dict, base_name, label, identity=None):
        self.loaded.append((dict(state_dict), base_name, label))
        self.identity = identity
        return f"loaded into {base_name}"

    def restore(self):
        return "restored"

    def generate(self, settings, progress=None):
        self.generated.append(settings)
        if progress:
            progress(1, 1, "sampling")
        return Generated(images=["img1", "img2"], infotext="Steps: 3")


@pytest.fixture
def state(tmp_path):
    return TabState(data_dir=str(tmp_path / "data"))


FORM = FormValues(model_a="A.safetensors", model_b="B.safetensors", alpha_blocks="GRAD_V",
                  elemental="OUT05 OUT08:attn1:0.88", name="merged")


def test_merge_and_save_removes_and_reports_a_killed_merges_leftover(host, state, models):
    """A merge killed with SIGKILL leaves `.NAME.PID.XXXX.partial`; the tab's next save removes the
    dead process's file (never a live one's) and says so in the status."""
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = models / f".old.safetensors.{dead.stdout.strip()}.abcd.partial"
    stale.write_bytes(b"x" * 1000)
    live = models / f".other.safetensors.{os.getpid()}.efgh.partial"  # this process: alive
    live.write_bytes(b"y")
    out = actions.merge_and_save(host, state, FORM.replace(name="after_kill"))
    assert not stale.exists() and live.exists()
    assert "removed 1 unfinished file" in out.status and "interrupted merges" in out.status
    live.unlink()


def test_merge_and_save(host, state, models):
    seen = []
    out = actions.merge_and_save(host, state, FORM, progress=lambda d, t, w: seen.append((d, t, w)))
    path = models / "merged.safetensors"
    assert path.is_file() and "Saved **merged.safetensors**" in out.status and "keys merged" in out.status
    recipe = describe(str(path))["recipe"]
    assert json.loads(out.recipe_json) == recipe
    assert recipe["elemental"] == FORM.elemental and recipe["models"] == ["A.safetensors", "B.safetensors"]
    assert seen and seen[-1][0] == seen[-1][1]  # progress reached its end
    (entry,) = state.history.entries()
    assert entry == out.entry and entry["action"] == "save" and entry["output"] == str(path)
    assert FormValues.from_dict(entry["settings"]) == FORM
    assert entry["model_hashes"] == recipe["model_hashes"] and len(entry["model_hashes"]) == 2
    assert set(entry["models"]) == set(recipe["model_hashes"])


def test_a_drawn_seed_is_recorded_so_history_replays(host, state, models):
    form = FORM.replace(alpha_blocks="ALL_R", name="r1", seed=-1)
    first = actions.merge_and_save(host, state, form)
    seed = first.entry["settings"]["seed"]
    assert seed >= 0 and seed == json.loads(first.recipe_json)["seed"]
    assert f"seed {seed}" in first.status
    again = FormValues.from_dict(first.entry["settings"]).replace(name="r2")
    second = actions.merge_and_save(host, state, again)
    assert json.loads(second.recipe_json)["alpha_values"] == json.loads(first.recipe_json)["alpha_values"]


@pytest.mark.parametrize("form, match", [
    (FORM.replace(alpha_blocks="0,1,0.5,1,1"), "has 5 values but SD1.x takes 26 values"),
    (FORM.replace(elemental="OUT05:attn9:0.5"), "matches no key of model A"),
    (FORM.replace(adjust=(0,) * 7 + (1,), select="exclude", select_text="Attn2"), "neither a block"),
    (FORM.replace(model_b=""), "needs model B"),
    (FORM.replace(name="../x"), "not a plain file name"),
])
def test_mistakes_raise_merge_errors_and_write_nothing(host, state, models, form, match):
    before = sorted(os.listdir(models))
    with pytest.raises(MergeError, match=match):
        actions.merge_and_save(host, state, form)
    assert sorted(os.listdir(models)) == before and state.history.entries() == [] and not state.busy


def test_existing_output_needs_overwrite(host, state, models):
    actions.merge_and_save(host, state, FORM)
    with pytest.raises(MergeError, match="exists already"):
        actions.merge_and_save(host, state, FORM)
    actions.merge_and_save(host, state, FORM.replace(overwrite=True, alpha=0.1))
    assert len(state.history.entries()) == 2


def test_stop_cancels_and_writes_nothing(host, state, models):
    def progress(done, total, what):
        if what == "merging":
            state.stop()

    before = sorted(os.listdir(models))
    with pytest.raises(Cancelled):
        actions.merge_and_save(host, state, FORM, progress=progress)
    assert sorted(os.listdir(models)) == before and not state.busy


def test_merge_and_load(models, state):
    host = WebuiLikeHost(str(models))
    out = actions.merge_and_load(host, state, FORM.replace(name=""))
    (sd, base, label), = host.loaded
    assert base == "A.safetensors" and label == "A_B_weight_sum"
    assert all(isinstance(t, torch.Tensor) for t in sd.values()) and "model.diffusion_model.out.2.bias" in sd
    assert "Loaded **A_B_weight_sum**" in out.status and "loaded into A.safetensors" in out.status
    assert out.entry["action"] == "load" and out.entry["output"] is None
    assert sorted(os.listdir(models)) == ["A.safetensors", "B.safetensors", "C.safetensors"]
    # the loaded merge's identity: its name, and the recipe JSON as saved files carry it
    assert host.identity.name == "A_B_weight_sum" and json.loads(host.identity.recipe) == out.entry["recipe"]


def test_merge_and_generate(models, state):
    host = WebuiLikeHost(str(models))
    settings = actions.gen_settings('{"prompt": "cat", "steps": "12", "seed": 5.0, "cfg_scale": 6, "tiling": true}')
    assert (settings.steps, settings.seed, settings.cfg_scale, dict(settings.extra)) == (12, 5, 6.0, {"tiling": True})
    out = actions.merge_and_generate(host, state, FORM, settings)
    assert out.images == ["img1", "img2"] and out.infotext == "Steps: 3" and "Generated 2 images" in out.status
    assert host.generated == [settings] and len(host.loaded) == 1


def test_standalone_cannot_load_or_generate(host, state):
    with pytest.raises(MergeError, match="cannot load"):
        actions.merge_and_load(host, state, FORM)
    with pytest.raises(MergeError, match="cannot generate"):
        actions.merge_and_generate(host, state, FORM, GenSettings())


@pytest.mark.parametrize("text", ["", "[1]", "not json", '{"steps": "many"}'])
def test_bad_txt2img_settings(text):
    if text == "":
        assert actions.gen_settings(text) == GenSettings()
        return
    with pytest.raises(MergeError):
        actions.gen_settings(text)


def test_throttled_progress():
    now = [0.0]
    calls = []
    t = actions.Throttled(lambda d, tot, w: calls.append((d, w)), interval=1.0, clock=lambda: now[0])
    t(0, 10, "hashing")
    t(1, 10, "hashing")  # too soon
    t(2, 10, "merging")  # new phase: passed on
    now[0] = 0.5
    t(3, 10, "merging")
    now[0] = 1.6
    t(4, 10, "merging")
    t(10, 10, "merging")  # the end: always
    assert calls == [(0, "hashing"), (2, "merging"), (4, "merging"), (10, "merging")]


def test_match_models(host, models):
    found, notes = actions.match_models(["A.safetensors", "b.SAFETENSORS", "C.ckpt", "gone.safetensors"], host)
    assert found == ["A.safetensors", "B.safetensors", "C.safetensors", ""]
    assert notes == ["model gone.safetensors is not in the models list: pick it by hand"]
