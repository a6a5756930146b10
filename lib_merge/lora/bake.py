"""Bake LoRAs into a checkpoint: W' = W + Σ r · m · scale · ΔW, streamed key by key.

The checkpoint is read one tensor at a time and written straight to a temp file that becomes the
output only when complete (atomic_write); keys no LoRA touches are copied unchanged (byte for byte
when the dtype is kept). Memory stays at one checkpoint tensor plus one LoRA module.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..arch.blocks import Architecture
from ..arch.detect import detect
from ..errors import ArchitectureError
from ..io.atomic import atomic_write
from ..methods.finite import all_finite, check_multiplier, finite_or_stop
from ..io.hashing import HashCache
from ..io.models import open_model
from ..io.safetensors_io import DTYPES, NAMES, SafetensorsWriter
from .common import CancelToken, Progress, check_cancel, check_safetensors_name, out_dtype, provenance
from .flux_index import FluxKeyIndex, is_flux
from .keys import KeyIndex, Target, raw_module
from .lorafile import LoraFile, LoraModule
from .presets import DEFAULT_BOOK, PresetBook
from .ratios import BlockRatios, resolve
from .tag import LoraTag

log = logging.getLogger("lib_merge")


@dataclass(frozen=True)
class Contribution:
    lora: LoraFile
    module: LoraModule
    target: Target
    factor: float  # r · m
    bias: bool  # adds to the bias key (full-difference modules)


@dataclass
class LoraReport:
    name: str
    ratios: BlockRatios
    applied: int = 0
    off: int = 0  # modules whose strength is 0 here
    not_in_model: list[str] = field(default_factory=list)


@dataclass
class BakeResult:
    output: str
    arch: Architecture
    changed_keys: int
    loras: list[LoraReport]
    metadata: dict[str, str]
    seconds: float


def element_names(m: LoraModule, arch=None) -> tuple[str, ...]:
    """The names `lbwe` elements are matched against: the canonical one and the file's own. On Flux
    only the model's own name (`double_blocks_7_img_attn_qkv`), so a split diffusers `attn_to_q` and
    kohya's fused `img_attn_qkv` answer the same elements."""
    names = [m.module.name] if m.module else []
    if is_flux(arch):
        return tuple(names)
    got = raw_module(m.raw)
    if got:
        names.append(got[1])
    return tuple(names)


def plan_lora(lf: LoraFile, ratios: BlockRatios, index: KeyIndex, report: LoraReport
              ) -> list[Contribution]:
    out: list[Contribution] = []
    for m in lf.modules.values():
        if m.empty:
            continue
        target = index.target(m.module) if m.module else None
        if target is None:
            report.not_in_model.append(m.raw)
            continue
        factor = ratios.strength(target.block, m.module.is_te, element_names(m, lf.arch))
        if factor == 0.0:
            report.off += 1
            continue
        report.applied += 1
        out.append(Contribution(lf, m, target, factor, False))
        if target.bias and m.algo.has_bias(m.param_set):
            out.append(Contribution(lf, m, target, factor, True))
    return out


def apply(w: torch.Tensor, contribs: Sequence[Contribution], index: KeyIndex) -> torch.Tensor:
    """w (float32, owned) plus every contribution, in order."""
    for c in contribs:
        t = c.lora.load(c.module)
        if c.bias:
            d, s = c.module.algo.bias_delta(t), c.factor
        else:
            d, scale = c.module.algo.delta(t, index.shape(c.target))
            s = c.factor * scale
        if c.target.swap:
            d = swap_halves(d)
        view = c.target.cut(w)  # the whole weight, or the rows a q/k/v part changes
        view += d * s
    return w


def swap_halves(d: torch.Tensor) -> torch.Tensor:
    """diffusers' norm_out.linear is (scale, shift) where the model's final_layer.adaLN_modulation.1
    is (shift, scale): the same change with its two row halves exchanged."""
    h = d.shape[0] // 2
    return torch.cat([d[h:], d[:h]], 0)


