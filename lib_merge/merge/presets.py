"""Block-weight presets for checkpoint merges (REFERENCE §3), defined by formula, plus user files.

Every built-in preset is a 26-value list (BASE, IN00..IN11, M00, OUT00..OUT11) as users know it;
on SDXL it follows the 26 -> 20 rule. SDXL-native versions of the formula presets carry the suffix
`_XL` and are computed over SDXL's own 19 blocks.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..errors import ParseError

Curve = Callable[[float], float]  # t in [0, 1] over IN00..OUT_last -> weight


def _smoothstep(t: float) -> float:
    return t * t * (3 - 2 * t)


def _tri(x: float) -> float:
    """Triangle wave with period 2: 0 -> 0, 1 -> 1, 2 -> 0 (how the *N presets fold)."""
    x = x % 2.0
    return x if x <= 1 else 2 - x


def _cosine(t: float) -> float:
    return (1 + math.cos(math.pi * t)) / 2


def _curves() -> dict[str, Curve]:
    c: dict[str, Curve] = {
        "GRAD_V": lambda t: abs(1 - 2 * t),
        "GRAD_A": lambda t: 1 - abs(1 - 2 * t),
        "FLAT_25": lambda t: 0.25,
        "FLAT_75": lambda t: 0.75,
        "SMOOTHSTEP": _smoothstep,
        "REVERSE-SMOOTHSTEP": lambda t: 1 - _smoothstep(t),
        "COSINE": _cosine,
        "REVERSE_COSINE": lambda t: 1 - _cosine(t),
    }
    for n in (2, 3, 4):
        c[f"SMOOTHSTEP*{n}"] = lambda t, n=n: _tri(n * _smoothstep(t))
        c[f"R_SMOOTHSTEP*{n}"] = lambda t, n=n: 1 - _tri(n * _smoothstep(t))
        c[f"SMOOTHSTEP/{n}"] = lambda t, n=n: _smoothstep(_tri(n * t))
        c[f"R_SMOOTHSTEP/{n}"] = lambda t, n=n: 1 - _smoothstep(_tri(n * t))
    return c


CURVES: dict[str, Curve] = _curves()

# presets defined by which blocks are set (26-block names); everything else 0
_SD_BLOCKS = ("BASE", *(f"IN{i:02d}" for i in range(12)), "M00", *(f"OUT{i:02d}" for i in range(12)))


def _span(a: str, b: str) -> list[str]:
    i, j = _SD_BLOCKS.index(a), _SD_BLOCKS.index(b)
    return list(_SD_BLOCKS[i:j + 1])


def _set_presets() -> dict[str, dict[str, float]]:
    ones = lambda *spans: {b: 1.0 for s in spans for b in _span(*s)}  # noqa: E731
    p = {
        "ALL_A": {},
        "ALL_B": {b: 1.0 for b in _SD_BLOCKS},
        "WRAP08": ones(("IN00", "IN03"), ("OUT08", "OUT11")),
        "WRAP12": ones(("IN00", "IN05"), ("OUT06", "OUT11")),
        "WRAP14": ones(("IN00", "IN06"), ("OUT05", "OUT11")),
        "WRAP16": ones(("IN00", "IN07"), ("OUT04", "OUT11")),
        # the incumbents' file sets IN05..OUT05 (14 blocks) despite the name; users' merges depend on it
        "MID12_50": {b: 0.5 for b in _span("IN05", "OUT05")},
        "OUT07": ones(("OUT05", "OUT11")),
        "OUT12": ones(("OUT00", "OUT11")),
        "OUT12_5": {**ones(("OUT00", "OUT11")), "M00": 0.5},
        "RING08_SOFT": {**ones(("IN06", "IN08"), ("OUT03", "OUT05")),
                        "IN05": 0.5, "IN09": 0.5, "OUT02": 0.5, "OUT06": 0.5},
        "RING08_5": ones(("IN06", "IN09"), ("OUT02", "OUT05")),
        "RING10_5": ones(("IN05", "IN09"), ("OUT02", "OUT06")),
        "RING10_3": ones(("IN06", "IN10"), ("OUT01", "OUT05")),
    }
    return p


SET_PRESETS = _set_presets()

# curves the incumbent gives only as values (its scripts/mbwpresets_master.txt), 26 each, BASE first
VALUE_PRESETS: dict[str, tuple[float, ...]] = {
    "TRUE_CUBIC_HERMITE": (
        0, 0, 0.199031876929012, 0.325761959876543, 0.424641927083333, 0.498456790123457, 0.549991560570988,
        0.58203125, 0.597360869984568, 0.598765432098765, 0.589029947916667, 0.570939429012346,
        0.547278886959876, 0.520833333333333, 0.49438777970679, 0.470727237654321, 0.45263671875,
        0.442901234567901, 0.444305796682099, 0.459635416666667, 0.491675106095678, 0.543209876543211,
        0.617024739583333, 0.715904706790124, 0.842634789737655, 1),
    "TRUE_REVERSE_CUBIC_HERMITE": (
        0, 1, 0.800968123070988, 0.674238040123457, 0.575358072916667, 0.501543209876543, 0.450008439429012,
        0.41796875, 0.402639130015432, 0.401234567901235, 0.410970052083333, 0.429060570987654,
        0.452721113040124, 0.479166666666667, 0.50561222029321, 0.529272762345679, 0.54736328125,
        0.557098765432099, 0.555694203317901, 0.540364583333333, 0.508324893904322, 0.456790123456789,
        0.382975260416667, 0.284095293209876, 0.157365210262345, 0),
    "FAKE_CUBIC_HERMITE": (
        0, 0, 0.157576195987654, 0.28491512345679, 0.384765625, 0.459876543209877, 0.512996720679012,
        0.546875, 0.564260223765432, 0.567901234567901, 0.560546875, 0.544945987654321, 0.523847415123457,
        0.5, 0.476152584876543, 0.455054012345679, 0.439453125, 0.432098765432099, 0.435739776234568,
        0.453125, 0.487003279320987, 0.540123456790124, 0.615234375, 0.71508487654321, 0.842423804012347, 1),
    "FAKE_REVERSE_CUBIC_HERMITE": (
        0, 1, 0.842423804012346, 0.71508487654321, 0.615234375, 0.540123456790123, 0.487003279320988,
        0.453125, 0.435739776234568, 0.432098765432099, 0.439453125, 0.455054012345679, 0.476152584876543,
        0.5, 0.523847415123457, 0.544945987654321, 0.560546875, 0.567901234567901, 0.564260223765432,
        0.546875, 0.512996720679013, 0.459876543209876, 0.384765625, 0.28491512345679, 0.157576195987653, 0),
}
RANDOM_PRESETS = {"ALL_R": "R", "ALL_U": "U", "ALL_X": "X"}


def curve_values(curve: Curve, n_blocks: int) -> list[float]:
    """BASE (0) followed by the curve sampled at t = i/(n-1) over the n UNet blocks."""
    return [0.0] + [float(curve(i / (n_blocks - 1))) for i in range(n_blocks)]


def builtin(name: str, blocks: tuple[str, ...]) -> list[str] | None:
    """A built-in preset as tokens for an architecture with these blocks (BASE first), or None.

    Plain names are 26-value lists (reduced by the caller on SDXL); `NAME_XL` names are the same
    formula over SDXL's own blocks and are only valid there."""
    if name == "FLUXALL":  # LBW's Flux preset: every one of the Flux slots (61 on Flux.1) at 1
        return ["1"] * len(blocks) if blocks and blocks[0] == "CLIP" else None
    native = len(blocks) == 20
    if name.endswith("_XL"):
        base = name[:-3]
        if not native:
            return None
        n = len(blocks) - 1
    else:
        base, n = name, 25
    if base in CURVES:
        return [_fmt(v) for v in curve_values(CURVES[base], n)]
    if base in SET_PRESETS and not name.endswith("_XL"):
        vals = SET_PRESETS[base]
        return [_fmt(vals.get(b, 0.0)) for b in _SD_BLOCKS]
    if base in VALUE_PRESETS and not name.endswith("_XL"):
        return [_fmt(v) for v in VALUE_PRESETS[base]]
    if base in RANDOM_PRESETS:
        tok = RANDOM_PRESETS[base]
        return [tok] * (n + 1)
    return None


