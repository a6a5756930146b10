"""Cosine A / Cosine B: per column, keep A where A and B agree more than usual, B elsewhere.

s = (cos(A, B along dim 0) + cos(flat A, flat B)) / 2 per element of shape[1:], over L2-normalised
tensors for cosine_a and raw ones for cosine_b. A first pass collects similarity samples over the
model (`stat`, REFERENCE §2: the incumbent's population, see merge/cosine_stats.py) and hands lo and
hi in as ctx.lo / ctx.hi; then k = clip((s - lo)/(hi - lo) - a, 0, 1) (|a| for cosine_a) and
result = B + k·(A - B).

The numbers are the incumbent's (hako-mikan/sd-webui-supermerger, scripts/mergers/mergers.py,
precosine and cosine, 0b1c491), computed with the same torch functions in the same order: torch's
cosine similarity gives 0 for a zero column (its eps), and cosine_a's samples are the column
cosines alone while its k uses the combined s. Where a whole tensor of A or B is zero, the flat
cosine is 0/0: the incumbent then writes NaN into the model; here k = 1 keeps A for that key.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import KeyContext, MergeMethod, Tensor, Weights, register


def _columns_and_flat(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """cos(x, y) along dim 0 (torch's, eps-guarded) and over the flat tensors (unguarded)."""
    columns = F.cosine_similarity(x, y, dim=0)
    flat = torch.dot(x.reshape(-1), y.reshape(-1)) / (torch.norm(x) * torch.norm(y))
    return columns, flat


class _Cosine(MergeMethod):
    mode = "weight_sum"
    n_models = 2
    elementwise = False  # s mixes whole columns and the whole tensor
    needs_stats = True
    normalise: bool

    def _prepare(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        if self.normalise:
            return F.normalize(a, p=2.0, dim=0), F.normalize(b, p=2.0, dim=0)
        return a, b

    def similarity(self, a: Tensor, b: Tensor) -> Tensor:
        """s for one key: shape a.shape[1:] (0-d for 1-d and 0-d tensors)."""
        columns, flat = _columns_and_flat(*self._prepare(a, b))
        return (columns + flat) / 2.0

    def stat(self, a: Tensor, b: Tensor) -> Tensor:
        """This key's samples for lo and hi, flat float32: the column cosines of the normalised
        tensors for cosine_a, s itself for cosine_b (the incumbent's precosine)."""
        if self.normalise:
            return F.cosine_similarity(*self._prepare(a, b), dim=0).reshape(-1).to(torch.float32)
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
        k.masked_fill_(torch.isnan(s), 1.0)  # a whole zero tensor: keep A (module docstring)
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
