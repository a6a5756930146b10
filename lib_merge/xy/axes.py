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
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from ..arch.blocks import SD1, Architecture
from ..errors import ParseError, suggest
from ..merge.presets import PresetBook as MergePresetBook
from .blocks import LAYOUTS, BlockSet, select
from .text import Token, expand_range, fmt, integer, is_range, number, split_values, where

ADJUST_NAMES = ("IN", "OUT", "OUT2", "CONT", "BRI", "COL1", "COL2", "COL3")  # REFERENCE §5 order


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
            raise ParseError(f"LoRA plot: no {self.layout}-value layout", "use 12, 17, 20 or 26")
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
class AxisValue:
    label: str  # as shown in the grid
    value: Any  # parsed: float, int, str, BlockSet, tuple of floats, (alpha, beta), (name, value)


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
        tokens = _alpha_beta_tokens(text, label)
    else:
        tokens = split_values(text, label, per_line=kind is AxisKind.PROMPT)
    values = _PARSERS[kind](tokens, context, label)
    if len(values) > 1000:
        raise ParseError(f"{label} has {len(values)} values, more than 1000", "use fewer values or a larger step")
    return Axis(kind, tuple(values), name, text)


# --- value parsers -------------------------------------------------------------------------------------

def _numbers(tokens: list[Token], ctx: Any, label: str) -> list[AxisValue]:
    out: list[AxisValue] = []
    for t in tokens:
        w = where(label, t.position, t.text)
        if is_range(t.text):
            out.extend(AxisValue(fmt(v), v) for v in expand_range(t.text, w))
        else:
            out.append(AxisValue(t.text, _plain_number(t.text, w)))
    return out


def _plain_number(text: str, w: str) -> float:
    try:
        return number(text, w)
    except ParseError:
        raise ParseError(f"{w} is neither a number nor a range",
                         "write numbers such as 0.5, or ranges such as 0-1 [5] or 0-1 (+0.25)") from None


def _seeds(tokens: list[Token], ctx: Any, label: str) -> list[AxisValue]:
    out: list[AxisValue] = []
    for t in tokens:
        w = where(label, t.position, t.text)
        if is_range(t.text):
            # whole seeds, as the webui's own XYZ plot rounds its int ranges
            out.extend(AxisValue(str(int(round(v))), int(round(v))) for v in expand_range(t.text, w))
        else:
            try:
                out.append(AxisValue(t.text, integer(t.text, w)))
            except ParseError:
                raise ParseError(f"{w} is not a whole number", "write seeds such as 1234, -1, or a range 1-4") from None
    return out


def _weight_list(text: str, ctx: LoraContext, w: str) -> tuple[float, ...]:
    """A preset name or a list of `ctx.layout` numbers, as floats of the plot's layout."""
    body = text.strip()
    n = ctx.layout
    if "," not in body:
        # the LoRA package loads torch: only a plot that names a preset gets here (inside the webui)
        from ..lora.presets import DEFAULT_BOOK, default_values, known_form
        book = ctx.presets if ctx.presets is not None else DEFAULT_BOOK
        if not book.has(body):
            raise ParseError(f"{w} is not a number, a range or a preset{suggest(body, book.names())}",
                             f"use a number, a preset name ({', '.join(book.names())}) or a list of {n} numbers")
        user = book.lbw.get(body, {})
        if n in user:
            return tuple(_entry_number(e, w) for e in user[n])
        fam = LAYOUTS[n].family
        if default_values(body, fam) is not None:
            return known_form(body, n)
        have = " or ".join(str(k) for k in sorted(user))
        raise ParseError(f"{w}: preset {body!r} has {have} values, the plot's LoRA takes {n}",
                         f"add a line {body}:... with {n} values to your presets file")
    parts = [p.strip() for p in body.split(",")]
    if parts and parts[-1] == "":
        parts.pop()
    if len(parts) != n:
        raise ParseError(f"{w} has {len(parts)} values, the plot's LoRA takes {n} "
                         f"({', '.join(LAYOUTS[n].blocks)})",
                         f"give {n} numbers, BASE first, in quotes or one list per line")
    return tuple(number(p, f"{w} entry {i} ({LAYOUTS[n].blocks[i - 1]})") for i, p in enumerate(parts, 1))


