"""The ranked bar chart of the analyzer: one horizontal bar per block, largest Diff % on top.

Drawn with Pillow (no matplotlib, no display): the answer "which block matters" in one look.
Bars are scaled to the largest value, each labelled with its block at the left and its Diff % at
the right end. Ties keep the block order (BASE, IN.., M00, OUT..), so the chart is deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from PIL import Image, ImageDraw

from .diff import format_percent
from .grid import BACKGROUND, INK, PAD, font, text_size

BAR = (66, 104, 196)
TRACK = (232, 232, 232)


@dataclass(frozen=True)
class Bar:
    block: str
    percent: float


def rank(percents: Mapping[str, float], order: Sequence[str]) -> tuple[Bar, ...]:
    """Blocks by Diff %, largest first; ties in `order` (the layout's block order)."""
    pos = {b: i for i, b in enumerate(order)}
    blocks = sorted(percents, key=lambda b: (-percents[b], pos.get(b, len(pos)), b))
    return tuple(Bar(b, percents[b]) for b in blocks)


@dataclass(frozen=True)
class Chart:
    image: Any  # PIL RGB
    bars: tuple[Bar, ...]  # top to bottom
    boxes: tuple[tuple[int, int, int, int], ...]  # each bar's filled box (x0, y0, x1, y1), inclusive
    title: str


def bar_chart(bars: Sequence[Bar], title: str = "", *, width: int = 720, bar_height: int = 24,
              font_size: int = 16) -> Chart:
    fnt = font(font_size)
    label_w = max((text_size(b.block, fnt)[0] for b in bars), default=0) + 2 * PAD
    value_w = text_size("100.0%", fnt)[0] + 2 * PAD
    title_h = text_size(title, fnt)[1] + 2 * PAD if title else PAD
    width = max(width, text_size(title, fnt)[0] + 2 * PAD)  # the title is never cut off
    track_w = max(width - label_w - value_w - PAD, 40)
    height = title_h + len(bars) * (bar_height + PAD) + PAD
    out = Image.new("RGB", (label_w + track_w + value_w + PAD, max(height, title_h + PAD)), BACKGROUND)
    draw = ImageDraw.Draw(out)
    if title:
        draw.text((PAD, PAD), title, fill=INK, font=fnt)
    top = max((b.percent for b in bars), default=0.0)
    boxes = []
    for i, b in enumerate(bars):
        y0 = title_h + i * (bar_height + PAD)
        x0 = label_w
        draw.rectangle((x0, y0, x0 + track_w - 1, y0 + bar_height - 1), fill=TRACK)
        length = int(round(track_w * b.percent / top)) if top > 0 else 0
        box = (x0, y0, x0 + length - 1, y0 + bar_height - 1)
        if length > 0:
            draw.rectangle(box, fill=BAR)
        boxes.append(box)
        _, th = text_size(b.block, fnt)
        draw.text((PAD, y0 + (bar_height - th) // 2), b.block, fill=INK, font=fnt)
        draw.text((x0 + track_w + PAD, y0 + (bar_height - th) // 2), f"{format_percent(b.percent)}%", fill=INK,
                  font=fnt)
    return Chart(out, tuple(bars), tuple(boxes), title)
