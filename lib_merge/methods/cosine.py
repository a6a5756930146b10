"""Cosine A / Cosine B: per column, keep A where A and B agree more than usual, B elsewhere.

s = (cos(A, B along dim 0) + cos(flat A, flat B)) / 2 per element of shape[1:], over L2-normalised
tensors for cosine_a and raw ones for cosine_b. A first pass collects similarity samples over the
model (`stat`, REFERENCE §2: the incumbent's population, see merge/cosine_stats.py) and hands lo and
hi in as ctx.lo / ctx.hi; then k = clip((s - lo)/(hi - lo) - a, 0, 1) (|a| for cosine_a) and
result = B + k·(A - B).

The numbers are the incumbent's (hako-mikan/sd-webui-supermerger, scripts/mergers/mergers.py,
precosine and cosine, 0b1c491), which uses torch's F.normalize (x / max(|x|, 1e-12) per column),
F.cosine_similarity along dim 0 (x·y / (max(|x|, 1e-8)·max(|y|, 1e-8)) per column, ATen's
cosine_similarity in torch 2.1 and later) and an unguarded flat cosine x·y / (|x||y|). Every one of
these follows from three sums per column over the rows: Σ a·b, Σ a², Σ b² (`ColumnSums`, float64
across row chunks), so the model is read in row chunks and never held whole (merge/cosine_stats.py),
and given k the merge is elementwise along dim 0 (`columnwise`). So: a zero column has cosine 0
(torch's eps), and cosine_a's samples are the column cosines alone while its k uses the combined s.
Where a whole tensor of A or B is zero, the flat cosine is 0/0: the incumbent then writes NaN into the
model; here k = 1 keeps A for that key.
"""
from __future__ import annotations

import math

import torch

from .base import KeyContext, MergeMethod, Tensor, Weights, register

NORMALIZE_EPS = 1e-12  # F.normalize's default
COSINE_EPS = 1e-8  # F.cosine_similarity's default
ROWS_ELEMENTS = 1 << 18  # elements per row chunk when a whole tensor is summed (cache-sized)


def as_columns(x: Tensor) -> Tensor:
    """x as a 2-d (rows, columns) view: dim 0 is the rows, shape[1:] the columns (a 0-d tensor is
    one row of one column)."""
    if x.ndim == 0:
        return x.reshape(1, 1)
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def rows_per_chunk(ncols: int, elements: int = ROWS_ELEMENTS) -> int:
    """Whole rows in a chunk of about `elements` (at least one row)."""
    return max(1, elements // max(ncols, 1))


class ColumnSums:
    """Σ x·y, Σ x², Σ y² over the rows, one per column, fed row chunks of 2-d float32 x and y.

    Each chunk is summed in float32 (as torch sums the whole tensor), the chunks' sums are added up
    in float64, so a long column loses nothing to the chunking."""

    def __init__(self, ncols: int):
        self.dot = torch.zeros(ncols, dtype=torch.float64)
        self.na = torch.zeros(ncols, dtype=torch.float64)
        self.nb = torch.zeros(ncols, dtype=torch.float64)
        self._part = torch.empty(ncols, dtype=torch.float32)

    def add(self, x: Tensor, y: Tensor, scratch: Tensor | None = None) -> None:
        """x, y: (rows, ncols) float32; scratch: a float32 buffer of at least x.numel() (reused)."""
        tmp = torch.empty_like(x) if scratch is None else scratch[:x.numel()].view(x.shape)
        for acc, p, q in ((self.dot, x, y), (self.na, x, x), (self.nb, y, y)):
            torch.mul(p, q, out=tmp)
            torch.sum(tmp, 0, out=self._part)
            acc.add_(self._part)


def column_sums(a: Tensor, b: Tensor) -> ColumnSums:
    """The sums of two whole float32 tensors of one shape, in row chunks."""
    x, y = as_columns(a), as_columns(b)
    sums = ColumnSums(x.shape[1])
    step = rows_per_chunk(x.shape[1])
    for r in range(0, x.shape[0], step):
        sums.add(x[r:r + step], y[r:r + step])
    return sums


class _Cosine(MergeMethod):
    mode = "weight_sum"
    n_models = 2
    elementwise = False  # s mixes whole columns and the whole tensor
    columnwise = True  # ... but given s, one k per column: row chunks can be merged on their own
    needs_stats = True
    normalise: bool

    def from_sums(self, sums: ColumnSums) -> tuple[Tensor, Tensor]:
        """(s, samples) of one key, flat float32 (one per column): s for k, and this key's samples
        for lo and hi, the column cosines of the normalised tensors for cosine_a, s itself for
        cosine_b (the incumbent's precosine)."""
        dot, qa, qb = sums.dot, sums.na, sums.nb
        if self.normalise:  # the sums of the normalised columns x / max(|x|, eps)
            ma = qa.sqrt().clamp_min(NORMALIZE_EPS)
            mb = qb.sqrt().clamp_min(NORMALIZE_EPS)
            dot, qa, qb = dot / (ma * mb), qa / (ma * ma), qb / (mb * mb)
        columns = dot / (qa.sqrt().clamp_min(COSINE_EPS) * qb.sqrt().clamp_min(COSINE_EPS))
        flat = dot.sum() / (qa.sum().sqrt() * qb.sum().sqrt())  # 0/0 = NaN for a zero tensor
        s = ((columns + flat) / 2.0).to(torch.float32)
        return s, (columns.to(torch.float32) if self.normalise else s)

    def similarity(self, a: Tensor, b: Tensor) -> Tensor:
        """s for one key from whole tensors: shape a.shape[1:] (0-d for 1-d and 0-d tensors)."""
        return self.from_sums(column_sums(a, b))[0].reshape(a.shape[1:])

    def stat(self, a: Tensor, b: Tensor) -> Tensor:
        """This key's samples for lo and hi from whole tensors, flat float32."""
        return self.from_sums(column_sums(a, b))[1]

    def offset(self, alpha: float) -> float:
        raise NotImplementedError

    def convex(self, w: Weights) -> bool:
        return True  # B + k·(A - B) with every k in [0, 1]

    def column_factor(self, s: Tensor, w: Weights, ctx: KeyContext) -> Tensor:
        """k per column from s (float32, shape[1:])."""
        if ctx.lo is None or ctx.hi is None:
            raise ValueError(f"{self.id} needs ctx.lo and ctx.hi from the stat pass (key {ctx.key})")
        span = ctx.hi - ctx.lo
        # all samples equal: nothing sets this key apart, so the normalised term is 0, not 0/0
        norm = (s - ctx.lo) / span if span != 0 else torch.zeros_like(s)
        k = (norm - self.offset(w.alpha)).clamp_(0.0, 1.0)
        return k.masked_fill_(torch.isnan(s), 1.0)  # a whole zero tensor: keep A (module docstring)

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        """a, b: whole tensors, or row chunks (rows, *shape[1:]) when ctx.column holds k."""
        assert b is not None
        k = ctx.column if ctx.column is not None else self.column_factor(self.similarity(a, b), w, ctx)
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
