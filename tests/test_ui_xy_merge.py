"""The merge XY plot runner (lib_merge/ui/xy_merge.py), without gradio and without a webui.

A counting fake merge writes the recipe's alpha and its last elemental ratio into the output dict the
way the engine does (a fresh tensor under the key, then filled through `sd[key]`); a deterministic
fake render paints what is loaded: the alpha as the grey level, and the last elemental ratio as the
share of pixels turned white, so a checker's Diff % is known exactly (ratio 0.25: 25.0%).
Then the same runner end to end on tiny real checkpoints with the real engine and a fake host.
"""
from __future__ import annotations

import random
import shutil

import pytest
import torch
from PIL import Image

from lib_merge.arch import SD1
from lib_merge.merge.engine import CancelToken, MergeResult, merge
from lib_merge.errors import Cancelled, MergeError, ParseError
from lib_merge.merge.recipe import Recipe
from lib_merge.ui.form import FormValues
from lib_merge.ui.host import Generated, GenSettings
from lib_merge.ui.state import TabState
from lib_merge.ui.xy_host import PlotRequest, run_on_host, summary
from lib_merge.ui.xy_merge import ReusingStateDict, plan_plot, recipe_caption, resolve_seeds, run_plot, settings_label
from lib_merge.xy import MergeContext, MergeSettings, apply_to_recipe, parse_axis
from lib_merge.xy.grid import EMPTY

CTX = MergeContext(arch=SD1)
SIZE = 10  # renders are 10 x 10: one pixel is 1% of the channels
BASE = Recipe(models=("A.safetensors", "B.safetensors"), alpha=0.5, alpha_blocks="", elemental="")


class FakeMerge:
    """engine.merge's signature; counts calls; writes like DictSink (empty tensor, then fill sd[key])."""

    def __init__(self, cancel_on: int | None = None):
        self.recipes: list[Recipe] = []
        self.outputs: list[object] = []
        self.cancel_on = cancel_on

    def __call__(self, recipe, output=None, *, cancel=None, progress=None, **kw):
        self.recipes.append(recipe)
        self.outputs.append(output)
        if self.cancel_on is not None and len(self.recipes) == self.cancel_on:
            raise Cancelled()
        sd = output if output is not None else {}
        lines = [ln for ln in recipe.elemental.splitlines() if ln.strip()]
        values = {"alpha": recipe.effective_alpha, "ratio": float(lines[-1].rsplit(":", 1)[1]) if lines else 0.0}
        for k, v in values.items():
            sd[k] = torch.empty(1, dtype=torch.float32)
            sd[k].copy_(torch.tensor([v]))
        if progress:
            progress(1, 1, "merging")
        return MergeResult(None, sd, {}, None)


