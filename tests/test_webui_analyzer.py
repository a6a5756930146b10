"""The Effective Block Analyzer and the LoRA XY plot inside A1111 and Forge (the webui double).

Renders go through the double's `process_images` with pictures on: each image shows, band by band,
how far each block's weights are from the model's own (processing.picture), so a block's Diff % is
known exactly from what the model really computed with. The LoRA follows seed 001: an SDXL LoRA
whose OUT01 change is twice as strong as its other blocks'.
"""
from __future__ import annotations

import copy
import os

import pytest
from PIL import Image

from lib_merge.lora.layouts import LAYOUTS
from tests.test_webui_lbw import _a1111_cache_state, _equal, _forge_cache_state
from tests.webui_double.fixtures import a1111_fixture, forge_fixture, webui_fixture  # noqa: F401  (fixtures)

BLOCKS12 = LAYOUTS[12].blocks
PROMPT = "a girl <lora:mine:1:1:lbw=XYZ>"
ANALYZER = ["Effective Block Analyzer", "0,1", "12ALL"]  # what seed 001 types; the rest stays default
SIZE = {"width": 64, "height": 60, "steps": 2, "seed": 42}


def seed001(w) -> None:
    """An SDXL checkpoint, the LoRA `mine` (OUT01 twice as strong), pictures on, scripts loaded."""
    import torch
    from lib_merge.io.safetensors_io import save_tensors
    from tests.synth import make_lora
    w.add_checkpoint("XL.safetensors", "sdxl", seed=1)
    w.load("XL.safetensors")
    sd, targets = make_lora("sdxl", seed=3, unet_style="compvis", alpha=2.0)
    for t in targets:
        if ".output_blocks.1." in t.key:
            sd[t.name + ".lora_up.weight"] = sd[t.name + ".lora_up.weight"] * torch.tensor(2.0)
    save_tensors(os.path.join(w.lora_dir, "mine.safetensors"), sd)
    w.networks.list_available_networks(w.lora_dir)
    w.use_pictures()
    w.start_ui()


def run(w, tmp_path, prompt=PROMPT, args=ANALYZER, **kw):
    return w.txt2img(prompt, lbw_args=args, outpath_grids=str(tmp_path / "grids"), **{**SIZE, **kw})


def spy(monkeypatch, name):
    """Capture what lib_merge.xy returned to the webui side (the grids' labels are drawn, not stored)."""
    from lib_merge.webui import analyzer_run
    real, seen = getattr(analyzer_run, name), []

    def wrapper(*a, **kw):
        seen.append(real(*a, **kw))
        return seen[-1]
    monkeypatch.setattr(analyzer_run, name, wrapper)
    return seen


def diff_percent(a: dict, b: dict, width=64, height=60) -> float:
    """Diff % of two pictures from their bands: lit columns differ by 100 in every channel, nothing else."""
    changed = sum(rows * abs(a[k][1] - b[k][1]) for k, (rows, _) in a.items())
    return 100.0 * changed / (width * height)


def lbw(weights) -> str:
    return "lbw=" + ",".join("0" if v == 0 else "1" for v in weights)


def test_seed_001_step_by_step(webui, tmp_path, monkeypatch):
    seed001(webui)
    results = spy(monkeypatch, "run_analyzer")
    # 3.1-3.3: <lora:mine:1:1:lbw=XYZ>, Effective Block Analyzer, Range 0,1, Blocks 12ALL; Generate
    jobs = []
    webui.script_callbacks.on_cfg_denoiser(lambda params: jobs.append(webui.shared.state.job_count))
    p, res = run(webui, tmp_path)
    assert not webui.errors.reported and webui.shared.state.interrupted is False
    # 4: 12 + 1 images: the generation itself is the baseline (every block at 1), then one per block at 0
    rendered = webui.processing.rendered
    assert len(rendered) == 13 and {r["seed"] for r in rendered} == {42}
    assert rendered[0]["prompt"] == "a girl <lora:mine:1:1:lbw=1,1,1,1,1,1,1,1,1,1,1,1>"
    for k, block in enumerate(BLOCKS12, 1):
        assert rendered[k]["prompt"] == f"a girl <lora:mine:1:1:{lbw(0 if b == block else 1 for b in BLOCKS12)}>"
    assert set(jobs) == {13}  # the progress bar counted every render from the start
    (result,) = results
    grid = result.seeds[0].grid
    want = {b: diff_percent(rendered[0]["bands"], rendered[k]["bands"]) for k, b in enumerate(BLOCKS12, 1)}
    assert {r.block: r.percents[0] for r in result.table} == pytest.approx(want)
    assert grid.layout.rows == 12 and grid.layout.col_labels == ("diff", "low: 0", "source: 1")
    assert grid.layout.row_labels == tuple(f"{b}\nDiff: {want[b]:.1f}%" for b in BLOCKS12)
    assert grid.layout.corner == "seed: 42"
    assert result.ranking[0].block == "OUT01" and not result.partial  # the block that matters most, on top
    assert all(want[b] > 0 for b in BLOCKS12)
    # the gallery: the generation's image, the grid, the bar chart, each with its infotext
    assert len(res.images) == 3 and res.images[1] is grid.image and res.images[2] is result.chart.image
    assert len(res.infotexts) == 3
    assert res.infotexts[1].startswith(PROMPT) and "LBW plot: Effective Block Analyzer" in res.infotexts[1]
    assert "LBW plot ranking: \"OUT01 " in res.infotexts[2]
    # saved like the webui saves grids, to p.outpath_grids, with the infotext in the PNG
    from modules import images
    saved = [s for s in images.saved if s["grid"]]
    assert [s["basename"] for s in saved] == ["lbw_analyzer", "lbw_analyzer_chart"]
    assert all(os.path.dirname(s["path"]) == str(tmp_path / "grids") for s in saved)
    with Image.open(saved[0]["path"]) as im:
        assert im.info["parameters"] == res.infotexts[1] and im.size == grid.image.size
    # 5: the user turns OUT01 down to 0.8 and generates without the plot
    baseline = rendered[0]["bands"]
    p, res = webui.txt2img("a girl <lora:mine:1:1:lbw=1,1,1,1,1,1,1,0.8,1,1,1,1>", **SIZE)
    assert len(res.images) == 1 and len(rendered) == 14
    bands = rendered[-1]["bands"]
    assert 0 < bands["OUT01"][1] < baseline["OUT01"][1]
    assert {b: v for b, v in bands.items() if b != "OUT01"} == {b: v for b, v in baseline.items() if b != "OUT01"}


