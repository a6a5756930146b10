"""Axis kinds of the LoRA and merge XY plots (REFERENCE §10) and the parsing of their value text.

Each kind has a stable id (what settings, infotext and the webui's XYZ script store) and a label
(what people read). `parse_axis(kind, text, context, "X axis")` turns a text box into an `Axis`:
labelled values, each already checked, so a plot never fails half-way on a typo.

Values per axis (separated by commas, or one per line; see `text.py` for quoting and ranges):
- LoRA: Block ID `OUT01`, `IN04 IN05`, `IN04-OUT02`, `NOT M00` (one block set per value); values: a
  number or range (`0-1 [5]`), or a preset name / quoted list of the layout's length; seed: whole
  numbers or ranges; Original Weights: preset names or lists; elements: `BLOCKS:ELEMENTS:RATIO`.
- Merge: alpha, beta: numbers or ranges; alpha and beta: `alpha,beta` pairs separated by spaces
  (`0,0.5 0.1,0.3`, the incumbent's form) or one number for both; MBW alpha / beta: presets or
  weight strings, one per line; model A / B / C: model names; pinpoint blocks: block sets as for
  Block ID; pinpoint element and effective elemental checker: `BLOCKS:ELEMENTS:RATIO`; adjust:
  8 numbers per value (quoted or one per line); pinpoint adjust: `CONT:2` or a bare `CONT` fed by
  an alpha axis; calc mode: calc-mode ids; prompt: one prompt per line (commas stay in the prompt).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from ..arch.blocks import SD1, Architecture
from ..errors import ParseError, suggest
from ..merge.presets import PresetBook as MergePresetBook
from . import axis_values as v
from .axis_values import ADJUST_NAMES, AxisValue, parse_adjust_values
from .blocks import LAYOUTS, BlockSet
from .text import Token, split_values



class PlotKind(enum.Enum):
    LORA = "lora"
    MERGE = "merge"


class AxisKind(enum.Enum):
    NONE = "none"
    # LoRA plots
    BLOCK_ID = "block_id"
    VALUES = "values"
    ORIGINAL_WEIGHTS = "original_weights"
    ELEMENTS = "elements"
    # both
    SEED = "seed"
    # merge plots
    ALPHA = "alpha"
    BETA = "beta"
    ALPHA_BETA = "alpha_beta"
    MBW_ALPHA = "mbw_alpha"
    MBW_BETA = "mbw_beta"
    MODEL_A = "model_a"
    MODEL_B = "model_b"
    MODEL_C = "model_c"
    PINPOINT_BLOCKS = "pinpoint_blocks"
    PINPOINT_ELEMENT = "pinpoint_element"
    EFFECTIVE_ELEMENTAL = "effective_elemental"
    ADJUST = "adjust"
    PINPOINT_ADJUST = "pinpoint_adjust"
    CALC_MODE = "calc_mode"
    PROMPT = "prompt"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    AxisKind.NONE: "none", AxisKind.BLOCK_ID: "Block ID", AxisKind.VALUES: "values",
    AxisKind.ORIGINAL_WEIGHTS: "Original Weights", AxisKind.ELEMENTS: "elements", AxisKind.SEED: "seed",
    AxisKind.ALPHA: "alpha", AxisKind.BETA: "beta", AxisKind.ALPHA_BETA: "alpha and beta",
    AxisKind.MBW_ALPHA: "MBW alpha", AxisKind.MBW_BETA: "MBW beta", AxisKind.MODEL_A: "model A",
    AxisKind.MODEL_B: "model B", AxisKind.MODEL_C: "model C", AxisKind.PINPOINT_BLOCKS: "pinpoint blocks",
    AxisKind.PINPOINT_ELEMENT: "pinpoint element", AxisKind.EFFECTIVE_ELEMENTAL: "effective elemental checker",
    AxisKind.ADJUST: "adjust", AxisKind.PINPOINT_ADJUST: "pinpoint adjust", AxisKind.CALC_MODE: "calc mode",
    AxisKind.PROMPT: "prompt",
}

LORA_AXES = (AxisKind.NONE, AxisKind.BLOCK_ID, AxisKind.VALUES, AxisKind.SEED, AxisKind.ORIGINAL_WEIGHTS,
             AxisKind.ELEMENTS)
MERGE_AXES = (AxisKind.NONE, AxisKind.ALPHA, AxisKind.BETA, AxisKind.ALPHA_BETA, AxisKind.SEED,
              AxisKind.MBW_ALPHA, AxisKind.MBW_BETA, AxisKind.MODEL_A, AxisKind.MODEL_B, AxisKind.MODEL_C,
              AxisKind.PINPOINT_BLOCKS, AxisKind.PINPOINT_ELEMENT, AxisKind.EFFECTIVE_ELEMENTAL,
              AxisKind.ADJUST, AxisKind.PINPOINT_ADJUST, AxisKind.CALC_MODE, AxisKind.PROMPT)


def choices(plot: PlotKind) -> list[tuple[str, str]]:
    """(label, id) pairs for a dropdown, in the order users know."""
    return [(k.label, k.value) for k in (LORA_AXES if plot is PlotKind.LORA else MERGE_AXES)]


def axis_kind(id_or_label: str) -> AxisKind:
    """An AxisKind from its stable id (or, for pasted settings, its label)."""
    for k in AxisKind:
        if id_or_label in (k.value, k.label):
            return k
    names = [k.value for k in AxisKind]
    raise ParseError(f"unknown axis {id_or_label!r}{suggest(id_or_label, names)}", f"use one of {', '.join(names)}")


@dataclass(frozen=True)
class LoraContext:
    """What LoRA plot values are read against: the LoRA's list length and the default weights."""
    layout: int = 17  # 12 / 17 / 20 / 26: the `lbw=` list length handed to the renderer
    original: tuple[float, ...] | None = None  # weights when no Original Weights axis; None: all 1
    presets: Any = field(default=None, compare=False)  # a lib_merge.lora PresetBook; None: the defaults

    plot = PlotKind.LORA

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ParseError(f"LoRA plot: no {self.layout}-value layout", "use 12, 17, 20, 26 or 61")
        if self.original is not None and len(self.original) != self.layout:
            raise ParseError(f"LoRA plot: Original Weights have {len(self.original)} values, "
                             f"the layout has {self.layout}", f"give {self.layout} values")

    @property
    def blocks(self) -> tuple[str, ...]:
        return LAYOUTS[self.layout].blocks

    @property
    def base_weights(self) -> tuple[float, ...]:
        return self.original if self.original is not None else (1.0,) * self.layout


