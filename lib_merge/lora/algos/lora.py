"""Plain LoRA and LoCon: up @ down, for linear layers, 1x1 and 3x3 convs, and the Tucker form."""
from __future__ import annotations

import math
from typing import Mapping

import torch

from .base import Algorithm, Shapes, Tensor, alpha_scale, reshape


class Lora(Algorithm):
    id = "lora"
    label = "LoRA / LoCon"
    params = frozenset({"up", "down", "mid", "alpha"})
    required = (frozenset({"up", "down"}),)

    def delta(self, t: Mapping[str, Tensor], shape: tuple[int, ...]) -> tuple[Tensor, float]:
        up, down = t["up"].float(), t["down"].float()
        if "mid" in t:  # LoCon with a Tucker core: down (r, in, 1, 1), mid (r, r, kh, kw), up (out, r, 1, 1)
            d = torch.einsum("n m k l, i n, m j -> i j k l", t["mid"].float(), up.flatten(1), down.flatten(1))
        elif up.dim() == 2 and down.dim() == 2:
            d = up @ down
        else:  # conv: the kernel lives in down; up is (out, r, 1, 1)
            d = up.flatten(1) @ down.flatten(1)
        return reshape(d, shape, "a LoRA module"), alpha_scale(t, down.shape[0])

    def rank(self, shapes: Shapes) -> int | None:
        return shapes["down"][0]

    def flat_shape(self, shapes: Shapes) -> tuple[int, int]:
        up, down = shapes["up"], shapes["down"]
        kernel = math.prod(shapes["mid"][2:]) if "mid" in shapes else math.prod(down[2:])
        return up[0], down[1] * kernel
