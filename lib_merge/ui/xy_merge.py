"""The merge XY plot: plan the cells, merge once per merged model, render each cell, draw the grids.

Plain functions, no gradio; the tab's accordion (xy_panel.py) and the tests call the same code.

    plot = plan_plot([("alpha", "0, 0.5, 1"), ("seed", "1, 2")], MergeContext(arch=SD1))
    result = run_plot(plot, recipe_for=..., load=..., render=..., cancel=token)
    result.grids[0].image                                  # X across, Y down, the recipe in the corner

`run_plot` takes the pieces as callables, so any renderer works (the webui's sampler through a
`Host`, or a deterministic fake in tests); `xy_host.run_on_host` wires them to a `Host` and the tab's state.

Memory stays flat across cells: every merge of a plot writes into one `ReusingStateDict`, whose
tensors keep their storage from one merge to the next. Measured by bench/bench_xy_memory.py over 25
real-size SD1.5 merges: RssAnon stays within a 60-77 MB band (trend ~0 MB per cell), where one plain
dict whose tensors each merge replaces grows by ~2 GB (allocator fragmentation; gc.collect() does not
help, there is no garbage) and a new dict per merge by ~4.5 GB. Nothing else holds a merged model:
the host copies the weights into the running model, and the plot empties the dict at the end.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, MutableMapping, Sequence

import torch

from ..merge.engine import CancelToken, MergeResult, merge as engine_merge
from ..errors import Cancelled, ParseError
from ..merge.recipe import Recipe
from ..xy import (Axis, AxisKind, AxisValue, Cell, MergeContext, MergeSettings, apply_to_recipe, parse_axis,
                  plan_cells, run_cells, xy_grids)
from ..xy.diff import DEFAULT_COLOUR, DEFAULT_THRESHOLD
from ..xy.grid import Grid
from ..xy.text import fmt
from .form import FormValues, build_recipe
from .host import Host, Progress

log = logging.getLogger("lib_merge")

AXIS_NAMES = ("X axis", "Y axis", "Z axis")
MAX_SEED = 4294967294  # the webui's own random seeds stay below this (xyz_grid fix_axis_seeds)
Image = Any  # a PIL image
Merge = Callable[..., MergeResult]  # lib_merge.merge.engine.merge's signature


class ReusingStateDict(dict):
    """A merge output whose tensors keep their storage from one merge to the next.

    The engine's DictSink puts a fresh `torch.empty` under a key, then fills `sd[key]` chunk by
    chunk. When the key already holds a tensor of the same shape, dtype and device, that tensor
    stays and receives the new values, and the fresh one is dropped at once (one tensor's worth,
    transient). So 25 merges allocate one model's memory, not 25, and the allocator has nothing to
    fragment. tests/test_ui_xy_merge.py checks that a merge into a used dict equals a fresh merge,
    which guards this contract with the engine.
    """

    def __init__(self) -> None:
        super().__init__()
        self._written: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        self._written.add(key)
        old = self.get(key)
        if (isinstance(old, torch.Tensor) and isinstance(value, torch.Tensor) and old is not value
                and old.shape == value.shape and old.dtype == value.dtype and old.device == value.device):
            return
        super().__setitem__(key, value)

    def begin(self) -> None:
        """Before a merge: remember which keys it writes."""
        self._written = set()

    def end(self) -> None:
        """After a merge: drop the keys it did not write (a model A axis may change the key set), so
        nothing of an earlier merge is ever loaded."""
        for key in [k for k in self if k not in self._written]:
            del self[key]


# --- the plot: axes, cells, recipes ------------------------------------------------------------------

@dataclass(frozen=True)
class Plot:
    x: Axis | None
    y: Axis | None
    z: Axis | None
    cells: tuple[Cell, ...]
    context: MergeContext

    @property
    def merge_keys(self) -> list[MergeSettings]:
        """The distinct merged models, in the order they are merged."""
        seen: dict[MergeSettings, None] = {}
        for c in self.cells:
            if c.merge_key is not None:
                seen.setdefault(c.merge_key, None)
        return list(seen)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(len(a) if a is not None else 1 for a in (self.x, self.y, self.z))  # type: ignore[return-value]

    def describe(self) -> str:
        """`X: alpha (5) · Y: seed (2)` for status lines and the grid's PNG text."""
        parts = [f"{n[0]}: {a.title} ({len(a)})" for n, a in zip(AXIS_NAMES, (self.x, self.y, self.z)) if a is not None]
        return " · ".join(parts)


