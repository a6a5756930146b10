"""The interface every merge method implements, and the registry keyed by stable ids.

A method sees float32 tensors of one key (or, when `elementwise`, one flat chunk of it) and returns
the merged float32 tensor. Everything else — which keys, which alpha, missing keys, dtype, adjust —
is the engine's job, so a method is a few lines of math that can be tested on tiny tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Weights:
    """The per-key ratios after MBW and elemental have been resolved."""
    alpha: float
    beta: float = 0.25
    gamma: float = 0.3


@dataclass(frozen=True)
class KeyContext:
    """What a method may need beyond the tensors: the key, and statistics from a first pass."""
    key: str
    lo: float | None = None  # 1st percentile of all statistics
    hi: float | None = None  # 99th percentile
    # columnwise methods: this key's factor per column (shape[1:]) from `column_factor`, computed once
    # from the first pass; None: the method works it out from the whole tensors it is given
    column: Tensor | None = None


class MergeMethod:
    id: ClassVar[str]  # stable id, goes into metadata ("weight_sum")
    label: ClassVar[str]  # what people read ("Weight sum")
    mode: ClassVar[str]  # the --mode it refines: weight_sum, add_difference, triple_sum, sum_twice, self
    n_models: ClassVar[int]  # 1, 2 or 3
    elementwise: ClassVar[bool] = True  # may be applied to flat chunks of a tensor independently
    needs_stats: ClassVar[bool] = False  # wants a first pass over the model (merge/cosine_stats.py), then merge()
    # given ctx.column, merge() is elementwise along dim 0: it may see row chunks (rows, *shape[1:])
    columnwise: ClassVar[bool] = False
    # each output element depends on the two inputs' elements at its place and on the key's weights
    # alone: for 1-byte (fp8) inputs the engine may evaluate merge() once on all 256 x 256 pairs and
    # look the key's elements up in that table (merge/compute.py)
    pairwise: ClassVar[bool] = False

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        raise NotImplementedError

    def merge_native(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext,
                     out: Tensor) -> bool:
        """Optional fast path: the same result as `merge` followed by the cast to `out.dtype`, computed
        straight from inputs of out's own 16-bit dtype (flat chunks) by one torch kernel that works in
        float32 and rounds once, as `merge` + cast do. True if done; False: the engine converts to
        float32 and calls `merge`. Only for ops whose reduced-precision CPU kernel is checked bit for
        bit against the float32 path (tests/test_native_path.py, on the webuis' torch versions)."""
        return False

    def convex(self, w: Weights) -> bool:
        """True when, with these weights, every output element is a convex combination of the inputs'
        elements (or a shrink of A's): it lies between them, so it cannot overflow a dtype they all
        share, and the engine may skip its NaN/inf check (finite.py) for float16/bfloat16 outputs."""
        return False

    def leaves_a(self, a: Tensor, b: Tensor | None = None, c: Tensor | None = None) -> bool:
        """True where this key's inputs make the method skip the key altogether (A as it is, and no
        adjust after it, as in the incumbent); whole float32 tensors."""
        return False

    def stat(self, a: Tensor, b: Tensor) -> Tensor:
        """First-pass samples of one key, a 1-D float32 tensor (only for needs_stats methods); the
        engine pools every key's samples and passes their 1st/99th percentiles as ctx.lo / ctx.hi."""
        raise NotImplementedError


    def column_factor(self, s: Tensor, w: Weights, ctx: KeyContext) -> Tensor:
        """Per-column factor of one key (columnwise methods) from its first-pass similarity s
        (shape[1:]) and the pooled ctx.lo / ctx.hi; handed back to merge() as ctx.column."""
        raise NotImplementedError


REGISTRY: dict[str, MergeMethod] = {}


def register(cls: type[MergeMethod]) -> type[MergeMethod]:
    if cls.id in REGISTRY:
        raise RuntimeError(f"merge method id {cls.id!r} registered twice")
    REGISTRY[cls.id] = cls()
    return cls


MethodFn = Callable[[Tensor, Tensor | None, Tensor | None, Weights, KeyContext], Tensor]
