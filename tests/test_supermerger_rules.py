"""The incumbent's rules that decide the numbers of a merge (REFERENCE §2, §4, §5), end to end on tiny
SD1, SD2 and SDXL checkpoints with every real key name.

Read in hako-mikan/sd-webui-supermerger, scripts/mergers/mergers.py at 0b1c491 (smerge, precosine,
cosine, tensormerge); the expectations below are written out again here from those rules, in numpy /
float64, not taken from lib_merge.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lib_merge.merge.engine import merge
from lib_merge.merge.recipe import Recipe
from tests.synth import write_checkpoint
from tests.test_arch import expected_block

U = "model.diffusion_model."
N_BLOCKS = {"sd1": 12, "sd2": 12, "sdxl": 9}
ADJUST_KEYS = [U + k for k in ("input_blocks.0.0.weight", "input_blocks.0.0.bias", "out.0.weight", "out.0.bias",
                               "out.2.weight", "out.2.bias")]


@pytest.fixture(scope="module", params=["sd1", "sd2", "sdxl"])
def trio(request, tmp_path_factory):
    arch = request.param
    d = tmp_path_factory.mktemp(arch)
    paths = []
    for i, name in enumerate("ABC"):
        p = d / f"{name}.safetensors"
        sd = write_checkpoint(p, arch, seed=10 + i)
        paths.append(str(p))
    return arch, paths


def _named_like_weights(key: str) -> bool:
    return "weight" in key or "bias" in key


def _non_weight_float_keys(sd: dict) -> list[str]:
    return [k for k, v in sd.items() if v.is_floating_point() and not _named_like_weights(k)]


# --- 1. only keys named like weights or biases are merged ---------------------------------------------

@pytest.mark.parametrize("recipe_kw", [
    dict(alpha=0.7),
    dict(mode="add_difference", alpha=0.7),
    dict(mode="triple_sum", alpha=0.3, beta=0.3),
    dict(calc="cosine_b", alpha=0.2),
    dict(calc="tensor", alpha=0.5, beta=0.25),
    dict(calc="self", alpha=0.5),
])
def test_non_weight_tensors_keep_a_in_every_mode(trio, tmp_path, recipe_kw):
    arch, paths = trio
    n = 1 if recipe_kw.get("calc") == "self" else 3 if recipe_kw.get("mode") in ("add_difference", "triple_sum") else 2
    out = tmp_path / "o.safetensors"
    merge(Recipe(tuple(paths[:n]), **recipe_kw), str(out))
    a, got = load_file(paths[0]), load_file(str(out))
    odd = _non_weight_float_keys(a)
    if arch in ("sd2", "sdxl"):  # the OpenCLIP text encoder's own tensors
        assert {k.rsplit(".", 1)[-1] for k in odd} == {"logit_scale", "positional_embedding", "text_projection"}
    for k in odd:
        assert torch.equal(got[k], a[k]), k
    # and the weights next to them were merged (the test can tell)
    te = next(k for k in a if k.startswith(("cond_stage_model.", "conditioner.")) and k.endswith("weight")
              and a[k].is_floating_point())
    assert not torch.equal(got[te], a[te])


def test_float_position_ids_keep_a(tmp_path):
    """Some SD1 checkpoints store the text encoder's position_ids as floats: still not merged."""
    key = "cond_stage_model.transformer.text_model.embeddings.position_ids"
    pa, pb = tmp_path / "A.safetensors", tmp_path / "B.safetensors"
    a = write_checkpoint(pa, "sd1", seed=1, extra={key: torch.arange(77, dtype=torch.float32).reshape(1, 77)})
    write_checkpoint(pb, "sd1", seed=2, extra={key: torch.arange(77, dtype=torch.float32).reshape(1, 77) + 3})
    out = tmp_path / "o.safetensors"
    merge(Recipe((str(pa), str(pb)), alpha=1.0), str(out))
    assert torch.equal(load_file(str(out))[key], a[key])


# --- 4. adjust never touches a key that is not merged ---------------------------------------------------

def test_adjust_leaves_excluded_keys_bit_for_bit(trio, tmp_path):
    arch, paths = trio
    last = f"OUT{N_BLOCKS[arch] - 1:02d}"
    out = tmp_path / "o.safetensors"
    # IN00 holds input_blocks.0.0, the last OUT block holds out.0 / out.2: every adjusted key is excluded
    merge(Recipe(tuple(paths[:2]), alpha=0.5, exclude=f"IN00 {last}", adjust="2,1,3,1,2,1,1,1"), str(out))
    a, got = load_file(paths[0]), load_file(str(out))
    for k in ADJUST_KEYS:
        assert torch.equal(got[k], a[k]), k


def test_adjust_still_applies_to_included_keys(trio, tmp_path):
    arch, paths = trio
    out = tmp_path / "o.safetensors"
    merge(Recipe(tuple(paths[:2]), alpha=0.5, include="IN00", adjust="2,0,0,0,0,0,0,0", dtype="fp32"), str(out))
    a, b, got = load_file(paths[0]), load_file(paths[1]), load_file(str(out))
    w = U + "input_blocks.0.0.weight"
    assert torch.allclose(got[w].double(), (a[w].double() + b[w].double()) / 2 * (1 - 0.02), atol=1e-6)
    o = U + "out.0.weight"  # not included: A, not adjusted
    assert torch.equal(got[o], a[o].float())


