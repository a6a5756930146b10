"""Detect a checkpoint's architecture and variant from its key names and shapes alone.

Only the safetensors header is needed: no tensor is read (REFERENCE §1).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import ArchitectureError
from .blocks import SD1, SD2, SDXL, UNET, Architecture
from .flux import VAE_PREFIX, flux_architecture, is_flux
from .layouts import SSD1B_DEPTHS, SDXL_DEPTHS

_TBLOCK = re.compile(r"model\.diffusion_model\.(input_blocks|middle_block|output_blocks)\.?(\d*)\.1\."
                     r"transformer_blocks\.(\d+)\.")


@dataclass(frozen=True)
class ModelInfo:
    arch: Architecture
    variant: str  # Flux: "dev", "schnell", "chroma"; SD: "standard", "inpaint" (9 input channels), "pix2pix" (8), or "other-N"
    in_channels: int | None
    pruned: str | None  # None, "SSD-1B", or "pruned SDXL (N of 70 transformer layers)"
    prediction: str  # "eps", "v", "edm", or "unknown" (SD2 cannot be told from keys)
    has_text_encoder: bool
    has_vae: bool

    @property
    def label(self) -> str:
        parts = [self.pruned or self.arch.label]
        if self.variant in ("dev", "schnell"):
            parts[0] = f"{parts[0]} {self.variant}"
        elif self.variant not in ("standard", "chroma"):
            parts.append(self.variant)
        if self.prediction in ("v", "edm"):
            parts.append(f"{self.prediction}-prediction")
        return " ".join(parts)


def detect(shapes: Mapping[str, Sequence[int]], source: str = "model") -> ModelInfo:
    """Classify a checkpoint from {key: shape}. Raises ArchitectureError for what we cannot merge."""
    keys = shapes.keys()
    if is_flux(keys):
        _refuse_packed(keys, source)
        arch, variant = flux_architecture(keys)
        return ModelInfo(arch, variant, None, None, "flow",
                         has_text_encoder=any(k.startswith(arch.te_prefixes) for k in keys),
                         has_vae=any(k.startswith(VAE_PREFIX) for k in keys))
    if not any(k.startswith(UNET) for k in keys):
        hint = "it looks like a LoRA" if any(k.startswith(("lora_", "lycoris_")) or ".lora_" in k
                                              for k in keys) else "no model.diffusion_model.* keys"
        raise ArchitectureError(f"{source} is not a Stable Diffusion checkpoint ({hint})",
                                "pick a full SD1/SD2/SDXL checkpoint")
    if any(k.startswith("conditioner.embedders.1.model.transformer.resblocks.") for k in keys) or \
            UNET + "label_emb.0.0.weight" in shapes:
        arch = SDXL
    elif any(k.startswith("cond_stage_model.model.transformer.resblocks.") for k in keys):
        arch = SD2
    else:
        arch = SD1
    conv_in = shapes.get(UNET + "input_blocks.0.0.weight")
    in_ch = int(conv_in[1]) if conv_in is not None and len(conv_in) == 4 else None
    variant = {4: "standard", None: "standard", 9: "inpaint", 8: "pix2pix"}.get(in_ch, f"other-{in_ch}")
    pruned = _pruned_label(keys) if arch is SDXL else None
    if "v_pred" in shapes:
        prediction = "v"
    elif any(k.startswith("edm_vpred.") for k in keys):
        prediction = "edm"
    elif arch is SD2:
        prediction = "unknown"
    else:
        prediction = "eps"
    return ModelInfo(arch, variant, in_ch, pruned, prediction,
                     has_text_encoder=any(k.startswith(arch.te_prefixes) for k in keys),
                     has_vae=any(k.startswith("first_stage_model.") for k in keys))


def transformer_depths(keys) -> dict[str, int]:
    """{'input_blocks.7': 10, 'middle_block': 10, ...}: transformer layers kept in each UNet block."""
    depth: dict[str, int] = {}
    for k in keys:
        m = _TBLOCK.match(k)
        if m:
            name = f"{m.group(1)}.{m.group(2)}" if m.group(2) else m.group(1)
            depth[name] = max(depth.get(name, 0), int(m.group(3)) + 1)
    return depth


def _profile(depths: dict) -> dict[str, int]:
    out = {f"input_blocks.{i + 1 + i // 2}": n for i, n in enumerate(depths["in"]) if n}
    out.update({f"output_blocks.{i}": n for i, n in enumerate(depths["out"]) if n})
    if depths["mid"]:
        out["middle_block"] = depths["mid"]
    return out


def _pruned_label(keys) -> str | None:
    found = transformer_depths(keys)
    if found == _profile(SDXL_DEPTHS):
        return None
    if found == _profile(SSD1B_DEPTHS):
        return "SSD-1B"
    return f"pruned SDXL ({sum(found.values())} of {sum(_profile(SDXL_DEPTHS).values())} transformer layers)"


# packed quantisations whose tensors cannot be merged element by element (NEO_FLUX.md B1)
# (fp8 scaled files are understood: merge/scaled.py de-scales them, or refuses a variant it cannot read)
_PACKED = ((".absmax", "bitsandbytes NF4/FP4"), (".quant_map", "bitsandbytes NF4/FP4"),
           ("quant_state.bitsandbytes", "bitsandbytes NF4/FP4"))


def _refuse_packed(keys, source: str) -> None:
    for k in keys:
        for marker, fmt in _PACKED:
            if marker in k:
                raise ArchitectureError(f"{source} is a {fmt} quantised model (key {k!r}), which cannot be merged",
                                        "merge the bf16, fp16 or plain fp8 (float8_e4m3fn/e5m2) files instead")
