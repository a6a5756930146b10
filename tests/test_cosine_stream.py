"""cosine_a / cosine_b streamed: the same s, lo, hi and merged weights as the whole-tensor computation.

Two references, neither taken from lib_merge:
- `torch_s`: the incumbent's expression with the incumbent's torch functions (hako-mikan/
  sd-webui-supermerger scripts/mergers/mergers.py, precosine and cosine, 0b1c491: F.normalize along
  dim 0 for cosine_a, torch.nn.CosineSimilarity(dim=0), the flat dot over the product of torch.norm),
  on whole float32 tensors: what this project computed before the cosine modes streamed;
- `numpy_s`: the same formula in float64 numpy, eps written out as ATen applies them (each column
  norm clamped to 1e-12 by F.normalize; each norm clamped to 1e-8 by cosine_similarity).
The merges run with tiny chunk and slice sizes (every key in many row chunks, slices that do not
divide them, rows longer than a chunk) on tiny checkpoints with the real key names.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lib_merge.io.safetensors_io import SafetensorsReader, save_tensors
from lib_merge.merge import compute, pipeline
from lib_merge.merge.engine import merge, plan_merge
from lib_merge.merge.recipe import Recipe
from lib_merge.methods import REGISTRY
from lib_merge.methods.cosine import ColumnSums, as_columns
from tests.synth import state_dict

U = "model.diffusion_model."
CONV = U + "input_blocks.1.0.in_layers.2.weight"
BIAS = U + "out.2.bias"
FIRST = U + "input_blocks.0.0.weight"


def torch_s(a: torch.Tensor, b: torch.Tensor, normalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, column cosines) with the incumbent's torch calls on whole float32 tensors."""
    if normalise:
        a, b = F.normalize(a, p=2.0, dim=0), F.normalize(b, p=2.0, dim=0)
    cols = torch.nn.CosineSimilarity(dim=0)(a, b)
    flat = torch.dot(a.reshape(-1), b.reshape(-1)) / (torch.norm(a) * torch.norm(b))
    return (cols + flat) / 2, cols


