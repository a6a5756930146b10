"""Labelled image grids, drawn with Pillow only (works from Pillow 9.5 on, no display needed).

`layout_grid` measures: it decides every label's wrapped text and every cell's place, and returns a
`GridLayout` (plain data, what tests and callers inspect). `draw_grid` paints a layout with images.
Column labels sit on top, row labels at the left, optional text (the recipe, the seed, the Z value)
in the top-left corner, and an optional caption under each cell (`Diff: 12.3%`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
EMPTY = (200, 200, 200)  # a cell that was not rendered (stopped plot)
FRAME = (160, 160, 160)
PAD = 6
SPACING = 4  # between lines of one label
MIN_TEXT_W = 100  # labels wrap at the image width, but never narrower than this


def font(size: int = 16) -> Any:
    """Pillow's built-in font: scalable from Pillow 10.1, the fixed bitmap font before (9.5)."""
    try:
        return ImageFont.load_default(size=size)  # type: ignore[call-arg]
    except TypeError:  # Pillow < 10.1: no size parameter
        return ImageFont.load_default()


def text_size(text: str, fnt: Any) -> tuple[int, int]:
    if not text:
        return 0, 0
    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox((0, 0), text, font=fnt, spacing=SPACING)
    return box[2] - min(box[0], 0), box[3] - min(box[1], 0)


def wrap(text: str, fnt: Any, width: int) -> str:
    """Greedy word wrap to `width` pixels; a word wider than that is cut between characters."""
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            cand = f"{line} {word}" if line else word
            if text_size(cand, fnt)[0] <= width or not line and not word:
                line = cand
                continue
            if line:
                lines.append(line)
            line = word
            while len(line) > 1 and text_size(line, fnt)[0] > width:
                cut = _fit(line, fnt, width)
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return "\n".join(lines)


