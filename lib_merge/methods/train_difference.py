"""Train difference: add B - C to A scaled by how far B has moved from A (REFERENCE §2).

s = sign(B-C)·|B-A| / (|B-C| + |B-A|) (0 where the denominator is 0); result = A + 1.8·a·s·|B-C|.
Where B == C the added term is exactly 0, so A comes back bit for bit.
"""
from __future__ import annotations

import torch

from .base import KeyContext, MergeMethod, Tensor, Weights, register


@register
class TrainDifference(MergeMethod):
    id = "train_difference"
    label = "Train difference"
    mode = "add_difference"
    n_models = 3

    def leaves_a(self, a: Tensor, b: Tensor | None = None, c: Tensor | None = None) -> bool:
        # the incumbent's `if B == C: keep A; continue` (exact equality) skips adjust for the key too
        return b is not None and c is not None and torch.equal(b, c)

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        assert b is not None and c is not None
        diff = torch.sub(b, c, out=c)  # B - C, in c's buffer
        dist_a = b.sub_(a).abs_()  # |B - A|, in b's buffer
        denom = torch.abs(diff).add_(dist_a)
        # 0/0 is the only NaN finite inputs can make here (B == A == C); the contract says s = 0 there.
        # A NaN input still comes through: diff or a carries it into the result.
        scale = dist_a.div_(denom).nan_to_num_(nan=0.0)
        # sign(D)·s·|D| == s·D exactly in float (sign is ±1 or 0), and saves two passes
        return a.add_(scale.mul_(diff), alpha=1.8 * w.alpha)
