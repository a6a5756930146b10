"""The plot half of the LoRA block-weight script: its arguments and its plan, without the webui.

The script's arguments are `enabled` followed by the fields of `PlotArgs`, in this order; that is
the positional order of `alwayson_scripts["LoRA Block Weight"]["args"]` in the API (missing trailing
args keep their defaults):

     0 enabled       bool   apply block weights from tags (True)
     1 mode          str    "off" | "xy" | "analyzer" (or the labels "XY plot", "Effective Block Analyzer")
     2 range         str    analyzer: "low,base", e.g. "0,1"
     3 blocks        str    analyzer: "12ALL" / "17ALL" / "20ALL" / "26ALL", IDs and ranges, "NOT ..."; "" = all
     4 seeds         int    analyzer: number of seeds (1)
     5 threshold     float  analyzer: a channel counts as changed above this (20 of 255)
     6 colour        str    analyzer: diff colour, a name or #rrggbb ("#000000")
     7 swap          bool   analyzer: blocks across instead of down (False)
     8 x_type        str    XY plot axis: none / Block ID / values / seed / Original Weights / elements
     9 x_values      str
    10 y_type        str
    11 y_values      str
    12 z_type        str    one grid per Z value
    13 z_values      str
    14 layout        str    "auto" (12 on SDXL, 17 on SD1/SD2) or "12" / "17" / "20" / "26"

The LoRA a plot varies is the one tagged `lbw=XYZ`. `build_plot` checks everything up front and
returns the renders to make; `Override` is what one render puts in place of `lbw=XYZ` (our own
cells, and the webui's X/Y/Z plot through its "LoRA block weight" axis).
"""
from __future__ import annotations

import dataclasses
import enum
import random
import re
from dataclasses import dataclass, fields
from typing import Any, Sequence, Union

from ..arch.blocks import Architecture
from ..errors import ParseError
from ..lora.layouts import ALL_LAYOUTS as LAYOUTS, counts_for, describe_counts
from . import (AnalyzerSpec, Axis, AxisKind, AxisValue, Cell, LoraContext, LoraSettings, analyzer_spec,
                  apply_to_prompt, check_prompt, parse_axis, plan_cells)
from .prompt import PLACEHOLDER, count_placeholders
from .text import split_values

CELL_ATTR = "blockmerge_lbw_cell"  # on a copy of p: the Override of this render (set before process_images)
XYZ_ATTR = "blockmerge_lbw_xyz"  # on the X/Y/Z plot's copy of p: the axis value, a preset or list
ELEMENTS_PRESET = "XYZ"  # the elemental preset an elements axis adds its directives to


class Mode(enum.Enum):
    OFF = "off"
    XY = "xy"
    ANALYZER = "analyzer"

    @property
    def label(self) -> str:
        return {Mode.OFF: "off", Mode.XY: "XY plot", Mode.ANALYZER: "Effective Block Analyzer"}[self]

    @staticmethod
    def parse(value: Any) -> "Mode":
        if isinstance(value, Mode):
            return value
        if value is None or value is False or value == 0:
            return Mode.OFF
        text = str(value).strip().lower()
        for m in Mode:
            if text in (m.value, m.label.lower()):
                return m
        if text in ("disable", "none", ""):
            return Mode.OFF
        raise ParseError(f"LoRA Block Weight plot mode {value!r} is unknown",
                         "use off, xy (XY plot) or analyzer (Effective Block Analyzer)")


@dataclass(frozen=True)
class PlotArgs:
    mode: Mode = Mode.OFF
    range: str = "0,1"
    blocks: str = ""
    seeds: Union[int, float, str] = 1
    threshold: Union[float, str] = 20.0
    colour: str = "#000000"
    swap: bool = False
    x_type: str = "values"
    x_values: str = "0,0.25,0.5,0.75,1"
    y_type: str = "Block ID"
    y_values: str = "IN05-OUT05"
    z_type: str = "none"
    z_values: str = ""
    layout: str = "auto"


FIELDS = tuple(f.name for f in fields(PlotArgs))  # the positional order after `enabled`
DEFAULTS = PlotArgs()
INFOTEXT = {"mode": "LBW plot", "range": "LBW plot range", "blocks": "LBW plot blocks", "seeds": "LBW plot seeds",
            "threshold": "LBW plot threshold", "colour": "LBW plot colour", "swap": "LBW plot swap",
            "x_type": "LBW plot X type", "x_values": "LBW plot X values", "y_type": "LBW plot Y type",
            "y_values": "LBW plot Y values", "z_type": "LBW plot Z type", "z_values": "LBW plot Z values",
            "layout": "LBW plot layout"}
LAYOUT_CHOICES = ("auto", "12", "17", "20", "26")


