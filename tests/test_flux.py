"""Flux.1 dev / schnell / Chroma: real key layouts, detection, the 61-slot MBW vocabulary, merges, fp8.

The expected key names and shapes below are written out by hand from BFL's `flux/model.py` config
(hidden 3072, 24 heads, mlp ratio 4, 19 double + 38 single blocks) and the block of each key by a
mapping written here (SuperMerger/LBW's 61-slot vocabulary), independently of lib_merge.arch.flux.
"""
from __future__ import annotations

import math
import re

import pytest
import torch
from safetensors.torch import load_file

from lib_merge.arch import detect
from lib_merge.arch.flux import FLUX1
from lib_merge.arch.flux_layouts import FLUX_REAL, FLUX_TINY, checkpoint
from lib_merge.errors import ArchitectureError, ParseError
from lib_merge.io.safetensors_io import save_tensors
from lib_merge.merge.engine import merge
from lib_merge.merge.recipe import Recipe
from lib_merge.merge.weights import parse_block_weights

U = "model.diffusion_model."
IN_PARTS = ("img_in.", "txt_in.", "time_in.", "vector_in.", "guidance_in.", "distilled_guidance_layer.")


def expected_block(key: str) -> str | None:
    if key.startswith("text_encoders.clip_l."):
        return "CLIP"
    if key.startswith("text_encoders.t5xxl."):
        return "T5"
    if key.startswith("vae."):
        return None
    k = key[len(U):] if key.startswith(U) else key
    m = re.match(r"(double|single)_blocks\.(\d+)\.", k)
    if m:
        return ("D" if m.group(1) == "double" else "S") + f"{int(m.group(2)):02d}"
    if k.startswith("final_layer."):
        return "OUT"
    if k.startswith(IN_PARTS):
        return "IN"
    return None


def test_real_layout_has_every_flux1_key_and_shape():
    dev = checkpoint(FLUX_REAL, "dev")
    assert len(dev) == 780 and len(checkpoint(FLUX_REAL, "schnell")) == 776
    assert "guidance_in.in_layer.weight" in dev and "guidance_in.in_layer.weight" not in checkpoint(variant="schnell")
    d0 = {k[len("double_blocks.0."):]: v for k, v in dev.items() if k.startswith("double_blocks.0.")}
    exp = {}
    for s in ("img", "txt"):
        exp.update({f"{s}_mod.lin.weight": (18432, 3072), f"{s}_mod.lin.bias": (18432,),
                    f"{s}_attn.qkv.weight": (9216, 3072), f"{s}_attn.qkv.bias": (9216,),
                    f"{s}_attn.norm.query_norm.scale": (128,), f"{s}_attn.norm.key_norm.scale": (128,),
                    f"{s}_attn.proj.weight": (3072, 3072), f"{s}_attn.proj.bias": (3072,),
                    f"{s}_mlp.0.weight": (12288, 3072), f"{s}_mlp.0.bias": (12288,),
                    f"{s}_mlp.2.weight": (3072, 12288), f"{s}_mlp.2.bias": (3072,)})
    assert d0 == exp
    s37 = {k[len("single_blocks.37."):]: v for k, v in dev.items() if k.startswith("single_blocks.37.")}
    assert s37 == {"linear1.weight": (21504, 3072), "linear1.bias": (21504,), "linear2.weight": (3072, 15360),
                   "linear2.bias": (3072,), "norm.query_norm.scale": (128,), "norm.key_norm.scale": (128,),
                   "modulation.lin.weight": (9216, 3072), "modulation.lin.bias": (9216,)}
    assert dev["final_layer.adaLN_modulation.1.weight"] == (6144, 3072) and dev["img_in.weight"] == (3072, 64)
    assert dev["txt_in.weight"] == (3072, 4096) and dev["vector_in.in_layer.weight"] == (3072, 768)
    biggest = max(dev.items(), key=lambda kv: math.prod(kv[1]))
    assert biggest == ("single_blocks.0.linear1.weight", (21504, 3072))  # 66 M elements
    assert 11.8e9 < sum(math.prod(s) for s in dev.values()) < 12.0e9
    aio = checkpoint(FLUX_REAL, "dev", all_in_one=True)
    count = lambda p: sum(k.startswith(p) for k in aio)  # noqa: E731
    assert (count(U), count("text_encoders.clip_l.transformer."), count("text_encoders.t5xxl.transformer."),
            count("vae.")) == (780, 196, 219, 244)
    assert aio["text_encoders.t5xxl.transformer.encoder.block.23.layer.1.DenseReluDense.wi_0.weight"] == (10240, 4096)
    assert aio["vae.decoder.conv_in.weight"] == (512, 16, 3, 3)


