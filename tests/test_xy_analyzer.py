"""The Effective Block Analyzer end to end, over a deterministic fake renderer.

Each block of the layout owns a vertical stripe of the picture whose brightness is 255 x its weight.
With every block at 1 the picture is white; with one block at 0 exactly its stripe turns black, so
that block's Diff % is its stripe's share of the picture, known exactly. Odd seeds light only the red
channel, so their Diff % is a third of the even seeds'. Stripe widths are all different, with OUT01
widest, as in seed 001 (a user finds OUT01 over-corrects their SDXL LoRA).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from lib_merge.xy.blocks import LAYOUTS
from lib_merge.xy import analyzer_spec, run_analyzer
from lib_merge.xy.chart import BAR
from lib_merge.xy.plan import LoraSettings

H = 6
WIDTHS12 = {"BASE": 3, "IN04": 1, "IN05": 2, "IN07": 4, "IN08": 5, "M00": 6, "OUT00": 7, "OUT01": 12,
            "OUT02": 8, "OUT03": 9, "OUT04": 10, "OUT05": 11}
RANKED12 = ["OUT01", "OUT05", "OUT04", "OUT03", "OUT02", "OUT00", "M00", "IN08", "IN07", "BASE", "IN05", "IN04"]


class FakeRenderer:
    def __init__(self, count: int = 12):
        self.blocks = LAYOUTS[count].blocks
        self.widths = WIDTHS12 if count == 12 else {b: i + 1 for i, b in enumerate(self.blocks)}
        self.x0 = {}
        x = 0
        for b in self.blocks:
            self.x0[b] = x
            x += self.widths[b]
        self.width = x
        self.calls: list[LoraSettings] = []

    def __call__(self, s: LoraSettings) -> Image.Image:
        assert isinstance(s, LoraSettings) and len(s.weights) == len(self.blocks)
        self.calls.append(s)
        img = np.zeros((H, self.width, 3), dtype=np.uint8)
        channels = slice(0, 3) if s.seed % 2 == 0 else slice(0, 1)
        for b, w in zip(self.blocks, s.weights):
            img[:, self.x0[b]:self.x0[b] + self.widths[b], channels] = int(round(255 * min(max(w, 0), 1)))
        return Image.fromarray(img, "RGB")

    def percent(self, block: str, seed: int) -> float:
        channels = 3 if seed % 2 == 0 else 1
        return 100.0 * (self.widths[block] * H * channels) / (self.width * H * 3)


def test_seed_001_twelve_blocks_one_seed():
    fake = FakeRenderer(12)
    spec = analyzer_spec("0,1", "12ALL")
    result = run_analyzer(spec, fake, first_seed=100)
    assert not result.partial and len(fake.calls) == 13 == spec.renders
    # the baseline first, then one render per block, in layout order, weights as the lbw= list
    assert fake.calls[0].lbw == "1,1,1,1,1,1,1,1,1,1,1,1"
    assert [c.lbw for c in fake.calls[1:]][7] == "1,1,1,1,1,1,1,0,1,1,1,1"  # OUT01 at 0 (seed 001)
    assert all(c.seed == 100 for c in fake.calls)
    (seed,) = result.seeds
    assert [r.block for r in seed.blocks] == list(LAYOUTS[12].blocks)
    for r in seed.blocks:
        assert r.percent == fake.percent(r.block, 100)
    assert [row.block for row in result.table] == list(LAYOUTS[12].blocks)
    assert [b.block for b in result.ranking] == RANKED12
    assert result.ranking[0].percent == 100.0 * 12 / 78
    assert result.table_text().splitlines()[0] == f"OUT01\t{100 * 12 / 78:.1f}"


def test_grid_rows_labels_and_pixels():
    fake = FakeRenderer(12)
    result = run_analyzer(analyzer_spec("0,1", "12ALL"), fake, first_seed=2)
    grid = result.seeds[0].grid
    lay = grid.layout
    assert (lay.rows, lay.cols) == (12, 3) and (lay.cell_w, lay.cell_h) == (78, H)
    assert lay.col_labels == ("diff", "low: 0", "source: 1")
    assert lay.row_labels[7] == f"OUT01\nDiff: {100 * 12 / 78:.1f}%"
    assert lay.row_labels[0] == f"BASE\nDiff: {100 * 3 / 78:.1f}%"
    assert lay.corner == "seed: 2"
    assert grid.cells[7] == (("OUT01", "diff"), ("OUT01", "low"), ("OUT01", "source"))
    assert grid.image.size == lay.size
    img = grid.image
    for row, block in enumerate(LAYOUTS[12].blocks):
        inside = fake.x0[block] + fake.widths[block] // 2
        outside = (fake.x0[block] + fake.widths[block] + 1) % fake.width
        for col, (want_in, want_out) in enumerate([((0, 0, 0), (255, 255, 255)),  # black marks on white
                                                   ((0, 0, 0), (255, 255, 255)),  # the stripe at low
                                                   ((255, 255, 255), (255, 255, 255))]):  # source: all white
            x, y = lay.cell_origin(row, col)
            assert img.getpixel((x + inside, y + H // 2)) == want_in, (block, col)
            assert img.getpixel((x + outside, y + H // 2)) == want_out, (block, col)


def test_swap_axes_transposes_the_grid():
    fake = FakeRenderer(12)
    spec = analyzer_spec("0,1", "OUT00-OUT02", layout=12, swap=True)
    grid = run_analyzer(spec, fake, first_seed=0).seeds[0].grid
    lay = grid.layout
    assert (lay.rows, lay.cols) == (3, 3)
    assert lay.row_labels == ("diff", "low: 0", "source: 1")
    assert lay.col_labels[1] == f"OUT01\nDiff: {100 * 12 / 78:.1f}%"
    assert grid.cells[0] == (("OUT00", "diff"), ("OUT01", "diff"), ("OUT02", "diff"))
    x, y = lay.cell_origin(1, 1)  # low image of OUT01
    assert grid.image.getpixel((x + fake.x0["OUT01"] + 1, y + 1)) == (0, 0, 0)


def test_several_seeds_average_and_one_grid_each():
    fake = FakeRenderer(12)
    result = run_analyzer(analyzer_spec("0,1", "12ALL", seeds=2), fake, first_seed=10)
    assert [s.seed for s in result.seeds] == [10, 11] and len(result.grids) == 2 and len(fake.calls) == 26
    row = {r.block: r for r in result.table}["OUT01"]
    assert row.percents == (fake.percent("OUT01", 10), fake.percent("OUT01", 11))
    assert row.percents[1] == pytest.approx(row.percents[0] / 3)
    assert row.mean == (row.percents[0] + row.percents[1]) / 2
    assert [b.block for b in result.ranking] == RANKED12
    assert "2 seeds" in result.chart.title


def test_chart_is_ranked_and_drawn():
    fake = FakeRenderer(12)
    chart = run_analyzer(analyzer_spec("0,1", "12ALL"), fake, first_seed=0).chart
    assert [b.block for b in chart.bars] == RANKED12
    widths = [x1 - x0 + 1 for x0, _, x1, _ in chart.boxes]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1] > 0
    x0, y0, x1, y1 = chart.boxes[0]
    assert chart.image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) == BAR
    assert chart.image.getpixel((x1 + 3, (y0 + y1) // 2)) != BAR or widths[0] == widths[-1]


def test_threshold_is_strict():
    fake = FakeRenderer(12)
    at = analyzer_spec(f"{235 / 255!r},1", "OUT01", layout=12, threshold=20)  # difference exactly 20
    assert run_analyzer(at, fake, first_seed=0).seeds[0].blocks[0].percent == 0.0
    over = dataclasses.replace(at, low=234 / 255)  # difference 21
    assert run_analyzer(over, fake, first_seed=0).seeds[0].blocks[0].percent == fake.percent("OUT01", 0)
    half = analyzer_spec("0.5,1", "OUT01", layout=12)  # 255 vs 128: counted
    assert run_analyzer(half, fake, first_seed=0).seeds[0].blocks[0].percent == fake.percent("OUT01", 0)


def test_seventeen_layout():
    fake = FakeRenderer(17)
    result = run_analyzer(analyzer_spec("0,1", "17ALL"), fake, first_seed=0)
    assert len(fake.calls) == 18 and len(result.table) == 17
    assert result.ranking[0].block == "OUT11"  # widest stripe in this fake: the last block
    assert fake.calls[-1].lbw == "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0"


def test_stop_mid_way_keeps_a_partial_result():
    fake = FakeRenderer(12)
    spec = analyzer_spec("0,1", "12ALL", seeds=2)
    seen = []
    result = run_analyzer(spec, fake, first_seed=4, should_stop=lambda: len(fake.calls) >= 5,
                          progress=lambda d, t, m: seen.append((d, t, m)))
    assert result.partial and len(fake.calls) == 5
    (seed,) = result.seeds
    assert [r.block for r in seed.blocks] == ["BASE", "IN04", "IN05", "IN07"]
    assert seed.grid.layout.rows == 4 and len(result.table) == 4
    assert [b.block for b in result.chart.bars] == ["IN07", "BASE", "IN05", "IN04"]
    assert "stopped early" in result.chart.title
    assert seen[0] == (0, 26, "seed 4: every block at 1") and seen[-1] == (5, 26, "stopped")


def test_stop_in_the_second_seed_and_interrupt_by_none():
    fake = FakeRenderer(12)
    spec = analyzer_spec("0,1", "OUT01 OUT02", layout=12, seeds=3)
    result = run_analyzer(spec, fake, first_seed=0, should_stop=lambda: len(fake.calls) >= 4)
    assert result.partial and [len(s.blocks) for s in result.seeds] == [2, 0]
    assert result.seeds[1].grid.layout.rows == 1  # baseline only: an empty (one placeholder row) grid
    assert [r.percents for r in result.table] == [(fake.percent("OUT01", 0),), (fake.percent("OUT02", 0),)]

    interrupted = run_analyzer(spec, lambda s: None if s.seed == 1 else fake(s), first_seed=0)
    assert interrupted.partial and len(interrupted.seeds) == 1


def test_stop_before_anything():
    result = run_analyzer(analyzer_spec("0,1", "12ALL"), FakeRenderer(12), first_seed=0, should_stop=lambda: True)
    assert result.partial and result.seeds == () and result.table == () and result.chart is None
    assert result.grids == () and result.table_text() == ""


def test_deterministic():
    spec = analyzer_spec("0,1", "12ALL", colour="red")
    a = run_analyzer(spec, FakeRenderer(12), first_seed=0)
    b = run_analyzer(spec, FakeRenderer(12), first_seed=0)
    assert a.grids[0].tobytes() == b.grids[0].tobytes()
    assert a.chart.image.tobytes() == b.chart.image.tobytes()
    fake = FakeRenderer(12)
    diff = a.seeds[0].blocks[7].diff  # OUT01: red marks on white (red is dark: luma 76)
    assert diff.getpixel((fake.x0["OUT01"] + 5, 0)) == (255, 0, 0)
    assert diff.getpixel((fake.x0["OUT01"] - 1, 0)) == (255, 255, 255)