def test_several_seeds_give_one_grid_each_and_a_chart_over_all(webui, tmp_path, monkeypatch):
    seed001(webui)
    results = spy(monkeypatch, "run_analyzer")
    p, res = run(webui, tmp_path, args=["analyzer", "0,1", "OUT00-OUT02", 2, 20, "white", True])
    rendered = webui.processing.rendered
    assert len(rendered) == 8 and [r["seed"] for r in rendered] == [42] * 4 + [43] * 4
    (result,) = results
    assert [s.seed for s in result.seeds] == [42, 43] and len(res.images) == 1 + 2 + 1
    assert result.seeds[0].grid.layout.cols == 3 and result.seeds[0].grid.layout.rows == 3  # swapped: blocks across
    assert result.seeds[0].grid.layout.col_labels[0].startswith("OUT00\nDiff: ")
    assert [r.block for r in result.table] == ["OUT00", "OUT01", "OUT02"] and all(len(r.percents) == 2 for r in result.table)


def test_interrupt_leaves_a_partial_grid(webui, tmp_path, monkeypatch):
    seed001(webui)
    results = spy(monkeypatch, "run_analyzer")
    rendered, state = webui.processing.rendered, webui.shared.state

    def interrupt_fifth_render(params):
        if len(rendered) == 4:
            state.interrupt()  # the Interrupt button, while the 5th image samples
    webui.script_callbacks.on_cfg_denoiser(interrupt_fifth_render)
    p, res = run(webui, tmp_path)
    assert len(rendered) == 5  # nothing rendered after the interrupt
    (result,) = results
    assert result.partial and [r.block for r in result.seeds[0].blocks] == ["BASE", "IN04", "IN05"]
    assert result.seeds[0].grid.layout.rows == 3  # the render that was cut short is left out
    assert len(res.images) == 3 and res.images[1] is result.seeds[0].grid.image
    assert "stopped (Interrupt) after 3 of 12 renders; the grid is partial" in res.comments
    assert "LBW plot status: stopped" in res.infotexts[1]


def test_stop_generating_lets_the_current_render_finish(webui, tmp_path, monkeypatch):
    seed001(webui)
    results = spy(monkeypatch, "run_analyzer")
    rendered, state = webui.processing.rendered, webui.shared.state
    webui.script_callbacks.on_cfg_denoiser(lambda params: len(rendered) == 4 and state.stop_generating())
    p, res = run(webui, tmp_path)
    (result,) = results
    assert len(rendered) == 5 and result.partial and len(result.seeds[0].blocks) == 4
    assert "stopped (stop generating) after 4 of 12 renders" in res.comments


def test_interrupt_during_the_generation_itself_starts_no_plot(webui, tmp_path):
    seed001(webui)
    state = webui.shared.state
    webui.script_callbacks.on_cfg_denoiser(lambda params: state.interrupt())
    p, res = run(webui, tmp_path)
    assert len(webui.processing.rendered) == 1 and len(res.images) == 1
    assert "stopped before the plot started" in res.comments


