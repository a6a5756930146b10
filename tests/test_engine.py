"""End-to-end merges of tiny SD1 / SDXL checkpoints with the full real key set.

Expected values are computed here from the input tensors with the REFERENCE formulas in float64,
and the block of each key by the independent mapping in test_arch.
"""
from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from lib_merge.merge import compute, pipeline
from lib_merge.merge.engine import CancelToken, merge
from lib_merge.errors import ArchitectureError, Cancelled, OutputError
from lib_merge.io.safetensors_io import save_tensors
from lib_merge.merge.recipe import Recipe
from tests.synth import state_dict, write_checkpoint
from tests.test_arch import expected_block

U = "model.diffusion_model."
SD1_BLOCKS = ["BASE"] + [f"IN{i:02d}" for i in range(12)] + ["M00"] + [f"OUT{i:02d}" for i in range(12)]
XL_BLOCKS = ["BASE"] + [f"IN{i:02d}" for i in range(9)] + ["M00"] + [f"OUT{i:02d}" for i in range(9)]


def close16(out: torch.Tensor, expected64: torch.Tensor) -> bool:
    """out (fp16) equals the float64 expectation rounded to fp16, give or take one rounding step."""
    return torch.allclose(out.double(), expected64.to(torch.float16).double(), rtol=2 ** -10, atol=2 ** -20)  # atol: float32 cancellation near 0


def load(p):
    return load_file(p)


def test_weight_sum_mbw_and_elemental_sd1(tmp_path, sd1_models):
    a, b = load(sd1_models[0]), load(sd1_models[1])
    weights = [0.5] + [i / 25 for i in range(1, 26)]  # BASE then a distinct value per block
    spec = ",".join(repr(w) for w in weights)
    out = tmp_path / "o.safetensors"
    merge(Recipe((sd1_models[0], sd1_models[1]), alpha_blocks=spec,
                 elemental="OUT05 OUT08:attn1:0.88\nIN04::0.125"), str(out))
    got = load(str(out))
    assert list(got) == list(a)  # same keys, same order as A
    checked = 0
    for k in a:
        blk = expected_block(k, 12)
        if k.startswith("first_stage_model.") or blk is None or not a[k].is_floating_point():
            assert torch.equal(got[k], a[k]), k  # VAE and buffers keep A
            continue
        al = weights[SD1_BLOCKS.index(blk)]
        if blk == "IN04":
            al = 0.125
        if blk in ("OUT05", "OUT08") and "attn1" in k:
            al = 0.88
        exp = (1 - al) * a[k].double() + al * b[k].double()
        assert close16(got[k], exp), k
        checked += 1
    assert checked > 800


def test_sdxl_block_names_are_exact_and_26_values_drop_in09_to_in11(tmp_path, sdxl_models):
    a, b = load(sdxl_models[0]), load(sdxl_models[1])
    # 26 values: IN09-IN11 and OUT09-OUT11 are 0.75 and must vanish; M00 is 0.25; others 0.5
    w26 = ["0"] + ["0.5"] * 9 + ["0.75"] * 3 + ["0.25"] + ["0.5"] * 9 + ["0.75"] * 3
    out = tmp_path / "x.safetensors"
    merge(Recipe(tuple(sdxl_models[:2]), alpha_blocks=",".join(w26), elemental="M00:attn2:1"), str(out))
    got = load(str(out))
    mid_attn2 = U + "middle_block.1.transformer_blocks.0.attn2.to_k.weight"
    in8 = U + "input_blocks.8.1.transformer_blocks.0.attn2.to_k.weight"
    mid_res = U + "middle_block.0.in_layers.2.weight"
    te = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"
    assert torch.equal(got[mid_attn2], b[mid_attn2])  # elemental M00 hits the middle block, ratio 1
    assert close16(got[in8], 0.5 * a[in8].double() + 0.5 * b[in8].double())  # IN08 untouched by M00 rule
    assert close16(got[mid_res], 0.75 * a[mid_res].double() + 0.25 * b[mid_res].double())
    assert torch.equal(got[te], a[te])  # BASE 0
    for k in a:
        assert expected_block(k, 9) is None or got[k].shape == a[k].shape


