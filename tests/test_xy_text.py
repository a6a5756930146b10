"""Axis value text: splitting, quoting, numeric ranges (lib_merge.xy.text)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from lib_merge.errors import ParseError
from lib_merge.xy.text import MAX_VALUES, expand_range, fmt, is_range, split_values


def texts(tokens):
    return [t.text for t in tokens]


def test_commas_quotes_and_lines():
    assert texts(split_values("0, 0.5 ,1", "X")) == ["0", "0.5", "1"]
    assert texts(split_values('"1,0,1", ALL, "x y"', "X")) == ["1,0,1", "ALL", "x y"]
    assert texts(split_values("1,0,1\n\n ALL \n", "X")) == ["1,0,1", "ALL"]  # one per line, blank skipped
    assert texts(split_values('"1,0"\nALL', "X")) == ["1,0", "ALL"]  # quotes optional per line
    assert texts(split_values("a, b,", "X")) == ["a", "b"]  # a trailing comma is harmless
    assert texts(split_values("a, prompt", "X", per_line=True)) == ["a, prompt"]
    assert [t.position for t in split_values("a,b,c", "X")] == [1, 2, 3]


@pytest.mark.parametrize("text, needle", [
    ("", "has no values"), ("   ", "has no values"), ("a,,b", "value 2"), ('"1,2', "character 1"),
    ('a, "b', "character 4"),
])
def test_split_errors_name_the_position(text, needle):
    with pytest.raises(ParseError) as e:
        split_values(text, "Y axis (values)")
    assert needle in str(e.value) and "Y axis (values)" in str(e.value) and "Fix:" in str(e.value)


@pytest.mark.parametrize("text, expected", [
    ("0-1 [5]", [0, 0.25, 0.5, 0.75, 1]),
    ("0-1 (+0.25)", [0, 0.25, 0.5, 0.75, 1]),
    ("0-1(+0.25)", [0, 0.25, 0.5, 0.75, 1]),
    ("1-0 (-0.25)", [1, 0.75, 0.5, 0.25, 0]),
    ("0-1 (0.3)", [0, 0.3, 0.6, 0.9]),  # stops before passing the end
    ("0.1-0.3 (+0.1)", [0.1, 0.2, 0.3]),  # float noise does not lose the end or show in labels
    ("1-4", [1, 2, 3, 4]),
    ("4-1", [4, 3, 2, 1]),
    ("-1-1 [3]", [-1, 0, 1]),
    ("-5--3", [-5, -4, -3]),
    ("0.5-0.5 [3]", [0.5, 0.5, 0.5]),
    ("2-7 [1]", [2]),
    ("0-1 [ 3 ]", [0, 0.5, 1]),
])
def test_ranges(text, expected):
    assert is_range(text)
    assert expand_range(text, "X axis, value 1") == expected
    assert [fmt(v) for v in expand_range("0.1-0.3 (+0.1)", "w")] == ["0.1", "0.2", "0.3"]


@pytest.mark.parametrize("text", ["1", "-1", "0.5", "1e-5", "IN04-OUT02", "abc", "0-1 [5"])
def test_not_ranges(text):
    assert not is_range(text)


@pytest.mark.parametrize("text, needle", [
    ("0-1 [0]", "asks for 0 values"), ("0-1 [x]", "is not a count"), ("0-1 [-2]", "is not a count"),
    ("0-1 (+0)", "step 0"), ("0-1 (-0.25)", "goes away from 1"), ("1-0 (+0.25)", "goes away from 0"),
    ("0-1 (abc)", "not a number"), ("0-1 [5000]", f"more than {MAX_VALUES}"), ("0-1 (+0.00001)", "more than"),
    ("0-1e999 [3]", "too large"),
])
def test_range_errors(text, needle):
    with pytest.raises(ParseError) as e:
        expand_range(text, "X axis (alpha), value 2")
    assert needle in str(e.value) and "value 2" in str(e.value) and "Fix:" in str(e.value)


nums = st.floats(min_value=-100, max_value=100, allow_nan=False).map(lambda v: round(v, 3))


@settings(max_examples=200, deadline=None)
@given(nums, nums, st.integers(min_value=2, max_value=50))
def test_count_ranges_hit_both_ends(a, b, n):
    vals = expand_range(f"{fmt(a)}-{fmt(b)} [{n}]", "w")
    assert len(vals) == n
    assert vals[0] == pytest.approx(a) and vals[-1] == pytest.approx(b)


@settings(max_examples=200, deadline=None)
@given(nums, st.integers(min_value=0, max_value=40), st.sampled_from([0.25, 0.5, 1, 2, 0.1]))
def test_step_ranges_count_exactly(a, k, s):
    b = a + k * s
    vals = expand_range(f"{fmt(a)}-{fmt(round(b, 6))} (+{fmt(s)})", "w")
    assert len(vals) == k + 1
    assert all(y > x for x, y in zip(vals, vals[1:]))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='0123456789.-+[]() e,"\nabINOUTALL', max_size=30))
def test_fuzz_only_parse_errors(text):
    try:
        for t in split_values(text, "X"):
            if is_range(t.text):
                expand_range(t.text, "X")
    except ParseError:
        pass
