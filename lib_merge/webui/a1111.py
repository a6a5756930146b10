"""AUTOMATIC1111 1.10: put a merged state dict into the running model, and take it out again (WEBUI.md §5).

In place: `load_state_dict` under `no_grad`, the text encoder between `undo_hijack` and `hijack`
(the hijacked model names its encoder `.wrapped`), the VAE left alone. `load_state_dict` and not a
raw copy, because only `_load_from_state_dict` makes the Lora extension drop its weight backups.
The model keeps the label of the checkpoint the user selected, so `reload_model_weights()` at the
next generation sees the same file and keeps the merge; `restore()` reloads that checkpoint.

When in place is impossible (fp8 weights, another architecture, other shapes) the merge goes
through `load_model(info, already_loaded_state_dict=...)` with the same label, without writing the
selected checkpoint to the config and without leaving the merge in the checkpoint cache.
"""
from __future__ import annotations

from typing import Any, MutableMapping

import torch

from . import checkpoints

UNET = "model.diffusion_model."
TE_PREFIXES = ("cond_stage_model.", "conditioner.embedders.")


def clear_cond_caches(p: Any = None) -> None:
    """Empty the class-level cond caches in place (WEBUI.md §6), and p's own lists."""
    from modules import processing
    lists = []
    for cls_name in ("StableDiffusionProcessing", "StableDiffusionProcessingTxt2Img"):
        cls = getattr(processing, cls_name, None)
        for attr in ("cached_c", "cached_uc", "cached_hr_c", "cached_hr_uc"):
            lists.append(getattr(cls, attr, None) if cls is not None else None)
    if p is not None:
        lists += [getattr(p, a, None) for a in ("cached_c", "cached_uc", "cached_hr_c", "cached_hr_uc")]
    for cache in lists:
        if isinstance(cache, list) and cache:
            cache[0] = None


_OLD_SD1_TE = {  # what A1111's read_state_dict renames in old SD1 files (sd_models.checkpoint_dict_replacements_sd1)
    "cond_stage_model.transformer.embeddings.": "cond_stage_model.transformer.text_model.embeddings.",
    "cond_stage_model.transformer.encoder.": "cond_stage_model.transformer.text_model.encoder.",
    "cond_stage_model.transformer.final_layer_norm.": "cond_stage_model.transformer.text_model.final_layer_norm.",
}


def _te_key(k: str) -> str:
    for old, new in _OLD_SD1_TE.items():
        if k.startswith(old):
            return new + k[len(old):]
    return k


def _mismatch(have: dict[str, torch.Tensor], sd: dict[str, torch.Tensor]) -> str | None:
    """Why `sd` cannot go into a module with state `have` as it is, or None."""
    absent = [k for k in sd if k not in have]
    if absent:
        return f"{len(absent)} keys are not in the loaded model (e.g. {absent[0]})"
    bad = [k for k, v in sd.items() if tuple(have[k].shape) != tuple(v.shape)]
    if bad:
        return f"{len(bad)} shapes differ from the loaded model (e.g. {bad[0]}: inpainting vs normal?)"
    return None


def load_state_dict(sd: MutableMapping[str, torch.Tensor], base_info: Any, label: str) -> str:
    from modules import devices, sd_hijack, shared
    model = shared.sd_model
    current = getattr(model, "sd_checkpoint_info", None) or base_info
    merged_arch = checkpoints.arch_of_state_dict(sd)
    live_arch = checkpoints.arch_of_model(model)
    if getattr(devices, "fp8", False):
        return _load_whole(sd, current, label, "the model runs in fp8")
    if live_arch is None or live_arch.id != merged_arch.id:
        return _load_whole(sd, current, label, f"the loaded model is not {merged_arch.label}")
    unet_sd = {k[len(UNET):]: v for k, v in sd.items() if k.startswith(UNET)}
    te_sd = {_te_key(k): v for k, v in sd.items() if k.startswith(TE_PREFIXES)}
    reason = _mismatch(model.model.diffusion_model.state_dict(), unet_sd)
    if reason is not None:
        return _load_whole(sd, current, label, reason)
    with torch.no_grad():
        sd_hijack.model_hijack.undo_hijack(model)  # the text encoder under its checkpoint names
        try:
            reason = _mismatch({k: v for k, v in model.state_dict().items() if k.startswith(TE_PREFIXES)}, te_sd)
            if reason is None:
                model.model.diffusion_model.load_state_dict(unet_sd, strict=False)
                model.load_state_dict(te_sd, strict=False)
        finally:
            sd_hijack.model_hijack.hijack(model)
    if reason is not None:
        return _load_whole(sd, current, label, reason)
    model.blockmerge_label = label
    clear_cond_caches()
    return (f"Loaded in place into the running model (labelled {current.name}); VAE unchanged. "
            f"Restore brings back {current.name}.")


def _load_whole(sd: MutableMapping[str, torch.Tensor], info: Any, label: str, reason: str) -> str:
    from modules import sd_models
    with sd_models.SkipWritingToConfig():
        sd_models.load_model(checkpoint_info=info, already_loaded_state_dict=dict(sd))  # it pops what it loads
    sd_models.checkpoints_loaded.pop(info, None)  # never serve the merge as the real file later
    from modules import shared
    shared.sd_model.blockmerge_label = label
    clear_cond_caches()
    return (f"Loaded as a new model ({reason}), labelled {info.name}; the webui's VAE choice applies. "
            f"Restore brings back {info.name}.")


def restore() -> str:
    from modules import sd_models, shared
    model = shared.sd_model
    info = sd_models.select_checkpoint()
    sd_models.reload_model_weights(info=info, forced_reload=True)
    if model is not None and hasattr(model, "blockmerge_label"):
        del model.blockmerge_label
    clear_cond_caches()
    return f"Restored {info.name} from its file."


def loaded_label() -> str | None:
    from modules import shared
    return getattr(shared.sd_model, "blockmerge_label", None)
