"""The plan of an XY(Z) plot: the concrete settings of every cell, each distinct render once.

`plan_cells(x, y, z, context)` returns one `Cell` per distinct settings value. A cell lists every
grid position `(x, y, z)` it fills, so a plot whose axes repeat a combination renders it once.
For merge plots, cells that differ only by seed or prompt share a `merge_key`, and cells are
ordered so that equal merge keys are consecutive: the caller merges once per key (see `run_cells`).

How the axes combine (REFERENCE §10):
- LoRA: the weights start from Original Weights (axis or context); a `values` number replaces the
  blocks named by Block ID (every block without a Block ID axis); a `values` list or preset gives
  the named blocks its own value at that block (every block without a Block ID axis).
  Block ID needs a values axis: it only says where a value goes.
- Merge: alpha / beta / alpha-and-beta set the plain ratio, or, with a pinpoint-blocks axis, the
  ratio of the named blocks only (`alpha_pins`); MBW axes replace the weight strings; pinpoint
  element and the effective elemental checker append an elemental entry; the checker also plans an
  unchanged baseline to diff against; adjust replaces the 8 adjust numbers; pinpoint adjust sets one
  of them (`NAME:value`, or a bare `NAME` with its value from an alpha axis). `None` in a setting
  means "the recipe's own".
Seeds are taken as given: resolve the webui's `-1` (random) to a number before planning, or the
cells that share it are one render.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence, Union

from ..errors import ParseError
from .axes import ADJUST_NAMES, Axis, AxisKind, Context, LoraContext, MergeContext
from .blocks import BlockSet
from .text import fmt

MAX_CELLS = 10_000
Position = tuple[int, int, int]  # (x, y, z) value indices; 0 for an absent axis


@dataclass(frozen=True)
class LoraSettings:
    """One LoRA render: the `lbw=` list of the plot's layout, the seed, and elemental directives."""
    weights: tuple[float, ...]
    seed: int | None = None  # None: the caller's own seed
    elements: str | None = None  # `BLOCKS:ELEMENTS:RATIO` directives, None: none added

    @property
    def lbw(self) -> str:
        """The weights as they are written after `lbw=`."""
        return ",".join(fmt(v) for v in self.weights)


@dataclass(frozen=True)
class MergeSettings:
    """Overrides of one merge + render; None (or empty) keeps the recipe's own setting."""
    alpha: float | None = None
    beta: float | None = None
    alpha_blocks: str | None = None  # an MBW weight string or preset name
    beta_blocks: str | None = None
    alpha_pins: tuple[tuple[str, float], ...] = ()  # (block, ratio): these blocks only
    beta_pins: tuple[tuple[str, float], ...] = ()
    model_a: str | None = None
    model_b: str | None = None
    model_c: str | None = None
    elemental_add: str | None = None  # appended after the recipe's elemental entries
    adjust: tuple[float, ...] | None = None  # all 8 numbers
    adjust_pin: tuple[str, float] | None = None  # one parameter, applied after `adjust`
    calc: str | None = None
    seed: int | None = None  # render only
    prompt: str | None = None  # render only

    @property
    def merge_key(self) -> "MergeSettings":
        """The same settings without what only the render uses: equal keys share one merged model."""
        return dataclasses.replace(self, seed=None, prompt=None)


Settings = Union[LoraSettings, MergeSettings]


@dataclass(frozen=True)
class Cell:
    settings: Settings
    positions: tuple[Position, ...]  # grid positions filled by this render; () for a baseline only
    merge_key: MergeSettings | None = None  # None for LoRA plots
    baseline: Settings | None = None  # effective elemental checker: the render to diff against

    @property
    def key(self) -> Hashable:
        return self.settings


def _axes(x: Axis | None, y: Axis | None, z: Axis | None) -> list[Axis | None]:
    axes = [x, y, z]
    seen: dict[AxisKind, str] = {}
    for a in axes:
        if a is None:
            continue
        if a.kind in seen:
            raise ParseError(f"{seen[a.kind]} and {a.name} are both {a.kind.label}",
                             "use each axis type once; put several values on one axis instead")
        seen[a.kind] = a.name
    return axes


def plan_cells(x: Axis | None, y: Axis | None = None, z: Axis | None = None, *,
               context: Context) -> list[Cell]:
    """Every distinct render of the plot, grouped by merge key, with the positions it fills."""
    axes = _axes(x, y, z)
    sizes = [len(a) if a is not None else 1 for a in axes]
    total = sizes[0] * sizes[1] * sizes[2]
    if total > MAX_CELLS:
        raise ParseError(f"the plot has {total} cells ({' x '.join(map(str, sizes))}), more than {MAX_CELLS}",
                         "use fewer values per axis")
    resolve = _resolve_lora if isinstance(context, LoraContext) else _resolve_merge
    kinds = {a.kind: a for a in axes if a is not None}
    _check_combination(kinds, context)
    positions: dict[Settings, list[Position]] = {}
    baselines: dict[Settings, Settings] = {}
    # the webui's order: z slowest, x fastest
    for zi, yi, xi in itertools.product(range(sizes[2]), range(sizes[1]), range(sizes[0])):
        picked = {a.kind: a.values[i].value for a, i in zip(axes, (xi, yi, zi)) if a is not None}
        s = resolve(picked, context)
        if AxisKind.EFFECTIVE_ELEMENTAL in picked:
            base = dataclasses.replace(s, elemental_add=None)
            baselines[s] = base
            positions.setdefault(base, [])  # rendered before the cells diffed against it
        positions.setdefault(s, []).append((xi, yi, zi))
    return _group([Cell(s, tuple(p), s.merge_key if isinstance(s, MergeSettings) else None, baselines.get(s))
                   for s, p in positions.items()])


