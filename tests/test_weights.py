"""Block-weight strings (REFERENCE §3): counts per architecture, the 26 -> 20 rule, BASE defaults,
messages that say what was wrong and where, random tokens from a seed, round trips and fuzzing."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_merge.arch import SD1, SD2, SDXL
from lib_merge.errors import MergeError, ParseError
from lib_merge.merge.presets import PresetBook
from lib_merge.merge.weights import RandomSpec, number, parse_block_weights, uses_random

BLOCKS26 = ["BASE", *(f"IN{i:02d}" for i in range(12)), "M00", *(f"OUT{i:02d}" for i in range(12))]
BLOCKS20 = ["BASE", *(f"IN{i:02d}" for i in range(9)), "M00", *(f"OUT{i:02d}" for i in range(9))]
# positions of a 26-value list that survive on SDXL: BASE, IN00..IN08, M00, OUT00..OUT08
SURVIVE = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]


def parse(spec, arch=SD1, base=0.5, **kw):
    return parse_block_weights(spec, arch, base_default=base, **kw)


def err(spec, arch=SD1, **kw) -> str:
    with pytest.raises(ParseError) as e:
        parse(spec, arch, **kw)
    assert isinstance(e.value, MergeError)
    return str(e.value)


def csv(vals) -> str:
    return ",".join(str(v) for v in vals)


def test_architectures_have_the_block_lists_users_know():
    assert list(SD1.blocks) == BLOCKS26
    assert list(SDXL.blocks) == BLOCKS20


# ---------------------------------------------------------------- counts

def test_26_values_on_sd1():
    vals = [i / 100 for i in range(26)]
    bw = parse(csv(vals))
    assert bw.values == tuple(vals)
    assert bw.tokens == tuple(str(v) for v in vals)
    assert dict(zip(SD1.blocks, bw.values))["M00"] == 0.13
    assert dict(zip(SD1.blocks, bw.values))["OUT11"] == 0.25


def test_26_values_on_sd2_too():
    assert parse(csv([1] * 26), SD2).values == (1.0,) * 26


def test_20_values_on_sdxl():
    vals = [i / 10 for i in range(20)]
    bw = parse(csv(vals), SDXL)
    assert bw.values == tuple(vals)
    assert dict(zip(SDXL.blocks, bw.values))["M00"] == 1.0
    assert dict(zip(SDXL.blocks, bw.values))["OUT08"] == 1.9


def test_26_values_on_sdxl_drop_in09_to_in11_and_out09_to_out11():
    bw = parse(csv(range(26)), SDXL)
    assert bw.values == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22)
    by_block = dict(zip(SDXL.blocks, bw.values))
    assert by_block["IN08"] == 9 and by_block["M00"] == 13 and by_block["OUT00"] == 14 and by_block["OUT08"] == 22
    assert 10 not in bw.values and 23 not in bw.values  # IN09 and OUT09 are gone
    assert bw.tokens == tuple(str(i) for i in SURVIVE)  # the recorded text is the 20 used values


def test_25_values_take_base_from_the_default():
    bw = parse(csv(range(1, 26)), SD1, base=0.3)
    assert bw.values == (0.3, *range(1, 26))
    assert bw.tokens[0] == "0.3"


def test_19_values_on_sdxl_take_base_from_the_default():
    assert parse(csv(range(1, 20)), SDXL, base=0.7).values == (0.7, *range(1, 20))


def test_25_values_on_sdxl_take_base_and_drop_the_deep_blocks():
    bw = parse(csv(range(1, 26)), SDXL, base=0.25)
    assert bw.values == (0.25, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22)


def test_spaces_and_a_trailing_comma_are_harmless():
    assert parse(" " + ", ".join(["1"] * 26) + " ,").values == (1.0,) * 26
    assert parse("\t" + ",".join(["1"] * 26) + "\n").values == (1.0,) * 26


@pytest.mark.parametrize("arch,count,expected", [
    (SD1, 0, ["26", "25"]), (SD1, 1, ["26", "25"]), (SD1, 12, ["26", "25"]), (SD1, 17, ["26", "25"]),
    (SD1, 20, ["26", "25"]), (SD1, 24, ["26", "25"]), (SD1, 27, ["26", "25"]),
    (SDXL, 12, ["20", "19", "26", "25"]), (SDXL, 18, ["20", "19", "26", "25"]),
    (SDXL, 21, ["20", "19", "26", "25"]), (SDXL, 27, ["20", "19", "26", "25"]),
])
def test_wrong_counts_name_the_count_and_what_is_expected(arch, count, expected):
    msg = err(csv([0.5] * count), arch)
    assert f"has {count} values" in msg
    for n in expected:
        assert n in msg
    assert arch.label in msg
    assert "Fix:" in msg


def test_wrong_count_message_names_the_blocks():
    msg = err(csv([1] * 24))
    assert "BASE, IN00..IN11, M00, OUT00..OUT11" in msg
    msg = err(csv([1] * 24), SDXL)
    assert "BASE, IN00..IN08, M00, OUT00..OUT08" in msg and "IN09-IN11 and OUT09-OUT11" in msg


def test_a_user_preset_of_the_wrong_length_is_named():
    book = PresetBook({"SHORT": csv([1] * 17)})
    msg = err("SHORT", presets=book)
    assert "'SHORT'" in msg and "has 17 values" in msg


# ---------------------------------------------------------------- bad values

def with_bad(pos: int, token: str, n: int = 26) -> str:
    vals = ["0.5"] * n
    vals[pos - 1] = token
    return ",".join(vals)


@pytest.mark.parametrize("token", ["abc", "1..2", "0.5x", "nan", "inf", "-inf", "1_000", "0x10", "--1", "½"])
def test_a_non_number_names_its_position_and_block(token):
    msg = err(with_bad(5, token))
    assert "value 5 (IN03)" in msg
    assert "not a number" in msg and "Fix:" in msg


def test_positions_count_as_the_user_wrote_them():
    assert "value 1 (BASE)" in err(with_bad(1, "y"))
    assert "value 14 (M00)" in err(with_bad(14, "y"))
    assert "value 26 (OUT11)" in err(with_bad(26, "y"))
    # without BASE the 4th value is IN03
    assert "value 4 (IN03)" in err(with_bad(4, "y", 25))
    assert "value 11 (M00)" in err(with_bad(11, "y", 20), SDXL)
    assert "value 10 (M00)" in err(with_bad(10, "y", 19), SDXL)


def test_bad_values_in_blocks_sdxl_drops_are_not_ignored():
    msg = err(with_bad(12, "oops"), SDXL)  # IN10 of a 26-value list
    assert "value 12 (IN10)" in msg
    msg = err(with_bad(15, "oops"), SDXL)  # OUT00 is SDXL's 12th value; the message uses the user's 15
    assert "value 15 (OUT00)" in msg
    msg = err(with_bad(23, "oops", 25), SDXL)  # OUT09 of a list without BASE
    assert "value 23 (OUT09)" in msg


def test_an_empty_value_is_named():
    msg = err(with_bad(3, ""))
    assert "value 3 (IN01)" in msg and "empty" in msg


def test_huge_numbers_are_refused():
    msg = err(with_bad(2, "1e999"))
    assert "value 2 (IN00)" in msg and "Fix:" in msg


@pytest.mark.parametrize("text,value", [
    ("0.5", 0.5), (".5", 0.5), ("5.", 5.0), ("+1", 1.0), ("-0.25", -0.25), ("1e-05", 1e-05), ("2E3", 2000.0),
    (" 3 ", 3.0), ("-0", 0.0),
])
def test_number_reads_plain_decimal_forms(text, value):
    assert number(text, "x") == value


@pytest.mark.parametrize("text", ["", " ", "inf", "nan", "1e999", "-1e400", "1_0", "0x1", "1/2", "e5", "."])
def test_number_refuses_everything_else(text):
    with pytest.raises(ParseError, match="where"):
        number(text, "where")


# ---------------------------------------------------------------- presets

def test_preset_names_resolve():
    assert parse("ALL_B").values == (1.0,) * 26
    assert parse("  FLAT_25  ").values == (0.0,) + (0.25,) * 25
    assert parse("ALL_A", SDXL).values == (0.0,) * 20


@pytest.mark.parametrize("typo,nearest", [("GRAD_W", "GRAD_V"), ("FLAT25", "FLAT_25"), ("SMOOTHSTEP*5", "SMOOTHSTEP*"),
                                          ("RING08SOFT", "RING08_SOFT"), ("COSINUS", "COSINE")])
def test_unknown_preset_suggests_the_nearest(typo, nearest):
    msg = err(typo)
    assert f"unknown preset {typo!r}" in msg
    assert f"did you mean '{nearest}" in msg
    assert "Fix:" in msg


def test_unknown_preset_suggests_user_presets_too():
    book = PresetBook({"MY_FAVOURITE": csv([1] * 26)})
    assert "did you mean 'MY_FAVOURITE'" in err("MY_FAVORITE", presets=book)


# ---------------------------------------------------------------- random tokens

def stream(seed: int, field: str) -> random.Random:
    # the recorded-seed contract, written out again: a replay years later must draw the same values
    return random.Random(f"blockmerge:{seed}:{field}")


def test_r_u_x_draw_the_recorded_stream():
    spec = "R,U,X," + csv([0.5] * 23)
    bw = parse(spec, randoms=RandomSpec(7, -2.0, 3.0), what="--alpha-blocks")
    rng = stream(7, "--alpha-blocks")
    r = rng.random()
    u = -0.5 + 2.0 * rng.random()
    x = -2.0 + 5.0 * rng.random()
    assert bw.values[:3] == pytest.approx((r, u, x), abs=1e-15)
    assert bw.values[3:] == (0.5,) * 23
    assert bw.tokens[:3] == ("R", "U", "X")


def test_same_seed_same_values_other_seed_other_values():
    spec = csv(["R"] * 26)
    a = parse(spec, randoms=RandomSpec(1))
    assert a.values == parse(spec, randoms=RandomSpec(1)).values
    b = parse(spec, randoms=RandomSpec(2))
    assert a.values != b.values
    assert len(set(a.values)) == 26  # really drawn one per block


def test_alpha_and_beta_lists_draw_independent_streams():
    spec = csv(["R"] * 26)
    a = parse(spec, randoms=RandomSpec(5), what="--alpha-blocks")
    b = parse(spec, randoms=RandomSpec(5), what="--beta-blocks")
    assert a.values != b.values


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(-2, 2), st.floats(0, 3))
def test_random_values_stay_in_their_ranges(seed, lo, width):
    hi = lo + width
    spec = csv(["R"] * 9 + ["U"] * 9 + ["X"] * 8)
    v = parse(spec, randoms=RandomSpec(seed, lo, hi)).values
    assert all(0.0 <= x <= 1.0 for x in v[:9])
    assert all(-0.5 <= x <= 1.5 for x in v[9:18])
    assert all(lo <= x <= hi for x in v[18:])


def test_u_really_reaches_beyond_zero_and_one():
    v = parse(csv(["U"] * 26), randoms=RandomSpec(3)).values
    assert min(v) < 0.0 or max(v) > 1.0


def test_lowercase_random_tokens_count_and_are_recorded_uppercase():
    bw = parse("r,u," + csv([0] * 24), randoms=RandomSpec(9))
    assert bw.tokens[:2] == ("R", "U")


def test_random_without_a_seed_is_an_error():
    msg = err("0,R," + csv([0] * 24))
    assert "IN00" in msg and "seed" in msg and "Fix:" in msg
    with pytest.raises(ParseError, match="seed"):
        parse("ALL_R")


def test_random_preset_on_sdxl_draws_twenty():
    bw = parse("ALL_R", SDXL, randoms=RandomSpec(4))
    assert len(bw.values) == 20 and bw.tokens == ("R",) * 20


@pytest.mark.parametrize("spec,expected", [
    ("R," + csv([0] * 25), True), ("0, u ,1", True), ("x", True), ("ALL_R", True), ("ALL_U_XL", True),
    ("GRAD_V", False), (csv([0.5] * 26), False), ("", False), (None, False), ("RING08_5", False),
])
def test_uses_random(spec, expected):
    assert uses_random(spec) is expected


def test_uses_random_sees_user_presets():
    book = PresetBook({"MIX": "0,R," + csv([1] * 24), "ALL_R": csv([1] * 26)})
    assert uses_random("MIX", book) is True
    assert uses_random("ALL_R", book) is False  # the user's own ALL_R has no random token


# ---------------------------------------------------------------- round trips and fuzzing

FINITE = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from([(SD1, 26), (SDXL, 20)]).flatmap(
    lambda an: st.tuples(st.just(an[0]), st.lists(FINITE, min_size=an[1], max_size=an[1]))))
def test_any_full_list_of_floats_parses_back_exactly(arch_vals):
    arch, vals = arch_vals
    bw = parse(",".join(repr(v) for v in vals), arch)
    assert bw.values == tuple(vals)
    again = parse(bw.text, arch)
    assert again == bw


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([(SD1, 25), (SDXL, 19)]).flatmap(
    lambda an: st.tuples(st.just(an[0]), st.lists(FINITE, min_size=an[1], max_size=an[1]))), FINITE)
def test_lists_without_base_parse_back_exactly(arch_vals, base):
    arch, vals = arch_vals
    bw = parse(", ".join(repr(v) for v in vals), arch, base=base)
    assert bw.values == (base, *vals)
    assert parse(bw.text, arch, base=12345.0) == bw  # the recorded text carries BASE


@settings(max_examples=60, deadline=None)
@given(st.lists(FINITE, min_size=26, max_size=26))
def test_a_26_list_on_sdxl_keeps_exactly_the_survivors(vals):
    bw = parse(",".join(repr(v) for v in vals), SDXL)
    assert bw.values == tuple(vals[i] for i in SURVIVE)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["R", "U", "X"]), FINITE.map(repr)), min_size=26, max_size=26),
       st.integers(0, 2**31 - 1), st.sampled_from([SD1, SDXL]))
def test_recorded_text_replays_the_same_values(tokens, seed, arch):
    rs = RandomSpec(seed, -1.0, 2.0)
    bw = parse(",".join(tokens), arch, randoms=rs)
    assert parse(bw.text, arch, randoms=rs) == bw


SOUP = st.lists(st.sampled_from(["0", "1", "0.5", "-1", "1e999", "nan", "R", "u", "x", "", " ", "GRAD_V", "ALL_R",
                                 "a", "-", ".", "1.", ".5", "+1", "1e5", "٣", "\n", "IN03", "#", ":", "1,2"]),
                min_size=0, max_size=30)


@settings(max_examples=150, deadline=None)
@given(SOUP, st.sampled_from([SD1, SDXL]), st.booleans())
def test_token_soup_parses_or_raises_parse_error(tokens, arch, seeded):
    try:
        bw = parse(",".join(tokens), arch, randoms=RandomSpec(1) if seeded else None)
    except ParseError as e:
        assert "Fix:" in str(e)
        return
    assert len(bw.values) == len(arch.blocks)
    assert all(math.isfinite(v) for v in bw.values)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.sampled_from([SD1, SDXL]))
def test_any_text_parses_or_raises_parse_error(text, arch):
    try:
        bw = parse(text, arch, randoms=RandomSpec(0))
    except ParseError:
        return
    assert len(bw.values) == len(arch.blocks)
