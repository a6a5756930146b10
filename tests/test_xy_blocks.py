"""Block selections and the analyzer's Range / Blocks / seeds / threshold / colour fields."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from lib_merge.arch.blocks import SDXL
from lib_merge.errors import ParseError
from lib_merge.xy.blocks import LAYOUTS
from lib_merge.xy import analyzer_spec, format_blocks, format_range, parse_blocks, parse_range
from lib_merge.xy.blocks import select
from lib_merge.xy.diff import parse_colour, parse_threshold

L12 = LAYOUTS[12].blocks


def test_layouts_are_reference_section_7():
    assert parse_blocks("12ALL")[1] == ("BASE", "IN04", "IN05", "IN07", "IN08", "M00",
                                        "OUT00", "OUT01", "OUT02", "OUT03", "OUT04", "OUT05")
    assert parse_blocks("17ALL")[1] == ("BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00",
                                        *(f"OUT{i:02d}" for i in range(3, 12)))
    assert parse_blocks("20ALL")[1] == ("BASE", *(f"IN{i:02d}" for i in range(9)), "M00",
                                        *(f"OUT{i:02d}" for i in range(9)))
    assert parse_blocks("26ALL")[1] == ("BASE", *(f"IN{i:02d}" for i in range(12)), "M00",
                                        *(f"OUT{i:02d}" for i in range(12)))
    assert parse_blocks(" 12all ")[0].count == 12


@pytest.mark.parametrize("text, expected", [
    ("OUT01", ("OUT01",)),
    ("out01 in04", ("IN04", "OUT01")),  # case-insensitive, layout order
    ("IN04-OUT02", ("IN04", "IN05", "IN07", "IN08", "M00", "OUT00", "OUT01", "OUT02")),
    ("OUT02-IN04", ("IN04", "IN05", "IN07", "IN08", "M00", "OUT00", "OUT01", "OUT02")),  # either order
    ("IN00-IN11", ("IN04", "IN05", "IN07", "IN08")),  # range ends need not be in the layout
    ("NOT BASE", L12[1:]),
    ("NOT M00 OUT00-OUT05", ("BASE", "IN04", "IN05", "IN07", "IN08")),
    ("IN04, IN04,OUT05", ("IN04", "OUT05")),
])
def test_ids_ranges_not_in_the_12_layout(text, expected):
    lay, blocks = parse_blocks(text, layout=12)
    assert lay.count == 12 and blocks == expected


def test_ids_default_to_the_26_layout():
    lay, blocks = parse_blocks("IN09 OUT11")
    assert lay.count == 26 and blocks == ("IN09", "OUT11")


@pytest.mark.parametrize("text, layout, needle", [
    ("", 12, "no blocks"), ("NOT", 12, "NOT with no blocks"), ("OUT99", 12, "unknown block"),
    ("IN03", 12, "IN03 is not one of these 12 blocks"), ("IN04 NOT OUT01", 12, "NOT must come first"),
    ("12ALL OUT01", 12, "cannot be combined"), ("IN04-", 12, "not a block or a range"),
    ("IN01-IN02-IN03", 12, "not a block or a range"), ("IN09-IN11", 12, "contains none"),
    ("NOT 12ALL", 12, "cannot be combined"), ("NOT BASE-OUT05", 12, "leaves no block"),
    ("OUT01", 13, "no 13-block layout"), ("BSAE", 12, "did you mean 'BASE'"),
])
def test_block_errors(text, layout, needle):
    with pytest.raises(ParseError) as e:
        parse_blocks(text, layout)
    assert needle in str(e.value) and str(e.value).startswith("Blocks") and "Fix:" in str(e.value)


def test_all_token_in_a_plain_block_list():
    assert select("20ALL", SDXL.blocks, "w").chosen == SDXL.blocks
    with pytest.raises(ParseError, match="not these 20 blocks"):
        select("26ALL", SDXL.blocks, "w")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(LAYOUTS)), st.data())
def test_blocks_round_trip(count, data):
    lay = LAYOUTS[count]
    subset = data.draw(st.sets(st.sampled_from(lay.blocks), min_size=1))
    chosen = tuple(b for b in lay.blocks if b in subset)
    text = format_blocks(lay, chosen)
    assert parse_blocks(text, count) == (lay, chosen)
    if chosen == lay.blocks:
        assert text == f"{count}ALL"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="INOUTBASEMALLnot0123456789- ,\t", max_size=30),
       st.sampled_from([None, 12, 17, 20, 26, 5]))
def test_blocks_fuzz_only_parse_errors(text, layout):
    try:
        lay, blocks = parse_blocks(text, layout)
    except ParseError:
        return
    assert blocks and set(blocks) <= set(lay.blocks)


@pytest.mark.parametrize("text, expected", [("0,1", (0.0, 1.0)), (" 0.5 , 1 ", (0.5, 1.0)), ("1,0", (1.0, 0.0)),
                                            ("-0.5,1e0", (-0.5, 1.0))])
def test_range(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize("text, needle", [
    ("0", "exactly two"), ("0,1,2", "exactly two"), ("", "exactly two"), ("0,", "exactly two"),
    ("a,1", "low"), ("0,b", "base"), ("1,1", "equal"), ("0,1e999", "too large"), ("0;1", "exactly two"),
])
def test_range_errors(text, needle):
    with pytest.raises(ParseError) as e:
        parse_range(text)
    assert needle in str(e.value) and "Range" in str(e.value) and "Fix:" in str(e.value)


finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(finite, finite)
def test_range_round_trip(low, base):
    if low == base:
        return
    assert parse_range(format_range(low, base)) == (low, base)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_range_fuzz_only_parse_errors(text):
    try:
        low, base = parse_range(text)
    except ParseError:
        return
    assert low != base


def test_spec_defaults_and_fields():
    spec = analyzer_spec("0,1", "12ALL")
    assert (spec.low, spec.base, spec.seeds, spec.threshold, spec.colour, spec.swap) == (0, 1, 1, 20, (0, 0, 0), False)
    assert spec.renders == 13
    spec = analyzer_spec("0.5,1", "OUT01 OUT02", seeds="3", threshold="10", colour="#ff0000", swap=True, layout=12)
    assert spec.blocks == ("OUT01", "OUT02") and spec.seeds == 3 and spec.threshold == 10
    assert spec.colour == (255, 0, 0) and spec.swap and spec.renders == 9


@pytest.mark.parametrize("kw, needle", [
    ({"seeds": 0}, "number of seeds"), ({"seeds": "x"}, "number of seeds"), ({"seeds": 1.5}, "number of seeds"),
    ({"seeds": 1000}, "number of seeds"), ({"threshold": 255}, "threshold"), ({"threshold": -1}, "threshold"),
    ({"threshold": "abc"}, "threshold"), ({"colour": "not-a-colour"}, "diff colour"),
    ({"colour": (1, 2)}, "diff colour"), ({"colour": (0, 0, 300)}, "diff colour"),
])
def test_spec_errors(kw, needle):
    with pytest.raises(ParseError, match=needle):
        analyzer_spec("0,1", "12ALL", **kw)


def test_colour_and_threshold():
    assert parse_colour("black") == (0, 0, 0) and parse_colour("white") == (255, 255, 255)
    assert parse_colour("#0f0") == (0, 255, 0) and parse_colour((1, 2, 3)) == (1, 2, 3)
    assert parse_threshold("20") == 20.0 and parse_threshold(0) == 0.0
