"""LoRA module names -> the model they were made for, the checkpoint key they change, their block.

A module is named canonically as (component, underscore name): the UNet in the checkpoint's own
(compvis) naming, `input_blocks_4_1_transformer_blocks_0_attn1_to_q`, the text encoders in
transformers' naming, `text_model_encoder_layers_0_self_attn_q_proj`. Kohya SD1 files use diffusers
names (`down_blocks_1_attentions_0_...`) and PEFT files dotted ones; both are converted here, and
back again when we write kohya files. SDXL's second text encoder (and SD2's) keep q/k/v stacked in
`attn.in_proj_weight`: a q/k/v module targets one third of its rows.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

from ..arch import layouts
from ..arch.blocks import SD1, SD2, SDXL, UNET, Architecture

UNET_C, TE, TE1, TE2 = "unet", "te", "te1", "te2"
_KOHYA = re.compile(r"(?:lora|lycon|lycoris)_(unet|te1|te2|te)_(.+)")
_RESNET = {"conv1": "in_layers_2", "conv2": "out_layers_3", "time_emb_proj": "emb_layers_1",
           "conv_shortcut": "skip_connection", "norm1": "in_layers_0", "norm2": "out_layers_0"}
_RESNET_BACK = {v: k for k, v in _RESNET.items()}
_SINGLE = {"conv_in": "input_blocks_0_0", "conv_out": "out_2", "conv_norm_out": "out_0",
           "time_embedding_linear_1": "time_embed_0", "time_embedding_linear_2": "time_embed_2",
           "add_embedding_linear_1": "label_emb_0_0", "add_embedding_linear_2": "label_emb_0_2"}
_SINGLE_BACK = {v: k for k, v in _SINGLE.items()}
_DIFFUSERS_START = ("down_blocks_", "mid_block_", "up_blocks_", *_SINGLE)
OPENCLIP_TE = {"self_attn_out_proj": "attn.out_proj", "mlp_fc1": "mlp.c_fc", "mlp_fc2": "mlp.c_proj"}


@dataclass(frozen=True)
class Module:
    component: str  # "unet", "te" (SD1/SD2), "te1", "te2" (SDXL; Flux: CLIP-L, T5-XXL)
    name: str
    # Flux only: a split q/k/v (or proj_mlp) LoRA module changes rows of a fused weight:
    # (first row, rows, rows of the whole weight), in units of the hidden width
    part: tuple[int, int, int] | None = None
    swap: bool = False  # diffusers' norm_out.linear: (scale, shift) is the model's (shift, scale)

    @property
    def is_te(self) -> bool:
        return self.component != UNET_C

    @property
    def base(self) -> "Module":
        """The module of the whole weight (itself unless it is a part)."""
        return Module(self.component, self.name) if self.part is not None or self.swap else self


@dataclass(frozen=True)
class Target:
    key: str  # checkpoint weight key
    bias: str | None  # its bias key, if the checkpoint has one
    part: int | None  # 0/1/2: the q/k/v third of a stacked in_proj_weight
    block: str
    rows: tuple[int, int] | None = None  # Flux: the rows [start, stop) a split module changes
    swap: bool = False  # Flux: the change's two halves are swapped before it is added

    def cut(self, w):
        """The part of the weight (or bias) this target changes: a view, so += lands in `w`."""
        if self.rows is not None:
            return w[self.rows[0]:self.rows[1]]
        if self.part is not None:
            n = w.shape[0] // 3
            return w[self.part * n:(self.part + 1) * n]
        return w


# ---- diffusers <-> compvis UNet names --------------------------------------------------------------

def _resnet_tail(tail: str) -> str:
    for k, v in _RESNET.items():
        if tail == k or tail.startswith(k + "_"):
            return v + tail[len(k):]
    return tail


def diffusers_to_compvis(name: str, xl: bool) -> str | None:
    """`down_blocks_1_attentions_0_...` -> `input_blocks_4_1_...`; None if not a diffusers UNet name."""
    for k, v in _SINGLE.items():
        if name == k or name.startswith(k + "_"):
            return v + name[len(k):]
    m = re.fullmatch(r"down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", name)
    if m:
        b, i, tail = int(m.group(1)), int(m.group(3)), m.group(4)
        if m.group(2) == "attentions":
            return f"input_blocks_{1 + 3 * b + i}_1_{tail}"
        return f"input_blocks_{1 + 3 * b + i}_0_{_resnet_tail(tail)}"
    m = re.fullmatch(r"down_blocks_(\d+)_downsamplers_0_conv(_.*)?", name)
    if m:
        return f"input_blocks_{3 + 3 * int(m.group(1))}_0_op{m.group(2) or ''}"
    m = re.fullmatch(r"mid_block_attentions_0_(.+)", name)
    if m:
        return f"middle_block_1_{m.group(1)}"
    m = re.fullmatch(r"mid_block_resnets_(\d+)_(.+)", name)
    if m:
        return f"middle_block_{2 * int(m.group(1))}_{_resnet_tail(m.group(2))}"
    m = re.fullmatch(r"up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", name)
    if m:
        b, i, tail = int(m.group(1)), int(m.group(3)), m.group(4)
        if m.group(2) == "attentions":
            return f"output_blocks_{3 * b + i}_1_{tail}"
        return f"output_blocks_{3 * b + i}_0_{_resnet_tail(tail)}"
    m = re.fullmatch(r"up_blocks_(\d+)_upsamplers_0_conv(_.*)?", name)
    if m:
        b = int(m.group(1))
        has_attention = b < 2 if xl else b > 0
        return f"output_blocks_{2 + 3 * b}_{2 if has_attention else 1}_conv{m.group(2) or ''}"
    return None


def compvis_to_diffusers(name: str) -> str | None:
    """The inverse, for writing kohya SD1 files; None where diffusers has no name."""
    for k, v in _SINGLE_BACK.items():
        if name == k or name.startswith(k + "_"):
            return v + name[len(k):]
    m = re.fullmatch(r"input_blocks_(\d+)_0_op(_.*)?", name)
    if m and int(m.group(1)) % 3 == 0:
        return f"down_blocks_{int(m.group(1)) // 3 - 1}_downsamplers_0_conv{m.group(2) or ''}"
    m = re.fullmatch(r"input_blocks_(\d+)_([01])_(.+)", name)
    if m and int(m.group(1)) % 3 != 0:
        n = int(m.group(1)) - 1
        kind = "attentions" if m.group(2) == "1" else "resnets"
        tail = m.group(3) if kind == "attentions" else _back(m.group(3))
        return f"down_blocks_{n // 3}_{kind}_{n % 3}_{tail}"
    m = re.fullmatch(r"middle_block_([012])_(.+)", name)
    if m:
        j = int(m.group(1))
        if j == 1:
            return f"mid_block_attentions_0_{m.group(2)}"
        return f"mid_block_resnets_{j // 2}_{_back(m.group(2))}"
    m = re.fullmatch(r"output_blocks_(\d+)_([012])_conv(_.*)?", name)
    if m and m.group(2) != "0":
        return f"up_blocks_{int(m.group(1)) // 3}_upsamplers_0_conv{m.group(3) or ''}"
    m = re.fullmatch(r"output_blocks_(\d+)_([01])_(.+)", name)
    if m:
        n = int(m.group(1))
        kind = "attentions" if m.group(2) == "1" else "resnets"
        tail = m.group(3) if kind == "attentions" else _back(m.group(3))
        return f"up_blocks_{n // 3}_{kind}_{n % 3}_{tail}"
    return None


def _back(tail: str) -> str:
    for k, v in _RESNET_BACK.items():
        if tail == k or tail.startswith(k + "_"):
            return v + tail[len(k):]
    return tail


# ---- raw names -> canonical modules ---------------------------------------------------------------

def raw_module(raw: str) -> tuple[str, str] | None:
    """(component, underscore rest) of a LoRA file's module name, before UNet name conversion."""
    m = _KOHYA.fullmatch(raw)
    if m:
        return m.group(1), m.group(2)
    s = raw
    for p in ("base_model.model.", "base_model."):
        if s.startswith(p):
            s = s[len(p):]
    for prefix, comp in (("unet.", UNET_C), ("text_encoder_2.", TE2), ("text_encoder.", TE)):
        if s.startswith(prefix):
            rest = s[len(prefix):].replace(".processor.", ".")
            if rest.endswith("_lora"):  # old diffusers attention processors: to_q_lora, to_out_lora
                rest = rest[:-5] + (".0" if rest.endswith("to_out_lora") else "")
            return comp, rest.replace(".", "_")
    return None


