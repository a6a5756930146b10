"""Tiny synthetic checkpoints with the real key names and structure (no downloads, no weights)."""
from __future__ import annotations

import torch

from lib_merge.arch import layouts
from lib_merge.io.safetensors_io import save_tensors


def state_dict(arch: str, seed: int = 0, dtype: torch.dtype = torch.float16, dims: layouts.Dims = layouts.TINY,
               **kw) -> dict[str, torch.Tensor]:
    """{key: tensor} of a full checkpoint with every real key, tiny widths, values from `seed`."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layouts.checkpoint(arch, dims, **kw).items():
        if key.endswith("position_ids"):
            out[key] = torch.arange(shape[-1], dtype=torch.int64).reshape(shape)
        else:
            out[key] = torch.randn(shape, generator=g).to(dtype)
    return out


def write_checkpoint(path, arch: str, seed: int = 0, dtype: torch.dtype = torch.float16, extra=None, **kw):
    sd = state_dict(arch, seed, dtype, **kw)
    if extra:
        sd.update(extra)
    save_tensors(str(path), sd)
    return sd


# ---- LoRA files ---------------------------------------------------------------------------------
# Written independently of lib_merge.lora.keys (from REFERENCE §7's table), so tests of the library's
# name mapping compare two separate implementations.
import math as _math  # noqa: E402
import re as _re  # noqa: E402
from dataclasses import dataclass as _dataclass  # noqa: E402

_P = "model.diffusion_model."
_RES = {"in_layers.2": "conv1", "out_layers.3": "conv2", "emb_layers.1": "time_emb_proj",
        "skip_connection": "conv_shortcut"}


@_dataclass(frozen=True)
class LoraTarget:
    name: str  # the module name as the LoRA file has it (without .lora_down.weight)
    key: str  # the checkpoint key it changes
    part: int | None  # q/k/v third of a stacked in_proj_weight
    shape: tuple  # shape of the change
    bias: str | None = None


def _diffusers_dotted(mod: str, arch: str) -> str | None:
    """compvis `input_blocks.4.1.x` -> diffusers `down_blocks.1.attentions.0.x` (dots kept)."""
    if mod == "input_blocks.0.0":
        return "conv_in"
    if mod == "out.2":
        return "conv_out"
    if mod.startswith("time_embed."):
        return {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2"}[mod]
    if mod.startswith("label_emb."):
        return {"label_emb.0.0": "add_embedding.linear_1", "label_emb.0.2": "add_embedding.linear_2"}[mod]
    m = _re.fullmatch(r"input_blocks\.(\d+)\.0\.op", mod)
    if m:
        return f"down_blocks.{int(m.group(1)) // 3 - 1}.downsamplers.0.conv"
    m = _re.fullmatch(r"input_blocks\.(\d+)\.([01])\.(.+)", mod)
    if m:
        n = int(m.group(1)) - 1
        if m.group(2) == "1":
            return f"down_blocks.{n // 3}.attentions.{n % 3}.{m.group(3)}"
        return f"down_blocks.{n // 3}.resnets.{n % 3}.{_RES[m.group(3)]}"
    m = _re.fullmatch(r"middle_block\.(\d)\.(.+)", mod)
    if m:
        j = int(m.group(1))
        return f"mid_block.attentions.0.{m.group(2)}" if j == 1 else f"mid_block.resnets.{j // 2}.{_RES[m.group(2)]}"
    m = _re.fullmatch(r"output_blocks\.(\d+)\.([12])\.conv", mod)
    if m:
        return f"up_blocks.{int(m.group(1)) // 3}.upsamplers.0.conv"
    m = _re.fullmatch(r"output_blocks\.(\d+)\.([01])\.(.+)", mod)
    if m:
        n = int(m.group(1))
        if m.group(2) == "1":
            return f"up_blocks.{n // 3}.attentions.{n % 3}.{m.group(3)}"
        return f"up_blocks.{n // 3}.resnets.{n % 3}.{_RES[m.group(3)]}"
    return None


_CONV_PARTS = r"\.(in_layers\.2|out_layers\.3|skip_connection|emb_layers\.1|0\.op|conv)$"


def lora_targets(arch: str, *, conv: bool = False, te: bool = True, naming: str = "kohya",
                 unet_style: str | None = None, dims: layouts.Dims = layouts.TINY) -> list[LoraTarget]:
    """Every module a LoRA of this kind has. naming: "kohya" (lora_unet_ / lora_te*_) or "peft"
    (dotted unet. / text_encoder. names). unet_style: "diffusers" (kohya SD1) or "compvis" (kohya SDXL).
    conv adds the resnet / sampler / conv_in / conv_out / time_embed layers (LoCon, LyCORIS)."""
    shapes = layouts.checkpoint(arch, dims, with_vae=False)
    style = unet_style or ("compvis" if arch == "sdxl" else "diffusers")
    if naming == "peft":
        style = "diffusers"
    out: list[LoraTarget] = []
    for key, shape in shapes.items():
        if not key.startswith(_P) or not key.endswith(".weight") or len(shape) < 2:
            continue
        mod = key[len(_P):-len(".weight")]
        attention = ".transformer_blocks." in mod or mod.endswith((".proj_in", ".proj_out"))
        extra = conv and (_re.search(_CONV_PARTS, mod) or mod in ("input_blocks.0.0", "out.2", "time_embed.0",
                                                                    "label_emb.0.0"))
        if not (attention or extra):
            continue
        dotted = _diffusers_dotted(mod, arch) if style == "diffusers" else mod
        bias = key[:-len("weight")] + "bias"
        bias = bias if bias in shapes else None
        if naming == "peft":
            name = "unet." + dotted
        else:
            name = "lora_unet_" + dotted.replace(".", "_")
        out.append(LoraTarget(name, key, None, tuple(shape), bias))
    if not te:
        return out
    hf = {"sd1": [("cond_stage_model.transformer.", "lora_te_", "text_encoder.")],
          "sdxl": [("conditioner.embedders.0.transformer.", "lora_te1_", "text_encoder.")]}.get(arch, [])
    for prefix, kohya, peft in hf:
        for key, shape in shapes.items():
            m = _re.fullmatch(_re.escape(prefix) + r"(text_model\.encoder\.layers\.\d+\.(self_attn\.[qkvout]+_proj|mlp\.fc[12]))\.weight", key)
            if m:
                name = peft + m.group(1) if naming == "peft" else kohya + m.group(1).replace(".", "_")
                out.append(LoraTarget(name, key, None, tuple(shape), key[:-6] + "bias"))
    oc = {"sd2": ("cond_stage_model.model.", "lora_te_", "text_encoder."),
          "sdxl": ("conditioner.embedders.1.model.", "lora_te2_", "text_encoder_2.")}.get(arch)
    if oc:
        prefix, kohya, peft = oc
        layers = sorted({int(m.group(1)) for k in shapes for m in [_re.match(_re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.", k)] if m})
        for i in layers:
            p = f"{prefix}transformer.resblocks.{i}."
            w = shapes[p + "attn.out_proj.weight"][0]
            for name, key, part, shape, bias in (
                    ("self_attn.q_proj", p + "attn.in_proj_weight", 0, (w, w), p + "attn.in_proj_bias"),
                    ("self_attn.k_proj", p + "attn.in_proj_weight", 1, (w, w), p + "attn.in_proj_bias"),
                    ("self_attn.v_proj", p + "attn.in_proj_weight", 2, (w, w), p + "attn.in_proj_bias"),
                    ("self_attn.out_proj", p + "attn.out_proj.weight", None, shapes[p + "attn.out_proj.weight"], p + "attn.out_proj.bias"),
                    ("mlp.fc1", p + "mlp.c_fc.weight", None, shapes[p + "mlp.c_fc.weight"], p + "mlp.c_fc.bias"),
                    ("mlp.fc2", p + "mlp.c_proj.weight", None, shapes[p + "mlp.c_proj.weight"], p + "mlp.c_proj.bias")):
                dotted = f"text_model.encoder.layers.{i}.{name}"
                lname = peft + dotted if naming == "peft" else kohya + dotted.replace(".", "_")
                out.append(LoraTarget(lname, key, part, tuple(shape), bias))
    return out


def _split2(n: int) -> tuple[int, int]:
    a = 2 if n % 2 == 0 else 1
    return a, n // a


def make_lora(arch: str, algo: str = "lora", *, seed: int = 0, rank: int = 2, alpha: float | None = 1.0,
              dtype: torch.dtype = torch.float32, conv: bool = False, te: bool = True, naming: str = "kohya",
              unet_style: str | None = None, select=None) -> tuple[dict[str, torch.Tensor], list[LoraTarget]]:
    """({file key: tensor}, targets) of a LoRA whose modules fit the tiny checkpoint of `arch`.
    algo: "lora" (conv layers get a 3x3 down / 1x1 up, i.e. LoCon), "loha", "lokr", "full".
    `select(target) -> bool` keeps a subset."""
    g = torch.Generator().manual_seed(seed)
    targets = [t for t in lora_targets(arch, conv=conv, te=te, naming=naming, unet_style=unet_style)
               if select is None or select(t)]
    sd: dict[str, torch.Tensor] = {}

    def rnd(*shape):
        return (torch.randn(shape, generator=g) * 0.5).to(dtype)

    peft = naming == "peft"
    for t in targets:
        out_f, in_f, k = t.shape[0], t.shape[1], tuple(t.shape[2:])
        n = t.name
        if algo == "lora":
            sd[n + (".lora_A.weight" if peft else ".lora_down.weight")] = rnd(rank, in_f, *k)
            sd[n + (".lora_B.weight" if peft else ".lora_up.weight")] = rnd(out_f, rank, *((1, 1) if k else ()))
        elif algo == "loha":
            flat = in_f * _math.prod(k)
            sd[n + ".hada_w1_a"], sd[n + ".hada_w1_b"] = rnd(out_f, rank), rnd(rank, flat)
            sd[n + ".hada_w2_a"], sd[n + ".hada_w2_b"] = rnd(out_f, rank), rnd(rank, flat)
        elif algo == "lokr":
            o1, o2 = _split2(out_f)
            i1, i2 = _split2(in_f * _math.prod(k))
            sd[n + ".lokr_w1"] = rnd(o1, i1)
            sd[n + ".lokr_w2_a"], sd[n + ".lokr_w2_b"] = rnd(o2, rank), rnd(rank, i2)
        elif algo == "full":
            sd[n + ".diff"] = rnd(*t.shape)
            if t.bias is not None and t.part is None:
                sd[n + ".diff_b"] = rnd(out_f)
        else:
            raise ValueError(algo)
        if alpha is not None and algo != "full" and not peft:
            sd[n + ".alpha"] = torch.tensor(float(alpha), dtype=dtype)
    return sd, targets


def write_lora(path, arch: str, algo: str = "lora", **kw) -> tuple[dict[str, torch.Tensor], list[LoraTarget]]:
    sd, targets = make_lora(arch, algo, **kw)
    save_tensors(str(path), sd)
    return sd, targets
