"""Cosine A / Cosine B: per column, keep A where A and B agree more than usual, B elsewhere.

s = (cos(A, B along dim 0) + cos(flat A, flat B)) / 2 per element of shape[1:], over L2-normalised
tensors for cosine_a and raw ones for cosine_b. A first pass collects every key's s (stat); the
engine hands the 1st and 99th percentiles in as ctx.lo / ctx.hi; then
k = clip((s - lo)/(hi - lo) - a, 0, 1) (|a| for cosine_a) and result = B + k·(A - B) (REFERENCE §2).

Where a column of A or B (or the whole of A or B) is zero its similarity is undefined: s is NaN.
stat reports the NaN so the engine drops it instead of letting an invented value shift the
percentiles; merge then uses k = 1, i.e. keeps A there — the model being refined stays as it was
where there is nothing to compare.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import KeyContext, MergeMethod, Tensor, Weights, register


def _cos_columns_and_flat(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """cos(x, y) along dim 0 and over the flat tensors, NaN where a norm is 0 (no eps, unlike torch's).

    The flat dot product and norms are reduced from the per-column ones, so the big tensors are
    multiplied and squared once.
    """
    dot = torch.sum(x * y, dim=0)
    nx, ny = torch.linalg.vector_norm(x, dim=0), torch.linalg.vector_norm(y, dim=0)
    columns = dot / (nx * ny)
    flat = dot.sum() / (torch.linalg.vector_norm(nx) * torch.linalg.vector_norm(ny))
    return columns, flat


class _Cosine(MergeMethod):
    mode = "weight_sum"
    n_models = 2
    elementwise = False  # s mixes whole columns and the whole tensor
    needs_stats = True
    normalise: bool

    def similarity(self, a: Tensor, b: Tensor) -> Tensor:
        """s for one key: shape a.shape[1:] (0-d for 1-d and 0-d tensors)."""
        if a.ndim == 0:  # one element is one column of length 1
            a, b = a.reshape(1), b.reshape(1)
        if self.normalise:
            # F.normalize's eps leaves a zero column zero, so its cosine stays NaN below
            a, b = F.normalize(a, p=2.0, dim=0), F.normalize(b, p=2.0, dim=0)
        columns, flat = _cos_columns_and_flat(a, b)
        return (columns + flat) / 2.0

    def stat(self, a: Tensor, b: Tensor) -> Tensor:
        """Every similarity sample of this key, flat float32, NaN where undefined."""
        return self.similarity(a, b).reshape(-1).to(torch.float32)

    def offset(self, alpha: float) -> float:
        raise NotImplementedError

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        assert b is not None
        if ctx.lo is None or ctx.hi is None:
            raise ValueError(f"{self.id} needs ctx.lo and ctx.hi from the stat pass (key {ctx.key})")
        s = self.similarity(a, b)
        span = ctx.hi - ctx.lo
        # all samples equal: nothing sets this key apart, so the normalised term is 0, not 0/0
        norm = (s - ctx.lo) / span if span != 0 else torch.zeros_like(s)
        k = (norm - self.offset(w.alpha)).clamp_(0.0, 1.0)
        k.masked_fill_(torch.isnan(s), 1.0)  # undefined similarity keeps A (module docstring)
        # k has shape[1:], so it broadcasts over dim 0: one k per column
        return torch.lerp(b, a, k, out=b)


@register
class CosineA(_Cosine):
    id = "cosine_a"
    label = "Cosine A"
    normalise = True

    def offset(self, alpha: float) -> float:
        return abs(alpha)


@register
class CosineB(_Cosine):
    id = "cosine_b"
    label = "Cosine B"
    normalise = False

    def offset(self, alpha: float) -> float:
        return alpha
