"""Stop a merge whose output gets a NaN or an infinity that none of its inputs had.

An overflow (a huge weight, a LoRA multiplier of 1e300, a cast to fp16 of values past 65504) would
otherwise write a model that renders black: the key is named instead. The check is one float32
reduction per slice; the inputs are looked at only when the output is not finite.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import RecipeError

LIMIT = 10.0  # |weight| or |multiplier| beyond this is refused unless allow_extreme (README "Weights")


def check_multiplier(v: float, where: str, allow_extreme: bool = False) -> None:
    """Refuse NaN/inf always, and a value outside [-10, 10] unless allow_extreme: such a weight
    turns a model into noise (or overflows to inf), and is nearly always a typo."""
    if not math.isfinite(v):
        raise RecipeError(f"{where} is {v}, not a finite number", "give a number such as 0.5")
    if abs(v) > LIMIT and not allow_extreme:
        raise RecipeError(f"{where} is {v:g}, outside the sane range [-10, 10]",
                          "give a value in [-10, 10], or pass --allow-extreme if you mean it")


def all_finite(t: torch.Tensor) -> bool:
    if not t.is_floating_point() or t.numel() == 0:
        return True
    s = torch.sum(t, dtype=torch.float32) if t.dtype != torch.float64 else t.sum()
    if bool(torch.isfinite(s)):
        return True
    if t.element_size() == 1:  # fp8: torch has no isfinite for it (NotImplementedError); widen first
        t = t.float()
    return bool(torch.isfinite(t).all())  # the sum alone can overflow on huge but finite values


def finite_or_stop(key: str, out: torch.Tensor, inputs: Sequence[torch.Tensor | bool]) -> torch.Tensor:
    """`out` as it is, or a RecipeError naming `key` if it has NaN/inf and every input was finite.
    `inputs`: the input tensors, or booleans saying whether each was finite (checked beforehand)."""
    if all_finite(out):
        return out
    if all((x if isinstance(x, bool) else all_finite(x)) for x in inputs):
        raise RecipeError(f"the result for {key} has NaN or infinite values that none of the inputs has "
                          "(a weight or multiplier too large, or values past the output dtype's range)",
                          "use smaller weights/multipliers, or --dtype fp32; nothing was written")
    return out
