"""`<lora:NAME:TE:UNET:lbw=...:lbwe=...:start=..:stop=..:step=A-B:x=..:seed=..>` as one frozen value.

The same text without the brackets is the CLI's LoRA spec (`PATH:TE:UNET:lbw=...`). Parsing checks
everything that does not depend on the LoRA file (preset names, list lengths, numbers, steps); what
does (a 12-value list on an SD1 LoRA) is checked when the tag is resolved against a LoRA.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Union

from ..arch.blocks import Architecture
from ..errors import ParseError, suggest
from .elemental import ElementRule
from .entries import Entry, fmt, format_entries, parse_entries, parse_number, uses_random, uses_x
from .layouts import check_count
from .presets import DEFAULT_BOOK, PresetBook

Lbw = Union[str, tuple[Entry, ...], None]  # a preset name, a list, or nothing (all blocks 1)

NAMED = ("te", "unet", "lbw", "lbwe", "start", "stop", "step", "x", "seed", "dyn")
_TAG = re.compile(r"<(lora|lyco):([^<>]*)>", re.IGNORECASE)
_INT = re.compile(r"\+?\d+")
_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


@dataclass(frozen=True)
class LoraTag:
    name: str
    te: float = 1.0
    unet: float = 1.0
    lbw: Lbw = None
    lbwe: str | None = None
    start: int | None = None  # off for steps 1..start
    stop: int | None = None  # off after step `stop`
    x: float | None = None  # the value of X entries
    seed: int | None = None  # seed of R / U entries, recorded so a random tag replays
    dyn: int | None = None  # the webui's own dyn= (dynamic rank), passed through

    @property
    def uses_random(self) -> bool:
        return isinstance(self.lbw, tuple) and uses_random(self.lbw)

    def with_seed(self, seed: int | None) -> "LoraTag":
        return replace(self, seed=seed)


@dataclass(frozen=True)
class TagMatch:
    tag: LoraTag
    start: int  # character span of the tag in the prompt
    end: int
    text: str


def parse_tag(text: str, presets: PresetBook = DEFAULT_BOOK, arch: Architecture | None = None) -> LoraTag:
    """`<lora:...>` (or `<lyco:...>`) exactly. With `arch` (the model's, when known), a bad preset
    name is reported with the presets of that architecture only."""
    m = _TAG.fullmatch(text.strip())
    if not m:
        raise ParseError(f"{text.strip()[:60]!r} is not a LoRA tag", "write <lora:NAME:1> or <lora:NAME:1:1:lbw=ALL>")
    return _parse_body(m.group(2), text.strip(), presets, arch=arch)


def parse_spec(text: str, presets: PresetBook = DEFAULT_BOOK) -> LoraTag:
    """The CLI's `PATH:TE:UNET[:lbw=..]`: a tag without brackets; a Windows drive letter is kept."""
    body = text.strip()
    if body.startswith("<") and body.endswith(">"):
        return parse_tag(body, presets)
    return _parse_body(body, f"LoRA spec {body!r}", presets, drive=True)


def parse_prompt(prompt: str, presets: PresetBook = DEFAULT_BOOK) -> list[TagMatch]:
    """Every LoRA tag of a prompt, in order; the first bad one raises ParseError naming it."""
    out = []
    for m in _TAG.finditer(prompt):
        where = f"{m.group(0)} (character {m.start() + 1} of the prompt)"
        out.append(TagMatch(_parse_body(m.group(2), where, presets), m.start(), m.end(), m.group(0)))
    return out


def _split(body: str, drive: bool) -> list[str]:
    if drive and _DRIVE.match(body):
        first, *rest = body[2:].split(":")
        return [body[:2] + first, *rest]
    return body.split(":")


def _parse_body(body: str, where: str, presets: PresetBook, drive: bool = False,
                arch: Architecture | None = None) -> LoraTag:
    items = _split(body, drive)
    name = items[0].strip()
    if not name:
        raise ParseError(f"{where}: the LoRA name is empty", "write <lora:NAME:1>")
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in items[1:]:
        if "=" in item:
            key, _, value = item.partition("=")
            key = key.strip().lower()
            if key not in NAMED:
                hint = suggest(key + "=", [k + "=" for k in NAMED])
                raise ParseError(f"{where}: unknown argument {key + '='!r}{hint}",
                                 f"use {', '.join(k + '=' for k in NAMED)}")
            if key in named:
                raise ParseError(f"{where}: {key}= is given twice", f"keep one {key}=")
            named[key] = value.strip()
        else:
            if "lbwe" in named and not _is_number(item.strip()):  # `lbwe=OUT05:attn:0`: colons split it
                arg = "lbwe"
                raise ParseError(f"{where}: {item.strip()!r} after {arg}={named[arg]} is cut off by ':'; "
                                 f"{arg}= takes an elemental preset name, never an entry with colons",
                                 "put elemental entries in a presets file (NAME:BLOCKS:ELEMENTS:RATIO lines, "
                                 "--lbwe-presets FILE) and write lbwe=NAME")
            positional.append(item.strip())
    if len(positional) > 3:
        raise ParseError(f"{where}: {len(positional)} values after the name; at most TE, UNET and dyn",
                         "write <lora:NAME:TE:UNET:lbw=...>")
    _refuse_old_form(positional, where, presets)
    te = _num(positional[0], where, "TE multiplier") if positional else None
    unet = _num(positional[1], where, "UNET multiplier") if len(positional) > 1 else None
    dyn = _int(positional[2], where, "dyn") if len(positional) > 2 else None
    for key, val in (("te", te), ("unet", unet), ("dyn", dyn)):
        if key in named and val is not None:
            raise ParseError(f"{where}: the {key} value is given twice (by position and as {key}=)", "keep one")
    if "te" in named:
        te = _num(named["te"], where, "te=")
    if "unet" in named:
        unet = _num(named["unet"], where, "unet=")
    if "dyn" in named:
        dyn = _int(named["dyn"], where, "dyn=")
    # The webui's rule: TE defaults to 1, UNET to the TE value, so one multiplier serves both.
    if te is None:
        te = 1.0
    if unet is None:
        unet = te
    start, stop = _steps(named, where)
    x = _num(named["x"], where, "x=") if "x" in named else None
    seed = _int(named["seed"], where, "seed=") if "seed" in named else None
    lbw = _lbw(named["lbw"], where, presets, arch) if "lbw" in named else None
    lbwe = None
    if "lbwe" in named:
        lbwe = named["lbwe"]
        if not lbwe:
            raise ParseError(f"{where}: lbwe= is empty", "give an elemental preset name such as ATTNDEEPOFF")
        rules = presets.elemental(lbwe, where)
        _check_x(rules, x, where)
    if isinstance(lbw, tuple) and uses_x(lbw) and x is None:
        raise ParseError(f"{where}: lbw uses X but the tag has no x= value", "add x=VALUE, e.g. x=0.5")
    return LoraTag(name, te, unet, lbw, lbwe, start, stop, x, seed, dyn)


def _check_x(rules: tuple[ElementRule, ...], x: float | None, where: str) -> None:
    if x is None and any(r.ratio.kind.name == "X" for r in rules):
        raise ParseError(f"{where}: the elemental preset uses X but the tag has no x= value", "add x=VALUE")


def _refuse_old_form(positional: list[str], where: str, presets: PresetBook) -> None:
    for i, p in enumerate(positional):
        if _is_number(p) or (i == 2 and _INT.fullmatch(p)):
            continue
        if presets.has(p) or "," in p:
            raise ParseError(f"{where}: {p!r} in place of a multiplier is the old form of block weights",
                             f"write lbw={p} as a named argument, e.g. <lora:NAME:1:1:lbw={p}>")


def _is_number(text: str) -> bool:
    try:
        parse_number(text, "")
        return True
    except ParseError:
        return False


def _num(text: str, where: str, what: str) -> float:
    if not text:
        raise ParseError(f"{where}: {what} is empty", f"give a number, e.g. {what.rstrip('=')}=1" if "=" in what
                         else "give a number such as 1 or 0.8")
    return parse_number(text, where, what)


def _int(text: str, where: str, what: str) -> int:
    if not _INT.fullmatch(text.strip()):
        raise ParseError(f"{where}: {what} {text.strip()!r} is not a whole number >= 0", f"write e.g. {what}10"
                         if what.endswith("=") else "write a whole number such as 10")
    return int(text)


def _steps(named: dict[str, str], where: str) -> tuple[int | None, int | None]:
    start = _int(named["start"], where, "start=") if "start" in named else None
    stop = _int(named["stop"], where, "stop=") if "stop" in named else None
    if "step" in named:
        if start is not None or stop is not None:
            raise ParseError(f"{where}: step= and start=/stop= both given", "use step=A-B or start=A:stop=B, not both")
        a, sep, b = named["step"].partition("-")
        if not sep:
            raise ParseError(f"{where}: step={named['step']!r} needs the form A-B", "write e.g. step=5-20")
        start, stop = _int(a, where, "step= start"), _int(b, where, "step= stop")
    if start is not None and stop is not None and start >= stop:
        raise ParseError(f"{where}: start={start} is not before stop={stop}, so the LoRA would never be on",
                         "make start smaller than stop (start=N: off for steps 1..N; stop=M: off after step M)")
    return start, stop


def _lbw(value: str, where: str, presets: PresetBook, arch: Architecture | None) -> Lbw:
    if not value:
        raise ParseError(f"{where}: lbw= is empty", "give a preset name such as ALL or 12/17/20/26 numbers")
    if "," in value or _is_entry(value):
        entries = parse_entries(value, f"{where} lbw")
        check_count(len(entries), f"{where} lbw")
        return entries
    presets.check_name(value, where, arch)
    return value


def _is_entry(text: str) -> bool:
    return _is_number(text) or bool(re.fullmatch(r"[RrUu]|[Xx]([+-].*)?", text))


def format_tag(tag: LoraTag, brackets: bool = True) -> str:
    """The canonical text of a tag; parse_tag(format_tag(t)) == t."""
    parts = [tag.name, fmt(tag.te), fmt(tag.unet)]
    if tag.lbw is not None:
        parts.append("lbw=" + (tag.lbw if isinstance(tag.lbw, str) else format_entries(tag.lbw)))
    if tag.lbwe is not None:
        parts.append(f"lbwe={tag.lbwe}")
    for key in ("start", "stop"):
        if getattr(tag, key) is not None:
            parts.append(f"{key}={getattr(tag, key)}")
    if tag.x is not None:
        parts.append(f"x={fmt(tag.x)}")
    if tag.seed is not None:
        parts.append(f"seed={tag.seed}")
    if tag.dyn is not None:
        parts.append(f"dyn={tag.dyn}")
    body = ":".join(parts)
    return f"<lora:{body}>" if brackets else body
