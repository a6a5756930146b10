"""Merge presets (REFERENCE §3): the built-in lists users know, `_XL` presets, and the user file format.

Expected values are typed in: block sets from the reference, fractions and curves re-derived by
hand here, and spot values users know from the incumbent's presets (typed, not copied).
"""
from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_merge.arch import SD1, SDXL
from lib_merge.errors import MergeError, ParseError
from lib_merge.merge.presets import PresetBook, builtin, builtin_names, format_preset_text, parse_preset_text
from lib_merge.merge.weights import parse_block_weights

# a user's presets file in the format the incumbents use (header line, tab or colon, comments)
USER_FILE = """\
preset_name\tpreset_weights
MY_SOFT\t0,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.25,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,1.0
# my favourite
HUMP:0,0,0,0,0,0,0,0,0.5,1,1,1,1,1,1,1,1,1,0.5,0,0,0,0,0,0,0
"""

BLOCKS26 = ["BASE", *(f"IN{i:02d}" for i in range(12)), "M00", *(f"OUT{i:02d}" for i in range(12))]
BLOCKS20 = ["BASE", *(f"IN{i:02d}" for i in range(9)), "M00", *(f"OUT{i:02d}" for i in range(9))]
SDXL_SURVIVORS = [b for b in BLOCKS26 if b not in ("IN09", "IN10", "IN11", "OUT09", "OUT10", "OUT11")]


def idx(block: str) -> int:
    return BLOCKS26.index(block)


def blocks(*spans: str) -> list[str]:
    """'IN00-IN03' or 'M00' -> block names, written from the 26-name list above."""
    out = []
    for s in spans:
        a, _, b = s.partition("-")
        out += BLOCKS26[idx(a):idx(b or a) + 1]
    return out


def setting(value: float, *spans: str, **single: float) -> list[float]:
    v = [0.0] * 26
    for b in blocks(*spans):
        v[idx(b)] = value
    for b, x in single.items():
        v[idx(b)] = x
    return v


def values(name: str, arch=SD1) -> list[float]:
    toks = builtin(name, arch.blocks)
    assert toks is not None, name
    return [float(t) for t in toks]


# ---------------------------------------------------------------- block-set presets, typed from the reference

SET_EXPECTED = {
    "ALL_A": [0.0] * 26,
    "ALL_B": [1.0] * 26,
    "FLAT_25": [0.0] + [0.25] * 25,
    "FLAT_75": [0.0] + [0.75] * 25,
    "WRAP08": setting(1, "IN00-IN03", "OUT08-OUT11"),
    "WRAP12": setting(1, "IN00-IN05", "OUT06-OUT11"),
    "WRAP14": setting(1, "IN00-IN06", "OUT05-OUT11"),
    "WRAP16": setting(1, "IN00-IN07", "OUT04-OUT11"),
    "MID12_50": setting(0.5, "IN05-OUT05"),
    "OUT07": setting(1, "OUT05-OUT11"),
    "OUT12": setting(1, "OUT00-OUT11"),
    "OUT12_5": setting(1, "OUT00-OUT11", M00=0.5),
    "RING08_SOFT": setting(1, "IN06-IN08", "OUT03-OUT05", IN05=0.5, IN09=0.5, OUT02=0.5, OUT06=0.5),
    "RING08_5": setting(1, "IN06-IN09", "OUT02-OUT05"),
    "RING10_5": setting(1, "IN05-IN09", "OUT02-OUT06"),
    "RING10_3": setting(1, "IN06-IN10", "OUT01-OUT05"),
}


@pytest.mark.parametrize("name", sorted(SET_EXPECTED))
def test_block_set_presets_are_the_lists_users_know(name):
    assert values(name) == SET_EXPECTED[name]


def test_block_set_helper_counts_are_what_the_names_say():
    # guards the helper above: WRAP08 really is 4+4 blocks, MID12_50 the incumbent's 14
    assert sum(SET_EXPECTED["WRAP08"]) == 8
    assert sum(SET_EXPECTED["WRAP16"]) == 16
    assert SET_EXPECTED["MID12_50"].count(0.5) == 14
    assert SET_EXPECTED["OUT07"].count(1) == 7
    assert SET_EXPECTED["RING08_SOFT"] == [0, 0, 0, 0, 0, 0, .5, 1, 1, 1, .5, 0, 0, 0, 0, 0, .5, 1, 1, 1, .5, 0, 0, 0, 0, 0]


