"""`lora extract` / `lora merge --rank` on real-size layers use a randomized truncated SVD (issue 10):
its rank-r product must be as good as the best one (Eckart-Young, computed here with numpy's full
SVD), and the same inputs must give the same factors."""
from __future__ import annotations

import numpy as np
import torch

from lib_merge.lora.merge import FAST_MIN, svd_factors


def _layer(m, n, seed):
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(m, 12, generator=g) @ torch.randn(12, n, generator=g) * 0.02
    return low + torch.randn(m, n, generator=g) * 0.002  # a fine-tune: a few strong directions + noise


def test_randomized_factors_are_as_good_as_the_exact_svd():
    d = _layer(320, 1280, 1)
    assert min(d.shape) >= FAST_MIN  # the randomized path
    for r in (4, 8, 16):
        up, down = svd_factors(d, r)
        assert up.shape == (320, r) and down.shape == (r, 1280)
        err = np.linalg.norm((d - up @ down).numpy())
        s = np.linalg.svd(d.double().numpy(), compute_uv=False)
        best = np.sqrt((s[r:] ** 2).sum())  # the optimum, from the singular values alone
        assert err <= best * 1.01, (r, err, best)


def test_conv_layer_shapes_and_determinism():
    d = _layer(320, 320 * 9, 2).reshape(320, 320, 3, 3)
    up1, down1 = svd_factors(d, 8)
    up2, down2 = svd_factors(d, 8)
    assert up1.shape == (320, 8, 1, 1) and down1.shape == (8, 320, 3, 3)
    assert torch.equal(up1, up2) and torch.equal(down1, down2)