@pytest.mark.parametrize("aio", [False, True])
@pytest.mark.parametrize("variant", ["dev", "schnell", "chroma"])
def test_detect_flux_from_the_header(aio, variant):
    info = detect(checkpoint(FLUX_REAL, variant, all_in_one=aio), "f.safetensors")
    assert info.variant == variant and info.has_text_encoder == aio and info.has_vae == aio
    assert len(info.arch.blocks) == 61 and info.arch.id == ("chroma" if variant == "chroma" else "flux")
    tiny = detect(checkpoint(FLUX_TINY, variant, all_in_one=aio))
    assert (tiny.arch.n_double, tiny.arch.n_single) == (3, 4)  # counted from the keys
    assert len(tiny.arch.blocks) == 3 + 3 + 4 + 1


def test_every_key_gets_the_supermerger_block():
    for variant in ("dev", "chroma"):
        for k in checkpoint(FLUX_REAL, variant, all_in_one=True):
            assert FLUX1.block_of(k) == expected_block(k), k
    assert FLUX1.blocks[:4] == ("CLIP", "T5", "IN", "D00") and FLUX1.blocks[21:23] == ("D18", "S00")
    assert FLUX1.blocks[-2:] == ("S37", "OUT")


def test_61_value_strings_and_wrong_counts():
    vals = [i / 100 for i in range(61)]
    bw = parse_block_weights(",".join(map(repr, vals)), FLUX1, base_default=0.5)
    assert bw.values == tuple(vals)
    bw60 = parse_block_weights(",".join(map(repr, vals[1:])), FLUX1, base_default=0.25)
    assert bw60.values[0] == 0.25  # CLIP is the BASE slot
    for n in (12, 26, 20):
        with pytest.raises(ParseError, match=rf"has {n} values but Flux.1 takes 61 values \(CLIP, T5, IN, "
                                             r"D00..D18, S00..S37, OUT\), or 60 without BASE"):
            parse_block_weights(",".join(["0.5"] * n), FLUX1, base_default=0.5)


def _tiny(seed: int, dtype=torch.bfloat16, variant="dev", aio=True):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g).to(dtype) for k, s in checkpoint(FLUX_TINY, variant, aio).items()}


def test_block_weighted_merge_with_flux_elementals(tmp_path):
    a, b = _tiny(1), _tiny(2)
    pa, pb, out = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "o.safetensors"
    save_tensors(str(pa), a)
    save_tensors(str(pb), b)
    blocks = ["CLIP", "T5", "IN", "D00", "D01", "D02", "S00", "S01", "S02", "S03", "OUT"]
    w = [0.05 * (i + 1) for i in range(len(blocks))]
    merge(Recipe((str(pa), str(pb)), alpha_blocks=",".join(map(repr, w)),
                 elemental="D01:img_attn:0.9\nS00-S01:linear1:1"), str(out))
    got = load_file(str(out))
    assert list(got) == list(a)
    checked = 0
    for k in a:
        blk = expected_block(k)
        if blk is None:
            assert torch.equal(got[k], a[k]), k
            continue
        al = w[blocks.index(blk)]
        if blk == "D01" and "img_attn" in k:
            al = 0.9
        if blk in ("S00", "S01") and "linear1" in k:
            al = 1.0
        exp = ((1 - al) * a[k].double() + al * b[k].double()).to(torch.bfloat16)
        assert got[k].dtype == torch.bfloat16
        assert torch.allclose(got[k].double(), exp.double(), rtol=2 ** -7, atol=1e-6), k
        checked += 1
    assert checked == sum(1 for k in a if not k.startswith("vae."))


