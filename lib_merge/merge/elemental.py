"""Elemental merge lines (`OUT05 OUT08:attn1:0.88`) and include/exclude selections (REFERENCE §4)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..arch.blocks import Architecture
from ..errors import ParseError, suggest
from .weights import RandomSpec, is_random, number

UNET_PREFIX = "model.diffusion_model."


def element_text(key: str) -> str:
    """The part of a key that element names are matched against.

    Ours: the UNet prefix is left out, because `ff` (feed-forward) is a substring of
    `diffusion_model` and would otherwise match every UNet key."""
    return key[len(UNET_PREFIX):] if key.startswith(UNET_PREFIX) else key


_SDISH = re.compile(r"^(BASE|IN\d+|M\d+|OUT\d+|MID\d*)$", re.I)
_FLUXISH = re.compile(r"^(CLIP|T5|IN|OUT|D\d+|S\d+)$")  # upper case only: `in`/`out` stay key parts


class _Blockish:
    @staticmethod
    def match(tok: str):
        return _SDISH.match(tok) or _FLUXISH.match(tok)


_BLOCKISH = _Blockish()
_NOT = re.compile(r"^NOT(\s|$)", re.I)


def parse_blocks(text: str, arch: Architecture, where: str) -> frozenset[str]:
    """Space/comma separated block IDs and ranges (`IN03-IN07`, either order) for this architecture."""
    out: set[str] = set()
    for tok in re.split(r"[\s,]+", text.strip()):
        if not tok:
            continue
        ends = tok.split("-")
        if len(ends) > 2 or not all(ends):
            raise ParseError(f"{where}: {tok!r} is not a block or a range", "write IN03 or IN03-IN07")
        idx = [_block_index(e, arch, where) for e in ends]
        lo, hi = min(idx), max(idx)
        out.update(arch.blocks[lo:hi + 1])
    return frozenset(out)


def _block_index(name: str, arch: Architecture, where: str) -> int:
    up = name.upper()
    if up in ("MID", "M"):
        up = "M00"
    if up not in arch.block_index:
        raise ParseError(f"{where}: unknown block {name!r} for {arch.label}{suggest(up, arch.blocks)}",
                         f"{arch.label} blocks are {arch.summary}")
    return arch.block_index[up]


@dataclass(frozen=True)
class ElementalRule:
    blocks: frozenset[str] | None  # None: every block
    negate_blocks: bool
    elements: tuple[str, ...]  # empty: every key
    negate_elements: bool
    ratio: str  # a number or R/U/X, as written
    where: str  # "elemental entry 2 ('OUT05:attn1:0.5')" for messages

    @property
    def text(self) -> str:
        """The rule written back as `BLOCKS:ELEMENTS:RATIO`; parsing it gives the same rule."""
        # zero-padded IDs sort in weight-string order: BASE, IN00.., M00, OUT00..
        blocks = " ".join(sorted(self.blocks)) if self.blocks is not None else ""
        bl = " ".join(x for x in ("NOT" if self.negate_blocks else "", blocks) if x)
        el = " ".join(x for x in ("NOT" if self.negate_elements else "", *self.elements) if x)
        return f"{bl}:{el}:{self.ratio}"

    def matches(self, key: str, block: str) -> bool:
        if self.blocks is not None and ((block in self.blocks) == self.negate_blocks):
            return False
        if self.elements and (any(e in element_text(key) for e in self.elements) == self.negate_elements):
            return False
        return True


def _split_not(text: str) -> tuple[bool, str]:
    t = text.strip()
    if _NOT.match(t):  # `NOT` then any whitespace (a tab too), or `NOT` alone
        return True, t[3:].strip()
    return False, t


def parse_elemental(text: str, arch: Architecture) -> tuple[ElementalRule, ...]:
    """Entries separated by commas or newlines, each `BLOCKS:ELEMENTS:RATIO` with exactly two colons."""
    rules: list[ElementalRule] = []
    # a `#` line is a comment, commas in it included
    lines = [ln for ln in (text or "").split("\n") if not ln.strip().startswith("#")]
    entries = [e for ln in lines for e in ln.split(",") if e.strip() and not e.strip().startswith("#")]
    for n, entry in enumerate(entries, 1):
        where = f"elemental entry {n} ({entry.strip()!r})"
        parts = entry.split(":")
        if len(parts) != 3:
            raise ParseError(f"{where} has {len(parts) - 1} colons, expected 2",
                             "write BLOCKS:ELEMENTS:RATIO, e.g. OUT05 OUT08:attn1:0.88 (empty BLOCKS = all)")
        bl, el, ratio = parts
        neg_b, bl = _split_not(bl)
        neg_e, el = _split_not(el)
        for field, body in (("BLOCKS", bl), ("ELEMENTS", el)):
            if any(w.upper() == "NOT" for w in body.split()):
                raise ParseError(f"{where}: NOT stands inside its {field} field; it negates a whole field and "
                                 "is accepted only at the field's start",
                                 f"write NOT first, e.g. 'NOT OUT05 OUT08:attn1:0.5', or split the entry")
        blocks = parse_blocks(bl, arch, where) if bl else None
        elements = tuple(e for e in el.split() if e)
        r = ratio.strip()
        if not is_random(r):
            number(r, f"{where} ratio")
        rules.append(ElementalRule(blocks, neg_b, elements, neg_e, r.upper() if is_random(r) else r, where))
    return tuple(rules)


class Elemental:
    """Rules with their ratios drawn; `ratio(key, block)` gives the last matching rule's ratio."""

    def __init__(self, rules: tuple[ElementalRule, ...], randoms: RandomSpec | None):
        self.rules = rules
        rng = randoms.rng("elemental") if randoms else None
        self.ratios: list[float] = []
        for r in rules:
            if is_random(r.ratio):
                if randoms is None:
                    raise ParseError(f"{r.where} uses random ratio {r.ratio!r} but no seed was given",
                                     "pass --seed N so the merge can be replayed")
                self.ratios.append(randoms.draw(r.ratio, rng))
            else:
                self.ratios.append(float(r.ratio))

    def ratio(self, key: str, block: str) -> float | None:
        for rule, value in zip(reversed(self.rules), reversed(self.ratios)):
            if rule.matches(key, block):
                return value
        return None


