"""Every key name and shape of Flux.1 dev / schnell (and Chroma's transformer) checkpoints, as data.

`FluxDims()` gives the real sizes (hidden 3072, 24 heads of 128, 19 double + 38 single blocks,
T5-XXL 4096 wide, CLIP-L 768), `FLUX_TINY` the same key set with every width shrunk, so the tests and
the benchmark write files with exactly the real names. Layouts: transformer-only (BFL's
`flux1-dev.safetensors`, bare `double_blocks.*`) and all-in-one (Forge/Comfy: the transformer under
`model.diffusion_model.`, plus `text_encoders.clip_l.transformer.*`, `text_encoders.t5xxl.transformer.*`
and the 16-channel autoencoder under `vae.`). Counts at real size: 780 transformer tensors (776 for
schnell, no guidance_in), 196 CLIP-L, 219 T5-XXL, 244 VAE.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .blocks import UNET
from .layouts import TINY, Dims, clip_l, vae

Shape = tuple[int, ...]


@dataclass(frozen=True)
class FluxDims:
    hidden: int = 3072
    head_dim: int = 128
    mlp_ratio: int = 4
    n_double: int = 19
    n_single: int = 38
    in_channels: int = 64  # 16 latent channels x 2x2 patches
    context: int = 4096  # T5-XXL width
    vec: int = 768  # CLIP-L pooled width
    time_dim: int = 256
    t5_width: int = 4096
    t5_ff: int = 10240
    t5_layers: int = 24
    t5_vocab: int = 32128
    t5_heads: int = 64
    t5_buckets: int = 32
    clip: Dims = Dims()
    approx_dim: int = 64  # Chroma's distilled guidance layer width (unverified real value: 5120)
    approx_layers: int = 5


FLUX_REAL = FluxDims()
FLUX_TINY = FluxDims(hidden=16, head_dim=4, n_double=3, n_single=4, in_channels=8, context=12, vec=8,
                     time_dim=6, t5_width=8, t5_ff=12, t5_layers=2, t5_vocab=10, t5_heads=2, t5_buckets=4,
                     clip=TINY, approx_dim=8, approx_layers=2)


def _lin(d: dict, p: str, out: int, inp: int) -> None:
    d[p + "weight"] = (out, inp)
    d[p + "bias"] = (out,)


def transformer(dims: FluxDims = FLUX_REAL, variant: str = "dev", prefix: str = "") -> dict[str, Shape]:
    """The diffusion transformer; variant "dev" (with guidance_in), "schnell" or "chroma"."""
    h, hd, mlp = dims.hidden, dims.head_dim, dims.hidden * dims.mlp_ratio
    d: dict[str, Shape] = {}
    chroma = variant == "chroma"
    _lin(d, prefix + "img_in.", h, dims.in_channels)
    _lin(d, prefix + "txt_in.", h, dims.context)
    if not chroma:
        _lin(d, prefix + "time_in.in_layer.", h, dims.time_dim)
        _lin(d, prefix + "time_in.out_layer.", h, h)
        _lin(d, prefix + "vector_in.in_layer.", h, dims.vec)
        _lin(d, prefix + "vector_in.out_layer.", h, h)
    if variant == "dev":
        _lin(d, prefix + "guidance_in.in_layer.", h, dims.time_dim)
        _lin(d, prefix + "guidance_in.out_layer.", h, h)
    for i in range(dims.n_double):
        for s in ("img", "txt"):
            p = f"{prefix}double_blocks.{i}.{s}_"
            if not chroma:
                _lin(d, p + "mod.lin.", 6 * h, h)
            _lin(d, p + "attn.qkv.", 3 * h, h)
            d[p + "attn.norm.query_norm.scale"] = (hd,)
            d[p + "attn.norm.key_norm.scale"] = (hd,)
            _lin(d, p + "attn.proj.", h, h)
            _lin(d, p + "mlp.0.", mlp, h)
            _lin(d, p + "mlp.2.", h, mlp)
    for i in range(dims.n_single):
        p = f"{prefix}single_blocks.{i}."
        _lin(d, p + "linear1.", 3 * h + mlp, h)
        _lin(d, p + "linear2.", h, h + mlp)
        d[p + "norm.query_norm.scale"] = (hd,)
        d[p + "norm.key_norm.scale"] = (hd,)
        if not chroma:
            _lin(d, p + "modulation.lin.", 3 * h, h)
    _lin(d, prefix + "final_layer.linear.", dims.in_channels, h)
    if not chroma:
        _lin(d, prefix + "final_layer.adaLN_modulation.1.", 2 * h, h)
    else:
        g, a = prefix + "distilled_guidance_layer.", dims.approx_dim
        _lin(d, g + "in_proj.", a, 64 if dims is FLUX_REAL else dims.time_dim)
        for j in range(dims.approx_layers):
            _lin(d, f"{g}layers.{j}.in_layer.", a, a)
            _lin(d, f"{g}layers.{j}.out_layer.", a, a)
            d[f"{g}norms.{j}.scale"] = (a,)
        _lin(d, g + "out_proj.", h, a)
    return d


def t5xxl(dims: FluxDims, prefix: str) -> dict[str, Shape]:
    """T5 v1.1 XXL encoder in transformers' naming (no tied `encoder.embed_tokens`)."""
    w, ff, p = dims.t5_width, dims.t5_ff, prefix + "transformer."
    d: dict[str, Shape] = {p + "shared.weight": (dims.t5_vocab, w)}
    for i in range(dims.t5_layers):
        q = f"{p}encoder.block.{i}.layer."
        for n in "qkvo":
            d[f"{q}0.SelfAttention.{n}.weight"] = (w, w)
        if i == 0:
            d[q + "0.SelfAttention.relative_attention_bias.weight"] = (dims.t5_buckets, dims.t5_heads)
        d[q + "0.layer_norm.weight"] = (w,)
        d[q + "1.DenseReluDense.wi_0.weight"] = (ff, w)
        d[q + "1.DenseReluDense.wi_1.weight"] = (ff, w)
        d[q + "1.DenseReluDense.wo.weight"] = (w, ff)
        d[q + "1.layer_norm.weight"] = (w,)
    d[p + "encoder.final_layer_norm.weight"] = (w,)
    return d


def flux_vae(dims: FluxDims) -> dict[str, Shape]:
    """The 16-channel Flux autoencoder: SD's KL layout under `vae.`, z=16, no quant convs."""
    out: dict[str, Shape] = {}
    for k, s in vae(dims.clip).items():
        k = "vae." + k[len("first_stage_model."):]
        if "quant_conv" in k:
            continue
        if k == "vae.encoder.conv_out.weight":
            s = (32, *s[1:])
        elif k == "vae.encoder.conv_out.bias":
            s = (32,)
        elif k == "vae.decoder.conv_in.weight":
            s = (s[0], 16, *s[2:])
        out[k] = s
    return out


def checkpoint(dims: FluxDims = FLUX_REAL, variant: str = "dev", all_in_one: bool = False) -> dict[str, Shape]:
    """A transformer-only file (bare keys) or an all-in-one file (prefixed, with encoders and VAE)."""
    if not all_in_one:
        return transformer(dims, variant)
    d = transformer(dims, variant, UNET)
    clip = {k: s for k, s in clip_l(dims.clip, "text_encoders.clip_l.").items() if "position_ids" not in k}
    d.update(clip)
    d.update(t5xxl(dims, "text_encoders.t5xxl."))
    d.update(flux_vae(dims))
    return d


def tiny_flux(**kw) -> FluxDims:
    return replace(FLUX_TINY, **kw)
