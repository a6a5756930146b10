"""LoRA block-weight presets (REFERENCE §7) and elemental presets (§8), and the user's files.

These are the LoRA presets users know from the prompt (`lbw=INS`); the checkpoint-merge presets
live elsewhere. Every default preset is defined by intent over the full block table of each family,
so `lbw=OUTD` on an SDXL LoRA means "the deep output blocks" of SDXL, not SD1's positions shifted,
and on a LyCORIS file the conv-only blocks follow their neighbours instead of silently being 0.
The 17 values users know are what these tables show in the 17 layout.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from ..arch.blocks import Architecture
from ..errors import ParseError, suggest
from .elemental import ElementRule, parse_lbwe_text
from .entries import Entry, Kind, format_entries, parse_entries
from .layouts import BLOCKS20, BLOCKS26, FAMILY_COUNTS, LAYOUTS, article, check_count, counts_for, describe_counts, family

log = logging.getLogger("lib_merge")


def _span(blocks: tuple[str, ...], a: str, b: str) -> list[str]:
    return list(blocks[blocks.index(a):blocks.index(b) + 1])


def _on(blocks: tuple[str, ...], *spans: tuple[str, str], value: float = 1.0) -> tuple[float, ...]:
    on: set[str] = set()
    for a, b in spans:
        on.update(_span(blocks, a, b))
    return tuple(value if blk in on else 0.0 for blk in blocks)


_B = ("BASE", "BASE")
# name -> {family: values over BLOCKS26 ("sd") or BLOCKS20 ("sdxl")}. SD1's attention blocks are
# IN01 02 04 05 07 08, M00, OUT03..11; SDXL's IN04 05 07 08, M00, OUT00..05; the mirror of a deep
# input block is a deep output block.
_DEFAULTS: dict[str, dict[str, tuple[float, ...]]] = {
    "NONE": {"sd": (0.0,) * 26, "sdxl": (0.0,) * 20},
    "ALL": {"sd": (1.0,) * 26, "sdxl": (1.0,) * 20},
    "INS": {"sd": _on(BLOCKS26, _B, ("IN00", "IN04")), "sdxl": _on(BLOCKS20, _B, ("IN00", "IN05"))},
    "IND": {"sd": _on(BLOCKS26, _B, ("IN05", "IN11")), "sdxl": _on(BLOCKS20, _B, ("IN06", "IN08"))},
    "INALL": {"sd": _on(BLOCKS26, _B, ("IN00", "IN11")), "sdxl": _on(BLOCKS20, _B, ("IN00", "IN08"))},
    "MIDD": {"sd": _on(BLOCKS26, _B, ("IN05", "OUT06")), "sdxl": _on(BLOCKS20, _B, ("IN06", "OUT02"))},
    "OUTD": {"sd": _on(BLOCKS26, _B, ("OUT00", "OUT06")), "sdxl": _on(BLOCKS20, _B, ("OUT00", "OUT02"))},
    "OUTS": {"sd": _on(BLOCKS26, _B, ("OUT07", "OUT11")), "sdxl": _on(BLOCKS20, _B, ("OUT03", "OUT08"))},
    "OUTALL": {"sd": _on(BLOCKS26, _B, ("OUT00", "OUT11")), "sdxl": _on(BLOCKS20, _B, ("OUT00", "OUT08"))},
    "ALL0.5": {"sd": (0.5,) * 26, "sdxl": (0.5,) * 20},
    # The placeholder of the LoRA XY plot ("Effective Block Analyzer"): the plot replaces it; alone it is ALL.
    "XYZ": {"sd": (1.0,) * 26, "sdxl": (1.0,) * 20},
    # LBW's one Flux preset (61 ones; hako-mikan/sd-webui-lora-block-weight @ b403cb7). It has no SD form.
    "FLUXALL": {},
}
# Flux LoRAs (61 slots): the uniform presets mean the same on every architecture; the SD presets
# that pick input/middle/output blocks (INS, OUTD, ...) have no Flux meaning and are refused there.
for _name, _v in (("NONE", 0.0), ("ALL", 1.0), ("ALL0.5", 0.5), ("XYZ", 1.0), ("FLUXALL", 1.0)):
    _DEFAULTS[_name]["flux"] = (_v,) * 61
FULL_COUNT = {"sd": 26, "sdxl": 20, "flux": 61}

DEFAULT_LBWE_TEXT = """\
ATTNDEEPON:IN05-OUT05:attn:1

