"""Self: scale chosen elements of one model, result = a·A.

The tool for "multiply OUT05 attn1 by 0.88": alpha is 1 everywhere except where MBW or elemental
lines say otherwise.
"""
from __future__ import annotations

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
