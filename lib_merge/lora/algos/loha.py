"""LoHa (LyCORIS): the Hadamard product of two low-rank products, optionally with Tucker cores."""
from __future__ import annotations

import math
from typing import Mapping

import torch

from .base import Algorithm, Shapes, Tensor, alpha_scale, reshape


def _tucker(t: Tensor, wa: Tensor, wb: Tensor) -> Tensor:
    # t (r, r, kh, kw), wa (r, out), wb (r, in) -> (out, in, kh, kw)
    return torch.einsum("i j k l, j r, i p -> p r k l", t.float(), wb.float(), wa.float())


class LoHa(Algorithm):
    id = "loha"
    label = "LoHa"
    params = frozenset({"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2", "alpha"})
    required = (frozenset({"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"}),)

    def delta(self, t: Mapping[str, Tensor], shape: tuple[int, ...]) -> tuple[Tensor, float]:
        if "hada_t1" in t and "hada_t2" in t:
            w1 = _tucker(t["hada_t1"], t["hada_w1_a"], t["hada_w1_b"])
            w2 = _tucker(t["hada_t2"], t["hada_w2_a"], t["hada_w2_b"])
        else:
            w1 = t["hada_w1_a"].float() @ t["hada_w1_b"].float().flatten(1)
            w2 = t["hada_w2_a"].float() @ t["hada_w2_b"].float().flatten(1)
        return reshape(w1 * w2, shape, "a LoHa module"), alpha_scale(t, t["hada_w1_b"].shape[0])

    def rank(self, shapes: Shapes) -> int | None:
        return shapes["hada_w1_b"][0]

    def flat_shape(self, shapes: Shapes) -> tuple[int, int]:
        if "hada_t1" in shapes:
            return shapes["hada_w1_a"][1], shapes["hada_w1_b"][1] * math.prod(shapes["hada_t1"][2:])
        return shapes["hada_w1_a"][0], math.prod(shapes["hada_w1_b"][1:])
