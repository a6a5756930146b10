"""Merge LoRAs into one: Σ ratio · r · ΔW per module, lossless by default.

Without a rank, plain LoRA modules are concatenated along the rank (the strengths folded into `up`,
alpha = the total rank), so the merged file's ΔW is exactly the sum; modules of other kinds (LoHa,
LoKr, Tucker LoCon, full) are stored as their summed full difference. With a rank every module's
summed ΔW is re-factorised by a truncated SVD. The output uses kohya names whatever the inputs used.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..arch.blocks import Architecture
from ..errors import ArchitectureError, RecipeError
from ..io.atomic import atomic_write
from ..io.hashing import HashCache
from ..io.safetensors_io import save_tensors
from .bake import element_names, swap_halves
from .flux_index import is_flux, kohya_name as flux_kohya_name
from .common import CancelToken, Progress, check_cancel, check_safetensors_name, out_dtype, provenance
from .keys import Module, kohya_name, layout_index
from .layouts import family
from .lorafile import LoraFile, LoraModule
from .presets import DEFAULT_BOOK, PresetBook
from .ratios import resolve
from .tag import LoraTag

log = logging.getLogger("lib_merge")


@dataclass
class MergeLoraResult:
    output: str
    arch: Architecture
    concatenated: int = 0  # modules stored as concatenated LoRA factors
    full: int = 0  # modules stored as a full difference
    factorised: int = 0  # modules re-factorised by SVD
    skipped: list[str] = field(default_factory=list)  # modules we could not place
    metadata: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class Part:
    lora: LoraFile
    module: LoraModule
    factor: float  # ratio · r (or the TE ratio)


def common_arch(files: Sequence[LoraFile]) -> Architecture:
    guesses = [(lf, lf.guess) for lf in files if lf.guess is not None]
    if not guesses:
        raise ArchitectureError("cannot tell which model the LoRAs were made for from their module names",
                                "check the files are SD1/SD2/SDXL or Flux.1 LoRAs")
    fams = {family(g.arch) for _, g in guesses}
    if len(fams) > 1:
        names = ", ".join(f"{lf.name} ({g.arch.label})" for lf, g in guesses)
        raise ArchitectureError(f"the LoRAs are for different models: {names}", "merge LoRAs of one architecture")
    certain = [g for _, g in guesses if g.certain]
    return (certain or [guesses[0][1]])[0].arch


def merge_loras(loras: Sequence[LoraTag], output: str, *, rank: int | None = None, conv_rank: int | None = None,
                dtype: str = "keep", presets: PresetBook = DEFAULT_BOOK, seed: int | None = None,
                overwrite: bool = False, hash_cache: HashCache | None = None, progress: Progress | None = None,
                cancel: CancelToken | None = None) -> MergeLoraResult:
    t0 = time.monotonic()
    check_safetensors_name(output)
    if rank is not None and rank < 1 or conv_rank is not None and conv_rank < 1:
        raise RecipeError("--rank and --conv-rank must be at least 1", "give e.g. --rank 32")
    if not loras:
        raise RecipeError("no LoRA to merge", "give one or more -l PATH:RATIO")
    target = out_dtype(dtype)
    files = [LoraFile.open(t.name) for t in loras]
    try:
        arch = common_arch(files)
        groups: dict[Module, list[Part]] = {}
        result = MergeLoraResult(output, arch)
        records = []
        for tag, lf in zip(loras, files):
            lf.bind(arch)
            lf.check_supported()
            ratios = resolve(tag, arch, presets, seed)
            records.append({"name": lf.name, **ratios.record()})
            for m in lf.modules.values():
                if m.empty:
                    continue
                if m.module is None or m.block is None:
                    result.skipped.append(f"{lf.name}:{m.raw}")
                    continue
                factor = ratios.strength(m.block, m.module.is_te, element_names(m, arch))
                if factor != 0.0:  # a Flux q/k/v part joins the fused weight's module
                    groups.setdefault(m.module.base, []).append(Part(lf, m, factor))
        if result.skipped:
            log.warning("%d modules of unknown layers were left out (first: %s)", len(result.skipped),
                        result.skipped[0])
        dt = target or files[0].float_dtype()
        tensors: dict[str, torch.Tensor] = {}
        for i, (module, parts) in enumerate(groups.items()):
            check_cancel(cancel)
            name = flux_kohya_name(module) if is_flux(arch) else kohya_name(module, arch)
            if rank is None and _concatenable(parts):
                _concat(name, parts, tensors, dt)
                result.concatenated += 1
            else:
                delta, bias = _summed(module, parts, arch)
                if rank is None:
                    tensors[name + ".diff"] = delta.to(dt)
                    if bias is not None:
                        tensors[name + ".diff_b"] = bias.to(dt)
                    result.full += 1
                else:
                    conv3 = delta.dim() == 4 and delta.shape[2:] != (1, 1)
                    r = (conv_rank or rank) if conv3 else rank
                    _factorise(name, delta, r, tensors, dt)
                    if bias is not None:
                        log.warning("%s: a bias change cannot be stored in a factorised LoRA and is dropped", name)
                    result.factorised += 1
            if progress:
                progress(i + 1, len(groups), "merging LoRAs")
        recipe = {"loras": records, "rank": rank, "conv_rank": conv_rank, "dtype": dtype, "arch": arch.id}
        result.metadata = provenance("lora_merge", recipe, [lf.path for lf in files], hash_cache,
                                     extra={"ss_network_module": "networks.lora"})
        with atomic_write(output, overwrite, inputs=[lf.path for lf in files]) as f:
            save_tensors(f, tensors, result.metadata)
        result.seconds = time.monotonic() - t0
        return result
    finally:
        for lf in files:
            lf.close()


def _placement(p: Part, out_rows: int) -> tuple[int, int, int]:
    """(first row, last row + 1, rows of the whole weight) of a part's change: all of it, or for a
    Flux split module (diffusers to_q, proj_mlp, ...) its rows of the fused weight."""
    part = p.module.module.part if p.module.module else None
    if part is None:
        return 0, out_rows, out_rows
    first, n, whole = part
    h = out_rows // n
    return first * h, (first + n) * h, whole * h


def _concatenable(parts: Sequence[Part]) -> bool:
    shapes = []
    for p in parts:
        if p.module.algo.id != "lora" or "mid" in p.module.params:
            return False
        s = p.lora.shapes(p.module)
        shapes.append((s["down"][1:], _placement(p, s["up"][0])[2], s["up"][2:]))
    return len(set(shapes)) == 1


def _concat(name: str, parts: Sequence[Part], out: dict[str, torch.Tensor], dt: torch.dtype) -> None:
    ups, downs = [], []
    for p in parts:
        t = p.lora.load(p.module)
        down, up = t["down"].float(), t["up"].float()
        scale = float(t["alpha"].float().reshape(-1)[0]) / down.shape[0] if "alpha" in t else 1.0
        up = up * (p.factor * scale)
        if p.module.module is not None and p.module.module.swap:
            up = swap_halves(up)
        first, last, whole = _placement(p, up.shape[0])
        if (first, last) != (0, whole):  # zero rows outside the part, as sd-scripts saves split q/k/v
            padded = up.new_zeros((whole, *up.shape[1:]))
            padded[first:last] = up
            up = padded
        ups.append(up)
        downs.append(down)
    down = torch.cat(downs, 0)
    out[name + ".lora_down.weight"] = down.to(dt)
    out[name + ".lora_up.weight"] = torch.cat(ups, 1).to(dt)
    out[name + ".alpha"] = torch.tensor(float(down.shape[0]), dtype=dt)


def full_shape(module: Module, arch: Architecture, flat: tuple[int, int]) -> tuple[int, ...]:
    """The real shape of a module's ΔW: the layout tells the kernel, the factors tell the widths."""
    idx = layout_index(arch.id)
    t = idx.target(module)
    if t is None:
        return flat
    tiny = idx.shape(t)
    if len(tiny) == 1:
        return (flat[0],)
    k = tiny[2:]
    return (flat[0], flat[1] // math.prod(k), *k)


def _summed(module: Module, parts: Sequence[Part], arch: Architecture) -> tuple[torch.Tensor, torch.Tensor | None]:
    total: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    for p in parts:
        t = p.lora.load(p.module)
        algo = p.module.algo
        if is_flux(arch):  # every Flux layer is a linear: ΔW is (out, in)
            shape = algo.flat_shape(p.lora.shapes(p.module))
        else:
            shape = full_shape(module, arch, algo.flat_shape(p.lora.shapes(p.module)))
        d, scale = algo.delta(t, shape)
        d = d * (p.factor * scale)
        if p.module.module is not None and p.module.module.swap:
            d = swap_halves(d)
        first, last, whole = _placement(p, d.shape[0])
        if (first, last) != (0, whole):
            padded = d.new_zeros((whole, *d.shape[1:]))
            padded[first:last] = d
            d = padded
        total = d if total is None else total + d
        b = algo.bias_delta(t)
        if b is not None:
            b = b * p.factor
            if p.module.module is not None and p.module.module.swap:
                b = swap_halves(b)
            if (first, last) != (0, whole):
                padded = b.new_zeros(whole)
                padded[first:last] = b
                b = padded
            bias = b if bias is None else bias + b
    assert total is not None
    return total, bias


def _factorise(name: str, delta: torch.Tensor, rank: int, out: dict[str, torch.Tensor], dt: torch.dtype) -> None:
    up, down = svd_factors(delta, rank)
    out[name + ".lora_down.weight"] = down.to(dt)
    out[name + ".lora_up.weight"] = up.to(dt)
    out[name + ".alpha"] = torch.tensor(float(down.shape[0]), dtype=dt)


FAST_MIN = 256  # smaller matrices: the full SVD is cheap and exact


def svd_factors(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(up, down) with up @ down the best rank-`rank` approximation of delta (alpha = rank: scale 1).
    Conv weights keep their kernel in `down` and a 1x1 `up`, as kohya's LoCon does."""
    mat = delta.float().reshape(delta.shape[0], -1)
    r = max(1, min(rank, *mat.shape))
    if min(mat.shape) >= FAST_MIN and r * 4 <= min(mat.shape):
        # randomized truncated SVD (Halko et al.): r + 10 directions, 4 power iterations; on a
        # real-size layer it is ~10-50x faster than the full SVD and its rank-r product is as close to
        # the difference as the exact one's to within a fraction of a percent (bench/bench_extract.py).
        # Seeded, so the same inputs give the same file.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            u, s, v = torch.svd_lowrank(mat, q=min(r + 10, min(mat.shape)), niter=4)
        up = u[:, :r] * s[:r]
        down = v[:, :r].T.contiguous()
    else:
        u, s, vh = torch.linalg.svd(mat, full_matrices=False)
        up = u[:, :r] * s[:r]
        down = vh[:r]
    if delta.dim() == 4:
        return up.reshape(*up.shape, 1, 1), down.reshape(r, *delta.shape[1:])
    if delta.dim() == 1:
        raise RecipeError("a 1-d (norm) difference cannot be factorised", "merge without --rank")
    return up, down
