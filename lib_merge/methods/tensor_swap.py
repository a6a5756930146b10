"""Tensor / Tensor 2: take a band of rows (dim 0) or columns (dim 1) from B instead of blending.

alpha is the width of the band and beta where it starts, both as fractions of the dim. When the band
would run past the end (a + b > 1) it wraps: start from B and keep A's rows
[n·(a+b-1), n·b) instead (REFERENCE §2).
"""
from __future__ import annotations

import math

from .base import KeyContext, MergeMethod, Tensor, Weights, register


def _row(n: int, frac: float) -> int:
    """floor(n·frac) clamped to [0, n].

    Rounded to 9 decimals first: people type decimals, and 10·(0.7 + 0.2) is 8.999999999999998 in
    binary; the band they asked for ends at row 9. Clamped because alpha and beta may be negative or
    above 1, and a negative index must not wrap around to the end of the tensor.
    """
    return min(max(math.floor(round(n * frac, 9)), 0), n)


def swap_band(a: Tensor, b: Tensor, alpha: float, beta: float, dim: int) -> Tensor:
    """The tensor merge on one dim; writes into a or b and returns it."""
    n = a.shape[dim]
    if round(alpha + beta, 9) <= 1.0:
        base, donor = a, b
        start, stop = _row(n, beta), _row(n, alpha + beta)
    else:
        base, donor = b, a
        start, stop = _row(n, alpha + beta - 1.0), _row(n, beta)
    if stop > start:
        base.narrow(dim, start, stop - start).copy_(donor.narrow(dim, start, stop - start))
    return base


@register
class TensorSwap(MergeMethod):
    id = "tensor"
    label = "Tensor"
    mode = "weight_sum"
    n_models = 2
    elementwise = False  # rows are positions in the whole tensor

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        assert b is not None
        if a.ndim == 0:
            return a  # a 0-d tensor (logit_scale) has no rows to swap; blending is not this method
        return swap_band(a, b, w.alpha, w.beta, dim=0)


@register
class TensorSwap2(MergeMethod):
    id = "tensor2"
    label = "Tensor 2"
    mode = "weight_sum"
    n_models = 2
    elementwise = False

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        assert b is not None
        if a.ndim == 0:
            return a  # see TensorSwap
        return swap_band(a, b, w.alpha, w.beta, dim=1 if a.ndim >= 2 else 0)
