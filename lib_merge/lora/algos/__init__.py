"""One module per LoRA algorithm, a registry keyed by stable id, and the kinds we refuse by name."""
from __future__ import annotations

from ...errors import ModelFileError
from .base import Algorithm
from .full import Full
from .loha import LoHa
from .lokr import LoKr
from .lora import Lora

REGISTRY: dict[str, Algorithm] = {a.id: a for a in (Lora(), LoHa(), LoKr(), Full())}

# Kinds whose change is not a sum we could scale per block and add: refused by name, never guessed.
REFUSED = {
    "dora_scale": ("DoRA (weight-decomposed LoRA)",
                   "its weight is renormalised after the change, so it is not linear in the block ratio"),
    "on_input": ("IA3", "it rescales weights instead of adding to them"),
    "oft_blocks": ("OFT", "it rotates weights instead of adding to them"),
    "oft_diag": ("OFT", "it rotates weights instead of adding to them"),
    "a1.weight": ("GLoRA", "it is not supported yet"),
}


def find(params: frozenset[str]) -> Algorithm | None:
    for a in REGISTRY.values():
        if a.matches(params):
            return a
    return None


def refused(params: frozenset[str]) -> tuple[str, str] | None:
    for p, why in REFUSED.items():
        if p in params:
            return why
    return None


def refuse(module: str, source: str, params: frozenset[str]) -> None:
    why = refused(params)
    if why:
        raise ModelFileError(f"{source}: module {module} is {why[0]}, which BlockMerge cannot bake or merge ({why[1]})",
                             "use the LoRA in the webui, or a plain LoRA/LoCon/LoHa/LoKr version of it")


__all__ = ["Algorithm", "REGISTRY", "find", "refused", "refuse"]