def from_args(values: Sequence[Any]) -> PlotArgs:
    """The script's positional args after `enabled`; missing or None ones keep their defaults."""
    values = list(values)[:len(FIELDS)]
    kw = {name: v for name, v in zip(FIELDS, values) if v is not None}
    if "mode" in kw:
        kw["mode"] = Mode.parse(kw["mode"])
    for name in ("range", "blocks", "colour", "x_type", "x_values", "y_type", "y_values", "z_type", "z_values",
                 "layout"):
        if name in kw:
            kw[name] = str(kw[name])
    if "swap" in kw:
        kw["swap"] = bool(kw["swap"])
    return PlotArgs(**kw)


def infotext(args: PlotArgs) -> dict[str, str]:
    """The settings of a plot as grid infotext (what pasting a grid back restores)."""
    used = ("range", "blocks", "seeds", "threshold", "colour", "swap") if args.mode is Mode.ANALYZER else \
        ("x_type", "x_values", "y_type", "y_values", "z_type", "z_values")
    out = {INFOTEXT["mode"]: args.mode.label}
    for name in (*used, "layout"):  # all of them: a pasted grid sets every field its plot reads
        out[INFOTEXT[name]] = str(getattr(args, name))
    return out


# ---- layouts --------------------------------------------------------------------------------------
def auto_layout(arch: Architecture) -> int:
    """The list length of a plain LoRA of this model: 12 on SDXL, 17 on SD1/SD2."""
    return counts_for(arch)[0]


def layout_for(choice: str, arch: Architecture) -> int:
    text = str(choice or "auto").strip().lower()
    if text == "auto":
        return auto_layout(arch)
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n not in LAYOUTS:
        raise ParseError(f"LoRA layout {choice!r} is not auto, 12, 17, 20, 26 or 61", "pick auto unless you know the list length")
    check_layout(n, arch, f"LoRA layout {n}")
    return n


def check_layout(n: int, arch: Architecture, where: str) -> None:
    if n not in counts_for(arch):
        raise ParseError(f"{where} is the {LAYOUTS[n].label} layout, but the loaded model is {arch.label}",
                         f"use {describe_counts(arch)} values (e.g. {auto_layout(arch)}ALL)")


# ---- what replaces lbw=XYZ in one render ------------------------------------------------------------
@dataclass(frozen=True)
class Override:
    settings: LoraSettings
    source: str  # for messages: "analyzer", "XY plot", "X/Y/Z plot"


def resolve_value(text: str, arch: Architecture, presets: Any, where: str = "LoRA block weight") -> LoraSettings:
    """A preset name or a weight list (as the X/Y/Z axis gives it) as the weights of one render."""
    body = str(text).strip()
    if "," in body:
        n = len([p for p in body.split(",") if p.strip()])
        counts: tuple[int, ...] = (n,)
    else:
        counts = counts_for(arch)
    error: ParseError | None = None
    for n in counts:
        if n not in LAYOUTS:
            raise ParseError(f"{where} {body!r} has {n} values; a list needs 12, 17, 20, 26 or 61",
                             f"give {describe_counts(arch)} values, BASE first, or a preset name")
        try:
            check_layout(n, arch, f"{where} {body!r}")
            axis = parse_axis(AxisKind.ORIGINAL_WEIGHTS, f'"{body}"', LoraContext(layout=n, presets=presets), where)
        except ParseError as e:
            error = error or e
            continue
        return LoraSettings(tuple(axis.values[0].value))
    raise error  # type: ignore[misc]


def split_xyz_values(text: str) -> list[str]:
    """The X/Y/Z plot's value box of the "LoRA block weight" axis: commas separate values except
    inside double quotes, or one value per line (so a weight list needs quotes or its own line)."""
    return [t.text for t in split_values(text, "LoRA block weight")]


def apply_override(prompt: str, settings: LoraSettings) -> str:
    """`lbw=XYZ` -> the render's weights; an elements axis also needs `lbwe=XYZ` on that tag."""
    out = apply_to_prompt(prompt, settings)
    if settings.elements is None:
        return out
    return _ensure_lbwe(prompt, out)


_TAG = re.compile(r"<(?:lora|lyco):[^<>]*>", re.IGNORECASE)
_LBWE = re.compile(r"(?<=:)lbwe=([^:>]*)")


def plotted_tags(prompt: str) -> str:
    """The tags a plot varies (those with `lbw=XYZ`), for a grid's corner."""
    return " ".join(m.group(0) for m in _TAG.finditer(prompt) if count_placeholders(m.group(0)))


def _ensure_lbwe(original: str, replaced: str) -> str:
    """Each tag that carried `lbw=XYZ` names the elemental preset XYZ (added when it names none)."""
    marked = [count_placeholders(m.group(0)) > 0 for m in _TAG.finditer(original)]
    tags = iter(marked)

    def fix(m: re.Match[str]) -> str:
        tag = m.group(0)
        if not next(tags, False):
            return tag
        named = _LBWE.findall(tag)
        if not named:
            return tag[:-1] + f":lbwe={ELEMENTS_PRESET}>"
        if any(n.strip() != ELEMENTS_PRESET for n in named):
            raise ParseError(f"{tag}: the elements axis adds its directives to lbwe={ELEMENTS_PRESET}, "
                             f"but the tag names lbwe={named[0]}",
                             f"write lbwe={ELEMENTS_PRESET} (put your own directives in the {ELEMENTS_PRESET} "
                             "elemental preset) or remove lbwe=")
        return tag

    return _TAG.sub(fix, replaced)


