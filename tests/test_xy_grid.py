"""Diff %, the diff image, grid layout and drawing, XY grids, the bar chart (Pillow only)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lib_merge.arch.blocks import SDXL
from lib_merge.xy import (LoraContext, MergeContext, MergeSettings, compare, diff_percent, parse_axis, plan_cells,
                          run_cells, xy_grids)
from lib_merge.xy.chart import BAR, Bar, bar_chart, rank
from lib_merge.xy.diff import abs_diff, background_for, mask_image, percent
from lib_merge.xy.grid import EMPTY, PAD, draw_grid, font, layout_grid, side_by_side, text_size, wrap


def solid(colour, size=(8, 6)):
    return Image.new("RGB", size, colour)


# --- diff -----------------------------------------------------------------------------------------------

def test_diff_percent_counts_channels_strictly_over_the_threshold():
    a = np.zeros((2, 5, 3), np.uint8)
    b = a.copy()
    b[0, 0] = (21, 20, 0)  # one channel over 20, one exactly 20 (not counted)
    b[1, 4] = (255, 255, 255)  # three channels
    assert diff_percent(a, b) == 100.0 * 4 / 30
    assert diff_percent(a, b, threshold=0) == 100.0 * 5 / 30
    assert diff_percent(b, a) == diff_percent(a, b)  # absolute difference, no uint8 wrap-around
    assert abs_diff(a, b)[0, 0].tolist() == [21, 20, 0]
    assert diff_percent(Image.fromarray(a), Image.fromarray(b)) == 100.0 * 4 / 30
    assert percent(np.zeros((0, 0, 3), np.uint8)) == 0.0


def test_diff_accepts_rgba_grey_and_refuses_size_mismatch():
    rgba = Image.new("RGBA", (4, 4), (10, 10, 10, 0))
    assert diff_percent(rgba, solid((10, 10, 10), (4, 4))) == 0.0
    assert diff_percent(np.zeros((4, 4), np.uint8), np.full((4, 4), 200, np.uint8)) == 100.0
    with pytest.raises(ValueError, match="different sizes"):
        diff_percent(solid(0, (4, 4)), solid(0, (5, 4)))
    with pytest.raises(ValueError, match="uint8"):
        diff_percent(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 3), np.float32))


def test_diff_image_paints_changed_pixels_on_a_contrasting_background():
    a = np.zeros((3, 3, 3), np.uint8)
    b = a.copy()
    b[1, 1] = (0, 0, 30)  # only blue changed: the whole pixel is painted
    b[2, 2] = (5, 5, 5)  # under the threshold
    img = compare(a, b, colour=(255, 255, 0)).image  # yellow is light: black background
    assert img.getpixel((1, 1)) == (255, 255, 0) and img.getpixel((2, 2)) == (0, 0, 0)
    img = mask_image(abs_diff(a, b), 20, (0, 0, 0))  # black: white background
    assert img.getpixel((1, 1)) == (0, 0, 0) and img.getpixel((0, 0)) == (255, 255, 255)
    assert background_for((255, 0, 0)) == (255, 255, 255) and background_for((0, 255, 0)) == (0, 0, 0)
    assert compare(a, b).label == f"Diff: {100 / 27:.1f}%"


# --- grid layout ----------------------------------------------------------------------------------------

def test_font_works_with_and_without_a_size_parameter():
    assert text_size("OUT01", font(16))[0] > 0 and text_size("", font(16)) == (0, 0)


def test_wrap_fits_the_width():
    fnt = font(14)
    text = "a long label that has to wrap " + "x" * 80
    out = wrap(text, fnt, 60)
    assert all(text_size(line, fnt)[0] <= 60 for line in out.split("\n"))
    assert out.replace("\n", "").replace(" ", "") == text.replace(" ", "")


def test_layout_and_pixels():
    imgs = [[solid((255, 0, 0)), solid((0, 255, 0))], [solid((0, 0, 255)), None]]
    lay = layout_grid(["left", "right"], ["top", "bottom"], (8, 6), corner="recipe")
    assert (lay.rows, lay.cols, lay.col_labels, lay.row_labels, lay.corner) == \
        (2, 2, ("left", "right"), ("top", "bottom"), "recipe")
    img = draw_grid(lay, imgs)
    assert img.size == lay.size
    for (r, c), want in {(0, 0): (255, 0, 0), (0, 1): (0, 255, 0), (1, 0): (0, 0, 255), (1, 1): EMPTY}.items():
        x, y = lay.cell_origin(r, c)
        assert img.getpixel((x, y)) == want and img.getpixel((x + 7, y + 5)) == want
    x, y = lay.cell_origin(0, 1)
    assert img.getpixel((x - PAD // 2, y)) == (255, 255, 255)  # gap between cells
    assert draw_grid(lay, imgs).tobytes() == img.tobytes()  # deterministic


def test_smaller_images_are_centred_and_captions_get_room():
    lay = layout_grid(["a", "b"], ["r"], (10, 10), captions=[["Diff: 1.0%", ""]])
    assert lay.caption_h > 0 and lay.captions == (("Diff: 1.0%", ""),)
    img = draw_grid(lay, [[solid((255, 0, 0), (10, 10)), solid((0, 0, 255), (4, 4))]])
    x, y = lay.cell_origin(0, 1)
    assert img.getpixel((x + 5, y + 5)) == (0, 0, 255) and img.getpixel((x, y)) == (255, 255, 255)


def test_side_by_side():
    out = side_by_side(solid((255, 0, 0), (3, 2)), solid((0, 255, 0), (2, 4)))
    assert out.size == (5, 4) and out.getpixel((0, 0)) == (255, 0, 0) and out.getpixel((4, 3)) == (0, 255, 0)


# --- XY grids -------------------------------------------------------------------------------------------

def colour_of(settings) -> tuple[int, int, int]:
    """A fake render: the colour says which weights / alpha / seed made it."""
    if isinstance(settings, MergeSettings):
        return (int((settings.alpha or 0) * 200), (settings.seed or 0) * 40, 0)
    return (int(settings.weights[7] * 255), 0, int(settings.weights[0] * 255))


def test_lora_xy_grid_one_per_z_with_labels_and_cells():
    ctx = LoraContext(layout=12)
    x = parse_axis("values", "0, 1", ctx)
    y = parse_axis("block_id", "OUT01, BASE", ctx, "Y axis")
    z = parse_axis("seed", "1, 2", ctx, "Z axis")
    cells = plan_cells(x, y, z, context=ctx)
    result = run_cells(cells, lambda s: solid(colour_of(s)))
    grids = xy_grids(x, y, z, cells, result.images, recipe="lbw=XYZ")
    assert len(grids) == 2
    lay = grids[0].layout
    assert lay.col_labels == ("values: 0", "values: 1") and lay.row_labels == ("Block ID: OUT01", "Block ID: BASE")
    assert lay.corner == "lbw=XYZ\nseed: 1" and grids[1].layout.corner == "lbw=XYZ\nseed: 2"
    img = grids[0].image
    for (r, c), want in {(0, 0): (0, 0, 255), (0, 1): (255, 0, 255), (1, 0): (255, 0, 0),
                         (1, 1): (255, 0, 255)}.items():
        x0, y0 = lay.cell_origin(r, c)
        assert img.getpixel((x0 + 1, y0 + 1)) == want
    assert grids[0].cells[0][1] == grids[0].cells[1][1]  # the same render fills both "1" cells


def test_merge_xy_grid_partial_and_checker():
    m = MergeContext(arch=SDXL)
    x = parse_axis("alpha", "0.5, 1", m)
    y = parse_axis("seed", "1, 2", m, "Y axis")
    cells = plan_cells(x, y, context=m)
    stopped = run_cells(cells, lambda s: solid(colour_of(s)), should_stop=lambda: False)
    partial = {k: v for i, (k, v) in enumerate(stopped.images.items()) if i < 3}
    (grid,) = xy_grids(x, y, None, cells, partial)
    x0, y0 = grid.layout.cell_origin(1, 1)
    assert grid.image.getpixel((x0, y0)) == EMPTY  # not rendered: grey
    x0, y0 = grid.layout.cell_origin(1, 0)
    assert grid.image.getpixel((x0, y0)) == (100, 80, 0)

    chk = parse_axis("effective_elemental", "OUT01:attn2:0, IN04:attn1:0", m)

    def render(s):  # the OUT01 entry changes the left half of the picture, IN04 nothing
        img = np.zeros((4, 8, 3), np.uint8)
        if s.elemental_add and s.elemental_add.startswith("OUT01"):
            img[:, :4] = 255
        return Image.fromarray(img)

    cells = plan_cells(chk, context=m)
    images = run_cells(cells, render).images
    (grid,) = xy_grids(chk, None, None, cells, images, recipe="weight_sum 0.5")
    assert grid.layout.captions == (("Diff: 50.0%", "Diff: 0.0%"),)
    assert (grid.layout.cell_w, grid.layout.cell_h) == (16, 4)  # image | diff side by side
    x0, y0 = grid.layout.cell_origin(0, 0)
    assert grid.image.getpixel((x0 + 1, y0 + 1)) == (255, 255, 255)  # the image
    assert grid.image.getpixel((x0 + 9, y0 + 1)) == (0, 0, 0)  # its diff: black mark on white
    assert grid.image.getpixel((x0 + 13, y0 + 1)) == (255, 255, 255)


# --- chart ----------------------------------------------------------------------------------------------

def test_rank_orders_by_percent_then_block_order():
    order = ("BASE", "IN04", "OUT01")
    assert [b.block for b in rank({"OUT01": 5.0, "BASE": 5.0, "IN04": 9.0}, order)] == ["IN04", "BASE", "OUT01"]


def test_chart_bars_scale_to_the_largest():
    chart = bar_chart([Bar("OUT01", 40.0), Bar("BASE", 10.0), Bar("M00", 0.0)], "title")
    (a0, _, a1, _), (b0, _, b1, _), (c0, _, c1, _) = chart.boxes
    assert (b1 - b0 + 1) * 4 == pytest.approx(a1 - a0 + 1, abs=4) and c1 < c0
    x0, y0, x1, y1 = chart.boxes[0]
    assert chart.image.getpixel((x1, y1)) == BAR and chart.image.getpixel((x1 + 1, y1)) != BAR
    assert bar_chart([], "").image.size[0] > 0
    assert bar_chart([Bar("BASE", 0.0)]).boxes[0][2] < bar_chart([Bar("BASE", 0.0)]).boxes[0][0]
    wide = bar_chart([Bar("BASE", 1.0)], "a very long title " * 20)
    assert wide.image.size[0] >= text_size("a very long title " * 20, font(16))[0]
