"""A LoRA file opened lazily: its modules, their algorithm, canonical name and block.

Only the header is read up front; a module's tensors are read when asked for, so baking a large
LoCon into a checkpoint holds one module at a time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

import torch

from ..arch.blocks import UNET, Architecture
from ..errors import ArchitectureError, ModelFileError
from ..io.models import open_model
from . import algos
from .algos.base import Algorithm
from . import flux_index
from .keys import ArchGuess, Module, canonical, guess_arch, module_block
from .layouts import article, family

# file-key suffix -> parameter name, longest first so `.lora_down.weight` wins over `.weight`
_SUFFIXES: tuple[tuple[str, str], ...] = tuple(sorted((
    (".lora_down.weight", "down"), (".lora_up.weight", "up"), (".lora_mid.weight", "mid"),
    (".lora_A.weight", "down"), (".lora_B.weight", "up"),
    (".lora_A.default.weight", "down"), (".lora_B.default.weight", "up"),
    (".lora.down.weight", "down"), (".lora.up.weight", "up"),
    ("_lora.down.weight", "down"), ("_lora.up.weight", "up"),  # old diffusers attention processors
    (".alpha", "alpha"),
    (".hada_w1_a", "hada_w1_a"), (".hada_w1_b", "hada_w1_b"), (".hada_w2_a", "hada_w2_a"),
    (".hada_w2_b", "hada_w2_b"), (".hada_t1", "hada_t1"), (".hada_t2", "hada_t2"),
    (".lokr_w1", "lokr_w1"), (".lokr_w1_a", "lokr_w1_a"), (".lokr_w1_b", "lokr_w1_b"),
    (".lokr_w2", "lokr_w2"), (".lokr_w2_a", "lokr_w2_a"), (".lokr_w2_b", "lokr_w2_b"), (".lokr_t2", "lokr_t2"),
    (".diff", "diff"), (".diff_b", "diff_b"), (".w_norm", "w_norm"), (".b_norm", "b_norm"),
    (".dora_scale", "dora_scale"), (".on_input", "on_input"), (".oft_blocks", "oft_blocks"),
    (".oft_diag", "oft_diag"), (".a1.weight", "a1.weight"),
), key=lambda s: -len(s[0])))


def split_key(key: str) -> tuple[str, str] | None:
    """(module name, parameter) of a LoRA file key, or None."""
    for suffix, param in _SUFFIXES:
        if key.endswith(suffix):
            module = key[:-len(suffix)]
            if suffix.startswith("_lora."):
                module += "_lora"
            return module, param
    return None


@dataclass
class LoraModule:
    raw: str  # the module name as the file has it
    params: dict[str, str] = field(default_factory=dict)  # parameter -> file key
    algo: Algorithm | None = None
    module: Module | None = None  # canonical name (None: we do not know this layer)
    block: str | None = None

    @property
    def param_set(self) -> frozenset[str]:
        return frozenset(self.params)

    @property
    def empty(self) -> bool:
        """Only an alpha, no weights (some trainers leave these behind): nothing to apply."""
        return self.param_set <= {"alpha"}


def guess_lora_arch(raws, shapes=None) -> ArchGuess | None:
    """Flux from its transformer names (any format), else SD1/SD2/SDXL from the UNet's (keys.guess_arch)."""
    raws = list(raws)
    if flux_index.looks_flux(raws):
        return ArchGuess(flux_index.FLUX1, True, "Flux transformer module names (double/single blocks)")
    return guess_arch(raws, shapes)


class LoraFile:
    """Open with `LoraFile.open(path, arch)`; `arch` is the checkpoint's when baking."""

    def __init__(self, path: str, src, modules: dict[str, LoraModule], unknown: list[str], guess: ArchGuess | None):
        self.path = path
        self.name = os.path.basename(path)
        self._src = src
        self.metadata: Mapping[str, str] = src.metadata
        self.tensors = src.tensors
        self.modules = modules
        self.unknown_keys = unknown
        self.guess = guess
        self.arch: Architecture | None = None

    @staticmethod
    def open(path: str, arch: Architecture | None = None, fallback: Architecture | None = None) -> "LoraFile":
        """`arch`: the checkpoint's (checked against the names); `fallback`: used when the names do not
        tell (inspect), instead of an error."""
        if not os.path.isfile(path):
            raise ModelFileError(f"LoRA file not found: {path}", "check the path")
        src = open_model(path)
        modules: dict[str, LoraModule] = {}
        unknown: list[str] = []
        for key in src.tensors:
            got = split_key(key)
            if got is None:
                unknown.append(key)
                continue
            modules.setdefault(got[0], LoraModule(got[0])).params[got[1]] = key
        name = os.path.basename(path)
        if not modules:
            src.close()
            what = "a checkpoint, not a LoRA" if any(k.startswith(UNET) for k in src.tensors) else "no LoRA modules"
            raise ModelFileError(f"{name} holds {what}", "give a LoRA / LyCORIS file")
        shapes = {k: v.shape for k, v in src.tensors.items()}
        lf = LoraFile(path, src, modules, unknown, guess_lora_arch(modules, shapes))
        lf.bind(arch if arch is not None or lf.guess is not None else fallback)
        return lf

    def bind(self, arch: Architecture | None) -> None:
        """Fix the architecture (the checkpoint's, or the guess) and name every module canonically."""
        g = self.guess
        if arch is not None and g is not None and family(g.arch) != family(arch):
            raise ArchitectureError(f"{self.name} is {article(g.arch.label)} LoRA ({g.reason}) but the model is "
                                    f"{arch.label}", f"use {article(g.arch.label)} checkpoint, or "
                                    f"{article(arch.label)} LoRA")
        if arch is None:
            if g is None:
                raise ArchitectureError(f"cannot tell which model {self.name} was made for from its module names",
                                        "bake it into a checkpoint, which tells the architecture")
            arch = g.arch
        self.arch = arch
        xl = arch.id == "sdxl"
        flux = flux_index.is_flux(arch)
        for m in self.modules.values():
            m.algo = algos.find(m.param_set)
            if flux:
                m.module = flux_index.canonical(m.raw, arch)
                m.block = flux_index.module_block(m.module, arch) if m.module else None
            else:
                m.module = canonical(m.raw, xl)
                m.block = module_block(m.module, arch) if m.module else None

    def check_supported(self) -> None:
        """Refuse DoRA, IA3, OFT, GLoRA by name, and modules of no known kind."""
        for m in self.modules.values():
            algos.refuse(m.raw, self.name, m.param_set)
            if m.algo is None and not m.empty:
                raise ModelFileError(f"{self.name}: module {m.raw} has parameters {sorted(m.params)} of no known "
                                     "LoRA kind", "check the file; BlockMerge reads LoRA, LoCon, LoHa, LoKr and full")

    def load(self, m: LoraModule) -> dict[str, torch.Tensor]:
        return {p: self._src.get(k) for p, k in m.params.items()}

    def load_param(self, m: LoraModule, param: str) -> torch.Tensor:
        return self._src.get(m.params[param])

    def shapes(self, m: LoraModule) -> dict[str, tuple[int, ...]]:
        return {p: tuple(self.tensors[k].shape) for p, k in m.params.items()}

    def float_dtype(self) -> torch.dtype:
        from ..io.safetensors_io import DTYPES
        for info in self.tensors.values():
            if info.dtype in ("F16", "BF16", "F32", "F64"):
                return DTYPES[info.dtype]
        return torch.float32

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> "LoraFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

