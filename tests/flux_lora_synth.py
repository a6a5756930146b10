"""Tiny Flux LoRAs written in each real key format from one logical LoRA, independently of lib_merge.lora.

The diffusers -> BFL table below is typed out from the loaders' own mapping, read for behaviour:
Comfy-Org/ComfyUI comfy/utils.py `flux_to_diffusers` @ 09708eae (split to_q/k/v land on rows
[0,H), [H,2H), [2H,3H) of img_attn.qkv / linear1, add_*_proj on txt_attn.qkv, proj_mlp on rows
[3H, 7H) of linear1, norm_out.linear on final_layer.adaLN_modulation.1 with scale/shift swapped) and
comfy/lora.py `model_lora_keys_unet` @ 17358c8f (`lora_unet_<BFL key>`, `diffusion_model.<BFL key>`,
`transformer.<diffusers>`, `lora_transformer_<diffusers with _>` for OneTrainer). kohya's fused file
is built the way kohya-ss/sd-scripts networks/lora_flux.py @ 0087a46e saves a split-trained LoRA:
the downs stacked, the ups block-diagonal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from lib_merge.arch.flux_layouts import FLUX_TINY, checkpoint

U = "model.diffusion_model."
H = FLUX_TINY.hidden
MLP = H * FLUX_TINY.mlp_ratio
IN_PARTS = ("img_in", "txt_in", "time_in", "vector_in", "guidance_in", "distilled_guidance_layer")


def double_table(i: int) -> dict[str, tuple[str, tuple[int, int] | None]]:
    """diffusers module -> (BFL module, rows or None) for double block i."""
    d, t = f"transformer_blocks.{i}.", f"double_blocks.{i}."
    out = {d + "norm1.linear": (t + "img_mod.lin", None), d + "norm1_context.linear": (t + "txt_mod.lin", None),
           d + "attn.to_out.0": (t + "img_attn.proj", None), d + "attn.to_add_out": (t + "txt_attn.proj", None),
           d + "ff.net.0.proj": (t + "img_mlp.0", None), d + "ff.net.2": (t + "img_mlp.2", None),
           d + "ff_context.net.0.proj": (t + "txt_mlp.0", None), d + "ff_context.net.2": (t + "txt_mlp.2", None),
           d + "attn.to_q": (t + "img_attn.qkv", (0, H)), d + "attn.to_k": (t + "img_attn.qkv", (H, 2 * H)),
           d + "attn.to_v": (t + "img_attn.qkv", (2 * H, 3 * H)),
           d + "attn.add_q_proj": (t + "txt_attn.qkv", (0, H)), d + "attn.add_k_proj": (t + "txt_attn.qkv", (H, 2 * H)),
           d + "attn.add_v_proj": (t + "txt_attn.qkv", (2 * H, 3 * H))}
    return out


def single_table(i: int) -> dict[str, tuple[str, tuple[int, int] | None]]:
    d, t = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
    return {d + "attn.to_q": (t + "linear1", (0, H)), d + "attn.to_k": (t + "linear1", (H, 2 * H)),
            d + "attn.to_v": (t + "linear1", (2 * H, 3 * H)), d + "proj_mlp": (t + "linear1", (3 * H, 3 * H + MLP)),
            d + "proj_out": (t + "linear2", None), d + "norm.linear": (t + "modulation.lin", None)}


TOP = {"x_embedder": "img_in", "context_embedder": "txt_in", "proj_out": "final_layer.linear",
       "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
       "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
       "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
       "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
       "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
       "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
       "norm_out.linear": "final_layer.adaLN_modulation.1"}  # swapped halves


def full_table(n_double: int = FLUX_TINY.n_double, n_single: int = FLUX_TINY.n_single):
    t = {k: (v, None) for k, v in TOP.items()}
    for i in range(n_double):
        t.update(double_table(i))
    for i in range(n_single):
        t.update(single_table(i))
    return t


def block(bfl_or_te: str) -> str:
    """The 61-slot block (LBW's BLOCKIDFLUX) of a BFL module path or a text encoder module."""
    if bfl_or_te.startswith("clip:"):
        return "CLIP"
    if bfl_or_te.startswith("t5:"):
        return "T5"
    m = re.match(r"(double|single)_blocks\.(\d+)\.", bfl_or_te)
    if m:
        return ("D" if m.group(1) == "double" else "S") + f"{int(m.group(2)):02d}"
    if bfl_or_te.startswith("final_layer."):
        return "OUT"
    assert bfl_or_te.startswith(IN_PARTS), bfl_or_te
    return "IN"


@dataclass
class Mod:
    diff: str | None  # diffusers name (None for text encoders)
    bfl: str  # BFL module path, or "clip:<hf path>" / "t5:<hf path>"
    rows: tuple[int, int] | None
    down: torch.Tensor
    up: torch.Tensor
    alpha: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]


TE_CLIP = ["text_model.encoder.layers.0.self_attn.q_proj", "text_model.encoder.layers.1.mlp.fc2"]
TE_T5 = ["encoder.block.0.layer.0.SelfAttention.k", "encoder.block.1.layer.1.DenseReluDense.wo"]


