"""One entry of a LoRA block-weight list: a number, `R`, `U`, or `X`, `X+v`, `X-v` (REFERENCE §7).

Entries stay symbolic until a tag is resolved, so a tag can be written back exactly as typed and a
random list can be replayed from its recorded seed.
"""
from __future__ import annotations

import enum
import math
import random
import re
from dataclasses import dataclass
from typing import Sequence

from ..errors import ParseError

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_X_FORM = re.compile(r"[Xx](?:([+-])((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))?")


class Kind(enum.Enum):
    NUMBER = "number"
    R = "R"  # uniform [0, 1)
    U = "U"  # uniform [-0.5, 1.5)
    X = "X"  # the tag's x= value plus an offset


@dataclass(frozen=True)
class Entry:
    kind: Kind
    value: float = 0.0  # the number itself, or X's offset

    @property
    def is_random(self) -> bool:
        return self.kind in (Kind.R, Kind.U)

    def __str__(self) -> str:
        if self.kind is Kind.NUMBER:
            return fmt(self.value)
        if self.kind is Kind.X:
            if self.value == 0:
                return "X"
            return f"X{'+' if self.value > 0 else '-'}{fmt(abs(self.value))}"
        return self.kind.value


def fmt(v: float) -> str:
    """Shortest text that reads back as the same float: 1 not 1.0, 0.25, -0.5, 1e-05."""
    s = repr(float(v))
    return s[:-2] if s.endswith(".0") else s


def parse_number(text: str, where: str, what: str = "value") -> float:
    t = text.strip()
    if not _NUMBER.fullmatch(t):
        raise ParseError(f"{where}: {what} {t!r} is not a number", "write a number such as 1, 0.5 or -0.25")
    v = float(t)
    if not math.isfinite(v):
        raise ParseError(f"{where}: {what} {t!r} is too large", "write a number such as 1, 0.5 or -0.25")
    return v


def parse_entry(text: str, where: str, position: int | None = None) -> Entry:
    t = text.strip()
    what = f"entry {position}" if position is not None else "value"
    if t in ("R", "r"):
        return Entry(Kind.R)
    if t in ("U", "u"):
        return Entry(Kind.U)
    m = _X_FORM.fullmatch(t.replace(" ", ""))
    if m:
        off = float(m.group(2)) if m.group(2) else 0.0
        if not math.isfinite(off):
            raise ParseError(f"{where}: {what} {t!r} has an offset that is too large", "write X+0.2 or X-0.3")
        return Entry(Kind.X, -off if m.group(1) == "-" else off)
    if not t:
        raise ParseError(f"{where}: {what} is empty", "remove the doubled comma or write a number")
    if not _NUMBER.fullmatch(t):
        raise ParseError(f"{where}: {what} {t!r} is not a number",
                         "write numbers, R, U, X, X+0.2 or X-0.3 separated by commas")
    return Entry(Kind.NUMBER, parse_number(t, where, what))


def parse_entries(text: str, where: str) -> tuple[Entry, ...]:
    """`1,0.5,R,X+0.2` -> entries, numbered from 1 in errors."""
    return tuple(parse_entry(p, where, i + 1) for i, p in enumerate(text.split(",")))


def format_entries(entries: Sequence[Entry]) -> str:
    return ",".join(str(e) for e in entries)


def uses_random(entries: Sequence[Entry]) -> bool:
    return any(e.is_random for e in entries)


def uses_x(entries: Sequence[Entry]) -> bool:
    return any(e.kind is Kind.X for e in entries)


def value_of(entry: Entry, rng: random.Random, x: float | None, where: str) -> float:
    """The number an entry stands for. Random draws are rounded to 3 decimals so the list written
    into metadata or infotext replays exactly."""
    if entry.kind is Kind.NUMBER:
        return entry.value
    if entry.kind is Kind.R:
        return round(rng.random(), 3)
    if entry.kind is Kind.U:
        return round(rng.random() * 2.0 - 0.5, 3)
    if x is None:
        raise ParseError(f"{where}: the weights use {entry} but the tag has no x= value",
                         "add x=VALUE to the tag, e.g. x=0.5")
    return x + entry.value


def values_of(entries: Sequence[Entry], rng: random.Random, x: float | None, where: str) -> tuple[float, ...]:
    return tuple(value_of(e, rng, x, where) for e in entries)
