"""fp8 inputs: the bulk decoder (merge/fp8_codec.py) and the two-thread compute of fp8 chunks.

Expected values come from torch's own fp8 conversions (element by element in C++) and the REFERENCE
formulas, never from the code under test.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from lib_merge.io.safetensors_io import save_tensors
from lib_merge.merge import compute, pipeline
from lib_merge.merge.engine import merge
from lib_merge.merge.fp8_codec import Fp8Decoder
from lib_merge.merge.recipe import Recipe

FP8 = [getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n)]
pytestmark = pytest.mark.skipif(len(FP8) < 2, reason="this torch has no fp8 dtypes")


def same_values(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Equal as numbers, NaN where NaN, and the sign of zero kept."""
    nan = torch.isnan(want)
    return (torch.equal(torch.isnan(got), nan) and torch.equal(got[~nan], want[~nan])
            and torch.equal(torch.signbit(got[~nan]), torch.signbit(want[~nan])))


@pytest.mark.parametrize("dtype", FP8)
@pytest.mark.parametrize("n", [1, 7, 256, 1000, 4099])
def test_every_code_decodes_as_torch_does(dtype, n):
    codes = (torch.arange(n, dtype=torch.int64) * 37 % 256).to(torch.uint8)  # every code once n >= 256
    src = codes.view(dtype)
    out = torch.full((n,), 12345.0)
    Fp8Decoder(4099)(out, src)
    assert same_values(out, src.float())


@pytest.mark.parametrize("dtype", FP8)
def test_decoding_a_view_in_the_middle_of_a_buffer(dtype):
    codes = torch.arange(256, dtype=torch.int64).to(torch.uint8).repeat(3)
    src = codes.view(dtype)[100:613]  # not at the start of its storage: the decoder reads the view
    out = torch.empty(513)
    Fp8Decoder(1024)(out, src)
    assert same_values(out, src.float())


def fp8_models(tmp_path, sd1_models, dtype):
    """Two tiny SD1 checkpoints (real keys) in fp8, with every code in the first big tensor of A."""
    sds = []
    for p in sd1_models[:2]:
        sds.append({k: (v.float().mul(50).clamp(-400, 400).to(dtype) if v.is_floating_point() else v)
                    for k, v in load_file(p).items()})
    big = max((k for k, v in sds[0].items() if v.is_floating_point()), key=lambda k: sds[0][k].numel())
    t = sds[0][big].view(-1).view(torch.uint8)
    t[:256] = torch.arange(256, dtype=torch.int64).to(torch.uint8)  # NaN codes, both zeros, subnormals
    paths = [str(tmp_path / f"{n}.safetensors") for n in "AB"]
    for sd, p in zip(sds, paths):
        save_tensors(p, sd)
    return paths, sds


@pytest.mark.parametrize("dtype", FP8)
# convex (no clamp, no check) and extrapolating: clamped to the fp8 range, not NaN (REFERENCE, fp8 out);
# A holds NaN codes, whose check used to raise NotImplementedError (torch has no isfinite for fp8)
@pytest.mark.parametrize("alpha", [0.3, 1.7])
@pytest.mark.parametrize("cores", [1, 2])
def test_fp8_merge_equals_the_reference_formula(tmp_path, sd1_models, monkeypatch, dtype, alpha, cores):
    paths, sds = fp8_models(tmp_path, sd1_models, dtype)
    monkeypatch.setattr(pipeline, "CHUNK", 1000)  # many jobs (4000 fp8 elements each) ...
    monkeypatch.setattr(compute, "SLICE", 256)  # ... each split in two halves across the cores, in slices
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: cores)
    out = tmp_path / "o.safetensors"
    merge(Recipe(tuple(paths), alpha=alpha), str(out), hash_models=False)
    got = load_file(str(out))
    lim = torch.finfo(dtype).max
    checked = 0
    for k, a in sds[0].items():
        if not a.is_floating_point() or k.startswith("first_stage_model."):
            continue
        want = torch.lerp(a.float(), sds[1][k].float(), alpha).clamp(-lim, lim).to(dtype)
        assert got[k].dtype == dtype
        assert same_values(got[k].float(), want.float()), k
        checked += 1
    assert checked > 800


@pytest.mark.parametrize("dtype", FP8)
@pytest.mark.parametrize("alpha,blocks", [(0.35, None), (1.6, None), (0.5, "GRAD_V")])
def test_pair_table_gives_the_bytes_of_the_slices(tmp_path, sd1_models, monkeypatch, dtype, alpha, blocks):
    """A weight sum of fp8 inputs looks each element up in a 65536-entry table made by the float32
    slices; with the table switched off the output must be byte for byte the same (MBW: one table per
    block weight)."""
    from lib_merge.methods import REGISTRY
    paths, _ = fp8_models(tmp_path, sd1_models, dtype)
    monkeypatch.setattr(pipeline, "CHUNK", 1000)
    recipe = Recipe(tuple(paths), alpha=alpha, alpha_blocks=blocks or "")
    merge(recipe, str(tmp_path / "table.safetensors"), hash_models=False)
    monkeypatch.setattr(type(REGISTRY["weight_sum"]), "pairwise", False)
    merge(recipe, str(tmp_path / "slices.safetensors"), hash_models=False)
    assert (tmp_path / "table.safetensors").read_bytes() == (tmp_path / "slices.safetensors").read_bytes()