def _is_number(text: str) -> bool:
    try:
        number(text, "")
    except ParseError:
        return False
    return True


def _entry_number(entry: Any, w: str) -> float:
    from ..lora.entries import Kind
    if entry.kind is not Kind.NUMBER:
        raise ParseError(f"{w}: the preset uses {entry}, which a plot cannot compare cell to cell",
                         "use a preset of plain numbers in XY plots")
    return float(entry.value)


def _lora_values(tokens: list[Token], ctx: LoraContext, label: str) -> list[AxisValue]:
    out: list[AxisValue] = []
    for t in tokens:
        w = where(label, t.position, t.text)
        if is_range(t.text):
            out.extend(AxisValue(fmt(v), v) for v in expand_range(t.text, w))
        elif _is_number(t.text):
            out.append(AxisValue(t.text, number(t.text, w)))
        else:
            out.append(AxisValue(_short(t.text), _weight_list(t.text, ctx, w)))
    return out


def _original(tokens: list[Token], ctx: LoraContext, label: str) -> list[AxisValue]:
    return [AxisValue(_short(t.text), _weight_list(t.text, ctx, where(label, t.position, t.text))) for t in tokens]


def _block_sets(tokens: list[Token], ctx: Context, label: str) -> list[AxisValue]:
    return [AxisValue(t.text, select(t.text, ctx.blocks, where(label, t.position, t.text))) for t in tokens]


def _lora_elements(tokens: list[Token], ctx: LoraContext, label: str) -> list[AxisValue]:
    from ..lora.elemental import parse_rules
    out = []
    for t in tokens:
        parse_rules(t.text, where(label, t.position, t.text))
        out.append(AxisValue(_short(t.text), t.text))
    return out


def _alpha_beta_tokens(text: str, label: str) -> list[Token]:
    """The incumbent's form: values separated by spaces (or lines), each `alpha,beta` or one number
    for both: `0,0.5 0.1,0.3 0.4`. A range stays one value: `0-1 [3]`."""
    body = (text or "").strip()
    if not body:
        raise ParseError(f"{label} has no values", "type values such as 0,0.5 0.1,0.3 (alpha,beta pairs)")
    lines = body.splitlines() if "\n" in body else re.split(r"\s+(?![\[(])", body)
    parts = [p.strip() for p in lines if p.strip()]
    return [Token(p, i) for i, p in enumerate(parts, 1)]