def test_grad_v_and_grad_a_are_the_linear_ramps():
    ins = [1 - Fraction(i, 12) for i in range(12)]  # 1, 11/12, ..., 1/12
    outs = [Fraction(i + 1, 12) for i in range(12)]  # 1/12 .. 1
    grad_v = [0.0] + [float(x) for x in ins] + [0.0] + [float(x) for x in outs]
    assert values("GRAD_V") == pytest.approx(grad_v, abs=1e-15)
    assert values("GRAD_V")[idx("IN01")] == pytest.approx(11 / 12)
    assert values("GRAD_V")[idx("OUT00")] == pytest.approx(1 / 12)
    grad_a = [0.0] + [1 - v for v in grad_v[1:]]
    assert values("GRAD_A") == pytest.approx(grad_a, abs=1e-15)
    assert values("GRAD_A")[idx("M00")] == 1.0


@pytest.mark.parametrize("name,block,expected", [
    ("SMOOTHSTEP", "IN01", 0.00506365740740741),
    ("SMOOTHSTEP", "M00", 0.5),
    ("SMOOTHSTEP", "OUT10", 0.994936342592593),
    ("SMOOTHSTEP*3", "IN09", 0.94921875),
    ("SMOOTHSTEP*3", "IN10", 0.871527777777778),
    ("SMOOTHSTEP*3", "OUT02", 0.0507812500000004),
    ("R_SMOOTHSTEP*4", "IN08", 0.0370370370370372),
    ("SMOOTHSTEP/3", "IN08", 1.0),
    ("SMOOTHSTEP/3", "OUT03", 0.0),
    ("SMOOTHSTEP/4", "IN06", 1.0),
    ("COSINE", "IN01", 0.995722430686905),
    ("COSINE", "OUT11", 0.0),
    ("COSINE", "IN00", 1.0),
])
def test_curve_spot_values_from_the_incumbents_file(name, block, expected):
    assert values(name)[idx(block)] == pytest.approx(expected, abs=1e-12)


def test_smoothstep_3_in09_is_list_index_10():
    assert idx("IN09") == 10
    assert values("SMOOTHSTEP*3")[10] == pytest.approx(0.94921875, abs=1e-15)


def test_curve_values_re_derived_exactly():
    # SMOOTHSTEP at t = i/24 is 3t^2 - 2t^3, computed here in exact fractions
    t = Fraction(1, 24)
    assert values("SMOOTHSTEP")[idx("IN01")] == pytest.approx(float(3 * t**2 - 2 * t**3), abs=1e-17)
    t = Fraction(8, 24)  # R_SMOOTHSTEP*4 at IN08: 4*s = 28/27 folds back to 26/27, reversed 1/27
    assert values("R_SMOOTHSTEP*4")[idx("IN08")] == pytest.approx(1 / 27, abs=1e-15)
    assert values("COSINE")[idx("IN01")] == pytest.approx((1 + math.cos(math.pi / 24)) / 2, abs=1e-15)


@pytest.mark.parametrize("fwd,rev", [
    ("COSINE", "REVERSE_COSINE"), ("SMOOTHSTEP", "REVERSE-SMOOTHSTEP"),
    *[(f"SMOOTHSTEP{op}{n}", f"R_SMOOTHSTEP{op}{n}") for op in "*/" for n in (2, 3, 4)],
])
def test_reverse_presets_are_one_minus_on_blocks_with_base_zero(fwd, rev):
    f, r = values(fwd), values(rev)
    assert f[0] == r[0] == 0.0
    assert r[1:] == pytest.approx([1 - x for x in f[1:]], abs=1e-15)


def test_formula_presets_stay_within_zero_and_one_with_base_zero():
    for name in builtin_names():
        if name.endswith("_XL") or name.startswith("ALL_") and name[-1] in "RUX" or name == "FLUXALL":
            continue
        v = values(name)
        assert len(v) == 26, name
        assert all(0.0 <= x <= 1.0 for x in v), name
        assert v[0] == (1.0 if name == "ALL_B" else 0.0), name


def test_builtin_names_hold_every_preset_users_type():
    known = {"GRAD_V", "GRAD_A", "FLAT_25", "FLAT_75", "WRAP08", "WRAP12", "WRAP14", "WRAP16", "MID12_50",
             "OUT07", "OUT12", "OUT12_5", "RING08_SOFT", "RING08_5", "RING10_5", "RING10_3", "SMOOTHSTEP",
             "REVERSE-SMOOTHSTEP", "SMOOTHSTEP*2", "R_SMOOTHSTEP*2", "SMOOTHSTEP*3", "R_SMOOTHSTEP*3",
             "SMOOTHSTEP*4", "R_SMOOTHSTEP*4", "SMOOTHSTEP/2", "R_SMOOTHSTEP/2", "SMOOTHSTEP/3",
             "R_SMOOTHSTEP/3", "SMOOTHSTEP/4", "R_SMOOTHSTEP/4", "COSINE", "REVERSE_COSINE", "ALL_A", "ALL_B",
             "ALL_R", "ALL_U", "ALL_X", "TRUE_CUBIC_HERMITE", "TRUE_REVERSE_CUBIC_HERMITE", "FAKE_CUBIC_HERMITE",
             "FAKE_REVERSE_CUBIC_HERMITE"}
    names = builtin_names()
    assert known <= set(names)
    assert len(names) == len(set(names))
    assert builtin("NO_SUCH_PRESET", SD1.blocks) is None


