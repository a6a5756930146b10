"""Merge methods: exact values on tiny tensors, numpy re-implementations on random ones.

Expected values never come from lib_merge itself: they are worked out by hand (dyadic numbers, so
float32 is exact and torch.equal applies) or recomputed here in float64 numpy from REFERENCE §2.
Every call hands the method clones, because methods may write into their inputs.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_merge.errors import RecipeError
from lib_merge.methods import CALCS, MODES, REGISTRY, KeyContext, Weights, resolve

KEY = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
CTX = KeyContext(KEY)
ELEMENTWISE = sorted(mid for mid, m in REGISTRY.items() if m.elementwise)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def run(method_id: str, a, b=None, c=None, w: Weights | None = None, ctx: KeyContext = CTX) -> torch.Tensor:
    """The method on clones of the inputs (it may overwrite them), checked for shape and dtype."""
    method = REGISTRY[method_id]
    w = w or Weights(alpha=0.5)
    clone = (lambda x: None if x is None else x.clone())
    out = method.merge(clone(a), clone(b), clone(c), w, ctx)
    assert out.shape == a.shape and out.dtype == torch.float32
    return out


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def inputs_for(method_id: str, a, b, c):
    n = REGISTRY[method_id].n_models
    return a, (b if n >= 2 else None), (c if n >= 3 else None)


def incumbent_range(samples: np.ndarray) -> tuple[float, float]:
    """lo/hi as the incumbent's precosine takes them (REFERENCE §2): NaN dropped, values under the 1st
    percentile removed, then of the rest those over the 99th (midpoint), then min and max."""
    s = samples[~np.isnan(samples)]
    s = np.delete(s, np.where(s < np.percentile(s, 1, method="midpoint")))
    s = np.delete(s, np.where(s > np.percentile(s, 99, method="midpoint")))
    return float(s.min()), float(s.max())


def cosine_ctx(method_id: str, pairs, key: str = KEY) -> KeyContext:
    """lo/hi from these keys' samples (each method's own stat), by the incumbent's rule."""
    samples = np.concatenate([REGISTRY[method_id].stat(a.clone(), b.clone()).numpy() for a, b in pairs])
    lo, hi = incumbent_range(samples.astype(np.float64))
    return KeyContext(key, lo=lo, hi=hi)


# ---------------------------------------------------------------------------------------------
# registry and resolve()

EXPECTED_TABLE = {
    # id: (label, mode, n_models, elementwise, needs_stats)
    "weight_sum": ("Weight sum", "weight_sum", 2, True, False),
    "add_difference": ("Add difference", "add_difference", 3, True, False),
    "triple_sum": ("Triple sum", "triple_sum", 3, True, False),
    "sum_twice": ("Sum Twice", "sum_twice", 3, True, False),
    "cosine_a": ("Cosine A", "weight_sum", 2, False, True),
    "cosine_b": ("Cosine B", "weight_sum", 2, False, True),
    "train_difference": ("Train difference", "add_difference", 3, True, False),
    "smooth_add": ("Smooth add", "add_difference", 3, False, False),
    "extract": ("Extract", "add_difference", 3, False, False),
    "tensor": ("Tensor", "weight_sum", 2, False, False),
    "tensor2": ("Tensor 2", "weight_sum", 2, False, False),
    "self": ("Self", "self", 1, True, False),
}


def test_registry_table():
    assert set(REGISTRY) == set(EXPECTED_TABLE)
    for mid, (label, mode, n, elementwise, stats) in EXPECTED_TABLE.items():
        m = REGISTRY[mid]
        assert (m.id, m.label, m.mode, m.n_models, m.elementwise, m.needs_stats) == (
            mid, label, mode, n, elementwise, stats), mid


@pytest.mark.parametrize("mode", MODES)
def test_resolve_normal_is_the_mode(mode):
    assert resolve(mode).id == mode
    assert resolve(mode, "normal").id == mode


def test_resolve_defaults_to_weight_sum():
    assert resolve(None).id == "weight_sum"


@pytest.mark.parametrize("calc", [c for c in CALCS if c != "normal"])
def test_resolve_calc_with_its_mode_or_none(calc):
    method = REGISTRY[calc]
    assert resolve(None, calc) is method
    if method.mode != "self":
        assert resolve(method.mode, calc) is method


@pytest.mark.parametrize("calc,mode", [("cosine_a", "add_difference"), ("cosine_b", "triple_sum"),
                                       ("train_difference", "weight_sum"), ("smooth_add", "sum_twice"),
                                       ("extract", "weight_sum"), ("tensor", "add_difference"),
                                       ("tensor2", "sum_twice")])
def test_resolve_mismatched_mode(calc, mode):
    with pytest.raises(RecipeError) as err:
        resolve(mode, calc)
    assert f"--mode {REGISTRY[calc].mode}" in str(err.value)


@pytest.mark.parametrize("mode", MODES)
def test_resolve_self_works_with_any_mode(mode):
    assert resolve(mode, "self").id == "self"


