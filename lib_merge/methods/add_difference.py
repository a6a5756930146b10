"""Add difference: A + a·(B - C)."""
from __future__ import annotations

from .base import KeyContext, MergeMethod, Tensor, Weights, register


@register
class AddDifference(MergeMethod):
    id = "add_difference"
    label = "Add difference"
    mode = "add_difference"
    n_models = 3

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        assert b is not None and c is not None
        # b and c are scratch: reuse b for the difference instead of allocating one
        return a.add_(b.sub_(c), alpha=w.alpha)
