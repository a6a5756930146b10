"""Full-difference modules (LyCORIS "full" and norm layers): the stored difference itself."""
from __future__ import annotations

import math
from typing import Mapping

from .base import Algorithm, Shapes, Tensor, reshape


class Full(Algorithm):
    id = "full"
    label = "full difference"
    params = frozenset({"diff", "diff_b", "w_norm", "b_norm", "alpha"})
    required = (frozenset({"diff"}), frozenset({"w_norm"}))
    bias_params = frozenset({"diff_b", "b_norm"})

    def delta(self, t: Mapping[str, Tensor], shape: tuple[int, ...]) -> tuple[Tensor, float]:
        d = t["diff"] if "diff" in t else t["w_norm"]
        return reshape(d.float(), shape, "a full-difference module"), 1.0

    def bias_delta(self, t: Mapping[str, Tensor]) -> Tensor | None:
        b = t.get("diff_b", t.get("b_norm"))
        return None if b is None else b.float()

    def flat_shape(self, shapes: Shapes) -> tuple[int, int]:
        s = shapes["diff"] if "diff" in shapes else shapes["w_norm"]
        return s[0], math.prod(s[1:])