def key_index(arch, shapes) -> KeyIndex | FluxKeyIndex:
    return FluxKeyIndex(arch, shapes) if is_flux(arch) else KeyIndex(arch, shapes)


def bake(model: str, loras: Sequence[LoraTag], output: str, *, dtype: str = "keep",
         presets: PresetBook = DEFAULT_BOOK, seed: int | None = None, overwrite: bool = False,
         hash_cache: HashCache | None = None, progress: Progress | None = None,
         cancel: CancelToken | None = None, allow_extreme: bool = False) -> BakeResult:
    t0 = time.monotonic()
    check_safetensors_name(output)
    target_dtype = out_dtype(dtype)
    src = open_model(model)
    files: list[LoraFile] = []
    try:
        shapes = {k: v.shape for k, v in src.tensors.items()}
        arch = detect(shapes, os.path.basename(model)).arch
        index = key_index(arch, shapes)
        plan: dict[str, list[Contribution]] = {}
        reports: list[LoraReport] = []
        for tag in loras:
            for what, v in (("TE multiplier", tag.te), ("UNET multiplier", tag.unet)):
                check_multiplier(v, f"{os.path.basename(tag.name)}: {what}", allow_extreme)
            if tag.start or tag.stop:
                log.warning("%s: start=/stop= act on sampling steps; a baked checkpoint has no steps, so they are "
                            "ignored (the LoRA is baked at full strength)", os.path.basename(tag.name))
            lf = LoraFile.open(tag.name, arch)
            files.append(lf)
            lf.check_supported()
            ratios = resolve(tag, arch, presets, seed)
            report = LoraReport(lf.name, ratios)
            contribs = plan_lora(lf, ratios, index, report)
            if report.applied + report.off == 0:
                raise ArchitectureError(f"none of the {len(lf.modules)} modules of {lf.name} matches a layer of "
                                        f"{os.path.basename(model)}", "check that the LoRA fits this checkpoint")
            if lf.unknown_keys:
                log.warning("%s: %d keys belong to no LoRA module and are ignored (first: %s)", lf.name,
                            len(lf.unknown_keys), lf.unknown_keys[0])
            if report.not_in_model:
                log.warning("%s: %d modules have no layer in %s (first: %s)", lf.name, len(report.not_in_model),
                            os.path.basename(model), report.not_in_model[0])
            for c in contribs:
                plan.setdefault(c.target.bias if c.bias else c.target.key, []).append(c)
            reports.append(report)
        recipe = {"model": os.path.basename(model), "dtype": dtype, "arch": arch.id,
                  "loras": [{"name": r.name, **r.ratios.record()} for r in reports]}
        meta = provenance("lora_bake", recipe, [model, *(lf.path for lf in files)], hash_cache,
                          {model: src.metadata})
        entries = []
        for k, info in src.tensors.items():
            name = info.dtype
            if target_dtype is not None and info.is_float:
                name = NAMES[target_dtype]
            entries.append((k, name, tuple(info.shape)))
        with atomic_write(output, overwrite, inputs=[model, *(lf.path for lf in files)]) as f:
            writer = SafetensorsWriter(f, entries, meta)
            n = len(entries)
            for i, (key, name, _) in enumerate(entries):
                check_cancel(cancel)
                t = src.get(key)
                if key in plan:
                    ok = all_finite(t)  # before: apply works in place on fp32 tensors
                    t = finite_or_stop(key, apply(t.float(), plan[key], index), [ok])
                if NAMES.get(t.dtype) != name:
                    t = finite_or_stop(key, t.to(DTYPES[name]), [t])
                if t.numel():
                    writer.write(key, t)
                if progress:
                    progress(i + 1, n, "baking")
            writer.finish()
        return BakeResult(output, arch, len(plan), reports, meta, time.monotonic() - t0)
    finally:
        for lf in files:
            lf.close()
        src.close()
