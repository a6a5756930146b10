"""The webui's checkpoint list, the same in A1111 and Forge (`modules/sd_models.py`, WEBUI.md §2).

Pickers show `CheckpointInfo.name` (the path under the models folder): stable, unlike titles, which
gain a hash once it is computed. Any name, title, alias or hash resolves through
`get_closet_checkpoint_match`. Nothing here writes the webui's lists or its hash cache.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from ..arch.blocks import Architecture
from ..arch.detect import detect as detect_arch
from ..errors import ArchitectureError, ModelFileError


def names() -> list[str]:
    from modules import sd_models
    return sorted({info.name for info in sd_models.checkpoints_list.values()}, key=str.lower)


def refresh() -> None:
    from modules import sd_models
    sd_models.list_models()


def resolve(name: str) -> Any:
    """The CheckpointInfo for a picker name, title, alias or hash; ModelFileError if unknown or gone."""
    from modules import sd_models
    info = sd_models.get_closet_checkpoint_match(name) if name else None
    if info is None:
        raise ModelFileError(f"checkpoint {name!r} is not in the webui's list",
                             "press the refresh button next to the model pickers, or pick another model")
    if not os.path.isfile(info.filename):
        raise ModelFileError(f"checkpoint {info.name} is listed but its file {info.filename} is gone",
                             "press refresh, or put the file back")
    return info


def models_dir() -> str:
    """Where the webui looks for checkpoints (`--ckpt-dir` when given, else models/Stable-diffusion)."""
    from modules import sd_models, shared
    return getattr(shared.cmd_opts, "ckpt_dir", None) or sd_models.model_path


def arch_of_state_dict(sd: Mapping[str, Any]) -> Architecture:
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    return detect_arch(shapes, "the merged model").arch


def arch_of_model(sd_model: Any) -> Architecture | None:
    """SD1 / SD2 / SDXL of the live model from the webuis' own flags (WEBUI.md §8); None otherwise."""
    from ..arch.blocks import SD1, SD2, SDXL
    if sd_model is None:
        return None
    name = type(sd_model).__name__
    if name in ("Flux", "Chroma", "StableDiffusion3") or getattr(sd_model, "is_sd3", False) \
            or getattr(sd_model, "is_flux", False):  # Neo sets is_flux on Flux and Chroma (flux.py, chroma.py)
        return None
    if getattr(sd_model, "is_sdxl", False):
        return SDXL
    if getattr(sd_model, "is_sd2", False):
        return SD2
    if getattr(sd_model, "is_sd1", False):
        return SD1
    if hasattr(sd_model, "forge_objects"):
        # Forge's and Neo's engines set their own flags (is_sd1 in sd15.py); an engine with none of them
        # is something else (Neo: Wan, Qwen-Image, Z-Image, Lumina, Anima... read at 283cb2c4)
        return None
    if hasattr(sd_model, "model"):
        return SD1
    return None


def require_same_arch(merged: Architecture, live: Architecture | None, live_name: str) -> None:
    if live is None or merged.id != live.id:
        have = live.label if live else "not an SD1/SD2/SDXL model"
        raise ArchitectureError(f"the merge is {merged.label} but the loaded model {live_name} is {have}",
                                f"select an {merged.label} checkpoint in the webui first, or use Merge and save")


def lbw_arch_of_model(sd_model: Any) -> Any:
    """The architecture LoRA block weights use for the live model: SD1 / SD2 / SDXL as `arch_of_model`,
    and Flux / Chroma engines of Forge and Neo (Neo sets `is_flux` on both, flux.py and chroma.py at
    283cb2c4; lllyasviel Forge has no flag, only the class names) as a FluxArchitecture whose block
    counts are read from the loaded transformer's own keys. None for anything else."""
    arch = arch_of_model(sd_model)
    if arch is not None or sd_model is None or not hasattr(sd_model, "forge_objects"):
        return arch
    if not (getattr(sd_model, "is_flux", False) or type(sd_model).__name__ in ("Flux", "Chroma")):
        return None
    from ..arch.flux import flux_architecture
    try:
        keys = list(sd_model.forge_objects.unet.model.diffusion_model.state_dict().keys())
    except AttributeError:
        return None
    flux, _ = flux_architecture("model.diffusion_model." + k for k in keys)
    return flux if flux.n_double else None