def _alpha_beta(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
    out: list[AxisValue] = []
    for t in tokens:
        w = where(label, t.position, t.text)
        if is_range(t.text):
            out.extend(AxisValue(fmt(v), (v, v)) for v in expand_range(t.text, w))
            continue
        parts = t.text.split(",")
        if len(parts) > 2 or not all(p.strip() for p in parts):
            raise ParseError(f"{w} is not alpha,beta or one number",
                             "separate values with spaces and write each as alpha,beta: 0,0.5 0.1,0.3")
        a = number(parts[0], f"{w} alpha")
        b = number(parts[1], f"{w} beta") if len(parts) == 2 else a
        out.append(AxisValue(t.text, (a, b)))
    return out


def _mbw(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
    from ..merge.weights import tokens_for
    out = []
    for t in tokens:
        tokens_for(t.text, ctx.arch, ctx.presets or MergePresetBook(), where(label, t.position, t.text))
        out.append(AxisValue(_short(t.text), t.text))
    return out


def _models(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
    out = []
    for t in tokens:
        if ctx.models is not None and t.text not in ctx.models:
            raise ParseError(f"{where(label, t.position, t.text)} is not a known model{suggest(t.text, ctx.models)}",
                             "pick the name from the model list (refresh it if the file is new)")
        out.append(AxisValue(t.text, t.text))
    return out


def _elemental(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
    from ..merge.elemental import parse_elemental
    out = []
    for t in tokens:
        w = where(label, t.position, t.text)
        try:
            parse_elemental(t.text, ctx.arch)
        except ParseError as e:
            raise ParseError(f"{w}: {e.problem}", e.fix) from None
        out.append(AxisValue(t.text, t.text))
    return out


def parse_adjust_values(text: str, w: str) -> tuple[float, ...]:
    """8 numbers (IN, OUT, OUT2, CONT, BRI, COL1, COL2, COL3) separated by commas or spaces."""
    toks = [p for p in re.split(r"\s*,\s*|\s+", text.strip())]
    if len(toks) > 1 and toks[-1] == "":
        toks.pop()
    if len(toks) != 8:
        raise ParseError(f"{w} has {len(toks)} numbers, adjust takes 8 ({', '.join(ADJUST_NAMES)})",
                         'give 8 numbers in quotes or one adjust per line, e.g. "0,0,0,2,0,0,0,0"')
    return tuple(number(p, f"{w} {ADJUST_NAMES[i]}") for i, p in enumerate(toks))


def _adjust(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
    return [AxisValue(t.text, parse_adjust_values(t.text, where(label, t.position, t.text))) for t in tokens]


def _pinpoint_adjust(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
    """`NAME:value` (or `NAME=value`) sets one adjust parameter; a bare `NAME` takes its value from
    an alpha axis, as pinpoint blocks do."""
    out = []
    for t in tokens:
        w = where(label, t.position, t.text)
        m = re.fullmatch(r"\s*(\w+)\s*(?:[:=]\s*(.*?))?\s*", t.text)
        name, val = (m.group(1), m.group(2)) if m else (t.text, None)
        up = name.upper()
        if not m or up not in ADJUST_NAMES:
            raise ParseError(f"{w}: unknown adjust parameter {name!r}{suggest(up, ADJUST_NAMES)}",
                             f"use one of {', '.join(ADJUST_NAMES)}, e.g. CONT:2")
        value = number(val, f"{w} value") if val is not None else None
        out.append(AxisValue(t.text, (up, value)))
    return out


def _calc(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
    if ctx.calc_modes is not None:
        known = ctx.calc_modes
    else:
        from ..methods import CALCS  # imports torch: only when a calc-mode axis is used
        known = CALCS
    out = []
    for t in tokens:
        if t.text not in known:
            raise ParseError(f"{where(label, t.position, t.text)} is not a calc mode{suggest(t.text, known)}",
                             f"use one of {', '.join(known)}")
        out.append(AxisValue(t.text, t.text))
    return out


def _strings(tokens: list[Token], ctx: Any, label: str) -> list[AxisValue]:
    return [AxisValue(_short(t.text), t.text) for t in tokens]


def _short(text: str, n: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[:n - 3] + "..."


_PARSERS: dict[AxisKind, Parser] = {
    AxisKind.BLOCK_ID: _block_sets, AxisKind.VALUES: _lora_values, AxisKind.ORIGINAL_WEIGHTS: _original,
    AxisKind.ELEMENTS: _lora_elements, AxisKind.SEED: _seeds,
    AxisKind.ALPHA: _numbers, AxisKind.BETA: _numbers, AxisKind.ALPHA_BETA: _alpha_beta,
    AxisKind.MBW_ALPHA: _mbw, AxisKind.MBW_BETA: _mbw,
    AxisKind.MODEL_A: _models, AxisKind.MODEL_B: _models, AxisKind.MODEL_C: _models,
    AxisKind.PINPOINT_BLOCKS: _block_sets, AxisKind.PINPOINT_ELEMENT: _elemental,
    AxisKind.EFFECTIVE_ELEMENTAL: _elemental, AxisKind.ADJUST: _adjust,
    AxisKind.PINPOINT_ADJUST: _pinpoint_adjust, AxisKind.CALC_MODE: _calc, AxisKind.PROMPT: _strings,
}

__all__ = ["ADJUST_NAMES", "Axis", "AxisKind", "AxisValue", "BlockSet", "Context", "LoraContext",
           "MergeContext", "PlotKind", "choices", "axis_kind", "parse_axis", "parse_adjust_values",
           "LORA_AXES", "MERGE_AXES"]