# ---- the plan of a plot -------------------------------------------------------------------------------
Key = tuple[tuple[float, ...], int, Union[str, None]]  # weights, seed, elements: one render


def key_of(settings: LoraSettings, first_seed: int) -> Key:
    seed = settings.seed if settings.seed is not None else first_seed
    return (tuple(float(w) for w in settings.weights), int(seed), settings.elements)


@dataclass(frozen=True)
class Plot:
    args: PlotArgs
    outer: LoraSettings  # the weights the user's own generation renders with (a cell that is reused)
    spec: AnalyzerSpec | None = None  # analyzer
    axes: tuple[Axis | None, Axis | None, Axis | None] = (None, None, None)  # XY plot
    cells: tuple[Cell, ...] = ()  # XY plot, each distinct render once

    @property
    def mode(self) -> Mode:
        return self.args.mode

    def planned(self, first_seed: int) -> list[Key]:
        """Every render the plot needs, each once, in order."""
        if self.spec is not None:
            s = self.spec
            keys = []
            for i in range(s.seeds):
                keys.append(key_of(LoraSettings(s.baseline_weights, first_seed + i), first_seed))
                keys += [key_of(LoraSettings(s.weights_for(b), first_seed + i), first_seed) for b in s.blocks]
            return list(dict.fromkeys(keys))
        return list(dict.fromkeys(key_of(c.settings, first_seed) for c in self.cells))

    def reusable(self, outer_seeds: Sequence[int]) -> set[Key]:
        """Renders the user's own generation already made: the outer weights at each of its seeds."""
        return {key_of(dataclasses.replace(self.outer, seed=int(s)), int(s)) for s in outer_seeds}

    def extra_renders(self, first_seed: int, outer_seeds: Sequence[int]) -> int:
        done = self.reusable(outer_seeds)
        return sum(1 for k in self.planned(first_seed) if k not in done)


def build_plot(args: PlotArgs, arch: Architecture, presets: Any, prompt: str) -> Plot:
    """Everything the user typed, checked against the loaded model before anything renders."""
    if args.mode is Mode.OFF:
        raise ValueError("no plot for mode off")
    check_prompt(prompt)
    if args.mode is Mode.ANALYZER:
        blocks = args.blocks.strip() or f"{layout_for(args.layout, arch)}ALL"
        explicit = re.fullmatch(r"\s*(\d+|FLUX)ALL\s*", blocks, re.IGNORECASE)
        layout = (61 if explicit.group(1).upper() == "FLUX" else int(explicit.group(1))) if explicit \
            else layout_for(args.layout, arch)
        spec = analyzer_spec(args.range, blocks, seeds=args.seeds, threshold=args.threshold, colour=args.colour,
                             swap=args.swap, layout=layout)
        check_layout(spec.layout.count, arch, f"Blocks {blocks!r}")
        return Plot(args, LoraSettings(spec.baseline_weights), spec=spec)
    layout = layout_for(args.layout, arch)
    ctx = LoraContext(layout=layout, original=_user_base(presets, layout), presets=presets)
    axes = tuple(_fixed_seeds(parse_axis(kind or "none", text, ctx, name))
                 for kind, text, name in ((args.x_type, args.x_values, "X axis"), (args.y_type, args.y_values, "Y axis"),
                                          (args.z_type, args.z_values, "Z axis")))
    if all(a is None for a in axes):
        raise ParseError("the XY plot has no axis", "choose an X type, e.g. values 0,0.5,1 with Block ID on Y")
    cells = plan_cells(*axes, context=ctx)
    return Plot(args, LoraSettings(ctx.base_weights), axes=axes, cells=tuple(cells))  # type: ignore[arg-type]


def _user_base(presets: Any, layout: int) -> tuple[float, ...] | None:
    """The incumbent's convention: a preset named XYZ, if the user has one, is the plot's base."""
    lists = getattr(presets, "lbw", {}).get(PLACEHOLDER, {}) if presets is not None else {}
    entries = lists.get(layout)
    if not entries:
        return None
    from ..lora.entries import Kind
    if any(e.kind is not Kind.NUMBER for e in entries):
        return None
    return tuple(float(e.value) for e in entries)


def _fixed_seeds(axis: Axis | None) -> Axis | None:
    """-1 on a seed axis is a random seed, drawn once here (as the webui's own XYZ plot does), so the
    cells that share it are one render and the grid can say which seed it was."""
    if axis is None or axis.kind is not AxisKind.SEED:
        return axis
    values = []
    for v in axis.values:
        if v.value == -1:
            s = random.randrange(4294967294)
            values.append(AxisValue(str(s), s))
        else:
            values.append(v)
    return dataclasses.replace(axis, values=tuple(values))
