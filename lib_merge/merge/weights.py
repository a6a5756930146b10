"""Block-weight strings (MBW): `0,1,0.5,...` with BASE first, preset names, random tokens R/U/X."""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from ..arch.blocks import SD1, SD26_TO_SDXL20, SDXL, Architecture
from ..errors import ParseError, suggest
from .presets import RANDOM_PRESETS, PresetBook, builtin

RANDOM_TOKENS = ("R", "U", "X")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class RandomSpec:
    """Where random tokens come from: a seed (recorded in the recipe) and X's limits."""
    seed: int
    x_low: float = 0.0
    x_high: float = 1.0

    def rng(self, field: str) -> random.Random:
        # one independent stream per field, stable across Python versions (seeding from a str is)
        return random.Random(f"blockmerge:{self.seed}:{field}")

    def draw(self, token: str, rng: random.Random) -> float:
        if token == "R":
            return rng.random()
        if token == "U":
            return rng.uniform(-0.5, 1.5)
        return rng.uniform(self.x_low, self.x_high)


@dataclass(frozen=True)
class BlockWeights:
    """One value per block of an architecture, BASE first, and the tokens they came from."""
    values: tuple[float, ...]
    tokens: tuple[str, ...]  # canonical: presets expanded, random tokens kept as R/U/X

    @property
    def text(self) -> str:
        return ",".join(self.tokens)


def number(token: str, where: str) -> float:
    """A float from user text, or a ParseError naming where it was."""
    t = token.strip()
    if not _NUMBER.match(t):
        raise ParseError(f"{where}: {t!r} is not a number", "write numbers such as 0.5, 1 or -0.25")
    v = float(t)
    if not math.isfinite(v):  # 1e999 matches the pattern but would fill a model with inf/NaN
        raise ParseError(f"{where}: {t!r} is too large", "write numbers such as 0.5, 1 or -0.25")
    return v


def is_random(token: str) -> bool:
    return token.strip().upper() in RANDOM_TOKENS


def uses_random(spec: str | None, presets: PresetBook | None = None) -> bool:
    """Whether the spec draws random values: R/U/X tokens, or a preset (built-in or `presets`') that has them."""
    if not spec:
        return False
    text = spec.strip()
    if "," not in text:
        if presets is not None and text in presets.user:
            return any(is_random(t) for t in presets.user[text].split(","))
        if (text[:-3] if text.endswith("_XL") else text) in RANDOM_PRESETS:
            return True
    return any(is_random(t) for t in re.split(r"[,\s]+", text))


def expected_counts(arch: Architecture) -> str:
    n = len(arch.blocks)
    blocks = arch.summary
    extra = " or 26 (IN09-IN11 and OUT09-OUT11 are dropped)" if n == 20 else ""
    without = f"{n - 1} or 25" if n == 20 else f"{n - 1}"
    return f"{arch.label} takes {n} values ({blocks}){extra}, or {without} without BASE"


def _check_token(tok: str, where: str) -> None:
    if is_random(tok):
        return
    if tok == "":
        raise ParseError(f"{where} is empty", "remove the extra comma or add a number")
    number(tok, where)


def tokens_for(spec: str, arch: Architecture, presets: PresetBook, what: str) -> list[str]:
    """The spec's tokens, each checked, reduced to this architecture's block count (BASE may still be missing)."""
    text = spec.strip()
    label = what
    if "," not in text and text and not is_random(text) and not _NUMBER.match(text):
        toks = presets.lookup(text, arch.blocks)
        if toks is None:
            if text.endswith("_XL") and len(arch.blocks) != 20 and builtin(text, SDXL.blocks) is not None:
                raise ParseError(f"{what}: preset {text!r} is for SDXL only, not {arch.label}",
                                 f"use {text[:-3]!r} (the 26-value version)")
            if text == "FLUXALL":
                raise ParseError(f"{what}: preset 'FLUXALL' is for Flux only, not {arch.label}",
                                 "use ALL_B (every block at 1, what FLUXALL is on Flux) or a list of numbers")
            raise ParseError(f"{what}: unknown preset {text!r}{suggest(text, presets.names())}",
                             "use a preset name from the list (`python -m lib_merge presets`) or comma-separated numbers")
        label = f"{what} (preset {text!r})"
    else:
        toks = [t.strip() for t in text.split(",")]
    if toks and toks[-1] == "":
        toks.pop()  # a trailing comma is harmless
    n = len(arch.blocks)
    reduce = n == 20 and len(toks) in (26, 25)
    if reduce:
        names = SD1.blocks[26 - len(toks):]
    elif len(toks) in (n, n - 1):
        names = arch.blocks[n - len(toks):]
    else:
        raise ParseError(f"{label} has {len(toks)} values but {expected_counts(arch)}",
                         "give one value per block, BASE first, or a preset name")
    # every value is checked where the user wrote it, the ones SDXL drops too: bad input is never ignored
    for pos, (tok, block) in enumerate(zip(toks, names), 1):
        _check_token(tok, f"{label} value {pos} ({block})")
    if reduce:
        toks = [toks[i] for i in SD26_TO_SDXL20] if len(toks) == 26 else \
            [toks[i - 1] for i in SD26_TO_SDXL20[1:]]
    return toks


def parse_block_weights(spec: str, arch: Architecture, *, base_default: float, presets: PresetBook | None = None,
                        randoms: RandomSpec | None = None, what: str = "--alpha-blocks") -> BlockWeights:
    """Resolve a weight string to one float per block of `arch`.

    A list without BASE takes BASE from `base_default` (the plain alpha/beta). R/U/X need `randoms`."""
    toks = tokens_for(spec, arch, presets or PresetBook(), what)
    if len(toks) == len(arch.blocks) - 1:
        toks = [repr(float(base_default))] + toks
    rng = randoms.rng(what) if randoms else None
    values: list[float] = []
    canon: list[str] = []
    for i, tok in enumerate(toks):
        block = arch.blocks[i]
        if is_random(tok):
            if randoms is None:
                raise ParseError(f"{what} uses random token {tok!r} at {block} but no seed was given",
                                 "pass --seed N so the merge can be replayed")
            values.append(randoms.draw(tok.upper(), rng))
            canon.append(tok.upper())
        else:
            values.append(number(tok, f"{what} {block}"))  # checked by tokens_for
            canon.append(tok)
    return BlockWeights(tuple(values), tuple(canon))