def _fit(word: str, fnt: Any, width: int) -> int:
    """The longest prefix (at least 1 character) of `word` that fits `width`: binary search."""
    lo, hi = 1, len(word) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_size(word[:mid], fnt)[0] <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class GridLayout:
    rows: int
    cols: int
    cell_w: int  # image area of one cell
    cell_h: int
    caption_h: int  # height of the caption band under each image (0 without captions)
    row_h: int  # height of a row: the image and caption, or a taller row label
    col_w: int  # width of a column: the image, or a wider column label
    left: int  # width of the row-label column
    top: int  # height of the column-label row
    col_labels: tuple[str, ...]  # as drawn (wrapped)
    row_labels: tuple[str, ...]
    corner: str
    captions: tuple[tuple[str, ...], ...]  # [row][col], "" for none
    font_size: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.left + self.cols * (self.col_w + PAD) + PAD,
                self.top + self.rows * (self.row_h + PAD) + PAD)

    def row_top(self, row: int) -> int:
        return self.top + PAD + row * (self.row_h + PAD)

    def col_left(self, col: int) -> int:
        return self.left + PAD + col * (self.col_w + PAD)

    def cell_origin(self, row: int, col: int) -> tuple[int, int]:
        """Top-left pixel of the image area of a cell (centred in its row and column)."""
        return (self.col_left(col) + (self.col_w - self.cell_w) // 2,
                self.row_top(row) + (self.row_h - self.cell_h - self.caption_h) // 2)


def layout_grid(col_labels: Sequence[str], row_labels: Sequence[str], cell_size: tuple[int, int], *,
                corner: str = "", captions: Optional[Sequence[Sequence[str]]] = None,
                font_size: int | None = None) -> GridLayout:
    cols, rows = max(1, len(col_labels)), max(1, len(row_labels))
    cw, ch = cell_size
    size = font_size or max(12, min(40, min(cw, ch) // 16))
    fnt = font(size)
    text_w = max(cw, MIN_TEXT_W)  # tiny images still get readable labels: the column widens instead
    cols_t = tuple(wrap(t, fnt, text_w) for t in (col_labels or [""]))
    rows_t = tuple(wrap(t, fnt, text_w) for t in (row_labels or [""]))
    caps = tuple(tuple(wrap(c, fnt, text_w) for c in r) for r in captions) if captions else \
        tuple(("",) * cols for _ in range(rows))
    col_w = max([cw] + [text_size(t, fnt)[0] for t in cols_t] + [text_size(c, fnt)[0] for r in caps for c in r])
    label_w = max((text_size(t, fnt)[0] for t in rows_t), default=0)
    corner_w = min(text_size(corner, fnt)[0], max(label_w, text_w))
    left = max(label_w, corner_w) + 2 * PAD if (label_w or corner) else 0
    corner_t = wrap(corner, fnt, max(left - 2 * PAD, 1)) if corner else ""
    label_h = max((text_size(t, fnt)[1] for t in cols_t), default=0)
    top = max(label_h, text_size(corner_t, fnt)[1]) + 2 * PAD if (label_h or corner_t) else 0
    cap_h = max((text_size(c, fnt)[1] for r in caps for c in r), default=0)
    cap_h = cap_h + PAD if cap_h else 0
    row_h = max(ch + cap_h, max((text_size(t, fnt)[1] for t in rows_t), default=0))
    return GridLayout(rows, cols, cw, ch, cap_h, row_h, col_w, left, top, cols_t, rows_t, corner_t, caps, size)


def draw_grid(layout: GridLayout, images: Sequence[Sequence[Any]]) -> Any:
    """Paint the layout; `images[row][col]` is a PIL image or None (drawn as an empty grey cell).
    Smaller images are centred in their cell."""
    out = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(out)
    fnt = font(layout.font_size)
    for c, text in enumerate(layout.col_labels):
        x = layout.col_left(c)
        w, h = text_size(text, fnt)
        draw.multiline_text((x + (layout.col_w - w) // 2, (layout.top - h) // 2), text, fill=INK, font=fnt,
                            spacing=SPACING, align="center")
    for r, text in enumerate(layout.row_labels):
        y = layout.row_top(r)
        w, h = text_size(text, fnt)
        draw.multiline_text((PAD, y + (layout.row_h - h) // 2), text, fill=INK, font=fnt, spacing=SPACING)
    if layout.corner:
        draw.multiline_text((PAD, PAD), layout.corner, fill=INK, font=fnt, spacing=SPACING)
    for r in range(layout.rows):
        for c in range(layout.cols):
            x, y = layout.cell_origin(r, c)
            # a thin frame outside the image area, so white renders and diff backgrounds keep their edges
            draw.rectangle((x - 1, y - 1, x + layout.cell_w, y + layout.cell_h), outline=FRAME)
            img = images[r][c] if r < len(images) and c < len(images[r]) else None
            if img is None:
                draw.rectangle((x, y, x + layout.cell_w - 1, y + layout.cell_h - 1), fill=EMPTY)
            else:
                img = img.convert("RGB")
                out.paste(img, (x + (layout.cell_w - img.width) // 2, y + (layout.cell_h - img.height) // 2))
            cap = layout.captions[r][c] if r < len(layout.captions) and c < len(layout.captions[r]) else ""
            if cap:
                w, _ = text_size(cap, fnt)
                draw.multiline_text((layout.col_left(c) + (layout.col_w - w) // 2, y + layout.cell_h + PAD // 2), cap, fill=INK,
                                    font=fnt, spacing=SPACING, align="center")
    return out


@dataclass(frozen=True)
class Grid:
    image: Any  # PIL RGB
    layout: GridLayout
    cells: tuple[tuple[Any, ...], ...]  # [row][col]: what each cell shows (a key, or None)


def cell_size(images: Sequence[Any], default: tuple[int, int] = (64, 64)) -> tuple[int, int]:
    present = [im for im in images if im is not None]
    if not present:
        return default
    return max(im.width for im in present), max(im.height for im in present)


def side_by_side(a: Any, b: Any) -> Any:
    """Two images in one, left and right (an image and its diff in the elemental checker)."""
    out = Image.new("RGB", (a.width + b.width, max(a.height, b.height)), BACKGROUND)
    out.paste(a.convert("RGB"), (0, 0))
    out.paste(b.convert("RGB"), (a.width, 0))
    return out


# --- the two grids users see ---------------------------------------------------------------------------

def analyzer_grid(rows: Sequence[tuple[str, float, Any, Any]], source: Any, *, low: float, base: float,
                  seed: int | None = None, swap: bool = False) -> Grid:
    """The Effective Block Analyzer grid of one seed.

    `rows` are (block, Diff %, diff image, low image) in display order. Each block is a row labelled
    `BLOCK` / `Diff: p%`, with columns diff | low | source under a header row; `swap` exchanges rows
    and columns (blocks across, diff / low / source down), like the incumbent's "swap axes"."""
    from .diff import format_percent
    from .text import fmt
    titles = ("diff", f"low: {fmt(low)}", f"source: {fmt(base)}")
    labels = tuple(f"{block}\nDiff: {format_percent(p)}%" for block, p, _, _ in rows)
    keys = tuple(tuple((block, kind) for kind in ("diff", "low", "source")) for block, _, _, _ in rows)
    imgs = [[d, lo, source] for _, _, d, lo in rows]
    if swap:
        keys = tuple(zip(*keys)) if keys else ()
        imgs = [list(r) for r in zip(*imgs)] if imgs else []
        col_labels, row_labels = labels, titles
    else:
        col_labels, row_labels = titles, labels
    size = cell_size([source, *(im for r in imgs for im in r)])
    layout = layout_grid(col_labels, row_labels, size, corner=f"seed: {seed}" if seed is not None else "")
    return Grid(draw_grid(layout, imgs), layout, tuple(tuple(r) for r in keys))


def xy_grids(x: Any, y: Any, z: Any, cells: Sequence[Any], images: Any, *, recipe: str = "",
             threshold: float = 20.0, colour: tuple[int, int, int] = (0, 0, 0)) -> list[Grid]:
    """One grid per Z value: X values across, Y values down, the recipe (and Z value) in the corner.

    `cells` come from `plan_cells`, `images` maps a cell's settings to its PIL image (missing images,
    from a stopped plot, are grey). A cell with a baseline (effective elemental checker) shows the
    image and its diff side by side, captioned `Diff: x%`."""
    from .diff import compare
    at: dict[tuple[int, int, int], Any] = {p: c for c in cells for p in c.positions}
    nx, ny, nz = (len(a) if a is not None else 1 for a in (x, y, z))
    col_labels = [f"{x.title}: {v.label}" for v in x.values] if x is not None else [""]
    row_labels = [f"{y.title}: {v.label}" for v in y.values] if y is not None else [""]
    shown: dict[Any, tuple[Any, str]] = {}
    for c in cells:
        img = images.get(c.settings)
        if img is not None and c.baseline is not None:
            ref = images.get(c.baseline)
            if ref is not None:
                cmp = compare(img, ref, threshold, colour)
                shown[c.settings] = (side_by_side(img, cmp.image), cmp.label)
                continue
        shown[c.settings] = (img, "")
    size = cell_size([im for im, _ in shown.values()])
    grids = []
    for zi in range(nz):
        corner = "\n".join(t for t in (recipe, f"{z.title}: {z.values[zi].label}" if z is not None else "") if t)
        keys = [[at[(xi, yi, zi)].settings for xi in range(nx)] for yi in range(ny)]
        imgs = [[shown[k][0] for k in row] for row in keys]
        caps = [[shown[k][1] for k in row] for row in keys]
        has_caps = any(c for row in caps for c in row)
        layout = layout_grid(col_labels, row_labels, size, corner=corner, captions=caps if has_caps else None)
        grids.append(Grid(draw_grid(layout, imgs), layout, tuple(tuple(r) for r in keys)))
    return grids