@pytest.mark.parametrize("fp8", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_fp8_in_and_out(tmp_path, fp8):
    a, b = _tiny(3, fp8, aio=False), _tiny(4, fp8, aio=False)
    a["img_in.weight"][0, 0] = torch.tensor(400.0).to(fp8)
    b["img_in.weight"][0, 0] = torch.tensor(448.0).to(fp8)  # the e4m3 maximum; the e5m2 rounding of it
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_tensors(str(pa), a)
    save_tensors(str(pb), b)
    for dtype, want in (("keep", fp8), ("bf16", torch.bfloat16), ("fp8_e4m3fn", torch.float8_e4m3fn)):
        out = tmp_path / f"o-{dtype}.safetensors"
        merge(Recipe((str(pa), str(pb)), alpha=0.3, dtype=dtype), str(out))
        got = load_file(str(out))
        for k in a:
            assert got[k].dtype == want, k
            exp = 0.7 * a[k].double() + 0.3 * b[k].double()
            if want in (torch.float8_e4m3fn, torch.float8_e5m2):
                lim = torch.finfo(want).max
                exp = exp.clamp(-lim, lim)
            # computed in fp32 then rounded once: within one step of the output type of the exact value
            step = {torch.float8_e4m3fn: 2 ** -3, torch.float8_e5m2: 2 ** -2, torch.bfloat16: 2 ** -7}[want]
            tiny = max(torch.finfo(want).tiny, 1e-6)  # fp32 cancellation near 0
            assert torch.allclose(got[k].double(), exp, rtol=step, atol=tiny), k
    # add difference with an extreme ratio stays finite in e4m3 (clamped at 448, never NaN)
    out = tmp_path / "x.safetensors"
    merge(Recipe((str(pa), str(pb), str(pa)), mode="add_difference", alpha=1.0, dtype="fp8_e4m3fn"), str(out))
    got = load_file(str(out))
    assert all(torch.isfinite(t.float()).all() for t in got.values())


def test_packed_formats_are_refused_naming_them():
    sd = checkpoint(FLUX_TINY, "dev")
    with pytest.raises(ArchitectureError, match="bitsandbytes NF4/FP4 quantised model"):
        detect({**sd, "double_blocks.0.img_attn.qkv.weight.absmax": (4,)}, "nf4.safetensors")
    # fp8 scaled files are understood now (tests/test_flux_scaled.py): detection leaves them to the plan
    assert detect({**sd, "double_blocks.0.img_attn.qkv.scale_weight": ()}, "scaled.safetensors").arch.id == "flux-3x4"


def test_fluxall_preset_and_sd_presets_on_flux():
    assert parse_block_weights("FLUXALL", FLUX1, base_default=0.5).values == (1.0,) * 61
    with pytest.raises(ParseError, match="preset 'FLUXALL' is for Flux only, not SD1.x. Fix: use ALL_B"):
        from lib_merge.arch import SD1
        parse_block_weights("FLUXALL", SD1, base_default=0.5)
    with pytest.raises(ParseError, match="has 26 values but Flux.1 takes 61"):
        parse_block_weights("GRAD_V", FLUX1, base_default=0.5)


def test_add_difference_on_transformer_only_schnell_files(tmp_path):
    a, b, c = (_tiny(s, torch.float32, "schnell", aio=False) for s in (5, 6, 7))
    paths = []
    for n, sd in zip("abc", (a, b, c)):
        paths.append(str(tmp_path / f"{n}.safetensors"))
        save_tensors(paths[-1], sd)
    out = tmp_path / "o.safetensors"
    merge(Recipe(tuple(paths), mode="add_difference", alpha_blocks="FLUXALL", alpha=0.5), str(out))
    got = load_file(str(out))
    assert "guidance_in.in_layer.weight" not in got
    for k in a:  # FLUXALL: every block at 1, so A + (B - C) everywhere, norm scales included
        assert torch.allclose(got[k].double(), a[k].double() + b[k].double() - c[k].double(), atol=1e-5), k


def test_cli_flux_fp8_merge_with_random_blocks_replays_bit_identically(tmp_path, capsys):
    from lib_merge.cli import main
    models = tmp_path / "models"
    models.mkdir()
    for n, seed in (("a", 8), ("b", 9)):
        save_tensors(str(models / f"{n}.safetensors"), _tiny(seed, torch.float8_e4m3fn))
    out = tmp_path / "m.safetensors"
    spec = "0.5,R,U,X" + ",0.25" * 7  # 11 slots of the tiny Flux (3 double, 4 single)
    assert main(["merge", str(models / "a.safetensors"), str(models / "b.safetensors"), "-o", str(out),
                 "--alpha-blocks", spec, "--elemental", "S00-S03:linear1:R", "--dtype", "bf16", "--quiet"]) == 0
    assert load_file(str(out))[U + "single_blocks.0.linear1.weight"].dtype == torch.bfloat16
    again = tmp_path / "again.safetensors"
    assert main(["replay", str(out), "-o", str(again), "--models-dir", str(models), "--quiet"]) == 0
    assert out.read_bytes() == again.read_bytes()
    capsys.readouterr()
