"""Flux LoRAs with block weights: every key format resolves to the model key, `lbw=` with 61 values,
presets, R/U/X, `lbwe=` with Flux elements, and baking into a tiny all-in-one Flux.1 dev checkpoint.

Expected values are computed in float64 numpy from the logical LoRA in tests/flux_lora_synth.py
(W + mult · ratio(block) · (alpha/rank) · up@down at the module's rows), with the block taken from the
BFL model key by the test's own mapping (LBW's BLOCKIDFLUX: CLIP, T5, IN, D00..D18, S00..S37, OUT).
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lib_merge.arch.blocks import SD1
from lib_merge.arch.flux import FLUX1
from lib_merge.arch.flux_layouts import FLUX_REAL, FLUX_TINY, checkpoint
from lib_merge.errors import ParseError
from lib_merge.io.safetensors_io import save_tensors
from lib_merge.lora.bake import bake
from lib_merge.lora.flux_index import FluxKeyIndex, canonical
from lib_merge.lora.presets import PresetBook
from lib_merge.lora.ratios import resolve
from lib_merge.lora.tag import format_tag, parse_spec, parse_tag
from tests import flux_lora_synth as fl

BLOCKS61 = ["CLIP", "T5", "IN"] + [f"D{i:02d}" for i in range(19)] + [f"S{i:02d}" for i in range(38)] + ["OUT"]
FORMATS = ("kohya", "diffusers", "onetrainer", "bfl")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("fluxlora")
    g = torch.Generator().manual_seed(11)
    sd = {k: torch.randn(s, generator=g) for k, s in checkpoint(FLUX_TINY, "dev", all_in_one=True).items()}
    p = d / "flux_tiny_dev.safetensors"
    save_tensors(str(p), sd)
    return str(p), sd, d


def _write(d, name, tensors):
    p = d / name
    save_tensors(str(p), tensors)
    return str(p)


def _check(out_path, ckpt_sd, exp, atol=2e-5):
    from safetensors.torch import load_file
    got = load_file(out_path)
    changed = {k for k in got if not torch.equal(got[k], ckpt_sd[k])}
    assert changed == set(exp), sorted(changed ^ set(exp))[:5]
    for k, v in exp.items():
        np.testing.assert_allclose(got[k].double().numpy(), v, atol=atol, rtol=1e-5, err_msg=k)


# ---- key resolution ---------------------------------------------------------------------------------

def test_every_diffusers_name_lands_on_the_real_key_and_rows_at_real_size():
    """Real Flux.1 widths (hidden 3072): each diffusers module's rows in the fused weight, from Comfy's
    flux_to_diffusers (Comfy-Org/ComfyUI comfy/utils.py @ 09708eae), typed out by hand."""
    shapes = checkpoint(FLUX_REAL, "dev", all_in_one=True)
    idx = FluxKeyIndex(FLUX1, shapes)
    H = 3072
    want = {"transformer.transformer_blocks.7.attn.to_v": ("double_blocks.7.img_attn.qkv", (2 * H, 3 * H), "D07"),
            "transformer.transformer_blocks.18.attn.add_k_proj": ("double_blocks.18.txt_attn.qkv", (H, 2 * H), "D18"),
            "transformer.single_transformer_blocks.37.proj_mlp": ("single_blocks.37.linear1", (3 * H, 7 * H), "S37"),
            "transformer.single_transformer_blocks.0.attn.to_q": ("single_blocks.0.linear1", (0, H), "S00"),
            "diffusion_model.single_blocks.4.linear1_qkv": ("single_blocks.4.linear1", (0, 3 * H), "S04"),
            "lora_transformer_single_transformer_blocks_9_attn_to_k": ("single_blocks.9.linear1", (H, 2 * H), "S09"),
            "lora_unet_double_blocks_0_img_attn_qkv": ("double_blocks.0.img_attn.qkv", None, "D00"),
            "transformer.norm_out.linear": ("final_layer.adaLN_modulation.1", None, "OUT"),
            "transformer.time_text_embed.guidance_embedder.linear_1": ("guidance_in.in_layer", None, "IN"),
            "lora_te1_text_model_encoder_layers_11_self_attn_out_proj":
                ("text_encoders.clip_l.transformer.text_model.encoder.layers.11.self_attn.out_proj", None, "CLIP"),
            "lora_te2_encoder_block_23_layer_1_DenseReluDense_wi_0":
                ("text_encoders.t5xxl.transformer.encoder.block.23.layer.1.DenseReluDense.wi_0", None, "T5")}
    for raw, (key, rows, blk) in want.items():
        t = idx.target(canonical(raw))
        full = key if key.startswith("text_encoders.") else fl.U + key
        assert (t.key, t.rows, t.block) == (full + ".weight", rows, blk), raw
    assert idx.target(canonical("transformer.norm_out.linear")).swap
    # every diffusers name of the real transformer lands on a real key; q/k/v(/mlp) tile the fused rows
    covered: dict[str, list] = {}
    for diff, (bfl, _) in fl.full_table(19, 38).items():
        t = idx.target(canonical("transformer." + diff))
        assert t is not None and t.key == fl.U + bfl + ".weight", diff
        assert t.block == fl.block(bfl)
        if t.rows:
            covered.setdefault(t.key, []).append(t.rows)
    for key, rows in covered.items():
        rows.sort()
        assert rows[0][0] == 0 and rows[-1][1] == shapes[key][0]
        assert all(a[1] == b[0] for a, b in zip(rows, rows[1:]))


def test_sd_names_are_not_flux():
    assert canonical("lora_unet_down_blocks_0_attentions_0_proj_in") is None
    assert canonical("lora_unet_input_blocks_4_1_proj_in") is None


# ---- lbw / lbwe parsing ----------------------------------------------------------------------------

def _mods_1sd():
    return None


def test_wrong_counts_and_presets_give_the_sd_style_error():
    for n in (12, 17, 20, 26):
        tag = parse_tag(f"<lora:x:1:1:lbw={','.join(['1'] * n)}>")
        with pytest.raises(ParseError) as e:
            resolve(tag, FLUX1)
        assert f"{n} values" in str(e.value) and "a Flux.1 LoRA" in str(e.value) and "61" in e.value.fix
    tag = parse_tag(f"<lora:x:1:1:lbw={','.join(['1'] * 61)}>")
    with pytest.raises(ParseError) as e:
        resolve(tag, SD1)
    assert "61 values is the Flux.1 LoRA" in str(e.value) and "17" in e.value.fix
    with pytest.raises(ParseError, match="INS.*SD1/SD2/SDXL LoRAs, not a Flux.1 LoRA"):
        resolve(parse_tag("<lora:x:1:1:lbw=INS>"), FLUX1)
    with pytest.raises(ParseError, match="FLUXALL.*Flux LoRAs, not an SD1"):
        resolve(parse_tag("<lora:x:1:1:lbw=FLUXALL>"), SD1)
    with pytest.raises(ParseError, match="60 block weights"):
        parse_tag(f"<lora:x:1:1:lbw={','.join(['1'] * 60)}>")
    for name, v in (("FLUXALL", 1.0), ("ALL", 1.0), ("NONE", 0.0), ("ALL0.5", 0.5)):
        r = resolve(parse_tag(f"<lora:x:1:1:lbw={name}>"), FLUX1)
        assert list(r.blocks) == BLOCKS61 and set(r.blocks.values()) == {v}
    # an SD elemental preset on a Flux LoRA (and the reverse) is refused, not silently a no-op
    with pytest.raises(ParseError, match="names SD blocks.*Flux.1 LoRA"):
        resolve(parse_tag("<lora:x:1:1:lbwe=ATTNDEEPOFF>"), FLUX1)
    book = PresetBook.load(lbwe_text="FX:D00-D18:img_attn:0\n")
    with pytest.raises(ParseError, match="names Flux blocks.*SD1"):
        resolve(parse_tag("<lora:x:1:1:lbwe=FX>", book), SD1, book)
    with pytest.raises(ParseError, match="mixes SD and Flux"):
        PresetBook.load(lbwe_text="BAD:IN05-D03:attn:0\n")


def test_lbw_61_slot_fuzz_round_trips_and_expands_by_position():
    rng = random.Random(5)
    for _ in range(300):
        ents, want = [], {}
        x = round(rng.uniform(-2, 2), 3)
        for b in BLOCKS61:
            k = rng.random()
            if k < 0.5:
                v = round(rng.uniform(-3, 3), rng.choice((0, 1, 3)))
                ents.append(repr(v) if rng.random() < 0.5 else f"{v:g}")
                want[b] = v
            elif k < 0.7:
                off = round(rng.uniform(-1, 1), 2)
                ents.append("X" if off == 0 else f"X{off:+g}")
                want[b] = x + off
            else:
                ents.append(rng.choice("RrUu"))
                want[b] = None
        tag = parse_tag(f"<lora:f:0.8:1.2:lbw={','.join(ents)}:x={x}:seed={rng.randrange(10**6)}>")
        assert parse_tag(format_tag(tag)) == tag
        r1, r2 = resolve(tag, FLUX1), resolve(tag, FLUX1)
        assert r1.blocks == r2.blocks and list(r1.blocks) == BLOCKS61
        for b, v in want.items():
            got = r1.blocks[b]
            if v is None:
                assert -0.5 <= got <= 1.5 and round(got, 3) == got
            else:
                assert got == pytest.approx(v, abs=1e-12), (b, ents[BLOCKS61.index(b)])
        # a wrong entry anywhere names its position
        bad = list(ents)
        i = rng.randrange(61)
        bad[i] = "1.2.3"
        with pytest.raises(ParseError, match=f"entry {i + 1} "):
            parse_tag(f"<lora:f:1:lbw={','.join(bad)}:x=1>")


# ---- bake --------------------------------------------------------------------------------------------

def _lbw61(seed):
    rng = np.random.default_rng(seed)
    return [round(float(v), 3) for v in rng.uniform(-1, 2, 61)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_bake_each_format_with_block_weights(ckpt, fmt):
    path, sd, d = ckpt
    mods = fl.logical(seed=3, rank=2, alpha_is_rank=False)
    lp = _write(d, f"l_{fmt}.safetensors", fl.write(mods, fmt))
    vals = _lbw61(1)
    ratio = dict(zip(BLOCKS61, vals))
    out = str(d / f"o_{fmt}.safetensors")
    res = bake(path, [parse_spec(f"{lp}:0.7:1.3:lbw={','.join(map(str, vals))}")], out, overwrite=True)
    assert res.loras[0].not_in_model == []
    te_mods = [m for m in mods if m.diff is None]
    if fmt == "diffusers":  # diffusers trainers save CLIP only
        mods = [m for m in mods if not m.bfl.startswith("t5:")]
    exp = fl.expected(sd, [(mods, 0.7, 1.3, 0)], lambda i, b, bfl: ratio[b])
    _check(out, sd, exp)
    assert te_mods  # the CLIP and T5 modules took the CLIP / T5 slots


def test_kohya_and_diffusers_files_of_one_lora_bake_to_the_same_model(ckpt):
    """The cross-check: the same LoRA in all four formats gives one model, with lbw, x and lbwe."""
    from safetensors.torch import load_file
    path, sd, d = ckpt
    mods = [m for m in fl.logical(seed=4, rank=3, alpha_is_rank=False) if not m.bfl.startswith("t5:")]
    book = PresetBook.load(lbwe_text="FX:D00-D02 S01:img_attn linear1 txt_mlp:X-0.5\n\n"
                                     "FY:NOT D01:mod:0.25\n")
    outs = []
    vals = _lbw61(2)
    for fmt in FORMATS:
        lp = _write(d, f"x_{fmt}.safetensors", fl.write(mods, fmt))
        for lbwe in ("FX", "FY"):
            out = str(d / f"x_{fmt}_{lbwe}.safetensors")
            bake(path, [parse_spec(f"{lp}:1:0.9:lbw={','.join(map(str, vals))}:lbwe={lbwe}:x=1.5", book)], out,
                 presets=book, overwrite=True)
            outs.append((fmt, lbwe, load_file(out)))
    ratio = dict(zip(BLOCKS61, vals))

    def ratios_fx(i, b, bfl):
        name = bfl.replace(".", "_")
        if b in ("D00", "D01", "D02", "S01") and any(e in name for e in ("img_attn", "linear1", "txt_mlp")):
            return 1.5 - 0.5
        return ratio[b]

    def ratios_fy(i, b, bfl):
        return 0.25 if b != "D01" and "mod" in bfl.replace(".", "_") else ratio[b]

    for fmt, lbwe, got in outs:
        exp = fl.expected(sd, [(mods, 1.0, 0.9, 0)], ratios_fx if lbwe == "FX" else ratios_fy)
        for k, v in exp.items():
            np.testing.assert_allclose(got[k].double().numpy(), v, atol=2e-5, rtol=1e-5, err_msg=f"{fmt} {lbwe} {k}")
    ref = {lb: g for f, lb, g in outs if f == "kohya"}
    for fmt, lbwe, got in outs:
        for k in got:
            assert torch.allclose(got[k], ref[lbwe][k], atol=1e-5), (fmt, lbwe, k)


def test_bake_two_flux_loras_and_presets(ckpt):
    path, sd, d = ckpt
    a = fl.logical(seed=5, every=3)
    b = fl.logical(seed=6, every=2, te=False)
    pa = _write(d, "a.safetensors", fl.write(a, "kohya"))
    pb = _write(d, "b.safetensors", fl.write(b, "diffusers"))
    out = str(d / "ab.safetensors")
    bake(path, [parse_spec(f"{pa}:0.5:lbw=FLUXALL"), parse_spec(f"{pb}:1:-0.75:lbw=ALL0.5")], out, overwrite=True)
    exp = fl.expected(sd, [(a, 0.5, 0.5, 0), (b, 1.0, -0.75, 1)], lambda i, blk, bfl: 1.0 if i == 0 else 0.5)
    _check(out, sd, exp)