def test_xy_plot_renders_identical_cells_once(webui, tmp_path, monkeypatch):
    seed001(webui)
    grids = spy(monkeypatch, "xy_grids")
    args = ["XY plot", None, None, None, None, None, None, "values", "0,1", "Block ID", "IN04, OUT01", "seed", "42, 7"]
    p, res = run(webui, tmp_path, args=args)
    rendered = webui.processing.rendered
    # per seed: (0, IN04), (0, OUT01) and one all-ones render for the two value-1 cells; at seed 42 that
    # one is the generation itself
    assert len(rendered) == 6
    assert sorted((r["seed"], r["prompt"]) for r in rendered) == sorted(
        (s, f"a girl <lora:mine:1:1:{w}>") for s in (42, 7) for w in
        (lbw([1] * 12), lbw(0 if b == "IN04" else 1 for b in BLOCKS12), lbw(0 if b == "OUT01" else 1 for b in BLOCKS12)))
    (drawn,) = grids
    assert len(drawn) == 2 and len(res.images) == 1 + 2  # one grid per Z value
    layout = drawn[0].layout
    assert layout.col_labels == ("values: 0", "values: 1") and layout.row_labels == ("Block ID: IN04", "Block ID: OUT01")
    assert drawn[0].cells[0][1] == drawn[0].cells[1][1]  # the same render in both value-1 cells
    assert layout.corner.endswith("seed: 42") and "<lora:mine:1:1:lbw=XYZ>" in layout.corner.replace("\n", "")
    assert "LBW plot: XY plot" in res.infotexts[1] and "LBW plot Z type: seed" in res.infotexts[1]


def test_elements_axis_sets_the_xyz_elemental_preset(webui, tmp_path):
    seed001(webui)
    args = ["xy", None, None, None, None, None, None, "elements", '"OUT01::0", "OUT01:attn2:0"', "none", ""]
    p, res = run(webui, tmp_path, args=args)
    rendered = webui.processing.rendered
    assert not webui.errors.reported and len(rendered) == 3 and len(res.images) == 2
    assert all(r["prompt"].endswith("lbw=1,1,1,1,1,1,1,1,1,1,1,1:lbwe=XYZ>") for r in rendered[1:])
    off, attn2_off = rendered[1]["bands"]["OUT01"][1], rendered[2]["bands"]["OUT01"][1]
    assert off == 0 < attn2_off < rendered[0]["bands"]["OUT01"][1]


def test_nothing_cached_is_written(webui, tmp_path):
    seed001(webui)
    webui.txt2img("a girl <lora:mine:1:1>", **SIZE)
    take = (lambda: _a1111_cache_state(webui.networks)) if webui.flavor == "a1111" else \
        (lambda: _forge_cache_state(webui.shared.sd_model))
    before = copy.deepcopy(take()) if webui.is_forge else take()
    p, res = run(webui, tmp_path)
    assert len(res.images) == 3
    webui.txt2img("a girl <lora:mine:1:1>", **SIZE)
    assert _equal(take(), before)
    plain = webui.processing.rendered[-1]["bands"]
    assert plain == webui.processing.rendered[0]["bands"]  # the plain LoRA again: the plot left nothing behind


def test_with_the_plot_off_lbw_xyz_is_every_block_at_one_and_the_comment_says_how(webui, tmp_path):
    seed001(webui)
    p, res = run(webui, tmp_path, args=["off"])
    assert len(res.images) == 1 and "choose XY plot or Effective Block Analyzer" in res.comments
    webui.txt2img("a girl <lora:mine:1:1:lbw=ALL>", **SIZE)
    assert webui.processing.rendered[0]["bands"] == webui.processing.rendered[1]["bands"]


@pytest.mark.parametrize("args,kw,reason", [
    (ANALYZER, {"enabled": False}, "needs block weights, but they are switched off"),
    (["analyzer", "0,1", "17ALL"], {}, "SD1/SD2 LoRA layout, but the loaded model is SDXL"),
])
def test_a_plot_that_cannot_run_stops_the_job_and_says_why(webui, tmp_path, args, kw, reason):
    seed001(webui)
    p, res = run(webui, tmp_path, args=args, **kw)
    assert res.images == [] and webui.processing.rendered == [] and webui.shared.state.interrupted
    assert reason in res.comments and reason in p.extra_generation_params["LBW error"]


def test_the_plot_waits_for_no_other_script(webui, tmp_path):
    """With a selectable script (the X/Y/Z plot) chosen, the accordion's plot does not run inside it."""
    seed001(webui)
    p = webui.processing.StableDiffusionProcessingTxt2Img(prompt=PROMPT, **SIZE)
    runner, args = webui.scripts.runner_with(webui.lbw_class(), [True, *ANALYZER])
    p.scripts, p.script_args = runner, [3, *args[1:]]  # script_args[0]: the selected script's index
    webui.shared.state.begin()
    res = webui.processing.process_images(p)
    assert res.images == [] and "another script (such as the X/Y/Z plot) is selected" in res.comments


def test_without_lbw_xyz_nothing_changes(webui, tmp_path):
    seed001(webui)
    p, res = run(webui, tmp_path, prompt="a girl <lora:mine:1:1:lbw=OUTD>")
    assert len(res.images) == 1 and len(webui.processing.rendered) == 1 and not res.comments