def resolve_seeds(axis: Axis | None, rng: random.Random | None = None) -> Axis | None:
    """A seed axis with every -1 replaced by a random seed, as the webui's XYZ plot does: cells must
    know their seed before planning, or all the -1 cells would be one render."""
    if axis is None or axis.kind is not AxisKind.SEED or all(v.value != -1 for v in axis.values):
        return axis
    rng = rng or random.Random()
    values = []
    for v in axis.values:
        s = rng.randrange(MAX_SEED) if v.value == -1 else v.value
        values.append(AxisValue(str(s), s) if v.value == -1 else v)
    return dataclasses.replace(axis, values=tuple(values))


def plan_plot(axes: Sequence[tuple[str, str]], context: MergeContext, rng: random.Random | None = None) -> Plot:
    """Parse up to three (type, values text) pairs, X first (type: an AxisKind id or label; missing
    axes are none), and plan the cells."""
    if len(axes) > 3:
        raise ValueError(f"expected at most three axes (X, Y, Z), got {len(axes)}")
    axes = list(axes) + [("none", "")] * (3 - len(axes))
    parsed = [resolve_seeds(parse_axis(kind or "none", text or "", context, name), rng)
              for (kind, text), name in zip(axes, AXIS_NAMES)]
    x, y, z = parsed
    if x is None and y is None and z is None:
        raise ParseError("every axis is none", "pick an axis type for X (e.g. alpha) and type its values")
    return Plot(x, y, z, tuple(plan_cells(x, y, z, context=context)), context)


def cell_form(form: FormValues, s: MergeSettings) -> FormValues:
    """The tab's form with a cell's models and calc mode: the method (and so how many models the
    merge takes) follows the calc mode, so both go through the form like a typed change would."""
    kw: dict[str, Any] = {}
    for slot in ("model_a", "model_b", "model_c"):
        if getattr(s, slot) is not None:
            kw[slot] = getattr(s, slot)
    if s.calc is not None:
        kw["calc"] = s.calc
    return form.replace(**kw) if kw else form


def cell_recipe(form: FormValues, s: MergeSettings, host: Host, presets_file: str = "", presets: Any = None) -> Recipe:
    """The recipe of one merge key: the form, then the cell's overrides (lib_merge.xy.apply_to_recipe).
    Models and calc mode reach the recipe through the form (names become paths there)."""
    f = cell_form(form, s)
    base = build_recipe(f, host, presets_file)
    rest = dataclasses.replace(s, model_a=None, model_b=None, model_c=None, calc=None)
    return apply_to_recipe(rest, base, arch_of(base.models[0]), presets)


def arch_of(path: str) -> Any:
    """The architecture of a model file, from its header."""
    from ..arch import detect
    from ..io.models import read_shapes
    tensors, _ = read_shapes(path)
    return detect({k: v.shape for k, v in tensors.items()}, os.path.basename(path)).arch


def settings_label(s: MergeSettings) -> str:
    """A short text for what a merge key changes (`alpha 0.3 · MBW alpha GRAD_V`): the load label."""
    parts = []
    for name, attr in (("alpha", "alpha"), ("beta", "beta"), ("MBW alpha", "alpha_blocks"), ("MBW beta", "beta_blocks"),
                       ("A", "model_a"), ("B", "model_b"), ("C", "model_c"), ("elemental", "elemental_add"),
                       ("calc", "calc")):
        v = getattr(s, attr)
        if v is not None:
            parts.append(f"{name} {fmt(v) if isinstance(v, float) else v}")
    for which, pins in (("alpha", s.alpha_pins), ("beta", s.beta_pins)):
        if pins:
            parts.append(f"{which} {fmt(pins[0][1])} at {' '.join(b for b, _ in pins)}")
    if s.adjust is not None:
        parts.append("adjust " + ",".join(fmt(v) for v in s.adjust))
    if s.adjust_pin is not None:
        parts.append(f"{s.adjust_pin[0]} {fmt(s.adjust_pin[1])}")
    return " · ".join(parts) or "the tab's recipe"


