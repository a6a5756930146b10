"""Flux LoRA modules named canonically, placed in the 61-slot vocabulary, and matched to checkpoint keys.

A Flux LoRA module is named by the model weight it changes, whatever format the file uses: the
transformer in BFL's own naming (`unet`, `double_blocks_7_img_attn_qkv`), CLIP-L (`te1`) and T5-XXL
(`te2`) in transformers' naming (`text_model_encoder_layers_0_self_attn_q_proj`,
`encoder_block_0_layer_0_SelfAttention_q`). A diffusers module that changes part of a fused weight
(`attn.to_q` -> rows of `img_attn.qkv`, `proj_mlp` -> rows of `linear1`) keeps that part in
`Module.part`; `norm_out.linear` keeps `swap`. The block always comes from this model name (CLIP,
T5, IN, Dnn, Snn, OUT), never from the LoRA file's text.

Text encoder names, as the loaders map them (Comfy-Org/ComfyUI comfy/lora.py model_lora_keys_clip @
17358c8f; kohya-ss/sd-scripts networks/lora_flux.py LORA_PREFIX_TEXT_ENCODER_* @ 0087a46e):
`lora_te1_`/`lora_te_` and diffusers `text_encoder.` are CLIP-L; `lora_te2_` (sd-scripts,
OneTrainer) and `lora_te3_` are T5; `text_encoders.clip_l.transformer.` / `text_encoders.t5xxl.
transformer.` (and Forge's `clip_l.transformer.` / `t5xxl.transformer.`) are the generic forms.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Iterator, Mapping, Sequence

from ..arch.blocks import UNET
from ..arch.flux import FLUX1, FluxArchitecture
from .flux_keys import resolve
from .keys import TE1, TE2, UNET_C, Module, Target

CLIP_PREFIX = "text_encoders.clip_l.transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."
_TE_RAW = (("lora_te1_", TE1), ("lora_te_", TE1), ("lora_te2_", TE2), ("lora_te3_", TE2),
           ("text_encoder.", TE1), ("text_encoder_2.", TE2), (CLIP_PREFIX, TE1), (T5_PREFIX, TE2),
           ("clip_l.transformer.", TE1), ("t5xxl.transformer.", TE2),
           ("text_encoders_clip_l_transformer_", TE1), ("text_encoders_t5xxl_transformer_", TE2),
           ("clip_l_transformer_", TE1), ("t5xxl_transformer_", TE2))
_TE_BLOCK = {TE1: "CLIP", TE2: "T5"}
_UNET_BLOCK = re.compile(r"(double_blocks|single_blocks)_(\d+)_|(img_in|txt_in|time_in|vector_in|guidance_in"
                         r"|distilled_guidance_layer)(_|$)|(final_layer)_")


def is_flux(arch) -> bool:
    return isinstance(arch, FluxArchitecture)


def canonical(raw: str, arch: FluxArchitecture = FLUX1) -> Module | None:
    """The Module of a Flux LoRA module name in any format, or None if it names no Flux weight."""
    for prefix, comp in _TE_RAW:
        if raw.startswith(prefix):
            return Module(comp, raw[len(prefix):].replace(".", "_"))
    t = resolve(raw, arch)
    if t is None:
        return None
    part = (t.offset, t.length, t.total) if t.offset is not None else None
    return Module(UNET_C, t.key.replace(".", "_"), part, t.swap)


def module_block(module: Module, arch: FluxArchitecture = FLUX1) -> str | None:
    if module.is_te:
        return _TE_BLOCK.get(module.component)
    m = _UNET_BLOCK.match(module.name)
    if not m:
        return None
    if m.group(1):
        n = int(m.group(2))
        if m.group(1) == "double_blocks":
            return f"D{n:02d}" if n < arch.n_double else None
        return f"S{n:02d}" if n < arch.n_single else None
    return "IN" if m.group(3) else "OUT"


def looks_flux(raws: Iterable[str]) -> bool:
    """Whether a LoRA's module names are Flux transformer names (any format)."""
    return any(resolve(r, FLUX1) is not None for r in raws)


def kohya_name(module: Module) -> str:
    """The name sd-scripts writes (and every Flux loader reads): fused weights, BFL names."""
    prefix = {UNET_C: "lora_unet_", TE1: "lora_te1_", TE2: "lora_te2_"}[module.component]
    return prefix + module.name


class FluxKeyIndex:
    """Canonical module -> Target over one Flux checkpoint's keys (transformer-only or all-in-one)."""

    def __init__(self, arch: FluxArchitecture, shapes: Mapping[str, Sequence[int]]):
        self.arch = arch
        self.shapes = {k: tuple(int(x) for x in v) for k, v in shapes.items()}
        self._t: dict[Module, Target] = {}
        for key in self.shapes:
            got = self._entry(key)
            if got is not None:
                self._t[got[0]] = got[1]

    def _entry(self, key: str) -> tuple[Module, Target] | None:
        if not key.endswith(".weight") or len(self.shapes[key]) < 2:
            return None
        stem = key[:-len(".weight")]
        for prefix, comp in ((CLIP_PREFIX, TE1), (T5_PREFIX, TE2)):
            if stem.startswith(prefix):
                return Module(comp, stem[len(prefix):].replace(".", "_")), \
                    Target(key, self._has(stem + ".bias"), None, _TE_BLOCK[comp])
        block = self.arch.block_of(key)
        if block is None or block in ("CLIP", "T5"):
            return None
        rest = stem[len(UNET):] if stem.startswith(UNET) else stem
        return Module(UNET_C, rest.replace(".", "_")), Target(key, self._has(stem + ".bias"), None, block)

    def _has(self, key: str) -> str | None:
        return key if key in self.shapes else None

    def target(self, module: Module) -> Target | None:
        t = self._t.get(module.base)
        if t is None or (module.part is None and not module.swap):
            return t
        rows_total = self.shapes[t.key][0]
        if module.part is not None:
            first, n, whole = module.part
            if rows_total % whole:
                return None
            h = rows_total // whole
            t = dataclasses.replace(t, rows=(first * h, (first + n) * h))
        if module.swap:
            if rows_total % 2:
                return None
            t = dataclasses.replace(t, swap=True)
        return t

    def items(self) -> Iterator[tuple[Module, Target]]:
        return iter(self._t.items())

    def shape(self, target: Target) -> tuple[int, ...]:
        s = self.shapes[target.key]
        if target.rows is not None:
            return (target.rows[1] - target.rows[0], *s[1:])
        return s