@pytest.mark.parametrize("calc,near", [("cosin_a", "cosine_a"), ("train_diference", "train_difference"),
                                       ("tensor3", "tensor"), ("smoothadd", "smooth_add")])
def test_resolve_unknown_calc_suggests(calc, near):
    with pytest.raises(RecipeError) as err:
        resolve(None, calc)
    assert f"did you mean {near!r}" in str(err.value)
    assert "Fix:" in str(err.value)


@pytest.mark.parametrize("mode,near", [("weight_summ", "weight_sum"), ("add_diff", "add_difference"),
                                       ("sumtwice", "sum_twice")])
def test_resolve_unknown_mode_suggests(mode, near):
    with pytest.raises(RecipeError) as err:
        resolve(mode)
    assert f"did you mean {near!r}" in str(err.value)


def test_resolve_unknown_name_without_neighbour():
    with pytest.raises(RecipeError) as err:
        resolve("zzzz")
    assert "did you mean" not in str(err.value) and "weight_sum" in str(err.value)


# ---------------------------------------------------------------------------------------------
# the four modes: exact values

A4, B4, C4 = t([0.0, 1.0, 2.0, 4.0]), t([4.0, 3.0, 2.0, 0.0]), t([8.0, -1.0, 0.5, 4.0])


def test_weight_sum_exact():
    # 0.75·A + 0.25·B
    assert torch.equal(run("weight_sum", A4, B4, w=Weights(0.25)), t([1.0, 1.5, 2.0, 3.0]))
    assert torch.equal(run("weight_sum", A4, B4, w=Weights(0.0)), A4)
    assert torch.equal(run("weight_sum", A4, B4, w=Weights(1.0)), B4)
    # extrapolation: alpha may range over [-1, 2]; 2·B - A
    assert torch.equal(run("weight_sum", A4, B4, w=Weights(2.0)), t([8.0, 5.0, 2.0, -4.0]))


def test_add_difference_exact():
    # A + 0.5·(B - C) with B - C = [-4, 4, 1.5, -4]
    assert torch.equal(run("add_difference", A4, B4, C4, Weights(0.5)), t([-2.0, 3.0, 2.75, 2.0]))
    assert torch.equal(run("add_difference", A4, B4, C4, Weights(-1.0)), t([4.0, -3.0, 0.5, 8.0]))


def test_triple_sum_exact():
    # 0.5·A + 0.25·B + 0.25·C
    out = run("triple_sum", A4, B4, C4, Weights(0.25, 0.25))
    assert torch.equal(out, t([3.0, 1.0, 1.625, 3.0]))


def test_sum_twice_exact():
    # (A + B)/2 = [2, 2, 2, 2]; then 0.75·that + 0.25·C
    out = run("sum_twice", A4, B4, C4, Weights(0.5, 0.25))
    assert torch.equal(out, t([3.5, 1.25, 1.625, 2.5]))


def test_modes_against_numpy():
    a, b, c = rand(5, 7, seed=1), rand(5, 7, seed=2), rand(5, 7, seed=3)
    an, bn, cn = (x.double().numpy() for x in (a, b, c))
    for al, be in [(0.5, 0.25), (-0.7, 1.3), (1.9, -0.4)]:
        w = Weights(al, be)
        expected = {
            "weight_sum": (1 - al) * an + al * bn,
            "add_difference": an + al * (bn - cn),
            "triple_sum": (1 - al - be) * an + al * bn + be * cn,
            "sum_twice": (1 - be) * ((1 - al) * an + al * bn) + be * cn,
        }
        for mid, exp in expected.items():
            np.testing.assert_allclose(run(mid, a, b, c, w).numpy(), exp, rtol=1e-5, atol=1e-6, err_msg=mid)


# ---------------------------------------------------------------------------------------------
# self

def test_self_scales_by_alpha():
    assert torch.equal(run("self", A4, w=Weights(0.5)), t([0.0, 0.5, 1.0, 2.0]))
    assert torch.equal(run("self", A4, w=Weights(-2.0)), t([0.0, -2.0, -4.0, -8.0]))


@pytest.mark.parametrize("key", [
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_out.0.weight",
    "model.diffusion_model.input_blocks.1.1.proj_out.weight",
    "model.diffusion_model.input_blocks.1.1.norm.weight",
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.norm1.bias",
    "model.diffusion_model.out.0.weight_norm",
])
def test_self_never_scales_protected_keys(key):
    assert torch.equal(run("self", A4, w=Weights(0.5), ctx=KeyContext(key)), A4)


def test_self_alpha_zero_is_unchanged():
    assert torch.equal(run("self", A4, w=Weights(0.0)), A4)
    assert torch.equal(run("self", A4, w=Weights(-0.0)), A4)


# ---------------------------------------------------------------------------------------------
# train_difference

