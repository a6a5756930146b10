"""XY plots and the Effective Block Analyzer, independent of the webui (REFERENCE §10).

The webui wiring supplies a `render(settings) -> PIL image` callable (and, for merge plots, a
`prepare(merge_key)` that merges and loads the model); everything else lives here:
- `axes`: axis kinds and the parsing of their value text (lists, ranges, quoted weight strings);
- `plan`: the cells of a plot, each distinct render once, grouped by merged model;
- `analyzer`: the Effective Block Analyzer's spec, orchestration and result;
- `diff`: Diff % and the diff image; `grid` / `chart`: the labelled grids and the ranked bar chart.
Imports numpy and Pillow; never gradio or the webui's `modules`.
"""
from __future__ import annotations

from .analyzer import (AnalyzerResult, AnalyzerSpec, BlockRow, SeedResult, analyzer_spec, format_blocks,
                       format_range, parse_blocks, parse_range, run_analyzer)
from .axes import (ADJUST_NAMES, Axis, AxisKind, AxisValue, LoraContext, MergeContext, PlotKind, axis_kind,
                   choices, parse_axis)
from .chart import Bar, Chart, bar_chart, rank
from .diff import Comparison, compare, diff_percent, parse_colour, parse_threshold
from .grid import Grid, GridLayout, analyzer_grid, xy_grids
from .prompt import apply_to_prompt, check_prompt
from .plan import (Cell, LoraSettings, MergeSettings, RunResult, adjust_values, apply_to_recipe, pinned,
                   plan_cells, run_cells)

__all__ = [
    "AnalyzerResult", "AnalyzerSpec", "BlockRow", "SeedResult", "analyzer_spec", "format_blocks", "format_range",
    "parse_blocks", "parse_range", "run_analyzer",
    "ADJUST_NAMES", "Axis", "AxisKind", "AxisValue", "LoraContext", "MergeContext", "PlotKind", "axis_kind",
    "choices", "parse_axis",
    "Bar", "Chart", "bar_chart", "rank",
    "Comparison", "compare", "diff_percent", "parse_colour", "parse_threshold",
    "Grid", "GridLayout", "analyzer_grid", "xy_grids",
    "Cell", "LoraSettings", "MergeSettings", "RunResult", "adjust_values", "apply_to_recipe", "pinned",
    "plan_cells", "run_cells", "apply_to_prompt", "check_prompt",
]
