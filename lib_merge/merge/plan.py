"""Turn a recipe and the inputs' headers into a per-key plan, before any tensor is read.

Order per key (REFERENCE §2): find block -> include/exclude -> MBW value -> elemental override ->
calc (the method) -> adjust. Every user mistake is found here, so a bad recipe fails in a second
and never leaves a half-written file.
"""
from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field

from . import adjust as adjust_mod
from ..arch import Architecture, Component, ModelInfo, detect
from .elemental import Elemental, Selection, element_text, parse_elemental, parse_selection
from ..errors import ArchitectureError, ParseError, RecipeError, suggest
from ..io.safetensors_io import TensorInfo
from ..methods import MergeMethod, Weights, resolve
from .presets import PresetBook
from .recipe import Recipe, check_weight
from .scaled import ScaledLayout, scaled_layout
from .weights import BlockWeights, RandomSpec, is_random, parse_block_weights, uses_random

OUT_DTYPES = {"fp16": "F16", "bf16": "BF16", "fp32": "F32", "fp8_e4m3fn": "F8_E4M3", "fp8_e5m2": "F8_E5M2"}
SLOTS = ("A", "B", "C")


USES_BETA = {"triple_sum", "sum_twice", "extract", "tensor", "tensor2"}
USES_GAMMA = {"extract"}


@dataclass(frozen=True)
class KeyPlan:
    key: str
    shape: tuple[int, ...]
    out_dtype: str  # safetensors dtype name of the output tensor
    merge: bool  # False: copy A (cast to out_dtype)
    weights: Weights | None = None
    channels: int | None = None  # merge only the first N input channels (dim 1), keep A's others
    adjust: bool = False
    block: str | None = None
    scales: tuple[str | None, ...] = ()  # fp8 scaled inputs: each source's scale key of this weight (scaled.py)
    rescale: bool = False  # write this weight fp8 with a new per-tensor scale
    scale_for: str | None = None  # this key is the (new) scale of that weight


@dataclass
class MergePlan:
    recipe: Recipe  # as given, with the seed filled in when random tokens needed one
    method: MergeMethod
    arch: Architecture
    infos: list[ModelInfo]
    headers: list[dict[str, TensorInfo]]
    metadata: list[dict[str, str]]
    keys: list[KeyPlan]
    alpha_blocks: BlockWeights | None
    beta_blocks: BlockWeights | None
    adjust: adjust_mod.Adjust | None
    notes: list[str] = field(default_factory=list)
    scaled: list[ScaledLayout | None] = field(default_factory=list)  # per used input

    @property
    def n_merged(self) -> int:
        return sum(k.merge for k in self.keys)

    def recorded(self) -> dict:
        """The recipe as it goes into the file: model names, presets expanded, resolved weights."""
        r = self.recipe.replace(
            models=tuple(os.path.basename(p) for p in self.recipe.models),
            alpha=self.recipe.effective_alpha,
            mode=self.method.mode if self.method.mode != "self" else self.recipe.mode,
            alpha_blocks=self.alpha_blocks.text if self.alpha_blocks else "",
            beta_blocks=self.beta_blocks.text if self.beta_blocks else "",
        )
        d = r.to_dict()
        if self.method.id not in USES_BETA:  # unused settings are not recorded (they would mislead)
            d.pop("beta", None)
            d.pop("beta_blocks", None)
        if self.method.id not in USES_GAMMA:
            d.pop("gamma", None)
        d["method"] = self.method.id
        d["architecture"] = self.arch.id
        if self.alpha_blocks:
            d["alpha_values"] = dict(zip(self.arch.blocks, self.alpha_blocks.values))
        if self.beta_blocks:
            d["beta_values"] = dict(zip(self.arch.blocks, self.beta_blocks.values))
        return d


def _check_models(recipe: Recipe, method: MergeMethod) -> None:
    n = len(recipe.models)
    need = method.n_models
    if n < need:
        missing = SLOTS[n:need]
        raise RecipeError(f"{method.id} needs {need} models ({', '.join(SLOTS[:need])}) but {n} "
                          f"{'was' if n == 1 else 'were'} given", f"add model {' and '.join(missing)}")
    if n > need:
        raise RecipeError(f"{method.id} uses {need} model{'s' if need > 1 else ''} "
                          f"({', '.join(SLOTS[:need])}) but {n} were given",
                          f"drop model {', '.join(SLOTS[need:n])} or pick a mode that uses it")