def logical(seed: int = 0, rank: int = 2, alpha_is_rank: bool = True, te: bool = True, every: int = 1,
            ckpt_shapes=None) -> list[Mod]:
    """One LoRA over every diffusers-named transformer module (every `every`-th) and a few CLIP/T5 layers."""
    g = torch.Generator().manual_seed(seed)
    shapes = ckpt_shapes or checkpoint(FLUX_TINY, "dev", all_in_one=True)
    mods = []
    for j, (diff, (bfl, rows)) in enumerate(sorted(full_table().items())):
        if j % every:
            continue
        out_f, in_f = shapes[U + bfl + ".weight"]
        if rows is not None:
            out_f = rows[1] - rows[0]
        down = torch.randn(rank, in_f, generator=g)
        up = torch.randn(out_f, rank, generator=g)
        a = float(rank) if alpha_is_rank else float(rank) / 2 + 0.25
        mods.append(Mod(diff, bfl, rows, down, up, a))
    if te:
        for kind, prefix, names in (("clip", "text_encoders.clip_l.transformer.", TE_CLIP),
                                    ("t5", "text_encoders.t5xxl.transformer.", TE_T5)):
            for n in names:
                out_f, in_f = shapes[prefix + n + ".weight"]
                mods.append(Mod(None, f"{kind}:{n}", None, torch.randn(rank, in_f, generator=g),
                                torch.randn(out_f, rank, generator=g), float(rank) if alpha_is_rank else 1.5))
    return mods


def _te_kohya(m: Mod) -> str:
    kind, path = m.bfl.split(":")
    return ("lora_te1_" if kind == "clip" else "lora_te2_") + path.replace(".", "_")


def _swap(t: torch.Tensor) -> torch.Tensor:
    h = t.shape[0] // 2
    return torch.cat([t[h:], t[:h]], 0)


def write(mods: list[Mod], fmt: str) -> dict[str, torch.Tensor]:
    """The LoRA's tensors in one format: kohya, diffusers (PEFT lora_A/lora_B, `transformer.`),
    onetrainer (`lora_transformer_`), bfl (`diffusion_model.<BFL>` fused, lora_A/lora_B)."""
    out: dict[str, torch.Tensor] = {}
    if fmt in ("diffusers", "onetrainer"):
        for m in mods:
            if m.diff is None:
                if fmt == "diffusers":
                    kind, path = m.bfl.split(":")
                    if kind != "clip":
                        continue  # diffusers trainers save CLIP only
                    n = "text_encoder." + path
                    out[n + ".lora_A.weight"], out[n + ".lora_B.weight"] = m.down, m.up
                    out[n + ".alpha"] = torch.tensor(m.alpha)
                else:
                    n = _te_kohya(m)
                    out[n + ".lora_down.weight"], out[n + ".lora_up.weight"] = m.down, m.up
                    out[n + ".alpha"] = torch.tensor(m.alpha)
                continue
            if fmt == "diffusers":
                n = "transformer." + m.diff
                out[n + ".lora_A.weight"], out[n + ".lora_B.weight"] = m.down, m.up
                out[n + ".alpha"] = torch.tensor(m.alpha)
            else:
                n = "lora_transformer_" + m.diff.replace(".", "_")
                out[n + ".lora_down.weight"], out[n + ".lora_up.weight"] = m.down, m.up
                out[n + ".alpha"] = torch.tensor(m.alpha)
        return out
    # fused formats: group the split modules of one BFL weight as sd-scripts saves them
    groups: dict[str, list[Mod]] = {}
    for m in mods:
        groups.setdefault(m.bfl, []).append(m)
    shapes = checkpoint(FLUX_TINY, "dev", all_in_one=True)
    for bfl, ms in groups.items():
        if bfl.startswith(("clip:", "t5:")):
            (m,) = ms
            n = _te_kohya(m)
            out[n + ".lora_down.weight"], out[n + ".lora_up.weight"] = m.down, m.up
            out[n + ".alpha"] = torch.tensor(m.alpha)
            continue
        rows_total = shapes[U + bfl + ".weight"][0]
        # one scale for the fused module: fold each part's alpha/rank into its up, alpha = total rank
        downs = [m.down for m in ms]
        total_rank = sum(m.rank for m in ms)
        up = torch.zeros(rows_total, total_rank)
        c = 0
        for m in ms:
            u = m.up * (m.alpha / m.rank)
            if m.diff == "norm_out.linear":
                u = _swap(u)
            r0, r1 = m.rows if m.rows else (0, rows_total)
            up[r0:r1, c:c + m.rank] = u
            c += m.rank
        down = torch.cat(downs, 0)
        n = ("lora_unet_" + bfl.replace(".", "_")) if fmt == "kohya" else ("diffusion_model." + bfl)
        a, b = (".lora_down.weight", ".lora_up.weight") if fmt == "kohya" else (".lora_A.weight", ".lora_B.weight")
        out[n + a], out[n + b] = down, up
        out[n + ".alpha"] = torch.tensor(float(total_rank))
    return out


def expected(ckpt: dict[str, torch.Tensor], loras, ratios_of) -> dict[str, np.ndarray]:
    """float64 W + Σ mult · ratio(block) · (alpha/rank) · up@down, at the module's rows (swapped
    halves for norm_out.linear). loras: [(mods, te_mult, unet_mult, tag_index)];
    ratios_of(tag_index, block, bfl) -> r."""
    out: dict[str, np.ndarray] = {}
    for mods, te_m, unet_m, i in loras:
        for m in mods:
            if m.bfl.startswith("clip:"):
                key, mult = "text_encoders.clip_l.transformer." + m.bfl[5:] + ".weight", te_m
            elif m.bfl.startswith("t5:"):
                key, mult = "text_encoders.t5xxl.transformer." + m.bfl[3:] + ".weight", te_m
            else:
                key, mult = U + m.bfl + ".weight", unet_m
            w = out.setdefault(key, ckpt[key].double().numpy().copy())
            d = m.up.double().numpy() @ m.down.double().numpy() * (m.alpha / m.rank)
            if m.diff == "norm_out.linear":
                h = d.shape[0] // 2
                d = np.concatenate([d[h:], d[:h]], 0)
            r0, r1 = m.rows if m.rows else (0, w.shape[0])
            w[r0:r1] += mult * ratios_of(i, block(m.bfl), m.bfl) * d
    return out