ATTNDEEPOFF:IN05-OUT05:attn:0

PROJDEEPOFF:IN05-OUT05:proj:0

XYZ:::1
"""


def default_values(name: str, fam: str) -> tuple[float, ...] | None:
    d = _DEFAULTS.get(name)
    return d.get(fam) if d else None


def known_form(name: str, count: int) -> tuple[float, ...]:
    """A default preset as the values of one layout (e.g. the 17 values users know)."""
    lay = LAYOUTS[count]
    if lay.family not in _DEFAULTS[name]:
        raise ParseError(f"preset {name} has no {lay.label} form", f"{name} is for {_families(name)} LoRAs")
    full = dict(zip(BLOCKS26 if lay.family == "sd" else BLOCKS20, _DEFAULTS[name][lay.family]))
    return tuple(full.get(b, 0.0) for b in lay.blocks)


@dataclass(frozen=True)
class PresetBook:
    """Default and user presets. `lbw`: {NAME: {count: entries}}; `lbwe`: {NAME: rules}."""
    lbw: Mapping[str, Mapping[int, tuple[Entry, ...]]] = field(default_factory=dict)
    lbwe: Mapping[str, tuple[ElementRule, ...]] = field(default_factory=dict)

    @staticmethod
    def load(lbw_text: str | None = None, lbwe_text: str | None = None, *, lbw_source: str = "presets file",
             lbwe_source: str = "elemental presets file") -> "PresetBook":
        lbw = parse_lbw_presets(lbw_text, lbw_source) if lbw_text else {}
        lbwe = parse_lbwe_text(DEFAULT_LBWE_TEXT, "default elemental presets")
        if lbwe_text:
            lbwe.update(parse_lbwe_text(lbwe_text, lbwe_source))
        return PresetBook(MappingProxyType(lbw), MappingProxyType(lbwe))

    @staticmethod
    def from_files(lbw_path: str | None = None, lbwe_path: str | None = None) -> "PresetBook":
        return PresetBook.load(_read(lbw_path), _read(lbwe_path), lbw_source=lbw_path or "",
                               lbwe_source=lbwe_path or "")

    def names(self, arch: Architecture | None = None) -> list[str]:
        """Every preset name, or with `arch` only those a LoRA of it can use: the defaults with a form
        for its family and the user's presets with a list of a length it takes."""
        if arch is None:
            return sorted(set(_DEFAULTS) | set(self.lbw))
        return self._family_names(family(arch))

    def _family_names(self, fam: str) -> list[str]:
        counts = FAMILY_COUNTS[fam]
        return sorted({n for n, d in _DEFAULTS.items() if fam in d} |
                      {n for n, by in self.lbw.items() if any(c in by for c in counts)})

    def has(self, name: str) -> bool:
        return name in _DEFAULTS or name in self.lbw

    def check_name(self, name: str, where: str, arch: Architecture | None = None) -> None:
        """A ParseError for a name that is no preset, listing the presets of `arch` (grouped by
        architecture when the LoRA's architecture is not known yet)."""
        if self.has(name):
            return
        if arch is not None:
            fits = self.names(arch)
            raise ParseError(f"{where}: unknown preset {name!r}{suggest(name, fits)}",
                             f"use one of the presets for {article(arch.label)} LoRA ({', '.join(fits)}), "
                             f"or {describe_counts(arch)} values")
        groups: dict[tuple[str, ...], list[str]] = {}
        for fam, label in (("sd", "SD1/SD2"), ("sdxl", "SDXL"), ("flux", "Flux")):
            groups.setdefault(tuple(self._family_names(fam)), []).append(label)
        listed = "; ".join(f"{' and '.join(labels)} LoRAs: {', '.join(names)}" for names, labels in groups.items())
        raise ParseError(f"{where}: unknown preset {name!r}{suggest(name, self.names())}",
                         f"use a preset of the LoRA's architecture ({listed}), or a list of 12/17/20/26/61 numbers")

    def lbw_entries(self, name: str, arch: Architecture, where: str) -> tuple[Entry, ...]:
        """The preset's entries for a LoRA of `arch`: a user's list of a fitting length first, then
        the default's full table for the family."""
        self.check_name(name, where, arch)
        user = self.lbw.get(name, {})
        for n in counts_for(arch):
            if n in user:
                return user[n]
        fam = family(arch)
        if name in _DEFAULTS and fam in _DEFAULTS[name]:
            return tuple(Entry(Kind.NUMBER, v) for v in _DEFAULTS[name][fam])
        if name in _DEFAULTS and not user:
            fits = ", ".join(n for n, d in _DEFAULTS.items() if fam in d)
            raise ParseError(f"{where}: preset {name!r} is for {_families(name)} LoRAs, not "
                             f"{article(arch.label)} LoRA",
                             f"use {fits} or {describe_counts(arch)} values, or add a line {name}:... with "
                             f"{describe_counts(arch)} values to your presets file")
        have = ", ".join(str(n) for n in sorted(user))
        raise ParseError(f"{where}: preset {name!r} has {have} values, which do not fit {article(arch.label)} LoRA",
                         f"add a line {name}:... with {describe_counts(arch)} values to your presets file")

    def elemental(self, name: str, where: str) -> tuple[ElementRule, ...]:
        if name not in self.lbwe:
            raise ParseError(f"{where}: unknown elemental preset {name!r}{suggest(name, self.lbwe)}",
                             f"use one of {', '.join(sorted(self.lbwe))} or add it to your elemental presets file")
        return self.lbwe[name]


