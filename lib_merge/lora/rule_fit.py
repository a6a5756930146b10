"""Checks that an elemental preset names blocks of the LoRA's own family (SD or Flux)."""
from __future__ import annotations

from typing import Sequence

from ..errors import ParseError
from .elemental import ElementRule
from .layouts import article, family


def check_rules_fit(rules: Sequence[ElementRule], arch, name: str | None, where: str) -> None:
    """An elemental rule naming SD blocks never matches a Flux module (and the reverse): refuse it
    instead of silently changing nothing (LBW ignores such rules)."""
    want = "flux" if family(arch) == "flux" else "sd"
    for r in rules:
        if r.vocab is not None and r.vocab != want:
            kind = "Flux blocks (CLIP, T5, IN, D00.., S00.., OUT)" if r.vocab == "flux" else \
                "SD blocks (BASE, IN00.., M00, OUT00..)"
            fix = ("name Flux blocks: CLIP, T5, IN, D00..D18, S00..S37, OUT, e.g. D00-D18:img_attn:0.5"
                   if want == "flux" else "name SD blocks: BASE, IN00..IN11, M00, OUT00..OUT11")
            raise ParseError(f"{where}: elemental preset {name!r} rule {r.text!r} names {kind}, but this is "
                             f"{article(arch.label)} LoRA", fix)
