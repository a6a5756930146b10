"""Self: scale chosen elements of one model, result = a·A.

The tool for "multiply OUT05 attn1 by 0.88": alpha is 1 everywhere except where MBW or elemental
lines say otherwise.
"""
from __future__ import annotations

import torch

from .base import KeyContext, MergeMethod, Tensor, Weights, register

# Output projections and norms set the scale of everything downstream; scaling them breaks the model
# instead of adjusting it, so they are never touched (REFERENCE §2).
NEVER_SCALED = ("to_out", "proj_out", "norm")


@register
class SelfScale(MergeMethod):
    id = "self"
    label = "Self"
    mode = "self"
    n_models = 1

    def convex(self, w: Weights) -> bool:
        return abs(w.alpha) <= 1.0

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        # alpha 0 means "unchanged", not "zero the weights": a 0 left in an elemental line must not
        # wipe a layer out
        if w.alpha == 0 or any(part in ctx.key for part in NEVER_SCALED):
            return a
        return a.mul_(w.alpha)

    def merge_native(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext,
                     out: Tensor) -> bool:
        # torch's Half/BFloat16 multiply by a scalar works in float32 and rounds once, as merge + cast
        if w.alpha == 0 or any(part in ctx.key for part in NEVER_SCALED):
            out.copy_(a)
        else:
            torch.mul(a, w.alpha, out=out)
        return True