def numpy_s(a: np.ndarray, b: np.ndarray, normalise: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.atleast_1d(a).astype(np.float64), np.atleast_1d(b).astype(np.float64)
    if normalise:
        a = a / np.maximum(np.sqrt(np.sum(a * a, axis=0, keepdims=True)), 1e-12)
        b = b / np.maximum(np.sqrt(np.sum(b * b, axis=0, keepdims=True)), 1e-12)
    na = np.maximum(np.sqrt(np.sum(a * a, axis=0)), 1e-8)
    nb = np.maximum(np.sqrt(np.sum(b * b, axis=0)), 1e-8)
    cols = np.sum(a * b, axis=0) / (na * nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        flat = np.sum(a * b) / (np.sqrt(np.sum(a * a)) * np.sqrt(np.sum(b * b)))
    return (cols + flat) / 2, cols


def streamed(method_id: str, a: torch.Tensor, b: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, samples) from sums fed `rows` rows at a time, as the first pass feeds them."""
    x, y = as_columns(a), as_columns(b)
    sums = ColumnSums(x.shape[1])
    for r in range(0, x.shape[0], rows):
        sums.add(x[r:r + rows].contiguous(), y[r:r + rows].contiguous())
    return REGISTRY[method_id].from_sums(sums)


def _pairs():
    g = torch.Generator().manual_seed(5)

    def r(*shape):
        return torch.randn(shape, generator=g)

    a, b = r(16, 6, 3, 3), r(16, 6, 3, 3)
    b = 0.6 * a + b  # correlated: s spreads over a real range
    a[:, 2] = 0.0  # a zero column block in A
    b[:, 4, 1, 1] = 0.0  # one zero column in B
    a[:, 5, 0, 0] = 1e-15 * r(16)  # under F.normalize's eps: its normalised column is shorter than 1
    yield "conv", a, b
    tall = r(3000, 4)  # a token embedding's shape: many rows, few columns
    yield "tall", tall, tall + 0.3 * r(3000, 4)
    raw = r(40, 7)
    raw[:, 3] = 1e-10 * r(40)  # a column norm under cosine_similarity's eps (un-normalised: cosine_b)
    yield "tiny column", raw, r(40, 7)
    yield "1-d", r(10), r(10)
    yield "0-d", torch.tensor(2.0), torch.tensor(-3.0)
    yield "zero A", torch.zeros(5, 3), r(5, 3)


@pytest.mark.parametrize("method_id", ["cosine_a", "cosine_b"])
@pytest.mark.parametrize("rows", [1, 7, 10 ** 6])
def test_streamed_s_equals_the_whole_tensor_torch_and_numpy_values(method_id, rows):
    normalise = method_id == "cosine_a"
    for name, a, b in _pairs():
        s, samples = streamed(method_id, a, b, rows)
        ref_s, ref_cols = torch_s(a, b, normalise)
        np_s, np_cols = numpy_s(a.numpy(), b.numpy(), normalise)
        want_samples = ref_cols if normalise else ref_s
        for got, want, ref in ((s, ref_s, np_s), (samples, want_samples, np_cols if normalise else np_s)):
            assert got.dtype == torch.float32 and got.numel() == max(1, math.prod(a.shape[1:])), name
            got = got.reshape(np.shape(ref)).double().numpy()
            np.testing.assert_allclose(got, want.double().numpy(), rtol=2e-6, atol=2e-7, equal_nan=True, err_msg=name)
            np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-7, equal_nan=True, err_msg=name)


def test_degenerate_columns_keep_todays_values():
    """Zero columns have cosine 0 (torch's eps), a whole zero tensor has a NaN flat cosine."""
    _, a, b = next(_pairs())
    s, cols = streamed("cosine_a", a, b, 3)
    cols = cols.reshape(6, 3, 3)
    assert torch.equal(cols[2], torch.zeros(3, 3)) and cols[4, 1, 1] == 0.0
    assert torch.isfinite(s).all()
    z, y = torch.zeros(5, 3), torch.randn(5, 3)
    assert torch.isnan(streamed("cosine_b", z, y, 2)[1]).all()  # cosine_b's samples: s, all NaN
    s_a, samples_a = streamed("cosine_a", z, y, 2)
    assert torch.isnan(s_a).all() and torch.equal(samples_a, torch.zeros(3))


# --------------------------------------------------------------------------- end to end

def _write(path, sd):
    save_tensors(str(path), sd)
    return str(path)


def _models(tmp_path, **kw):
    """A and B (tiny SD1, fp16) with degenerate keys: a zero column, a zero tensor in A, a 0-d weight."""
    a, b = state_dict("sd1", 31, **kw), state_dict("sd1", 32)
    a[CONV][:, 3] = 0.0
    a[BIAS] = torch.zeros_like(a[BIAS])  # a whole zero tensor: keeps A
    b[CONV] = (0.5 * a[CONV].float() + b[CONV].float()).half()
    return _write(tmp_path / "A.safetensors", a), _write(tmp_path / "B.safetensors", b)


def _plain(sd: dict, key: str) -> torch.Tensor:
    return sd[key].double()


def _expected(pa: str, pb: str, calc: str, alpha: float, value=_plain) -> dict[str, np.ndarray]:
    """Every merged key in float64: lo/hi over the incumbent's population, then B + k·(A - B).
    `value(sd, key)`: the weight a key stands for (fp8 scaled files: times its scale)."""
    a, b = load_file(pa), load_file(pb)
    plan = plan_merge(Recipe((pa, pb), calc=calc, alpha=alpha, dtype="fp32"))
    normalise = calc == "cosine_a"

    def pair(k, ch):
        x, y = value(a, k).numpy(), value(b, k).numpy()
        return (x[:, :ch], y[:, :ch]) if ch else (x, y)

    channels = {kp.key: kp.channels for kp in plan.keys}
    pop = []
    for k in a:
        if "first_stage_model" in k or "model" not in k or k not in b:
            continue
        if k.endswith((".scale_weight", ".scale_input")) or k.endswith("scaled_fp8"):  # scale bookkeeping
            continue
        if a[k].shape != b[k].shape and not channels.get(k):
            continue
        s, cols = numpy_s(*pair(k, channels.get(k)), normalise)
        pop.append(np.ravel(cols if normalise else s))
    pool = np.concatenate(pop)
    pool = pool[~np.isnan(pool)]
    pool = pool[pool >= np.percentile(pool, 1, method="midpoint")]
    pool = pool[pool <= np.percentile(pool, 99, method="midpoint")]
    lo, hi = pool.min(), pool.max()
    out = {}
    for kp in plan.keys:
        if not kp.merge:
            continue
        x, y = pair(kp.key, kp.channels)
        s, _ = numpy_s(x, y, normalise)
        with np.errstate(invalid="ignore"):
            k = np.clip((s - lo) / (hi - lo) - (abs(alpha) if normalise else alpha), 0, 1)
        k = np.where(np.isnan(s), 1.0, k)
        merged = np.reshape(y + k * (x - y), x.shape)
        if kp.channels:
            full = value(a, kp.key).numpy().copy()
            full[:, :kp.channels] = merged
            merged = full
        out[kp.key] = merged
    return out


def _merge(pa, pb, calc, alpha, path, chunk=None, slice_=None, monkeypatch=None):
    if chunk:
        monkeypatch.setattr(pipeline, "CHUNK", chunk)
        monkeypatch.setattr(compute, "SLICE", slice_)
    merge(Recipe((pa, pb), calc=calc, alpha=alpha, dtype="fp32"), str(path))
    if chunk:
        monkeypatch.undo()
    return load_file(str(path))


@pytest.mark.parametrize("calc,alpha", [("cosine_a", -0.2), ("cosine_b", 0.15)])
def test_streamed_merge_matches_numpy_and_unchunked(tmp_path, monkeypatch, calc, alpha):
    pa, pb = _models(tmp_path)
    small = _merge(pa, pb, calc, alpha, tmp_path / "small.safetensors", 96, 40, monkeypatch)
    default = _merge(pa, pb, calc, alpha, tmp_path / "default.safetensors")
    want = _expected(pa, pb, calc, alpha)
    a = load_file(pa)
    assert len(want) > 500
    for key, got in small.items():
        np.testing.assert_allclose(got.numpy(), default[key].numpy(), rtol=1e-6, atol=1e-6, err_msg=key)
        if key in want:
            np.testing.assert_allclose(got.double().numpy(), want[key], rtol=1e-5, atol=1e-5, err_msg=key)
        else:
            assert torch.equal(got, a[key].to(got.dtype)), key
    assert torch.equal(small[BIAS], a[BIAS].float())  # the zero tensor: A
    kept = want[CONV][:, 3]  # the zero column of A: merged like any other (k from s there)
    assert np.isfinite(kept).all()


@pytest.mark.parametrize("calc", ["cosine_a", "cosine_b"])
def test_inpainting_first_conv_streamed(tmp_path, monkeypatch, calc):
    pa, pb = _models(tmp_path, in_channels=9)
    got = _merge(pa, pb, calc, 0.1, tmp_path / "o.safetensors", 96, 40, monkeypatch)
    want = _expected(pa, pb, calc, 0.1)
    a = load_file(pa)
    assert got[FIRST].shape == a[FIRST].shape and want[FIRST].shape[1] == 9
    np.testing.assert_allclose(got[FIRST].double().numpy(), want[FIRST], rtol=1e-5, atol=1e-5)
    assert torch.equal(got[FIRST][:, 4:], a[FIRST][:, 4:].float())
    for key in (CONV, U + "middle_block.1.proj_in.weight"):
        np.testing.assert_allclose(got[key].double().numpy(), want[key], rtol=1e-5, atol=1e-5)


def test_both_passes_read_in_bounded_pieces(tmp_path, monkeypatch):
    """No whole-tensor read: every read is at most a chunk, or one row when a row is longer."""
    pa, pb = _models(tmp_path)
    reads: list[tuple[str, int]] = []
    real_read = SafetensorsReader.read_bytes

    def spy(self, key, out, first=0, count=None):
        view = real_read(self, key, out, first, count)
        reads.append((key, len(view)))
        return view

    def no_get(self, key):
        raise AssertionError(f"whole read of {key}")

    monkeypatch.setattr(SafetensorsReader, "read_bytes", spy)
    monkeypatch.setattr(SafetensorsReader, "get", no_get)
    a = load_file(pa)
    _merge(pa, pb, "cosine_a", 0.3, tmp_path / "o.safetensors", 96, 40, monkeypatch)
    assert len(reads) > 2 * len(a)
    for key, nbytes in reads:
        t = a[key]
        row = math.prod(t.shape[1:]) if t.ndim else 1
        assert nbytes // t.element_size() <= max(96, row), key
    assert any(nbytes // a[key].element_size() > 96 for key, nbytes in reads)  # rows longer than a chunk


@pytest.mark.parametrize("calc", ["cosine_a", "cosine_b"])
def test_fp8_scaled_inputs_are_descaled_in_both_passes(tmp_path, monkeypatch, calc):
    """Comfy's scaled fp8 Flux (tests/test_flux_scaled.py): weights are fp8 × scale in the sums and
    in the merge (s itself does not change with a per-tensor scale: only the merged values show it);
    the T5 keys (no "model" in their names) are merged outside the population."""
    from tests.test_flux_scaled import real, scaled_flux
    pa, pb = _write(tmp_path / "A.safetensors", scaled_flux(7)), _write(tmp_path / "B.safetensors", scaled_flux(8))
    got = _merge(pa, pb, calc, 0.2, tmp_path / "o.safetensors", 96, 40, monkeypatch)
    want = _expected(pa, pb, calc, 0.2, real)
    scaled = [k for k in want if k.endswith(".weight") and k[:-len(".weight")] + ".scale_weight" in load_file(pa)]
    outside = [k for k in want if "model" not in k]
    assert scaled and outside
    for key, w in want.items():
        np.testing.assert_allclose(got[key].double().numpy(), w, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("calc", ["cosine_a", "cosine_b"])
def test_float16_extremes_stay_finite_without_the_nan_pass(tmp_path, calc):
    """The cosine modes are convex (every k in [0, 1]), so a float16 merge skips the NaN/inf pass:
    at the largest float16 values the result must still be finite and right."""
    key = U + "out.2.weight"
    a, b = state_dict("sd1", 41), state_dict("sd1", 42)
    a[key] = torch.full_like(a[key], 65504.0)
    b[key] = torch.full_like(b[key], -65504.0)
    b[key][:, 0] = 65504.0  # one column that agrees: k differs between columns
    pa, pb = _write(tmp_path / "A.safetensors", a), _write(tmp_path / "B.safetensors", b)
    res = merge(Recipe((pa, pb), calc=calc, alpha=0.0), None, hash_models=False)
    got = res.state_dict[key]
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    want = _expected(pa, pb, calc, 0.0)[key]
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-3, atol=0.5)


def _no_reader_left() -> bool:
    import threading
    return not any(t.name == "cosine-reader" and t.is_alive() for t in threading.enumerate())


def test_cancel_during_the_similarity_pass_stops_its_reader(tmp_path, monkeypatch):
    from lib_merge.errors import Cancelled
    from lib_merge.merge.engine import CancelToken
    pa, pb = _models(tmp_path)
    monkeypatch.setattr(pipeline, "CHUNK", 96)  # many chunks: the reader is surely mid-way
    token, seen = CancelToken(), []

    def progress(done, total, what):
        seen.append(what)
        if what == "similarity statistics" and done == 20:
            token.cancel()

    out = tmp_path / "o.safetensors"
    with pytest.raises(Cancelled):
        merge(Recipe((pa, pb), calc="cosine_b", alpha=0.3), str(out), progress=progress, cancel=token)
    assert "merging" not in seen and not out.exists() and _no_reader_left()


def test_a_read_error_in_the_similarity_pass_is_raised_not_hung(tmp_path, monkeypatch):
    from lib_merge.errors import ModelFileError
    pa, pb = _models(tmp_path)
    real_read = SafetensorsReader.read_bytes

    def failing(self, key, out, first=0, count=None):
        if key == CONV and self.path == pb:
            raise ModelFileError("B.safetensors is truncated (unexpected end of file)", "download it again")
        return real_read(self, key, out, first, count)

    monkeypatch.setattr(SafetensorsReader, "read_bytes", failing)
    out = tmp_path / "o.safetensors"
    with pytest.raises(ModelFileError, match="truncated"):
        merge(Recipe((pa, pb), calc="cosine_a", alpha=0.3), str(out))
    assert not out.exists() and _no_reader_left()


def test_fp8_scaled_output_gets_new_scales_from_the_streamed_merge(tmp_path, monkeypatch):
    """dtype keep on a scaled A: each merged weight written fp8 with scale amax / 448 (e4m3), its
    values within half an e4m3 step of the float64 cosine merge."""
    from tests.test_flux_scaled import real, scaled_flux
    pa, pb = _write(tmp_path / "A.safetensors", scaled_flux(7)), _write(tmp_path / "B.safetensors", scaled_flux(8))
    monkeypatch.setattr(pipeline, "CHUNK", 96)
    monkeypatch.setattr(compute, "SLICE", 40)
    merge(Recipe((pa, pb), calc="cosine_a", alpha=0.2), str(tmp_path / "o.safetensors"))
    monkeypatch.undo()
    got = load_file(str(tmp_path / "o.safetensors"))
    want = _expected(pa, pb, "cosine_a", 0.2, real)
    layers = [k[:-len(".weight")] for k in want if k[:-len(".weight")] + ".scale_weight" in got]
    assert len(layers) > 10
    for layer in layers:
        w = torch.from_numpy(want[layer + ".weight"])
        scale = float(got[layer + ".scale_weight"])
        assert scale == pytest.approx(float(w.abs().max()) / 448.0, rel=1e-5)
        back = got[layer + ".weight"].double() * scale
        assert torch.all((back - w).abs() <= w.abs() * 2 ** -4 + scale * 2 ** -9), layer


def test_adjusted_keys_take_the_first_pass_k(tmp_path):
    """Keys with adjust keep the whole-tensor path; their k comes from the same first pass. Adjust
    "2,0,..." scales the first conv's weight by 1 - 0.02 (tests/test_supermerger_rules.py) and leaves
    the other adjusted keys (out.*) as merged."""
    pa, pb = _models(tmp_path)
    plan = plan_merge(Recipe((pa, pb), calc="cosine_b", alpha=0.1, adjust="2,0,0,0,0,0,0,0"))
    assert {FIRST, U + "out.2.weight", U + "out.0.bias"} <= {kp.key for kp in plan.keys if kp.adjust}
    got = _merge(pa, pb, "cosine_b", 0.1, tmp_path / "o.safetensors")
    adj = tmp_path / "adj.safetensors"
    merge(Recipe((pa, pb), calc="cosine_b", alpha=0.1, dtype="fp32", adjust="2,0,0,0,0,0,0,0"), str(adj))
    with_adjust = load_file(str(adj))
    want = _expected(pa, pb, "cosine_b", 0.1)
    np.testing.assert_allclose(with_adjust[FIRST].double().numpy(), want[FIRST] * (1 - 0.02), rtol=1e-5, atol=1e-5)
    for key in (U + "out.2.weight", U + "out.0.bias"):
        np.testing.assert_allclose(with_adjust[key].double().numpy(), want[key], rtol=1e-5, atol=1e-5)
        assert torch.equal(with_adjust[key], got[key])


def test_first_merge_hashes_from_both_passes_reads(tmp_path, monkeypatch):
    """A first cosine merge: the inputs' sha256 (hashlib's, computed here) come from the reads of the
    similarity pass and the merge pass, which read the same bytes twice; no separate hashing pass."""
    import hashlib
    import json

    from lib_merge.io import hashing
    from lib_merge.io.hashing import HashCache
    from lib_merge.io.safetensors_io import read_header

    def boom(*a, **k):
        raise AssertionError("a separate hashing pass was made")

    monkeypatch.setattr(hashing, "sha256_file", boom)
    monkeypatch.setattr(pipeline, "CHUNK", 96)
    pa, pb = _models(tmp_path)
    out = tmp_path / "o.safetensors"
    res = merge(Recipe((pa, pb), calc="cosine_a", alpha=0.3), str(out), hash_cache=HashCache(str(tmp_path / "h.json")))
    want = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (pa, pb)]
    assert res.hashes == want
    assert json.loads(read_header(str(out))[1]["sd_merge_recipe"])["model_hashes"] == want
