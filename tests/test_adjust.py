"""Adjust (REFERENCE §5): the 8-number string and its exact effect on the six UNet keys, SD1 and SDXL."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_merge.merge.adjust import KEYS, Adjust, parse_adjust
from lib_merge.arch import layouts as L
from lib_merge.errors import MergeError, ParseError

U = "model.diffusion_model."
ORDER = "IN, OUT, OUT2, CONT, BRI, COL1, COL2, COL3"


def adj(**kw) -> Adjust:
    names = ["IN", "OUT", "OUT2", "CONT", "BRI", "COL1", "COL2", "COL3"]
    return Adjust(tuple(float(kw.get(n, 0.0)) for n in names))


def f64(*v) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


# ---------------------------------------------------------------- parsing

@pytest.mark.parametrize("text", ["1,2,3,4,5,6,7,-8", "1 2 3 4 5 6 7 -8", " 1, 2 ,3,\t4,5,6,7,-8 ", "1,2,3,4,5,6,7,-8,",
                                  "1.0,2,3e0,+4,5.,6,7,-8"])
def test_parse_eight_numbers(text):
    assert parse_adjust(text).values == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -8.0)


@pytest.mark.parametrize("count", [0, 1, 7, 9, 12])
def test_another_count_names_the_expected_order(count):
    with pytest.raises(ParseError) as e:
        parse_adjust(",".join(["0"] * count))
    msg = str(e.value)
    assert f"has {count} numbers, expected 8 ({ORDER})" in msg
    assert "Fix:" in msg
    assert isinstance(e.value, MergeError)


def test_none_reads_as_an_empty_string():
    with pytest.raises(ParseError, match="has 0 numbers"):
        parse_adjust(None)


@pytest.mark.parametrize("pos,name", [(1, "IN"), (4, "CONT"), (5, "BRI"), (8, "COL3")])
@pytest.mark.parametrize("bad", ["abc", "nan", "inf", "1e999", "0x1"])
def test_a_bad_number_names_its_position_and_meaning(pos, name, bad):
    vals = ["0"] * 8
    vals[pos - 1] = bad
    with pytest.raises(ParseError) as e:
        parse_adjust(",".join(vals))
    assert f"adjust value {pos} ({name})" in str(e.value)


@pytest.mark.parametrize("text,pos", [("0,,0,0,0,0,0,0", 2), (",0,0,0,0,0,0,0", 1), ("0,0,0,0,0,0,0,0,,", 9),
                                      ("1,,2,3,4,5,6,7,8", 2)])
def test_an_empty_slot_is_an_error_not_skipped(text, pos):
    # skipping it would read `1,,2,3,4,5,6,7,8` as IN=1, OUT=2 ... silently shifting every value after it
    with pytest.raises(ParseError) as e:
        parse_adjust(text)
    assert f"adjust value {pos}" in str(e.value) and "empty" in str(e.value)


FINITE = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(FINITE, min_size=8, max_size=8), st.sampled_from([",", " ", ", ", "\t"]))
def test_any_eight_floats_parse_back_exactly(vals, sep):
    a = parse_adjust(sep.join(repr(v) for v in vals))
    assert a.values == tuple(vals)
    assert parse_adjust(a.text) == a


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(), st.lists(st.sampled_from(["0", "1.5", "-2", "", " ", ",", "x", "1e999", "\n", "R"]),
                                     max_size=20).map(",".join)))
def test_fuzz_raises_only_parse_error(text):
    try:
        a = parse_adjust(text)
    except ParseError:
        return
    assert len(a.values) == 8


def test_identity():
    assert parse_adjust("0,0,0,0,0,0,0,0").is_identity()
    assert not parse_adjust("0,0,0,0,0,0,0,0.1").is_identity()


# ---------------------------------------------------------------- the six keys

def test_the_six_keys_are_real_keys_of_every_architecture():
    assert KEYS == tuple(U + k for k in ("input_blocks.0.0.weight", "input_blocks.0.0.bias", "out.0.weight",
                                         "out.0.bias", "out.2.weight", "out.2.bias"))
    for arch in ("sd1", "sd2", "sdxl"):
        layout = L.checkpoint(arch)
        assert all(k in layout for k in KEYS)
        assert layout[U + "out.2.bias"] == (4,)


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_detail_scales_are_exact(arch):
    a = adj(IN=2, OUT=-3, OUT2=5)
    t = f64(1.0, -2.0, 0.5)
    assert a.apply(U + "input_blocks.0.0.weight", t, arch).tolist() == pytest.approx([0.98, -1.96, 0.49], rel=1e-14)
    assert a.apply(U + "input_blocks.0.0.bias", t, arch).tolist() == pytest.approx([1.04, -2.08, 0.52], rel=1e-14)
    assert a.apply(U + "out.0.weight", t, arch).tolist() == pytest.approx([1.03, -2.06, 0.515], rel=1e-14)
    assert a.apply(U + "out.0.bias", t, arch).tolist() == pytest.approx([0.94, -1.88, 0.47], rel=1e-14)
    assert a.apply(U + "out.2.weight", t, arch).tolist() == pytest.approx([0.95, -1.9, 0.475], rel=1e-14)


def test_out2_bias_sd1_reference_example():
    a = adj(CONT=1, BRI=3, COL1=1, COL2=2, COL3=-1)
    got = a.apply(U + "out.2.bias", torch.zeros(4, dtype=torch.float64), "sd1").tolist()
    assert got == pytest.approx([0.02, 0.02 * (-3 + 1 - 1), 0.02 * (1 + 1 - 2), 0.02 * (2 - 2 - 1)], abs=1e-15)
    assert got == pytest.approx([0.02, -0.06, 0.0, -0.02], abs=1e-15)


def test_out2_bias_sdxl_reference_example():
    a = adj(CONT=1, BRI=3, COL1=1, COL2=2, COL3=-1)
    got = a.apply(U + "out.2.bias", torch.zeros(4, dtype=torch.float64), "sdxl").tolist()
    assert got == pytest.approx([0.02, 0.02 * (1 - 2 + 1), 0.02 * (-1 - 2), 0.02 * 3], abs=1e-15)
    assert got == pytest.approx([0.02, 0.0, -0.06, 0.06], abs=1e-15)


def test_sd2_uses_the_sd1_colours():
    a = adj(CONT=1, BRI=3, COL1=1, COL2=2, COL3=-1)
    z = torch.zeros(4, dtype=torch.float64)
    assert torch.equal(a.apply(U + "out.2.bias", z, "sd2"), a.apply(U + "out.2.bias", z, "sd1"))


@pytest.mark.parametrize("name,sd1,sdxl", [
    # one slider at 1 on a bias of ones: the channel offsets users see move
    ("CONT", [1.02, 1, 1, 1], [1.02, 1, 1, 1]),
    ("BRI", [1, 0.98, 1 + 0.02 / 3, 1 + 0.04 / 3], [1, 1, 1, 1.02]),
    ("COL1", [1, 1.02, 1.02, 1], [1, 1.02, 1, 1]),
    ("COL2", [1, 1, 0.98, 0.98], [1, 0.98, 0.98, 1]),
    ("COL3", [1, 1.02, 1, 1.02], [1, 0.98, 1.02, 1]),
])
def test_each_colour_slider_alone(name, sd1, sdxl):
    a = adj(**{name: 1})
    ones = torch.ones(4, dtype=torch.float64)
    assert a.apply(U + "out.2.bias", ones, "sd1").tolist() == pytest.approx(sd1, abs=1e-15)
    assert a.apply(U + "out.2.bias", ones, "sdxl").tolist() == pytest.approx(sdxl, abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=8, max_size=8), st.sampled_from(["sd1", "sdxl"]))
def test_every_key_follows_the_reference_formulas(vals, arch):
    i, o, o2, cont, bri, c1, c2, c3 = vals
    a = Adjust(tuple(vals))
    t = f64(0.3, -1.7, 2.0, 0.0)
    base = [0.3, -1.7, 2.0, 0.0]
    expect = {
        "input_blocks.0.0.weight": [x * (1 - 0.01 * i) for x in base],
        "input_blocks.0.0.bias": [x * (1 + 0.02 * i) for x in base],
        "out.0.weight": [x * (1 - 0.01 * o) for x in base],
        "out.0.bias": [x * (1 + 0.02 * o) for x in base],
        "out.2.weight": [x * (1 - 0.01 * o2) for x in base],
    }
    if arch == "sdxl":
        cols = [c1 - c2 - c3, c3 - c2, bri]
    else:
        cols = [-bri + c1 + c3, bri / 3 + c1 - c2, 2 * bri / 3 - c2 + c3]
    expect["out.2.bias"] = [x + 0.02 * d for x, d in zip(base, [cont, *cols])]
    for k, e in expect.items():
        assert a.apply(U + k, t, arch).tolist() == pytest.approx(e, abs=1e-12), k
        assert a.apply(k, t, arch).tolist() == pytest.approx(e, abs=1e-12), k  # without the prefix too


def test_other_keys_pass_through():
    a = adj(IN=6, OUT=6, OUT2=6, CONT=10, BRI=10, COL1=10, COL2=10, COL3=10)
    t = f64(1.0, 2.0)
    for key in (U + "input_blocks.1.0.in_layers.0.weight", U + "out.1.weight", U + "middle_block.0.skip.bias",
                "first_stage_model.decoder.conv_out.bias"):
        assert a.apply(key, t, "sd1") is t


def test_the_input_is_not_modified_and_float32_stays_float32():
    a = adj(IN=3, CONT=2)
    t = torch.tensor([1.0, 2.0, 3.0, 4.0])
    before = t.clone()
    w = a.apply(U + "input_blocks.0.0.weight", t, "sd1")
    b = a.apply(U + "out.2.bias", t, "sd1")
    assert torch.equal(t, before)
    assert w.dtype == torch.float32 and b.dtype == torch.float32
    assert b.tolist() == pytest.approx([1.04, 2.0, 3.0, 4.0], rel=1e-6)


def test_zero_adjust_changes_nothing():
    a = parse_adjust("0,0,0,0,0,0,0,0")
    t = f64(0.25, -4.0, 3.0, 1.0)
    for k in KEYS:
        assert torch.equal(a.apply(k, t, "sd1"), t)
        assert torch.equal(a.apply(k, t, "sdxl"), t)
