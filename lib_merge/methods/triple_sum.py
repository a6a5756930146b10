"""Triple sum: (1-a-b)·A + a·B + b·C."""
from __future__ import annotations

from .base import KeyContext, MergeMethod, Tensor, Weights, register


@register
class TripleSum(MergeMethod):
    id = "triple_sum"
    label = "Triple sum"
    mode = "triple_sum"
    n_models = 3

    def convex(self, w: Weights) -> bool:
        return w.alpha >= 0.0 and w.beta >= 0.0 and w.alpha + w.beta <= 1.0

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        assert b is not None and c is not None
        return a.mul_(1.0 - w.alpha - w.beta).add_(b, alpha=w.alpha).add_(c, alpha=w.beta)