def _check_elements(parts: list[tuple[str, str]], keys: list[str]) -> None:
    """Every key part the user named must occur in some key: a typo must not silently match nothing."""
    texts = [element_text(k) for k in keys]
    vocab = sorted({p for k in texts for p in k.split(".") if p and not p.isdigit()})
    for where, part in parts:
        if not any(part in k for k in texts):
            raise ParseError(f"{where}: key part {part!r} matches no key of model A{suggest(part, vocab)}",
                             "use a piece of a key name such as attn1, attn2, ff, norm1, proj_in, in_layers")


def build_plan(recipe: Recipe, headers: list[dict[str, TensorInfo]], metadata: list[dict[str, str]] | None = None,
               presets: PresetBook | None = None) -> MergePlan:
    method = resolve(recipe.mode, recipe.calc)
    _check_models(recipe, method)
    names = [os.path.basename(p) for p in recipe.models]
    infos = [detect({k: v.shape for k, v in h.items()}, n) for h, n in zip(headers, names)]
    arch = infos[0].arch
    for info, name in zip(infos[1:], names[1:]):
        if info.arch.id != arch.id:
            raise ArchitectureError(f"cannot merge {info.arch.label} model {name} into {arch.label} model {names[0]}",
                                    "merge models of the same architecture")
    presets = presets or PresetBook.from_file(recipe.presets_file or None)

    if recipe.seed is None and (uses_random(recipe.alpha_blocks, presets) or uses_random(recipe.beta_blocks, presets)
                                or re.search(r":\s*[RUXrux]\s*(,|\n|$)", recipe.elemental or "")):
        recipe = recipe.replace(seed=random.SystemRandom().randrange(2 ** 31))
    randoms = RandomSpec(recipe.seed, *recipe.x_range) if recipe.seed is not None else None
    alpha = recipe.effective_alpha
    ab = parse_block_weights(recipe.alpha_blocks, arch, base_default=alpha, presets=presets, randoms=randoms,
                             what="--alpha-blocks") if recipe.alpha_blocks.strip() else None
    bb = parse_block_weights(recipe.beta_blocks, arch, base_default=recipe.beta, presets=presets, randoms=randoms,
                             what="--beta-blocks") if recipe.beta_blocks.strip() else None
    for bw, what in ((ab, "--alpha-blocks"), (bb, "--beta-blocks")):
        if bw is not None:
            for block, v in zip(arch.blocks, bw.values):
                check_weight(v, f"{what} {block}", recipe.allow_extreme)
    rules = parse_elemental(recipe.elemental, arch)
    for rule in rules:
        if not is_random(rule.ratio):
            check_weight(float(rule.ratio), f"{rule.where} ratio", recipe.allow_extreme)
    elemental = Elemental(rules, randoms)
    if recipe.include.strip() and recipe.exclude.strip():
        raise RecipeError("--include and --exclude were both given", "use one of them")
    sel: Selection | None = None
    including = bool(recipe.include.strip())
    if including or recipe.exclude.strip():
        sel = parse_selection(recipe.include if including else recipe.exclude, arch,
                              "--include" if including else "--exclude")
    adj = adjust_mod.parse_adjust(recipe.adjust) if recipe.adjust.strip() else None
    if adj is not None and adj.is_identity():
        adj = None
    if adj is not None and (sel is not None and not including and sel.adjust):
        adj = None  # ADJUST excluded

    a_keys = list(headers[0])
    parts = [(r.where, e) for r in rules for e in r.elements]
    if sel:
        parts += [("--include" if including else "--exclude", e) for e in sel.elements]
    _check_elements(parts, a_keys)

    # the cosine modes leave the VAE as A (REFERENCE §2) whatever the VAE switches say
    merge_vae = (recipe.merge_vae or bool(sel and including and sel.vae)) and not method.needs_stats
    out_dtype = OUT_DTYPES.get(recipe.dtype)
    used = headers[:method.n_models]
    scaled = [scaled_layout(h, n) for h, n in zip(used, names)]
    out_scaled = _scaled_output(scaled[0], out_dtype, names[0])
    plans: list[KeyPlan] = []
    notes: list[str] = []
    for key, ia in headers[0].items():
        comp = arch.component(key)
        if recipe.prune and comp is Component.OTHER:
            continue
        if scaled[0] and (key in scaled[0].extras or key in scaled[0].scale_keys):
            if out_scaled:  # markers and input scales as A has them; weight scales are written after their weight
                plans.append(KeyPlan(key, ia.shape, ia.dtype, False, block=None,
                                     scale_for=next((w for w, s in scaled[0].scale_of.items() if s == key), None)))
            continue  # a plain output has no scale keys
        scales = tuple(lay.scale_of.get(key) if lay else None for lay in scaled) if any(scaled) else ()
        if scales and not any(scales):
            scales = ()
        if scales and scales[0] and out_scaled:
            dtype = ia.dtype  # fp8, written with its scale
        else:
            dtype = out_dtype if (out_dtype and ia.is_float) else ia.dtype
        block = arch.block_of(key)
        is_adj_key = key in adjust_mod.KEYS
        adjusted = adj is not None and is_adj_key
        # a key that is not merged is A's bit for bit: adjust (REFERENCE §4, §5) does not touch it either
        keep = KeyPlan(key, ia.shape, dtype, False, block=block, scales=scales[:1])
        if block is None or not ia.is_float or not merged_by_name(key, arch) or (comp is Component.VAE and not merge_vae):
            plans.append(keep)
            continue
        if sel is not None:
            hit = sel.matches(key, block, comp is Component.VAE, is_adj_key)
            if hit != including:
                plans.append(keep)
                continue
        others = [h.get(key) for h in used[1:]]
        if any(o is None or not o.is_float for o in others):
            plans.append(keep)
            continue
        channels = _channels(key, ia, others, names)
        a = ab.values[arch.block_index[block]] if ab else alpha
        b = bb.values[arch.block_index[block]] if bb else recipe.beta
        e = elemental.ratio(key, block)
        if e is not None:
            a = e
        if method.id == "self" and (a == 0 or any(s in key for s in ("to_out", "proj_out", "norm"))):
            plans.append(keep)
            continue
        plans.append(KeyPlan(key, ia.shape, dtype, True, Weights(a, b, recipe.gamma), channels, adjusted, block,
                             scales, rescale=bool(out_scaled and scales and scales[0])))
    for i, h in enumerate(used[1:], 1):
        extra = sum(1 for k in h if k not in headers[0])
        if extra:
            notes.append(f"{extra} keys only in model {SLOTS[i]} were left out (the output has A's keys)")
    if out_scaled:
        plans = _scales_after_weights(plans)
        notes.append(f"model A is {scaled[0].label}: merged weights get new per-tensor scales (amax / fp8 max)")
    elif scaled[0]:
        notes.append(f"model A is {scaled[0].label}: written de-scaled as {recipe.dtype}, without scale keys")
    return MergePlan(recipe, method, arch, infos, headers, metadata or [{} for _ in headers], plans, ab, bb, adj, notes,
                     scaled)


