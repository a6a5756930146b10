"""Axis value text: how a text box becomes a list of value tokens, and numeric ranges.

Splitting rules, in order:
- text with a line break: one value per line (blank lines skipped), so weight lists and prompts
  need no quoting;
- otherwise values are separated by commas, except inside double quotes: `"1,0,1", ALL` is two
  values (the quotes are removed);
- a value of a numeric axis may be a range: `0-1 [5]` (5 evenly spaced values, both ends included),
  `0-1 (+0.25)` (step 0.25 from the first number while not past the second; `(-0.25)` counts down),
  or `1-4` (step 1, either direction).
Every error names the axis and the value's position and says how to fix it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import ParseError

MAX_VALUES = 1000  # per axis, after ranges are expanded: beyond this a typo is far likelier than intent

_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER = re.compile(rf"\s*({_NUM})\s*")
_RANGE = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})\s*(?:\[\s*([^\]]*?)\s*\]|\(\s*([^)]*?)\s*\))?\s*")


@dataclass(frozen=True)
class Token:
    text: str  # the value as typed, quotes removed, whitespace stripped
    position: int  # 1-based, for messages


def where(axis: str, position: int, text: str) -> str:
    shown = text if len(text) <= 40 else text[:37] + "..."
    return f"{axis}, value {position} ({shown!r})"


def split_values(text: str, axis: str, *, per_line: bool = False) -> list[Token]:
    """The tokens of an axis text box. `per_line` axes (prompts) never split on commas."""
    body = (text or "").strip()
    if not body:
        raise ParseError(f"{axis} has no values", "type values separated by commas, or one per line")
    if per_line or "\n" in body:
        parts = [ln.strip() for ln in body.splitlines()]
        parts = [_unquote(p) for p in parts if p]
    else:
        parts = _split_commas(body, axis)
    tokens = [Token(p, i) for i, p in enumerate(parts, 1)]
    for t in tokens:
        if not t.text:
            raise ParseError(f"{where(axis, t.position, t.text)} is empty",
                             "remove the doubled comma, or write the value")
    return tokens


def _unquote(p: str) -> str:
    if len(p) >= 2 and p[0] == '"' and p[-1] == '"':
        return p[1:-1].strip()
    return p


def _split_commas(body: str, axis: str) -> list[str]:
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    quote_at = 0
    for i, ch in enumerate(body):
        if ch == '"':
            quoted = not quoted
            quote_at = i + 1
        elif ch == "," and not quoted:
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    if quoted:
        raise ParseError(f"{axis}: the quote at character {quote_at} is never closed",
                         'close it: "1,0,0,..." (or put one value per line)')
    last = "".join(buf).strip()
    if last or not parts:
        parts.append(last)  # a trailing comma is harmless
    return parts


def number(text: str, where_: str) -> float:
    m = _NUMBER.fullmatch(text)
    if not m:
        raise ParseError(f"{where_} is not a number", "write a number such as 0.5, 1 or -0.25")
    v = float(m.group(1))
    if not math.isfinite(v):
        raise ParseError(f"{where_} is too large", "write a number such as 0.5, 1 or -0.25")
    return v


def integer(text: str, where_: str) -> int:
    v = number(text, where_)
    if v != int(v):
        raise ParseError(f"{where_} is not a whole number", "write a whole number such as 12345")
    return int(v)


def is_range(text: str) -> bool:
    return _RANGE.fullmatch(text) is not None


def expand_range(text: str, where_: str) -> list[float]:
    """`a-b [n]`, `a-b (+s)`, `a-b` -> the numbers (both ends included where they are hit)."""
    m = _RANGE.fullmatch(text)
    if not m:
        raise ParseError(f"{where_} is not a range", "write 0-1 [5], 0-1 (+0.25) or 1-4")
    a, b = number(m.group(1), where_), number(m.group(2), where_)
    count_text, step_text = m.group(3), m.group(4)
    if count_text is not None:
        if not re.fullmatch(r"\d+", count_text):
            raise ParseError(f"{where_}: [{count_text}] is not a count of values",
                             "write a whole number of values in brackets, e.g. 0-1 [5]")
        n = int(count_text)
        if n < 1:
            raise ParseError(f"{where_} asks for {n} values", "ask for at least 1, e.g. 0-1 [5]")
        _check_count(n, where_)
        if n == 1:
            return [_clean(a)]
        return [_clean(a + (b - a) * i / (n - 1)) for i in range(n)]
    if step_text is not None:
        s = number(step_text, f"{where_} step")
    else:
        s = 1.0 if b >= a else -1.0
    if s == 0:
        raise ParseError(f"{where_} has step 0", "use a step such as (+0.25), or a count such as [5]")
    if (b - a) * s < 0:
        raise ParseError(f"{where_}: step {fmt(s)} goes away from {fmt(b)}",
                         f"use ({'-' if s > 0 else '+'}{fmt(abs(s))}) to count from {fmt(a)} to {fmt(b)}")
    span = (b - a) / s
    n = int(math.floor(span + 1e-9)) + 1
    _check_count(n, where_)
    return [_clean(a + s * i) for i in range(n)]


def _check_count(n: int, where_: str) -> None:
    if n > MAX_VALUES:
        raise ParseError(f"{where_} gives {n} values, more than {MAX_VALUES}",
                         "use a larger step or fewer values")


def _clean(v: float) -> float:
    """Round away float noise (0.30000000000000004 -> 0.3) so labels and dedupe keys are exact."""
    r = round(v, 10)
    return 0.0 if r == 0 else r


def fmt(v: float) -> str:
    """Shortest text for a number: 1 not 1.0, 0.25, -0.5."""
    s = repr(float(v))
    return s[:-2] if s.endswith(".0") else s