@dataclass(frozen=True)
class MergeContext:
    """What merge plot values are read against: the architecture (blocks), presets, known names."""
    arch: Architecture = SD1
    presets: MergePresetBook | None = field(default=None, compare=False)
    models: tuple[str, ...] | None = None  # names offered in the UI; None: any name is accepted
    calc_modes: tuple[str, ...] | None = None  # None: every registered calc mode

    plot = PlotKind.MERGE

    @property
    def blocks(self) -> tuple[str, ...]:
        return self.arch.blocks


Context = Union[LoraContext, MergeContext]


@dataclass(frozen=True)
class Axis:
    kind: AxisKind
    values: tuple[AxisValue, ...]
    name: str = "X axis"  # for messages
    text: str = ""  # as typed

    @property
    def title(self) -> str:
        return self.kind.label

    def __len__(self) -> int:
        return len(self.values)


Parser = Callable[[list[Token], Any, str], list[AxisValue]]


def parse_axis(kind: AxisKind | str, text: str, context: Context, name: str = "X axis") -> Axis | None:
    """Parse one axis' text box; None for the `none` axis."""
    if isinstance(kind, str):
        try:
            kind = axis_kind(kind)
        except ParseError as e:
            raise ParseError(f"{name}: {e.problem}", e.fix) from None
    if kind is AxisKind.NONE:
        return None
    allowed = LORA_AXES if context.plot is PlotKind.LORA else MERGE_AXES
    if kind not in allowed:
        raise ParseError(f"{name}: {kind.label!r} is not an axis of the {context.plot.value} plot",
                         f"use one of {', '.join(k.label for k in allowed[1:])}")
    label = f"{name} ({kind.label})"
    if kind is AxisKind.ALPHA_BETA:
        tokens = v.alpha_beta_tokens(text, label)
    else:
        tokens = split_values(text, label, per_line=kind is AxisKind.PROMPT)
    values = _PARSERS[kind](tokens, context, label)
    if len(values) > 1000:
        raise ParseError(f"{label} has {len(values)} values, more than 1000", "use fewer values or a larger step")
    return Axis(kind, tuple(values), name, text)


_PARSERS: dict[AxisKind, Parser] = {
    AxisKind.BLOCK_ID: v.block_sets, AxisKind.VALUES: v.lora_values, AxisKind.ORIGINAL_WEIGHTS: v.original,
    AxisKind.ELEMENTS: v.lora_elements, AxisKind.SEED: v.seeds,
    AxisKind.ALPHA: v.numbers, AxisKind.BETA: v.numbers, AxisKind.ALPHA_BETA: v.alpha_beta,
    AxisKind.MBW_ALPHA: v.mbw, AxisKind.MBW_BETA: v.mbw,
    AxisKind.MODEL_A: v.models, AxisKind.MODEL_B: v.models, AxisKind.MODEL_C: v.models,
    AxisKind.PINPOINT_BLOCKS: v.block_sets, AxisKind.PINPOINT_ELEMENT: v.elemental,
    AxisKind.EFFECTIVE_ELEMENTAL: v.elemental, AxisKind.ADJUST: v.adjust,
    AxisKind.PINPOINT_ADJUST: v.pinpoint_adjust, AxisKind.CALC_MODE: v.calc, AxisKind.PROMPT: v.strings,
}

__all__ = ["ADJUST_NAMES", "Axis", "AxisKind", "AxisValue", "BlockSet", "Context", "LoraContext",
           "MergeContext", "PlotKind", "choices", "axis_kind", "parse_axis", "parse_adjust_values",
           "LORA_AXES", "MERGE_AXES"]
