"""The 16-bit fast path (MergeMethod.merge_native) and early write-out (io/writeback.py).

The fast path must give the bits of the float32 path it replaces (convert to float32, merge, cast),
which tests/test_engine.py checks against float64 expectations; here the two are compared bit for bit
on the values where rounding is delicate: ±65504, subnormals, signed zeros, ties, odd-sized tails.
"""
from __future__ import annotations

import io
import os
import sys

import pytest
import torch

from lib_merge.io import writeback
from lib_merge.io.safetensors_io import SafetensorsWriter, save_tensors
from lib_merge.merge.engine import merge
from lib_merge.merge.recipe import Recipe
from lib_merge.methods import REGISTRY
from lib_merge.methods.base import KeyContext, Weights

EDGES = [65504.0, -65504.0, 0.0, -0.0, 6e-8, -6e-8, 1e-4, 60000.0, 0.5, 2049.0, 2051.0, -3.0]


def inputs(dtype: torch.dtype, n: int, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = (torch.randn(n, generator=g) * scale).to(dtype)
    b = (torch.randn(n, generator=g) * scale).to(dtype)
    if dtype == torch.float16:
        a[:len(EDGES)] = torch.tensor(EDGES, dtype=dtype)
        b[:len(EDGES)] = torch.tensor(list(reversed(EDGES)), dtype=dtype)
    return a, b


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16)