def canonical(raw: str, xl: bool) -> Module | None:
    got = raw_module(raw)
    if got is None:
        return None
    comp, rest = got
    if comp == UNET_C:
        if rest.startswith(_DIFFUSERS_START):
            conv = diffusers_to_compvis(rest, xl)
            if conv is None:
                return None
            rest = conv
    elif xl and comp == TE:
        comp = TE1
    return Module(comp, rest)


# ---- architecture of a LoRA from its names --------------------------------------------------------

_XL_HINTS = (r"transformer_blocks_[1-9]", r"^output_blocks_[0-2]_1_", r"^label_emb", r"^up_blocks_0_attentions",
             r"^add_embedding", r"^input_blocks_[4-8]_1_transformer_blocks_[1-9]")
_SD_HINTS = (r"^input_blocks_([12]|9|1[01])_", r"^output_blocks_([6-9]|1[01])_1_", r"^down_blocks_0_attentions",
             r"^up_blocks_3_", r"^down_blocks_3_")


@dataclass(frozen=True)
class ArchGuess:
    arch: Architecture
    certain: bool  # False when only the SD1/SD2 family is known
    reason: str


def guess_arch(raws: Iterable[str], shapes: Mapping[str, Sequence[int]] | None = None) -> ArchGuess | None:
    """SDXL vs SD1/SD2 from the module names (te1/te2, block numbers, transformer depth), then SD1 vs
    SD2 from the text encoder's depth and the cross-attention width. None if nothing tells."""
    xl = sd = 0
    te_layers = -1
    for raw in raws:
        got = raw_module(raw)
        if got is None:
            continue
        comp, rest = got
        if comp in (TE1, TE2):
            xl += 1
        elif comp == TE:
            m = re.search(r"encoder_layers_(\d+)_", rest)
            if m:
                te_layers = max(te_layers, int(m.group(1)))
        else:
            xl += any(re.search(h, rest) for h in _XL_HINTS)
            sd += any(re.search(h, rest) for h in _SD_HINTS)
    if xl and xl >= sd:
        return ArchGuess(SDXL, True, "SDXL module names (te1/te2, deep transformer blocks, block numbers)")
    width = _cross_attention_width(shapes or {})
    if width == 2048:
        return ArchGuess(SDXL, True, "2048-wide cross-attention")
    if not sd and te_layers < 0 and width is None:
        return None
    if te_layers >= 12 or width == 1024:
        return ArchGuess(SD2, True, "SD2 text encoder depth / 1024-wide cross-attention")
    if width == 768:
        return ArchGuess(SD1, True, "768-wide cross-attention")
    return ArchGuess(SD1, False, "SD1/SD2 module names")