def _families(name: str) -> str:
    labels = {"sd": "SD1/SD2", "sdxl": "SDXL", "flux": "Flux"}
    return "/".join(labels[f] for f in _DEFAULTS[name])


def _read(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ParseError(f"cannot read presets file {path} ({e.strerror})", "check the path") from None


def parse_lbw_presets(text: str, source: str) -> dict[str, dict[int, tuple[Entry, ...]]]:
    """`NAME:v1,v2,...` or `NAME<tab>v1,...` lines with 12/17/20/26 values; `#` starts a comment.
    A line that repeats a default exactly (files copied from the incumbent do) is the default itself,
    so the default keeps its meaning on every architecture."""
    out: dict[str, dict[int, tuple[Entry, ...]]] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{n}"
        sep = "\t" if "\t" in line and (":" not in line or line.index("\t") < line.index(":")) else ":"
        name, found, values = line.partition(sep)
        name = name.strip()
        if not found or not name or "," in name:
            raise ParseError(f"{where}: {line[:40]!r} is not a NAME:values line",
                             "write one preset per line as NAME:1,0,0,... (or NAME<tab>values)")
        entries = parse_entries(values, f"{where} ({name})")
        check_count(len(entries), f"{where} ({name})")
        if name in _DEFAULTS and len(entries) in (12, 17) and \
                all(e.kind is Kind.NUMBER for e in entries) and \
                tuple(e.value for e in entries) == known_form(name, len(entries)):
            continue
        if len(entries) in out.get(name, {}):
            log.warning("%s: preset %s defined twice with %d values; the later line wins", where, name, len(entries))
        out.setdefault(name, {})[len(entries)] = entries
    return out


def format_lbw_presets(book: PresetBook, count: int = 17) -> str:
    """A presets file listing every preset (defaults in the given layout, then the user's)."""
    lines = [f"{name}:{','.join(_fmt(v) for v in known_form(name, count))}" for name in _DEFAULTS
             if LAYOUTS[count].family in _DEFAULTS[name]]
    for name, by_count in book.lbw.items():
        for entries in by_count.values():
            lines.append(f"{name}:{format_entries(entries)}")
    return "\n".join(lines) + "\n"


def _fmt(v: float) -> str:
    from .entries import fmt
    return fmt(v)


DEFAULT_BOOK = PresetBook.load()