def float32_path(method_id: str, a, b, w: Weights, key: str, dtype) -> torch.Tensor:
    """What the engine did before the fast path: float32 copies, merge, one cast."""
    m = REGISTRY[method_id]
    args = (a.float(), b.float(), None) if m.n_models == 2 else (a.float(), None, None)
    return m.merge(*args, w, KeyContext(key)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scale", [0.05, 1.0, 3000.0])
@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.3, 0.5, 0.7, 0.999, 1.0, 1.3, -0.5])
def test_weight_sum_native_equals_float32_path(dtype, scale, alpha):
    a, b = inputs(dtype, (1 << 16) + 7, scale, seed=int(alpha * 100) + 7)  # + 7: a tail past the vector width
    w = Weights(alpha=alpha)
    out = torch.empty_like(a)
    assert REGISTRY["weight_sum"].merge_native(a, b, None, w, KeyContext("k"), out)
    assert torch.equal(bits(out), bits(float32_path("weight_sum", a, b, w, "k", dtype)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("alpha", [0.0, 0.88, 0.9, 1.1, 0.3333, -0.7, 2.5])
@pytest.mark.parametrize("key", ["model.diffusion_model.output_blocks.5.1.transformer_blocks.0.attn1.to_q.weight",
                                 "model.diffusion_model.output_blocks.5.1.transformer_blocks.0.attn1.to_out.0.weight",
                                 "model.diffusion_model.output_blocks.5.1.norm.weight"])
def test_self_native_equals_float32_path(dtype, alpha, key):
    a, _ = inputs(dtype, (1 << 15) + 3, 30.0, seed=3)
    w = Weights(alpha=alpha)
    out = torch.empty_like(a)
    assert REGISTRY["self"].merge_native(a, None, None, w, KeyContext(key), out)
    assert torch.equal(bits(out), bits(float32_path("self", a, None, w, key, dtype)))


def test_methods_without_a_fused_kernel_decline():
    a, b = inputs(torch.float16, 64, 1.0, seed=1)
    out = torch.empty_like(a)
    for mid in ("add_difference", "triple_sum", "sum_twice", "train_difference"):
        m = REGISTRY[mid]
        c = b if m.n_models == 3 else None
        assert m.merge_native(a, b, c, Weights(alpha=0.5, beta=0.25), KeyContext("k"), out) is False, mid


@pytest.mark.parametrize("dtype,calc,alpha", [(torch.float16, "normal", 0.35), (torch.bfloat16, "normal", 0.35),
                                              (torch.float16, "normal", 1.4), (torch.float16, "self", 0.9)])
def test_engine_output_is_byte_identical_without_the_fast_path(tmp_path, monkeypatch, sd1_models, dtype, calc, alpha):
    """A whole merge through the engine (chunked: CHUNK made small) with and without merge_native."""
    from lib_merge.merge import pipeline
    from safetensors.torch import load_file
    paths = []
    for i, p in enumerate(sd1_models[:2]):
        sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_file(p).items()}
        paths.append(str(tmp_path / f"{i}.safetensors"))
        save_tensors(paths[-1], sd)
    recipe = Recipe(tuple(paths[:1] if calc == "self" else paths), alpha=alpha, calc=calc)
    monkeypatch.setattr(pipeline, "CHUNK", 1000)
    merge(recipe, str(tmp_path / "fast.safetensors"), hash_models=False)
    for m in REGISTRY.values():
        monkeypatch.setattr(type(m), "merge_native", lambda self, *a, **k: False)
    merge(recipe, str(tmp_path / "slow.safetensors"), hash_models=False)
    assert (tmp_path / "fast.safetensors").read_bytes() == (tmp_path / "slow.safetensors").read_bytes()


def test_extrapolation_overflow_still_stops_on_the_fast_path(tmp_path, sd1_models):
    """alpha 3 is not convex: the NaN/inf check still runs after the fused kernel and names the key."""
    from lib_merge.errors import MergeError
    a = {"model.diffusion_model.input_blocks.0.0.weight": torch.full((4, 4), 60000.0, dtype=torch.float16)}
    b = {"model.diffusion_model.input_blocks.0.0.weight": torch.full((4, 4), -60000.0, dtype=torch.float16)}
    from safetensors.torch import load_file
    base = {k: v for k, v in load_file(sd1_models[0]).items()}
    pa, pb = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    save_tensors(pa, {**base, **a})
    save_tensors(pb, {**base, **b})
    with pytest.raises(MergeError, match="input_blocks.0.0.weight"):
        merge(Recipe((pa, pb), alpha=3.0), str(tmp_path / "o.safetensors"), hash_models=False)
    assert not (tmp_path / "o.safetensors").exists()


# ----------------------------------------------------------------------------- early write-out

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_writer_asks_for_write_out_as_it_goes(tmp_path, monkeypatch):
    calls = []
    real = writeback._SYNC_FILE_RANGE
    assert real is not None  # glibc has it on every Linux the webuis run on

    def spy(fd, off, n, flags):
        calls.append((off, n, flags))
        return real(fd, off, n, flags)

    monkeypatch.setattr(writeback, "_SYNC_FILE_RANGE", spy)
    monkeypatch.setattr(writeback, "STEP", 4096)
    monkeypatch.setattr(writeback, "LAG", 100)
    t = {f"k{i}": torch.arange(5000 * (i + 1), dtype=torch.float32) for i in range(4)}
    save_tensors(str(tmp_path / "o.safetensors"), t)
    assert calls and all(f == writeback.SYNC_FILE_RANGE_WRITE for _, _, f in calls)
    # contiguous stretches from the start, never past the end of the file
    ends = 0
    for off, n, _ in calls:
        assert off == ends and n >= 4096
        ends = off + n
    assert ends <= os.path.getsize(tmp_path / "o.safetensors")
    from safetensors.torch import load_file
    got = load_file(str(tmp_path / "o.safetensors"))
    assert all(torch.equal(got[k], v) for k, v in t.items())


def test_write_out_is_optional(tmp_path, monkeypatch):
    """No fd (an in-memory file), no libc call, or a call that fails: the bytes are the same."""
    t = {"a": torch.arange(100000, dtype=torch.float32), "b": torch.ones(3, dtype=torch.float16)}
    monkeypatch.setattr(writeback, "STEP", 4096)
    bio = io.BytesIO()
    save_tensors(bio, t)
    monkeypatch.setattr(writeback, "_SYNC_FILE_RANGE", lambda *a: -1)
    save_tensors(str(tmp_path / "fail.safetensors"), t)
    monkeypatch.setattr(writeback, "_SYNC_FILE_RANGE", None)
    save_tensors(str(tmp_path / "none.safetensors"), t)
    assert bio.getvalue() == (tmp_path / "fail.safetensors").read_bytes() == (tmp_path / "none.safetensors").read_bytes()
    w = SafetensorsWriter(io.BytesIO(), [("a", "F32", (1,))], None)
    assert w._writeback.fd is None