def _group(cells: list[Cell]) -> list[Cell]:
    """Stable grouping: cells of one merge key together, keys in order of first appearance."""
    order: dict[Any, int] = {}
    for c in cells:
        order.setdefault(c.merge_key, len(order))
    return sorted(cells, key=lambda c: order[c.merge_key])


def _check_combination(kinds: Mapping[AxisKind, Axis], ctx: Context) -> None:
    if AxisKind.BLOCK_ID in kinds and AxisKind.VALUES not in kinds:
        a = kinds[AxisKind.BLOCK_ID]
        raise ParseError(f"{a.name} (Block ID) says which blocks change but no values axis says to what",
                         "put values (e.g. 0,0.5,1) on another axis")
    ratio_axes = [k for k in (AxisKind.ALPHA, AxisKind.BETA, AxisKind.ALPHA_BETA) if k in kinds]
    if AxisKind.PINPOINT_BLOCKS in kinds and not ratio_axes:
        a = kinds[AxisKind.PINPOINT_BLOCKS]
        raise ParseError(f"{a.name} (pinpoint blocks) needs an alpha, beta or alpha-and-beta axis",
                         "put the ratios (e.g. 0,0.5,1) on another axis")
    if AxisKind.PINPOINT_ELEMENT in kinds and AxisKind.EFFECTIVE_ELEMENTAL in kinds:
        raise ParseError("pinpoint element and effective elemental checker both append an elemental entry",
                         "use one of them")
    pa = kinds.get(AxisKind.PINPOINT_ADJUST)
    bare = [v.value[1] is None for v in pa.values] if pa is not None else []
    if any(bare) and not all(bare):
        raise ParseError(f"{pa.name} (pinpoint adjust) mixes NAME:value entries with bare names",
                         "give every entry a value (CONT:2), or none and put the values on an alpha axis")
    if any(bare):
        if AxisKind.ALPHA not in kinds:
            raise ParseError(f"{pa.name} (pinpoint adjust) has a parameter without a value and no alpha axis",
                             "write NAME:value (e.g. CONT:2), or put the values on an alpha axis")
        if AxisKind.PINPOINT_BLOCKS in kinds:
            raise ParseError("the alpha axis cannot feed both pinpoint blocks and pinpoint adjust",
                             "write pinpoint adjust values as NAME:value (e.g. CONT:2)")


def _resolve_lora(picked: Mapping[AxisKind, Any], ctx: LoraContext) -> LoraSettings:
    weights = list(picked.get(AxisKind.ORIGINAL_WEIGHTS, ctx.base_weights))
    value = picked.get(AxisKind.VALUES)
    blocks: BlockSet | None = picked.get(AxisKind.BLOCK_ID)
    if value is not None:
        chosen = set(blocks.chosen) if blocks is not None else set(ctx.blocks)
        for i, b in enumerate(ctx.blocks):
            if b in chosen:
                weights[i] = float(value[i]) if isinstance(value, tuple) else float(value)
    return LoraSettings(tuple(weights), picked.get(AxisKind.SEED), picked.get(AxisKind.ELEMENTS))


def _resolve_merge(picked: Mapping[AxisKind, Any], ctx: MergeContext) -> MergeSettings:
    kw: dict[str, Any] = {}
    pins: BlockSet | None = picked.get(AxisKind.PINPOINT_BLOCKS)
    pin_adjust = picked.get(AxisKind.PINPOINT_ADJUST)
    alpha = picked.get(AxisKind.ALPHA)
    beta = picked.get(AxisKind.BETA)
    if AxisKind.ALPHA_BETA in picked:
        alpha, beta = picked[AxisKind.ALPHA_BETA]
    if pin_adjust is not None and pin_adjust[1] is None:
        kw["adjust_pin"] = (pin_adjust[0], alpha)  # the alpha axis feeds the adjust parameter
        alpha = None
    elif pin_adjust is not None:
        kw["adjust_pin"] = pin_adjust
    for name, v in (("alpha", alpha), ("beta", beta)):
        if v is None:
            continue
        if pins is not None:
            kw[f"{name}_pins"] = tuple((b, float(v)) for b in pins.chosen)
        else:
            kw[name] = float(v)
    simple = {AxisKind.MBW_ALPHA: "alpha_blocks", AxisKind.MBW_BETA: "beta_blocks", AxisKind.MODEL_A: "model_a",
              AxisKind.MODEL_B: "model_b", AxisKind.MODEL_C: "model_c", AxisKind.PINPOINT_ELEMENT: "elemental_add",
              AxisKind.EFFECTIVE_ELEMENTAL: "elemental_add", AxisKind.ADJUST: "adjust",
              AxisKind.CALC_MODE: "calc", AxisKind.SEED: "seed", AxisKind.PROMPT: "prompt"}
    for kind, attr in simple.items():
        if kind in picked:
            kw[attr] = picked[kind]
    return MergeSettings(**kw)