def test_train_difference_hand_values():
    a = t([0.0, 0.0, 1.0, 2.0, 3.0, 1.0])
    b = t([1.0, 2.0, 1.0, 2.0, 3.0, -1.0])
    c = t([0.0, 1.0, 1.0, 4.0, 3.0, 1.0])
    # 0: |B-A| = 1, B-C = 1: s = 1/2        -> 0 + 1.8·0.5·(1/2)·1 = 0.45
    # 1: |B-A| = 2, B-C = 1: s = 2/3        -> 0 + 0.9·(2/3) = 0.6
    # 2: B == C                             -> A
    # 3: B == A: s = 0                      -> A
    # 4: A == B == C: denominator 0, s = 0  -> A (no NaN)
    # 5: |B-A| = 2, B-C = -2: s = -1/2      -> 1 + 0.9·(-1/2)·2 = 0.1
    out = run("train_difference", a, b, c, Weights(0.5))
    np.testing.assert_allclose(out.numpy(), [0.45, 0.6, 1.0, 2.0, 3.0, 0.1], rtol=1e-6)
    assert torch.equal(out[2:5], a[2:5])


def test_train_difference_b_equals_c_is_exactly_a():
    a, b = rand(4, 6, seed=4), rand(4, 6, seed=5)
    assert torch.equal(run("train_difference", a, b, b.clone(), Weights(1.7)), a)


