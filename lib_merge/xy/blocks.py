"""Block selections as users type them in plots: `OUT01`, `IN04 IN05`, `IN04-OUT02`, `NOT M00`, `12ALL`.

A selection is made against a list of blocks (a LoRA layout, or a checkpoint architecture's MBW
table). Single IDs must be blocks of that list. A range `A-B` (either order) takes every listed block
between A and B in the full block order, so `IN00-IN11` in the 12-block SDXL LoRA layout is
IN04, IN05, IN07, IN08; its ends must be real block names but need not be in the list. A leading
`NOT` selects every listed block except the named ones. IDs are case-insensitive.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ..arch.blocks import SD1
from ..errors import ParseError, suggest


from ..arch.flux import FLUX1  # noqa: E402
from ..lora.layouts import ALL_LAYOUTS as LAYOUTS, Layout  # noqa: E402  (torch-free: lora/__init__ is lazy)

# every block name of every table, in weight-string order (SDXL's 20 are a subset of these 26); Flux's
# 61 (CLIP, T5, IN, D00..D18, S00..S37, OUT) in a range of their own, so a range never spans both
ORDER: dict[str, int] = {**{b: i for i, b in enumerate(SD1.blocks)}, **{b: 100 + i for i, b in enumerate(FLUX1.blocks)}}
ALL_TOKENS = {f"{n}ALL": n for n in sorted(LAYOUTS)}  # 12ALL, 17ALL, 20ALL, 26ALL, 61ALL
ALL_TOKENS["FLUXALL"] = 61  # LBW's name for every Flux slot


@dataclass(frozen=True)
class BlockSet:
    """Blocks chosen from `blocks` (kept in that order)."""
    blocks: tuple[str, ...]  # the list chosen from
    chosen: tuple[str, ...]

    @property
    def text(self) -> str:
        """Canonical text that parses back to the same selection: runs written as ranges."""
        if self.chosen == self.blocks and _is_layout(self.blocks):
            return "FLUXALL" if len(self.blocks) == 61 else f"{len(self.blocks)}ALL"
        return _runs(self.blocks, self.chosen)


def _is_layout(blocks: tuple[str, ...]) -> bool:
    lay = LAYOUTS.get(len(blocks))
    return lay is not None and lay.blocks == blocks


def _runs(blocks: tuple[str, ...], chosen: tuple[str, ...]) -> str:
    on = set(chosen)
    out: list[str] = []
    run: list[str] = []
    for b in (*blocks, None):
        if b is not None and b in on:
            run.append(b)
            continue
        if run:
            out.append(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run = []
    return " ".join(out)


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[\s,]+", text.strip()) if t]


def _name(tok: str, blocks: Sequence[str], where: str, in_list: bool) -> str:
    up = tok.upper()
    if up in ORDER and (not in_list or up in blocks):
        return up
    known = blocks if in_list else list(ORDER)
    if up in ORDER:
        raise ParseError(f"{where}: {up} is not one of these {len(blocks)} blocks ({', '.join(blocks)})",
                         f"use one of them, or a range such as {blocks[1]}-{blocks[-1]}")
    raise ParseError(f"{where}: unknown block {tok!r}{suggest(up, known)}",
                     "block IDs are BASE, IN00..IN11, M00, OUT00..OUT11 (SDXL: up to IN08 / OUT08); "
                     "Flux: CLIP, T5, IN, D00..D18, S00..S37, OUT")


def select(text: str, blocks: Sequence[str], where: str) -> BlockSet:
    """Parse IDs, ranges and a leading NOT against `blocks`."""
    blocks = tuple(blocks)
    toks = _tokens(text)
    if len(toks) == 1 and toks[0].upper() in ALL_TOKENS:
        n = ALL_TOKENS[toks[0].upper()]
        if LAYOUTS[n].blocks != blocks:
            raise ParseError(f"{where}: {toks[0]} is the {LAYOUTS[n].label} layout, not these {len(blocks)} blocks",
                             f"write {blocks[0]}-{blocks[-1]} for all of them, or name blocks")
        return BlockSet(blocks, blocks)
    neg = bool(toks) and toks[0].upper() == "NOT"
    if neg:
        toks = toks[1:]
    if not toks:
        raise ParseError(f"{where}: {'NOT with no blocks after it' if neg else 'no blocks given'}",
                         "name blocks such as OUT01, IN04-OUT02 or NOT M00")
    on: set[str] = set()
    for tok in toks:
        if tok.upper() == "NOT":
            raise ParseError(f"{where}: NOT must come first", "write NOT IN04 OUT02, not IN04 NOT OUT02")
        if tok.upper() in ALL_TOKENS:
            raise ParseError(f"{where}: {tok} cannot be combined with other blocks",
                             f"write {tok} alone, or list the blocks you want")
        ends = tok.split("-")
        if len(ends) == 1:
            on.add(_name(tok, blocks, where, in_list=True))
            continue
        if len(ends) != 2 or not all(ends):
            raise ParseError(f"{where}: {tok!r} is not a block or a range", "write OUT01 or IN04-OUT02")
        i, j = sorted(ORDER[_name(e, blocks, where, in_list=False)] for e in ends)
        hit = [b for b in blocks if i <= ORDER[b] <= j]
        if not hit:
            raise ParseError(f"{where}: {tok} contains none of these blocks ({', '.join(blocks)})",
                             "widen the range or name blocks of this list")
        on.update(hit)
    chosen = tuple(b for b in blocks if (b in on) != neg)
    if not chosen:
        raise ParseError(f"{where}: NOT {' '.join(toks)} leaves no block", "name fewer blocks after NOT")
    return BlockSet(blocks, chosen)


def layout_of(count: int, where: str) -> Layout:
    if count not in LAYOUTS:
        raise ParseError(f"{where}: there is no {count}-block layout",
                         "use 12 (SDXL LoRA), 17 (SD1/SD2 LoRA), 20 (SDXL full), 26 (SD1/SD2 full) or 61 (Flux)")
    return LAYOUTS[count]


def select_in_layout(text: str, layout: int | None, where: str) -> tuple[Layout, BlockSet]:
    """`12ALL`/`17ALL`/`20ALL`/`26ALL` alone, or IDs against `layout` (26 when None: the full SD
    table, as the incumbent reads IDs; pass the LoRA's layout to get 12- or 20-value lists)."""
    toks = _tokens(text)
    if len(toks) == 1 and toks[0].upper() in ALL_TOKENS:
        lay = LAYOUTS[ALL_TOKENS[toks[0].upper()]]
        return lay, BlockSet(lay.blocks, lay.blocks)
    lay = layout_of(layout if layout is not None else 26, where)
    return lay, select(text, lay.blocks, where)
