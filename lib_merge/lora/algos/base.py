"""The interface of a LoRA algorithm: which parameters it owns, and ΔW from them.

ΔW is returned unscaled together with its scale (alpha / rank for factorised kinds), so callers
multiply once by ratio · multiplier · scale and the result is linear in the block ratio.
"""
from __future__ import annotations

from typing import ClassVar, Mapping

import torch

from ...errors import ModelFileError

Tensor = torch.Tensor
Shapes = Mapping[str, tuple[int, ...]]


class Algorithm:
    id: ClassVar[str]  # stable: "lora", "loha", "lokr", "full"
    label: ClassVar[str]
    params: ClassVar[frozenset[str]]  # every parameter name this kind may have
    required: ClassVar[tuple[frozenset[str], ...]]  # one of these sets must be present
    bias_params: ClassVar[frozenset[str]] = frozenset()  # parameters that change the layer's bias

    def matches(self, names: frozenset[str]) -> bool:
        return names <= self.params and any(r <= names for r in self.required)

    def delta(self, t: Mapping[str, Tensor], shape: tuple[int, ...]) -> tuple[Tensor, float]:
        """(ΔW reshaped to `shape`, float32, unscaled; its scale)."""
        raise NotImplementedError

    def bias_delta(self, t: Mapping[str, Tensor]) -> Tensor | None:
        return None

    def has_bias(self, names: frozenset[str]) -> bool:
        return bool(names & self.bias_params)

    def rank(self, shapes: Shapes) -> int | None:
        return None

    def flat_shape(self, shapes: Shapes) -> tuple[int, int]:
        """(out features, in features × kernel size) of ΔW, from the parameter shapes alone."""
        raise NotImplementedError


def reshape(d: Tensor, shape: tuple[int, ...], what: str) -> Tensor:
    if d.numel() != _numel(shape):
        raise ModelFileError(f"{what} has {tuple(d.shape)} elements' worth of change but its target is {shape}",
                             "the LoRA was made for another model family; pick a matching checkpoint")
    return d.reshape(shape)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def alpha_scale(t: Mapping[str, Tensor], rank: int | None) -> float:
    """alpha / rank; 1 when the file stores no alpha (PEFT files keep it in their config)."""
    if "alpha" not in t or not rank:
        return 1.0
    return float(t["alpha"].float().reshape(-1)[0]) / rank