def _cross_attention_width(shapes: Mapping[str, Sequence[int]]) -> int | None:
    for k, s in shapes.items():
        if ("attn2_to_k" in k or "attn2.to_k" in k) and ("lora_down" in k or "lora_A" in k) and len(s) >= 2:
            return int(s[1])
    return None


# ---- blocks and checkpoint keys ------------------------------------------------------------------

_UB = re.compile(r"(input_blocks|output_blocks)_(\d+)_|(middle_block)_|(time_embed|label_emb)_|(out)_\d")


def unet_block(name: str, arch: Architecture) -> str | None:
    """The block of a compvis-named UNet module; modules outside every block follow the nearest
    (time_embed / label_emb -> IN00, the final norm and conv -> the last OUT block)."""
    m = _UB.match(name)
    if not m:
        return None
    if m.group(1):
        n = int(m.group(2))
        if m.group(1) == "input_blocks":
            return f"IN{n:02d}" if n < arch.n_in else None
        return f"OUT{n:02d}" if n < arch.n_out else None
    if m.group(3):
        return "M00"
    if m.group(4):
        return "IN00"
    return f"OUT{arch.n_out - 1:02d}"


def module_block(module: Module, arch: Architecture) -> str | None:
    return "BASE" if module.is_te else unet_block(module.name, arch)


