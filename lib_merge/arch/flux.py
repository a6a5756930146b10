"""Flux.1 (dev, schnell) and Chroma as data: the 61-slot MBW vocabulary and the key -> block function.

The vocabulary is the one SuperMerger (`BLOCKIDFLUX`) and LoRA Block Weight use, so weight strings and
presets users already have mean the same here: CLIP, T5, IN, D00..D{n-1}, S00..S{m-1}, OUT. IN holds
the input embedders (img_in, txt_in, time_in, vector_in, guidance_in; Chroma's
distilled_guidance_layer), OUT the final layer. CLIP is slot 0 and plays BASE's part (the plain
alpha when a string leaves it out). The VAE is not merged (as in SuperMerger). Block counts come
from the keys of each file, never a constant.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

from .blocks import UNET, Component

TE_PREFIXES = ("text_encoders.",)
VAE_PREFIX = "vae."
_IN_PARTS = ("img_in", "txt_in", "time_in", "vector_in", "guidance_in", "distilled_guidance_layer")
_PART = re.compile(r"(double_blocks|single_blocks)\.(\d+)\.")
_FLUX_ROOTS = ("double_blocks.", "single_blocks.", *(p + "." for p in _IN_PARTS), "final_layer.")


@dataclass(frozen=True)
class FluxArchitecture:
    id: str  # "flux" or "chroma"; the block counts are part of the identity too
    label: str
    n_double: int
    n_single: int
    te_prefixes: tuple[str, ...] = TE_PREFIXES

    @cached_property
    def blocks(self) -> tuple[str, ...]:
        """MBW block IDs in weight-string order, CLIP (the BASE slot) first: 61 for Flux.1."""
        return ("CLIP", "T5", "IN", *(f"D{i:02d}" for i in range(self.n_double)),
                *(f"S{i:02d}" for i in range(self.n_single)), "OUT")

    @cached_property
    def block_index(self) -> dict[str, int]:
        return {b: i for i, b in enumerate(self.blocks)}

    @property
    def summary(self) -> str:
        return (f"CLIP, T5, IN, D00..D{self.n_double - 1:02d}, S00..S{self.n_single - 1:02d}, OUT")

    def component(self, key: str) -> Component:
        if key.startswith(VAE_PREFIX):
            return Component.VAE
        if key.startswith(self.te_prefixes):
            return Component.TEXT_ENCODER
        if _diffuser_rest(key) is not None:
            return Component.UNET
        return Component.OTHER

    def block_of(self, key: str) -> str | None:
        """The MBW block of a key; None for the VAE and for keys outside the vocabulary."""
        if key.startswith("text_encoders.clip_l."):
            return "CLIP"
        if key.startswith("text_encoders.t5xxl."):
            return "T5"
        rest = _diffuser_rest(key)
        if rest is None:
            return None
        m = _PART.match(rest)
        if m:
            n = int(m.group(2))
            if m.group(1) == "double_blocks":
                return f"D{n:02d}" if n < self.n_double else None
            return f"S{n:02d}" if n < self.n_single else None
        if rest.startswith("final_layer."):
            return "OUT"
        if rest.startswith(tuple(p + "." for p in _IN_PARTS)):
            return "IN"
        return None


def _diffuser_rest(key: str) -> str | None:
    """The key without `model.diffusion_model.` when it is a Flux transformer key, else None."""
    rest = key[len(UNET):] if key.startswith(UNET) else key
    return rest if rest.startswith(_FLUX_ROOTS) else None


def is_flux(keys: Iterable[str]) -> bool:
    return any(k.startswith(("double_blocks.", UNET + "double_blocks.")) for k in keys)


def count_blocks(keys: Iterable[str]) -> tuple[int, int]:
    """(double, single) block counts read from the key names."""
    nd = ns = 0
    for k in keys:
        rest = _diffuser_rest(k)
        m = _PART.match(rest) if rest else None
        if m:
            n = int(m.group(2)) + 1
            if m.group(1) == "double_blocks":
                nd = max(nd, n)
            else:
                ns = max(ns, n)
    return nd, ns


def flux_architecture(keys: Iterable[str]) -> tuple[FluxArchitecture, str]:
    """The architecture (with this file's block counts) and variant: "dev", "schnell" or "chroma"."""
    keys = list(keys)
    rests = {r.split(".", 1)[0] for r in (_diffuser_rest(k) for k in keys) if r}
    nd, ns = count_blocks(keys)
    if "distilled_guidance_layer" in rests and "vector_in" not in rests:
        arch_id, label, variant = "chroma", "Chroma", "chroma"
    else:
        arch_id, label = "flux", "Flux.1"
        variant = "dev" if "guidance_in" in rests else "schnell"
    if (nd, ns) != (19, 38):
        arch_id, label = f"{arch_id}-{nd}x{ns}", f"{label} ({nd} double + {ns} single blocks)"
    return FluxArchitecture(arch_id, label, nd, ns), variant


FLUX1 = FluxArchitecture("flux", "Flux.1", 19, 38)
