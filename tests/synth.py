"""Tiny synthetic checkpoints with the real key names and structure (no downloads, no weights)."""
from __future__ import annotations

import torch

from lib_merge.arch import layouts
from lib_merge.io.safetensors_io import save_tensors


def state_dict(arch: str, seed: int = 0, dtype: torch.dtype = torch.float16, dims: layouts.Dims = layouts.TINY,
               **kw) -> dict[str, torch.Tensor]:
    """{key: tensor} of a full checkpoint with every real key, tiny widths, values from `seed`."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layouts.checkpoint(arch, dims, **kw).items():
        if key.endswith("position_ids"):
            out[key] = torch.arange(shape[-1], dtype=torch.int64).reshape(shape)
        else:
            out[key] = torch.randn(shape, generator=g).to(dtype)
    return out


def write_checkpoint(path, arch: str, seed: int = 0, dtype: torch.dtype = torch.float16, extra=None, **kw):
    sd = state_dict(arch, seed, dtype, **kw)
    if extra:
        sd.update(extra)
    save_tensors(str(path), sd)
    return sd
