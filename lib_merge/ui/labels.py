"""What people read in the tab, kept apart from the stable ids the code dispatches on.

gradio 3.41 dropdowns and radios take plain strings (no (label, value) pairs), so the tab shows
labels and turns them back into ids here, at the edge, through tables keyed by id.
"""
from __future__ import annotations

from ..merge.adjust import LIMITS, NAMES
from ..errors import MergeError
from ..wording import Surface, for_surface
from ..methods import CALCS, MODES, REGISTRY

MODE_LABELS: dict[str, str] = {m: REGISTRY[m].label for m in MODES}
CALC_LABELS: dict[str, str] = {"normal": "Normal", **{c: REGISTRY[c].label for c in CALCS if c != "normal"}}
SELECT_LABELS: dict[str, str] = {"none": "Off", "include": "Include only", "exclude": "Exclude"}
ARCH_LABELS: dict[str, str] = {"sd1": "SD1 / SD2 (26 blocks)", "sdxl": "SDXL (20 blocks)",
                               "flux": "Flux.1 / Chroma (61 blocks)"}
TARGET_LABELS: dict[str, str] = {"alpha": "alpha weights", "beta": "beta weights"}
DTYPE_LABELS: dict[str, str] = {"keep": "keep A's", "fp16": "fp16", "bf16": "bf16", "fp32": "fp32",
                                "fp8_e4m3fn": "fp8 e4m3fn", "fp8_e5m2": "fp8 e5m2"}
# Flux slider labels that would repeat an adjust slider's label (the webui keys ui-config.json by label)
SLIDER_LABELS: dict[str, str] = {"IN": "IN (img/txt/time/vector/guidance in)", "OUT": "OUT (final layer)"}

ADJUST_HINTS: dict[str, str] = {
    "IN": "detail at the UNet input (+ sharper, - softer)",
    "OUT": "detail at the UNet output (+ sharper, - softer)",
    "OUT2": "detail of the last layer (+ sharper, - softer)",
    "CONT": "contrast (+ more, - less)",
    "BRI": "brightness (+ brighter, - darker)",
    "COL1": "colour: cyan (-) to red (+)",
    "COL2": "colour: magenta (-) to green (+)",
    "COL3": "colour: yellow (-) to blue (+)",
}
ADJUST = tuple(zip(NAMES, LIMITS))  # (name, slider range ±limit), in the order of an adjust string


def to_id(table: dict[str, str], label: str | None, what: str) -> str:
    """The id behind a label (an id is accepted too, so saved forms and API calls may use either)."""
    if label in table:
        return str(label)
    for key, text in table.items():
        if text == label:
            return key
    raise MergeError(f"unknown {what} {label!r}", f"pick one of: {', '.join(table.values())}")


def to_label(table: dict[str, str], key: str) -> str:
    return table.get(key, key)


def user_message(err: BaseException) -> str:
    """A MergeError's one-line message, worded for the tab instead of the command line."""
    return for_surface(str(err), Surface.TAB)
