"""The merge XY plot on a Host: the tab's form and state in, grids saved by the host (or as PNGs in the
data folder), a status line out. The plot itself (plan, merges, renders, grids) is xy_merge.py's."""
from __future__ import annotations

import dataclasses
import logging
import os
import random
from dataclasses import dataclass
from typing import Any, MutableMapping

import torch

from ..errors import MergeError
from ..merge.engine import merge as engine_merge, plan_merge
from ..merge.recipe import Recipe
from ..xy import MergeContext, MergeSettings
from ..xy.diff import DEFAULT_COLOUR, DEFAULT_THRESHOLD
from ..xy.text import fmt
from .form import FormValues
from .host import GenSettings, Host, Progress
from .xy_merge import (AXIS_NAMES, MAX_SEED, Image, Merge, Plot, PlotResult, arch_of, cell_recipe, plan_plot,
                       recipe_caption, run_plot, settings_label)

log = logging.getLogger("lib_merge")


def grid_info(plot: Plot, caption: str, gen: GenSettings | None = None) -> str:
    """The PNG text of a saved grid: the recipe, the axes with their values, the render settings."""
    lines = [caption, ""]
    for name, a in zip(AXIS_NAMES, (plot.x, plot.y, plot.z)):
        if a is not None:
            lines.append(f"{name[0]} type: {a.title}; {name[0]} values: {a.text.strip()}")
    if gen is not None:
        lines.append(f"Prompt: {gen.prompt}; Negative prompt: {gen.negative_prompt}; Steps: {gen.steps}; "
                     f"Sampler: {gen.sampler_name}; CFG scale: {fmt(gen.cfg_scale)}; Seed: {gen.seed}; "
                     f"Size: {gen.width}x{gen.height}")
    return "\n".join(lines)


def save_png(image: Image, folder: str, info: str, stem: str = "blockmerge_xy") -> str:
    """Save a grid as `<folder>/<stem>-NNNNN.png` with the info as its `parameters` text (as the
    webui stores it), for hosts without a grid folder of their own."""
    from PIL.PngImagePlugin import PngInfo
    os.makedirs(folder, exist_ok=True)
    taken = [f for f in os.listdir(folder) if f.startswith(stem + "-") and f.endswith(".png")]
    n = 1 + max((int(f[len(stem) + 1:-4]) for f in taken if f[len(stem) + 1:-4].isdigit()), default=0)
    path = os.path.join(folder, f"{stem}-{n:05d}.png")
    meta = PngInfo()
    meta.add_text("parameters", info)
    image.save(path, pnginfo=meta)
    return path


@dataclass(frozen=True)
class PlotRequest:
    """What the accordion sends: the tab's form, the three axes, the txt2img settings, the checker's
    threshold and colour, and whether to bring back the selected checkpoint at the end."""
    form: FormValues
    axes: tuple[tuple[str, str], tuple[str, str], tuple[str, str]]
    gen: GenSettings = GenSettings()
    threshold: float = DEFAULT_THRESHOLD
    colour: tuple[int, int, int] = DEFAULT_COLOUR
    restore: bool = True


def merge_context(form: FormValues, host: Host, presets: Any) -> MergeContext:
    """The context the axis values are read against: model A's architecture, presets, model names."""
    if not form.model_a:
        raise MergeError("no model A is picked", "pick model A (the base model) in the first dropdown")
    return MergeContext(arch=arch_of(host.checkpoint_path(form.model_a)), presets=presets,
                        models=tuple(host.checkpoints()))


def run_on_host(host: Host, state: Any, request: PlotRequest, progress: Progress | None = None,
                merge: Merge = engine_merge, rng: random.Random | None = None) -> PlotResult:
    """The accordion's Run: one plot at a time per tab (Stop sets the tab's token), grids saved by
    the host (`host.save_grid(image, info)` when it has one, else PNGs in `<data folder>/xy_grids`)."""
    if not host.can_generate:
        raise MergeError(f"the {host.name} tab cannot generate images", "run the XY plot inside the webui")
    presets = state.presets()
    context = merge_context(request.form, host, presets)
    plot = plan_plot(request.axes, context, rng)
    gen = request.gen
    if gen.seed is None or int(gen.seed) < 0:  # one seed for every cell without a seed axis
        gen = dataclasses.replace(gen, seed=(rng or random.Random()).randrange(MAX_SEED))
    form = request.form
    try:
        caption = recipe_caption(cell_recipe(form, MergeSettings(), host, state.presets_file, presets))
    except MergeError:  # the form lacks what an axis supplies (a model, a calc mode): caption the first cell
        caption = recipe_caption(cell_recipe(form, plot.merge_keys[0], host, state.presets_file, presets))

    def recipe_for(key: MergeSettings) -> Recipe:
        r = cell_recipe(form, key, host, state.presets_file, presets)
        plan_merge(r, presets)  # reads headers only: every value is checked before the first merge
        return r

    loaded = []

    def load(sd: MutableMapping[str, torch.Tensor], key: MergeSettings, recipe: Recipe) -> None:
        host.load_state_dict(sd, base_name=key.model_a or form.model_a, label=f"XY plot: {settings_label(key)}")
        loaded.append(key)

    def render(s: MergeSettings) -> Image:
        g = dataclasses.replace(gen, batch_size=1, seed=s.seed if s.seed is not None else gen.seed,
                                prompt=s.prompt if s.prompt is not None else gen.prompt)
        out = host.generate(g)
        return out.images[0] if out.images else None

    with state.running() as token:
        try:
            result = run_plot(plot, recipe_for=recipe_for, load=load, render=render, merge=merge, cancel=token,
                              progress=progress, caption=caption, threshold=request.threshold, colour=request.colour,
                              merge_kw={"hash_models": False, "presets": presets})
        finally:
            if request.restore and loaded:
                try:
                    host.restore()
                except MergeError as e:  # the plot worked: say why the model stays merged
                    log.warning("blockmerge: XY plot: could not restore the checkpoint: %s", e)
    info = grid_info(plot, caption, gen)
    saver = getattr(host, "save_grid", None)
    for g in result.grids:
        if saver is not None:
            path = saver(g.image, info)
        else:
            path = save_png(g.image, os.path.join(state.data_dir, "xy_grids"), info)
        if path:
            result.saved.append(path)
    return result


def summary(result: PlotResult) -> str:
    """The status line after a plot."""
    verb = "■ Stopped: partial grid" if result.partial else "✓ XY plot done"
    s = (f"{verb} — {result.renders} image{'s' if result.renders != 1 else ''}, {result.merges} merge"
         f"{'s' if result.merges != 1 else ''} in {result.seconds:.1f} s")
    if result.axes:
        s += f" ({result.axes})"
    if result.saved:
        s += "; saved " + ", ".join(os.path.basename(p) for p in result.saved)
    return s + "."