def recipe_caption(recipe: Recipe) -> str:
    """The recipe in a grid's corner: the models, the method and every setting that is not empty."""
    from ..methods import resolve
    method = resolve(recipe.mode, recipe.calc)
    lines = [" + ".join(os.path.basename(m) for m in recipe.models[:method.n_models])]
    head = [method.label, f"alpha {fmt(recipe.effective_alpha)}"]
    uses_beta = method.mode in ("triple_sum", "sum_twice") or method.id in ("extract", "tensor", "tensor2")
    if uses_beta or recipe.beta_blocks:
        head.append(f"beta {fmt(recipe.beta)}")
    if method.id == "extract":
        head.append(f"gamma {fmt(recipe.gamma)}")
    lines.append(" · ".join(head))
    for name, value in (("alpha blocks", recipe.alpha_blocks), ("beta blocks", recipe.beta_blocks),
                        ("elemental", " / ".join(ln.strip() for ln in recipe.elemental.splitlines() if ln.strip())),
                        ("adjust", recipe.adjust), ("include", recipe.include), ("exclude", recipe.exclude)):
        if value.strip():
            lines.append(f"{name}: {value.strip()}")
    if recipe.seed is not None:
        lines.append(f"random seed {recipe.seed}")
    return "\n".join(lines)


# --- running ------------------------------------------------------------------------------------------

@dataclass
class PlotResult:
    grids: list[Grid]
    partial: bool  # stopped before every cell was rendered
    merges: int  # merges run (one per merge key reached)
    renders: int  # images rendered
    caption: str  # the recipe text in the grids' corner
    seconds: float = 0.0
    axes: str = ""  # `X: alpha (5) · Y: seed (2)`
    saved: list[str] = field(default_factory=list)  # paths of saved grids

    @property
    def images(self) -> list[Image]:
        return [g.image for g in self.grids]


Load = Callable[[MutableMapping[str, torch.Tensor], MergeSettings, Recipe], None]
Render = Callable[[MergeSettings], Image]


def run_plot(plot: Plot, *, recipe_for: Callable[[MergeSettings], Recipe], load: Load, render: Render,
             merge: Merge = engine_merge, cancel: CancelToken | None = None, progress: Progress | None = None,
             caption: str = "", threshold: float = DEFAULT_THRESHOLD,
             colour: tuple[int, int, int] = DEFAULT_COLOUR, merge_kw: dict[str, Any] | None = None) -> PlotResult:
    """Merge once per merge key, `load` the merged state dict, `render` every cell, draw the grids.

    Every merge key's recipe is built first, so a mistake in any value fails before the first merge.
    `cancel` stops between renders and inside a merge (Cancelled leaves a partial plot, not an
    error); a render returning None also stops. The grids show what was rendered, grey elsewhere.
    """
    t0 = time.perf_counter()
    cancel = cancel or CancelToken()
    recipes = {key: recipe_for(key) for key in plot.merge_keys}
    keys = list(recipes)
    buffer = ReusingStateDict()
    counts = {"merges": 0, "renders": 0}
    stopped = False

    def say(done: float, what: str) -> None:
        if progress is not None:
            progress(int(done * 1000), 1000 * len(plot.cells), what)

    def prepare(key: MergeSettings) -> None:
        nonlocal stopped
        n = keys.index(key)
        step = counts["renders"]
        say(step, f"merge {n + 1}/{len(keys)}")

        def merge_progress(done: int, total: int, what: str) -> None:
            say(step + (done / total if total else 0) * 0.99, f"merge {n + 1}/{len(keys)}: {what}")
        buffer.begin()
        try:
            result = merge(recipes[key], buffer, cancel=cancel, progress=merge_progress, **(merge_kw or {}))
        except Cancelled:
            stopped = True
            return
        buffer.end()
        counts["merges"] += 1
        load(result.state_dict if result.state_dict is not None else buffer, key, recipes[key])

    def draw(s: MergeSettings) -> Image:
        say(counts["renders"], f"render {counts['renders'] + 1}/{len(plot.cells)}")
        img = render(s)
        if img is None or cancel.cancelled:
            return None  # an interrupted render is not a result
        counts["renders"] += 1
        return img

    try:
        run = run_cells(plot.cells, draw, prepare=prepare, should_stop=lambda: stopped or cancel.cancelled)
    finally:
        buffer.clear()  # the running model has its own copy; keep nothing
    grids = xy_grids(plot.x, plot.y, plot.z, plot.cells, run.images, recipe=caption, threshold=threshold,
                     colour=colour) if run.images else []
    return PlotResult(grids, run.partial, counts["merges"], counts["renders"], caption, time.perf_counter() - t0,
                      plot.describe())
