"""Element kinds as data: which part of a layer a checkpoint key is (the columns of `compare`).

A key's kind is the first rule of its family whose pattern is found in the key. The kinds are coarse
on purpose — what a user can act on with elemental merges or block weights:
SD1/SD2/SDXL: attn1 (self-attention; also the text encoders' and the VAE's attention), attn2
(cross-attention), ff (feed-forward / MLP), norm, proj (a transformer's proj_in / proj_out), conv
(resnet, down/upsample and in/out convolutions), emb (time/label/token/position embeddings).
Flux / Chroma: attn, mlp, linear (a single block's fused linear1/linear2), mod (modulation),
norm, emb (the IN embedders, text embeddings), proj (the final layer's linear).
"""
from __future__ import annotations

import re

OTHER = "other"

_SD_RULES: tuple[tuple[str, str], ...] = (
    ("attn1", r"\.attn1\."),
    ("attn2", r"\.attn2\."),
    ("ff", r"\.ff\.|\.mlp\."),
    ("norm", r"(^|\.)(norm\d*|norm_out|ln_\w+|layer_norm\d*|final_layer_norm)\.|\.(in|out)_layers\.0\."
             r"|diffusion_model\.out\.0\."),
    ("attn1", r"\.self_attn\.|resblocks\.\d+\.attn\.|\.attn_\d+\."),
    ("proj", r"\.proj_(in|out)\."),
    ("emb", r"emb_layers|time_embed|label_emb|embedding|text_projection|\.proj$|logit_scale"),
    ("conv", r"\.(in_layers\.2|out_layers\.3|skip_connection|op|conv\w*|nin_shortcut|quant_conv|post_quant_conv)\."
             r"|input_blocks\.0\.0\.|diffusion_model\.out\.2\."),
)

_FLUX_RULES: tuple[tuple[str, str], ...] = (
    ("norm", r"\.norm\.(query|key)_norm\.|layer_norm\d*\.|final_layer_norm\."),
    ("attn", r"_attn\.|\.self_attn\.|\.SelfAttention\."),
    ("mlp", r"_mlp\.|\.mlp\.|\.DenseReluDense\."),
    ("linear", r"single_blocks\.\d+\.linear\d\."),
    ("mod", r"_mod\.|\.modulation\.|adaLN_modulation"),
    ("proj", r"final_layer\.linear\."),
    ("emb", r"(img_in|txt_in|time_in|vector_in|guidance_in|distilled_guidance_layer)\.|embedding|\.shared\."),
)

SD_KINDS = ("attn1", "attn2", "ff", "norm", "proj", "conv", "emb")
FLUX_KINDS = ("attn", "mlp", "linear", "mod", "norm", "proj", "emb")

_COMPILED = {
    "sd": tuple((k, re.compile(p)) for k, p in _SD_RULES),
    "flux": tuple((k, re.compile(p)) for k, p in _FLUX_RULES),
}


def family(arch_id: str) -> str:
    """'flux' for Flux.1 / Chroma (any block counts), else 'sd'."""
    return "flux" if arch_id.startswith(("flux", "chroma")) else "sd"


def kinds_of(arch_id: str) -> tuple[str, ...]:
    """The columns for an architecture, in order (`other` last)."""
    return (*(FLUX_KINDS if family(arch_id) == "flux" else SD_KINDS), OTHER)


def kind_of(key: str, arch_id: str) -> str:
    """The element kind of a checkpoint key (`other` when no rule matches)."""
    for kind, pat in _COMPILED[family(arch_id)]:
        if pat.search(key):
            return kind
    return OTHER
