"""Tensor / Tensor 2: take a band of rows (dim 0) or columns (dim 1) from B instead of blending.

alpha is the width of the band and beta where it starts, both as fractions of the dim. When the band
would run past the end (a + b > 1) it wraps: start from B and keep A's rows
[n·(a+b-1), n·b) instead (REFERENCE §2).

Tensor 2 cuts dim 1 as the incumbent does: the band is measured on dim 1 only where dim 1 is longer
than 100 (SWAP2_MIN_COLUMNS); elsewhere it is measured on dim 0 and still cut from dim 1, clipped to
its length, so a short dim 1 (the UNet's first conv: 4 input channels) is mostly left alone.
"""
from __future__ import annotations


from .base import KeyContext, MergeMethod, Tensor, Weights, register


def _row(n: int, frac: float) -> int:
    """int(n·frac) as the incumbent computes it (hako-mikan/sd-webui-supermerger tensormerge: float
    product, truncated), clamped to [0, n]: 0.05 + 0.35 is 0.39999999999999997 in binary, so on 320 rows
    that band ends at row 127 there and here, not 128. Clamped because alpha and beta may be negative or above 1, and a
    negative index must not wrap around to the end of the tensor (the incumbent's would)."""
    return min(max(int(n * frac), 0), n)


SWAP2_MIN_COLUMNS = 100  # the incumbent's tensor2: dim 1 sets the band only when longer than this


def swap_band(a: Tensor, b: Tensor, alpha: float, beta: float, dim: int, n: int | None = None) -> Tensor:
    """The tensor merge on one dim, the band measured as fractions of n (default: that dim's length)
    and clipped to the dim; writes into a or b and returns it."""
    size = a.shape[dim]
    n = size if n is None else n
    if alpha + beta <= 1.0:  # the incumbent's test, on the float sum
        base, donor = a, b
        start, stop = _row(n, beta), _row(n, alpha + beta)
    else:
        base, donor = b, a
        start, stop = _row(n, alpha + beta - 1.0), _row(n, beta)
    start, stop = min(start, size), min(stop, size)
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
        if a.ndim == 1:
            return swap_band(a, b, w.alpha, w.beta, dim=0)
        n = a.shape[1] if a.shape[1] > SWAP2_MIN_COLUMNS else a.shape[0]
        return swap_band(a, b, w.alpha, w.beta, dim=1, n=n)