@pytest.mark.parametrize("mode,alpha,beta", [("add_difference", 0.75, 0.0), ("triple_sum", 0.25, 0.5),
                                             ("sum_twice", 0.5, 0.25)])
def test_three_model_modes_exact(tmp_path, sd1_models, mode, alpha, beta):
    a, b, c = (load(p) for p in sd1_models)
    out = tmp_path / "o.safetensors"
    merge(Recipe(tuple(sd1_models), mode=mode, alpha=alpha, beta=beta, dtype="fp32"), str(out))
    got = load(str(out))
    k = U + "output_blocks.4.1.transformer_blocks.0.ff.net.0.proj.weight"
    A, B, C = a[k].double(), b[k].double(), c[k].double()
    exp = {"add_difference": A + alpha * (B - C),
           "triple_sum": (1 - alpha - beta) * A + alpha * B + beta * C,
           "sum_twice": (1 - beta) * ((1 - alpha) * A + alpha * B) + beta * C}[mode]
    assert got[k].dtype == torch.float32
    assert torch.allclose(got[k].double(), exp, rtol=1e-6, atol=1e-6)


def test_chunked_streaming_gives_the_same_bytes(tmp_path, sd1_models, monkeypatch):
    r = Recipe(tuple(sd1_models), mode="add_difference", alpha=0.3, alpha_blocks="GRAD_V")
    whole = tmp_path / "whole.safetensors"
    merge(r, str(whole))
    monkeypatch.setattr(pipeline, "CHUNK", 96)  # every big tensor now goes through in pieces
    monkeypatch.setattr(compute, "SLICE", 40)  # and each piece in slices that do not divide it
    chunked = tmp_path / "chunked.safetensors"
    merge(r, str(chunked))
    assert whole.read_bytes() == chunked.read_bytes()


def test_dict_output_equals_file_output(tmp_path, sdxl_models):
    r = Recipe(tuple(sdxl_models[:2]), alpha=0.3, dtype="bf16")
    f = tmp_path / "o.safetensors"
    merge(r, str(f))
    sd = merge(r, None).state_dict
    disk = load(str(f))
    assert sd.keys() == disk.keys()
    assert all(torch.equal(sd[k], disk[k]) for k in sd)
    assert disk[U + "out.2.weight"].dtype == torch.bfloat16


