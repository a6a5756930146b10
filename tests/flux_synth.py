"""Tiny Flux.1 files with every real key name and Flux.1's real block counts (19 double + 38 single),
only the widths shrunk (lib_merge.arch.flux_layouts.FLUX_TINY): what the tab's 61 sliders and the
webui tests read. Values are seeded normals."""
from __future__ import annotations

import torch

from lib_merge.arch.flux_layouts import checkpoint, tiny_flux
from lib_merge.io.safetensors_io import save_tensors

FLUX_TINY_19x38 = tiny_flux(n_double=19, n_single=38)


def flux_state_dict(seed: int = 0, variant: str = "dev", all_in_one: bool = True,
                    dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g).to(dtype)
            for k, s in checkpoint(FLUX_TINY_19x38, variant, all_in_one).items()}


def write_flux(path, seed: int = 0, variant: str = "dev", all_in_one: bool = True,
               dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    sd = flux_state_dict(seed, variant, all_in_one, dtype)
    save_tensors(str(path), sd)
    return sd
