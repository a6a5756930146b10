"""The real key names and shapes of SD1.5, SD2, SDXL (and pruned SDXL) checkpoints, as data.

Built from the networks' configurations, so the benchmark can write real-size files and the tests
tiny ones with exactly the same keys: `dims=REAL` gives the true shapes, `dims=TINY` the same
structure with every width shrunk.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Dims:
    """Widths of every network. TINY keeps the structure, shrinks the numbers."""
    unet_ch: int = 320
    clip_l: int = 768
    clip_h: int = 1024  # SD2's OpenCLIP ViT-H
    clip_g: int = 1280  # SDXL's OpenCLIP ViT-bigG
    vocab: int = 49408
    ctx_len: int = 77
    vae_ch: int = 128
    adm: int = 2816


REAL = Dims()
TINY = Dims(unet_ch=8, clip_l=8, clip_h=8, clip_g=16, vocab=10, ctx_len=6, vae_ch=4, adm=12)

# transformer depth per SDXL block; SSD-1B per REFERENCE §9
SDXL_DEPTHS = {"in": (0, 0, 2, 2, 10, 10), "mid": 10, "out": (10, 10, 10, 2, 2, 2, 0, 0, 0)}
SSD1B_DEPTHS = {"in": (0, 0, 2, 2, 4, 4), "mid": 0, "out": (4, 4, 10, 2, 1, 1, 0, 0, 0)}


def _res(d: dict, p: str, cin: int, cout: int, temb: int) -> None:
    d[p + "in_layers.0.weight"] = (cin,)
    d[p + "in_layers.0.bias"] = (cin,)
    d[p + "in_layers.2.weight"] = (cout, cin, 3, 3)
    d[p + "in_layers.2.bias"] = (cout,)
    d[p + "emb_layers.1.weight"] = (cout, temb)
    d[p + "emb_layers.1.bias"] = (cout,)
    d[p + "out_layers.0.weight"] = (cout,)
    d[p + "out_layers.0.bias"] = (cout,)
    d[p + "out_layers.3.weight"] = (cout, cout, 3, 3)
    d[p + "out_layers.3.bias"] = (cout,)
    if cin != cout:
        d[p + "skip_connection.weight"] = (cout, cin, 1, 1)
        d[p + "skip_connection.bias"] = (cout,)


def _attn(d: dict, p: str, c: int, kv: int) -> None:
    d[p + "to_q.weight"] = (c, c)
    d[p + "to_k.weight"] = (c, kv)
    d[p + "to_v.weight"] = (c, kv)
    d[p + "to_out.0.weight"] = (c, c)
    d[p + "to_out.0.bias"] = (c,)


def _transformer(d: dict, p: str, c: int, depth: int, ctx: int, linear: bool) -> None:
    proj = (c, c) if linear else (c, c, 1, 1)
    d[p + "norm.weight"] = (c,)
    d[p + "norm.bias"] = (c,)
    d[p + "proj_in.weight"] = proj
    d[p + "proj_in.bias"] = (c,)
    for i in range(depth):
        t = f"{p}transformer_blocks.{i}."
        _attn(d, t + "attn1.", c, c)
        d[t + "ff.net.0.proj.weight"] = (8 * c, c)
        d[t + "ff.net.0.proj.bias"] = (8 * c,)
        d[t + "ff.net.2.weight"] = (c, 4 * c)
        d[t + "ff.net.2.bias"] = (c,)
        _attn(d, t + "attn2.", c, ctx)
        for n in (1, 2, 3):
            d[f"{t}norm{n}.weight"] = (c,)
            d[f"{t}norm{n}.bias"] = (c,)
    d[p + "proj_out.weight"] = proj
    d[p + "proj_out.bias"] = (c,)


def unet(dims: Dims, arch: str, in_channels: int = 4, depths: dict | None = None) -> dict[str, Shape]:
    """UNet keys (with the `model.diffusion_model.` prefix) of the ldm/sgm layout."""
    ch = dims.unet_ch
    temb = 4 * ch
    if arch == "sdxl":
        mult, ctx, linear = (1, 2, 4), dims.clip_l + dims.clip_g, True
        depths = depths or SDXL_DEPTHS
    else:
        mult = (1, 2, 4, 4)
        ctx, linear = (dims.clip_l, False) if arch == "sd1" else (dims.clip_h, True)
        depths = depths or {"in": (1, 1, 1, 1, 1, 1, 0, 0), "mid": 1, "out": (0, 0, 0) + (1,) * 9}
    d: dict[str, Shape] = {}
    P = "model.diffusion_model."
    d[P + "time_embed.0.weight"] = (temb, ch)
    d[P + "time_embed.0.bias"] = (temb,)
    d[P + "time_embed.2.weight"] = (temb, temb)
    d[P + "time_embed.2.bias"] = (temb,)
    if arch == "sdxl":
        d[P + "label_emb.0.0.weight"] = (temb, dims.adm)
        d[P + "label_emb.0.0.bias"] = (temb,)
        d[P + "label_emb.0.2.weight"] = (temb, temb)
        d[P + "label_emb.0.2.bias"] = (temb,)
    d[P + "input_blocks.0.0.weight"] = (ch, in_channels, 3, 3)
    d[P + "input_blocks.0.0.bias"] = (ch,)
    skips, cur, idx, res_i = [ch], ch, 1, 0
    for level, m in enumerate(mult):
        for _ in range(2):
            out = ch * m
            _res(d, f"{P}input_blocks.{idx}.0.", cur, out, temb)
            cur = out
            depth = depths["in"][res_i]
            if depth:
                _transformer(d, f"{P}input_blocks.{idx}.1.", cur, depth, ctx, linear)
            skips.append(cur)
            idx += 1
            res_i += 1
        if level != len(mult) - 1:
            d[f"{P}input_blocks.{idx}.0.op.weight"] = (cur, cur, 3, 3)
            d[f"{P}input_blocks.{idx}.0.op.bias"] = (cur,)
            skips.append(cur)
            idx += 1
    _res(d, P + "middle_block.0.", cur, cur, temb)
    if depths["mid"]:  # SSD-1B drops the middle attention and the second resnet
        _transformer(d, P + "middle_block.1.", cur, depths["mid"], ctx, linear)
        _res(d, P + "middle_block.2.", cur, cur, temb)
    idx = 0
    for level in reversed(range(len(mult))):
        for i in range(3):
            out = ch * mult[level]
            _res(d, f"{P}output_blocks.{idx}.0.", cur + skips.pop(), out, temb)
            cur = out
            sub = 1
            if depths["out"][idx]:
                _transformer(d, f"{P}output_blocks.{idx}.1.", cur, depths["out"][idx], ctx, linear)
                sub = 2
            if level and i == 2:
                d[f"{P}output_blocks.{idx}.{sub}.conv.weight"] = (cur, cur, 3, 3)
                d[f"{P}output_blocks.{idx}.{sub}.conv.bias"] = (cur,)
            idx += 1
    d[P + "out.0.weight"] = (ch,)
    d[P + "out.0.bias"] = (ch,)
    d[P + "out.2.weight"] = (4, ch, 3, 3)
    d[P + "out.2.bias"] = (4,)
    return d


def clip_l(dims: Dims, prefix: str) -> dict[str, Shape]:
    """OpenAI CLIP ViT-L/14 text model in transformers' naming (SD1, SDXL's first encoder)."""
    w, p = dims.clip_l, prefix + "transformer.text_model."
    d: dict[str, Shape] = {
        p + "embeddings.position_ids": (1, dims.ctx_len),
        p + "embeddings.token_embedding.weight": (dims.vocab, w),
        p + "embeddings.position_embedding.weight": (dims.ctx_len, w),
    }
    for i in range(12):
        q = f"{p}encoder.layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            d[f"{q}self_attn.{proj}.weight"] = (w, w)
            d[f"{q}self_attn.{proj}.bias"] = (w,)
        for ln in ("layer_norm1", "layer_norm2"):
            d[f"{q}{ln}.weight"] = (w,)
            d[f"{q}{ln}.bias"] = (w,)
        d[q + "mlp.fc1.weight"] = (4 * w, w)
        d[q + "mlp.fc1.bias"] = (4 * w,)
        d[q + "mlp.fc2.weight"] = (w, 4 * w)
        d[q + "mlp.fc2.bias"] = (w,)
    d[p + "final_layer_norm.weight"] = (w,)
    d[p + "final_layer_norm.bias"] = (w,)
    return d


def open_clip(dims: Dims, prefix: str, width: int, layers: int) -> dict[str, Shape]:
    """OpenCLIP text tower in open_clip's naming (SD2's ViT-H, SDXL's second encoder bigG)."""
    p = prefix + "model."
    d: dict[str, Shape] = {
        p + "positional_embedding": (dims.ctx_len, width),
        p + "text_projection": (width, width),
        p + "logit_scale": (),
        p + "token_embedding.weight": (dims.vocab, width),
        p + "ln_final.weight": (width,),
        p + "ln_final.bias": (width,),
    }
    for i in range(layers):
        q = f"{p}transformer.resblocks.{i}."
        d[q + "attn.in_proj_weight"] = (3 * width, width)
        d[q + "attn.in_proj_bias"] = (3 * width,)
        d[q + "attn.out_proj.weight"] = (width, width)
        d[q + "attn.out_proj.bias"] = (width,)
        for ln in ("ln_1", "ln_2"):
            d[f"{q}{ln}.weight"] = (width,)
            d[f"{q}{ln}.bias"] = (width,)
        d[q + "mlp.c_fc.weight"] = (4 * width, width)
        d[q + "mlp.c_fc.bias"] = (4 * width,)
        d[q + "mlp.c_proj.weight"] = (width, 4 * width)
        d[q + "mlp.c_proj.bias"] = (width,)
    return d