def test_vae_kept_unless_asked_and_keys_only_in_a(tmp_path):
    a = write_checkpoint(tmp_path / "a.safetensors", "sd1", seed=1,
                         extra={"alphas_cumprod": torch.linspace(0, 1, 5), "v_pred": torch.zeros(())})
    b_sd = state_dict("sd1", seed=2)
    only_a = U + "input_blocks.1.1.transformer_blocks.0.attn2.to_v.weight"
    del b_sd[only_a]
    b_sd["extra.only.in.b"] = torch.ones(3)
    save_tensors(str(tmp_path / "b.safetensors"), b_sd)
    out = tmp_path / "o.safetensors"
    res = merge(Recipe((str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")), alpha=0.5), str(out))
    got = load(str(out))
    vae = "first_stage_model.decoder.conv_in.weight"
    assert torch.equal(got[vae], a[vae])
    assert torch.equal(got[only_a], a[only_a])
    assert torch.equal(got["alphas_cumprod"], a["alphas_cumprod"]) and "v_pred" in got
    assert "extra.only.in.b" not in got
    assert any("only in model B" in n for n in res.plan.notes)
    out2 = tmp_path / "o2.safetensors"
    merge(Recipe((str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")), alpha=0.5, merge_vae=True,
                 alpha_blocks="0.25," + ",".join(["0"] * 25)), str(out2))
    got2 = load(str(out2))
    assert close16(got2[vae], 0.75 * a[vae].double() + 0.25 * b_sd[vae].double())  # VAE under BASE


def test_inpainting_a_with_normal_b(tmp_path):
    a = write_checkpoint(tmp_path / "inp.safetensors", "sd1", seed=3, in_channels=9)
    b = write_checkpoint(tmp_path / "b.safetensors", "sd1", seed=4)
    c = write_checkpoint(tmp_path / "c.safetensors", "sd1", seed=5)
    out = tmp_path / "o.safetensors"
    merge(Recipe(tuple(str(tmp_path / f"{n}.safetensors") for n in ("inp", "b", "c")), mode="add_difference",
                 alpha=1.0), str(out))
    got = load(str(out))
    k = U + "input_blocks.0.0.weight"
    assert got[k].shape == a[k].shape
    assert close16(got[k][:, :4], a[k][:, :4].double() + b[k].double() - c[k].double())
    assert torch.equal(got[k][:, 4:], a[k][:, 4:])


def test_shape_mismatch_and_mixed_architectures_are_errors(tmp_path, sd1_models, sdxl_models):
    b_sd = state_dict("sd1", seed=2)
    k = U + "middle_block.1.proj_in.weight"
    b_sd[k] = torch.zeros(3, 3, 1, 1, dtype=torch.float16)
    save_tensors(str(tmp_path / "odd.safetensors"), b_sd)
    out = tmp_path / "o.safetensors"
    with pytest.raises(ArchitectureError, match=r"middle_block\.1\.proj_in\.weight has shape"):
        merge(Recipe((sd1_models[0], str(tmp_path / "odd.safetensors"))), str(out))
    with pytest.raises(ArchitectureError, match="cannot merge SDXL model"):
        merge(Recipe((sd1_models[0], sdxl_models[1])), str(out))
    assert os.listdir(tmp_path) == ["odd.safetensors"]


def test_include_exclude(tmp_path, sd1_models):
    a, b = load(sd1_models[0]), load(sd1_models[1])
    out = tmp_path / "o.safetensors"
    merge(Recipe(tuple(sd1_models[:2]), alpha=1.0, exclude="OUT00-OUT11 attn2"), str(out))
    got = load(str(out))
    for k in a:
        blk = expected_block(k, 12)
        if blk is None or k.startswith("first_stage_model.") or not a[k].is_floating_point():
            continue
        excluded = blk.startswith("OUT") or "attn2" in k
        assert torch.equal(got[k], a[k] if excluded else b[k]), k
    out2 = tmp_path / "o2.safetensors"
    merge(Recipe(tuple(sd1_models[:2]), alpha=1.0, include="M00 VAE"), str(out2))
    got2 = load(str(out2))
    for k in a:
        blk = expected_block(k, 12)
        if blk is None or not a[k].is_floating_point():
            continue
        included = blk == "M00" or k.startswith("first_stage_model.")
        assert torch.equal(got2[k], b[k] if included else a[k]), k


def test_self_scales_chosen_elements(tmp_path, sd1_models):
    a = load(sd1_models[0])
    out = tmp_path / "o.safetensors"
    merge(Recipe((sd1_models[0],), calc="self", elemental="OUT05 OUT08:attn1:0.5"), str(out))
    got = load(str(out))
    q = U + "output_blocks.5.1.transformer_blocks.0.attn1.to_q.weight"
    o = U + "output_blocks.5.1.transformer_blocks.0.attn1.to_out.0.weight"
    other = U + "output_blocks.4.1.transformer_blocks.0.attn1.to_q.weight"
    assert torch.equal(got[q], (a[q].float() * 0.5).half())
    assert torch.equal(got[o], a[o])  # to_out is never scaled
    assert torch.equal(got[other], a[other])  # alpha defaults to 1 for self


def test_adjust_applies_after_merge(tmp_path, sdxl_models):
    a, b = load(sdxl_models[0]), load(sdxl_models[1])
    out = tmp_path / "o.safetensors"
    merge(Recipe(tuple(sdxl_models[:2]), alpha=0.5, adjust="2,0,4,1,3,1,2,-1", dtype="fp32"), str(out))
    got = load(str(out))
    k = U + "out.2.bias"
    base = 0.5 * a[k].double() + 0.5 * b[k].double()
    add = torch.tensor([0.02, 0.02 * (1 - 2 + 1), 0.02 * (-1 - 2), 0.02 * 3], dtype=torch.float64)
    assert torch.allclose(got[k].double(), base + add, atol=1e-6)
    w = U + "input_blocks.0.0.weight"
    assert torch.allclose(got[w].double(), (0.5 * a[w].double() + 0.5 * b[w].double()) * (1 - 0.02), atol=1e-6)
    w2 = U + "out.2.weight"
    assert torch.allclose(got[w2].double(), (0.5 * a[w2].double() + 0.5 * b[w2].double()) * (1 - 0.04), atol=1e-6)


@pytest.mark.parametrize("calc", ["cosine_a", "cosine_b", "train_difference", "smooth_add", "extract",
                                  "tensor", "tensor2"])
def test_calc_modes_run_end_to_end(tmp_path, sd1_models, calc):
    n = 3 if calc in ("train_difference", "smooth_add", "extract") else 2
    out = tmp_path / "o.safetensors"
    res = merge(Recipe(tuple(sd1_models[:n]), calc=calc, alpha=0.4, beta=0.3), str(out))
    got, a = load(str(out)), load(sd1_models[0])
    assert all(not torch.isnan(t.float()).any() for t in got.values())
    vae = "first_stage_model.encoder.conv_in.weight"
    assert torch.equal(got[vae], a[vae])
    assert json.loads(res.metadata["sd_merge_recipe"])["method"] == calc


def test_metadata_hashes_and_recipe(tmp_path, sd1_models):
    out = tmp_path / "o.safetensors"
    merge(Recipe(tuple(sd1_models[:2]), alpha_blocks="GRAD_V"), str(out))
    from lib_merge.io.safetensors_io import read_header
    _, meta = read_header(str(out))
    models = json.loads(meta["sd_merge_models"])
    for p in sd1_models[:2]:
        data = open(p, "rb").read()
        full = hashlib.sha256(data).hexdigest()
        assert models[full]["name"] == os.path.splitext(os.path.basename(p))[0]
        assert models[full]["legacy_hash"] == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    rec = json.loads(meta["sd_merge_recipe"])
    assert rec["type"] == "blockmerge" and rec["mode"] == "weight_sum"
    assert rec["alpha_values"]["IN00"] == 1.0 and rec["alpha_values"]["M00"] == 0.0


def test_cancel_leaves_nothing(tmp_path, sd1_models):
    token = CancelToken()
    calls = []

    def progress(done, total, what):
        calls.append(done)
        if len(calls) == 50:
            token.cancel()

    out = tmp_path / "o.safetensors"
    with pytest.raises(Cancelled):
        merge(Recipe(tuple(sd1_models[:2])), str(out), progress=progress, cancel=token)
    assert os.listdir(tmp_path) == []


def test_existing_output_untouched(tmp_path, sd1_models):
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists already"):
        merge(Recipe(tuple(sd1_models[:2])), str(out))
    assert out.read_bytes() == b"precious"
    merge(Recipe(tuple(sd1_models[:2])), str(out), overwrite=True)
    assert out.stat().st_size > 1000


def test_ckpt_inputs_load_weights_only(tmp_path, sd1_models):
    a = load(sd1_models[0])
    torch.save({"state_dict": a, "global_step": 5}, tmp_path / "a.ckpt")
    out = tmp_path / "o.safetensors"
    merge(Recipe((str(tmp_path / "a.ckpt"), sd1_models[1]), alpha=0.0), str(out))
    got = load(str(out))
    assert all(torch.equal(got[k], a[k]) for k in a)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_ckpt_is_refused(tmp_path, sd1_models):
    from lib_merge.errors import ModelFileError
    torch.save({"state_dict": {"x": Evil()}}, tmp_path / "evil.ckpt")
    with pytest.raises(ModelFileError, match="cannot be loaded safely"):
        merge(Recipe((str(tmp_path / "evil.ckpt"), sd1_models[1])), str(tmp_path / "o.safetensors"))
