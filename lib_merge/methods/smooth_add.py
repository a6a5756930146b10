"""Smooth add: A + a·D' with D' = gaussian(median(B - C, size 3), sigma 1) over the whole tensor.

scipy.ndimage is the definition of the filters (REFERENCE §2): reflect borders, truncate 4. The
webuis ship scipy; it is imported only when this method runs so the core does not need it.
"""
from __future__ import annotations

import torch

from .base import KeyContext, MergeMethod, Tensor, Weights, register


def smooth(d: Tensor) -> Tensor:
    """median_filter(size=3) then gaussian_filter(sigma=1) over every dimension of d."""
    if d.numel() <= 1:
        return d  # nothing to smooth against: reflect borders would give d back, up to rounding
    from scipy import ndimage

    arr = d.detach().cpu().numpy()
    out = ndimage.gaussian_filter(ndimage.median_filter(arr, size=3, mode="reflect"), sigma=1.0,
                                  mode="reflect", truncate=4.0)
    return torch.from_numpy(out).to(device=d.device, dtype=d.dtype)


@register
class SmoothAdd(MergeMethod):
    id = "smooth_add"
    label = "Smooth add"
    mode = "add_difference"
    n_models = 3
    elementwise = False  # the filters look at neighbours, so a chunk would change the result at its edges

    def merge(self, a: Tensor, b: Tensor | None, c: Tensor | None, w: Weights, ctx: KeyContext) -> Tensor:
        assert b is not None and c is not None
        return a.add_(smooth(b.sub_(c)), alpha=w.alpha)
