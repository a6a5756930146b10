"""The value parsers behind `axes.parse_axis`: one per axis kind, each turning the tokens of a text box
into checked, labelled values (numbers, seeds, block sets, weight lists, presets, models, adjust).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ParseError, suggest
from ..merge.presets import PresetBook as MergePresetBook
from .blocks import LAYOUTS, select
from .text import Token, expand_range, fmt, integer, is_range, number, where

if TYPE_CHECKING:
    from .axes import Context, LoraContext, MergeContext

ADJUST_NAMES = ("IN", "OUT", "OUT2", "CONT", "BRI", "COL1", "COL2", "COL3")  # REFERENCE §5 order


@dataclass(frozen=True)
class AxisValue:
    label: str  # as shown in the grid
    value: Any  # parsed: float, int, str, BlockSet, tuple of floats, (alpha, beta), (name, value)


def numbers(tokens: list[Token], ctx: Any, label: str) -> list[AxisValue]:
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


def seeds(tokens: list[Token], ctx: Any, label: str) -> list[AxisValue]:
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
        vals = default_values(body, fam)
        if vals is not None:
            return tuple(vals) if fam == "flux" else known_form(body, n)  # Flux's presets: its 61 values
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


def lora_values(tokens: list[Token], ctx: LoraContext, label: str) -> list[AxisValue]:
    out: list[AxisValue] = []
    for t in tokens:
        w = where(label, t.position, t.text)
        if is_range(t.text):
            out.extend(AxisValue(fmt(v), v) for v in expand_range(t.text, w))
        elif _is_number(t.text):
            out.append(AxisValue(t.text, number(t.text, w)))
        else:
            out.append(AxisValue(short(t.text), _weight_list(t.text, ctx, w)))
    return out


def original(tokens: list[Token], ctx: LoraContext, label: str) -> list[AxisValue]:
    return [AxisValue(short(t.text), _weight_list(t.text, ctx, where(label, t.position, t.text))) for t in tokens]


def block_sets(tokens: list[Token], ctx: Context, label: str) -> list[AxisValue]:
    return [AxisValue(t.text, select(t.text, ctx.blocks, where(label, t.position, t.text))) for t in tokens]


def lora_elements(tokens: list[Token], ctx: LoraContext, label: str) -> list[AxisValue]:
    from ..lora.elemental import parse_rules
    out = []
    for t in tokens:
        parse_rules(t.text, where(label, t.position, t.text))
        out.append(AxisValue(short(t.text), t.text))
    return out


def alpha_beta_tokens(text: str, label: str) -> list[Token]:
    """The incumbent's form: values separated by spaces (or lines), each `alpha,beta` or one number
    for both: `0,0.5 0.1,0.3 0.4`. A range stays one value: `0-1 [3]`."""
    body = (text or "").strip()
    if not body:
        raise ParseError(f"{label} has no values", "type values such as 0,0.5 0.1,0.3 (alpha,beta pairs)")
    lines = body.splitlines() if "\n" in body else re.split(r"\s+(?![\[(])", body)
    parts = [p.strip() for p in lines if p.strip()]
    return [Token(p, i) for i, p in enumerate(parts, 1)]


def alpha_beta(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
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


def mbw(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
    from ..merge.weights import tokens_for
    out = []
    for t in tokens:
        tokens_for(t.text, ctx.arch, ctx.presets or MergePresetBook(), where(label, t.position, t.text))
        out.append(AxisValue(short(t.text), t.text))
    return out


def models(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
    out = []
    for t in tokens:
        if ctx.models is not None and t.text not in ctx.models:
            raise ParseError(f"{where(label, t.position, t.text)} is not a known model{suggest(t.text, ctx.models)}",
                             "pick the name from the model list (refresh it if the file is new)")
        out.append(AxisValue(t.text, t.text))
    return out


def elemental(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
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


def adjust(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
    return [AxisValue(t.text, parse_adjust_values(t.text, where(label, t.position, t.text))) for t in tokens]


def pinpoint_adjust(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
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


def calc(tokens: list[Token], ctx: MergeContext, label: str) -> list[AxisValue]:
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


def strings(tokens: list[Token], ctx: Any, label: str) -> list[AxisValue]:
    return [AxisValue(short(t.text), t.text) for t in tokens]


def short(text: str, n: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[:n - 3] + "..."
