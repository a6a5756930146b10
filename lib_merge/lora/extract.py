"""Extract a LoRA from two checkpoints: the truncated SVD of (tuned - base) on every LoRA-able layer.

LoRA-able layers are those kohya's trainer targets: the UNet's attention blocks (q/k/v/out,
feed-forward, proj_in/out) and both text encoders' attention and MLP layers; with a conv rank also
the resnets, down- and upsamplers (3x3 convs at the conv rank, their linears and 1x1 convs at the
rank). The result is a kohya-format file (lora_down / lora_up / alpha = rank) the webuis load.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

import torch

from ..arch.blocks import Architecture
from ..arch.detect import detect
from ..errors import ArchitectureError, RecipeError
from ..io.atomic import atomic_write
from ..io.hashing import HashCache
from ..io.models import open_model
from ..io.safetensors_io import save_tensors
from .common import CancelToken, Progress, check_cancel, check_safetensors_name, out_dtype, provenance
from .bake import key_index
from .flux_index import is_flux, kohya_name as flux_kohya_name
from .keys import Module, Target, kohya_name
from .merge import svd_factors

_ATTENTION = re.compile(r"transformer_blocks_\d+_|_proj_(in|out)$")
_CONV = re.compile(r"_(in_layers_2|out_layers_3|skip_connection|emb_layers_1|0_op|\d_conv)$")
_TE = re.compile(r"_(self_attn_[qkv]_proj|self_attn_out_proj|mlp_fc[12])$")
# Flux: the linears of the double and single blocks, what sd-scripts' lora_flux.py trains by default
# (DoubleStreamBlock / SingleStreamBlock children; kohya-ss/sd-scripts @ 0087a46e), and CLIP-L's
# attention and MLP; not the embedders, the final layer or T5.
_FLUX = re.compile(r"(double_blocks_\d+_(img|txt)_(mod_lin|attn_qkv|attn_proj|mlp_0|mlp_2)"
                   r"|single_blocks_\d+_(linear1|linear2|modulation_lin))$")


@dataclass
class ExtractResult:
    output: str
    arch: Architecture
    modules: int = 0
    unchanged: int = 0  # LoRA-able layers where tuned == base (left out)
    metadata: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def lora_able(module: Module, shape: tuple[int, ...], with_conv: bool, flux: bool = False) -> bool:
    if len(shape) < 2:
        return False
    if flux:
        if module.is_te:
            return module.component == "te1" and bool(_TE.search(module.name))
        return bool(_FLUX.fullmatch(module.name))
    if module.is_te:
        return bool(_TE.search(module.name))
    if module.name.startswith(("time_embed", "label_emb", "out_", "input_blocks_0_0")):
        return False
    if _ATTENTION.search(module.name):
        return True
    return with_conv and bool(_CONV.search(module.name))


def extract(tuned: str, base: str, output: str, *, rank: int, conv_rank: int | None = None, dtype: str = "keep",
            min_diff: float = 0.0, overwrite: bool = False, hash_cache: HashCache | None = None,
            progress: Progress | None = None, cancel: CancelToken | None = None) -> ExtractResult:
    t0 = time.monotonic()
    check_safetensors_name(output)
    if rank < 1 or (conv_rank is not None and conv_rank < 1):
        raise RecipeError("--rank and --conv-rank must be at least 1", "give e.g. --rank 32")
    target_dtype = out_dtype(dtype)
    a, b = open_model(tuned), open_model(base)
    try:
        sa = {k: v.shape for k, v in a.tensors.items()}
        sb = {k: v.shape for k, v in b.tensors.items()}
        arch = detect(sa, os.path.basename(tuned)).arch
        arch_b = detect(sb, os.path.basename(base)).arch
        if arch != arch_b:
            raise ArchitectureError(f"{os.path.basename(tuned)} is {arch.label} but {os.path.basename(base)} is "
                                    f"{arch_b.label}", "extract from two checkpoints of one architecture")
        index = key_index(arch, sb)
        flux = is_flux(arch)
        jobs: list[tuple[Module, Target]] = []
        for module, tgt in index.items():
            if lora_able(module, index.shapes[tgt.key], conv_rank is not None, flux):
                if sa.get(tgt.key) != sb[tgt.key]:
                    raise ArchitectureError(f"{tgt.key} has shape {sa.get(tgt.key)} in {os.path.basename(tuned)} "
                                            f"but {sb[tgt.key]} in {os.path.basename(base)}",
                                            "extract from a fine-tune of this very base model")
                jobs.append((module, tgt))
        dt = target_dtype or _first_float(a)
        result = ExtractResult(output, arch)
        tensors: dict[str, torch.Tensor] = {}
        cached: tuple[str, torch.Tensor] | None = None
        for i, (module, tgt) in enumerate(jobs):
            check_cancel(cancel)
            if cached is None or cached[0] != tgt.key:  # q/k/v thirds share one stacked key
                cached = (tgt.key, a.get(tgt.key).float() - b.get(tgt.key).float())
            diff = tgt.cut(cached[1])
            if not diff.numel() or float(diff.abs().max()) <= min_diff:
                result.unchanged += 1
                continue
            conv3 = diff.dim() == 4 and diff.shape[2:] != (1, 1)
            up, down = svd_factors(diff, conv_rank if conv3 and conv_rank else rank)
            name = flux_kohya_name(module) if flux else kohya_name(module, arch)
            tensors[name + ".lora_down.weight"] = down.to(dt).contiguous()
            tensors[name + ".lora_up.weight"] = up.to(dt).contiguous()
            tensors[name + ".alpha"] = torch.tensor(float(down.shape[0]), dtype=dt)
            result.modules += 1
            if progress:
                progress(i + 1, len(jobs), "extracting")
        if not tensors:
            raise RecipeError(f"{os.path.basename(tuned)} and {os.path.basename(base)} do not differ on any "
                              "LoRA-able layer", "check you gave the fine-tuned model and its base")
        recipe = {"tuned": os.path.basename(tuned), "base": os.path.basename(base), "rank": rank,
                  "conv_rank": conv_rank, "min_diff": min_diff, "dtype": dtype, "arch": arch.id}
        extra = {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(rank),
                 "ss_base_model_version": {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}.get(
                     arch.id, "chroma" if arch.id.startswith("chroma") else "flux1")}
        if conv_rank:
            extra["ss_network_args"] = f'{{"conv_dim": "{conv_rank}", "conv_alpha": "{conv_rank}"}}'
        result.metadata = provenance("lora_extract", recipe, [tuned, base], hash_cache,
                                     {tuned: a.metadata, base: b.metadata}, extra)
        with atomic_write(output, overwrite, inputs=[tuned, base]) as f:
            save_tensors(f, tensors, result.metadata)
        result.seconds = time.monotonic() - t0
        return result
    finally:
        a.close()
        b.close()


def _first_float(src) -> torch.dtype:
    from ..io.safetensors_io import DTYPES
    for info in src.tensors.values():
        if info.is_float:
            return DTYPES[info.dtype]
    return torch.float32