def vae(dims: Dims) -> dict[str, Shape]:
    """The KL-f8 autoencoder shared by SD1, SD2 and SDXL."""
    ch, mult, P = dims.vae_ch, (1, 2, 4, 4), "first_stage_model."
    d: dict[str, Shape] = {}

    def res(p: str, cin: int, cout: int) -> None:
        d[p + "norm1.weight"] = (cin,)
        d[p + "norm1.bias"] = (cin,)
        d[p + "conv1.weight"] = (cout, cin, 3, 3)
        d[p + "conv1.bias"] = (cout,)
        d[p + "norm2.weight"] = (cout,)
        d[p + "norm2.bias"] = (cout,)
        d[p + "conv2.weight"] = (cout, cout, 3, 3)
        d[p + "conv2.bias"] = (cout,)
        if cin != cout:
            d[p + "nin_shortcut.weight"] = (cout, cin, 1, 1)
            d[p + "nin_shortcut.bias"] = (cout,)

    def mid(p: str, c: int) -> None:
        res(p + "block_1.", c, c)
        for n in ("norm", "q", "k", "v", "proj_out"):
            d[f"{p}attn_1.{n}.weight"] = (c,) if n == "norm" else (c, c, 1, 1)
            d[f"{p}attn_1.{n}.bias"] = (c,)
        res(p + "block_2.", c, c)

    e = P + "encoder."
    d[e + "conv_in.weight"] = (ch, 3, 3, 3)
    d[e + "conv_in.bias"] = (ch,)
    cur = ch
    for lvl, m in enumerate(mult):
        for b in range(2):
            res(f"{e}down.{lvl}.block.{b}.", cur, ch * m)
            cur = ch * m
        if lvl != len(mult) - 1:
            d[f"{e}down.{lvl}.downsample.conv.weight"] = (cur, cur, 3, 3)
            d[f"{e}down.{lvl}.downsample.conv.bias"] = (cur,)
    mid(e + "mid.", cur)
    d[e + "norm_out.weight"] = (cur,)
    d[e + "norm_out.bias"] = (cur,)
    d[e + "conv_out.weight"] = (8, cur, 3, 3)
    d[e + "conv_out.bias"] = (8,)
    g = P + "decoder."
    cur = ch * mult[-1]
    d[g + "conv_in.weight"] = (cur, 4, 3, 3)
    d[g + "conv_in.bias"] = (cur,)
    mid(g + "mid.", cur)
    for lvl in reversed(range(len(mult))):
        for b in range(3):
            res(f"{g}up.{lvl}.block.{b}.", cur, ch * mult[lvl])
            cur = ch * mult[lvl]
        if lvl:
            d[f"{g}up.{lvl}.upsample.conv.weight"] = (cur, cur, 3, 3)
            d[f"{g}up.{lvl}.upsample.conv.bias"] = (cur,)
    d[g + "norm_out.weight"] = (cur,)
    d[g + "norm_out.bias"] = (cur,)
    d[g + "conv_out.weight"] = (3, cur, 3, 3)
    d[g + "conv_out.bias"] = (3,)
    d[P + "quant_conv.weight"] = (8, 8, 1, 1)
    d[P + "quant_conv.bias"] = (8,)
    d[P + "post_quant_conv.weight"] = (4, 4, 1, 1)
    d[P + "post_quant_conv.bias"] = (4,)
    return d


def checkpoint(arch: str, dims: Dims = REAL, *, in_channels: int = 4, variant: str = "base",
               with_vae: bool = True) -> dict[str, Shape]:
    """Every key and shape of a full checkpoint. `variant` "ssd1b" gives SSD-1B's pruned SDXL UNet."""
    if arch == "sd1":
        d = {**unet(dims, "sd1", in_channels), **clip_l(dims, "cond_stage_model.")}
    elif arch == "sd2":
        d = {**unet(dims, "sd2", in_channels),
             **open_clip(dims, "cond_stage_model.", dims.clip_h, 24)}
    elif arch == "sdxl":
        depths = SSD1B_DEPTHS if variant == "ssd1b" else None
        d = {**unet(dims, "sdxl", in_channels, depths),
             **clip_l(dims, "conditioner.embedders.0."),
             **open_clip(dims, "conditioner.embedders.1.", dims.clip_g, 32)}
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    if with_vae:
        d.update(vae(dims))
    return d


def tiny(**kw) -> Dims:
    return replace(TINY, **kw)