def test_train_difference_against_numpy():
    a, b, c = rand(6, 9, seed=6), rand(6, 9, seed=7), rand(6, 9, seed=8)
    c[0] = b[0]  # a row where B == C
    b[1] = a[1]  # a row where B == A
    an, bn, cn = (x.double().numpy() for x in (a, b, c))
    den = np.abs(bn - cn) + np.abs(bn - an)
    s = np.where(den != 0, np.abs(bn - an) / np.where(den != 0, den, 1.0), 0.0) * np.sign(bn - cn)
    for al in (0.5, -0.8, 1.6):
        expected = an + 1.8 * al * s * np.abs(bn - cn)
        np.testing.assert_allclose(run("train_difference", a, b, c, Weights(al)).numpy(), expected,
                                   rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# smooth_add: brute-force filters written from their definitions

def _reflect(i: int, n: int) -> int:
    """scipy's 'reflect' border (d c b a | a b c d | d c b a), for any distance past the edge."""
    i %= 2 * n
    return i if i < n else 2 * n - 1 - i


def _median3(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        window = [x[tuple(_reflect(i + o, n) for i, o, n in zip(idx, off, x.shape))]
                  for off in itertools.product((-1, 0, 1), repeat=x.ndim)]
        out[idx] = np.median(window)
    return out


def _gauss(x: np.ndarray, sigma: float = 1.0, truncate: float = 4.0) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)
    offsets = range(-radius, radius + 1)
    kernel = np.array([math.exp(-0.5 * o * o / sigma ** 2) for o in offsets])
    kernel /= kernel.sum()
    out = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        total = 0.0
        for off in itertools.product(range(len(kernel)), repeat=x.ndim):
            weight = np.prod([kernel[k] for k in off])
            total += weight * x[tuple(_reflect(i + k - radius, n) for i, k, n in zip(idx, off, x.shape))]
        out[idx] = total
    return out


@pytest.mark.parametrize("shape", [(2,), (5,), (12,), (3, 4), (5, 6), (1, 7)])
def test_smooth_add_against_brute_force(shape):
    a, b, c = rand(*shape, seed=9), rand(*shape, seed=10), rand(*shape, seed=11)
    d = (b - c).double().numpy()  # B - C in float32, as the method computes it
    expected = a.double().numpy() + 0.75 * _gauss(_median3(d))
    out = run("smooth_add", a, b, c, Weights(0.75))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_smooth_add_hand_value_constant_difference():
    # a constant D is its own median and its own gaussian blur
    a = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out = run("smooth_add", a, a + 2.0, a, Weights(0.5))
    np.testing.assert_allclose(out.numpy(), (a + 1.0).numpy(), rtol=0, atol=1e-6)


def test_smooth_add_median_removes_a_spike():
    # one spike in D: the median of 3 removes it, so nothing is added at all
    d = t([0.0, 0.0, 0.0, 8.0, 0.0, 0.0, 0.0])
    a = t([1.0] * 7)
    assert torch.equal(run("smooth_add", a, d, torch.zeros(7), Weights(1.0)), a)


def test_smooth_add_conv_shape_against_scipy():
    from scipy import ndimage

    shape = (6, 5, 3, 3)
    a, b, c = rand(*shape, seed=12), rand(*shape, seed=13), rand(*shape, seed=14)
    d = (b - c).double().numpy()
    smoothed = ndimage.gaussian_filter(ndimage.median_filter(d, size=3, mode="reflect"), sigma=1,
                                       mode="reflect", truncate=4.0)
    out = run("smooth_add", a, b, c, Weights(0.5))
    np.testing.assert_allclose(out.numpy(), a.double().numpy() + 0.5 * smoothed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_smooth_add_single_element_passes_difference_through(shape):
    a, b, c = t(2.0).reshape(shape), t(5.0).reshape(shape), t(1.0).reshape(shape)
    assert torch.equal(run("smooth_add", a, b, c, Weights(0.25)), t(3.0).reshape(shape))


# ---------------------------------------------------------------------------------------------
# extract

def test_extract_hand_values():
    a = t([[1.0, 1.0], [2.0, 2.0], [4.0, 4.0], [0.5, 0.5]])
    x = t([[1.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # B - A
    y = t([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])  # C - A
    # alpha 0.5, beta 0.25, gamma 2:
    # row 0: cos 1, d = 1, factor = lerp(1, 0, .25) = .75; mix = [1, 0]        -> +[.75, 0]
    # row 1: cos -1, d = 0, factor = .25; mix = [.5, 0]                         -> +[.125, 0]
    # row 2: cos 0, d = .25, factor = lerp(.25, .75, .25) = .375; mix [.5, .5]  -> +[.1875, .1875]
    # row 3: x is zero: cos 0 (no NaN), factor .375; mix = [1, 1]               -> +[.375, .375]
    out = run("extract", a, a + x, a + y, Weights(0.5, 0.25, 2.0))
    assert torch.equal(out, t([[1.75, 1.0], [2.125, 2.0], [4.1875, 4.1875], [0.875, 0.875]]))


def test_extract_gamma_zero_and_beta_one():
    # gamma 0: d = 1 everywhere (also for cos = -1: 0^0 = 1); beta 1: factor = 1 - d = 0
    a = t([[0.0, 0.0], [1.0, 1.0]])
    b, c = a + t([[1.0, 0.0], [2.0, 0.0]]), a + t([[-1.0, 0.0], [0.0, 2.0]])
    assert torch.equal(run("extract", a, b, c, Weights(0.5, 0.0, 0.0)), t([[0.0, 0.0], [2.0, 2.0]]))
    assert torch.equal(run("extract", a, b, c, Weights(0.5, 1.0, 0.0)), a)


def _extract_numpy(a, b, c, al, be, g):
    x, y = b - a, c - a
    nx = np.linalg.norm(x, axis=-1, keepdims=True)
    ny = np.linalg.norm(y, axis=-1, keepdims=True)
    cos = np.clip(np.sum(x * y, axis=-1, keepdims=True) / np.maximum(nx * ny, 1e-16), -1, 1)
    d = ((cos + 1) / 2) ** g
    return a + ((1 - al) * x + al * y) * ((1 - be) * d + be * (1 - d))


@pytest.mark.parametrize("shape", [(7,), (4, 9), (3, 4, 5), (6, 5, 3, 3)])
@pytest.mark.parametrize("al,be,g", [(0.5, 0.25, 0.3), (0.0, 1.0, 1.0), (1.0, 0.5, 4.0), (0.3, 0.7, 0.0)])
def test_extract_against_numpy(shape, al, be, g):
    a, b, c = rand(*shape, seed=15), rand(*shape, seed=16), rand(*shape, seed=17)
    expected = _extract_numpy(*(x.double().numpy() for x in (a, b, c)), al, be, g)
    out = run("extract", a, b, c, Weights(al, be, g))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("w", [Weights(1.5), Weights(-0.1), Weights(0.5, 1.2), Weights(0.5, -0.5),
                               Weights(0.5, 0.5, -1.0)])
def test_extract_rejects_out_of_range_weights(w):
    with pytest.raises(RecipeError) as err:
        run("extract", A4, B4, C4, w)
    assert "Fix:" in str(err.value)


# ---------------------------------------------------------------------------------------------
# tensor / tensor2

def _rows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, 3)
    return a, -1.0 - a


def _which(out: torch.Tensor, a: torch.Tensor, dim: int) -> str:
    """'A'/'B' per index along dim: which model each row/column came from."""
    out, a = out.movedim(dim, 0), a.movedim(dim, 0)
    return "".join("A" if torch.equal(o, r) else "B" for o, r in zip(out, a))


def test_tensor_first_branch_rows():
    a, b = _rows(10)
    # a + b = 0.5 <= 1: rows [floor(10·.25), floor(10·.75)) = [2, 7) from B
    out = run("tensor", a, b, w=Weights(0.5, 0.25))
    assert _which(out, a, 0) == "AABBBBBAAA"
    assert torch.equal(out[2:7], b[2:7])


def test_tensor_second_branch_rows():
    a, b = _rows(8)
    # a + b = 1.25 > 1: start from B, rows [floor(8·.25), floor(8·.75)) = [2, 6) from A
    out = run("tensor", a, b, w=Weights(0.5, 0.75))
    assert _which(out, a, 0) == "BBAAAABB"


def test_tensor_boundary_sum_exactly_one():
    a, b = _rows(8)
    # a + b = 1: the first branch, rows [floor(8·.25), 8) from B
    assert _which(run("tensor", a, b, w=Weights(0.75, 0.25)), a, 0) == "AABBBBBB"


def test_tensor_band_edges_are_the_incumbents_float_truncation():
    a, b = _rows(320)
    # the helper's case: alpha 0.05, beta 0.35 -> [int(320·0.35), int(320·0.4)) = [112, 127)
    assert _which(run("tensor", a, b, w=Weights(0.05, 0.35)), a, 0) == "A" * 112 + "B" * 15 + "A" * 193


def test_tensor_out_of_range_weights_clamp():
    a, b = _rows(10)
    # start floor(10·-.3) = -3 clamps to 0; stop floor(10·.2) = 2
    assert _which(run("tensor", a, b, w=Weights(0.5, -0.3)), a, 0) == "BBAAAAAAAA"
    # a + b = 2.5: start from B, A's rows [floor(15), floor(10·1.5)) clamp to nothing
    assert torch.equal(run("tensor", a, b, w=Weights(1.0, 1.5)), b)
    # alpha 0: an empty band
    assert torch.equal(run("tensor", a, b, w=Weights(0.0, 0.5)), a)


def test_tensor2_measures_a_long_dim_1_on_itself():
    a = torch.arange(3 * 120, dtype=torch.float32).reshape(3, 120)
    b = -1.0 - a
    # dim 1 longer than 100 (the incumbent's threshold): columns [floor(120·0.25), floor(120·0.75)) from B
    assert _which(run("tensor2", a, b, w=Weights(0.5, 0.25)), a, 1) == "A" * 30 + "B" * 60 + "A" * 30
    # a + b = 1.25: start from B, columns [floor(120·0.25), floor(120·0.75)) = [30, 90) from A
    assert _which(run("tensor2", a, b, w=Weights(0.5, 0.75)), a, 1) == "B" * 30 + "A" * 60 + "B" * 30


def test_tensor2_measures_a_short_dim_1_on_dim_0_as_the_incumbent_does():
    """hako-mikan/sd-webui-supermerger scripts/mergers/mergers.py tensormerge (0b1c491): the band's
    bounds come from shape[0] unless shape[1] > 100, and are cut from dim 1 with Python's slice clipping."""
    a = rand(40, 8, seed=18)
    b = rand(40, 8, seed=19)
    # bounds from 40 rows: [floor(40·0.05), floor(40·0.15)) = [2, 6), cut from the 8 columns
    assert _which(run("tensor2", a, b, w=Weights(0.1, 0.05)), a, 1) == "AABBBBAA"
    # [10, 30) lies past the 8 columns: nothing is swapped
    assert torch.equal(run("tensor2", a, b, w=Weights(0.5, 0.25)), a)
    # a + b = 1.25: start from B and copy A's [10, 30), past the end: all B
    assert torch.equal(run("tensor2", a, b, w=Weights(0.5, 0.75)), b)


def test_tensor2_leaves_the_unets_first_conv_alone():
    a, b = rand(320, 4, 3, 3, seed=20), rand(320, 4, 3, 3, seed=21)  # input_blocks.0.0.weight: 4 in-channels
    assert torch.equal(run("tensor2", a, b, w=Weights(0.5, 0.25)), a)  # [80, 240) of 4 channels: none
    assert _which(run("tensor2", a, b, w=Weights(0.005, 0.0)), a, 1) == "BAAA"  # [0, floor(1.6)) = [0, 1)


def test_tensor2_on_1d_uses_dim_0():
    a, b = torch.arange(8, dtype=torch.float32), -torch.ones(8)
    assert _which(run("tensor2", a, b, w=Weights(0.5, 0.25)), a, 0) == "AABBBBAA"
    assert _which(run("tensor", a, b, w=Weights(0.5, 0.75)), a, 0) == "BBAAAABB"


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 40), ia=st.integers(-100, 200), ib=st.integers(-100, 200), second=st.booleans())
def test_tensor_rows_match_exact_arithmetic(n, ia, ib, second):
    """alpha, beta as typed decimals (hundredths); row bounds as the incumbent's tensormerge computes
    them: int() of the float product, here clamped to [0, n]."""
    al, be = ia / 100, ib / 100
    if second:  # tensor2 measures dim 1 on itself once it is longer than 100
        n += 100
    a = torch.arange(n, dtype=torch.float32).reshape(n, 1) if not second else \
        torch.arange(n, dtype=torch.float32).reshape(1, n)
    b = -1.0 - a
    clamp = (lambda r: min(max(r, 0), n))
    if al + be <= 1:
        lo, hi = clamp(int(n * be)), clamp(int(n * (al + be)))
        expected = "".join("B" if lo <= i < hi else "A" for i in range(n))
    else:
        lo, hi = clamp(int(n * (al + be - 1))), clamp(int(n * be))
        expected = "".join("A" if lo <= i < hi else "B" for i in range(n))
    method, dim = ("tensor2", 1) if second else ("tensor", 0)
    assert _which(run(method, a, b, w=Weights(al, be)), a, dim) == expected


# ---------------------------------------------------------------------------------------------
# cosine

def test_cosine_a_hand_values():
    a = t([[1.0, 0.0], [0.0, 1.0]])
    b = t([[2.0, 0.0], [0.0, -1.0]])
    # normalised columns: [1,0]·[1,0] = 1 and [0,1]·[0,-1] = -1; flat Â·B̂ = 0 -> s = [.5, -.5]
    # cosine_a's samples for lo/hi are the column cosines alone (the incumbent's precosine)
    assert torch.equal(REGISTRY["cosine_a"].stat(a.clone(), b.clone()), t([1.0, -1.0]))
    ctx = KeyContext(KEY, lo=-0.5, hi=0.5)
    # normalised s = [1, 0]; alpha -0.25 counts as |alpha|: k = [.75, 0]
    out = run("cosine_a", a, b, w=Weights(-0.25), ctx=ctx)
    assert torch.equal(out, t([[1.25, 0.0], [0.0, -1.0]]))  # column 0: B + .75(A - B)


def test_cosine_b_hand_values():
    a = t([[1.0, 0.0], [0.0, 1.0]])
    b = t([[2.0, 0.0], [0.0, -1.0]])
    # un-normalised flat cosine: (A·B)/(|A||B|) = 1/sqrt(10)
    f = 1 / math.sqrt(10)
    s = np.array([(1 + f) / 2, (-1 + f) / 2])
    np.testing.assert_allclose(REGISTRY["cosine_b"].stat(a.clone(), b.clone()).numpy(), s, rtol=1e-6)
    lo, hi = np.percentile(s, [1, 99])
    ctx = KeyContext(KEY, lo=float(lo), hi=float(hi))
    # cosine_b uses alpha with its sign: -0.25 raises k
    k = np.clip((s - lo) / (hi - lo) + 0.25, 0, 1)
    expected = b.double().numpy() + k * (a - b).double().numpy()
    np.testing.assert_allclose(run("cosine_b", a, b, w=Weights(-0.25), ctx=ctx).numpy(), expected,
                               rtol=1e-6, atol=1e-7)
    assert k[0] == 1 and 0 < k[1] < 1  # one column kept, the other blended


def _cos_np(x, y, axis=None, eps=None):
    """cos(x, y); with eps, each norm is clamped to eps first (torch's cosine_similarity: 0 for a zero column)."""
    nx, ny = np.linalg.norm(x, axis=axis), np.linalg.norm(y, axis=axis)
    if eps is not None:
        nx, ny = np.maximum(nx, eps), np.maximum(ny, eps)
    return np.sum(x * y, axis=axis) / (nx * ny)


def _cosine_numpy(a, b, normalise, alpha, lo, hi):
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    if normalise:
        a_n = a / np.maximum(np.linalg.norm(a, axis=0, keepdims=True), 1e-12)
        b_n = b / np.maximum(np.linalg.norm(b, axis=0, keepdims=True), 1e-12)
    else:
        a_n, b_n = a, b
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (_cos_np(a_n, b_n, axis=0, eps=1e-8) + _cos_np(a_n.ravel(), b_n.ravel())) / 2
    k = np.clip((s - lo) / (hi - lo) - (abs(alpha) if normalise else alpha), 0, 1)
    k = np.where(np.isnan(s), 1.0, k)
    return s, b + k * (a - b)


@pytest.mark.parametrize("method_id", ["cosine_a", "cosine_b"])
@pytest.mark.parametrize("alpha", [0.0, 0.3, -0.3, 0.8])
def test_cosine_percentile_rule_against_numpy(method_id, alpha):
    normalise = method_id == "cosine_a"
    shapes = [(8, 6, 3, 3), (16, 12), (10,), (), (5, 7)]
    pairs = []
    for i, shape in enumerate(shapes):
        a = rand(*shape, seed=100 + i)
        b = a + 0.7 * rand(*shape, seed=200 + i)  # correlated, so s spreads over a real range
        pairs.append((a, b))
    pairs[4][0][:, 2] = 0.0  # a zero column: torch's cosine says 0 there, and 0 is a sample
    ctx = cosine_ctx(method_id, pairs)
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalise:  # cosine_a: the column cosines of the normalised tensors
            all_s = np.concatenate([np.ravel(_cos_np(*[x / np.maximum(np.linalg.norm(x, axis=0, keepdims=True), 1e-12)
                                                       for x in (np.atleast_1d(a.double().numpy()),
                                                                 np.atleast_1d(b.double().numpy()))],
                                                     axis=0, eps=1e-8)) for a, b in pairs])
        else:  # cosine_b: s itself
            all_s = np.concatenate([np.ravel(_cosine_numpy(a.double().numpy(), b.double().numpy(), normalise,
                                                           alpha, 0.0, 1.0)[0]) for a, b in pairs])
    assert not normalise or 0.0 in all_s  # the zero column is a sample, not a NaN
    lo, hi = incumbent_range(all_s)
    assert ctx.lo == pytest.approx(lo, abs=1e-6) and ctx.hi == pytest.approx(hi, abs=1e-6)
    for a, b in pairs:
        _, expected = _cosine_numpy(a.double().numpy(), b.double().numpy(), normalise, alpha, lo, hi)
        out = run(method_id, a, b, w=Weights(alpha), ctx=ctx)
        assert torch.isfinite(out).all()
        np.testing.assert_allclose(out.numpy(), expected.reshape(a.shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method_id", ["cosine_a", "cosine_b"])
def test_cosine_stat_shapes(method_id):
    m = REGISTRY[method_id]
    for shape, n in [((4, 5, 3, 3), 45), ((6, 7), 7), ((9,), 1), ((), 1)]:
        s = m.stat(rand(*shape, seed=1), rand(*shape, seed=2))
        assert s.ndim == 1 and s.shape[0] == n and s.dtype == torch.float32


@pytest.mark.parametrize("method_id", ["cosine_a", "cosine_b"])
def test_cosine_zero_column_has_similarity_0_as_in_torch(method_id):
    """The incumbent's torch.nn.CosineSimilarity clamps each norm to eps: a zero column has cosine 0
    (a sample like any other), and its k follows from s = (0 + flat cosine) / 2."""
    a, b = rand(5, 4, seed=20), rand(5, 4, seed=21)
    a[:, 1] = 0.0
    b[:, 3] = 0.0
    m = REGISTRY[method_id]
    if method_id == "cosine_a":
        assert torch.equal(m.stat(a.clone(), b.clone())[[1, 3]], t([0.0, 0.0]))
    ctx = KeyContext(KEY, lo=-1.0, hi=1.0)
    s, expected = _cosine_numpy(a.double().numpy(), b.double().numpy(), m.normalise, 0.1, -1.0, 1.0)
    assert np.isfinite(s).all()
    out = run(method_id, a, b, w=Weights(0.1), ctx=ctx)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method_id", ["cosine_a", "cosine_b"])
def test_cosine_all_zero_tensor_keeps_a(method_id):
    """A whole zero tensor: the flat cosine is 0/0 (the incumbent writes NaN into the model there);
    k = 1 keeps A instead (README: what differs from SuperMerger)."""
    a, b = torch.zeros(3, 4), rand(3, 4, seed=22)
    if method_id == "cosine_b":
        assert torch.isnan(REGISTRY[method_id].stat(a.clone(), b.clone())).all()
    out = run(method_id, a, b, w=Weights(0.5), ctx=KeyContext(KEY, lo=0.0, hi=1.0))
    assert torch.equal(out, a)


@pytest.mark.parametrize("method_id,alpha,expected", [
    ("cosine_a", 0.5, "B"), ("cosine_a", -0.5, "B"), ("cosine_b", 0.5, "B"), ("cosine_b", -0.5, "mid"),
])
def test_cosine_hi_equals_lo_has_no_division_by_zero(method_id, alpha, expected):
    a, b = t([[1.0, 2.0], [2.0, 1.0]]), t([[3.0, 2.0], [4.0, 1.0]])
    out = run(method_id, a, b, w=Weights(alpha), ctx=KeyContext(KEY, lo=0.25, hi=0.25))
    # the normalised term is 0, so k = clip(-|a|) = 0 (cosine_a) or clip(-a) (cosine_b)
    assert torch.equal(out, b if expected == "B" else (a + b) / 2)


def test_cosine_needs_lo_hi():
    with pytest.raises(ValueError):
        run("cosine_a", A4, B4, w=Weights(0.5), ctx=KeyContext(KEY))


# ---------------------------------------------------------------------------------------------
# shapes every method must handle

def _zero_d_expected(mid: str, a: float, b: float, c: float, w: Weights) -> float:
    al, be, g = w.alpha, w.beta, w.gamma
    if mid == "weight_sum":
        return (1 - al) * a + al * b
    if mid == "add_difference":
        return a + al * (b - c)
    if mid == "triple_sum":
        return (1 - al - be) * a + al * b + be * c
    if mid == "sum_twice":
        return (1 - be) * ((1 - al) * a + al * b) + be * c
    if mid == "train_difference":
        den = abs(b - c) + abs(b - a)
        s = math.copysign(abs(b - a) / den, b - c) if den and b != c else 0.0
        return a + 1.8 * al * s * abs(b - c)
    if mid == "smooth_add":
        return a + al * (b - c)  # one element: nothing to smooth
    if mid == "extract":
        x, y = b - a, c - a
        cos = (x * y) / max(abs(x) * abs(y), 1e-16)
        d = ((cos + 1) / 2) ** g
        return a + ((1 - al) * x + al * y) * ((1 - be) * d + be * (1 - d))
    if mid in ("tensor", "tensor2"):
        return a  # no rows: A
    if mid == "self":
        return al * a
    raise AssertionError(mid)


@pytest.mark.parametrize("mid", sorted(set(REGISTRY) - {"cosine_a", "cosine_b"}))
@pytest.mark.parametrize("vals", [(2.0, 3.0, 0.5), (-1.0, 4.0, 4.0), (0.0, 0.0, 0.0), (1.5, -0.5, 2.0)])
def test_zero_d(mid, vals):
    a, b, c = (t(v) for v in vals)
    w = Weights(0.25, 0.5, 1.0)
    out = run(mid, *inputs_for(mid, a, b, c), w=w)
    assert out.shape == () and torch.isfinite(out)
    assert out.item() == pytest.approx(_zero_d_expected(mid, *vals, w), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("mid", ["cosine_a", "cosine_b"])
def test_zero_d_cosine(mid):
    # one element is a column of one: same signs -> s = 1, opposite -> s = -1
    m = REGISTRY[mid]
    assert torch.equal(m.stat(t(2.0), t(3.0)), t([1.0]))
    assert torch.equal(m.stat(t(2.0), t(-3.0)), t([-1.0]))
    ctx = KeyContext("cond_stage_model.transformer.logit_scale", lo=-1.0, hi=1.0)
    # s = 1 normalises to 1, k = 1 - .25: B + .75·(A - B) = 3 - .75
    assert torch.equal(run(mid, t(2.0), t(3.0), w=Weights(0.25), ctx=ctx), t(2.25))
    out = run(mid, t(2.0), t(-3.0), w=Weights(0.25), ctx=ctx)
    assert out.shape == () and torch.equal(out, t(-3.0))  # k = clip(0 - .25) = 0


# ---------------------------------------------------------------------------------------------
# chunking and NaN

@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(1, 230), max_size=6, unique=True),
       al=st.floats(-1, 2, width=32), be=st.floats(-1, 2, width=32))
def test_elementwise_chunks_equal_whole(cuts, al, be):
    """What the engine does for big tensors: merge flat chunks one by one, in place."""
    shape = (7, 11, 3)
    a, b, c = rand(*shape, seed=30), rand(*shape, seed=31), rand(*shape, seed=32)
    b[0] = c[0]  # exercise train_difference's B == C and 0/0 paths inside chunks
    a[1], b[1], c[1] = 1.0, 1.0, 1.0
    w = Weights(al, be)
    bounds = [0, *sorted(cuts), a.numel()]
    for mid in ELEMENTWISE:
        whole = run(mid, *inputs_for(mid, a, b, c), w=w)
        flat = [x.reshape(-1) for x in (a, b, c)]
        parts = []
        for lo, hi in zip(bounds, bounds[1:]):
            chunk = [x[lo:hi].clone() for x in flat]
            parts.append(REGISTRY[mid].merge(*inputs_for(mid, *chunk), w, CTX))
        assert torch.equal(torch.cat(parts), whole.reshape(-1)), mid


def _nasty_inputs():
    """Zero tensors, zero rows and columns, equal models: where 0/0 lurks."""
    a, b, c = rand(6, 5, seed=40), rand(6, 5, seed=41), rand(6, 5, seed=42)
    a[0], b[1], c[2] = 0.0, 0.0, 0.0
    a[:, 0], b[:, 1] = 0.0, 0.0
    b[3] = a[3]
    c[4] = b[4]
    a[5], b[5], c[5] = 0.0, 0.0, 0.0
    yield a, b, c
    z = torch.zeros(6, 5)
    yield z, z.clone(), z.clone()
    yield a, a.clone(), a.clone()
    yield z, b, c


@pytest.mark.parametrize("mid", sorted(REGISTRY))
def test_no_nan_on_degenerate_inputs(mid):
    w = Weights(0.3, 0.4, 0.5)
    for a, b, c in _nasty_inputs():
        args = inputs_for(mid, a, b, c)
        ctx = CTX
        if REGISTRY[mid].needs_stats:
            ctx = cosine_ctx(mid, [(a, b), (rand(6, 5, seed=43), rand(6, 5, seed=44))])
        out = run(mid, *args, w=w, ctx=ctx)
        assert torch.isfinite(out).all(), mid


@pytest.mark.parametrize("mid", sorted(REGISTRY))
def test_returns_a_shape_for_every_layout(mid):
    """Conv, linear, bias and 0-d keys (elementwise methods also see 1-D chunks)."""
    w = Weights(0.5, 0.25, 0.3)
    for i, shape in enumerate([(4, 3, 3, 3), (5, 7), (9,), (), (1,), (1, 1)]):
        a, b, c = rand(*shape, seed=50 + i), rand(*shape, seed=60 + i), rand(*shape, seed=70 + i)
        ctx = cosine_ctx(mid, [(a, b)]) if REGISTRY[mid].needs_stats else CTX
        if REGISTRY[mid].needs_stats and ctx.lo == ctx.hi:
            ctx = KeyContext(KEY, lo=-1.0, hi=1.0)
        out = run(mid, *inputs_for(mid, a, b, c), w=w, ctx=ctx)
        assert torch.isfinite(out).all()
