"""How much two renders differ: the Diff % of the Effective Block Analyzer and the elemental checker.

Both images are read as RGB uint8. For every pixel channel the absolute difference |a - b| is
taken; a channel *changed* when that difference is strictly greater than the threshold (default 20
of 255, so JPEG-like noise and dithering do not count). Diff % is the share of changed channels
among all H x W x 3 channels, times 100.

The diff image is a mask, not the amplified raw difference: every pixel with at least one changed
channel is painted in the chosen colour, every other pixel in a contrasting background (black, or
white when the colour itself is dark, so a "black" diff colour shows black marks on white). A mask
answers the question the analyzer asks, *where* the block changes the picture, at a glance and with
the same threshold as the number beside it; amplified differences make faint noise look like a
change. It is a pure function of the two images, the threshold and the colour: deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

from ..errors import ParseError

DEFAULT_THRESHOLD = 20.0
DEFAULT_COLOUR = (0, 0, 0)  # the incumbent's default "black"
Colour = tuple[int, int, int]
ImageLike = Any  # a PIL image or an H x W x 3 (or x 4) uint8 array


def to_array(img: ImageLike) -> np.ndarray:
    """An H x W x 3 uint8 array of a PIL image (converted to RGB) or an array (alpha dropped)."""
    if hasattr(img, "convert") and hasattr(img, "size"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 image, got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {arr.dtype}")
    return arr[:, :, :3]


def abs_diff(a: ImageLike, b: ImageLike) -> np.ndarray:
    """|a - b| per channel as uint8; the images must have the same size."""
    x, y = to_array(a), to_array(b)
    if x.shape != y.shape:
        raise ValueError(f"cannot compare images of different sizes: {x.shape[1]}x{x.shape[0]} and "
                         f"{y.shape[1]}x{y.shape[0]} (the renderer must keep width and height fixed)")
    return np.abs(x.astype(np.int16) - y.astype(np.int16)).astype(np.uint8)


def changed(d: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Boolean H x W x 3: which channels changed (difference strictly above the threshold)."""
    return d > threshold


def percent(d: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Diff %: changed channels / all channels * 100."""
    if d.size == 0:
        return 0.0
    return 100.0 * int(np.count_nonzero(changed(d, threshold))) / d.size


def diff_percent(a: ImageLike, b: ImageLike, threshold: float = DEFAULT_THRESHOLD) -> float:
    return percent(abs_diff(a, b), threshold)


def background_for(colour: Colour) -> Colour:
    """Black behind light colours, white behind dark ones (ITU-R BT.601 luma below 128)."""
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (255, 255, 255) if luma < 128 else (0, 0, 0)


def mask_image(d: np.ndarray, threshold: float = DEFAULT_THRESHOLD, colour: Colour = DEFAULT_COLOUR) -> Any:
    """The diff image (PIL RGB) of an abs-diff array: changed pixels in `colour` on the background."""
    from PIL import Image
    mask = changed(d, threshold).any(axis=2)
    out = np.empty(d.shape[:2] + (3,), dtype=np.uint8)
    out[...] = np.array(background_for(colour), dtype=np.uint8)
    out[mask] = np.array(colour, dtype=np.uint8)
    return Image.fromarray(out, "RGB")


@dataclass(frozen=True)
class Comparison:
    percent: float  # Diff %
    image: Any  # the diff image (PIL RGB)

    @property
    def label(self) -> str:
        return f"Diff: {format_percent(self.percent)}%"


def compare(a: ImageLike, b: ImageLike, threshold: float = DEFAULT_THRESHOLD,
            colour: Colour = DEFAULT_COLOUR) -> Comparison:
    """Diff % and diff image of `a` against `b` in one pass."""
    d = abs_diff(a, b)
    return Comparison(percent(d, threshold), mask_image(d, threshold, colour))


def format_percent(p: float) -> str:
    """`12.3` (one decimal, as the grid labels show it)."""
    return f"{p:.1f}"


def parse_colour(text: Union[str, Sequence[int]]) -> Colour:
    """A colour name (`black`, `red`), `#rrggbb`, `#rgb`, or an (r, g, b) triple."""
    if not isinstance(text, str):
        vals = tuple(int(v) for v in text)
        if len(vals) != 3 or not all(0 <= v <= 255 for v in vals):
            raise ParseError(f"diff colour {tuple(text)!r} is not an (r, g, b) triple of 0..255",
                             "use a name such as black or white, or #rrggbb")
        return vals  # type: ignore[return-value]
    from PIL import ImageColor
    try:
        rgb = ImageColor.getrgb(text.strip())
    except ValueError:
        raise ParseError(f"diff colour {text!r} is not a colour", "use a name such as black or white, or #rrggbb") \
            from None
    return (rgb[0], rgb[1], rgb[2])


def parse_threshold(value: Union[str, float, int]) -> float:
    """A threshold in [0, 255): a channel counts as changed above it."""
    from .text import number
    v = number(value, "threshold") if isinstance(value, str) else float(value)
    if not 0 <= v < 255:
        raise ParseError(f"threshold {value!r} is outside 0..254", "use a number such as 20 (out of 255)")
    return v