def _scaled_output(layout: ScaledLayout | None, out_dtype: str | None, name: str) -> bool:
    """Whether the output is fp8 scaled: model A is, and the output keeps A's fp8 type."""
    if layout is None:
        return False
    if out_dtype is None or out_dtype == layout.fp8:
        return True
    if out_dtype.startswith("F8"):
        want = "fp8_e4m3fn" if layout.fp8 == "F8_E4M3" else "fp8_e5m2"
        raise RecipeError(f"model A {name} is {layout.label}; its scaled output keeps that fp8 type",
                          f"use --dtype keep or {want} (scaled), or bf16/fp16/fp32 (de-scaled)")
    return False


def _scales_after_weights(plans: list[KeyPlan]) -> list[KeyPlan]:
    """Each weight's scale right after the weight: the scale is known once the weight is computed."""
    scale_plans = {p.scale_for: p for p in plans if p.scale_for}
    out: list[KeyPlan] = []
    for p in plans:
        if p.scale_for:
            continue
        out.append(p)
        if p.key in scale_plans:
            out.append(scale_plans.pop(p.key))
    return out + list(scale_plans.values())


def merged_by_name(key: str, arch=None) -> bool:
    """The incumbent merges only keys named like weights or biases (anywhere in the name), so
    `position_ids` and the OpenCLIP encoders' `logit_scale`, `positional_embedding` and
    `text_projection` stay A's in every mode (REFERENCE §2)."""
    if getattr(arch, "n_double", None) is not None and key.endswith(".scale"):
        return True  # Flux's learned RMSNorm scales (query_norm/key_norm) are weights by another name
    return "weight" in key or "bias" in key


def _channels(key: str, ia: TensorInfo, others: list[TensorInfo], names: list[str]) -> int | None:
    """Shapes must match, except the UNet's first conv of inpainting / pix2pix models (REFERENCE §6)."""
    mismatch = [(n, o) for n, o in zip(names[1:], others) if o.shape != ia.shape]
    if not mismatch:
        return None
    if key.endswith("diffusion_model.input_blocks.0.0.weight") and all(
            len(o.shape) == 4 and o.shape[0] == ia.shape[0] and o.shape[2:] == ia.shape[2:] for _, o in mismatch):
        return min([ia.shape[1]] + [o.shape[1] for o in others])
    n, o = mismatch[0]
    raise ArchitectureError(f"{key} has shape {list(ia.shape)} in {names[0]} but {list(o.shape)} in {n}",
                            "these models do not have the same structure; merge models of the same kind")
