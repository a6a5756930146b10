"""Forge (`backend/` architecture): put a merged state dict into the live engine, and take it out again.

WEBUI.md §5, "Recommended: an in-place load into the live engine": everything under
`torch.inference_mode()` (Forge's parameters are inference tensors); the LoRA backups are put back
first (`lora_loader.refresh({}, force_refresh=True)`), or the next LoRA refresh would restore the
pre-merge weights; the text encoders go through the engine's own `process_clip_state_dict`;
quantized (bnb / gguf) storage is refused. `processing.need_global_unload = True` makes the next
generation reload the patchers (so LoRAs are merged again onto the new weights) and drop the cond
cache. Before loading, `forge_model_reload()` brings the engine up to the selected checkpoint, so
`forge_hash` matches the loading parameters and the next generation keeps the merge until the user
changes checkpoint; `restore()` clears `forge_hash` so the next generation reloads it from its file.
"""
from __future__ import annotations

from typing import Any, MutableMapping

import torch

from ..errors import ArchitectureError, MergeError
from . import checkpoints


def clear_cond_caches(p: Any = None) -> None:
    from .a1111 import clear_cond_caches as clear  # the same in-place rule holds for Forge's lists
    clear(p)


def live_model() -> Any:
    """The engine the next generation will use, brought up to date the way a generation would
    (`forge_model_reload()`, a no-op when it is current). Otherwise a merge loaded in place is thrown
    away by the next generation's reload whenever `forge_hash` no longer matches the loading
    parameters: before the first generation (FakeInitialModel), after Restore (hash cleared), or after
    the user picked another checkpoint (seen in a real Forge dfdcbab6: Restore, then Merge and load,
    then Generate rendered the file's weights)."""
    from modules import sd_models, shared
    if not sd_models.model_data.forge_loading_parameters:
        from modules_forge import main_entry
        main_entry.refresh_model_loading_parameters()
    sd_models.forge_model_reload()
    model = shared.sd_model
    if not hasattr(model, "forge_objects"):
        raise MergeError("Forge has no model loaded",
                         "pick a checkpoint in the webui and generate once, then try again")
    return model


def _strip(sd: MutableMapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _check(module: torch.nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    have = module.state_dict()
    bad = [k for k, v in sd.items() if k in have and tuple(have[k].shape) != tuple(v.shape)]
    if bad:
        raise ArchitectureError(f"{len(bad)} {what} shapes differ from the loaded model (e.g. {bad[0]})",
                                "select a checkpoint of the same kind as model A (inpainting or not), "
                                "or use Merge and save")
    if sd and not any(k in have for k in sd):
        raise ArchitectureError(f"none of the merge's {what} keys fit the loaded model",
                                "select a checkpoint of the same architecture as model A, or use Merge and save")


def load_state_dict(sd: MutableMapping[str, torch.Tensor], base_info: Any, label: str) -> str:
    model = live_model()
    merged = checkpoints.arch_of_state_dict(sd)
    live = checkpoints.arch_of_model(model)
    name = getattr(getattr(model, "sd_checkpoint_info", None), "name", "the loaded model")
    checkpoints.require_same_arch(merged, live, name)
    unet = model.forge_objects.unet
    clip = model.forge_objects.clip
    storage = getattr(unet.model, "storage_dtype", None)
    if isinstance(storage, str):  # 'nf4', 'fp4', 'gguf': quantized parameters, no in-place write
        raise ArchitectureError(f"the loaded model's UNet is stored as {storage} (quantized)",
                                "set 'Diffusion in Low Bits' to Automatic or fp16 in the top bar, "
                                "or use Merge and save")
    config = model.model_config
    unet_sd = _strip(sd, config.unet_key_prefix[0])
    te_keys = tuple(getattr(config, "text_encoder_key_prefix", ["cond_stage_model."])) + ("conditioner.embedders.",)
    with torch.inference_mode():
        te_sd = config.process_clip_state_dict({k: v for k, v in sd.items() if k.startswith(te_keys)})
        _check(unet.model.diffusion_model, unet_sd, "UNet")
        _check(clip.cond_stage_model, te_sd, "text encoder")
        unet.lora_loader.refresh({}, offload_device=unet.offload_device, force_refresh=True)
        clip.patcher.lora_loader.refresh({}, offload_device=clip.patcher.offload_device, force_refresh=True)
        unet.model.diffusion_model.load_state_dict(unet_sd, strict=False)
        clip.cond_stage_model.load_state_dict(te_sd, strict=False)
    from modules import processing
    processing.need_global_unload = True
    model.blockmerge_label = label
    clear_cond_caches()
    lossy = " (cast to the fp8 storage, lossy)" if storage in (getattr(torch, "float8_e4m3fn", None),
                                                             getattr(torch, "float8_e5m2", None)) else ""
    return (f"Loaded in place into the running model{lossy} (labelled {name}); VAE unchanged. "
            f"Restore brings back {name}.")


def restore() -> str:
    from modules import processing, sd_models, shared
    sd_models.model_data.forge_hash = ""  # the next generation reloads the selected checkpoint from its file
    processing.need_global_unload = True
    model = shared.sd_model
    if hasattr(model, "blockmerge_label"):
        del model.blockmerge_label
    clear_cond_caches()
    info = sd_models.model_data.forge_loading_parameters.get("checkpoint_info")
    name = getattr(info, "name", "the selected checkpoint")
    return f"{name} will be reloaded from its file at the next generation."


def loaded_label() -> str | None:
    from modules import shared
    return getattr(shared.sd_model, "blockmerge_label", None)
