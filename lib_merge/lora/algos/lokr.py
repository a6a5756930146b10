"""LoKr (LyCORIS): the Kronecker product of two factors, each whole or low-rank."""
from __future__ import annotations

import math
from typing import Mapping

import torch

from .base import Algorithm, Shapes, Tensor, alpha_scale, reshape


class LoKr(Algorithm):
    id = "lokr"
    label = "LoKr"
    params = frozenset({"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2", "alpha"})
    required = (frozenset({"lokr_w1", "lokr_w2"}), frozenset({"lokr_w1", "lokr_w2_a", "lokr_w2_b"}),
                frozenset({"lokr_w1_a", "lokr_w1_b", "lokr_w2"}),
                frozenset({"lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b"}))

    def delta(self, t: Mapping[str, Tensor], shape: tuple[int, ...]) -> tuple[Tensor, float]:
        w1 = t["lokr_w1"].float() if "lokr_w1" in t else t["lokr_w1_a"].float() @ t["lokr_w1_b"].float()
        if "lokr_w2" in t:
            w2 = t["lokr_w2"].float()
        elif "lokr_t2" in t:
            w2 = torch.einsum("i j k l, j r, i p -> p r k l", t["lokr_t2"].float(), t["lokr_w2_b"].float(),
                              t["lokr_w2_a"].float())
        else:
            # a flattened conv factor: the 2-d Kronecker product reshaped equals the 4-d one
            w2 = t["lokr_w2_a"].float() @ t["lokr_w2_b"].float().flatten(1)
        if w2.dim() == 4 and w1.dim() == 2:
            w1 = w1[:, :, None, None]
        # The webuis' rule: the rank is w2_b's (or else w1_b's); whole factors are not scaled.
        return reshape(torch.kron(w1, w2), shape, "a LoKr module"), alpha_scale(t, self._dim(t))

    @staticmethod
    def _dim(t: Mapping[str, object]) -> int | None:
        if "lokr_w2_b" in t:
            return t["lokr_w2_b"].shape[0]  # type: ignore[attr-defined]
        if "lokr_w1_b" in t:
            return t["lokr_w1_b"].shape[0]  # type: ignore[attr-defined]
        return None

    def flat_shape(self, shapes: Shapes) -> tuple[int, int]:
        w1 = shapes["lokr_w1"] if "lokr_w1" in shapes else (shapes["lokr_w1_a"][0], shapes["lokr_w1_b"][1])
        if "lokr_w2" in shapes:
            w2 = shapes["lokr_w2"]
        elif "lokr_t2" in shapes:
            w2 = (shapes["lokr_w2_a"][1], shapes["lokr_w2_b"][1], *shapes["lokr_t2"][2:])
        else:
            w2 = (shapes["lokr_w2_a"][0], math.prod(shapes["lokr_w2_b"][1:]))
        return w1[0] * w2[0], w1[1] * math.prod(w2[1:])

    def rank(self, shapes: Shapes) -> int | None:
        for p in ("lokr_w2_b", "lokr_w1_b"):
            if p in shapes:
                return shapes[p][0]
        return None
