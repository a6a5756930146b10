"""Merge methods: one small module per method, all registered in REGISTRY by stable id.

`--mode` picks the family (weight_sum, add_difference, triple_sum, sum_twice) and `--calc` refines
it (REFERENCE §2); `resolve(mode, calc)` turns the pair into one registered method.
"""
from __future__ import annotations

from ..errors import RecipeError, suggest
from .base import REGISTRY, KeyContext, MergeMethod, Weights, register

# importing the modules registers their methods
from . import (  # noqa: E402,F401
    weight_sum, add_difference, triple_sum, sum_twice,
    cosine, train_difference, smooth_add, extract, tensor_swap, self_scale,
)

MODES = ("weight_sum", "add_difference", "triple_sum", "sum_twice")
CALCS = ("normal", "cosine_a", "cosine_b", "train_difference", "smooth_add", "extract",
         "tensor", "tensor2", "self")


def resolve(mode: str | None, calc: str = "normal") -> MergeMethod:
    """The method for a mode and calc mode. mode=None means: the one the calc mode works with."""
    if calc not in CALCS:
        raise RecipeError(f"unknown calc mode {calc!r}{suggest(calc, CALCS)}", f"use one of {', '.join(CALCS)}")
    if mode is not None and mode not in MODES:
        raise RecipeError(f"unknown merge mode {mode!r}{suggest(mode, MODES)}", f"use one of {', '.join(MODES)}")
    if calc == "normal":
        return REGISTRY[mode or "weight_sum"]
    method = REGISTRY[calc]
    if mode is not None and method.mode != "self" and mode != method.mode:
        raise RecipeError(f"calc mode {calc!r} works with --mode {method.mode}, not {mode}",
                          f"use --mode {method.mode} (or leave --mode out)")
    return method


__all__ = ["REGISTRY", "KeyContext", "MergeMethod", "Weights", "register", "resolve", "MODES", "CALCS"]
