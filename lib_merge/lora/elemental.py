"""LoRA elemental directives (`lbwe=`, REFERENCE §8): `BLOCKS:ELEMENTS:RATIO`, the last match wins.

BLOCKS are block IDs and ranges (`IN05-OUT05`, either order) with an optional leading `NOT`, empty
for every block; Flux LoRAs take the 61-slot IDs (`CLIP`, `T5`, `IN`, `D00-D18`, `S00-S37`, `OUT`),
ranges in that order (`D10-S05`), as LBW's hyphener over BLOCKIDFLUX; ELEMENTS are substrings of the
module's underscore name (`attn2_to_k`, `proj`; on Flux the model weight's: `img_attn`, `linear1`),
optional leading `NOT`, empty for every module. The ratio replaces the block ratio.
Block names are matched exactly against the module's own block (no SDXL shift).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from ..errors import ParseError, suggest
from .entries import Entry, parse_entry
from .layouts import BLOCKS26

_ORDER = {b: i for i, b in enumerate(BLOCKS26)}  # SDXL's blocks are a subset in the same order
# Flux: CLIP, T5, IN, D.., S.., OUT; up to 100 blocks of each kind, so a checkpoint's own counts fit
_FLUX_BLOCKS = ("CLIP", "T5", "IN", *(f"D{i:02d}" for i in range(100)), *(f"S{i:02d}" for i in range(100)), "OUT")
_FLUX_ORDER = {b: i for i, b in enumerate(_FLUX_BLOCKS)}
_VOCABS = (("sd", _ORDER, BLOCKS26), ("flux", _FLUX_ORDER, _FLUX_BLOCKS))


@dataclass(frozen=True)
class ElementRule:
    blocks: frozenset[str] | None  # None: every block
    not_blocks: bool
    elements: tuple[str, ...]  # empty: every module
    not_elements: bool
    ratio: Entry
    text: str  # as written, for messages and round trips
    vocab: str | None = None  # "sd" (BASE, IN.., M00, OUT..) or "flux" (CLIP, T5, IN, D.., S.., OUT); None: no blocks

    def matches(self, block: str | None, names: Iterable[str]) -> bool:
        if self.blocks is not None:
            inside = block in self.blocks
            if inside == self.not_blocks:
                return False
        if self.elements:
            names = tuple(names)
            hit = any(e in n for e in self.elements for n in names)
            if hit == self.not_elements:
                return False
        return True


def _split_not(text: str) -> tuple[bool, list[str]]:
    words = text.split()
    if words and words[0] == "NOT":
        return True, words[1:]
    return False, words


def _vocab(name: str, where: str) -> str:
    """The vocabulary of a block ID; the SD and Flux IDs are disjoint (`IN` is Flux's, SD's are `IN00`..)."""
    for vocab, order, _ in _VOCABS:
        if name in order:
            return vocab
    raise ParseError(f"{where}: unknown block {name!r}{suggest(name, [*_ORDER, 'CLIP', 'T5', 'IN', 'OUT'])}",
                     "use BASE, IN00..IN11, M00, OUT00..OUT11 (SD) or CLIP, T5, IN, D00..D18, S00..S37, OUT "
                     "(Flux), or a range such as IN05-OUT05 or D00-D18")


def parse_blocks(text: str, where: str) -> tuple[bool, frozenset[str] | None, str | None]:
    """(NOT?, the blocks or None for every block, their vocabulary: "sd", "flux" or None)."""
    neg, words = _split_not(text)
    if not words:
        if neg:
            raise ParseError(f"{where}: NOT with no blocks after it", "write e.g. NOT IN05-OUT05")
        return False, None, None
    out: set[str] = set()
    vocabs: set[str] = set()
    for w in words:
        if "-" in w:
            a, _, b = w.partition("-")
            va, vb = _vocab(a, where), _vocab(b, where)
            if va != vb:
                raise ParseError(f"{where}: the range {w} mixes SD and Flux blocks",
                                 "write an SD range such as IN05-OUT05 or a Flux range such as D00-S37")
            order, blocks = {v: (o, bl) for v, o, bl in _VOCABS}[va]
            i, j = sorted((order[a], order[b]))
            out.update(blocks[i:j + 1])
            vocabs.add(va)
        else:
            vocabs.add(_vocab(w, where))
            out.add(w)
    if len(vocabs) > 1:
        raise ParseError(f"{where}: {text.strip()!r} mixes SD blocks and Flux blocks",
                         "name the blocks of one model family in a rule")
    return neg, frozenset(out), vocabs.pop()


def parse_rule(text: str, where: str) -> ElementRule:
    parts = text.split(":")
    if len(parts) != 3:
        raise ParseError(f"{where}: {text.strip()!r} needs the form BLOCKS:ELEMENTS:RATIO (exactly two colons)",
                         "write e.g. IN05-OUT05:attn:0.5, or :: with a ratio for every module")
    neg_b, blocks, vocab = parse_blocks(parts[0], where)
    neg_e, elements = _split_not(parts[1])
    ratio = parse_entry(parts[2], where)
    return ElementRule(blocks, neg_b, tuple(elements), neg_e, ratio, text.strip(), vocab)


def parse_rules(text: str, where: str) -> tuple[ElementRule, ...]:
    """Directives separated by commas or newlines."""
    items = [t for t in re.split(r"[,\n]", text) if t.strip()]
    return tuple(parse_rule(t, where) for t in items)


def parse_lbwe_text(text: str, source: str) -> dict[str, tuple[ElementRule, ...]]:
    """Named entries separated by blank lines; each starts `NAME:` before its first directive.
    `#` starts a comment."""
    out: dict[str, tuple[ElementRule, ...]] = {}
    lines = [ln.split("#", 1)[0].rstrip() for ln in text.splitlines()]
    paragraphs = re.split(r"\n\s*\n", "\n".join(lines))
    for para in paragraphs:
        if not para.strip():
            continue
        name, sep, rest = para.strip().partition(":")
        name = name.strip()
        where = f"{source}: elemental preset {name!r}"
        if not sep or not name or " " in name:
            raise ParseError(f"{source}: elemental entry {para.strip()[:40]!r} has no NAME: in front",
                             "start each entry with NAME:BLOCKS:ELEMENTS:RATIO, entries separated by blank lines")
        out[name] = parse_rules(rest, where)
    return out


def format_rules(rules: Iterable[ElementRule]) -> str:
    return "\n".join(r.text for r in rules)
