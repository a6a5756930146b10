"""Sum twice: (1-b)·((1-a)·A + a·B) + b·C, i.e. two weight sums in a row."""
from __future__ import annotations

import torch

from .base import KeyContext, MergeMethod, Tensor, Weights, register


@register
class SumTwice(MergeMethod):
    id = "sum_twice"
    label = "Sum Twice"
    mode = "sum_twice"
    n_models = 3

    def convex(self, w: Weights) -> bool:
        return 0.0 <= w.alpha <= 1.0 and 0.0 <= w.beta <= 1.0

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        assert b is not None and c is not None
        torch.lerp(a, b, w.alpha, out=a)
        return torch.lerp(a, c, w.beta, out=a)