def builtin_names() -> list[str]:
    names = list(CURVES) + list(SET_PRESETS) + list(VALUE_PRESETS) + list(RANDOM_PRESETS)
    return names + [f"{n}_XL" for n in list(CURVES) + list(RANDOM_PRESETS)] + ["FLUXALL"]


def _fmt(v: float) -> str:
    return repr(float(v))


# a name has no space, colon or comma (a comma-free name is how a weight string is told from a preset)
_LINE = re.compile(r"^\s*([^\s:,]+)\s*[:\t]\s*(.+?)\s*$")
_HEADER = "preset_name"  # the incumbents' files start with `preset_name<tab>preset_weights`


@dataclass
class PresetBook:
    """Built-in presets plus the user's own (`NAME<tab or :>values` lines). Owned by its caller."""
    user: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | None) -> "PresetBook":
        if not path:
            return cls()
        try:  # a file the user named but that cannot be read is an error, not an empty book
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            raise ParseError(f"cannot read presets file {path} ({reason})", "check the path") from None
        return cls(parse_preset_text(text, os.path.basename(path)))

    def lookup(self, name: str, blocks: tuple[str, ...]) -> list[str] | None:
        if name in self.user:
            return [t.strip() for t in self.user[name].split(",")]
        return builtin(name, blocks)

    def names(self) -> list[str]:
        return builtin_names() + [n for n in self.user if n not in builtin_names()]


def parse_preset_text(text: str, source: str = "presets") -> dict[str, str]:
    """Read `NAME<tab or :>v1,v2,...` lines; `#` comments and blank lines are skipped."""
    out: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        m = _LINE.match(body)
        if m and m.group(1).lower() == _HEADER:
            continue
        if not m:
            raise ParseError(f"{source} line {i}: {line.strip()!r} is not NAME:values",
                             "write one preset per line as NAME:v1,v2,... (or NAME<tab>values)")
        out[m.group(1)] = m.group(2)
    return out


def format_preset_text(presets: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{name}\t{values}\n" for name, values in presets)