# the incumbent's scripts/mbwpresets_master.txt (hako-mikan/sd-webui-supermerger 0b1c491): spot values typed in
@pytest.mark.parametrize("name,block,expected", [
    ("TRUE_CUBIC_HERMITE", "IN01", 0.199031876929012), ("TRUE_CUBIC_HERMITE", "M00", 0.520833333333333),
    ("TRUE_CUBIC_HERMITE", "OUT11", 1.0), ("TRUE_REVERSE_CUBIC_HERMITE", "IN00", 1.0),
    ("TRUE_REVERSE_CUBIC_HERMITE", "OUT10", 0.157365210262345), ("FAKE_CUBIC_HERMITE", "IN05", 0.512996720679012),
    ("FAKE_CUBIC_HERMITE", "M00", 0.5), ("FAKE_REVERSE_CUBIC_HERMITE", "OUT05", 0.546875),
    ("FAKE_REVERSE_CUBIC_HERMITE", "OUT11", 0.0),
])
def test_cubic_hermite_presets_are_the_incumbents_values(name, block, expected):
    assert values(name)[idx(block)] == expected
    assert values(name)[0] == 0.0 and len(values(name)) == 26


@pytest.mark.parametrize("name", ["TRUE_CUBIC_HERMITE", "FAKE_REVERSE_CUBIC_HERMITE"])
def test_cubic_hermite_presets_follow_the_26_to_20_rule_on_sdxl(name):
    full = values(name)
    got = parse_block_weights(name, SDXL, base_default=0.0).values
    assert list(got) == [full[idx(b)] for b in SDXL_SURVIVORS]
    assert builtin(name + "_XL", SDXL.blocks) is None  # no SDXL-native curve: the incumbent gives only values


def test_random_presets_are_random_tokens():
    assert builtin("ALL_R", SD1.blocks) == ["R"] * 26
    assert builtin("ALL_U", SD1.blocks) == ["U"] * 26
    assert builtin("ALL_X_XL", SDXL.blocks) == ["X"] * 20


# ---------------------------------------------------------------- SDXL: the 26 -> 20 rule and `_XL` presets

@pytest.mark.parametrize("name", ["GRAD_V", "WRAP08", "RING10_3", "SMOOTHSTEP*3", "COSINE"])
def test_26_value_presets_on_sdxl_keep_the_surviving_blocks(name):
    full = values(name)
    got = parse_block_weights(name, SDXL, base_default=0.0).values
    assert list(got) == pytest.approx([full[idx(b)] for b in SDXL_SURVIVORS], abs=1e-15)


def test_grad_v_on_sdxl_written_out():
    got = parse_block_weights("GRAD_V", SDXL, base_default=0.0).values
    expected = [0.0] + [1 - i / 12 for i in range(9)] + [0.0] + [(i + 1) / 12 for i in range(9)]
    assert list(got) == pytest.approx(expected, abs=1e-15)
    assert got[9] == pytest.approx(4 / 12)  # IN08, the last SDXL input block
    assert got[19] == pytest.approx(9 / 12)  # OUT08


def test_xl_presets_use_sdxls_own_blocks():
    gv = values("GRAD_V_XL", SDXL)
    expected = [0.0] + [1 - i / 9 for i in range(9)] + [0.0] + [(i + 1) / 9 for i in range(9)]
    assert gv == pytest.approx(expected, abs=1e-15)
    assert len(values("FLAT_25_XL", SDXL)) == 20
    assert values("FLAT_25_XL", SDXL)[1:] == [0.25] * 19
    t = Fraction(1, 18)
    assert values("SMOOTHSTEP_XL", SDXL)[1] == 0.0
    assert values("SMOOTHSTEP_XL", SDXL)[2] == pytest.approx(float(3 * t**2 - 2 * t**3), abs=1e-17)  # 13/1458
    assert values("SMOOTHSTEP_XL", SDXL)[BLOCKS20.index("M00")] == pytest.approx(0.5)
    assert values("COSINE_XL", SDXL)[BLOCKS20.index("OUT08")] == pytest.approx(0.0, abs=1e-15)
    bw = parse_block_weights("COSINE_XL", SDXL, base_default=0.3)
    assert len(bw.values) == 20 and bw.values[0] == 0.0  # the preset's BASE, not the default


