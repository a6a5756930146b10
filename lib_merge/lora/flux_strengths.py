"""Per-module block and names of a Flux LoRA module under any name a webui or file gives it.

Forge keeps a Flux LoRA's patches under the model's own keys (`diffusion_model.double_blocks.0.
img_attn.qkv.weight`, `clip_l.transformer.text_model...weight`, `t5xxl.transformer.encoder...weight`);
LBW turns dots into underscores; the file has its own names (kohya, diffusers, OneTrainer). All of
them go to the model weight first and take its block (never a block read from the LoRA's text), so a
diffusers `attn.to_q` and kohya's fused `img_attn_qkv` get the same ratio.
"""
from __future__ import annotations

from typing import Iterable

from ..arch.blocks import UNET
from ..arch.flux import FLUX1, FluxArchitecture
from .flux_index import canonical, looks_flux, module_block
from .lorafile import split_key

_TE = (("clip_l.", "CLIP"), ("text_encoders.clip_l.", "CLIP"), ("clip_l_", "CLIP"), ("text_encoders_clip_l_", "CLIP"),
       ("t5xxl.", "T5"), ("text_encoders.t5xxl.", "T5"), ("t5xxl_", "T5"), ("text_encoders_t5xxl_", "T5"))
_UNDERSCORED = ("model_diffusion_model_", "diffusion_model_")


def _strip(name: str) -> str:
    got = split_key(name)
    base = got[0] if got else name
    for suffix in (".weight", ".bias", "_weight", "_bias"):
        if base.endswith(suffix):
            return base[:-len(suffix)]
    return base


def place(name: str, arch: FluxArchitecture = FLUX1) -> tuple[str | None, bool, str]:
    """(block or None, is a text encoder, the model-side underscore name elements match) of a name."""
    base = _strip(name)
    m = canonical(base, arch)
    if m is None:
        for p in _UNDERSCORED:  # LBW's underscore form of a model key
            if base.startswith(p):
                m = canonical("lora_unet_" + base[len(p):], arch)
                break
    if m is not None:
        return module_block(m, arch), m.is_te, m.name
    # a key no LoRA module names (a norm scale, a bias of a full-difference module): its own block
    for p, block in _TE:
        if base.startswith(p):
            return block, True, base.replace(".", "_")
    dotted = base
    for p in ("model.diffusion_model.", "diffusion_model.", "transformer."):
        if dotted.startswith(p):
            dotted = dotted[len(p):]
            break
    return arch.block_of(UNET + dotted + "."), False, dotted.replace(".", "_")


def names_look_flux(names: Iterable[str]) -> bool:
    stripped = [_strip(n) for n in names]
    return looks_flux(stripped) or looks_flux("lora_unet_" + s[len(p):] for s in stripped for p in _UNDERSCORED
                                              if s.startswith(p))