def test_train_difference_skips_adjust_where_b_equals_c(tmp_path):
    """The incumbent's `if B == C: keep A; continue` skips the key's adjust as well."""
    w = U + "input_blocks.0.0.weight"
    pa, pb, pc = (tmp_path / f"{n}.safetensors" for n in "ABC")
    a = write_checkpoint(pa, "sd1", seed=1)
    b = write_checkpoint(pb, "sd1", seed=2)
    write_checkpoint(pc, "sd1", seed=3, extra={w: b[w]})  # C has B's first conv
    out = tmp_path / "o.safetensors"
    merge(Recipe((str(pa), str(pb), str(pc)), calc="train_difference", alpha=1.0, adjust="3,3,0,0,0,0,0,0"), str(out))
    got = load_file(str(out))
    assert torch.equal(got[w], a[w])  # B == C there: A, unadjusted
    o = U + "out.0.weight"
    assert not torch.equal(got[o], a[o])  # B != C: merged and adjusted


# --- 3. cosine statistics over the incumbent's population ----------------------------------------------

def _torch_like_cos(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """torch.nn.CosineSimilarity(dim=0): each norm clamped to 1e-8, so a zero column gives 0."""
    nx = np.maximum(np.linalg.norm(x, axis=0), 1e-8)
    ny = np.maximum(np.linalg.norm(y, axis=0), 1e-8)
    return np.sum(x * y, axis=0) / (nx * ny)


def _samples(x: np.ndarray, y: np.ndarray, calc: str) -> np.ndarray:
    x, y = np.atleast_1d(x), np.atleast_1d(y)
    if calc == "cosine_a":
        xn = x / np.maximum(np.linalg.norm(x, axis=0, keepdims=True), 1e-12)
        yn = y / np.maximum(np.linalg.norm(y, axis=0, keepdims=True), 1e-12)
        return np.ravel(_torch_like_cos(xn, yn))
    flat = np.sum(x * y) / (np.linalg.norm(x) * np.linalg.norm(y))
    return np.ravel((_torch_like_cos(x, y) + flat) / 2)


def _s(x: np.ndarray, y: np.ndarray, calc: str) -> np.ndarray:
    x, y = np.atleast_1d(x), np.atleast_1d(y)
    if calc == "cosine_a":
        x = x / np.maximum(np.linalg.norm(x, axis=0, keepdims=True), 1e-12)
        y = y / np.maximum(np.linalg.norm(y, axis=0, keepdims=True), 1e-12)
    return (_torch_like_cos(x, y) + np.sum(x * y) / (np.linalg.norm(x) * np.linalg.norm(y))) / 2


def _incumbent_lo_hi(a: dict, b: dict, calc: str) -> tuple[float, float]:
    pop = [_samples(a[k].double().numpy(), b[k].double().numpy(), calc) for k in a
           if "first_stage_model" not in k and "model" in k and k in b]
    s = np.concatenate(pop)
    s = s[~np.isnan(s)]
    s = np.delete(s, np.where(s < np.percentile(s, 1, method="midpoint")))
    s = np.delete(s, np.where(s > np.percentile(s, 99, method="midpoint")))
    return s.min(), s.max()


@pytest.mark.parametrize("calc,alpha", [("cosine_a", -0.1), ("cosine_b", 0.1)])
def test_cosine_k_per_key_from_the_incumbents_population(trio, tmp_path, calc, alpha):
    arch, paths = trio
    out = tmp_path / "o.safetensors"
    # half the UNet excluded: those keys still count in the statistics, as in the incumbent
    merge(Recipe(tuple(paths[:2]), calc=calc, alpha=alpha, exclude="OUT00-OUT05", dtype="fp32"), str(out))
    a, b, got = load_file(paths[0]), load_file(paths[1]), load_file(str(out))
    lo, hi = _incumbent_lo_hi(a, b, calc)
    n = N_BLOCKS[arch]
    checked = 0
    for k in a:
        blk = expected_block(k, n)
        if blk is None or k.startswith("first_stage_model.") or not a[k].is_floating_point() or not _named_like_weights(k):
            continue
        if blk in [f"OUT{i:02d}" for i in range(6)]:
            assert torch.equal(got[k], a[k].float()), k
            continue
        x, y = a[k].double().numpy(), b[k].double().numpy()
        k_ = np.clip((_s(x, y, calc) - lo) / (hi - lo) - abs(alpha) if calc == "cosine_a" else
                     (_s(x, y, calc) - lo) / (hi - lo) - alpha, 0, 1)
        expected = y + k_ * (x - y)
        np.testing.assert_allclose(got[k].double().numpy(), expected, rtol=2e-4, atol=2e-4, err_msg=k)
        checked += 1
    assert checked > 100
