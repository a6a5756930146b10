"""Numbers that would fill a model with NaN/inf (issue 10): refused up front with the setting named,
and any output tensor that gets a NaN/inf no input had stops the job naming the key."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
from safetensors import safe_open

from lib_merge.cli import main
from lib_merge.errors import MergeError
from lib_merge.io.safetensors_io import read_header, save_tensors
from lib_merge.merge.engine import merge
from lib_merge.merge.recipe import Recipe
from tests import synth


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308"])
@pytest.mark.parametrize("flag", ["--alpha", "--beta"])
def test_non_finite_or_huge_alpha_is_refused(tmp_path, sd1_models, capsys, value, flag):
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, f"{flag}={value}", "--quiet")
    assert code == 2 and flag in err and "Fix:" in err and not out.exists()


def test_block_weight_1e308_is_refused_naming_the_block(tmp_path, sd1_models, capsys):
    out = tmp_path / "m.safetensors"
    w = ["0.5"] * 26
    w[7] = "1e308"  # IN06
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--alpha-blocks", ",".join(w), "--quiet")
    assert code == 2 and "IN06" in err and "[-10, 10]" in err and "--allow-extreme" in err and not out.exists()


def test_allow_extreme_accepts_a_big_finite_weight_and_is_recorded(tmp_path, sd1_models, capsys):
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--alpha", "12", "--quiet")
    assert code == 2 and "--alpha" in err
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--alpha", "12", "--allow-extreme",
                       "--dtype", "fp32", "--quiet")
    assert code == 0, err
    recipe = json.loads(read_header(str(out))[1]["sd_merge_recipe"])
    assert recipe["alpha"] == 12 and recipe["allow_extreme"] is True
    # A + 12 (B - A) computed here, independently of the engine
    a = synth.state_dict("sd1", 0)
    b = synth.state_dict("sd1", 1)
    key = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
    with safe_open(str(out), "pt") as f:
        got = f.get_tensor(key)
    want = a[key].float() * (1 - 12) + b[key].float() * 12
    assert torch.allclose(got, want, atol=1e-2)


def test_elemental_ratio_out_of_range_is_refused(tmp_path, sd1_models, capsys):
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", tmp_path / "m.safetensors",
                       "--elemental", "OUT05:attn1:1e300", "--quiet")
    assert code == 2 and "OUT05" in err and "ratio" in err


def test_recipe_json_never_holds_nan():
    with pytest.raises(MergeError):
        Recipe(models=("a",), alpha=float("nan"))
    with pytest.raises(MergeError):
        Recipe(models=("a",), gamma=float("inf"))


def test_new_inf_in_an_output_tensor_stops_naming_the_key(tmp_path, capsys):
    # fp32 inputs with values that fit fp32 but not fp16: --dtype fp16 would write inf
    sd_a = synth.state_dict("sd1", 0, dtype=torch.float32)
    sd_b = synth.state_dict("sd1", 1, dtype=torch.float32)
    key = "model.diffusion_model.out.2.weight"
    sd_a[key] = torch.full_like(sd_a[key], 1e6)
    sd_b[key] = torch.full_like(sd_b[key], 1e6)
    pa, pb = tmp_path / "A.safetensors", tmp_path / "B.safetensors"
    save_tensors(str(pa), sd_a)
    save_tensors(str(pb), sd_b)
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "merge", pa, pb, "-o", out, "--dtype", "fp16", "--quiet")
    assert code == 2 and key in err and "NaN or infinite" in err and not out.exists()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".partial")]


def test_an_inf_the_inputs_already_had_is_passed_through(tmp_path):
    sd_a = synth.state_dict("sd1", 0, dtype=torch.float32)
    sd_b = synth.state_dict("sd1", 1, dtype=torch.float32)
    key = "model.diffusion_model.out.2.weight"
    sd_a[key][0, 0, 0, 0] = math.inf  # the user's own model; not ours to judge
    pa, pb = tmp_path / "A.safetensors", tmp_path / "B.safetensors"
    save_tensors(str(pa), sd_a)
    save_tensors(str(pb), sd_b)
    res = merge(Recipe(models=(str(pa), str(pb))), None, hash_models=False)
    assert math.isinf(res.state_dict[key][0, 0, 0, 0].item())


def test_lora_bake_multiplier_1e300_is_refused(tmp_path, capsys):
    ck = tmp_path / "m.safetensors"
    synth.write_checkpoint(ck, "sd1", dtype=torch.float32)
    lora = tmp_path / "l.safetensors"
    synth.write_lora(lora, "sd1")
    out = tmp_path / "o.safetensors"
    code, _, err = run(capsys, "lora", "bake", ck, "-l", f"{lora}:1e300", "-o", out, "--quiet")
    assert code == 2 and "multiplier" in err and "l.safetensors" in err and not out.exists()
    code, _, err = run(capsys, "lora", "bake", ck, "-l", f"{lora}:1e300", "-o", out, "--quiet", "--allow-extreme")
    assert code == 2 and "NaN or infinite" in err and "lora_unet" not in err and "model." in err
    assert not out.exists()


def test_lora_bake_warns_that_start_is_ignored(tmp_path, capsys, caplog):
    ck = tmp_path / "m.safetensors"
    synth.write_checkpoint(ck, "sd1", dtype=torch.float32)
    lora = tmp_path / "l.safetensors"
    synth.write_lora(lora, "sd1")
    out = tmp_path / "o.safetensors"
    code, stdout, _ = run(capsys, "lora", "bake", ck, "-l", f"{lora}:1:start=5", "-o", out, "--quiet")
    assert code == 0 and "start=" in caplog.text and "ignored" in caplog.text
    assert str(out) in stdout  # --quiet keeps the one-line result


def _pair_fp16(tmp_path, va: float, vb: float, key: str):
    sd_a, sd_b = synth.state_dict("sd1", 0), synth.state_dict("sd1", 1)  # float16, as most checkpoints
    sd_a[key] = torch.full_like(sd_a[key], va)
    sd_b[key] = torch.full_like(sd_b[key], vb)
    pa, pb = tmp_path / "A.safetensors", tmp_path / "B.safetensors"
    save_tensors(str(pa), sd_a)
    save_tensors(str(pb), sd_b)
    return str(pa), str(pb)


@pytest.mark.parametrize("mode,alpha,beta", [("weight_sum", 0.3, 0.25), ("weight_sum", 1.0, 0.25),
                                             ("sum_twice", 0.7, 0.9), ("triple_sum", 0.6, 0.4)])
def test_convex_merges_of_float16_extremes_stay_finite(tmp_path, mode, alpha, beta):
    """Issue 12 skips the NaN/inf pass for convex combinations of float16 inputs: at the largest
    float16 values the result must still be right (computed here in float64, rounded once)."""
    key = "model.diffusion_model.out.2.weight"
    pa, pb = _pair_fp16(tmp_path, 65504.0, -65504.0, key)
    models = (pa, pb, pa) if mode in ("sum_twice", "triple_sum") else (pa, pb)
    res = merge(Recipe(models=models, mode=mode, alpha=alpha, beta=beta), None, hash_models=False)
    a, b = 65504.0, -65504.0
    want = {"weight_sum": a + alpha * (b - a), "sum_twice": (a + alpha * (b - a)) * (1 - beta) + beta * a,
            "triple_sum": a * (1 - alpha - beta) + b * alpha + a * beta}[mode]
    got = res.state_dict[key]
    assert torch.isfinite(got).all()
    assert torch.allclose(got.double(), torch.full_like(got, want, dtype=torch.float64), rtol=1e-3, atol=0.5)


def test_extrapolating_float16_weight_sum_that_overflows_still_stops(tmp_path, capsys):
    key = "model.diffusion_model.out.2.weight"
    pa, pb = _pair_fp16(tmp_path, 60000.0, -60000.0, key)
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "merge", pa, pb, "-o", out, "--alpha", "-1.5", "--quiet")
    assert code == 2 and key in err and "NaN or infinite" in err and not out.exists()
