"""Flux LoRA module names -> Flux model keys (with the slice a split q/k/v LoRA changes) and blocks.

Formats (NEO_FLUX.md B3, Comfy's `flux_to_diffusers` mapping read for behaviour only):
- kohya / sd-scripts: `lora_unet_double_blocks_0_img_attn_qkv` (the BFL key, dots as underscores);
  `lora_te1_*` CLIP-L, `lora_te2_*` T5 (OneTrainer).
- diffusers / PEFT (ai-toolkit, SimpleTuner): `transformer.transformer_blocks.0.attn.to_q` with split
  q/k/v landing on a slice of the fused `img_attn.qkv` / `linear1`.
- OneTrainer: `lora_transformer_<diffusers name with underscores>`.
- BFL names with `diffusion_model.` or `transformer.` in front (ai-toolkit/Comfy saves).
The block is taken from the resolved model key (FluxArchitecture.block_of), never from the LoRA text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..arch.flux import FLUX1, FluxArchitecture

SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight", ".lora.down.weight",
            ".lora.up.weight", ".lora_mid.weight", ".alpha", ".dora_scale", ".diff", ".diff_b",
            ".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b", ".lokr_w1", ".lokr_w2", ".lokr_w1_a",
            ".lokr_w1_b", ".lokr_w2_a", ".lokr_w2_b")


@dataclass(frozen=True)
class FluxTarget:
    key: str  # BFL model key without `model.diffusion_model.` (".weight" of the module)
    offset: int | None = None  # first output row the LoRA changes in a fused tensor, in units of hidden
    length: int | None = None  # rows, in units of hidden (1 for q/k/v, 4 for proj_mlp at ratio 4)
    total: int | None = None  # rows of the whole fused weight, in units of hidden (3 for qkv, 7 for linear1)
    swap: bool = False  # norm_out.linear: diffusers' (scale, shift) is BFL's (shift, scale)

    def rows(self, hidden: int) -> slice | None:
        if self.offset is None:
            return None
        return slice(self.offset * hidden, (self.offset + self.length) * hidden)


def _double(i: int) -> dict[str, FluxTarget]:
    d, t = f"transformer_blocks.{i}.", f"double_blocks.{i}."
    m = {"norm1.linear": FluxTarget(t + "img_mod.lin"), "norm1_context.linear": FluxTarget(t + "txt_mod.lin"),
         "attn.to_out.0": FluxTarget(t + "img_attn.proj"), "attn.to_add_out": FluxTarget(t + "txt_attn.proj"),
         "ff.net.0.proj": FluxTarget(t + "img_mlp.0"), "ff.net.2": FluxTarget(t + "img_mlp.2"),
         "ff_context.net.0.proj": FluxTarget(t + "txt_mlp.0"), "ff_context.net.2": FluxTarget(t + "txt_mlp.2")}
    for j, x in enumerate("qkv"):
        m[f"attn.to_{x}"] = FluxTarget(t + "img_attn.qkv", j, 1, 3)
        m[f"attn.add_{x}_proj"] = FluxTarget(t + "txt_attn.qkv", j, 1, 3)
    # LyCORIS LoKr names of the feed-forward layers (Comfy's flux_to_diffusers lists them too)
    for ff, s in (("ff", "img"), ("ff_context", "txt")):
        m[f"{ff}.linear_in"] = FluxTarget(f"{t}{s}_mlp.0")
        m[f"{ff}.linear_out"] = FluxTarget(f"{t}{s}_mlp.2")
    return {d + k: v for k, v in m.items()}


def _single(i: int, mlp_ratio: int) -> dict[str, FluxTarget]:
    d, t = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
    m = {"norm.linear": FluxTarget(t + "modulation.lin"), "proj_out": FluxTarget(t + "linear2"),
         "proj_mlp": FluxTarget(t + "linear1", 3, mlp_ratio, 3 + mlp_ratio)}
    for j, x in enumerate("qkv"):
        m[f"attn.to_{x}"] = FluxTarget(t + "linear1", j, 1, 3 + mlp_ratio)
    return {d + k: v for k, v in m.items()}


_TOP = {"x_embedder": "img_in", "context_embedder": "txt_in", "proj_out": "final_layer.linear",
        "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
        "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
        "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
        "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
        "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
        "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer"}


@lru_cache(maxsize=8)
def diffusers_table(n_double: int = 19, n_single: int = 38, mlp_ratio: int = 4) -> dict[str, FluxTarget]:
    """diffusers module name -> target, for a transformer with these block counts."""
    table = {k: FluxTarget(v) for k, v in _TOP.items()}
    table["norm_out.linear"] = FluxTarget("final_layer.adaLN_modulation.1", swap=True)
    for i in range(n_double):
        table.update(_double(i))
    for i in range(n_single):
        table.update(_single(i, mlp_ratio))
    return table


_BFL_MODULE = re.compile(r"^(double_blocks\.\d+\.(img|txt)_(mod\.lin|attn\.qkv|attn\.proj|mlp\.0|mlp\.2)"
                         r"|single_blocks\.\d+\.(linear1|linear2|modulation\.lin)"
                         r"|(img_in|txt_in)|(time_in|vector_in|guidance_in)\.(in_layer|out_layer)"
                         r"|final_layer\.(linear|adaLN_modulation\.1))$")


@lru_cache(maxsize=8)
def _underscored(n_double: int, n_single: int, mlp_ratio: int) -> tuple[dict[str, str], dict[str, FluxTarget]]:
    bfl = {v.key for v in diffusers_table(n_double, n_single, mlp_ratio).values()}
    return ({k.replace(".", "_"): k for k in bfl},
            {k.replace(".", "_"): v for k, v in diffusers_table(n_double, n_single, mlp_ratio).items()})


_LINEAR1_QKV = re.compile(r"^(single_blocks\.\d+)\.linear1_qkv$")


def module_of(lora_key: str) -> str:
    """The module part of a LoRA tensor key (the name without its `.lora_down.weight`-style suffix)."""
    for s in SUFFIXES:
        if lora_key.endswith(s):
            return lora_key[:-len(s)]
    return lora_key


def resolve(module: str, arch: FluxArchitecture = FLUX1, mlp_ratio: int = 4) -> FluxTarget | None:
    """The Flux transformer target of a LoRA module name in any of the formats above, or None."""
    bfl_names, diff_under = _underscored(arch.n_double, arch.n_single, mlp_ratio)
    for p in ("lora_unet_", "lora_transformer_", "lycoris_"):
        if module.startswith(p):
            rest = module[len(p):]
            if rest in bfl_names:
                return FluxTarget(bfl_names[rest])
            return diff_under.get(rest)
    for p in ("transformer.", "diffusion_model.", "model.diffusion_model.", "base_model.model.", ""):
        if module.startswith(p):
            rest = module[len(p):]
            m = _LINEAR1_QKV.match(rest)  # q, k and v of a single block in one module
            if m:
                return FluxTarget(m.group(1) + ".linear1", 0, 3, 3 + mlp_ratio)
            if _BFL_MODULE.match(rest):
                return FluxTarget(rest)
            hit = diffusers_table(arch.n_double, arch.n_single, mlp_ratio).get(rest)
            if hit is not None:
                return hit
    return None


def block_of(module: str, arch: FluxArchitecture = FLUX1) -> str | None:
    """The 61-slot block of a LoRA module: text encoders by their prefix, the rest from the model key."""
    if module.startswith(("lora_te1_", "lora_te_", "text_encoder.", "lora_clip_l_")):
        return "CLIP"
    if module.startswith(("lora_te2_", "text_encoder_2.", "lora_t5xxl_")):
        return "T5"
    target = resolve(module, arch)
    return arch.block_of(target.key + ".weight") if target else None