def kohya_name(module: Module, arch: Architecture) -> str:
    """The name kohya's scripts (and both webuis) use: diffusers-style UNet names for SD1/SD2,
    compvis-style for SDXL."""
    if module.component == UNET_C:
        name = module.name
        if arch is not SDXL:
            name = compvis_to_diffusers(name) or name
        return f"lora_unet_{name}"
    return f"lora_{module.component}_{module.name}"


class KeyIndex:
    """Canonical module -> Target over one checkpoint's keys (or an architecture's full layout)."""

    def __init__(self, arch: Architecture, shapes: Mapping[str, Sequence[int]]):
        self.arch = arch
        self.shapes = {k: tuple(int(x) for x in v) for k, v in shapes.items()}
        self._t: dict[Module, Target] = {}
        for key in self.shapes:
            for module, target in self._entries(key):
                self._t[module] = target

    def _entries(self, key: str) -> Iterator[tuple[Module, Target]]:
        bias = None
        if key.startswith(UNET) and key.endswith(".weight"):
            base = key[len(UNET):-len(".weight")]
            bias = UNET + base + ".bias"
            block = self.arch.block_of(key)
            if block is not None:
                yield Module(UNET_C, base.replace(".", "_")), Target(key, self._has(bias), None, block)
            return
        for prefix, comp in self._hf_prefixes():
            if key.startswith(prefix) and key.endswith(".weight"):
                base = key[len(prefix):-len(".weight")]
                target = Target(key, self._has(prefix + base + ".bias"), None, "BASE")
                yield Module(comp, base.replace(".", "_")), target
                return
        for prefix, comp in self._openclip_prefixes():
            m = re.fullmatch(re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.(.+)", key)
            if not m:
                continue
            layer, rest = m.group(1), m.group(2)
            stem = f"text_model_encoder_layers_{layer}_"
            p = f"{prefix}transformer.resblocks.{layer}."
            if rest == "attn.in_proj_weight":
                bias = self._has(p + "attn.in_proj_bias")
                for i, q in enumerate("qkv"):
                    yield Module(comp, f"{stem}self_attn_{q}_proj"), Target(key, bias, i, "BASE")
            for lora_name, ck in OPENCLIP_TE.items():
                if rest == ck + ".weight":
                    yield Module(comp, stem + lora_name), Target(key, self._has(p + ck + ".bias"), None, "BASE")
            return

    def _has(self, key: str) -> str | None:
        return key if key in self.shapes else None

    def _hf_prefixes(self) -> tuple[tuple[str, str], ...]:
        if self.arch is SDXL:
            return (("conditioner.embedders.0.transformer.", TE1),)
        return (("cond_stage_model.transformer.", TE),)

    def _openclip_prefixes(self) -> tuple[tuple[str, str], ...]:
        if self.arch is SDXL:
            return (("conditioner.embedders.1.model.", TE2),)
        return (("cond_stage_model.model.", TE),)

    def target(self, module: Module) -> Target | None:
        return self._t.get(module)

    def items(self) -> Iterator[tuple[Module, Target]]:
        return iter(self._t.items())

    def shape(self, target: Target) -> tuple[int, ...]:
        """The shape a module's ΔW must have (one third of the rows for a q/k/v part)."""
        s = self.shapes[target.key]
        if target.rows is not None:
            return (target.rows[1] - target.rows[0], *s[1:])
        return (s[0] // 3, *s[1:]) if target.part is not None else s


@functools.lru_cache(maxsize=None)
def layout_index(arch_id: str) -> KeyIndex:
    """Every module a LoRA can name on an architecture, with tiny shapes: enough for the module's
    block, its kernel size and its target key when no checkpoint is at hand."""
    arch = {"sd1": SD1, "sd2": SD2, "sdxl": SDXL}[arch_id]
    return KeyIndex(arch, layouts.checkpoint(arch_id, layouts.TINY, with_vae=False))


def kernel(module: Module, arch: Architecture) -> tuple[int, ...] | None:
    """The trailing kernel dims of the module's weight ((3, 3) for a 3x3 conv, () for a linear)."""
    idx = layout_index(arch.id)
    t = idx.target(module)
    return None if t is None else idx.shape(t)[2:]