# --- running a plan ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunResult:
    images: Mapping[Settings, Any]  # settings -> PIL image, for every cell rendered
    partial: bool  # stopped before every cell was rendered


def run_cells(cells: Sequence[Cell], render: Callable[[Settings], Any], *,
              prepare: Callable[[MergeSettings], None] | None = None,
              should_stop: Callable[[], bool] = lambda: False,
              progress: Callable[[int, int, str], None] | None = None) -> RunResult:
    """Render each cell once, in plan order. `prepare(merge_key)` runs before the first cell of each
    merge key (merge plots: merge and load the model there, once). `should_stop()` is checked before
    every merge and render; a render returning None also stops (the webui's Interrupt)."""
    images: dict[Settings, Any] = {}
    current: Any = object()
    total = len(cells)
    for n, cell in enumerate(cells):
        if should_stop():
            return RunResult(images, True)
        if prepare is not None and cell.merge_key is not None and cell.merge_key != current:
            prepare(cell.merge_key)
            current = cell.merge_key
            if should_stop():
                return RunResult(images, True)
        if progress is not None:
            progress(n, total, f"cell {n + 1}/{total}")
        img = render(cell.settings)
        if img is None:
            return RunResult(images, True)
        images[cell.settings] = img
    if progress is not None:
        progress(total, total, "done")
    return RunResult(images, False)


# --- helpers for the caller's merge ---------------------------------------------------------------------

def pinned(values: Sequence[float], blocks: Sequence[str], pins: Sequence[tuple[str, float]]) -> tuple[float, ...]:
    """Block weights (one per block, BASE first) with the pinned blocks replaced."""
    out = list(values)
    index = {b: i for i, b in enumerate(blocks)}
    for b, v in pins:
        out[index[b]] = v
    return tuple(out)


def adjust_values(base: Sequence[float] | None, s: MergeSettings) -> tuple[float, ...]:
    """The 8 adjust numbers of a cell: the cell's (or the recipe's `base`, or zeros), then its pin."""
    vals = list(s.adjust if s.adjust is not None else (base if base is not None else (0.0,) * 8))
    if s.adjust_pin is not None:
        vals[ADJUST_NAMES.index(s.adjust_pin[0])] = s.adjust_pin[1]
    return tuple(float(v) for v in vals)


def apply_to_recipe(s: MergeSettings, recipe: Any, arch: Any, presets: Any = None) -> Any:
    """A `lib_merge.merge.recipe.Recipe` with a cell's merge settings applied (seed and prompt are for the
    render and stay out). Pins are written into full weight strings, so the recipe is self-contained."""
    from ..merge.presets import PresetBook
    from ..merge.weights import tokens_for

    kw: dict[str, Any] = {}
    for attr in ("alpha", "beta", "alpha_blocks", "beta_blocks", "calc"):
        v = getattr(s, attr)
        if v is not None:
            kw[attr] = v
    models = list(recipe.models)
    for i, m in enumerate((s.model_a, s.model_b, s.model_c)):
        if m is None:
            continue
        if i > len(models):
            raise ParseError(f"the plot sets model {'ABC'[i]} but the recipe has no model {'ABC'[i - 1]}",
                             f"choose model {'ABC'[i - 1]} first")
        if i == len(models):
            models.append(m)
        else:
            models[i] = m
    kw["models"] = tuple(models)
    for which, pins in (("alpha", s.alpha_pins), ("beta", s.beta_pins)):
        if not pins:
            continue
        spec = kw.get(f"{which}_blocks", getattr(recipe, f"{which}_blocks"))
        plain = kw.get(which, getattr(recipe, "effective_alpha" if which == "alpha" else which))
        book = presets or PresetBook()
        toks = tokens_for(spec, arch, book, f"{which} blocks") if spec else [fmt(plain)] * len(arch.blocks)
        if len(toks) == len(arch.blocks) - 1:
            toks = [fmt(plain), *toks]
        index = arch.block_index
        for b, v in pins:
            toks[index[b]] = fmt(v)
        kw[f"{which}_blocks"] = ",".join(toks)
    if s.elemental_add is not None:
        kw["elemental"] = "\n".join(t for t in (recipe.elemental.strip(), s.elemental_add) if t)
    if s.adjust is not None or s.adjust_pin is not None:
        base = None
        if recipe.adjust.strip():
            from .axes import parse_adjust_values
            base = parse_adjust_values(recipe.adjust, "the recipe's adjust")
        kw["adjust"] = ",".join(fmt(v) for v in adjust_values(base, s))
    return recipe.replace(**kw)