@dataclass(frozen=True)
class Selection:
    """Blocks, key substrings and the switches VAE / ADJUST named by --include or --exclude."""
    blocks: frozenset[str]
    elements: tuple[str, ...]
    vae: bool
    adjust: bool

    def matches(self, key: str, block: str | None, is_vae: bool, is_adjust_key: bool) -> bool:
        text = element_text(key)
        if is_vae:
            return self.vae or any(e in text for e in self.elements)
        return (block in self.blocks) or any(e in text for e in self.elements) or (self.adjust and is_adjust_key)


def parse_selection(text: str, arch: Architecture, what: str) -> Selection:
    blocks: set[str] = set()
    elements: list[str] = []
    vae = adjust = False
    for tok in re.split(r"[\s,]+", text.strip()):
        if not tok:
            continue
        up = tok.upper()
        if up == "VAE":
            vae = True
        elif up == "ADJUST":
            adjust = True
        elif "-" in tok and all(_BLOCKISH.match(e) for e in tok.split("-")) or _BLOCKISH.match(tok):
            blocks |= parse_blocks(tok, arch, what)
        elif tok != tok.lower():
            raise ParseError(f"{what}: {tok!r} is neither a block of {arch.label}, VAE, ADJUST, nor a key part"
                             f"{suggest(up, (*arch.blocks, 'VAE', 'ADJUST'))}",
                             "key parts are lowercase pieces of key names such as attn2 or proj_in")
        else:
            elements.append(tok)
    return Selection(frozenset(blocks), tuple(elements), vae, adjust)
