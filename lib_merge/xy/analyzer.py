"""The Effective Block Analyzer: which block of a LoRA changes the picture most (REFERENCE §10).

For each seed it renders one baseline with every block at `base`, then one image per chosen block
with that block at `low` and every other block at `base`, and compares each with the baseline
(`diff.py`). The renderer is the caller's: `render(LoraSettings) -> PIL image`, whose `weights`
are the layout's list of floats (12 values for `12ALL`), to be written as `lbw=` for the LoRA
tagged `lbw=XYZ`. Seed 001's path: Range `0,1`, Blocks `12ALL` -> 13 renders, a grid whose rows
read `OUT01 / Diff: 23.4%`, and a bar chart with the block that matters most on top.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

from ..errors import ParseError
from .blocks import Layout, select_in_layout
from .chart import Bar, Chart, bar_chart, rank
from .diff import DEFAULT_COLOUR, DEFAULT_THRESHOLD, Colour, compare, format_percent, parse_colour, parse_threshold
from .grid import Grid, analyzer_grid
from .plan import LoraSettings
from .text import fmt, number

log = logging.getLogger("lib_merge")

MAX_SEEDS = 64
Render = Callable[[LoraSettings], Any]
Progress = Callable[[int, int, str], None]


def parse_range(text: str) -> tuple[float, float]:
    """`low,base`: exactly two numbers, e.g. `0,1` or `0.5,1`."""
    parts = (text or "").split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ParseError(f"Range {text!r} must be exactly two numbers, low,base",
                         "write e.g. 0,1 (each block at 0 against every block at 1)")
    low = number(parts[0], f"Range {text!r}: low")
    base = number(parts[1], f"Range {text!r}: base")
    if low == base:
        raise ParseError(f"Range {text!r}: low and base are equal, so no block would change",
                         "write two different numbers, e.g. 0,1")
    return low, base


def format_range(low: float, base: float) -> str:
    return f"{fmt(low)},{fmt(base)}"


def parse_blocks(text: str, layout: int | None = None) -> tuple[Layout, tuple[str, ...]]:
    """`12ALL` / `17ALL` / `20ALL` / `26ALL`, or IDs, ranges (`IN04-OUT02`) and a leading `NOT`
    against `layout` (the LoRA's list length; 26 when unknown)."""
    lay, chosen = select_in_layout(text, layout, "Blocks")
    return lay, chosen.chosen


def format_blocks(layout: Layout, blocks: Sequence[str]) -> str:
    from .blocks import BlockSet
    return BlockSet(layout.blocks, tuple(blocks)).text


@dataclass(frozen=True)
class AnalyzerSpec:
    low: float
    base: float
    layout: Layout
    blocks: tuple[str, ...]  # chosen blocks, layout order
    seeds: int = 1
    threshold: float = DEFAULT_THRESHOLD
    colour: Colour = DEFAULT_COLOUR
    swap: bool = False

    @property
    def baseline_weights(self) -> tuple[float, ...]:
        return (self.base,) * self.layout.count

    def weights_for(self, block: str) -> tuple[float, ...]:
        """Every block at base, `block` at low: the `lbw=` list of that render."""
        return tuple(self.low if b == block else self.base for b in self.layout.blocks)

    @property
    def renders(self) -> int:
        return self.seeds * (1 + len(self.blocks))


def analyzer_spec(range_text: str, blocks_text: str, *, seeds: Union[int, str] = 1,
                  threshold: Union[float, str] = DEFAULT_THRESHOLD, colour: Union[str, Sequence[int]] = "black",
                  swap: bool = False, layout: int | None = None) -> AnalyzerSpec:
    """Everything the user typed, checked; ParseError names the field and how to fix it."""
    low, base = parse_range(range_text)
    lay, blocks = parse_blocks(blocks_text, layout)
    n = _seed_count(seeds)
    return AnalyzerSpec(low, base, lay, blocks, n, parse_threshold(threshold), parse_colour(colour), bool(swap))


def _seed_count(seeds: Union[int, str, float]) -> int:
    try:
        v = float(seeds)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or v != int(v) or not 1 <= v <= MAX_SEEDS:
        raise ParseError(f"number of seeds {seeds!r} is not a whole number from 1 to {MAX_SEEDS}",
                         "use e.g. 1, or 3 to check the result holds across seeds")
    return int(v)


@dataclass(frozen=True)
class BlockResult:
    block: str
    percent: float  # Diff % against the baseline
    diff: Any  # diff image
    low: Any  # the render with this block at low


@dataclass(frozen=True)
class SeedResult:
    seed: int
    baseline: Any  # the render with every block at base (the "source" column)
    blocks: tuple[BlockResult, ...]  # in layout order; fewer than planned when stopped
    grid: Grid


@dataclass(frozen=True)
class BlockRow:
    block: str
    percents: tuple[float, ...]  # one per seed that rendered this block

    @property
    def mean(self) -> float:
        return sum(self.percents) / len(self.percents)


@dataclass(frozen=True)
class AnalyzerResult:
    spec: AnalyzerSpec
    seeds: tuple[SeedResult, ...]
    table: tuple[BlockRow, ...]  # layout order, blocks rendered for at least one seed
    ranking: tuple[Bar, ...]  # by mean Diff %, largest first
    chart: Chart | None  # None when nothing was compared
    partial: bool  # stopped before every render was done

    @property
    def grids(self) -> tuple[Any, ...]:
        return tuple(s.grid.image for s in self.seeds)

    def table_text(self) -> str:
        """`BLOCK<tab>Diff %` lines, largest first (for a log or the generation info)."""
        return "\n".join(f"{b.block}\t{format_percent(b.percent)}" for b in self.ranking)


def run_analyzer(spec: AnalyzerSpec, render: Render, *, first_seed: int,
                 should_stop: Callable[[], bool] = lambda: False,
                 progress: Progress | None = None) -> AnalyzerResult:
    """Render and compare. Seeds are first_seed, first_seed + 1, ... (the caller resolves -1 first).
    `should_stop()` is checked before every render; a render returning None also stops (the webui's
    Interrupt). A stopped run returns what was rendered, with `partial=True`."""
    total = spec.renders
    done = 0
    seeds: list[SeedResult] = []
    partial = False

    def step(settings: LoraSettings, what: str) -> Any:
        nonlocal done, partial
        if should_stop():
            partial = True
            return None
        if progress is not None:
            progress(done, total, what)
        img = render(settings)
        if img is None:
            partial = True
            return None
        done += 1
        return img

    for i in range(spec.seeds):
        seed = first_seed + i
        source = step(LoraSettings(spec.baseline_weights, seed), f"seed {seed}: every block at {fmt(spec.base)}")
        if source is None:
            break
        results: list[BlockResult] = []
        for block in spec.blocks:
            img = step(LoraSettings(spec.weights_for(block), seed), f"seed {seed}: {block} at {fmt(spec.low)}")
            if img is None:
                break
            cmp = compare(img, source, spec.threshold, spec.colour)
            results.append(BlockResult(block, cmp.percent, cmp.image, img))
        grid = analyzer_grid([(r.block, r.percent, r.diff, r.low) for r in results], source, low=spec.low,
                             base=spec.base, seed=seed, swap=spec.swap)
        seeds.append(SeedResult(seed, source, tuple(results), grid))
        if partial:
            break
    if progress is not None:
        progress(done, total, "stopped" if partial else "done")
    return _result(spec, seeds, partial)


def _result(spec: AnalyzerSpec, seeds: list[SeedResult], partial: bool) -> AnalyzerResult:
    per_block: dict[str, list[float]] = {}
    for s in seeds:
        for r in s.blocks:
            per_block.setdefault(r.block, []).append(r.percent)
    table = tuple(BlockRow(b, tuple(per_block[b])) for b in spec.layout.blocks if b in per_block)
    ranking = rank({row.block: row.mean for row in table}, spec.layout.blocks)
    chart = None
    if ranking:
        title = (f"Diff % per block ({fmt(spec.low)} vs {fmt(spec.base)}, threshold {fmt(spec.threshold)}, "
                 f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}{', stopped early' if partial else ''})")
        chart = bar_chart(ranking, title)
    if partial:
        log.info("Effective Block Analyzer stopped after %d of %d renders",
                 sum(1 + len(s.blocks) for s in seeds), spec.renders)
    return AnalyzerResult(spec, tuple(seeds), table, ranking, chart, partial)