class FakeModel:
    """What a host does with a merged dict: copies the values into its own tensors."""

    def __init__(self):
        self.weights = {"alpha": torch.zeros(1), "ratio": torch.zeros(1)}
        self.loads: list[MergeSettings] = []
        self.dicts: list[object] = []

    def load(self, sd, key, recipe):
        self.dicts.append(sd)
        self.loads.append(key)
        for k, v in sd.items():
            self.weights[k].copy_(v)

    def render(self, s: MergeSettings) -> Image.Image:
        grey = int(round(float(self.weights["alpha"]) * 100)) + (s.seed or 0) + (len(s.prompt or ""))
        img = Image.new("RGB", (SIZE, SIZE), (grey, grey, grey))
        white = int(round(float(self.weights["ratio"]) * SIZE * SIZE))
        for i in range(white):
            img.putpixel((i % SIZE, i // SIZE), (255, 255, 255))
        return img


def run(axes, *, merge=None, model=None, cancel=None, render=None, caption="A + B\nWeight sum · alpha 0.5"):
    plot = plan_plot(axes, CTX)
    model = model or FakeModel()
    merge = merge or FakeMerge()
    result = run_plot(plot, recipe_for=lambda key: apply_to_recipe(key, BASE, SD1), load=model.load,
                      render=render or model.render, merge=merge, cancel=cancel, caption=caption)
    return plot, result, model, merge


def test_one_merge_per_merge_key_seed_and_prompt_cells_reuse_it():
    plot, result, model, merge = run([("alpha", "0.2, 0.4, 0.6"), ("seed", "1, 2"), ("prompt", "a cat\na dog")])
    assert plot.shape == (3, 2, 2) and len(plot.cells) == 12
    assert [r.alpha for r in merge.recipes] == [0.2, 0.4, 0.6]  # once per merge key, in plan order
    assert model.loads == [MergeSettings(alpha=a) for a in (0.2, 0.4, 0.6)]
    assert result.merges == 3 and result.renders == 12 and not result.partial
    assert len(result.grids) == 2  # one per Z value (prompt)
    g = result.grids[1]
    assert g.layout.col_labels == ("alpha: 0.2", "alpha: 0.4", "alpha: 0.6")
    assert g.layout.row_labels == ("seed: 1", "seed: 2")
    # the cell (alpha 0.4, seed 2, "a dog") shows the render of exactly that merge + seed + prompt
    x, y = g.layout.cell_origin(1, 1)
    assert g.image.getpixel((x + 5, y + 5)) == (40 + 2 + 5,) * 3


def test_every_merge_writes_into_one_dict_which_is_emptied_at_the_end():
    _, result, model, merge = run([("alpha", "0, 0.5, 1"), ("seed", "1, 2")])
    assert len({id(d) for d in merge.outputs}) == 1 and isinstance(merge.outputs[0], ReusingStateDict)
    assert all(d is merge.outputs[0] for d in model.dicts)  # the host got the same dict each time
    assert len(merge.outputs[0]) == 0  # nothing kept after the plot


def test_the_recipe_is_in_every_grid_corner():
    caption = "A.safetensors + B.safetensors\nWeight sum · alpha 0.5\nelemental: IN04:attn1:0.5"
    _, result, _, _ = run([("alpha", "0, 1"), ("none", ""), ("seed", "1, 2")], caption=caption)
    for g, z in zip(result.grids, ("seed: 1", "seed: 2")):
        corner = " ".join(g.layout.corner.split())
        assert corner == " ".join(caption.split()) + " " + z


def test_stop_keeps_a_partial_grid():
    token = CancelToken()
    model = FakeModel()
    seen = []

    def render(s):
        seen.append(s)
        if len(seen) == 3:
            token.cancel()  # the Stop button, while the 3rd image renders: it is dropped
        return model.render(s)
    _, result, _, merge = run([("alpha", "0, 0.5, 1"), ("seed", "1, 2")], model=model, cancel=token, render=render)
    assert result.partial and result.renders == 2 and len(merge.recipes) == 2
    g = result.grids[0]
    assert g.layout.rows == 2 and g.layout.cols == 3  # the whole grid, the missing cells grey
    done = {(r, c) for r in range(2) for c in range(3)
            if g.image.getpixel(tuple(v + 1 for v in g.layout.cell_origin(r, c))) != EMPTY}
    assert done == {(0, 0), (1, 0)}  # alpha 0 with seeds 1 and 2


def test_stop_during_a_merge_is_not_an_error():
    _, result, model, merge = run([("alpha", "0, 0.5, 1"), ("seed", "1, 2")], merge=FakeMerge(cancel_on=2))
    assert result.partial and result.merges == 1 and result.renders == 2
    assert model.loads == [MergeSettings(alpha=0.0)]  # the cancelled merge is never loaded


def test_effective_elemental_checker_diffs_against_the_recipe_without_the_entry():
    _, result, model, merge = run([("effective_elemental", "IN04:attn1:0.25\nOUT05::0.5"), ("alpha", "0.3, 0.6")])
    assert result.merges == 6 and result.renders == 6  # 2 baselines + 4 cells, each its own merge
    g = result.grids[0]
    assert g.layout.captions == (("Diff: 25.0%", "Diff: 50.0%"), ("Diff: 25.0%", "Diff: 50.0%"))
    assert g.layout.cell_w == 2 * SIZE  # the image and its diff side by side
    x, y = g.layout.cell_origin(0, 1)
    diff = g.image.crop((x + SIZE, y, x + 2 * SIZE, y + SIZE))
    changed = [diff.getpixel((i % SIZE, i // SIZE)) for i in range(SIZE * SIZE)]
    assert changed[:50] == [(0, 0, 0)] * 50 and changed[50:] == [(255, 255, 255)] * 50  # black marks on white
    assert {r.elemental for r in merge.recipes} == {"", "IN04:attn1:0.25", "OUT05::0.5"}


def test_threshold_and_colour_reach_the_checker():
    plot = plan_plot([("effective_elemental", "IN04:attn1:0.1"), ("none", ""), ("none", "")], CTX)
    model = FakeModel()
    result = run_plot(plot, recipe_for=lambda key: apply_to_recipe(key, BASE, SD1), load=model.load,
                      render=model.render, merge=FakeMerge(), threshold=254.5, colour=(255, 0, 0))
    assert result.grids[0].layout.captions == (("Diff: 0.0%",),)


def test_every_value_is_checked_before_the_first_merge():
    merge = FakeMerge()

    def recipe_for(key):
        if key.alpha == 1.0:
            raise ParseError("alpha 1 is refused here", "use another")
        return apply_to_recipe(key, BASE, SD1)
    plot = plan_plot([("alpha", "0, 0.5, 1"), ("none", ""), ("none", "")], CTX)
    model = FakeModel()
    with pytest.raises(ParseError, match="refused"):
        run_plot(plot, recipe_for=recipe_for, load=model.load, render=model.render, merge=merge)
    assert merge.recipes == []


def test_plan_errors_name_the_axis():
    with pytest.raises(ParseError, match="every axis is none"):
        plan_plot([("none", ""), ("none", ""), ("none", "")], CTX)
    with pytest.raises(ParseError, match="Y axis"):
        plan_plot([("alpha", "0"), ("seed", "x"), ("none", "")], CTX)
    with pytest.raises(ParseError, match="unknown axis"):
        plan_plot([("alfa", "0"), ("none", ""), ("none", "")], CTX)
    assert plan_plot([("MBW alpha", "GRAD_V\nGRAD_A"), ("none", ""), ("none", "")], CTX).shape == (2, 1, 1)  # labels


def test_random_seeds_are_drawn_before_planning():
    axis = parse_axis("seed", "-1, 7, -1", CTX, "X axis")
    fixed = resolve_seeds(axis, random.Random(3))
    seeds = [v.value for v in fixed.values]
    assert seeds[1] == 7 and seeds[0] != -1 and seeds[2] != -1 and seeds[0] != seeds[2]
    assert [v.label for v in fixed.values] == [str(s) for s in seeds]
    plot = plan_plot([("seed", "-1, -1"), ("none", ""), ("none", "")], CTX, random.Random(1))
    assert len(plot.cells) == 2  # two renders, not one


def test_labels_and_captions():
    assert settings_label(MergeSettings(alpha=0.3, alpha_blocks="GRAD_V")) == "alpha 0.3 · MBW alpha GRAD_V"
    assert settings_label(MergeSettings(alpha_pins=(("IN04", 1.0), ("OUT01", 1.0)), adjust_pin=("CONT", 2.0))) \
        == "alpha 1 at IN04 OUT01 · CONT 2"
    assert settings_label(MergeSettings()) == "the tab's recipe"
    r = Recipe(models=("/m/A.safetensors", "/m/B.safetensors", "/m/C.safetensors"), mode="add_difference",
               alpha=0.7, alpha_blocks="GRAD_V", elemental="IN04:attn1:0\nOUT05::1", adjust="0,0,0,2,0,0,0,0")
    assert recipe_caption(r).splitlines() == [
        "A.safetensors + B.safetensors + C.safetensors", "Add difference · alpha 0.7",
        "alpha blocks: GRAD_V", "elemental: IN04:attn1:0 / OUT05::1", "adjust: 0,0,0,2,0,0,0,0"]


# --- the reusing dict and the real engine ---------------------------------------------------------------

def test_a_merge_into_a_used_dict_equals_a_fresh_merge_and_keeps_the_storage(sd1_models):
    """Guards the contract ReusingStateDict relies on: the engine puts a fresh tensor under a key,
    then fills sd[key]. If the engine ever assigns a computed tensor instead, this fails."""
    a, b, c = sd1_models
    buf = ReusingStateDict()
    merge(Recipe(models=(a, b), alpha=0.2), buf, hash_models=False)
    ptrs = {k: v.data_ptr() for k, v in buf.items()}
    for recipe in (Recipe(models=(a, b), alpha=0.7, alpha_blocks="GRAD_V", elemental="IN04:attn1:0"),
                   Recipe(models=(a, b, c), mode="add_difference", alpha=0.5, adjust="0,0,0,2,0,0,0,0")):
        merge(recipe, buf, hash_models=False)
        fresh = merge(recipe, None, hash_models=False).state_dict
        assert buf.keys() == fresh.keys()
        assert all(torch.equal(buf[k], fresh[k]) for k in fresh)
        assert {k: v.data_ptr() for k, v in buf.items()} == ptrs  # the same buffers, refilled
    buf["x"] = torch.zeros(2)
    buf["x"] = torch.ones(3)  # another shape: replaced
    assert buf["x"].shape == (3,)
    buf.begin()  # a merge whose model A has fewer keys: what it does not write is dropped at the end
    merge(Recipe(models=(a, b), alpha=0.3, prune=True), buf, hash_models=False)
    buf.end()
    fresh = merge(Recipe(models=(a, b), alpha=0.3, prune=True), None, hash_models=False).state_dict
    assert "x" not in buf and buf.keys() == fresh.keys()


# --- the tab's composition, end to end on tiny checkpoints -------------------------------------------

class FakeHost:
    """A webui-like host: loads copy into its own tensors (as an in-place load does), generate paints
    the loaded model's mean weight of one key, the seed and the prompt into a small image."""
    name = "fake"
    can_load = True
    can_generate = True
    KEY = "model.diffusion_model.out.2.weight"

    def __init__(self, folder):
        self.folder = folder
        self.model = None
        self.loads, self.labels, self.gens, self.restored = [], [], [], 0

    def checkpoints(self):
        return ["A.safetensors", "B.safetensors", "C.safetensors"]

    def checkpoint_path(self, name):
        if name not in self.checkpoints():
            raise MergeError(f"no model {name}", "pick one")
        return str(self.folder / name)

    def output_dir(self):
        return str(self.folder)

    def load_state_dict(self, sd, base_name, label):
        if self.model is None:
            self.model = {k: torch.empty_like(v) for k, v in sd.items()}
        for k, v in sd.items():
            self.model[k].copy_(v)
        self.loads.append(base_name)
        self.labels.append(label)
        return "loaded"

    def restore(self):
        self.restored += 1
        return "restored"

    def generate(self, settings, progress=None):
        self.gens.append(settings)
        level = int(abs(float(self.model[self.KEY].float().mean())) * 1000) % 200
        img = Image.new("RGB", (8, 8), (level, settings.seed % 256, len(settings.prompt)))
        return Generated([img], "info")


@pytest.fixture
def host(tmp_path, sd1_models):
    for p, n in zip(sd1_models, "ABC"):
        shutil.copy(p, tmp_path / f"{n}.safetensors")
    return FakeHost(tmp_path)


def test_run_on_host_end_to_end(host, tmp_path):
    state = TabState(data_dir=str(tmp_path / "data"))
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors", alpha=0.5, elemental="OUT05::0.9")
    req = PlotRequest(form, (("alpha", "0, 0.5, 1"), ("seed", "11, 12"), ("none", "")),
                      GenSettings(prompt="a cat", seed=-1, batch_size=4))
    result = run_on_host(host, state, req)
    assert result.merges == 3 and result.renders == 6 and not result.partial
    assert host.loads == ["A.safetensors"] * 3 and host.restored == 1
    assert host.labels == ["XY plot: alpha 0", "XY plot: alpha 0.5", "XY plot: alpha 1"]
    assert [g.seed for g in host.gens] == [11, 12] * 3 and {g.batch_size for g in host.gens} == {1}
    levels = [host_img_level(result, r, c) for r in range(2) for c in range(3)]
    assert levels[0] == levels[3] and len(set(levels[:3])) == 3  # the model changes with alpha, not seed
    corner = " ".join(result.grids[0].layout.corner.split())
    assert "A.safetensors + B.safetensors" in corner and "elemental: OUT05::0.9" in corner
    (path,) = result.saved
    assert path.startswith(str(tmp_path / "data" / "xy_grids"))
    info = Image.open(path).text["parameters"]
    assert "Weight sum · alpha 0.5" in info and "X type: alpha; X values: 0, 0.5, 1" in info and "a cat" in info
    assert "3 merges" in summary(result)
    assert not state.busy


def host_img_level(result, r, c):
    g = result.grids[0]
    x, y = g.layout.cell_origin(r, c)
    return g.image.getpixel((x + 2, y + 2))[0]


def test_run_on_host_uses_one_seed_when_the_tab_says_random(host, tmp_path):
    state = TabState(data_dir=str(tmp_path / "data"))
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors")
    req = PlotRequest(form, (("alpha", "0, 1"), ("none", ""), ("none", "")), GenSettings(seed=-1), restore=False)
    result = run_on_host(host, state, req, rng=random.Random(5))
    seeds = {g.seed for g in host.gens}
    assert len(seeds) == 1 and -1 not in seeds and host.restored == 0 and result.renders == 2


def test_run_on_host_models_and_calc_modes_reach_the_recipe(host, tmp_path):
    state = TabState(data_dir=str(tmp_path / "data"))
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors", model_c="C.safetensors")
    merged = []

    def counting(recipe, output=None, **kw):
        merged.append(recipe)
        return merge(recipe, output, **kw)
    req = PlotRequest(form, (("model_b", "B.safetensors, C.safetensors"), ("calc_mode", "normal, train_difference"),
                             ("none", "")), GenSettings(seed=1))
    result = run_on_host(host, state, req, merge=counting)
    names = [tuple(p.rsplit("/", 1)[1] for p in r.models) for r in merged]
    assert names == [("A.safetensors", "B.safetensors"), ("A.safetensors", "C.safetensors"),  # X fastest
                     ("A.safetensors", "B.safetensors", "C.safetensors"),  # train difference takes C
                     ("A.safetensors", "C.safetensors", "C.safetensors")]
    assert [r.calc for r in merged] == ["normal", "normal", "train_difference", "train_difference"]
    assert result.renders == 4


def test_run_on_host_refuses_bad_values_before_merging(host, tmp_path):
    state = TabState(data_dir=str(tmp_path / "data"))
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors")
    for axes, needle in (((("mbw_alpha", "GRAD_V\n1,2,3"), ("none", ""), ("none", "")), "3 values"),
                         ((("model_b", "nope.safetensors"), ("none", ""), ("none", "")), "not a known model"),
                         ((("pinpoint_element", "IN04:nokey:0"), ("none", ""), ("none", "")), "nokey")):
        with pytest.raises(MergeError, match=needle):
            run_on_host(host, state, PlotRequest(form, axes, GenSettings(seed=1)))
    assert host.loads == [] and host.gens == [] and not state.busy


def test_one_plot_at_a_time_and_standalone_refuses(host, tmp_path):
    state = TabState(data_dir=str(tmp_path / "data"))
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors")
    req = PlotRequest(form, (("alpha", "0"), ("none", ""), ("none", "")), GenSettings(seed=1))
    with state.running():
        with pytest.raises(MergeError, match="already running"):
            run_on_host(host, state, req)
    host.can_generate = False
    with pytest.raises(MergeError, match="cannot generate"):
        run_on_host(host, state, req)