def test_xl_presets_are_refused_on_sd1_with_a_clear_message():
    assert builtin("GRAD_V_XL", SD1.blocks) is None
    with pytest.raises(ParseError) as e:
        parse_block_weights("GRAD_V_XL", SD1, base_default=0.0)
    msg = str(e.value)
    assert "SDXL" in msg and "'GRAD_V'" in msg and "Fix:" in msg
    # block-set presets have no _XL form
    assert builtin("WRAP08_XL", SDXL.blocks) is None


# ---------------------------------------------------------------- the user file

def test_a_users_file_reads_as_is():
    got = parse_preset_text(USER_FILE)
    assert sorted(got) == ["HUMP", "MY_SOFT"]  # header line and comment skipped
    assert got["HUMP"] == "0,0,0,0,0,0,0,0,0.5,1,1,1,1,1,1,1,1,1,0.5,0,0,0,0,0,0,0"


def test_user_presets_work_as_weight_strings():
    book = PresetBook(parse_preset_text(USER_FILE))
    bw = parse_block_weights("MY_SOFT", SD1, base_default=0.0, presets=book)
    assert bw.values[idx("M00")] == 0.25
    assert bw.values[-1] == 1.0
    assert "HUMP" in book.names()
    assert book.names().count("GRAD_V") == 1


def test_user_presets_override_builtins_and_may_start_with_a_digit():
    book = PresetBook(parse_preset_text("GRAD_V: 0.5," + ",".join(["1"] * 25) + "\n2SMOOTHSTEP\t" +
                                        ",".join(["0"] * 26)))
    assert parse_block_weights("GRAD_V", SD1, base_default=0.0, presets=book).values == (0.5,) + (1.0,) * 25
    assert parse_block_weights("2SMOOTHSTEP", SD1, base_default=0.0, presets=book).values == (0.0,) * 26


def test_file_format_comments_blank_lines_separators():
    text = ("# my presets\n"
            "\n"
            "preset_name\tpreset_weights\n"
            "A:1,2  # trailing comment\n"
            "B\t3,4\n"
            "  C : 5, 6  \n"
            "D\t:7\n"
            "preset_names_too:8\n")
    assert parse_preset_text(text) == {"A": "1,2", "B": "3,4", "C": "5, 6", "D": "7",
                                       "preset_names_too": "8"}


@pytest.mark.parametrize("text,line", [
    ("A:1\nthis is not a preset\n", 2),
    ("A:1\n\n# c\nNOVALUES\n", 4),
    ("A:1\nB:\n", 2),
    ("A,B:1,2\n", 1),
    ("X 1,2,3\n", 1),
])
def test_malformed_lines_name_their_line_number(text, line):
    with pytest.raises(ParseError) as e:
        parse_preset_text(text, "mine.txt")
    assert f"mine.txt line {line}:" in str(e.value)
    assert "Fix:" in str(e.value)


def test_from_file(tmp_path):
    p = tmp_path / "presets.txt"
    p.write_text("MINE\t" + ",".join(["0.5"] * 26) + "\n", encoding="utf-8")
    book = PresetBook.from_file(str(p))
    assert book.user == {"MINE": ",".join(["0.5"] * 26)}
    assert PresetBook.from_file(None).user == {}
    assert PresetBook.from_file("").user == {}
    with pytest.raises(ParseError, match="cannot read presets file"):
        PresetBook.from_file(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text("ok:1\nbroken\n", encoding="utf-8")
    with pytest.raises(ParseError, match="bad.txt line 2"):
        PresetBook.from_file(str(bad))


NAME = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz0123456789_*/-."), min_size=1, max_size=20) \
    .filter(lambda s: s.lower() != "preset_name")
VALUES = st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30) \
    .map(lambda v: ",".join(repr(x) for x in v))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(NAME, VALUES, max_size=8))
def test_format_then_parse_round_trips(presets):
    text = format_preset_text(presets.items())
    assert parse_preset_text(text) == presets
    assert format_preset_text(parse_preset_text(text).items()) == text


def test_user_file_round_trips_through_format():
    once = parse_preset_text(USER_FILE)
    assert parse_preset_text(format_preset_text(once.items())) == once


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_any_text_parses_or_raises_parse_error(text):
    try:
        out = parse_preset_text(text)
    except ParseError as e:
        assert isinstance(e, MergeError) and " line " in str(e)
        return
    for name, vals in out.items():
        assert name and vals and not any(c in name for c in " \t:,#")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["GRAD_V", "A", ":", "\t", ",", "#", "\n", " ", "0.5", "preset_name", "x:y:z"]),
                max_size=20).map("".join))
def test_token_soup_parses_or_raises_parse_error(text):
    try:
        parse_preset_text(text)
    except ParseError:
        pass
