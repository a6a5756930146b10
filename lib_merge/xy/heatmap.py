"""The heatmap of a model comparison, drawn with Pillow (no matplotlib, no display).

One panel per pair (A vs B, A vs C; top to bottom) and metric (cosine similarity, relative L2
difference; left to right): rows are the MBW blocks, columns the element kinds and "all", each cell
coloured by its value and printed with it. Each panel has its own colour scale (so a fine-tune's small
differences stay visible next to an unrelated model's large ones), drawn as a legend bar at its right:
pale = most alike, dark red = most different in that panel (for the cosine a *low* value is different,
for the L2 difference a *high* one). The files' names are the title.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from ..merge.compare import Comparison, PairResult
from .grid import BACKGROUND, EMPTY, INK, PAD, font, text_size

# YlOrRd-like anchors, alike (0) to different (1); written out here, not taken from a library
_ANCHORS = ((0.0, (255, 255, 204)), (0.25, (254, 217, 118)), (0.5, (253, 141, 60)),
            (0.75, (227, 26, 28)), (1.0, (128, 0, 38)))
METRICS = (("cosine", "cosine similarity", False), ("rel_l2", "relative L2 difference |A-x|/|A|", True))
LEGEND_W = 18


def colour(t: float) -> tuple[int, int, int]:
    """The scale's colour at t in [0, 1] (0 = most alike, 1 = most different)."""
    t = min(1.0, max(0.0, t))
    for (t0, c0), (t1, c1) in zip(_ANCHORS, _ANCHORS[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            return tuple(int(round(a + (b - a) * f)) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return _ANCHORS[-1][1]


def _ink_on(c: tuple[int, int, int]) -> tuple[int, int, int]:
    return INK if 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 140 else (255, 255, 255)


@dataclass
class Heatmap:
    image: Any  # PIL RGB
    cells: dict[tuple[str, str, str, str], tuple[int, int, int, int]] = field(default_factory=dict)
    # (pair label, metric, row, column) -> box (x0, y0, x1, y1), inclusive
    legends: dict[tuple[str, str], tuple[int, int, int, int]] = field(default_factory=dict)  # (pair, metric) -> bar
    ranges: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # -> (alike end, different end)

    def save(self, path: str) -> None:
        self.image.save(path, format="PNG")


def scale(pair: PairResult, metric: str, different_is_high: bool) -> tuple[float, float]:
    """(value drawn palest, value drawn darkest) over the cells of one panel."""
    vals = [v for v in (getattr(s, metric) for s in (*pair.cells.values(), *pair.rows.values()))
            if math.isfinite(v)] or [0.0]
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        hi = lo + 1e-12
    return (lo, hi) if different_is_high else (hi, lo)


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "-"
    return "inf" if math.isinf(v) else f"{v:.4f}" if abs(v) < 10 else f"{v:.4g}"


def draw_heatmap(cmp: Comparison, font_size: int = 14) -> Heatmap:
    fnt = font(font_size)
    cols = (*cmp.kinds, "all")
    rows = cmp.rows
    cell_w = max(text_size(s, fnt)[0] for s in (*cols, "-0.0000", "0.0000")) + 2 * PAD
    th = text_size("Ag0", fnt)[1]
    cell_h = th + 2 * PAD
    row_w = max((text_size(r, fnt)[0] for r in rows), default=0) + 2 * PAD
    head_h = th + 2 * PAD  # column names
    sub_h = th + 2 * PAD  # panel subtitle
    grid_w, grid_h = len(cols) * cell_w, len(rows) * cell_h
    legend_label_w = max(text_size(t, fnt)[0] for t in ("more different", "more alike", "-0.0000", "0.0000")) + PAD
    panel_w = row_w + grid_w + PAD + LEGEND_W + PAD + legend_label_w + 2 * PAD
    panel_h = sub_h + head_h + max(grid_h, 4 * th) + 2 * PAD
    title = f"{cmp.arch_label}: {cmp.title}"
    title_h = text_size(title, fnt)[1] + 2 * PAD
    width = max(PAD + len(METRICS) * panel_w, text_size(title, fnt)[0] + 2 * PAD)
    height = title_h + len(cmp.pairs) * panel_h + PAD
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    draw.text((PAD, PAD), title, fill=INK, font=fnt)
    hm = Heatmap(img)
    for m, (metric, name, high) in enumerate(METRICS):
        for pi, pair in enumerate(cmp.pairs):
            alike, different = scale(pair, metric, high)
            hm.ranges[(pair.label, metric)] = (alike, different)
            x0, y0 = PAD + m * panel_w, title_h + pi * panel_h
            draw.text((x0, y0 + PAD), f"{pair.label}: {name}", fill=INK, font=fnt)
            gx, gy = x0 + row_w, y0 + sub_h + head_h
            for c, col in enumerate(cols):
                w = text_size(col, fnt)[0]
                draw.text((gx + c * cell_w + (cell_w - w) // 2, gy - head_h + PAD), col, fill=INK, font=fnt)
            for r, row in enumerate(rows):
                draw.text((x0 + PAD, gy + r * cell_h + PAD), row, fill=INK, font=fnt)
                for c, col in enumerate(cols):
                    st = pair.rows.get(row) if col == "all" else pair.cells.get((row, col))
                    v = getattr(st, metric) if st is not None else math.nan
                    box = (gx + c * cell_w, gy + r * cell_h, gx + (c + 1) * cell_w - 1, gy + (r + 1) * cell_h - 1)
                    fill = EMPTY if not math.isfinite(v) else colour((v - alike) / (different - alike))
                    draw.rectangle(box, fill=fill, outline=BACKGROUND)
                    text = _fmt(v)
                    w = text_size(text, fnt)[0]
                    draw.text((box[0] + (cell_w - w) // 2, box[1] + PAD), text, fill=_ink_on(fill), font=fnt)
                    hm.cells[(pair.label, metric, row, col)] = box
            # the legend: a bar beside the panel, as tall as its grid; top = most different
            lx, ly0 = gx + grid_w + PAD, gy
            ly1 = ly0 + max(grid_h, 4 * th) - 1
            for y in range(ly0, ly1 + 1):
                draw.line((lx, y, lx + LEGEND_W - 1, y), fill=colour(1.0 - (y - ly0) / max(1, ly1 - ly0)))
            hm.legends[(pair.label, metric)] = (lx, ly0, lx + LEGEND_W - 1, ly1)
            tx = lx + LEGEND_W + PAD
            draw.text((tx, ly0), f"{different:.4f}", fill=INK, font=fnt)
            draw.text((tx, ly0 + th + 2), "more different", fill=INK, font=fnt)
            draw.text((tx, ly1 - 2 * th - 2), "more alike", fill=INK, font=fnt)
            draw.text((tx, ly1 - th), f"{alike:.4f}", fill=INK, font=fnt)
    return hm
