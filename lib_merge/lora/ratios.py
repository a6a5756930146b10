"""A tag resolved against an architecture: the ratio of every block, the elemental rules, the seed.

This is the one place that turns `lbw=`/`lbwe=`/`x=`/`seed=` into numbers, shared by bake, merge
and the webui's per-module strengths, so all three agree.
"""
from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass
from typing import Iterable, Mapping

from ..arch.blocks import Architecture
from .elemental import ElementRule
from .entries import Entry, uses_random, value_of, values_of
from .rule_fit import check_rules_fit
from .layouts import expand
from .presets import DEFAULT_BOOK, PresetBook
from .tag import LoraTag, format_tag


@dataclass(frozen=True)
class BlockRatios:
    tag: LoraTag  # with the seed actually used, so format_tag() replays it
    arch: Architecture
    blocks: Mapping[str, float]  # every block of the architecture -> ratio
    rules: tuple[tuple[ElementRule, float], ...]  # elemental rules with their drawn ratios
    seed: int | None

    def ratio(self, block: str | None, names: Iterable[str] = ()) -> float:
        """The block ratio r (or the ratio of the last matching elemental rule, which replaces it).
        A module outside every block takes `fallback`."""
        r = self.blocks[block] if block in self.blocks else self.fallback
        if self.rules:
            names = tuple(names)
            for rule, value in self.rules:
                if rule.matches(block, names):
                    r = value
        return r

    @property
    def fallback(self) -> float:
        """The ratio of a module outside every block: the common ratio when all blocks agree
        (NONE, ALL, ALL0.5), else 1 (and callers report the module)."""
        vals = set(self.blocks.values())
        return vals.pop() if len(vals) == 1 else 1.0

    def strength(self, block: str | None, is_te: bool, names: Iterable[str] = ()) -> float:
        """r · m: the factor a module's ΔW is multiplied by."""
        return self.ratio(block, names) * (self.tag.te if is_te else self.tag.unet)

    def record(self) -> dict:
        """What a written file's recipe keeps about this LoRA."""
        # the file's name, not the user's local path: metadata travels with the model
        tag = dataclasses.replace(self.tag, name=os.path.basename(self.tag.name))
        return {"tag": format_tag(tag, brackets=False), "te": self.tag.te, "unet": self.tag.unet,
                "blocks": dict(self.blocks), "seed": self.seed}


def resolve(tag: LoraTag, arch: Architecture, presets: PresetBook = DEFAULT_BOOK,
            seed: int | None = None) -> BlockRatios:
    """Numbers for every block. R/U draw from tag.seed, else `seed`, else a fresh seed, which is
    recorded in the result's tag."""
    where = format_tag(tag)
    entries: tuple[Entry, ...] | None
    if tag.lbw is None:
        entries = None
    elif isinstance(tag.lbw, str):
        entries = presets.lbw_entries(tag.lbw, arch, where)
    else:
        entries = tag.lbw
    rules = presets.elemental(tag.lbwe, where) if tag.lbwe else ()
    check_rules_fit(rules, arch, tag.lbwe, where)
    random_used = (entries is not None and uses_random(entries)) or any(r.ratio.is_random for r in rules)
    used_seed = tag.seed if tag.seed is not None else seed
    if random_used and used_seed is None:
        used_seed = random.SystemRandom().randrange(2 ** 31)
    rng = random.Random(used_seed)
    if entries is None:
        blocks = {b: 1.0 for b in arch.blocks}
    else:
        blocks = expand(values_of(entries, rng, tag.x, where), arch, where)
    drawn = tuple((r, value_of(r.ratio, rng, tag.x, where)) for r in rules)
    final_tag = tag.with_seed(used_seed) if random_used else tag
    return BlockRatios(final_tag, arch, blocks, drawn, used_seed if random_used else None)
