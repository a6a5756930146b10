"""Extract: take from B - A and C - A what they share (or what sets them apart), per row.

x = B - A, y = C - A; c = cos(x, y) along the last dim; d = ((c + 1)/2)^g; result =
A + lerp(x, y, a)·lerp(d, 1 - d, b). b = 0 keeps the directions the two deltas agree on, b = 1
the ones where they disagree; g sharpens the selection (REFERENCE §2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import RecipeError
from .base import KeyContext, MergeMethod, Tensor, Weights, register


def _check(w: Weights, key: str) -> None:
    # outside these ranges d or its lerp leaves [0, 1] (and g < 0 turns c = -1 into inf), so the
    # "selection" becomes an amplifier: refuse rather than write a broken model
    if not 0.0 <= w.alpha <= 1.0 or not 0.0 <= w.beta <= 1.0:
        raise RecipeError(f"calc mode extract needs alpha and beta in [0, 1], got alpha {w.alpha}, "
                          f"beta {w.beta} for key {key}",
                          "set the block weights of extract to values between 0 and 1")
    if not w.gamma >= 0.0:
        raise RecipeError(f"calc mode extract needs gamma >= 0, got {w.gamma}", "use a gamma of 0 or more")


@register
class Extract(MergeMethod):
    id = "extract"
    label = "Extract"
    mode = "add_difference"
    n_models = 3
    elementwise = False  # the cosine is taken over whole rows

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        assert b is not None and c is not None
        _check(w, ctx.key)
        x = b.sub_(a)
        y = c.sub_(a)
        # a 0-d tensor is a row of one element; its "cosine" is then the product of the signs
        rows_x, rows_y = (x.reshape(1), y.reshape(1)) if x.ndim == 0 else (x, y)
        # torch's eps makes the cosine of a zero vector 0 (not NaN): no direction, no preference
        cos = F.cosine_similarity(rows_x, rows_y, dim=-1).clamp_(-1.0, 1.0)
        d = cos.add_(1.0).div_(2.0).pow_(w.gamma)
        factor = torch.lerp(d, 1.0 - d, w.beta)
        factor = factor.reshape(x.shape[:-1] + (1,)) if x.ndim else factor.reshape(())
        return a.add_(torch.lerp(x, y, w.alpha, out=x).mul_(factor))
