"""Per-module strengths for a running webui: the pure function the A1111 / Forge adapters call.

Given a parsed tag and a LoRA's module names as the webui has them — the LoRA file's own names
(`lora_unet_down_blocks_0_...`), A1111's underscore layer names (`diffusion_model_input_blocks_1_1_...`,
`transformer_text_model_...`, `0_...`/`1_...` for SDXL's encoders) or Forge's parameter names
(`diffusion_model.input_blocks.1.1....weight`, `clip_l.transformer....`) — return r · m for each.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from ..arch.blocks import ARCHITECTURES, SD1, Architecture
from ..arch.flux import FLUX1, FluxArchitecture
from . import flux_strengths
from .keys import TE, TE1, TE2, UNET_C, diffusers_to_compvis, guess_arch, raw_module, unet_block, _DIFFUSERS_START
from .lorafile import split_key
from .presets import DEFAULT_BOOK, PresetBook
from .ratios import BlockRatios, resolve
from .tag import LoraTag

_UNET_PREFIXES = ("model_diffusion_model_", "diffusion_model_", "unet_")
_TE_PREFIXES = (("0_transformer_", TE1), ("1_model_", TE2), ("1_transformer_", TE2),
                ("clip_l_transformer_", TE), ("clip_h_transformer_", TE), ("clip_g_transformer_", TE2),
                ("clip_g_model_", TE2), ("text_encoders_clip_l_transformer_", TE),
                ("text_encoders_clip_g_transformer_", TE2),
                ("conditioner_embedders_0_transformer_", TE1), ("conditioner_embedders_1_model_", TE2),
                ("cond_stage_model_transformer_", TE), ("cond_stage_model_model_", TE), ("transformer_", TE))
_UNET_ANYWHERE = re.compile(
    r"(input_blocks|middle_block|output_blocks|down_blocks|mid_block|up_blocks|time_embed|label_emb)_")


@dataclass(frozen=True)
class ModuleStrength:
    block: str | None  # None: a layer we could not place (it takes the fallback ratio)
    is_te: bool
    strength: float  # r · m


@dataclass(frozen=True)
class Strengths:
    modules: Mapping[str, ModuleStrength]
    unmatched: tuple[str, ...]
    ratios: BlockRatios  # .tag carries the seed used, for the infotext

    def __getitem__(self, name: str) -> float:
        return self.modules[name].strength


def normalise(name: str) -> tuple[str, str] | None:
    """(component, underscore name in the file's or webui's own naming) of any module name."""
    got = split_key(name)
    base = got[0] if got else name
    for suffix in (".weight", ".bias", "_weight", "_bias"):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
            break
    r = raw_module(base)
    if r is not None:
        return r
    s = base.replace(".", "_")
    for p in _UNET_PREFIXES:
        if s.startswith(p):
            return UNET_C, s[len(p):]
    for p, comp in _TE_PREFIXES:
        if s.startswith(p):
            return comp, s[len(p):]
    if "text_model" in s or "resblocks" in s:
        return TE, s
    m = _UNET_ANYWHERE.search(s)
    if m:
        return UNET_C, s[m.start():]
    if s.startswith(_DIFFUSERS_START):
        return UNET_C, s
    return None


def module_strengths(tag: LoraTag, names: Iterable[str], *, arch: Architecture | str | None = None,
                     presets: PresetBook = DEFAULT_BOOK, seed: int | None = None) -> Strengths:
    """r · m for every name; the architecture is guessed from the names when not given."""
    names = list(names)
    if isinstance(arch, str):
        arch = FLUX1 if arch == "flux" else ARCHITECTURES[arch]
    if arch is None and flux_strengths.names_look_flux(names):
        arch = FLUX1
    if isinstance(arch, FluxArchitecture):
        return _flux_strengths(tag, names, arch, presets, seed)
    norm = {n: normalise(n) for n in names}
    if arch is None:
        g = guess_arch(f"lora_{c}_{rest}" for c, rest in filter(None, norm.values()))
        arch = g.arch if g else SD1
    ratios = resolve(tag, arch, presets, seed)
    xl = arch.id == "sdxl"
    out: dict[str, ModuleStrength] = {}
    unmatched = []
    for n in names:
        got = norm[n]
        if got is None:
            unmatched.append(n)
            out[n] = ModuleStrength(None, False, ratios.strength(None, False, (n,)))
            continue
        comp, rest = got
        is_te = comp != UNET_C
        if is_te:
            block, canon = "BASE", rest
        else:
            canon = (diffusers_to_compvis(rest, xl) if rest.startswith(_DIFFUSERS_START) else rest) or rest
            block = unet_block(canon, arch)
            if block is None:
                unmatched.append(n)
        out[n] = ModuleStrength(block, is_te, ratios.strength(block, is_te, (canon, rest)))
    return Strengths(out, tuple(unmatched), ratios)


def _flux_strengths(tag: LoraTag, names: list[str], arch: FluxArchitecture, presets: PresetBook,
                    seed: int | None) -> Strengths:
    """Flux: every name goes to its model weight, which gives the block (CLIP, T5, IN, Dnn, Snn, OUT)
    and the name `lbwe` elements match (`double_blocks_7_img_attn_qkv`)."""
    ratios = resolve(tag, arch, presets, seed)
    out: dict[str, ModuleStrength] = {}
    unmatched = []
    for n in names:
        block, is_te, canon = flux_strengths.place(n, arch)
        if block is None:
            unmatched.append(n)
        out[n] = ModuleStrength(block, is_te, ratios.strength(block, is_te, (canon,)))
    return Strengths(out, tuple(unmatched), ratios)


def active(tag: LoraTag, step: int) -> bool:
    """Whether the LoRA is on at `step`, counted from 1 as the progress bar shows: start=N leaves it
    off for steps 1..N, stop=M turns it off after step M (one rule for A1111 and Forge)."""
    if tag.start is not None and step <= tag.start:
        return False
    if tag.stop is not None and step > tag.stop:
        return False
    return True
